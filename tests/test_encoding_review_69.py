"""Consoles whose encoding lacks the characters of the package's tables and results (ASCII,
latin-1, a C locale): the command, the example scripts and the benchmark scripts print them as
ASCII instead of ending in UnicodeEncodeError; scripts read and write text as UTF-8."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayesphys._console import ascii_fallback, tolerant_stdout
from tests.test_portability import _text_io_without_encoding

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIO"))}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", **extra)
    return env


# a C / POSIX locale without Python's UTF-8 mode: stdout is ASCII with surrogateescape
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


def _run(argv: list[str], env: dict[str, str], timeout: int = 300):
    return subprocess.run(
        [sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, timeout=timeout
    )


def _ascii_stream(errors: str) -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="ascii", errors=errors, write_through=True)


def test_characters_of_the_tables_print_as_ascii():
    """'0.35 ± 0.01' printed as '0.35 ? 0.01' (or raised): the ASCII spelling keeps its
    meaning."""
    raw, stream = _ascii_stream("strict")
    tolerant_stdout(stream)
    stream.write("0.35 ± 0.01 | – | σ=2 mm²/d · café — ok\n")
    assert raw.getvalue() == b"0.35 +- 0.01 | - | sigma=2 mm^2/d - cafe -- ok\n"
    assert ascii_fallback("\u4e2d") == "?"  # no ASCII spelling: a question mark


def test_a_name_written_decomposed_loses_only_its_accents():
    """'cafe' + a combining acute accent (as macOS file names are written) printed 'cafe?'."""
    raw, stream = _ascii_stream("strict")
    tolerant_stdout(stream)
    stream.write("cafe\u0301 Mu\u0308ller\n")
    assert raw.getvalue() == b"cafe Muller\n"


def test_a_c_locale_stdout_prints_them_and_keeps_undecoded_bytes():
    """In a C locale (surrogateescape) stdout was left as it was: the first ± raised. The
    bytes of a name the system gave undecoded (a path from argv) are still written as they
    came."""
    raw, stream = _ascii_stream("surrogateescape")
    tolerant_stdout(stream)
    stream.write("d\udcc3\udca9 ± x\n")
    assert raw.getvalue() == b"d\xc3\xa9 +- x\n"


@pytest.mark.parametrize("errors", ["backslashreplace", "replace"])
def test_a_handler_chosen_on_purpose_is_kept(errors):
    raw, stream = _ascii_stream(errors)
    tolerant_stdout(stream)
    assert stream.errors == errors


def test_a_utf8_stdout_is_left_alone():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="UTF8", errors="strict")
    tolerant_stdout(stream)
    assert stream.errors == "strict"


def test_the_command_prints_a_table_in_a_c_locale():
    """`bayesphys bench meta_fm --table ...` ended in UnicodeEncodeError at the table's ±."""
    table = "benchmarks/results/meta_fm.json"
    out = _run(["-m", "bayesphys", "bench", "meta_fm", "--table", table], _env(**C_LOCALE))
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    assert b" +- " in out.stdout and b"\xb1" not in out.stdout


def test_a_benchmark_script_prints_its_table_on_an_ascii_console(tmp_path):
    """`python benchmarks/<ablation>.py --table FILE` printed a missing cell's en dash and
    failed; so did every ablation run at its end, after its results were written."""
    results = tmp_path / "rows.json"
    rows = [{"method": "a", "w2": 0.5}, {"method": "b", "w2": None}]
    results.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    script = "benchmarks/meta_fm_fourier_ablation.py"
    out = _run([script, "--table", str(results)], _env(PYTHONIOENCODING="ascii"))
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    assert b"| b | - |" in out.stdout


@pytest.mark.slow  # a whole example run; the benchmark-script test covers the same wrapper
def test_an_example_script_prints_a_non_ascii_out_folder(tmp_path):
    """`python examples/tutorial_arviz.py --out 'tü tor'` fitted, wrote its files and then
    failed printing where they were (UnicodeEncodeError, exit status 1)."""
    folder = tmp_path / "t\u00fc tor"
    out = _run(
        ["examples/tutorial_arviz.py", "--smoke", "--out", str(folder)],
        _env(PYTHONIOENCODING="ascii"),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    assert f"files to {tmp_path}/tu tor".encode() in out.stdout
    assert (folder / "tutorial.nc").is_file()


def test_run_script_prints_on_an_ascii_console(monkeypatch):
    """The examples' script entry (`python examples/cohort.py`) printed with the stream's own
    strict handler."""
    from bayesphys.examples._args import run_script

    raw, stream = _ascii_stream("strict")
    monkeypatch.setattr(sys, "stdout", stream)
    assert run_script(lambda: print("rel_l2 0.1 ± 0.02") or {"ok": 1}) == {"ok": 1}
    assert raw.getvalue() == b"rel_l2 0.1 +- 0.02\n"


def _script_files() -> list[Path]:
    files = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if not p.name.startswith("_")]
    files += sorted((ROOT / "examples").glob("*.py"))
    files += [p for p in sorted((ROOT / "bayesphys" / "examples").glob("*.py")) if p.name[0] != "_"]
    return files


def _main_block_calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return {
                getattr(c.func, "attr", getattr(c.func, "id", ""))
                for c in ast.walk(node)
                if isinstance(c, ast.Call)
            }
    return set()


def test_every_script_makes_its_stdout_tolerant():
    """Each script's entry point runs in console_script (an example wrapper that runs the
    module whose entry point does so is taken as it)."""
    missing = [
        str(p.relative_to(ROOT))
        for p in _script_files()
        if not _main_block_calls(p) & {"console_script", "run_module"}
    ]
    assert missing == []


def test_a_script_ends_quietly_when_its_reader_leaves(tmp_path):
    """`python benchmarks/<ablation>.py --table FILE | head -1`: a BrokenPipeError traceback
    and status 1 (the command itself already ended with 141 and no traceback)."""
    results = tmp_path / "rows.json"
    rows = [{"method": f"m{i}", "w2": i / 7} for i in range(20000)]
    results.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    # the context manager closes stderr's pipe too (left open, a ResourceWarning under -X dev)
    with subprocess.Popen(
        [sys.executable, "benchmarks/meta_fm_fourier_ablation.py", "--table", str(results)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout.readline().strip() == b"| method | w2 |"
        proc.stdout.close()  # the reader leaves
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 141 and "Traceback" not in err, err


def test_scripts_read_and_write_text_as_utf8():
    """As the package does (tests/test_portability.py): the benchmark and example scripts and
    the gallery builder name the encoding of every text file they open."""
    paths = [*sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "examples").glob("*.py"))]
    paths.append(ROOT / "docs" / "make_gallery.py")
    assert [f for p in paths for f in _text_io_without_encoding(p)] == []


@pytest.mark.parametrize("with_out", [False, True])
def test_fit_many_refuses_an_id_from_an_undecodable_file_name(tmp_path, with_out):
    """`{p.stem: ... for p in folder.glob(...)}` over a name not valid in the file system's
    encoding gives an id with a surrogate character: a bare UnicodeEncodeError from the seed
    or file-stem hash (xarray cannot read such a coordinate back either). Refused by name,
    before anything runs."""
    from bayesphys import fit_many
    from tests.distributed import _toy

    problems = _toy.problems(2)
    ids = dict(zip(["caf\udce9", "plain"], problems.values()))
    out = tmp_path / "out" if with_out else None
    with pytest.raises(ValueError, match=r"problems: id 'caf\\udce9' holds the surrogate"):
        fit_many(ids, _toy.build, executor="sequential", out=out, progress=False)
    assert not (tmp_path / "out").exists()
