"""Atomic file writes shared by checkpoints, netCDF exports and benchmark results.

:func:`atomic_write` writes through a temporary file beside the real target and renames it
into place (flushed to disk first), so a write that fails part-way, or a crash, leaves the
previous file as it was and never a truncated one. A symlinked ``path`` is written through (the link stays a link, its target is
replaced), and an existing file keeps its permission bits.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh name beside ``path``'s real target, then rename it there.

    Returns ``path`` as given. ``write`` must create the file itself (so it gets the usual
    permissions of a new file when there was none)."""
    target = Path(os.path.realpath(path))  # a symlink: replace its target, keep the link
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:  # on disk before the rename makes it the file
            os.fsync(fh.fileno())
        if target.exists():  # keep the file's permission bits (a fresh file has the umask's)
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`: a failed write (a full
    disk, Ctrl-C) leaves the previous file whole."""
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
