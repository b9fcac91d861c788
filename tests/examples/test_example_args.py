"""Bad command lines for the example scripts are usage errors (exit status 2, the option
named, no traceback) raised before any work is done: nothing is written to ``--out``."""

from __future__ import annotations

import pytest
import torch

from bayesphys.examples import load

NO_CUDA = [] if torch.cuda.is_available() else [("--device", "cuda")]
COMMON = [("--device", "tpu"), ("--seed", "1.5"), ("--out", "FILE"), *NO_CUDA]
SPECIFIC = {
    "cohort": [("--patients", "0"), ("--workers", "-1")],
    "ddp-training": [("--epochs", "0"), ("--nproc", "0")],
    "glioma": [("--foci", "4")],
    "gp-pde-inverse": [
        ("--n-obs", "0"),
        ("--n-obs", "47"),  # the smoke grid has 46 interior points
        ("--noise", "-1"),
        ("--noise", "nan"),
    ],
    "poisson-coefficient": [
        ("--steps", "0"),
        ("--steps", "-5"),
        ("--sensors", "0"),
        ("--proposals", "0"),
        ("--sensors", "many"),  # not a number at all
    ],
    "population-response": [("--steps", "0"), ("--steps", "-1")],
    "stefan-front": [
        ("--u-star", "2"),
        ("--u-star", "0"),
        ("--u-star", "nan"),
        ("--u-star", "half"),  # not a number at all
        ("--noise", "-1"),
        ("--noise", "inf"),
        ("--mass-tol", "-1"),
        ("--mass-tol", "nan"),
        ("--front-level", "-0.1"),
        ("--front-level", "0.6"),  # not below the default u* = 0.6
    ],
    "tutorial-arviz": [],
}
CASES = [
    pytest.param(name, opt, value, id=f"{name} {opt} {value}")
    for name, specific in SPECIFIC.items()
    for opt, value in COMMON + specific
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "option", "value"), CASES)
def test_bad_command_line_is_a_usage_error(name, option, value, tmp_path, capsys):
    out = tmp_path / "out"
    if value == "FILE":
        out.write_text("a file in the way")
        argv = ["--smoke", "--out", str(out)]
    else:
        argv = ["--smoke", "--out", str(out), option, value]
    with pytest.raises(SystemExit) as exc:
        load(name).main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if value == "FILE" else [])
    if value == "FILE":
        assert out.read_text() == "a file in the way"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("model", "option", "value"), [("mlp", "--steps", "5"), ("rgnp", "--epochs", "2")]
)
def test_ddp_training_refuses_the_other_models_length(model, option, value, tmp_path, capsys):
    """``--steps`` sets the rgnp's run, ``--epochs`` the mlp's: given to the other model each
    was accepted and silently ignored (the run had its default length)."""
    out = tmp_path / "out"
    argv = ["--smoke", "--out", str(out), "--model", model, option, value]
    with pytest.raises(SystemExit) as exc:
        load("ddp-training").main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: only with --model" in err and "Traceback" not in err
    assert not out.exists()
