"""The components' own ArviZ exports agree with each other and with what the docs promise:
groups, dims shared between groups, coordinates and draws."""

from __future__ import annotations

import numpy as np
import torch

from bayesphys import GaussianPosterior
from bayesphys.inference_data import group_dataset, load_netcdf, save_netcdf

F64 = torch.float64


def _gaussian(batch: int | None, n: int) -> tuple[GaussianPosterior, torch.Tensor]:
    x = torch.linspace(0.0, 1.0, n, dtype=F64)
    mean = (
        torch.sin(3 * x)
        if batch is None
        else torch.sin(3 * x) * torch.arange(1, batch + 1)[:, None]
    )
    cov = 1e-2 * torch.exp(-((x[:, None] - x[None]) ** 2) / 0.1) + 1e-8 * torch.eye(n, dtype=F64)
    if batch is not None:
        cov = cov.expand(batch, n, n)
    return GaussianPosterior(mean, cov, event_shape=(n,)), x


def _aligned(idata, field: str, observed: str, dims: tuple[str, ...]) -> None:
    """``observed`` sits on the dims and coordinates of the field: their difference is
    ``[chain, draw, *dims]``, not an outer product."""
    u = group_dataset(idata, "posterior")[field]
    obs = group_dataset(idata, "observed_data")[observed]
    assert u.dims == ("chain", "draw", *dims)
    assert obs.dims == dims
    for d in dims:
        np.testing.assert_array_equal(obs[d].values, u[d].values)
    assert (u - obs).dims == ("chain", "draw", *dims)


def test_an_observed_field_of_the_fields_shape_shares_its_dims(tmp_path):
    """As the gp_pde demo exports: ``observed={"u_exact": exact}`` got a dim of its own
    (``u_exact_dim_0``), so ``posterior.u - observed_data.u_exact`` was an outer product."""
    post, x = _gaussian(None, 7)
    exact = torch.sin(3 * x)
    idata = post.to_inference_data(
        dims=["x"], coords={"x": x.numpy()}, observed={"u_exact": exact}, num_samples=5, seed=3
    )
    _aligned(idata, "u", "u_exact", ("x",))
    np.testing.assert_array_equal(group_dataset(idata, "posterior")["x"].values, x.numpy())
    back = load_netcdf(save_netcdf(idata, tmp_path / "gp_pde.nc"))
    for g in ("posterior", "observed_data"):
        assert group_dataset(back, g).identical(group_dataset(idata, g))


def test_observed_fields_of_a_batched_posterior_take_the_batch_and_event_dims():
    """As the neural_process demo exports (cases x points), and one of the event shape alone
    on the event dims; any other shape keeps dims of its own."""
    post, x = _gaussian(3, 6)
    reference = np.sin(3 * x.numpy())[None] * np.arange(1, 4)[:, None]
    z = torch.randn(1, 4, 5, generator=torch.Generator().manual_seed(0))
    idata = post.to_inference_data(
        dims=["case", "x"],
        coords={"case": [0, 1, 2], "x": x.numpy()},
        num_samples=4,
        seed=1,
        params={"z": z},
        observed={"u_reference": torch.as_tensor(reference), "u_one": reference[0], "y": [1.0]},
    )
    _aligned(idata, "u", "u_reference", ("case", "x"))
    obs = group_dataset(idata, "observed_data")
    assert obs["u_one"].dims == ("x",) and obs["y"].dims == ("y_dim_0",)
    np.testing.assert_array_equal(group_dataset(idata, "posterior")["z"].values, z.numpy())
