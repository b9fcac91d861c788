r"""The posterior over the PDE parameters of a :class:`~bayesphys.neural_process.RandomGridNP`
(:meth:`~bayesphys.neural_process.RandomGridNP.parameter_posterior`): a
:class:`~bayesphys.GaussianPosterior` over :math:`z` that exports to ArviZ under the name ``z``
(the field posteriors of the package export ``u``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._gaussian_posterior import GaussianPosterior

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["ParameterPosterior"]


class ParameterPosterior(GaussianPosterior):
    r"""A :class:`~bayesphys.GaussianPosterior` over the parameters :math:`z` (mean
    ``[B, dim_z]``): the same numbers, draws and methods; :meth:`to_inference_data` names the
    exported variable ``z`` by default (``name=`` still picks another), and :meth:`to` keeps
    the class."""

    def to_inference_data(
        self,
        *,
        dims: list[str] | tuple[str, ...] | None = None,
        coords: dict[str, Any] | None = None,
        observed: dict[str, Any] | None = None,
        num_samples: int | None = None,
        num_chains: int | None = None,
        name: str = "z",
        seed: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> arviz.InferenceData | xr.DataTree:
        """As :meth:`GaussianPosterior.to_inference_data`, the variable named ``z`` by default
        (default dims ``batch_0, z_dim_0``)."""
        return super().to_inference_data(
            dims=dims,
            coords=coords,
            observed=observed,
            num_samples=num_samples,
            num_chains=num_chains,
            name=name,
            seed=seed,
            params=params,
        )

    def to(self, device: str | torch.device | None) -> ParameterPosterior:
        """A copy on ``device`` (see :meth:`GaussianPosterior.to`), still a
        :class:`ParameterPosterior`."""
        moved = super().to(device)
        return ParameterPosterior(
            moved._mean,
            moved.covariance,
            event_shape=moved.event_shape,
            validate=False,
            root=moved._custom_root,
            root_dim=moved._custom_root_dim,
        )
