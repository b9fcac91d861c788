"""Argparse ``type=`` helpers shared by the example scripts: a bad command line is refused
as a usage error naming the option (exit status 2) before any work is done or anything is
written. ``--device``, ``--out`` and ``--seed`` use the same checks as ``bayesphys run``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .._bench import positive_int
from .._cli_args import device_arg as device
from .._cli_args import out_arg as out_dir
from .._cli_args import seed_arg as seed

__all__ = [
    "ExampleFailed",
    "add_out",
    "device",
    "float_in",
    "int_in",
    "nonnegative_float",
    "out_dir",
    "positive_int",
    "seed",
]


class ExampleFailed(RuntimeError):
    """A run that cannot go on for a reason the user can act on (the message says how, e.g.
    ``--proposals``): ``bayesphys run`` and the example scripts print it and exit with status 1
    instead of a traceback; ``main()`` called from Python raises it."""


def run_script(main: Callable[[], dict]) -> dict:
    """Run an example's ``main()`` as a script: an :class:`ExampleFailed`, or an optional
    package not installed, ends the process with its message on stderr and exit status 1 (no
    traceback). Standard output prints on a console whose encoding lacks a character of the
    results (:func:`~bayesphys._console.tolerant_stdout`)."""
    from .._checks import MissingPackage
    from .._console import tolerant_stdout

    tolerant_stdout()
    try:
        return main()
    except (ExampleFailed, MissingPackage) as err:  # an optional package: named, no traceback
        raise SystemExit(f"error: {err}") from None


def add_out(ap: argparse.ArgumentParser, name: str) -> None:
    """Add ``--out`` to ``ap``: the output folder, ``bayesphys-out/<name>`` by default (every
    example writes into a folder of its own name), shown in ``--help``."""
    ap.add_argument(
        "--out",
        type=out_dir,
        default=f"bayesphys-out/{name}",
        metavar="DIR",
        help="output folder; default: %(default)s",
    )


def float_in(
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = True,
    hi_open: bool = True,
    finite: bool = True,
) -> Callable[[str], float]:
    """An argparse ``type``: a float in the interval from ``lo`` to ``hi`` (open ends by
    default; NaN always refused, infinities unless ``finite`` is false)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    interval = f"{left}{lo:g}, {hi:g}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = (
            not math.isnan(value)
            and (math.isfinite(value) or not finite)
            and (lo < value if lo_open else lo <= value)
        )
        ok = ok and (value < hi if hi_open else value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected a {'finite ' if finite else ''}number in {interval}, received {text!r}"
            )
        return value

    parse.__name__ = f"float in {interval}"
    return parse


nonnegative_float = float_in(0.0, lo_open=False)


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type``: an int in ``[lo, hi]`` (a bound that keeps a run within memory)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lo - 1
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an int in [{lo}, {hi}], received {text!r}")
        return value

    parse.__name__ = f"int in [{lo}, {hi}]"
    return parse
