"""The sampled field posterior scales with the field's units (its jitter was an absolute
1e-12 variance: on a field of order 1e-6 the sds it reported were the size of the field)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import field_posterior, minimize

from .test_engine import _linear_gaussian

F64 = torch.float64


def _problem(scale):
    return _linear_gaussian(scale=scale)[0]


def _sds(scale):
    prob = _problem(scale)
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    post = field_posterior(prob, x, "u", dense_max=0, num_samples=16, cg_tol=1e-12, seed=0)
    return post.mean / scale, post.variance.sqrt() / scale


@pytest.mark.parametrize("scale", [1e-6, 1e4])
def test_the_sampled_field_posterior_scales_with_the_field(scale):
    mean1, sd1 = _sds(1.0)
    mean, sd = _sds(scale)
    torch.testing.assert_close(mean, mean1, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sd, sd1, rtol=1e-6, atol=0)


def test_an_explicit_jitter_is_an_absolute_variance():
    prob = _problem(1.0)
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    kw = dict(dense_max=0, num_samples=4, cg_tol=1e-12, seed=0)
    base = field_posterior(prob, x, "u", jitter=0.0, **kw).variance
    torch.testing.assert_close(
        field_posterior(prob, x, "u", jitter=0.25, **kw).variance, base + 0.25
    )


def test_glioma_voxel_size_per_axis_or_anisotropic():
    """One size per axis is taken when all are equal; anisotropic voxels (clinical 1x1x3 mm)
    are refused with what to do (the message said only "expected a real number")."""
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    p = synthetic_patient(0, phantom=brain_phantom(24, 4.0))
    iso = GliomaModel.from_patient(p, spacing=(4.0, 4.0))
    assert iso.config["spacing"] == 4.0 and isinstance(iso.config["spacing"], float)
    assert repr(iso) == repr(GliomaModel.from_patient(p, spacing=4.0))
    assert GliomaModel.from_patient(p, spacing=torch.tensor(4.0)).config["spacing"] == 4.0
    with pytest.raises(ValueError, match=r"^spacing: expected isotropic voxels .*resample"):
        GliomaModel.from_patient(p, spacing=(4.0, 2.0))
    for bad in ((4.0, 4.0, 4.0), [4.0]):  # a 2-D scan
        with pytest.raises(
            ValueError, match=r"^spacing: expected one voxel size, or one per axis of the 2-D"
        ):
            GliomaModel.from_patient(p, spacing=bad)
    with pytest.raises(TypeError, match=r"^spacing: expected a voxel size in mm or one per axis"):
        GliomaModel.from_patient(p, spacing=("a", "b"))
    # a NaN, infinite or non-positive size is named as such, not called anisotropic
    for bad, k in (((math.nan, math.nan), 0), ((4.0, math.inf), 1), ((-4.0, -4.0), 0)):
        with pytest.raises(ValueError, match=rf"^spacing\[{k}\]: expected a"):
            GliomaModel.from_patient(p, spacing=bad)


def test_the_default_jitter_is_1e_12_of_the_mean_sampled_variance():
    """jitter=None adds 1e-12 times the mean sampled variance to every variance (documented;
    an explicit jitter is absolute, see above)."""
    prob = _problem(1e-3)
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    kw = dict(dense_max=0, num_samples=8, cg_tol=1e-12, seed=0)
    base = field_posterior(prob, x, "u", jitter=0.0, **kw).variance
    got = field_posterior(prob, x, "u", **kw).variance
    want = torch.full_like(base, 1e-12 * float(base.mean()))
    torch.testing.assert_close(got - base, want, rtol=1e-3, atol=0)


def _scaled_linear_problem(c: float):
    """u [6], theta [2]: a two-point stencil with parameter couplings, observations of three
    cells and a prior on theta, every residual multiplied by ``c`` (H scales by c^2, the
    covariances by 1/c^2)."""
    from bayesphys.odil import DiscreteProblem

    g = torch.Generator().manual_seed(0)
    a = 1.0 + torch.rand(6, generator=g, dtype=F64)
    b = torch.randn(5, generator=g, dtype=F64)
    cc = torch.randn(6, 2, generator=g, dtype=F64)
    f = torch.randn(6, generator=g, dtype=F64)
    y = torch.randn(3, generator=g, dtype=F64)

    def res(fields, params):
        u, th = fields["u"], params["theta"]
        pde = a * u + torch.cat([b * u[1:], u.new_zeros(1)]) + cc @ th - f
        return {"pde": c * pde, "data": c * (u[::2] - y), "prior": c * th}

    return DiscreteProblem({"u": (6,)}, {"theta": torch.zeros(2, dtype=F64)}, res)


@pytest.mark.parametrize("c", [1e-10, 1e10])
def test_dense_laplace_covariances_are_unit_free(c):
    """The singularity checks read H in its own units (a Schur complement relative to H_ii):
    a well-posed problem whose residuals are all scaled by c (H by c^2, tiny or huge) is
    accepted on every path and its covariances scale by exactly 1/c^2."""
    from bayesphys.odil import theta_covariance

    ref = _scaled_linear_problem(1.0)
    big = _scaled_linear_problem(c)
    x, _ = minimize(ref, method="gn", steps=1, linear_solver="dense")
    want_u = field_posterior(ref, x, "u").covariance.to_dense()
    got_u = field_posterior(big, x, "u").covariance.to_dense() * c**2
    torch.testing.assert_close(got_u, want_u, rtol=1e-8, atol=0)
    for kw in ({}, {"dense": True}):
        want_t, _ = theta_covariance(ref, x, cg_tol=1e-13, **kw)
        got_t, _ = theta_covariance(big, x, cg_tol=1e-13, **kw)
        torch.testing.assert_close(got_t * c**2, want_t, rtol=1e-7, atol=0)
