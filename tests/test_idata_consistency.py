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


def test_gp_pde_demo_export_puts_the_exact_solution_on_the_field_grid(tmp_path):
    from bayesphys.gp_pde._demo import _export

    post, x = _gaussian(None, 7)
    exact = torch.sin(3 * x)
    idata = _export(post, x, exact, num_samples=5, seed=3)
    _aligned(idata, "u", "u_exact", ("x",))
    u = group_dataset(idata, "posterior")["u"]
    np.testing.assert_array_equal(u["x"].values, x.numpy())
    # the draws of the posterior's own export with the same seed
    ref = group_dataset(post.to_inference_data(num_samples=5, seed=3), "posterior")["u"]
    np.testing.assert_array_equal(u.values, ref.values)
    back = load_netcdf(save_netcdf(idata, tmp_path / "gp_pde.nc"))
    for g in ("posterior", "observed_data"):
        assert group_dataset(back, g).identical(group_dataset(idata, g))


def test_neural_process_demo_export_puts_the_reference_on_the_case_and_x_dims():
    from bayesphys.neural_process._demo import _export

    post, x = _gaussian(3, 6)
    reference = np.sin(3 * x.numpy())[None] * np.arange(1, 4)[:, None]
    z = torch.randn(1, 4, 5, generator=torch.Generator().manual_seed(0))
    idata = _export(post, x.numpy(), reference, z, num_samples=4, seed=1)
    _aligned(idata, "u", "u_reference", ("case", "x"))
    ds = group_dataset(idata, "posterior")
    np.testing.assert_array_equal(ds["case"].values, [0, 1, 2])
    np.testing.assert_array_equal(ds["z"].values, z.numpy())
    ref = post.to_inference_data(dims=["case", "x"], num_samples=4, seed=1)
    np.testing.assert_array_equal(ds["u"].values, group_dataset(ref, "posterior")["u"].values)
