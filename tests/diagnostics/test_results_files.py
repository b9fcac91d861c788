"""Results files survive a failed write, and an unreadable calibration file is kept aside."""

from __future__ import annotations

import json
import os
import warnings

import pytest

from bayesphys import _files, cli
from bayesphys._bench import write_results
from bayesphys.diagnostics import suite
from bayesphys.diagnostics.suite import _merge


def test_a_failed_results_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = write_results("toy", [{"a": 1}], quick=True, command="c", out=tmp_path)
    before = path.read_text()

    real = _files.Path.write_text

    def cut_short(tmp, text, encoding="utf-8"):
        real(tmp, text[:10], encoding=encoding)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.Path, "write_text", cut_short)
    with pytest.raises(OSError, match="No space"):
        write_results("toy", [{"a": 2}], quick=True, command="c", out=tmp_path)
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]  # no temporary left


def test_an_unreadable_calibration_file_is_moved_aside_not_overwritten(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"rows": [{"setting": {"component": "core"}, "x": 1}')  # cut short
    # a RuntimeWarning a caller can catch (it was a print to stderr)
    with pytest.warns(RuntimeWarning, match="moved it to"):
        rows, figs = _merge(path, "gp_pde", [{"setting": {"component": "gp_pde"}}])
    assert rows == [{"setting": {"component": "gp_pde"}}] and figs == {}
    (aside,) = tmp_path.glob("calibration.json.unreadable-*")
    assert aside.read_text().startswith('{"rows"') and not path.exists()
    with pytest.raises(json.JSONDecodeError):
        json.loads(aside.read_text())


@pytest.mark.parametrize(
    "text",
    [
        '{"rows": [], "figures": ["a"]}',
        "[]",
        '{"rows": [1]}',
        '{"rows": {}}',
        '{"rows": [{"setting": 3}]}',
    ],
)
def test_a_calibration_file_of_another_layout_is_moved_aside(tmp_path, text):
    """Valid JSON of another shape raised an AttributeError after the run's work, and the
    run's rows were never written."""
    path = tmp_path / "calibration.json"
    path.write_text(text)
    with pytest.warns(RuntimeWarning, match=r"could not read .*ValueError: expected"):
        rows, figs = _merge(path, "gp_pde", [{"setting": {"component": "gp_pde"}}])
    assert rows == [{"setting": {"component": "gp_pde"}}] and figs == {}
    (aside,) = tmp_path.glob("calibration.json.unreadable-*")
    assert aside.read_text() == text and not path.exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names descriptors via /proc")
def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = _files.os.fsync, _files.os.replace

    def fsync(fd):
        # the file synced is the temporary one, still under its own name
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(_files.os, "fsync", fsync)
    monkeypatch.setattr(_files.os, "replace", replace)
    _files.atomic_write_text(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").read_text() == "{}"
    assert [e[0] for e in events] == ["fsync", "replace"]  # on disk before the rename
    assert events[0][1] == events[1][1] != "a.json"  # the temporary file is the one synced


def test_the_unreadable_file_warning_points_at_the_user_line(tmp_path, monkeypatch):
    """From run_calibration and from the bayesphys command's main (it named cli.py)."""
    monkeypatch.setattr(suite, "load_hook", lambda component: None)  # a 'not calibrated' row
    path = tmp_path / "calibration.json"
    for run in (
        lambda: suite.run_calibration("meta_fm", quick=True, out=tmp_path),
        lambda: cli.main(["calibrate", "meta_fm", "--quick", "--out", str(tmp_path)]),
    ):
        path.write_text('{"rows": [')  # cut short
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            run()
        got = [w for w in rec if "moved it to" in str(w.message)]
        assert len(got) == 1 and issubclass(got[0].category, RuntimeWarning)
        assert got[0].filename == __file__
