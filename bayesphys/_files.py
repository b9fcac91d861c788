"""Atomic file writes shared by checkpoints, netCDF exports and benchmark results.

:func:`atomic_write` writes through a temporary file beside the real target and renames it
into place (flushed to disk first), so a write that fails part-way, or a crash, leaves the
previous file as it was and never a truncated one. A symlinked ``path`` is written through (the link
stays a link, its target is replaced), and an existing file keeps its permission bits. A temporary
file that a writer killed outright (SIGKILL, out of memory) left beside the target is removed by the
next write of that target on the same machine (:func:`sweep_stale_temporaries`).

:func:`closing_figures` closes the pyplot figures a demo or example draws, its save failing
included.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import socket
import stat
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "closing_figures",
    "host_token",
    "pid_alive",
    "save_figure",
    "sweep_stale_temporaries",
    "user_path",
    "out_folder_arg",
    "out_file_arg",
]


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing ancestor (the root, existing or not, ends the walk:
    a missing drive)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def user_path(value: str | os.PathLike, name: str = "path", *, file: bool = True) -> Path:
    """``value`` as a :class:`~pathlib.Path` with a leading ``~`` expanded (a literal ``~``
    folder was created in the working folder, and readers that expand it looked elsewhere).

    With ``file=True`` (a file to write) a name ending in a separator (a folder's name) is
    refused, and so is a path under an existing file (``a.txt/x.nc``), each by name;
    ``file=False`` (a file to read) only expands ``~``."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(f"{name}: expected a file path (str or Path), received {value!r}")
    text = os.fspath(value)
    path = Path(text).expanduser()
    if not file:
        return path
    if text.endswith(("/", os.sep)):
        raise ValueError(f"{name}: {text!r} ends with a separator; expected a file path")
    parent = _nearest_existing(path.absolute().parent)
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{name}: cannot use {text!r}: {parent} is a file, not a folder")
    return path


def _probe_folder(path: Path) -> None:
    """Make the missing folders of ``path`` (deepest last) and remove them again, deepest
    first; an existing ``path`` is left alone."""
    missing = []
    folder = path.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
    finally:
        for folder in reversed(made):
            folder.rmdir()


def out_folder_arg(text: str) -> str:
    """An argparse ``type`` for ``--out``: a folder that exists or can be created here (a
    file in the way, or a parent that is a file or not writable, is refused at parse time
    instead of failing after the work is done); a leading ``~`` is expanded. A folder that
    does not exist yet is made and removed again (the folders made, and only those), so that
    one the system refuses to make (a name too long for the file system, a folder under
    ``/proc``, a read-only mount that permission bits do not show, e.g. to root) is a usage
    error too, not a traceback after the run."""
    import argparse

    try:
        path = _checked_out_folder(text)
        _probe_folder(Path(path))
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise argparse.ArgumentTypeError(f"cannot use folder {text!r}: {why}") from None
    return path


def _checked_out_folder(text: str) -> str:
    """:func:`out_folder_arg`'s checks of ``text`` that need no folder made."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, received an empty string")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"expected a folder, received the file {text!r}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"folder {text!r} is not writable")
        return str(path)
    parent = _nearest_existing(path.absolute().parent)
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"cannot create folder {text!r}: {parent} does not exist")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create folder {text!r}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create folder {text!r}: {parent} is not writable")
    return str(path)


def out_file_arg(text: str) -> str:
    """An argparse ``type`` for an ``--out`` naming a results file: a path that is not empty
    (``""`` read as "no file" and wrote nothing, silently), not a folder nor a folder's name
    ending in a separator (``results/`` of a folder not made yet was written as a file
    ``results``), in a folder that exists or can be created here (:func:`out_folder_arg`'s
    checks, at parse time instead of after the work is done); a leading ``~`` is expanded."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, received an empty string")
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"expected a file path, received {text!r}, which ends with a separator (a folder)"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file path, received the folder {text!r}")
    out_folder_arg(str(path.parent))
    return str(path)


@functools.lru_cache(maxsize=1)
def host_token() -> str:
    """This machine's name, and the process-id namespace its pids belong to, as one dot-free
    token: temporary names carry it (they are split at dots), so that a writer never takes
    a file on a shared disk for one of its own machine. The name alone was not enough:
    containers of one pod (or run with the host's name) share a name but not their pids, and
    ``a.b`` and ``a-b`` read the same once made dot-free; a short hash of the exact name and
    the namespace (``/proc/self/ns/pid`` where it exists) tells them apart."""
    name = socket.gethostname()
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux: the name alone
        namespace = ""
    digest = hashlib.blake2b(f"{name}|{namespace}".encode(), digest_size=4).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9-]', '-', name) or 'host'}-{digest}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (POSIX only: on Windows
    ``os.kill(pid, 0)`` would end the process); a pid no process can have (too large for the
    system call) counts as alive, so that its file is left alone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except (OverflowError, ValueError):  # not a pid of this system: not ours to judge
        return True
    return True


def sweep_stale_temporaries(
    folder: Path, pattern: re.Pattern[str], glob: str = ".*.tmp"
) -> list[str]:
    """Remove the temporary files in ``folder`` that writers on this machine left when they
    were killed before renaming them into place (SIGKILL, out of memory: no ``finally`` ran),
    so that they do not pile up, a full-size copy each; returns the names removed.

    A file is removed only when its name (among those matching ``glob``) matches ``pattern``,
    whose named groups ``host`` and ``pid`` say who wrote it, ``host`` is this machine and
    process ``pid`` no longer exists here. Files of live processes (this one included) and of
    other machines (``folder`` on a shared disk) are left alone; so is a file that cannot be
    removed. POSIX only: elsewhere nothing is removed."""
    if os.name != "posix":
        return []
    removed = []
    host, me = host_token(), os.getpid()
    try:
        candidates = list(Path(folder).glob(glob))
    except OSError:  # an unreadable folder: the write itself reports what is wrong
        return []
    for path in candidates:
        m = pattern.fullmatch(path.name)
        if m is None or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid != me and not pid_alive(pid):
            try:
                path.unlink(missing_ok=True)
            except OSError:  # another user's file, a read-only folder: not this write's concern
                continue
            removed.append(path.name)
    return removed


def _temporaries_of(target: Path) -> tuple[re.Pattern[str], str]:
    """The name pattern (with ``host`` and ``pid`` groups) and glob of :func:`atomic_write`'s
    temporary files for ``target``, and for no other file: the four dot-free fields after the
    name fix where the name ends, so ``a``'s pattern never matches a temporary of ``a.b``."""
    name = target.name
    pattern = re.compile(
        rf"^\.{re.escape(name)}\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{{12}}\.tmp$"
    )
    return pattern, f".{glob_escape(name)}.*.tmp"  # glob's special characters taken literally


_WINDOWS = os.name == "nt"


def fsync_file(path: Path) -> None:
    """Flush ``path``'s contents to the disk (so a rename that follows never publishes a file
    a power loss could still take back). Windows flushes only through a writable handle (a
    read-only one raised EBADF there); elsewhere a read-only one, which needs no write
    permission (a umask without the owner's write bit)."""
    with open(path, "r+b" if _WINDOWS else "rb") as fh:
        os.fsync(fh.fileno())


# targets whose stale temporaries this process has swept (a checkpoint rewritten every epoch
# into a folder of thousands of files scanned the folder on every write), the most recently
# written last. Bounded: the oldest are forgotten (it held up to 100,000 paths, ~75 MB, in a
# notebook saving to new folders); a forgotten target is only swept again
_SWEPT: OrderedDict[Path, None] = OrderedDict()
_SWEPT_MAX = 4096
_SWEPT_LOCK = threading.Lock()


def _swept_before(target: Path) -> bool:
    """Whether this process swept ``target``'s folder for it already (it becomes the most
    recent target)."""
    with _SWEPT_LOCK:
        if target in _SWEPT:
            _SWEPT.move_to_end(target)
            return True
        return False


def _record_swept(target: Path) -> None:
    with _SWEPT_LOCK:
        _SWEPT[target] = None
        while len(_SWEPT) > _SWEPT_MAX:
            _SWEPT.popitem(last=False)


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh name beside ``path``'s real target, then rename it there.

    Returns ``path`` as given. ``write`` must create the file itself (so it gets the usual
    permissions of a new file when there was none). The temporary name carries this machine
    and process (``.<name>.<host>.<pid>.<random>.tmp``); those of this target that a writer
    on this machine left when it was killed mid-write are removed at this process's first
    write to the target (a long run killed while checkpointing left a hidden full-size copy
    each time)."""
    target = Path(os.path.realpath(Path(path).expanduser()))  # a symlink: write its target
    if not _swept_before(target):  # once per target and process: a scan costs O(files)
        sweep_stale_temporaries(target.parent, *_temporaries_of(target))
        _record_swept(target)
    tmp = target.with_name(
        f".{target.name}.{host_token()}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    )
    try:
        write(tmp)
        fsync_file(tmp)  # on disk before the rename makes it the file
        if target.exists():  # keep the file's permission bits (a fresh file has the umask's)
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        # torch's zip writer reports a full disk or a refused open as a RuntimeError ("enforce
        # fail at inline_container.cc ... unexpected pos"): an OSError too, here
        torch_io = isinstance(err, RuntimeError) and "inline_container" in str(err)
        if isinstance(err, OSError) or torch_io:
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            # named after the user's path (the message named the hidden temporary file)
            raise OSError(
                getattr(err, "errno", None) or errno.EIO,
                f"could not write {path} ({why.strip().splitlines()[0]}); any previous file "
                "there is unchanged",
            ) from err
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`: a failed write (a full
    disk, Ctrl-C) leaves the previous file whole."""
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig(path, **savefig_kwargs)`` through :func:`atomic_write`: an interrupted or
    failed save (Ctrl-C, a full disk) leaves any previous figure at ``path`` whole, never a
    truncated one. The format is read from ``path``'s suffix (``.png``, ``.pdf``, ``.svg``)
    unless ``format=`` is given."""
    path = Path(path).expanduser()
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".").lower() or None
    if fmt is None:
        raise ValueError(f"path: give a suffix (.png, .pdf, .svg) or format=, received {path}")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


# pyplot's list of open figures (and its "current figure") is one for the whole process
_PYPLOT = threading.RLock()


@contextmanager
def closing_figures() -> Iterator[None]:
    """Close every pyplot figure opened inside the ``with`` block when the block ends, a
    failure included (a refused save, Ctrl-C): a demo or example that failed after drawing
    left its figure registered with pyplot, holding its memory for the rest of the session.
    Figures open before the block (the caller's) stay open.

    pyplot's figure list and current figure are process-wide, so blocks in several threads
    run one after the other (before, a block ending in one thread closed the figure another
    thread's block was drawing, whose ``plt.gcf()`` then saved an empty figure). The block
    must only draw and save, never wait on another thread's block."""
    import matplotlib.pyplot as plt

    with _PYPLOT:
        before = set(plt.get_fignums())
        try:
            yield
        finally:
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
