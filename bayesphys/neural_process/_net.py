r"""The networks a :class:`~bayesphys.neural_process.RandomGridNP` configuration builds
(Vadeboncoeur et al., ICML 2023): the forward model :math:`q_\alpha(\tilde u \mid z, w, X)`
(:class:`~.forward.ForwardNet`), the inverse model :math:`p_\beta(z \mid \tilde u, X, w)`
(:class:`~.gicnet.GICNet`), the residual scale :math:`\log\sigma_r`, the collocation grid, the
observation-layout generator and the optimiser's parameter groups.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from .._process_state import seeded_build
from .config import RGNPConfig, keras_init
from .forward import ForwardNet
from .gicnet import GICNet
from .grids import make_grid

__all__ = ["Networks", "build_networks"]


class Networks(NamedTuple):
    """What :func:`build_networks` builds."""

    forward_net: ForwardNet
    inverse_net: GICNet
    log_sigma_r: torch.nn.Parameter
    net: torch.nn.ModuleDict  #: ``{"fwd", "inv"}`` and the parameter ``log_sigma_r``
    grid: Any  #: the collocation measure (:func:`~.grids.make_grid`)
    layouts: Any  #: the observation-layout generator
    groups: list[dict[str, Any]]  #: the optimiser's parameter groups, each with its ``mult``


def build_networks(
    problem: Any, config: RGNPConfig, seed: int | None, device: torch.device, dtype: torch.dtype
) -> Networks:
    """The networks, grids and parameter groups of a model of ``problem`` and ``config`` on
    ``device`` in ``dtype``, their initial weights drawn from ``seed`` without reseeding the
    caller's global streams (``None``: from torch's global streams)."""
    cfg = config
    # initial weights from ``seed``, without reseeding the caller's global streams
    with seeded_build(seed, device):
        p = problem
        forward_net = ForwardNet(
            p.dim_x,
            p.dim_z,
            p.dim_w,
            hidden=cfg.hidden,
            depth=cfg.depth,
            n_freq=cfg.n_freq,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            train_freq=cfg.train_freq,
            rank=cfg.rank,
            var_lo=cfg.var_lo,
        ).to(device, dtype)
        inverse_net = GICNet(p.dim_x, p.dim_z, p.dim_w, p.lower, p.upper, **cfg.gic).to(
            device, dtype
        )
        log_sigma_r = torch.nn.Parameter(
            torch.tensor(math.log(cfg.sigma_r), dtype=dtype, device=device),
            requires_grad=cfg.learn_sigma_r,
        )
        net = torch.nn.ModuleDict({"fwd": forward_net, "inv": inverse_net})
        net.register_parameter("log_sigma_r", log_sigma_r)
        grid = make_grid(cfg.grid, p.lower, p.upper)
        layouts = make_grid("layouts", p.lower, p.upper)
        fwd_params = list(forward_net.parameters())
        groups = [
            {"params": fwd_params, "mult": 1.0},
            {"params": list(inverse_net.parameters()), "mult": cfg.inv_lr_mult},
        ]
        if cfg.learn_sigma_r:
            if cfg.sigma_r_lr_mult == 1.0:
                fwd_params.append(log_sigma_r)
            else:
                groups.append({"params": [log_sigma_r], "mult": cfg.sigma_r_lr_mult})
        if cfg.init == "keras":  # ``init`` is checked by ``validate``
            keras_init(net)
    return Networks(forward_net, inverse_net, log_sigma_r, net, grid, layouts, groups)
