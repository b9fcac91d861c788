"""Argparse ``type=`` checks of the options that ``bayesphys`` and every example script share
(``--device``, ``--out``, ``--seed``): a bad value is a usage error naming the option, before
any work is done or anything is written."""

from __future__ import annotations

import argparse

from ._files import out_folder_arg

__all__ = ["device_arg", "out_arg", "seed_arg"]


def device_arg(text: str) -> str:
    """An argparse ``type`` for ``--device``: refuse an unknown or unavailable device at
    parse time (``resolve_device``'s message), keep the text for the command it is passed to."""
    from ._device import resolve_device

    try:
        resolve_device(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


out_arg = out_folder_arg  # the argparse type of --out


def seed_arg(text: str) -> int:
    """An argparse ``type`` for ``--seed``: an integer with ``|seed| < 2**43``, the range every
    component and example takes (torch alone takes more, but e.g. the cohort example derives
    a seed per patient from it: a larger seed passed the parser and failed in the run with a
    traceback)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None
    from ._checks import SEED_BOUND

    if not -SEED_BOUND < seed < SEED_BOUND:
        raise argparse.ArgumentTypeError(
            f"expected an integer with |seed| < 2**43, received {text!r}"
        )
    return seed
