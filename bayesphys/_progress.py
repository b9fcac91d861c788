"""The progress bars of every bayesphys fit, made in one place.

A bar redraws at most every 0.1 s on a terminal and at most every 30 s when standard error is
not a terminal (a log file, a CI job), so a captured log grows with the run's time, not with
its number of steps (a 20 000-step fit wrote 2 000 redraws, 160 kB, into a log before), and
there each bar ends on a line of its own with its final count, nested bars included (each
is drawn on the current line, without the cursor movements that place it on a terminal).
Notebook bars (``tqdm.auto``'s widget) are left at tqdm's own settings, and a bar in an IPython
kernel without widgets is drawn as on a terminal. tqdm's environment
switches are honoured: ``TQDM_DISABLE=1`` turns every bar off (``progress=False`` on each call
does the same per call) and ``TQDM_MININTERVAL`` sets the redraw interval (both read when a
bar is made, so setting them after import works).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as _chosen
from tqdm.std import tqdm as _std_tqdm

from ._stack import user_stacklevel
from ._warning_types import BayesphysRuntimeWarning

__all__ = ["progress_bar"]

_TRUE = {"1", "true", "yes", "on"}
# redraw intervals (s): on a terminal, and on any other stream
_TTY_INTERVAL, _LOG_INTERVAL = 0.1, 30.0


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real stream
        return False


def _env_interval() -> float | None:
    """``TQDM_MININTERVAL`` as seconds (read here at each call: tqdm reads its environment
    once, when it is imported), or ``None`` when unset or not a number >= 0 (a value set but
    not such a number is named in a ``RuntimeWarning``; it was passed over silently)."""
    raw = os.environ.get("TQDM_MININTERVAL")
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if value >= 0:
        return value
    warnings.warn(
        f"TQDM_MININTERVAL: expected a number of seconds >= 0, received {raw!r}; the bars "
        "redraw at their default interval",
        BayesphysRuntimeWarning,
        stacklevel=user_stacklevel(),
    )
    return None


def progress_bar(iterable: Any = None, *, progress: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar (``kwargs`` as tqdm's) shown when ``progress`` is true and ``TQDM_DISABLE``
    is not set; its redraw interval follows the stream (module docstring).

    Postfixes should be set with ``refresh=False``: they then appear at the next redraw
    instead of forcing one (which bypasses the interval)."""
    stream = kwargs.pop("file", None) or sys.stderr
    env_off = os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE
    kwargs["disable"] = not progress or env_off
    # tqdm.auto's class is always its own; autonotebook's is tqdm.std's outside a notebook
    # with widgets; an IPython kernel without them (Jupyter, Spyder, qtconsole) is interactive
    # too, though its stream is no terminal
    log = _chosen is _std_tqdm and not _is_tty(stream) and "ipykernel" not in sys.modules
    if log:
        # a log keeps each bar's final state (a bar cleared on close left its first draw,
        # "0/N", as the last word on a finished fit)
        kwargs["leave"] = True
        # every bar on the current line: a bar opened inside another (an ensemble member's
        # steps under the member bar, a user's fit under an SBC bar) took tqdm's next free
        # position, drawn with newlines and cursor-up escapes that a log keeps as
        # "\x1b[A" and blank lines
        kwargs.setdefault("position", 0)
    if "mininterval" not in kwargs:
        env = _env_interval()
        if env is not None:
            kwargs["mininterval"] = env
        elif _chosen is _std_tqdm:
            kwargs["mininterval"] = _LOG_INTERVAL if log else _TTY_INTERVAL
        if "mininterval" in kwargs:
            # tqdm's monitor thread redraws a bar idle for maxinterval (10 s): keep it above
            kwargs.setdefault("maxinterval", max(10.0, 2 * kwargs["mininterval"]))
    return tqdm(iterable, file=stream, **kwargs)
