"""``bayesphys demo`` says on stderr what runs as it goes, and prints a failed component's
traceback there (the table keeps its one-line summary)."""

from __future__ import annotations

import types

import pytest

from bayesphys import _demo_core, cli


def _fake_components(monkeypatch):
    def ok_demo(out, device=None, seed=0):
        return [{"component": "gp_pde", "problem": "p", "metric": "m", "value": 1.0}]

    def bad_demo(out, device=None, seed=0):
        def deep_helper():
            raise RuntimeError("component broke " + "x" * 200)

        deep_helper()

    mods = {
        "gp_pde": types.SimpleNamespace(demo=ok_demo),
        "odil": types.SimpleNamespace(demo=bad_demo),
    }
    monkeypatch.setattr(cli, "_component_module", lambda comp, hook: mods.get(comp))
    monkeypatch.setattr(_demo_core, "demo", lambda out, device=None, seed=0: [])


def test_demo_reports_progress_and_failure_traceback_on_stderr(tmp_path, monkeypatch, capsys):
    _fake_components(monkeypatch)
    rc = cli.main(["demo", "--out", str(tmp_path), "--only", "gp_pde", "odil", "meta_fm"])
    assert rc == 1
    cap = capsys.readouterr()
    err = cap.err
    lines = err.splitlines()
    assert "demo: core ..." in lines
    assert any(x.startswith("demo: core done in ") and x.endswith(" s") for x in lines)
    assert "demo: gp_pde ..." in lines
    assert any(x.startswith("demo: gp_pde done in ") for x in lines)
    assert "demo: odil ..." in lines
    assert any(x.startswith("demo: odil FAILED after ") for x in lines)
    assert "demo: meta_fm skipped (not landed yet)" in lines
    # the failed component's whole traceback, on stderr, not cut at 120 characters
    assert "Traceback (most recent call last)" in err and "deep_helper" in err
    assert "x" * 200 in err
    # progress in order: each component starts after the previous one ended
    assert err.index("demo: gp_pde done") < err.index("demo: odil ...")
    # stdout keeps the table and the summary line
    assert "RuntimeError: component broke" in cap.out
    assert "wrote what finished" in cap.out
    assert "demo:" not in cap.out


def test_demo_runs_a_component_named_twice_once(tmp_path, monkeypatch, capsys):
    calls = []

    def demo_of(name):
        def demo(out, device=None, seed=0):
            calls.append(name)
            return [{"component": name, "problem": "p", "metric": "m", "value": 1.0}]

        return types.SimpleNamespace(demo=demo)

    mods = {"gp_pde": demo_of("gp_pde"), "odil": demo_of("odil")}
    monkeypatch.setattr(cli, "_component_module", lambda comp, hook: mods.get(comp))
    monkeypatch.setattr(_demo_core, "demo", lambda out, device=None, seed=0: [])
    argv = ["demo", "--out", str(tmp_path), "--only", "odil", "gp_pde", "odil", "gp_pde"]
    assert cli.main(argv) == 0
    assert calls == ["odil", "gp_pde"]  # each once, in the order first named
    out = capsys.readouterr().out
    assert sum(line.startswith("odil ") and " seconds " in line for line in out.splitlines()) == 1


def test_a_failing_core_demo_does_not_stop_the_components(tmp_path, monkeypatch, capsys):
    """The core demo failing ended the command with a traceback before any component ran
    (each component's failure is reported and the others go on); it is now one of them."""
    _fake_components(monkeypatch)

    def broken_core(out, device=None, seed=0):
        raise RuntimeError("core broke")

    monkeypatch.setattr(_demo_core, "demo", broken_core)
    assert cli.main(["demo", "--out", str(tmp_path), "--only", "gp_pde"]) == 1
    cap = capsys.readouterr()
    assert any(x.startswith("demo: core FAILED after ") for x in cap.err.splitlines())
    assert "demo: gp_pde ..." in cap.err.splitlines()
    assert "RuntimeError: core broke" in cap.out and "wrote what finished" in cap.out
    assert any(x.startswith("gp_pde ") and " seconds " in x for x in cap.out.splitlines())


def test_ctrl_c_prints_the_table_of_what_finished(tmp_path, monkeypatch, capsys):
    """Ctrl-C in a later component lost the table of the components that had finished (it
    is printed at the end); it is now printed, saying where it stopped, and the interrupt
    goes on to the caller."""
    _fake_components(monkeypatch)

    def interrupted(out, device=None, seed=0):
        raise KeyboardInterrupt

    mods = {
        "gp_pde": cli._component_module("gp_pde", "_demo"),  # the fake that finishes
        "odil": types.SimpleNamespace(demo=interrupted),
    }
    monkeypatch.setattr(cli, "_component_module", lambda comp, hook: mods.get(comp))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["demo", "--out", str(tmp_path), "--only", "gp_pde", "odil", "meta_fm"])
    cap = capsys.readouterr()
    assert "demo: interrupted during odil" in cap.err.splitlines()
    assert any(x.startswith("gp_pde ") and " seconds " in x for x in cap.out.splitlines())
    assert f"interrupted during odil: wrote what finished to {tmp_path.resolve()}" in cap.out
    assert "meta_fm" not in cap.out + cap.err  # nothing after the interrupt ran
