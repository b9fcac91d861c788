"""Configuration of a (meta) flow-matching model; saved with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .._checks import check_int, check_real, did_you_mean

__all__ = ["MFMConfig", "METHODS"]

METHODS = ("MFM", "FM", "CGFM")
"""Methods of :class:`MFMConfig`: ``"MFM"`` (GCN population embedding), ``"FM"`` (no condition) and
``"CGFM"`` (one-hot condition)."""


@dataclass
class MFMConfig:
    r"""Hyper-parameters (defaults: a CPU-sized version of the reference letters model).

    method: ``"MFM"`` (condition on the GCN embedding of the source population), ``"FM"``
        (no population condition) or ``"CGFM"`` (one-hot id of the training population;
        unseen populations get the uniform average of the training one-hots).
    coupling: ``"index"``, ``"ot"`` (minibatch OT), ``"ot_full"`` (OT between whole
        populations, computed once per fit) or ``"auto"`` (index when the data are paired,
        else minibatch OT).
    schedule: ``"joint"`` (one optimiser over field and GCN) or ``"alternating"`` (the
        reference: the 1st, 3rd, ... steps of each ``fit`` call update the field with cached
        detached embeddings, its 2nd, 4th, ... the GCN through the fixed field).
    points / pops_per_step: points subsampled per population, populations per step. In
        training a population smaller than ``points`` is resampled with replacement for the
        flow-matching pairs (a ``UserWarning`` says so), while the MFM embedding reads it
        whole; prediction too embeds populations of at most ``points`` whole.
    lr_schedule: ``"constant"`` (the reference) or ``"cosine"`` (each learning rate decays as
        :math:`\tfrac12(1 + \cos(\pi k / K))` over the ``K`` steps of one :meth:`fit` call).
    conditioning: how the field reads its condition: ``"concat"`` (input concatenation, the
        reference) or ``"film"`` (also a zero-initialised feature-wise affine modulation of every
        hidden layer, :class:`~bayesphys.meta_fm.field.VectorField`).
    centered: the field reads each point relative to its population's source mean,
        :math:`v_\theta(t, x - \bar x_0, c)` with :math:`\bar x_0` the mean of the whole
        source population (a translation-equivariant field; the embedding still sees the
        uncentred points). Valid for paired and unpaired data, since the interpolant's velocity
        :math:`x_1 - x_0` does not change under a common shift.
    type_frame: the field reads each point relative to the mean of the source points of its
        own type in its population, with its type:
        :math:`v_\theta(t, x - c_{\tau(x)}, e_{\tau(x)}, c)`, ``e`` the point's one-hot type
        (``source_features [n_i, f]``, required by every method; ``node_features`` is then
        ``f``, read by the field and, for MFM, the embedding), :math:`c_k` the mean of the
        whole source population's points of type ``k``. Training couples each pair on the
        raw points first, then shifts both by the source point's centre (the velocity
        :math:`x_1 - x_0` is unchanged); prediction integrates each point in its own frame
        and shifts it back. Refused together with ``centered`` (the whole-population centre).
    node_features: per-point features (e.g. a cell-type one-hot) the MFM embedding reads beside
        the coordinates; ``None``: as many as the training data's ``source_features`` (0 when
        it has none; an MFM model built from ``dim`` alone has 0, and its ``fit`` warns when
        the data bring features it will not read; an explicit 0 ignores them quietly, as
        does a saved and loaded model).

    Numeric settings are checked at construction (``TypeError`` for a non-int count such as
    ``2.5`` or ``True``, ``ValueError`` out of range; an integral float such as ``64.0`` is
    stored as ``64``): ``points``, ``pops_per_step``, ``width``, ``gnn_hidden``,
    ``gnn_layers``, ``knn_k``, ``solver_steps`` ``>= 1`` (``points >= 2`` for MFM, whose
    embedding needs a graph); ``layers >= 2`` (input and output layer, ``layers - 2`` hidden
    ones); ``time_dim`` even and ``>= 2`` (``time_dim / 2`` sinusoid frequencies);
    ``fourier >= 0`` (0: no Fourier features); ``node_features >= 0`` or ``None``;
    ``fourier_sigma``, ``lr``, ``gnn_lr``, ``atol``, ``rtol`` finite and ``> 0``. Settings
    that only the MFM embedding reads are refused for FM and CGFM when they would change
    something: ``node_features > 0`` (unless ``type_frame``) and ``schedule="alternating"``;
    ``type_frame`` refuses ``centered=True`` and ``node_features=0``. Assigning a
    field afterwards (``cfg.lr = -1``) is checked the same way, and a refused value leaves the
    config unchanged.

    A model's ``config`` is its own copy. A setting its modules were built from (their shapes:
    ``method``, ``width``, ``layers``, ``residual``, ``time_dim``, ``fourier``,
    ``conditioning``, ``type_frame``, for MFM ``gnn_hidden``, ``gnn_layers``,
    ``node_features`` (with ``type_frame`` for every method); and
    ``fourier_sigma``, the sd of the Fourier matrix drawn then) assigned to it after
    construction is refused by the model's ``fit``, ``embed``, ``predict``, ``posterior`` and
    ``save`` (a ``ValueError`` naming it; set it back, or build a new model). The others are
    read at each use, except ``normalize``, read by the first ``fit`` only (the frame it
    estimates is kept by later fits).
    """

    method: str = "MFM"
    coupling: str = "auto"
    schedule: str = "joint"
    points: int = 256
    pops_per_step: int = 4
    width: int = 256
    layers: int = 4
    residual: bool = False
    time_dim: int = 128
    fourier: int = 128
    fourier_sigma: float = 0.01
    gnn_hidden: int = 64
    gnn_layers: int = 3
    knn_k: int = 50
    lr: float = 1e-3
    gnn_lr: float = 1e-3
    solver: str = "rk4"
    solver_steps: int = 10
    atol: float = 1e-5
    rtol: float = 1e-5
    normalize: bool = True
    lr_schedule: str = "constant"
    node_features: int | None = None
    conditioning: str = "concat"
    centered: bool = False
    type_frame: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"method: expected one of {METHODS}, received "
                f"{self.method!r}{did_you_mean(self.method, METHODS)}"
            )
        if self.coupling not in ("index", "ot", "ot_full", "auto"):
            raise ValueError(
                f"coupling: expected 'index', 'ot', 'ot_full' or 'auto', received {self.coupling!r}"
                f"{did_you_mean(self.coupling, ('index', 'ot', 'ot_full', 'auto'))}"
            )
        if self.schedule not in ("joint", "alternating"):
            raise ValueError(
                f"schedule: expected 'joint' or 'alternating', received {self.schedule!r}"
                f"{did_you_mean(self.schedule, ('joint', 'alternating'))}"
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule: expected 'constant' or 'cosine', received {self.lr_schedule!r}"
                f"{did_you_mean(self.lr_schedule, ('constant', 'cosine'))}"
            )
        if self.conditioning not in ("concat", "film"):
            raise ValueError(
                f"conditioning: expected 'concat' or 'film', received {self.conditioning!r}"
                f"{did_you_mean(self.conditioning, ('concat', 'film'))}"
            )
        for name in ("centered", "type_frame"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name}: expected True or False, received {getattr(self, name)!r}"
                )
        if self.centered and self.type_frame:
            raise ValueError(
                "type_frame: the per-type frame replaces the whole-population centre; "
                "received type_frame=True with centered=True (set one of them to False)"
            )
        if self.solver not in ("rk4", "dopri5"):
            raise ValueError(
                f"solver: expected 'rk4' or 'dopri5', received {self.solver!r}"
                f"{did_you_mean(self.solver, ('rk4', 'dopri5'))}"
            )

        for name in ("residual", "normalize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name}: expected True or False, received {getattr(self, name)!r}"
                )
        if self.node_features is not None:
            self.node_features = check_int("node_features", self.node_features, minimum=0)
        if self.type_frame and self.node_features == 0:
            raise ValueError(
                "node_features: type_frame reads each point's one-hot type (the data's "
                "source_features), received node_features=0 (leave it None)"
            )
        if self.method != "MFM":  # settings only the MFM population embedding reads
            if self.node_features and not self.type_frame:
                raise ValueError(
                    f"node_features: only the MFM population embedding reads point features; "
                    f"method {self.method!r} has none, received {self.node_features} (use 0)"
                )
            if self.schedule == "alternating":
                raise ValueError(
                    f"schedule: 'alternating' alternates field and GCN updates; method "
                    f"{self.method!r} has no GCN (use 'joint')"
                )
        minimum = {"layers": 2, "fourier": 0, "time_dim": 2}
        if self.method == "MFM":
            minimum["points"] = 2  # the population embedding needs a kNN graph of >= 2 points
        for name in (
            "points",
            "pops_per_step",
            "width",
            "layers",
            "time_dim",
            "fourier",
            "gnn_hidden",
            "gnn_layers",
            "knn_k",
            "solver_steps",
        ):
            setattr(self, name, check_int(name, getattr(self, name), minimum=minimum.get(name, 1)))
        if self.time_dim % 2:
            raise ValueError(
                f"time_dim: expected an even int (cos and sin of time_dim / 2 frequencies), "
                f"received {self.time_dim}"
            )
        for name in ("fourier_sigma", "lr", "gnn_lr", "atol", "rtol"):
            setattr(self, name, check_real(name, getattr(self, name), minimum=0.0, strict=True))
        object.__setattr__(self, "_checked", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_checked") and name in {f.name for f in fields(self)}:
            value = getattr(replace(self, **{name: value}), name)  # the constructor's checks
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MFMConfig:
        """Settings from :meth:`to_dict`'s dict (unknown keys refused)."""
        if not isinstance(d, dict):
            raise TypeError(f"config: expected a dict of settings, received {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            hint = did_you_mean(bad[0], sorted(names))
            raise TypeError(f"config: unknown keys {bad}{hint}; expected some of {sorted(names)}")
        return cls(**d)
