r"""Configuration of :class:`~bayesphys.neural_process.RandomGridNP`: problems, the
:class:`RGNPConfig` hyper-parameters, the ``"R0"`` (reference) and ``"RGNP"`` (ours) presets with
their reduced sizes, and Keras' default initialisation used by R0. The methods are described in
:mod:`bayesphys.neural_process.model`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from .._checks import check_bool, check_int, check_real, did_you_mean
from ..problems.rgnp import BurgersProblem, PoissonProblem
from .gicnet import GICNet

__all__ = [
    "GIC_KEYS",
    "RGNPConfig",
    "SIZES",
    "get_problem",
    "keras_init",
    "preset",
    "with_overrides",
]

PROBLEMS = {"poisson": PoissonProblem, "burgers": BurgersProblem}
METHODS: tuple[str, ...] = ("R0", "RGNP")
#: collocation measures ``RGNPConfig.grid`` may name (:func:`~.grids.make_grid`; ``"layouts"``
#: is a biased observation-layout generator, not a collocation measure)
GRIDS: tuple[str, ...] = ("uniform", "sobol", "adaptive")
INITS: tuple[str, ...] = ("torch", "keras")
FLAGS: tuple[str, ...] = ("train_freq", "lr_staircase", "qmc_prior", "learn_sigma_r")

#: the settings ``RGNPConfig.gic`` may hold: :class:`~.gicnet.GICNet`'s keyword arguments
#: (``dim_u`` excepted: the field is scalar, the model sets it)
GIC_KEYS: tuple[str, ...] = tuple(
    name
    for name, prm in inspect.signature(GICNet.__init__).parameters.items()
    if prm.kind is inspect.Parameter.KEYWORD_ONLY and name != "dim_u"
)


def get_problem(problem: Any) -> PoissonProblem | BurgersProblem:
    """``"poisson"``/``"burgers"`` or a problem instance -> a problem instance."""
    if isinstance(problem, (PoissonProblem, BurgersProblem)):
        return problem
    if isinstance(problem, str) and problem in PROBLEMS:
        return PROBLEMS[problem]()
    raise ValueError(
        f"problem: expected one of {sorted(PROBLEMS)} or a PoissonProblem / BurgersProblem "
        f"instance, received {problem!r}{did_you_mean(problem, sorted(PROBLEMS))}"
    )


@dataclass
class RGNPConfig:
    """Hyper-parameters (see :func:`preset` for the R0 and RGNP values)."""

    method: str = "RGNP"
    hidden: int = 300
    depth: int = 7
    n_freq: int = 100
    f_min: float = 1e-3
    f_max: float = 2.0
    train_freq: bool = False
    rank: int = 2
    var_lo: float = 1e-4
    grid: str = "uniform"
    n_points: int = 30
    batch: int = 50
    lr: float = 1e-3
    lr_half_every: float | None = None  # steps per halving; None: constant
    lr_staircase: bool = True
    qmc_prior: bool = False  # (z, w) per batch from a scrambled Sobol net (still unbiased)
    lr_warmup: int = 0  # linear warm-up steps (0: none)
    grad_clip: float | None = None  # max global gradient norm (None: no clipping)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    adam_eps: float = 1e-8  # Adam epsilon (Keras' default, used by R0: 1e-7)
    # weight initialisation: "torch" (PyTorch defaults) or "keras" (Glorot-uniform weights and
    # zero biases, the defaults of the reference code's Keras layers; used by R0)
    init: str = "torch"
    sigma_r: float = 1e-2
    learn_sigma_r: bool = False
    data_batch: int = 50
    inv_lr_mult: float = 1.0  # learning-rate multiplier of the inverse network (GICNet)
    # learning-rate multiplier of the learned log sigma_r (only with learn_sigma_r)
    sigma_r_lr_mult: float = 1.0
    # layout augmentation of the inverse network: weight of the extra amortisation term
    # E log p_beta(z | u~(X'), X', w) on observation layouts X' ~ LayoutMixture (0: off)
    aug_weight: float = 0.0
    aug_points: tuple[int, ...] = (8, 16, 32, 64)
    gic: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> RGNPConfig:
        """Check the scalar settings (``TypeError``/``ValueError`` naming the field) and convert
        integral floats to ``int``; returns ``self``. Runs on construction and
        ``dataclasses.replace``; :class:`~.model.RandomGridNP` runs it again (fields may have
        been assigned since). The ``gic`` entries are checked by :class:`~.gicnet.GICNet`.

        Rules: ``method`` ``"R0"``/``"RGNP"``; ``grid`` ``"uniform"``/``"sobol"``/``"adaptive"``;
        ``init`` ``"torch"``/``"keras"``; ``train_freq, lr_staircase, qmc_prior, learn_sigma_r``
        booleans; ``hidden, depth, n_freq, rank, n_points, batch, data_batch >= 1`` (ints);
        ``lr_warmup >= 0`` (int, 0: none); ``f_min, f_max, var_lo, sigma_r, lr > 0`` with
        ``f_min <= f_max`` and ``var_lo < 1`` (the forward variance lies in ``[var_lo, 1]``);
        ``lr_half_every``, ``grad_clip``: ``None`` or ``>= 0`` (0 or ``None``: off); ``adam_eps,
        inv_lr_mult, sigma_r_lr_mult, aug_weight >= 0``; ``betas`` two numbers in ``[0, 1)``;
        ``aug_points`` a non-empty tuple of ints ``>= 1``; NaN/inf and booleans (for numbers)
        are refused.
        """
        for name, allowed in (("method", METHODS), ("grid", GRIDS), ("init", INITS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(
                    f"{name}: expected one of {list(allowed)}, received {value!r}"
                    f"{did_you_mean(value, allowed)}"
                )
        for name in FLAGS:
            setattr(self, name, check_bool(name, getattr(self, name)))
        for name in ("hidden", "depth", "n_freq", "rank", "n_points", "batch", "data_batch"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        self.lr_warmup = check_int("lr_warmup", self.lr_warmup, minimum=0)
        for name in ("f_min", "f_max", "var_lo", "sigma_r", "lr"):
            setattr(self, name, check_real(name, getattr(self, name), minimum=0.0, strict=True))
        if self.f_min > self.f_max:
            raise ValueError(
                f"f_min/f_max: expected f_min <= f_max, received {self.f_min}, {self.f_max}"
            )
        if self.var_lo >= 1.0:
            raise ValueError(
                f"var_lo: expected a number < 1 (the variance upper bound), received {self.var_lo}"
            )
        for name in ("lr_half_every", "grad_clip"):
            if getattr(self, name) is not None:
                setattr(self, name, check_real(name, getattr(self, name), minimum=0.0))
        for name in ("adam_eps", "inv_lr_mult", "sigma_r_lr_mult", "aug_weight"):
            setattr(self, name, check_real(name, getattr(self, name), minimum=0.0))
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else None
        if betas is None or len(betas) != 2:
            raise ValueError(f"betas: expected two numbers in [0, 1), received {self.betas!r}")
        betas = tuple(check_real("betas", b, minimum=0.0) for b in betas)
        if max(betas) >= 1.0:
            raise ValueError(f"betas: expected two numbers in [0, 1), received {self.betas!r}")
        self.betas = betas
        pts = tuple(self.aug_points) if isinstance(self.aug_points, (tuple, list)) else ()
        if not pts:
            raise ValueError(
                "aug_points: expected a non-empty tuple of point counts, received "
                f"{self.aug_points!r}"
            )
        self.aug_points = tuple(check_int("aug_points", n, minimum=1) for n in pts)
        _check_gic(self.gic)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)


def _check_gic(gic: Any) -> None:
    if not isinstance(gic, dict):
        raise TypeError(f"gic: expected a dict, received {type(gic).__name__}")
    unknown = sorted(set(gic) - set(GIC_KEYS), key=str)
    if unknown:
        raise ValueError(
            f"gic: unknown GICNet setting(s) {unknown}; expected keys among {list(GIC_KEYS)}"
        )


def with_overrides(cfg: RGNPConfig, **overrides: Any) -> RGNPConfig:
    """``cfg`` with the given fields replaced, except ``gic``, which is merged: its keys update
    ``cfg.gic`` (the user's value wins), the other GICNet settings stay those of ``cfg``.

    Used by :func:`preset` (the reduced sizes) and :class:`~.model.RandomGridNP` (its
    ``**overrides``). Raises ``TypeError`` (``gic`` not a dict) or ``ValueError`` (``gic`` keys
    outside :data:`GIC_KEYS`, naming the valid ones); unknown field names raise ``TypeError``.

    >>> cfg = with_overrides(preset("poisson", "RGNP"), hidden=64, gic={"rank": 2})
    >>> cfg.hidden, cfg.gic["rank"], cfg.gic["ell_min"]  # ell_min: the preset's, kept
    (64, 2, 0.05)
    """
    if not isinstance(cfg, RGNPConfig):
        raise TypeError(f"config: expected an RGNPConfig, received {type(cfg).__name__}")
    names = [f.name for f in dataclasses.fields(type(cfg))]
    for key in overrides:
        if key not in names:  # dataclasses.replace's own error named RGNPConfig.__init__
            raise TypeError(
                f"{key}: unknown setting{did_you_mean(key, names)}; expected some of {names}"
            )
    if "gic" in overrides:
        _check_gic(overrides["gic"])
        overrides = {**overrides, "gic": {**cfg.gic, **overrides["gic"]}}
    # always a new object with its own ``gic`` dict: a model must not share its config with the
    # caller (a later ``cfg.hidden *= 2`` would change the model's record of its own sizes)
    gic = copy.deepcopy(overrides.pop("gic", cfg.gic))
    return dataclasses.replace(cfg, **overrides, gic=gic)


SIZES: dict[str, dict[str, Any]] = {
    "full": {},
    "small": dict(
        batch=50,
        hidden=64,
        depth=3,
        n_freq=16,
        gic=dict(
            channels=12,
            conv_layers=4,
            conv_channels=12,
            dense=(64, 32),
            trunk=32,
            head=64,
            head_layers=2,
        ),
    ),
    "smoke": dict(
        hidden=32,
        depth=2,
        n_freq=8,
        batch=16,
        data_batch=16,
        gic=dict(
            channels=8,
            conv_layers=3,
            conv_channels=8,
            dense=(32, 16),
            trunk=16,
            trunk_layers=1,
            head=32,
            head_layers=2,
        ),
    ),
}
"""Network sizes (``preset(..., size=)``): ``"full"`` the preset's own, ``"small"`` trains the
demo in ~20 s on one core, ``"smoke"`` runs an example's ``--smoke`` path in seconds. Keys of
``gic`` update the preset's GICNet settings; the others replace :class:`RGNPConfig` fields
(:func:`with_overrides`)."""


def preset(problem: str, method: str, size: str = "full") -> RGNPConfig:
    """The ``"R0"`` (reference) or ``"RGNP"`` (ours) configuration for ``"poisson"``/``"burgers"``,
    at the paper's size (``size="full"``) or a reduced one from :data:`SIZES`."""
    if not isinstance(size, str) or size not in SIZES:
        raise ValueError(
            f"size: expected one of {sorted(SIZES)}, received "
            f"{size!r}{did_you_mean(size, sorted(SIZES))}"
        )
    return with_overrides(_preset(problem, method), **SIZES[size])


#: GICNet of the reference code (the problems differ in ``latent`` and ``conv_layers`` only)
_REFERENCE_GIC: dict[str, Any] = dict(
    channels=20,
    lift_layers=1,
    conv_channels=20,
    dense=(500, 100),
    trunk=100,
    trunk_layers=3,
    head=300,
    head_layers=4,
    rank=1,
)
#: our smaller GICNet head and trunk, two-layer lift (RGNP)
_OUR_GIC: dict[str, Any] = dict(
    lift_layers=2, dense=(128, 64), trunk=64, trunk_layers=2, head=128, head_layers=3
)


def _preset(problem: str, method: str) -> RGNPConfig:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method: expected 'R0' or 'RGNP', received {method!r}{did_you_mean(method, METHODS)}"
        )
    if problem == "poisson":
        gic = dict(_REFERENCE_GIC, latent=20, conv_layers=6)
        if method == "R0":
            return RGNPConfig(method="R0", gic=gic, init="keras", adam_eps=1e-7)
        gic.update(_OUR_GIC, ell_min=0.05)
        return RGNPConfig(
            method="RGNP",
            hidden=96,
            depth=4,
            n_freq=32,
            f_min=1e-2,
            f_max=2.0,
            grid="sobol",
            n_points=32,
            batch=50,  # the reference's batch: one step is the same work as one of R0's
            qmc_prior=True,
            lr=8e-3,
            betas=(0.9, 0.95),
            grad_clip=1000.0,
            lr_half_every=2000.0,
            lr_staircase=False,
            sigma_r=0.1,
            learn_sigma_r=True,
            aug_weight=0.0,
            gic=gic,
        )
    if problem == "burgers":
        gic = dict(_REFERENCE_GIC, latent=10, conv_layers=4)
        if method == "R0":
            return RGNPConfig(
                method="R0",
                hidden=400,
                depth=9,
                n_freq=100,
                f_min=1e-2,
                f_max=2.0,
                train_freq=True,
                n_points=225,
                batch=25,
                lr_half_every=16000.0,
                sigma_r=1.0,
                learn_sigma_r=True,
                init="keras",
                adam_eps=1e-7,
                gic=gic,
            )
        gic.update(_OUR_GIC)
        return RGNPConfig(
            method="RGNP",
            hidden=128,
            depth=4,
            n_freq=32,
            f_min=1e-2,
            f_max=4.0,
            train_freq=True,
            grid="sobol",
            n_points=256,
            batch=25,
            lr=3e-3,
            lr_half_every=600.0,
            lr_staircase=False,
            sigma_r=1.0,
            learn_sigma_r=True,
            gic=gic,
        )
    raise ValueError(
        f"problem: expected 'poisson' or 'burgers', received {problem!r}"
        f"{did_you_mean(problem, ('poisson', 'burgers'))}"
    )


@torch.no_grad()
def keras_init(module: torch.nn.Module) -> None:
    r"""Keras' default initialisation in place: Glorot-uniform weights,
    :math:`U(\pm\sqrt{6/(\text{fan}_{in} + \text{fan}_{out})})`, and zero biases, for every
    linear and convolution layer of ``module`` (the reference code's Dense/Conv defaults)."""
    for mod in module.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            torch.nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
