r"""Population-pair benchmark generators for Meta Flow Matching (component 5, ``meta_fm``).

Each generator returns a :class:`PopulationPairs`: a list of source populations
:math:`p_0^{(i)}` (tensors ``[n_i, d]``), a list of target populations :math:`p_1^{(i)}`
(``[m_i, d]``), an optional treatment index per pair, a source id per pair (pairs sharing a
source population share the id) and named splits. Everything is seeded and synthetic; no
download. The recipes follow the MFM anchor (Atanackovic et al., ICLR 2025, section 8):

* **B1 letters** (:func:`letters`): glyphs rendered with matplotlib's bundled DejaVu Sans,
  target = glyph + :math:`\mathcal N(0, 0.05^2)` then a random rotation, source = target +
  :math:`\mathcal N(0, 0.5^2)`, index-paired. Train: 24 letters (A-Z without X, Y) x 10
  rotations; val "X" x 10; test "Y" x 10.
* **B2 linear map** (:func:`linear_map`): :math:`p_0 = \mathcal N(\mu_i, \Sigma_i)`, target map
  :math:`T_i(x) = \mu_i + 0.5 R(\mu_i)(x-\mu_i) + 0.5\tanh(\mu_i)`; the exact target law is
  :math:`\mathcal N(\mu_i + s_i, 0.25 R \Sigma_i R^\top)` (returned in ``extra``).
* **B3 interacting particles** (:func:`interacting_particles`): Gaussian-mixture populations
  pushed to :math:`T=1` by mean attraction plus kernel repulsion (RK4, 50 steps by default).
* **B4 patient x treatment screen** (:func:`patient_screen`): 8 patients, 2 cell types in
  :math:`d = 10`, 5 treatments whose effect depends on the patient's tumour fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real, check_seed, did_you_mean
from .._device import resolve_dtype
from .._repr import fields_repr

__all__ = [
    "PopulationPairs",
    "letters",
    "letter_points",
    "linear_map",
    "linear_map_exact_field",
    "interacting_particles",
    "particle_velocity",
    "patient_screen",
    "make_population_problem",
    "redraw_targets",
]


@dataclass
class PopulationPairs:
    """Pairs of populations ``(source[i] [n_i, d], target[i] [m_i, d])``.

    Attributes
    ----------
    source, target: lists of float tensors, one population per pair.
    treatment: ``[num_pairs]`` long tensor of treatment indices, or ``None``.
    source_id: ``[num_pairs]`` long tensor; pairs with the same source population share an id.
    splits: split name -> list of pair indices (``train``, ``test`` and possibly ``val``,
        ``cal``); calibration populations are used for split-conformal radii.
    paired: ``True`` when ``target[i][j]`` is the image of ``source[i][j]`` (index coupling).
    num_treatments: number of treatments (0 when there are none).
    extra: problem-specific exact answers (e.g. B2 Gaussian parameters).
    source_features: per-point features ``[n_i, f]`` of each source population (e.g. a
        cell-type one-hot), read by the MFM population embedding only (not transported);
        ``None`` when there are none.
    """

    name: str
    source: list[Tensor]
    target: list[Tensor]
    source_id: Tensor
    splits: dict[str, list[int]]
    paired: bool
    treatment: Tensor | None = None
    num_treatments: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    source_features: list[Tensor] | None = None

    def __post_init__(self) -> None:
        # a population viewing part of a larger tensor (one slice of a stacked [P, n, d] draw)
        # pickled that whole tensor once per population: pickle, multiprocessing, Ray and
        # Dask sent a data set (and a model holding it) 50-160x its size; each gets its own
        for name in ("source", "target", "source_features"):
            pops = getattr(self, name)
            if isinstance(pops, list):
                setattr(self, name, [_own_storage(t) for t in pops])

    @property
    def dim(self) -> int:
        if not len(self.source):
            raise ValueError(f"data: {self.name!r} holds no populations, so no dimension")
        return int(self.source[0].shape[1])

    def __repr__(self) -> str:
        # sizes, not points (a letters data set printed 2.5 million characters)
        def sizes(pops: list[Tensor]) -> int | str | None:
            ns = [int(p.shape[0]) for p in pops]
            if not ns:
                return None
            return ns[0] if min(ns) == max(ns) else f"{min(ns)}..{max(ns)}"

        sf = self.source_features
        feats = int(sf[0].shape[-1]) if sf is not None and len(sf) else None
        return fields_repr(
            self,
            ("name",),
            pairs=len(self.source),
            dim=int(self.source[0].shape[-1]) if self.source else None,
            source_points=sizes(self.source),
            target_points=sizes(self.target),
            splits={k: len(v) for k, v in self.splits.items()},
            paired=self.paired,
            num_treatments=self.num_treatments,
            features=feats,
        )

    def __len__(self) -> int:
        return len(self.source)

    def same_populations(self, other: PopulationPairs) -> bool:
        """Whether ``other`` holds bit-identical pairs: sources, targets, source features,
        treatments, source ids and every tensor entry of ``extra`` the two share (names and
        splits may differ, e.g. one screen under two splits)."""
        if not isinstance(other, PopulationPairs):
            raise TypeError(f"other: expected PopulationPairs, received {type(other).__name__}")

        def same(a, b) -> bool:
            if a is None or b is None:
                return a is None and b is None
            if isinstance(a, Tensor):
                return isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))

        shared = [k for k in self.extra if k in other.extra]
        return (
            len(self) == len(other)
            and same(self.source, other.source)
            and same(self.target, other.target)
            and same(self.source_features, other.source_features)
            and same(self.treatment, other.treatment)
            and same(self.source_id, other.source_id)
            and all(
                same(self.extra[k], other.extra[k])
                for k in shared
                if isinstance(self.extra[k], Tensor)
            )
        )

    def subset(self, split: str) -> PopulationPairs:
        """The pairs of one split (ids and treatments kept; ``extra`` entries indexed)."""
        if split not in self.splits:
            raise KeyError(f"split: expected one of {sorted(self.splits)}, received {split!r}")
        idx = list(self.splits[split])
        ex = {}
        for k, v in self.extra.items():
            if isinstance(v, (list, Tensor)) and len(v) == len(self):
                ex[k] = [v[i] for i in idx] if isinstance(v, list) else v[idx]
            else:
                ex[k] = v
        return PopulationPairs(
            name=f"{self.name}/{split}",
            source=[self.source[i] for i in idx],
            target=[self.target[i] for i in idx],
            source_id=self.source_id[idx],
            splits={"all": list(range(len(idx)))},
            paired=self.paired,
            treatment=None if self.treatment is None else self.treatment[idx],
            num_treatments=self.num_treatments,
            extra=ex,
            source_features=None
            if self.source_features is None
            else [self.source_features[i] for i in idx],
        )


def _own_storage(t: Any) -> Any:
    """``t`` itself, or a copy when it views part of a larger storage (see
    :meth:`PopulationPairs.__post_init__`)."""
    if isinstance(t, Tensor) and t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone()
    return t


# ----------------------------------------------------------------------------- B1 letters
def _rotation(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


@lru_cache(maxsize=64)
def _glyph(letter: str, size: int) -> np.ndarray:
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    path = font_manager.findfont("DejaVu Sans", fallback_to_default=True)
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
    [-3, 3]); ``size`` an int large enough to render the glyph in two dimensions."""
    if not (isinstance(letter, str) and len(letter) == 1 and letter.isalpha()):
        raise ValueError(f"letter: expected a single letter, received {letter!r}")
    size = check_int("size", size, minimum=1)
    return torch.from_numpy(_glyph(letter.upper(), size).copy())


def _check_dtype(dtype: Any) -> torch.dtype | None:
    """A floating dtype (or its name); ``None`` keeps the generator's float64 values."""
    return None if dtype is None else resolve_dtype(dtype)


def _check_letters(name: str, chars: Any) -> str:
    if not (isinstance(chars, str) and chars and all(c.isalpha() for c in chars)):
        raise ValueError(f"{name}: expected a non-empty string of letters, received {chars!r}")
    return chars


def _check_sizes(**sizes: int) -> int:
    """Pair counts ``>= 0`` (negative ones gave overlapping splits, e.g. ``cal = [-1]``) and at
    least one pair in all; returns the total."""
    total = sum(check_int(k, v, minimum=0) for k, v in sizes.items())
    if total < 1:
        raise ValueError(f"{' + '.join(sizes)}: expected at least one pair, received 0")
    return total


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
    dtype: torch.dtype = torch.float32,
) -> PopulationPairs:
    """B1: letter denoising. Splits ``train`` (24 x rotations), ``val``/``cal`` ("X"), ``test`` ("Y").

    Each split reseeds with ``seed`` as in the reference loader. Populations are ``[n, 2]``
    with ``n`` the glyph's pixel count (803-2834 for DejaVu Sans). ``rotations >= 1``; the
    letter strings non-empty; noise levels finite and ``>= 0``. ``val_letter`` and
    ``test_letter`` must not appear in ``train_letters``, nor ``test_letter`` in
    ``val_letter`` (case-insensitive, as glyphs are upper-cased): each split reseeds with
    ``seed``, so a shared letter's pairs would be bit-identical in both splits (a
    ``ValueError``).
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


# ----------------------------------------------------------------------------- B2 linear map
def _map_params(mu: Tensor) -> tuple[Tensor, Tensor]:
    """``A [P, d, d]`` and ``b [P, d]`` with ``T(x) = A x + b`` for centres ``mu [P, d]``."""
    p, d = mu.shape
    ang = mu.norm(dim=-1)
    rot = torch.eye(d, dtype=mu.dtype).expand(p, d, d).clone()
    rot[:, :2, :2] = _rotation(ang)
    a = 0.5 * rot
    b = mu - (a @ mu[..., None]).squeeze(-1) + 0.5 * torch.tanh(mu)
    return a, b


def linear_map(
    *,
    dim: int = 2,
    n_train: int = 200,
    n_cal: int = 50,
    n_test: int = 50,
    n_points: int = 512,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PopulationPairs:
    r"""B2: population-dependent affine map with exact answers.

    :math:`\mu_i \sim \mathcal N(0, 4I)`, :math:`\Sigma_i = LL^\top + 0.1I`,
    :math:`L_{jk} \sim \mathcal N(0, 0.5^2)`; :math:`x_0 \sim \mathcal N(\mu_i, \Sigma_i)`
    ``[n_points, dim]``; :math:`x_1 = T_i(x_0) = A_i x_0 + b_i` with :math:`A_i = 0.5 R(\mu_i)`
    (rotation by :math:`\lVert\mu_i\rVert` in the first two coordinates) and
    :math:`b_i = \mu_i - A_i\mu_i + 0.5\tanh\mu_i`. ``extra`` holds ``A [P,d,d]``, ``b [P,d]``
    and the exact target law ``target_mean [P,d]``, ``target_cov [P,d,d]``. ``dim >= 2``,
    ``n_points >= 2``.
    """
    dim = check_int("dim", dim, minimum=2)
    n_points = check_int("n_points", n_points, minimum=2)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    p = _check_sizes(n_train=n_train, n_cal=n_cal, n_test=n_test)
    gen = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(p, dim, generator=gen, dtype=torch.float64)
    lmat = 0.5 * torch.randn(p, dim, dim, generator=gen, dtype=torch.float64)
    cov = lmat @ lmat.mT + 0.1 * torch.eye(dim, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(p, n_points, dim, generator=gen, dtype=torch.float64)
    x0 = mu[:, None, :] + z @ chol.mT
    a, b = _map_params(mu)
    x1 = x0 @ a.mT + b[:, None, :]
    splits = {
        "train": list(range(n_train)),
        "cal": list(range(n_train, n_train + n_cal)),
        "test": list(range(n_train + n_cal, p)),
    }
    return PopulationPairs(
        name=f"B2-linear-d{dim}",
        source=list(x0.to(dtype)),
        target=list(x1.to(dtype)),
        source_id=torch.arange(p),
        splits=splits,
        paired=True,
        extra={
            "A": a,
            "b": b,
            "source_mean": mu,
            "source_cov": cov,
            "target_mean": mu + 0.5 * torch.tanh(mu),
            "target_cov": a @ cov @ a.mT,
        },
    )


def linear_map_exact_field(x: Tensor, t: Tensor, a: Tensor, b: Tensor) -> Tensor:
    r"""Exact marginal velocity of the straight, index-paired interpolant for ``x1 = A x0 + b``.

    With :math:`M_t = (1-t)I + tA`, :math:`x_t = M_t x_0 + t b` and
    :math:`u = (A - I)x_0 + b`, so :math:`v_t(x) = (A-I)M_t^{-1}(x - tb) + b`.
    Shapes: ``x [N, d]``, ``t`` scalar or ``[N]``, ``a [d, d]``, ``b [d]`` -> ``[N, d]``.

    Where :math:`M_t` is (nearly) singular the straight paths cross at one point and the field
    is unbounded: for :func:`linear_map`'s :math:`A = 0.5 R(\mu)`, :math:`\det M_t` comes near
    0 at :math:`t \approx 2/3` when :math:`\lVert\mu\rVert` is near :math:`\pi` (mod
    :math:`2\pi`), a half turn (48 of 300 default pairs have :math:`\min_t \det M_t < 10^{-2}`).
    """
    d = x.shape[-1]
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    m = (1 - t) * eye + t * a
    rhs = (x - t[:, :, 0] * b)[..., None]
    x0 = torch.linalg.solve(m.expand(x.shape[0], d, d), rhs)[..., 0]
    return x0 @ (a - eye).mT + b


# ----------------------------------------------------------------------------- B3 particles
def particle_velocity(x: Tensor, a: float = 1.0, b: float = 2.0, ell: float = 0.5) -> Tensor:
    r"""Interacting-particle velocity for populations ``x [P, n, 2]`` -> ``[P, n, 2]``.

    :math:`\dot x_j = -a(x_j - \bar x) - \frac{b}{n}\sum_k \nabla_{x_j}
    \exp(-\lVert x_j - x_k\rVert^2 / 2\ell^2)`: attraction to the population mean plus kernel
    repulsion (the minus sign makes the kernel term push particles apart). ``a``, ``b`` finite,
    ``ell > 0``.
    """
    if not isinstance(x, Tensor) or x.ndim != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected populations [P, n, d], received {got}")
    a, b = check_real("a", a), check_real("b", b)
    ell = check_real("ell", ell, minimum=0.0, strict=True)
    sq = x.pow(2).sum(-1)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2 * x @ x.mT).clamp_min(0)
    ker = torch.exp(-d2 / (2 * ell**2))  # [P, n, n]
    # sum_k (x_j - x_k) K_jk = x_j sum_k K_jk - (K x)_j
    rep = (x * ker.sum(-1, keepdim=True) - ker @ x) / (ell**2 * x.shape[1])
    return -a * (x - x.mean(1, keepdim=True)) + b * rep


def _gmm_draw(means: Tensor, stds: Tensor, n: int, gen: torch.Generator) -> Tensor:
    comp = torch.randint(len(means), (n,), generator=gen)
    return means[comp] + stds[comp, None] * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def _gmm_populations(p: int, n: int, gen: torch.Generator) -> tuple[Tensor, list]:
    out = torch.empty(p, n, 2, dtype=torch.float64)
    mix = []
    for i in range(p):
        k = int(torch.randint(2, 5, (), generator=gen))
        means = -3 + 6 * torch.rand(k, 2, generator=gen, dtype=torch.float64)
        stds = 0.2 + 0.4 * torch.rand(k, generator=gen, dtype=torch.float64)
        out[i] = _gmm_draw(means, stds, n, gen)
        mix.append((means, stds))
    return out, mix


def _simulate_particles(
    x0: Tensor, steps: int, a: float, b: float, ell: float, dtype: torch.dtype = torch.float32
) -> Tensor:
    """RK4 of :func:`particle_velocity` in ``dtype`` from ``x0 [P, n, 2]`` to T = 1."""
    x = x0.to(dtype, copy=True)  # written in place below: never x0 itself
    h = 1.0 / steps
    for lo in range(0, x.shape[0], 64):
        y = x[lo : lo + 64]
        for _ in range(steps):
            k1 = particle_velocity(y, a, b, ell)
            k2 = particle_velocity(y + 0.5 * h * k1, a, b, ell)
            k3 = particle_velocity(y + 0.5 * h * k2, a, b, ell)
            k4 = particle_velocity(y + h * k3, a, b, ell)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        x[lo : lo + 64] = y
    return x


def interacting_particles(
    *,
    n_train: int = 300,
    n_cal: int = 50,
    n_test: int = 100,
    n_points: int = 256,
    steps: int = 50,
    a: float = 1.0,
    b: float = 2.0,
    ell: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PopulationPairs:
    """B3: 2-d Gaussian-mixture populations ``[n_points, 2]`` evolved to T=1 (RK4), index-paired.

    The anchor integrates with 200 RK4 steps; the default 50 steps agree with 200 to float32
    round-off at a quarter of the cost. ``n_points >= 2``, ``steps >= 1``; ``a``,
    ``b`` finite; ``ell > 0``. The simulation runs in float64 when ``dtype`` is float64 or
    ``None`` (the generator's float64 values; the targets were float32 then) -- RK4 error
    ~1e-8 at 50 steps (max-abs against 800 steps) instead of float32's ~1e-6 -- and in float32 otherwise (float32 and
    narrower dtypes: the targets are rounded from float32).
    """
    n_points = check_int("n_points", n_points, minimum=2)
    steps = check_int("steps", steps, minimum=1)
    a, b = check_real("a", a), check_real("b", b)
    ell = check_real("ell", ell, minimum=0.0, strict=True)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    p = _check_sizes(n_train=n_train, n_cal=n_cal, n_test=n_test)
    gen = torch.Generator().manual_seed(seed)
    x0, mix = _gmm_populations(p, n_points, gen)
    # float32 (50 vs 200 steps: round-off) unless float64 was asked for
    sim = torch.float64 if dtype in (None, torch.float64) else torch.float32
    x = _simulate_particles(x0, steps, a, b, ell, sim)
    splits = {
        "train": list(range(n_train)),
        "cal": list(range(n_train, n_train + n_cal)),
        "test": list(range(n_train + n_cal, p)),
    }
    return PopulationPairs(
        name="B3-particles",
        source=list(x0.to(dtype)),
        target=list(x.to(dtype)),
        source_id=torch.arange(p),
        splits=splits,
        paired=True,
        extra={"mixture": mix, "params": {"steps": steps, "a": a, "b": b, "ell": ell}},
    )


# ----------------------------------------------------------------------------- B4 screen
def _screen_draw(prm: dict, p: int, t: int | None, off: Tensor, n_cells: int, gen: torch.Generator):
    """One population of patient ``p`` (control when ``t`` is None) -> (cells, cell types)."""
    f64 = torch.float64
    pi = float(prm["pi"][p])
    dim = prm["m_a"].shape[1]
    shift = torch.zeros(dim, dtype=f64)
    frac = pi
    if t is not None:
        surv = pi * (1 - float(prm["kappa"][t]) * pi)
        frac = surv / (surv + 1 - pi)
        shift = float(prm["delta"][t]) * (1 - pi) * prm["w"][t]
    n_a = int(
        torch.binomial(
            torch.tensor(float(n_cells), dtype=f64), torch.tensor(frac, dtype=f64), generator=gen
        )
    )
    xa = (
        prm["m_a"][p]
        + off
        + shift
        + float(prm["sd_a"][p]) * torch.randn(n_a, dim, generator=gen, dtype=f64)
    )
    xb = prm["m_b"] + off + 0.6 * torch.randn(n_cells - n_a, dim, generator=gen, dtype=f64)
    lab = torch.cat(
        [torch.zeros(n_a, dtype=torch.long), torch.ones(n_cells - n_a, dtype=torch.long)]
    )
    return torch.cat([xa, xb]), lab


def patient_screen(
    *,
    n_patients: int = 8,
    n_treatments: int = 5,
    n_replicates: int = 3,
    n_cells: int = 1000,
    dim: int = 10,
    fold: int = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    split: str = "patient",
) -> PopulationPairs:
    r"""B4: synthetic patient x treatment screen with a microenvironment effect.

    Patient :math:`p` has tumour fraction :math:`\pi_p \sim U[0.3, 0.9]`, tumour (type A) mean
    :math:`m_p \sim \mathcal N(0, I_d)` and a shared fibroblast (type B) mean; each replicate
    adds a small offset. Treatment :math:`t` shifts type-A cells by
    :math:`\delta_t(1-\pi_p) w_t` and kills a fraction :math:`\kappa_t \pi_p` of them (the
    treated population is redrawn with the surviving proportion). Source = control population
    of (patient, replicate) ``[n_cells, dim]``; target = treated population (independent draw,
    so not index-paired). Pair order: patient, then replicate, then treatment;
    ``source_id = patient * n_replicates + replicate``.

    Splits (anchor section 8, B4), chosen by ``split``:

    * ``"patient"`` (default): ``fold`` k in ``0..n_patients // 2 - 1`` holds out patients
      ``2k, 2k+1`` (``test``) and uses patient ``(2k+2) % n_patients`` for calibration
      (``cal``); the rest train (name ``B4-screen-fold{k}``).
    * ``"replica"``: ``fold`` k in ``0..n_replicates - 1``; ``test`` is replicate ``k`` of every
      (patient, treatment), ``cal`` replicate ``(k+1) % n_replicates``, and the other replicates
      train (name ``B4-screen-replica{k}``); needs ``n_replicates >= 3``. With the default 3
      replicates one replicate of each (patient, treatment) trains: ``n_patients *
      n_treatments`` training pairs (40), against 75 for the patient split, but every test
      patient has been seen in training.

    The split changes only ``splits`` and ``name``: for one ``seed`` the populations (and every
    other field) are the same under both splits and every fold. ``extra["patient"]`` and
    ``extra["replicate"]`` give each pair's patient and replicate ``[num_pairs]``,
    ``extra["cell_type"]`` the type of every source/target cell, and ``source_features`` the one-hot type ``[n, 2]``
    of each source cell (the reference feeds the cell-type one-hot to the GNN).
    """
    # fewer than 4 patients left no training patient (3) or put the calibration patient into
    # the test split ((2k + 2) % 2 = 0 for 2 patients)
    n_patients = check_int("n_patients", n_patients, minimum=4)
    n_treatments = check_int("n_treatments", n_treatments, minimum=1)
    n_replicates = check_int("n_replicates", n_replicates, minimum=1)
    n_cells = check_int("n_cells", n_cells, minimum=2)
    dim = check_int("dim", dim, minimum=1)
    fold = check_int("fold", fold)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    if not isinstance(split, str):
        raise TypeError(f"split: expected 'patient' or 'replica', received {type(split).__name__}")
    if split == "patient":
        n_folds = n_patients // 2
    elif split == "replica":
        # one replicate each for test and cal leaves at least one to train on
        if n_replicates < 3:
            raise ValueError(
                f"n_replicates: the replica split holds out one replicate for test and one for "
                f"cal, so it needs n_replicates >= 3, received {n_replicates}"
            )
        n_folds = n_replicates
    else:
        raise ValueError(f"split: expected 'patient' or 'replica', received {split!r}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold: expected 0..{n_folds - 1} ({split} split), received {fold}")
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    m_b = torch.zeros(dim, dtype=f64)
    m_b[0] = 3.0
    prm = {
        "pi": 0.3 + 0.6 * torch.rand(n_patients, generator=gen, dtype=f64),
        "m_a": torch.randn(n_patients, dim, generator=gen, dtype=f64),
        "m_b": m_b,
        "sd_a": 0.5 + 0.3 * torch.rand(n_patients, generator=gen, dtype=f64),
    }
    w = torch.randn(n_treatments, dim, generator=gen, dtype=f64)
    prm["w"] = w / w.norm(dim=-1, keepdim=True)
    prm["delta"] = 1.0 + 2.0 * torch.rand(n_treatments, generator=gen, dtype=f64)
    prm["kappa"] = 0.2 + 0.6 * torch.rand(n_treatments, generator=gen, dtype=f64)
    prm["n_cells"] = n_cells

    src, tgt, sid, trt, pat, rep, offs, ctype = [], [], [], [], [], [], [], []
    for p in range(n_patients):
        for r in range(n_replicates):
            off = 0.1 * torch.randn(dim, generator=gen, dtype=f64)
            x0, l0 = _screen_draw(prm, p, None, off, n_cells, gen)
            for t in range(n_treatments):
                x1, l1 = _screen_draw(prm, p, t, off, n_cells, gen)
                src.append(x0.to(dtype))
                tgt.append(x1.to(dtype))
                sid.append(p * n_replicates + r)
                trt.append(t)
                pat.append(p)
                rep.append(r)
                offs.append(off)
                ctype.append((l0, l1))
    if split == "patient":
        held, test_k, cal_k = pat, {2 * fold, 2 * fold + 1}, {(2 * fold + 2) % n_patients}
        name = f"B4-screen-fold{fold}"
    else:
        held, test_k, cal_k = rep, {fold}, {(fold + 1) % n_replicates}
        name = f"B4-screen-replica{fold}"
    splits = {
        "test": [i for i, q in enumerate(held) if q in test_k],
        "cal": [i for i, q in enumerate(held) if q in cal_k],
        "train": [i for i, q in enumerate(held) if q not in test_k | cal_k],
    }
    return PopulationPairs(
        name=name,
        source=src,
        target=tgt,
        source_id=torch.tensor(sid),
        splits=splits,
        paired=False,
        treatment=torch.tensor(trt),
        num_treatments=n_treatments,
        extra={
            "patient": torch.tensor(pat),
            "replicate": torch.tensor(sid) % n_replicates,
            "offset": offs,
            "cell_type": ctype,
            "params": prm,
        },
        source_features=[torch.nn.functional.one_hot(l0, 2).to(src[0].dtype) for l0, _ in ctype],
    )


def redraw_targets(data: PopulationPairs, seed: int = 12345) -> list[Tensor]:
    """Independent draws of each pair's target law (same size), for the sampling floor.

    B1: fresh glyph noise at the same rotation; B2: a fresh Gaussian source through the exact
    map; B3: a fresh mixture draw simulated to T = 1; B4: a fresh treated population.
    """
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    name = data.name.split("/")[0]
    ex = data.extra
    out: list[Tensor] = []
    if name.startswith("B1"):
        for ch, th, t in zip(ex["letter"], ex["theta"], data.target):
            base = letter_points(ch).to(torch.float64)
            x1 = base + ex["params"]["target_noise"] * torch.randn(
                base.shape, generator=gen, dtype=torch.float64
            )
            out.append((x1 @ _rotation(th).mT).to(t.dtype))
    elif name.startswith("B2"):
        for i, t in enumerate(data.target):
            chol = torch.linalg.cholesky(ex["source_cov"][i])
            z = torch.randn(t.shape, generator=gen, dtype=torch.float64)
            x0 = ex["source_mean"][i] + z @ chol.mT
            out.append((x0 @ ex["A"][i].mT + ex["b"][i]).to(t.dtype))
    elif name.startswith("B3"):
        n = data.target[0].shape[0]
        x0 = torch.stack([_gmm_draw(m, s, n, gen) for m, s in ex["mixture"]])
        prm = ex["params"]
        x1 = _simulate_particles(x0, prm["steps"], prm["a"], prm["b"], prm["ell"])
        out = [x.to(t.dtype) for x, t in zip(x1, data.target)]
    elif name.startswith("B4"):
        prm = ex["params"]
        for i, t in enumerate(data.target):
            x1, _ = _screen_draw(
                prm, int(ex["patient"][i]), int(data.treatment[i]), ex["offset"][i], t.shape[0], gen
            )
            out.append(x1.to(t.dtype))
    else:
        raise ValueError(f"data: no target sampler for problem {data.name!r}")
    return out


def make_population_problem(name: str, **kwargs: Any) -> PopulationPairs:
    """Build a benchmark by id: ``"B1"``, ``"B2"``, ``"B3"`` or ``"B4"`` (kwargs passed on)."""
    table = {"B1": letters, "B2": linear_map, "B3": interacting_particles, "B4": patient_screen}
    if not isinstance(name, str) or name not in table:
        raise ValueError(
            f"name: expected one of {sorted(table)}, received {name!r}{did_you_mean(name, sorted(table))}"
        )
    return table[name](**kwargs)
