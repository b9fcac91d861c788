r"""B1 of the Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8): letters.

Glyphs rendered with matplotlib's bundled DejaVu Sans (:func:`letter_points`), target = glyph +
:math:`\mathcal N(0, 0.05^2)` then a random rotation, source = target +
:math:`\mathcal N(0, 0.5^2)`, index-paired (:func:`letters`). Train: 24 letters (A-Z without
X, Y) x 10 rotations; val "X" x 10; test "Y" x 10.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_int, check_real, check_seed
from ._common import _check_dtype, _rotation
from .pairs import PopulationPairs

__all__ = ["letters", "letter_points"]


def _font_path() -> str:
    from matplotlib import font_manager

    return font_manager.findfont("DejaVu Sans", fallback_to_default=True)


@lru_cache(maxsize=256)
def _has_glyph(char: str) -> bool:
    from matplotlib.ft2font import FT2Font

    return FT2Font(_font_path()).get_char_index(ord(char)) != 0


def _check_char(name: str, char: str) -> str:
    """``char`` (one alphabetic character) upper-cased, refused when its capital is not one
    character (``"ß"`` -> ``"SS"``, two glyphs) or DejaVu Sans has no glyph for it (rendered as
    the font's empty box)."""
    up = char.upper()
    if len(up) != 1:
        raise ValueError(
            f"{name}: {char!r} upper-cases to {up!r}, {len(up)} glyphs; expected letters whose "
            "capital is a single character"
        )
    if not _has_glyph(up):
        raise ValueError(
            f"{name}: DejaVu Sans has no glyph for {up!r} (it renders as the font's empty box)"
        )
    return up


@lru_cache(maxsize=64)
def _glyph(letter: str, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    path = _font_path()
    font = ImageFont.truetype(path, size)
    img = Image.new("L", (2 * size, 2 * size))
    ImageDraw.Draw(img).text((0, 0), letter, fill=255, font=font)
    arr = np.flipud(np.asarray(img))
    # np.indices gives (row, col) = (y, x); reverse to (x, y), keeping the point order
    pts = np.indices(arr.shape).T[arr.T > 0][:, ::-1].astype(np.float64)  # [n, 2] (x, y)
    if len(pts) < 2 or bool((pts.min(0) == pts.max(0)).any()):
        raise ValueError(
            f"size: {size} pt renders {letter!r} as {len(pts)} pixel(s) without extent along "
            "both axes; use a larger size (default 100)"
        )
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - lo) / (hi - lo)
    pts = (pts * 2 - 1) * 3
    ratio = (hi[0] - lo[0]) / (hi[1] - lo[1])
    if ratio < 1:
        pts[:, 0] *= ratio
    else:
        pts[:, 1] /= ratio
    return pts


def letter_points(letter: str, size: int = 100) -> Tensor:
    """Point cloud ``[n, 2]`` of a capital ``letter`` (DejaVu Sans, ``size`` pt, scaled to
    [-3, 3]); ``size`` an int large enough to render the glyph in two dimensions.

    ``letter`` is one alphabetic character, upper-cased; a letter whose capital is not one
    character (``"ß"``) or that DejaVu Sans has no glyph for is refused (``ValueError``), one
    that is not a ``str`` too (``TypeError``).
    """
    if not isinstance(letter, str):
        raise TypeError(
            f"letter: expected a str (a single letter), received {type(letter).__name__}"
        )
    if not (len(letter) == 1 and letter.isalpha()):
        raise ValueError(f"letter: expected a single letter, received {letter!r}")
    up = _check_char("letter", letter)
    size = check_int("size", size, minimum=1)
    return torch.from_numpy(_glyph(up, size).copy())


def _check_letters(name: str, chars: Any) -> str:
    if not (isinstance(chars, str) and chars and all(c.isalpha() for c in chars)):
        raise ValueError(f"{name}: expected a non-empty string of letters, received {chars!r}")
    for c in chars:
        _check_char(name, c)
    return chars


def _letter_split(chars: str, rotations: int, seed: int, tgt: float, src: float, dtype):
    dtype = torch.float64 if dtype is None else dtype  # None: the glyphs' float64
    gen = torch.Generator().manual_seed(seed)
    sources, targets, meta = [], [], []
    for ch in chars:
        base = letter_points(ch).to(dtype)
        for _ in range(rotations):
            x1 = base + tgt * torch.randn(base.shape, generator=gen, dtype=dtype)
            theta = 2 * math.pi * torch.rand((), generator=gen, dtype=dtype)
            x1 = x1 @ _rotation(theta).mT
            x0 = x1 + src * torch.randn(x1.shape, generator=gen, dtype=dtype)
            for what, noise, pts in (("target_noise", tgt, x1), ("source_noise", src, x0)):
                if not bool(torch.isfinite(pts).all()):  # were returned as Inf populations
                    raise ValueError(
                        f"{what}: {noise!r} gives points that overflow {dtype} (letter "
                        f"{ch!r}); use a smaller noise level or a wider dtype"
                    )
            sources.append(x0)
            targets.append(x1)
            meta.append((ch, float(theta)))
    return sources, targets, meta


def letters(
    *,
    rotations: int = 10,
    train_letters: str = "ABCDEFGHIJKLMNOPQRSTUVWZ",
    val_letter: str = "X",
    test_letter: str = "Y",
    target_noise: float = 0.05,
    source_noise: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype | str | None = torch.float32,
) -> PopulationPairs:
    """B1: letter denoising. Splits ``train`` (24 x rotations), ``val``/``cal`` ("X"), ``test``
    ("Y").

    Each split reseeds with ``seed`` as in the reference loader. Populations are ``[n, 2]``
    with ``n`` the glyph's pixel count (803-2834 for DejaVu Sans). ``rotations >= 1``; the
    letter strings non-empty, of letters :func:`letter_points` renders (one capital character
    with a DejaVu Sans glyph each); noise levels finite and ``>= 0``. ``val_letter`` and
    ``test_letter`` must not appear in ``train_letters``, nor ``test_letter`` in
    ``val_letter`` (case-insensitive, as glyphs are upper-cased): each split reseeds with
    ``seed``, so a shared letter's pairs would be bit-identical in both splits (a
    ``ValueError``). ``dtype`` a floating dtype or its name; ``None`` keeps the glyphs'
    float64 values. A noise level whose draws overflow ``dtype`` (``source_noise=1e39`` in
    float32, ``1e5`` in float16) is a ``ValueError`` naming it.
    """
    rotations = check_int("rotations", rotations, minimum=1)
    train_letters = _check_letters("train_letters", train_letters)
    val_letter = _check_letters("val_letter", val_letter)
    test_letter = _check_letters("test_letter", test_letter)
    for name, held, other, chars in (
        ("val_letter", val_letter, "train_letters", train_letters),
        ("test_letter", test_letter, "train_letters", train_letters),
        ("test_letter", test_letter, "val_letter", val_letter),
    ):
        shared = sorted(set(held.upper()) & set(chars.upper()))
        if shared:
            raise ValueError(
                f"{name}: {held!r} shares {''.join(shared)!r} with {other} {chars!r}; each "
                f"split reseeds with seed, so those populations would be identical in both "
                f"splits ({other.split('_')[0]}/{name.split('_')[0]} leakage): pick another "
                f"{name} or remove it from {other}"
            )
    target_noise = check_real("target_noise", target_noise, minimum=0.0)
    source_noise = check_real("source_noise", source_noise, minimum=0.0)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    src, tgt, meta = [], [], []
    splits: dict[str, list[int]] = {}
    for name, chars in (("train", train_letters), ("val", val_letter), ("test", test_letter)):
        s, t, m = _letter_split(chars, rotations, seed, target_noise, source_noise, dtype)
        splits[name] = list(range(len(src), len(src) + len(s)))
        src += s
        tgt += t
        meta += m
    splits["cal"] = list(splits["val"])
    return PopulationPairs(
        name="B1-letters",
        source=src,
        target=tgt,
        source_id=torch.arange(len(src)),
        splits=splits,
        paired=True,
        extra={
            "letter": [m[0] for m in meta],
            "theta": torch.tensor([m[1] for m in meta], dtype=torch.float64),
            "params": {"target_noise": target_noise},
        },
    )
