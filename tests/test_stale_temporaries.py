"""A writer killed outright (SIGKILL, out of memory) while writing through
:func:`~bayesphys._files.atomic_write` left its hidden temporary file beside the target for
good: later saves to the same path never removed it (a long run killed while checkpointing kept
a full-size copy each time). The next write of that target on this machine removes those of
dead processes, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bayesphys._files import host_token

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process checks are POSIX only")


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped): no process has it now."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def _save_checkpoint(path: Path) -> None:
    from bayesphys import save_checkpoint

    save_checkpoint(path, kind="toy", config={}, state={"w": torch.zeros(3)})


def _save_figure(path: Path) -> None:
    from matplotlib.figure import Figure

    from bayesphys._files import save_figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    save_figure(fig, path)


def _save_netcdf(path: Path) -> None:
    from bayesphys import build_inference_data, save_netcdf

    save_netcdf(build_inference_data(posterior={"u": torch.zeros(1, 4, 2)}), path)


@pytest.mark.parametrize(
    ("name", "save"),
    [("run.pt", _save_checkpoint), ("plot.png", _save_figure), ("draws.nc", _save_netcdf)],
)
def test_a_write_removes_the_temporaries_dead_writers_left_of_its_target(
    tmp_path: Path, name: str, save: Callable[[Path], None]
):
    host, dead = host_token(), _dead_pid()
    stale = tmp_path / f".{name}.{host}.{dead}.0123456789ab.tmp"
    live = tmp_path / f".{name}.{host}.{os.getpid()}.89abcdef0123.tmp"  # a write under way
    foreign = tmp_path / f".{name}.other-machine.{dead}.0123456789ab.tmp"  # a shared disk
    other_target = tmp_path / f".other-{name}.{host}.{dead}.0123456789ab.tmp"
    longer_name = tmp_path / f".{name}.x.{host}.{dead}.0123456789ab.tmp"  # ``<name>.x``'s
    for path in (stale, live, foreign, other_target, longer_name):
        path.write_bytes(b"half-written")
    save(tmp_path / name)
    assert (tmp_path / name).stat().st_size > 0
    assert not stale.exists()
    assert live.exists() and foreign.exists()
    assert other_target.exists() and longer_name.exists()
    assert len(list(tmp_path.glob(".*.tmp"))) == 4  # and its own temporary file is gone


def test_the_temporary_of_a_live_writer_survives_and_a_folder_of_many_is_swept(tmp_path):
    """A live process's file (not this one's) stays; every stale one of the target goes."""
    from bayesphys._files import atomic_write_text

    host = host_token()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".a.json.{host}.{sleeper.pid}.0123456789ab.tmp"
        live.write_text("{")
        stale = [tmp_path / f".a.json.{host}.{_dead_pid()}.{k:012x}.tmp" for k in range(3)]
        for path in stale:
            path.write_text("{")
        atomic_write_text(tmp_path / "a.json", "{}")
        assert live.exists()
        assert not any(path.exists() for path in stale)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_machines_whose_names_read_alike_or_that_share_a_name_get_other_tokens(monkeypatch):
    """The token was the name made dot-free: ``a.b`` and ``a-b`` (or two containers with one
    name but their own process ids) took each other's files for their own, and a live
    writer's temporary could be removed (review of 2026-12-03)."""
    import socket

    from bayesphys import _files

    tokens = {}
    real_stat = os.stat
    for name, namespace in [("a.b", 1), ("a-b", 1), ("a.b", 2)]:
        monkeypatch.setattr(socket, "gethostname", lambda name=name: name)
        monkeypatch.setattr(
            os,
            "stat",
            lambda p, *a, namespace=namespace, **k: (
                os.stat_result((0, namespace, 0, 0, 0, 0, 0, 0, 0, 0))
                if str(p) == "/proc/self/ns/pid"
                else real_stat(p, *a, **k)
            ),
        )
        _files.host_token.cache_clear()
        tokens[name, namespace] = _files.host_token()
        monkeypatch.undo()
    _files.host_token.cache_clear()
    assert len(set(tokens.values())) == 3, tokens
    assert all("." not in t for t in tokens.values())


def test_a_temporary_with_an_impossible_pid_is_left_and_the_write_succeeds(tmp_path: Path):
    """``os.kill`` raised OverflowError for a pid field too large for the system call, and
    every later write of that target failed (review of 2026-12-03)."""
    odd = tmp_path / f".run.pt.{host_token()}.{10**30}.0123456789ab.tmp"
    odd.write_bytes(b"")
    _save_checkpoint(tmp_path / "run.pt")
    assert (tmp_path / "run.pt").exists() and odd.exists()


def test_a_target_is_swept_once_per_process(tmp_path: Path, monkeypatch):
    """Every write scanned the folder: a checkpoint rewritten each epoch into a folder of
    thousands of files cost O(files) per write (review of 2026-12-03)."""
    from bayesphys import _files

    calls = []
    real = _files.sweep_stale_temporaries
    monkeypatch.setattr(
        _files, "sweep_stale_temporaries", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    for _ in range(3):
        _save_checkpoint(tmp_path / "run.pt")
    _save_checkpoint(tmp_path / "other.pt")
    assert len(calls) == 2


def test_the_swept_targets_stay_bounded(tmp_path: Path, monkeypatch):
    """One entry per distinct target written (~620 B each): a long process writing millions
    of files grew it without bound (review of 2026-12-03)."""
    from collections import OrderedDict

    from bayesphys import _files

    assert _files._SWEPT_MAX <= 10_000  # ~7 MB of paths at most
    monkeypatch.setattr(_files, "_SWEPT", OrderedDict())
    monkeypatch.setattr(_files, "_SWEPT_MAX", 3)
    for k in range(7):
        _files.atomic_write_text(tmp_path / f"f{k}.txt", "x")
    assert len(_files._SWEPT) == 3
    # the most recently written are kept (the set was cleared whole at its cap before, ~75 MB
    # of paths at 100,000 entries in a notebook saving to new folders): a rewrite of f4 makes
    # it the newest, so f5 is the one a new target pushes out
    _files.atomic_write_text(tmp_path / "f4.txt", "y")
    _files.atomic_write_text(tmp_path / "f7.txt", "x")
    names = [p.name for p in _files._SWEPT]
    assert names == ["f6.txt", "f4.txt", "f7.txt"]


def _sweep(folder: Path, name: str) -> list[str]:
    from bayesphys._files import _temporaries_of, sweep_stale_temporaries

    pattern, glob = _temporaries_of(folder / name)
    return sweep_stale_temporaries(folder, pattern, glob)


def test_a_temporary_that_cannot_be_removed_is_left_and_the_others_swept(tmp_path, monkeypatch):
    """Another user's file or a read-only folder: the sweep skips that file, not the rest."""
    host = host_token()
    stuck, gone = (tmp_path / f".a.pt.{host}.{_dead_pid()}.{k:012x}.tmp" for k in range(2))
    for path in (stuck, gone):
        path.write_bytes(b"half")
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name == stuck.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert _sweep(tmp_path, "a.pt") == [gone.name]
    assert stuck.exists() and not gone.exists()


def test_a_temporary_of_another_users_live_process_stays(tmp_path, monkeypatch):
    """``os.kill(pid, 0)`` on another user's process raises PermissionError: it is alive."""
    from bayesphys import _files

    stale = tmp_path / f".a.pt.{host_token()}.{_dead_pid()}.0123456789ab.tmp"
    stale.write_bytes(b"half")

    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_files.os, "kill", kill)
    assert _files.pid_alive(12345) is True
    assert _sweep(tmp_path, "a.pt") == [] and stale.exists()


def test_an_unreadable_folder_or_a_system_without_posix_processes_sweeps_nothing(
    tmp_path, monkeypatch
):
    """The write itself reports an unreadable folder; elsewhere than POSIX a pid cannot be
    probed safely (``os.kill`` would end the process), so nothing is removed."""
    from bayesphys import _files

    stale = tmp_path / f".a.pt.{host_token()}.{_dead_pid()}.0123456789ab.tmp"
    stale.write_bytes(b"half")

    def unreadable(self, pattern):
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "glob", unreadable)
        assert _sweep(tmp_path, "a.pt") == []
    with monkeypatch.context() as m:
        m.setattr(_files.os, "name", "nt")
        assert _sweep(tmp_path, "a.pt") == []
    assert stale.exists()
    assert _sweep(tmp_path, "a.pt") == [stale.name]


def test_the_host_token_without_a_pid_namespace_is_the_name_alone(monkeypatch):
    """Where ``/proc/self/ns/pid`` does not exist (not Linux) the token is made of the
    machine's name only: still dot-free, and the same in every process of the machine."""
    import hashlib
    import socket

    from bayesphys import _files

    real_stat = os.stat

    def stat(p, *a, **k):
        if str(p) == "/proc/self/ns/pid":
            raise FileNotFoundError(2, "No such file or directory", str(p))
        return real_stat(p, *a, **k)

    monkeypatch.setattr(socket, "gethostname", lambda: "lab.box")
    monkeypatch.setattr(os, "stat", stat)
    _files.host_token.cache_clear()
    try:
        token = _files.host_token()
    finally:
        monkeypatch.undo()
        _files.host_token.cache_clear()
    digest = hashlib.blake2b(b"lab.box|", digest_size=4).hexdigest()
    assert token == f"lab-box-{digest}"
