"""``docs/make_gallery.py --only``: reruns those examples and keeps the rest of the page."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from bayesphys._bench import repo_root


def _gallery(tmp_path, monkeypatch, calls):
    (tmp_path / "docs").mkdir()
    shutil.copy(repo_root() / "docs" / "make_gallery.py", tmp_path / "docs" / "make_gallery.py")
    spec = importlib.util.spec_from_file_location("_gallery", tmp_path / "docs" / "make_gallery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Example:
        def __init__(self, name):
            self.name = name

        def main(self, argv):
            calls.append(self.name)
            out = argv[argv.index("--out") + 1]
            (tmp_path / out / "fig.png").write_bytes(b"png")

    monkeypatch.setattr(mod, "available", lambda: {"alpha": "A", "beta-two": "B"})
    monkeypatch.setattr(mod, "load", Example)
    return mod


def test_only_keeps_the_other_examples_sections(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    mod = _gallery(tmp_path, monkeypatch, calls)
    assert mod.main([]) == 0
    page = tmp_path / "docs" / "gallery.md"
    assert "## `alpha`" in page.read_text() and "## `beta-two`" in page.read_text()
    mod.main(["--only", "beta_two"])  # underscores as `bayesphys run` accepts them
    text = page.read_text()
    assert calls == ["alpha", "beta-two", "beta-two"]
    assert "## `alpha`" in text and "gallery/alpha/fig.png" in text and "## `beta-two`" in text
    # each smoke-run image says under it that it is an undertrained --smoke run
    after = text.split("gallery/alpha/fig.png)", 1)[1].lstrip("\n").splitlines()[0]
    assert after.startswith("*A `--smoke` run") and after.endswith("*")
    assert "bayesphys run alpha" in after
    with pytest.raises(SystemExit) as err:
        mod.main(["--only", "gamma"])  # a typo is refused, the page is left alone
    assert err.value.code == 2 and "--only: unknown" in capsys.readouterr().err
    assert page.read_text() == text


def test_a_failing_example_is_on_the_page_and_in_the_exit_status(tmp_path, monkeypatch):
    calls: list[str] = []
    mod = _gallery(tmp_path, monkeypatch, calls)

    def broken(name):
        if name == "alpha":
            raise RuntimeError("boom")

    class Failing:
        def __init__(self, name):
            self.name = name

        def main(self, argv):
            broken(self.name)

    monkeypatch.setattr(mod, "load", Failing)
    assert mod.main([]) == 1
    assert "failed: RuntimeError: boom" in (tmp_path / "docs" / "gallery.md").read_text()


def test_only_also_runs_an_example_the_page_does_not_have_yet(tmp_path, monkeypatch):
    calls: list[str] = []
    mod = _gallery(tmp_path, monkeypatch, calls)
    assert mod.main([]) == 0
    monkeypatch.setattr(mod, "available", lambda: {"alpha": "A", "beta-two": "B", "gamma": "C"})
    assert mod.main(["--only", "alpha"]) == 0
    text = (tmp_path / "docs" / "gallery.md").read_text()
    assert calls == ["alpha", "beta-two", "alpha", "gamma"]
    assert "## `beta-two`" in text and "## `gamma`" in text and "gallery/gamma/fig.png" in text


def test_an_example_without_figures_leaves_no_folder(tmp_path, monkeypatch):
    calls: list[str] = []
    mod = _gallery(tmp_path, monkeypatch, calls)

    class NoFigure:
        def __init__(self, name):
            self.name = name

        def main(self, argv):
            out = tmp_path / argv[argv.index("--out") + 1]
            (out / "fits").mkdir()
            (out / "fits" / "summary.json").write_text("{}")

    monkeypatch.setattr(mod, "load", NoFigure)
    assert mod.main([]) == 0
    assert not (tmp_path / "docs" / "gallery" / "alpha").exists()
    assert "## `alpha`" in (tmp_path / "docs" / "gallery.md").read_text()
