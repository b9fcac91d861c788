"""ArviZ 0.x and 1.x (Python >= 3.12) spell a few calls the tests make differently."""

from __future__ import annotations

import arviz as az

from bayesphys.inference_data import ARVIZ_V1


def plot_ppc(idata, *, num_pp_samples: int, var_names=None, random_seed=None):
    """``az.plot_ppc`` (0.x) or ``az.plot_ppc_dist`` (1.x), on matplotlib."""
    if ARVIZ_V1:
        return az.plot_ppc_dist(
            idata, var_names=var_names, num_samples=num_pp_samples, backend="matplotlib"
        )
    return az.plot_ppc(
        idata, var_names=var_names, num_pp_samples=num_pp_samples, random_seed=random_seed
    )


def plot_posterior(idata, *, var_names):
    """``az.plot_posterior`` (0.x) or ``az.plot_dist`` (1.x), on matplotlib."""
    if ARVIZ_V1:
        return az.plot_dist(idata, var_names=var_names, backend="matplotlib")
    return az.plot_posterior(idata, var_names=var_names)
