"""``bayesphys._bench.argtypes``: the argparse types of the benchmark scripts' comma lists
refuse an unknown, repeated or malformed entry at parse time, naming it and what is accepted."""

from __future__ import annotations

import argparse

import pytest

from bayesphys._bench import comma_ids, comma_list
from bayesphys._cli_args import seed_arg


def _parser(**types) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="x", allow_abbrev=False)
    for name, (kind, default) in types.items():
        ap.add_argument(f"--{name}", type=kind, default=default)
    return ap


def test_comma_ids_parses_to_a_list():
    ids = comma_ids(("B0", "B1", "B3"))
    assert ids("B0,B3") == ["B0", "B3"]
    assert ids(" B1 , B0,") == ["B1", "B0"]  # spaces and an empty entry dropped
    assert ids("B1,B1") == ["B1", "B1"]  # repeats kept unless unique
    assert comma_ids(("a",), nonempty=False)("") == []
    assert ids.allowed == ("B0", "B1", "B3") and comma_list(int).allowed is None


@pytest.mark.parametrize(
    "text, says",
    [
        ("B0,B9", "unknown problem ids ['B9']; expected some of ['B0', 'B1'] (B2 elsewhere)"),
        ("B0,B0", "each of the problem ids once, received 'B0,B0'"),
        ("", "expected at least one of the problem ids, received ''"),
        (",", "expected at least one of the problem ids, received ','"),
    ],
)
def test_comma_ids_refuses_naming_the_ids(text, says):
    ids = comma_ids(("B0", "B1"), unique=True, what="problem ids", hint=" (B2 elsewhere)")
    with pytest.raises(argparse.ArgumentTypeError) as err:
        ids(text)
    assert str(err.value) == says


def test_the_parse_names_the_option_and_applies_to_string_defaults(capsys):
    ap = _parser(only=(comma_ids(("B0", "B1")), "B0,B1"), seeds=(comma_list(seed_arg), "0"))
    args = ap.parse_args([])
    assert args.only == ["B0", "B1"] and args.seeds == [0]
    assert ap.parse_args(["--seeds", "3,-1"]).seeds == [3, -1]
    with pytest.raises(SystemExit) as err:
        ap.parse_args(["--only", "B0,Bx"])
    assert err.value.code == 2
    assert "argument --only: unknown ids ['Bx']; expected some of ['B0', 'B1']" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "item, text, says",
    [
        (int, "1,x", "expected a comma list of folds, received '1,x'"),
        (seed_arg, "1,x", "expected an integer, received 'x' (in '1,x')"),
    ],
)
def test_comma_list_names_an_entry_its_item_type_refuses(item, text, says):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        comma_list(item, what="folds")(text)
    assert str(err.value) == says


def test_comma_list_checks_converted_values_against_allowed():
    folds = comma_list(int, allowed=(0, 1, 2, 3), unique=True, what="folds")
    assert folds("3,0") == [3, 0]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown folds \[4\]; expected some"):
        folds("0,4")
