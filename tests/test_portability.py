"""What differs on macOS and Windows, simulated here (review of 2026-12-03; each test failed
before): the loopback interface's name, Windows' refusal to flush a read-only handle, its cap
of 61 pool workers, text files read in the locale's encoding, and consoles that cannot print
every character of a table."""

from __future__ import annotations

import ast
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayesphys"


def test_gloo_gets_the_loopback_name_this_system_has(monkeypatch):
    """A fixed ``lo`` made every local DDP run fail at rendezvous on macOS (``lo0``)."""
    import socket

    from bayesphys.distributed._process_group import _loopback_interface

    for names, expected in [(["lo", "eth0"], "lo"), (["lo0", "en0"], "lo0"), (["Ethernet"], None)]:
        table = [(i + 1, n) for i, n in enumerate(names)]
        monkeypatch.setattr(socket, "if_nameindex", lambda table=table: table)
        assert _loopback_interface() == expected


@pytest.mark.skipif(os.name != "posix", reason="simulates Windows' fsync with fcntl")
def test_records_are_flushed_through_a_handle_windows_accepts(tmp_path, monkeypatch):
    """fit_many's records opened their temporaries read-only to flush them; Windows refuses
    that (EBADF), and every record was left unwritten there."""
    import fcntl

    from bayesphys.distributed import fit_many
    from tests.distributed import _toy

    real = os.fsync

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd)

    monkeypatch.setattr(os, "fsync", windows_fsync)
    monkeypatch.setattr("bayesphys._files._WINDOWS", True)
    res = fit_many(
        _toy.problems(1),
        _toy.build,
        executor="sequential",
        seed=7,
        num_samples=5,
        progress=False,
        fit_kwargs={"steps": 2},
        out=tmp_path,
    )
    monkeypatch.undo()
    assert list(res.table["status"]) == ["ok"] and not res.table["write_error"].any()
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".nc"]


def test_the_default_pool_keeps_to_windows_61_workers(monkeypatch):
    from bayesphys.distributed.executors import resolve_runner

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    runner = resolve_runner(None)
    try:
        assert runner.workers == 61
    finally:
        runner.close()


def _text_io_without_encoding(path: Path) -> list[str]:
    """Calls that read or write text in the locale's encoding (cp1252 on Windows)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name in ("read_text", "write_text"):
            found.append(f"{path.name}:{node.lineno} {name}")
        elif name == "open" and isinstance(node.func, ast.Name):
            mode = node.args[1] if len(node.args) > 1 else None
            mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
            text = mode is None or (isinstance(mode, ast.Constant) and "b" not in mode.value)
            if text:
                found.append(f"{path.name}:{node.lineno} open")
    return found


def test_text_files_are_read_and_written_as_utf8():
    """docs/benchmarks.md (with its ρ) was read in the locale's encoding: a UnicodeDecodeError
    on Windows, or a page written back garbled."""
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _text_io_without_encoding(p)]
    assert found == []


def test_a_console_that_lacks_a_tables_characters_still_prints_it():
    """An empty cell prints as an en dash, which latin-1, cp437 or cp932 consoles cannot
    encode: the command failed with UnicodeEncodeError. It prints as an ASCII dash."""
    code = (
        "import sys; from bayesphys._bench import rows_table\n"
        "from bayesphys._console import tolerant_stdout\n"
        "tolerant_stdout()\n"
        "print(rows_table([{'method': 'a', 'rmse': 0.1}, {'method': 'b', 'rmse': None}]))"
    )
    env = dict(os.environ, PYTHONIOENCODING="latin-1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert b"| b | - |" in out.stdout
