"""Command-line behaviour found by an end-to-end review: usage errors, help, one results line."""

from __future__ import annotations

import io
import os
import sys

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
    # the context manager closes stderr's pipe too (left open, a ResourceWarning under -X dev)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as proc:
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
    # nor is it when stdout was replaced by a stream without a descriptor (a notebook's)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with pytest.raises(BrokenPipeError):
        cli.main(["list"])


def test_without_poll_a_broken_pipe_is_taken_to_be_stdouts(monkeypatch):
    """Where select.poll does not exist (Windows) a broken pipe is stdout's reader leaving:
    the command ends quietly with status 141, its stdout pointed at the null device."""
    import select

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_list", broken)
    monkeypatch.delattr(select, "poll")
    r, w = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(w, "w"), write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        assert cli.main(["list"]) == 141
        stream.write("after")  # goes to the null device now, not to the pipe
    finally:
        stream.close()
        monkeypatch.undo()
    with io.FileIO(r, "r") as reader:
        assert reader.read() == b""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_closed_pipe_leaves_no_descriptor_open():
    """Each call that ended on a closed stdout left its copy of /dev/null open (30 calls, 30
    descriptors; review of 2026-12-04)."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(cli.__file__).resolve().parents[1])
    code = (
        "import io, os, sys\nfrom bayesphys.cli import main\n"
        "real, counts = sys.stdout, []\n"
        "for _ in range(6):\n"
        "    r, w = os.pipe(); os.close(r)\n"
        "    sys.stdout = io.TextIOWrapper(io.FileIO(w, 'w'), write_through=True)\n"
        "    try:\n        rc = main(['list'])\n"
        "    finally:\n"
        "        try:\n            sys.stdout.close()\n        except OSError:\n            pass\n"
        "        sys.stdout = real\n"
        "    assert rc == 141, rc\n"
        "    counts.append(len(os.listdir('/proc/self/fd')))\n"
        "print(counts)\n"
    )
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    counts = eval(proc.stdout.strip())  # noqa: S307 - a list of ints printed above
    assert len(set(counts[1:])) == 1, counts


def test_main_called_from_python_gives_back_the_callers_seeds_and_threads(tmp_path):
    """``demo`` seeds the global streams and sets the thread count for the command: a caller
    of ``main([...])`` kept them (review of 2026-12-04)."""
    import random

    import numpy as np
    import torch

    from bayesphys._process_state import in_new_thread

    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # the demo's --threads 1 is a change
    try:
        fresh = in_new_thread(torch.get_num_threads)
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)
        states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
        assert cli.main(["demo", "--only", "--out", str(tmp_path), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 2
        assert in_new_thread(torch.get_num_threads) == fresh
        assert random.getstate() == states[0]
        assert (np.random.get_state()[1] == states[1]).all()
        assert torch.equal(torch.get_rng_state(), states[2])
    finally:
        torch.set_num_threads(outer)


def test_main_from_python_forks_the_cuda_generators_when_cuda_is_initialised(monkeypatch):
    """It forked the CPU generator only: a ``demo --device cuda`` called from Python reseeded
    the caller's CUDA streams and kept them. Simulated (with or without a GPU): the generators
    forked are those of every device once CUDA is initialised, none before."""
    import contextlib

    import torch

    from bayesphys.cli import _callers_state_kept

    forked = []

    @contextlib.contextmanager
    def fork_rng(devices=None, **kw):
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # as before any CUDA call
    with _callers_state_kept():
        pass
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with _callers_state_kept():
        pass
    assert forked == [[], [0, 1]]


def test_an_out_folder_the_system_cannot_make_is_a_usage_error(tmp_path, monkeypatch, capsys):
    # a name too long for the file system ended the command with an OSError traceback from
    # the --out check; a folder whose parent reads as writable but refuses it (/proc, a
    # read-only mount seen by root) passed the check and failed with a traceback in the run
    long = tmp_path / ("a" * 300)  # beyond NAME_MAX (255) of common file systems
    for argv in (
        ["demo", "--out", str(long)],
        ["run", "stefan-front", "--smoke", "--out", str(long / "sub")],
        ["calibrate", "core", "--quick", "--out", str(long)],
        ["bench", "odil", "--out", str(long)],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert "argument --out: cannot use folder" in err and "Traceback" not in err, err

    def refused(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("pathlib.Path.mkdir", refused)
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--out", str(tmp_path / "new"), "--only"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot use folder" in err and "Read-only file system" in err, err
    monkeypatch.undo()
    # a folder that can be made is made and removed again at parse time (the command's
    # writer makes it), and an existing one is left as it is
    nested = tmp_path / "n1" / "n2"
    assert cli.build_parser().parse_args(["demo", "--out", str(nested)]).out == str(nested)
    assert not (tmp_path / "n1").exists()
    assert cli.build_parser().parse_args(["demo", "--out", str(tmp_path)]).out == str(tmp_path)
    assert tmp_path.is_dir()
