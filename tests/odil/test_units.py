"""The sampled field posterior scales with the field's units (its jitter was an absolute
1e-12 variance: on a field of order 1e-6 the sds it reported were the size of the field)."""

from __future__ import annotations

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
    post = field_posterior(prob, x, "u", dense_max=0, num_draws=16, cg_tol=1e-12, seed=0)
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
    kw = dict(dense_max=0, num_draws=4, cg_tol=1e-12, seed=0)
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
