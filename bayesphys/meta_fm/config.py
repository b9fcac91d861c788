"""Configuration of a (meta) flow-matching model; saved with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["MFMConfig", "METHODS"]

METHODS = ("MFM", "FM", "CGFM")


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
        reference: odd steps update the field with cached detached embeddings, even steps the
        GCN through the fixed field).
    points / pops_per_step: points subsampled per population, populations per step.
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
    node_features: per-point features (e.g. a cell-type one-hot) the MFM embedding reads beside
        the coordinates; ``None``: as many as the training data's ``source_features`` (0 when
        it has none).
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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, received {self.method!r}")
        if self.coupling not in ("index", "ot", "ot_full", "auto"):
            raise ValueError(
                f"coupling: expected 'index', 'ot', 'ot_full' or 'auto', received {self.coupling!r}"
            )
        if self.schedule not in ("joint", "alternating"):
            raise ValueError(
                f"schedule: expected 'joint' or 'alternating', received {self.schedule!r}"
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule: expected 'constant' or 'cosine', received {self.lr_schedule!r}"
            )
        if self.conditioning not in ("concat", "film"):
            raise ValueError(
                f"conditioning: expected 'concat' or 'film', received {self.conditioning!r}"
            )
        if not isinstance(self.centered, bool):
            raise ValueError(f"centered: expected True or False, received {self.centered!r}")
        if self.solver not in ("rk4", "dopri5"):
            raise ValueError(f"solver: expected 'rk4' or 'dopri5', received {self.solver!r}")
        if self.node_features is not None and int(self.node_features) < 0:
            raise ValueError(
                f"node_features: expected an int >= 0 or None, received {self.node_features!r}"
            )
        for name in ("points", "pops_per_step", "width", "solver_steps", "knn_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{name}: expected a positive int, received {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MFMConfig:
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise TypeError(f"config: unknown keys {bad}")
        return cls(**d)
