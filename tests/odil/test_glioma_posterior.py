"""Glioma posterior: replicated observations (ArviZ posterior_predictive) and the NUTS
reference sampler run for real."""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

from bayesphys.inference_data import group_names
from bayesphys.odil import GliomaModel, nuts_reference
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from tests.arviz_compat import plot_ppc


def test_posterior_predictive_replicates_the_observed_data(tiny_pet_model):
    import matplotlib.pyplot as plt

    m = tiny_pet_model
    idata = m.to_inference_data(num_samples=4, seed=3)
    assert "posterior_predictive" in group_names(idata)
    pp, obs = idata.posterior_predictive, idata.observed_data
    assert set(pp.data_vars) == set(obs.data_vars) == {"labels", "pet"}
    for name in ("labels", "pet"):
        assert pp[name].dims == ("chain", "draw", *obs[name].dims)
        assert pp[name].shape == (2, 4, *obs[name].shape)
        assert bool(torch.isfinite(torch.as_tensor(pp[name].values)).all())
    rep = torch.as_tensor(pp["labels"].values)
    # labels (0/1/2) are exported as int8, observed and replicated alike
    assert rep.dtype == torch.int8 and set(rep.unique().tolist()) <= {0, 1, 2}
    assert obs["labels"].dtype == np.int8
    assert torch.equal(torch.as_tensor(obs["labels"].values).long(), m.labels)
    observed = m.labels.expand(rep.shape).to(torch.int8)
    # voxels the likelihood does not model (outside the brain) keep their observed labels
    outside = m.brain.expand(rep.shape) == 0
    assert torch.equal(rep[outside], observed[outside])
    # on the modelled (brain) voxels, replicates differ from the data near the lesion edge but
    # mostly agree with it; a replicate that ignored c (all labels 0) would not
    inside = ~outside
    agree = float((rep[inside] == observed[inside]).double().mean())
    assert 0.8 < agree < 1.0
    lesion = inside & (observed > 0)
    assert int(lesion.sum()) > 0 and float((rep[lesion] > 0).double().mean()) > 0.7
    # seeded: same seed, same replicate; another seed, another one
    again = m.to_inference_data(num_samples=4, seed=3).posterior_predictive
    assert (again["labels"] == pp["labels"]).all() and (again["pet"] == pp["pet"]).all()
    other = m.to_inference_data(num_samples=4, seed=4).posterior_predictive
    assert not (other["labels"] == pp["labels"]).all()
    # cheap exports keep out of it unless asked; asked, it needs no exported field
    assert "posterior_predictive" not in group_names(
        m.to_inference_data(num_samples=2, field=False)
    )
    lean = m.to_inference_data(num_samples=2, field=False, predictive=True)
    assert "posterior_predictive" in group_names(lean) and "c" not in lean.posterior
    matplotlib.use("Agg")
    try:
        plot_ppc(idata, var_names=["labels", "pet"], num_pp_samples=4, random_seed=0)
    finally:
        plt.close("all")


def test_replicated_labels_follow_the_probit_thresholds_of_the_likelihood(tiny_pet_model):
    """P(label >= k) = Phi((c - theta_k) / sigma_s) voxel by voxel, as in the loss."""
    m = tiny_pet_model
    c = m.full(m.forward(m.theta))
    n = 4000
    rep = m.replicate_observations(c.expand(n, *c.shape), seed=0)
    seg_sd, pet_sd, _ = m._noise()
    modelled = torch.zeros_like(m.brain, dtype=torch.bool)
    modelled[m.crop] = m._brain > 0
    for k, th in ((1, m.config["th_down"]), (2, m.config["th_up"])):
        freq = (rep["labels"] >= k).double().mean(0)[modelled]
        prob = torch.special.ndtr((c[modelled] - th) / seg_sd)
        assert float((freq - prob).abs().max()) < 0.04, k
    lesion = m.labels > 0  # PET is modelled on the observed lesion voxels
    mean, sd = rep["pet"].mean(0)[lesion], rep["pet"].std(0)[lesion]
    torch.testing.assert_close(mean, m.config["pet_scale"] * c[lesion], atol=0.01, rtol=0)
    torch.testing.assert_close(sd, torch.full_like(sd, pet_sd), atol=0.01, rtol=0)
    assert torch.equal(rep["pet"][:, ~lesion], m.pet[~lesion].expand(n, -1))
    with pytest.raises(ValueError, match="c: expected maps"):
        m.replicate_observations(c[:-1])
    with pytest.raises(TypeError, match="predictive"):
        m.to_inference_data(num_samples=2, predictive="yes")


@pytest.mark.slow
def test_nuts_reference_agrees_with_the_laplace_posterior(tiny_pet_model):
    """A short real NUTS run (one chain, 60 warmup + 60 draws) on the fitted loss: its mean
    within 3 Laplace sds of the mode, its sd within 0.3x-3x of the Laplace sd."""
    m = tiny_pet_model
    draws, secs = nuts_reference(m, num_samples=60, warmup_steps=60, seed=0, max_tree_depth=3)
    p = m.theta.numel()
    assert draws.shape == (1, 60, p) and draws.dtype == m.dtype
    assert bool(torch.isfinite(draws).all()) and math.isfinite(secs) and secs > 0
    mode, sd = m.theta, m.theta_cov.diagonal().sqrt()
    flat = draws.reshape(-1, p)
    z = (flat.mean(0) - mode) / sd
    ratio = flat.std(0) / sd
    assert bool((z.abs() < 3).all()), z
    assert bool(((ratio > 0.3) & (ratio < 3)).all()), ratio


def test_nuts_reference_restores_the_callers_streams_and_repeats_its_draws(tiny_pet_model):
    import random

    import numpy as np

    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(6)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    kw = dict(num_samples=2, warmup_steps=0, seed=7, max_tree_depth=2)
    a, _ = nuts_reference(tiny_pet_model, **kw)
    # pyro.set_rng_seed reseeded python, numpy and torch and left them so
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    b, _ = nuts_reference(tiny_pet_model, **kw)
    assert torch.equal(a, b)


def test_field_draws_beyond_the_stable_time_step_are_flagged():
    """Draws whose D_w exceeds what the d_max-sized time step is stable for gave blown-up
    maps (values far outside [0, 1]) from posterior() and to_inference_data() silently."""
    m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(16, 8.0)))
    m.theta = m._theta0()
    m.theta_cov = 1e-6 * torch.eye(len(m.theta), dtype=m.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stable posterior: no warning
        m.posterior(num_samples=2)
    m.theta[0] = math.log(4.0 * m.config["d_max"])
    with pytest.warns(RuntimeWarning, match=r"posterior: 3 of 3 posterior draws have D_w"):
        post = m.posterior(num_samples=3)
    assert float(post.draws.abs().max()) > 1.0  # the maps the warning is about
    with pytest.warns(RuntimeWarning, match=r"to_inference_data: 4 of 4 posterior draws"):
        m.to_inference_data(num_samples=2, predictive=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the initial state needs no time step
        m.posterior(num_samples=2, t_end=0.0)


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_unstable_draw_count_equals_max_step_per_draw(scheme):
    """The per-draw bounds come from one pass over the faces; each draw's decision equals
    max_step's at that draw (D_w spread across the bound, both time schemes)."""
    from bayesphys.problems.fisher_kolmogorov import max_step

    m = GliomaModel.from_patient(
        synthetic_patient(0, phantom=brain_phantom(16, 8.0)), time_scheme=scheme
    )
    dt = m.config["t_end"] / m.steps
    dws = torch.linspace(0.5, 4.0, 15, dtype=m.dtype) * m.config["d_max"]
    draws = torch.zeros(15, len(m._theta0()), dtype=m.dtype)
    draws[:, 0], draws[:, 1] = dws.log(), math.log(0.01)
    want = sum(
        dt > max_step(m.faces, float(dw), 0.01, m.config["spacing"], scheme) * (1 + 1e-12)
        for dw in dws
    )
    assert 0 < want < 15
    with pytest.warns(RuntimeWarning, match=rf"^x: {want} of 15 posterior draws"):
        m._warn_unstable_draws(draws, None, "x")


def test_az_loo_of_the_varying_voxels_is_finite():
    """docs/odil.md: the whole per-voxel log likelihood gives az.loo constant voxels (NaN under
    ArviZ 0.x, an error under 1.x); the voxels varying by more than round-off give a finite
    elpd."""
    import arviz as az

    from bayesphys.inference_data import build_inference_data, group_dataset

    m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(32, 4.0)), seed=0)
    m.fit(steps=8, progress=False)
    idata = m.to_inference_data(num_samples=100, predictive=False)
    ll = group_dataset(idata, "log_likelihood")["labels"]
    flat = ll.stack(voxel=[d for d in ll.dims if d not in ("chain", "draw")])
    keep = (flat.std(("chain", "draw")) > 1e-9).values
    assert 0 < keep.sum() < keep.size
    sub = build_inference_data(
        posterior={"D_w": group_dataset(idata, "posterior")["D_w"].values},
        log_likelihood={"labels": flat.values[:, :, keep]},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(sub)
    elpd = getattr(res, "elpd_loo", None)
    elpd = res["elpd"] if elpd is None else elpd
    assert math.isfinite(float(elpd))


def test_nan_draws_are_warned_about_not_counted_stable():
    """A NaN D_w or rho has a NaN stability bound; ``dt > NaN`` is False, so NaN draws passed
    the check as stable and their NaN maps were returned without a word."""
    m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(16, 8.0)))
    draws = torch.zeros(3, len(m._theta0()), dtype=m.dtype)
    draws[:, 0], draws[:, 1] = math.log(0.5 * m.config["d_max"]), math.log(0.01)
    draws[1, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"^x: 1 of 3 posterior draws have a NaN"):
        m._warn_unstable_draws(draws, None, "x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite, stable draws: no warning
        m._warn_unstable_draws(draws[[0, 2]], None, "x")
