"""Command-line behaviour found by an end-to-end review: usage errors, help, one results line."""

from __future__ import annotations

import pytest

from bayesphys import cli
from bayesphys._bench import script_module


def _usage_error(capsys, argv, match):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert match in msg, msg
    return msg


def test_unknown_options_are_reported_against_the_subcommand(capsys):
    msg = _usage_error(capsys, ["demo", "--bogus"], "unrecognized arguments: --bogus")
    assert "usage: bayesphys demo" in msg  # was the top-level usage line
    msg = _usage_error(capsys, ["calibrate", "core", "--quick", "--bogus"], "--bogus")
    assert "usage: bayesphys calibrate" in msg


def test_an_examples_own_help_after_run_options(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["run", "--smoke", "cohort", "--help"])
    assert err.value.code == 0
    assert "--patients" in capsys.readouterr().out  # was the generic run help
    with pytest.raises(SystemExit):
        cli.main(["bench", "--quick", "gp_pde", "--help"])
    assert "usage: bayesphys bench gp_pde" in capsys.readouterr().out


def test_list_names_the_extra_bench_and_calibrate_targets(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "bayesphys bench scale_out" in out and "bayesphys calibrate core" in out


@pytest.mark.parametrize(
    ("script", "argv", "option"),
    [
        ("probconserv.py", ["--problems", "nosuch"], "--problems"),
        ("probconserv.py", ["--scale", "-1"], "--scale"),
        ("probconserv.py", ["--anp-train-margin", "-5"], "--anp-train-margin"),
        ("probconserv.py", ["--seed", str(2**50)], "--seed"),
        ("neural_process.py", ["--steps", "-3"], "--steps"),
        ("neural_process.py", ["--seeds", "a,b"], "--seeds"),
        ("neural_process.py", ["--n-test", "0"], "--n-test"),
        ("meta_fm.py", ["--problems", "nosuch"], "--problems"),
        ("meta_fm.py", ["--fourier", "-2"], "--fourier"),
        ("meta_fm.py", ["--table", "nosuch.json"], "--table"),
    ],
)
def test_bench_scripts_refuse_bad_options_as_usage_errors(tmp_path, capsys, script, argv, option):
    mod = script_module(f"benchmarks/{script}")
    with pytest.raises(SystemExit) as err:
        mod.main(["--quick", "--out", str(tmp_path), *argv])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert option in msg and f"usage: bayesphys bench {script[:-3]}" in msg


def test_poisson_coefficient_caps_its_sensor_count(capsys):
    from bayesphys.examples import load

    with pytest.raises(SystemExit) as err:
        load("poisson-coefficient").main(["--smoke", "--sensors", "100000"])
    assert err.value.code == 2 and "--sensors" in capsys.readouterr().err


def test_version_flag(capsys):
    import bayesphys

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bayesphys {bayesphys.__version__}"


def test_a_closed_pipe_ends_the_command_quietly():
    # `bayesphys list | head -1`: a traceback and status 1 before
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(cli.__file__).resolve().parents[1])
    code = (
        "import sys\nfrom bayesphys import cli\n"
        "def many(args):\n    for _ in range(100000):\n        print('x' * 100)\n    return 0\n"
        "cli.cmd_list = many\nsys.exit(cli.main(['list']))"
    )
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline().strip() == b"x" * 100
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err, err


def test_another_broken_pipe_is_an_error(monkeypatch):
    # a pipe other than stdout (a helper process's) is not the reader leaving: it propagates
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_list", broken)
    with pytest.raises(BrokenPipeError):
        cli.main(["list"])
