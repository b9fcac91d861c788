"""Standard output that prints the package's tables and messages on any console.

The tables and messages of the ``bayesphys`` command, of the example scripts and of the
benchmark scripts hold a few characters outside ASCII: en and em dashes (an empty cell), a
plus-minus sign (``mean ± sd``), a middle dot, Greek letters, and the names (paths, problem
ids) a user gives. A console whose encoding lacks them (``PYTHONIOENCODING=ascii``, latin-1,
cp437, a ``C`` / ``POSIX`` locale with ``PYTHONUTF8=0``) raised ``UnicodeEncodeError`` at
the first one, often while printing the result of a long run. :func:`tolerant_stdout`
makes such a stream print them as ASCII instead (:func:`ascii_fallback`: ``±`` as ``+-``,
``–`` as ``-``, ``é`` as ``e``, anything else as ``?``); characters that stand for bytes of a
name the operating system gave undecoded (Python's ``surrogateescape``) are written as those
bytes, as before.

A reader that leaves early (``python examples/tutorial_arviz.py | head -1``) closes the pipe
that is standard output: :func:`closed_stdout` tells that apart from another pipe breaking,
:func:`discard_stdout` sends what is still buffered nowhere, and :func:`console_script`, the
entry point of every example and benchmark script, ends such a script quietly with status 141
(as a process killed by SIGPIPE), as the ``bayesphys`` command does.
"""

from __future__ import annotations

import codecs
import errno
import os
import select
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ERRORS",
    "ascii_fallback",
    "closed_stdout",
    "console_script",
    "discard_stdout",
    "tolerant_stdout",
]

#: the name of the error handler :func:`tolerant_stdout` gives standard output
ERRORS = "bayesphys-ascii"

# characters of the package's own output (and a few common neighbours) whose ASCII spelling
# is not their accent-free letter
_SPELLED = {
    "\u2013": "-",  # en dash
    "\u2014": "--",  # em dash
    "\u2212": "-",  # minus sign
    "\u00b1": "+-",
    "\u00b7": "-",  # middle dot
    "\u00d7": "x",
    "\u00a7": "sec. ",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\u00df": "ss",
    "\u2026": "...",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2192": "->",
    "\u2190": "<-",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2248": "~",
    "\u2229": "&",
    "\u00b5": "mu",
    "\u03b1": "alpha",
    "\u03b2": "beta",
    "\u03b3": "gamma",
    "\u03b4": "delta",
    "\u03b5": "eps",
    "\u03b8": "theta",
    "\u03bb": "lambda",
    "\u03bc": "mu",
    "\u03c0": "pi",
    "\u03c1": "rho",
    "\u03c3": "sigma",
    "\u03c4": "tau",
}

# encodings that hold every character: their streams are left as they are
_UNIVERSAL = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
# error handlers that raise on a character the encoding lacks (surrogateescape raises on any
# character but the ones standing for undecoded bytes); others were chosen on purpose
_RAISING = ("strict", "surrogateescape")


def ascii_fallback(char: str) -> str:
    """The ASCII spelling of the single character ``char``: its entry in a short table of
    typographic and Greek characters (``"±"`` -> ``"+-"``, ``"σ"`` -> ``"sigma"``), else its
    letters without accents (``"é"`` -> ``"e"``; a combining accent on its own, as in a name
    written decomposed, ``"e\\u0301"``, -> ``""``), else ``"?"``."""
    if char in _SPELLED:
        return _SPELLED[char]
    if unicodedata.combining(char):
        return ""
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
    return plain or "?"


def _handler(err: UnicodeError) -> tuple[str | bytes, int]:
    """The codec error handler :data:`ERRORS`: the first character that could not be
    encoded, as the byte it stands for (``U+DC80`` .. ``U+DCFF``, as ``surrogateescape``
    writes it) or as :func:`ascii_fallback` spells it."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    char = err.object[err.start]
    if 0xDC80 <= ord(char) <= 0xDCFF:
        return bytes([ord(char) - 0xDC00]), err.start + 1
    return ascii_fallback(char), err.start + 1


codecs.register_error(ERRORS, _handler)


def _canonical(encoding: Any) -> str:
    try:
        return codecs.lookup(str(encoding)).name
    except LookupError:
        return ""


def tolerant_stdout(stream: Any = None) -> None:
    """Give ``stream`` (default ``sys.stdout``) the error handler :data:`ERRORS` when its
    encoding lacks characters (any but UTF-8, -16, -32) and its handler raises on them
    (``strict``, or ``surrogateescape`` in a ``C`` locale); a stream with another handler
    (chosen on purpose) or that cannot be reconfigured is left as it is. For a console
    command or script as it starts: a library call leaves its caller's stdout alone."""
    stream = sys.stdout if stream is None else stream
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None or getattr(stream, "errors", "strict") not in _RAISING:
        return
    if _canonical(getattr(stream, "encoding", None) or "") in _UNIVERSAL:
        return
    try:
        reconfigure(errors=ERRORS)
    except (ValueError, OSError):  # a stream that cannot be reconfigured: as it is
        pass


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports POLLERR on
    such a pipe's write end on Linux, POLLHUP on the BSDs and macOS); ``False`` for a replaced
    stdout without a descriptor. Where ``poll`` does not exist (Windows) a broken pipe is
    taken to be stdout's."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    gone = select.POLLERR | select.POLLHUP
    return any(events & gone for _, events in poller.poll(0))


def closed_stdout(err: BaseException) -> bool:
    """Whether ``err`` is standard output's reader having left: a broken pipe (on Windows
    often reported as ``EINVAL``) while stdout is a pipe closed at its other end. A pipe to a
    helper process that broke is a real error: ``False``."""
    if not isinstance(err, OSError):
        return False
    broken = isinstance(err, BrokenPipeError) or (os.name == "nt" and err.errno == errno.EINVAL)
    return broken and _stdout_reader_gone()


def discard_stdout() -> None:
    """Point standard output's descriptor at the null device: what is still buffered for a
    closed pipe goes nowhere (flushing it at exit raised the error a second time)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)  # stdout keeps its copy


@contextmanager
def console_script() -> Iterator[None]:
    """The body of a script's ``if __name__ == "__main__":`` block: standard output made
    tolerant (:func:`tolerant_stdout`), flushed at the end, and a reader that left early
    (:func:`closed_stdout`) ends the script quietly with ``SystemExit(141)`` instead of a
    ``BrokenPipeError`` traceback and status 1."""
    tolerant_stdout()
    try:
        yield
        sys.stdout.flush()  # a closed pipe found here, not in the flush at exit
    except OSError as err:
        if not closed_stdout(err):
            raise
        discard_stdout()
        raise SystemExit(141) from None
