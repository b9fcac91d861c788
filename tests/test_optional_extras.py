"""Without an optional extra (``atlas`` = nilearn, ``distributed`` = ray / dask), what needs it
is refused at call time, before any work or file, with a message naming the extra to install;
the command line prints that message without a traceback. The extras are hidden here, not
uninstalled: ``sys.modules[name] = None`` makes ``import name`` fail and ``find_spec`` say absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayesphys import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def without(monkeypatch):
    """Hide the given top-level packages (and their submodules) from this process."""

    def hide(*names):
        for name in names:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, key)
            monkeypatch.setitem(sys.modules, name, None)

    return hide


@pytest.fixture
def no_atlas(without):
    """nilearn hidden, and the MNI maps a test before may have read forgotten."""
    from bayesphys.problems import glioma

    without("nilearn")
    glioma._mni_arrays.cache_clear()
    yield
    glioma._mni_arrays.cache_clear()


@pytest.mark.parametrize("executor,hidden", [("ray", "ray"), ("dask", "distributed")])
def test_fit_many_names_a_missing_engine_before_making_its_out_folder(
    without, tmp_path, executor, hidden
):
    """The out folder was made (and left empty) before the engine's import failed, and the
    message named the module ('dask.distributed') rather than the executor asked for."""
    from bayesphys import fit_many
    from tests.distributed import _toy

    without(hidden)
    out = tmp_path / "fits"
    with pytest.raises(ImportError, match=rf"executor='{executor}' needs .*not installed") as e:
        fit_many(_toy.problems(1), _toy.build, executor=executor, out=out, progress=False)
    assert 'pip install "bayesphys[distributed]"' in str(e.value)
    assert not out.exists()


def test_the_default_executor_needs_no_extra(without):
    from bayesphys.distributed.executors import resolve_runner

    without("ray", "dask", "distributed")
    for name, expected in ((None, "local"), ("local", "local"), ("sequential", "sequential")):
        runner = resolve_runner(name, max_workers=1)
        runner.close()
        assert runner.name == expected


def test_run_cohort_on_a_missing_engine_is_one_line_without_a_traceback(without, tmp_path, capsys):
    without("ray")
    out = tmp_path / "cohort"
    rc = cli.main(["run", "cohort", "--smoke", "--executor", "ray", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("run cohort: executor='ray' needs 'ray'") and "Traceback" not in err
    assert 'pip install "bayesphys[distributed]"' in err
    assert not (out / "fits").exists()


def test_run_glioma_atlas_without_nilearn_names_the_extra_without_a_traceback(
    no_atlas, tmp_path, capsys
):
    rc = cli.main(["run", "glioma", "--smoke", "--atlas", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert err.startswith("run glioma: mni_atlas needs nilearn")
    assert 'pip install "bayesphys[atlas]"' in err
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("quick", [False, True])
def test_bench_odil_only_b2_without_nilearn_is_refused_before_any_work(
    no_atlas, tmp_path, capsys, quick
):
    """It ran 'B2 done in 0.0 s' with status 0, writing a 'not run' row; a full run replaced
    the B2 and atlas B4 rows of the results file (the committed one without --out) with it."""
    old = tmp_path / "odil.json"
    old.write_text('{"rows": [], "command": "x"}')
    argv = ["bench", "odil", *(["--quick"] if quick else []), "--only", "B2"]
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert 'pip install "bayesphys[atlas]"' in err and "--only B0,B1,B3,B6" in err
    assert old.read_text() == '{"rows": [], "command": "x"}'


def test_the_cohort_script_names_a_missing_engine_without_a_traceback(tmp_path):
    code = (
        "import runpy, sys; sys.modules['ray'] = None; "
        f"sys.argv = ['cohort.py', '--smoke', '--executor', 'ray', '--out', {str(tmp_path)!r}]; "
        f"runpy.run_path({str(ROOT / 'examples' / 'cohort.py')!r}, run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("error: executor='ray' needs 'ray'"), res.stderr
    assert "Traceback" not in res.stderr


def test_every_module_imports_without_the_extras():
    """``import bayesphys`` and each of its modules, with nilearn, ray, dask and mkdocs absent."""
    code = (
        "import sys\n"
        "for m in ('nilearn', 'ray', 'dask', 'distributed', 'mkdocs', 'mkdocstrings'):\n"
        "    sys.modules[m] = None\n"
        "import importlib, pkgutil, bayesphys\n"
        "names = [m.name for m in pkgutil.walk_packages(bayesphys.__path__, 'bayesphys.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) > 100


def test_an_unwritable_home_does_not_end_a_command(tmp_path):
    """ArviZ 0.x makes a folder under the user's cache folder at its first import: with HOME
    unwritable (here a file, which no user, root included, can make folders in) every command
    that wrote InferenceData ended in an OSError traceback."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    out = tmp_path / "out"
    code = (
        "import os, sys; from bayesphys import cli; "
        f"rc = cli.main(['run', 'tutorial-arviz', '--smoke', '--out', {str(out)!r}]); "
        "print('XDG', os.environ.get('XDG_CACHE_HOME')); sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "HOME": str(home)}
    env.pop("XDG_CACHE_HOME", None)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[-1] == "XDG None"  # the variable is left as it was
    assert list(out.glob("*.nc"))


def test_torchrun_variables_with_bad_values_are_named(monkeypatch, tmp_path, capsys):
    """A negative LOCAL_RANK reached torch as the device cuda:-1 (or the group's rendezvous);
    the DDP example read WORLD_SIZE with a bare int() ("invalid literal for int()")."""
    from bayesphys.distributed import ddp
    from bayesphys.examples import ddp_training

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "-1")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=r"^LOCAL_RANK: expected an integer .* >= 0, received"):
        ddp.init_distributed(device="cpu")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(SystemExit) as exc:
        ddp_training.main(["--smoke", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2
    assert "WORLD_SIZE: expected an integer environment variable, received 'two'" in (
        capsys.readouterr().err
    )


@pytest.fixture
def read_only_results(monkeypatch):
    """The checkout's benchmarks/results/ and docs/img/ read-only, as in a shared install."""
    real = os.access

    def access(path, mode, *a, **k):
        if str(path).endswith(("results", "img")) and mode & os.W_OK:
            return False
        return real(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)


def test_a_full_bench_into_a_read_only_checkout_is_refused_before_the_work(
    read_only_results, monkeypatch, tmp_path, capsys
):
    """It ran the whole benchmark (hours for some) and failed at the write, with a traceback."""
    marker = tmp_path / "ran"
    script = tmp_path / "toy.py"
    script.write_text(f"def main(argv):\n    open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setattr(cli, "_bench_script", lambda *a, **k: script)
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "odil"])
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 2 and not marker.exists()
    assert "benchmarks/results cannot be written" in err and "pass --out DIR" in err
    assert cli.main(["bench", "odil", "--out", str(tmp_path / "o")]) == 0  # --out: runs
    assert marker.exists()


def test_a_full_calibrate_into_a_read_only_checkout_is_refused_before_the_work(
    read_only_results, monkeypatch, capsys
):
    from bayesphys.diagnostics import suite

    calls = []
    monkeypatch.setattr(suite, "_component_rows", lambda *a: calls.append(a) or [])
    with pytest.raises(SystemExit) as exc:
        cli.main(["calibrate", "core"])
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 2 and calls == []
    assert "cannot be written" in err and "pass --out DIR" in err


def test_the_quick_odil_bench_of_every_benchmark_skips_the_atlas_ones_with_a_note(
    no_atlas, monkeypatch, tmp_path, capsys
):
    import json

    from bayesphys._bench import script_module

    mod = script_module(str(ROOT / "benchmarks" / "odil.py"))
    for name in ("bench_b0", "bench_b1_b4", "bench_b3", "bench_b6"):  # not the atlas ones
        monkeypatch.setattr(mod, name, lambda quick, dev: [])
    path = mod.main(["--quick", "--out", str(tmp_path)])
    assert "skip B2, B5: mni_atlas needs nilearn" in capsys.readouterr().err
    rows = json.loads(path.read_text())["rows"]
    assert [r["problem"] for r in rows] == ["B2", "B5"]
    assert all(r["note"].startswith("not run: mni_atlas needs nilearn") for r in rows)
