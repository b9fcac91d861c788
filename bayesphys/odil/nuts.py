r"""Reference posterior: pyro NUTS over the reduced parameters with the forward solver.

Samples :math:`p(\theta\mid y) \propto \exp(-L(\theta))` with :math:`L` the glioma model's loss
(data + prior, the same likelihood the Laplace posterior uses), each density evaluation one
explicit FK forward solve and its reverse-mode gradient. Used to check the Laplace posterior
(benchmark B3: posterior sd ratio and wall-time ratio).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from torch import Tensor

from .._checks import check_bool, check_int, check_seed, require, seed_or_draw
from .._model import autograd_on
from .._process_state import seeded_exclusive

if TYPE_CHECKING:  # pragma: no cover
    from .glioma import GliomaModel

__all__ = ["nuts_reference"]


@autograd_on()
def nuts_reference(
    model: GliomaModel,
    *,
    num_samples: int = 300,
    warmup_steps: int = 200,
    num_chains: int = 1,
    seed: int | None = 0,
    max_tree_depth: int = 6,
    progress: bool = False,
) -> tuple[Tensor, float]:
    r"""NUTS draws ``[chain, draw, 2 + K d]`` of :math:`\theta` (``K`` foci in ``d``
    dimensions) and the wall time in seconds.

    ``model`` is a fitted :class:`~bayesphys.odil.GliomaModel` (its fitted optimum starts the
    chains, also after :meth:`~bayesphys.odil.GliomaModel.recalibrate`).
    ``num_samples >= 1``, ``warmup_steps >= 0``, ``num_chains >= 1``, ``max_tree_depth >= 1``,
    ``seed`` in ``[0, 2**32)`` (pyro's range), or ``None``: a seed drawn from (and advancing)
    torch's global stream, as every ``seed=None`` of the package.
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    progress = check_bool("progress", progress)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = check_int("num_chains", num_chains, minimum=1)
    max_tree_depth = check_int("max_tree_depth", max_tree_depth, minimum=1)
    seed = None if seed is None else check_seed("seed", seed, minimum=0)
    if seed is not None and seed >= 2**32:
        raise ValueError(f"seed: expected an int < 2**32 (pyro's range), received {seed}")
    from .foci import _check_model

    _check_model(model)
    infer = require("pyro.infer", "pyro-ppl", "nuts_reference")
    MCMC, NUTS = infer.MCMC, infer.NUTS

    if model.theta is None:
        raise RuntimeError("model: fit() it first; NUTS starts at the optimum")
    if seed is None:  # drawn from torch's global stream (as seed=None elsewhere), once checked
        seed = seed_or_draw("seed", None) % 2**32
    # seeded like pyro.set_rng_seed(seed), the caller's global streams restored after; one
    # run at a time in the process (pyro's handler stack and the streams are process-wide)
    with seeded_exclusive(seed, model.device):

        def potential(params):
            return model.loss(params["theta"])

        kernel = NUTS(
            potential_fn=potential,
            max_tree_depth=max_tree_depth,
            adapt_mass_matrix=True,
            full_mass=False,
            step_size=0.1,
        )
        # the fitted mode, not a recalibrated one (recalibrate() shifts model.theta; the potential
        # is the fitted loss, whose optimum is where the chains should start)
        theta0 = model.fitted_theta()[0].detach()
        init = {"theta": theta0.clone().repeat(num_chains, 1) if num_chains > 1 else theta0.clone()}
        t0 = time.perf_counter()
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            num_chains=num_chains,
            initial_params=init,
            disable_progbar=not progress,
        )
        mcmc.run()
    secs = time.perf_counter() - t0
    draws = mcmc.get_samples(group_by_chain=True)["theta"]
    return draws, secs
