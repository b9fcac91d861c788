"""Mends from using odil as a user would: seeds, save/load, NaN inputs."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import GliomaModel, nuts_reference
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

NUTS_KW = dict(num_samples=2, warmup_steps=2, max_tree_depth=2)


def test_nuts_reference_seed_none_draws_from_the_global_stream(tiny_pet_model):
    """seed=None was refused (``seed: expected an int``), while every other seed=None of the
    package draws its seed from torch's global stream."""
    torch.manual_seed(0)
    a, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    after = torch.rand(3)
    torch.manual_seed(0)
    b, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    assert not torch.equal(torch.rand(3), after)  # the draw advanced the global stream
    torch.manual_seed(1)
    c, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_nuts_reference_still_refuses_a_bad_seed(tiny_pet_model, seed):
    with pytest.raises((TypeError, ValueError), match=r"^seed: expected an int"):
        nuts_reference(tiny_pet_model, seed=seed, **NUTS_KW)


# -- save / load keeps the fit's result -----------------------------------------------------


def _edited(path, name, edit):
    ck = torch.load(path, weights_only=False)
    edit(ck["state"])
    new = path.parent / name
    torch.save(ck, new)
    return new


def test_load_restores_the_fit_result(tiny_pet_model, tmp_path):
    """load() gave ``result = None`` for a fitted model: the fit's losses, convergence and
    estimates were lost in a round trip while its posterior was kept."""
    m = tiny_pet_model
    back = GliomaModel.load(m.save(tmp_path / "m.pt"))
    assert back.result is not None and back.result == m.result
    assert back.result is not m.result and back.result.extra is not m.result.extra
    assert torch.equal(back.theta, m.theta) and torch.equal(back.theta_cov, m.theta_cov)
    a, b = m.theta_posterior(), back.theta_posterior()
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    assert back.estimates() == m.estimates()


def test_load_of_an_unfitted_model_or_an_older_file_has_no_result(tiny_pet_model, tmp_path):
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    assert GliomaModel.load(GliomaModel.from_patient(p).save(tmp_path / "u.pt")).result is None
    path = tiny_pet_model.save(tmp_path / "m.pt")
    older = _edited(path, "older.pt", lambda st: st.pop("result"))  # written before the entry
    back = GliomaModel.load(older)
    assert back.result is None and torch.equal(back.theta, tiny_pet_model.theta)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda st: st.update(result=[1.0]), r"state\['result'\]"),
        (lambda st: st["result"].pop("steps"), r"state\['result'\]"),
        (lambda st: st["result"].update(steps=-1), r"state\['result'\]: steps"),
        (lambda st: st["result"].update(loss_history=["a"]), r"state\['result'\]"),
        (lambda st: st.update(theta=None, theta_cov=None), r"fit result without the fitted"),
    ],
)
def test_load_refuses_a_damaged_result(tiny_pet_model, tmp_path, edit, match):
    bad = _edited(tiny_pet_model.save(tmp_path / "m.pt"), "bad.pt", edit)
    with pytest.raises(ValueError, match=rf"^path: .*{match}"):
        GliomaModel.load(bad)


# -- NaN values are refused where the user's values enter ------------------------------------


def _bad_thetas(model):
    th = model._theta0()
    for k, v in ((0, math.nan), (1, math.inf), (2, -math.inf)):
        bad = th.clone()
        bad[k] = v
        yield bad


def test_forward_and_jacobian_refuse_a_non_finite_theta(model):
    """A NaN theta gave a NaN tumour map (and a NaN Jacobian) silently."""
    for bad in _bad_thetas(model):
        with pytest.raises(ValueError, match=r"^theta: expected finite values, received 1 NaN"):
            model.forward(bad)
        with pytest.raises(ValueError, match=r"^theta: expected finite values, received 1 NaN"):
            model.jacobian(bad)
        with pytest.raises(ValueError, match=r"^theta: expected finite values"):
            model.forward(bad, t_end=1.0)


def test_the_loss_at_a_non_finite_trial_point_stays_non_finite(model):
    """The loss a sampler or optimiser evaluates is NaN or infinite there (which NUTS reads
    as a divergence and LM as a rejected step), not an error that would stop them."""
    for bad in _bad_thetas(model):
        assert not math.isfinite(float(model.loss(bad)))


def test_forward_still_runs_under_torch_func_transforms(model):
    th = model._theta0()
    c = model.forward(th)
    jf = torch.func.jacfwd(model.forward)(th)
    jr = torch.func.jacrev(model.forward)(th)
    assert jf.shape == (*c.shape, th.numel()) and torch.allclose(jf, jr, atol=1e-5)
    batch = torch.func.vmap(model.forward)(th.repeat(2, 1))
    assert torch.equal(batch[0], batch[1]) and torch.allclose(batch[0], c)
    hess = torch.autograd.functional.hessian(model.loss, th, vectorize=True)
    assert bool(torch.isfinite(hess).all())


def test_recrop_keeps_the_fit_result(tiny_pet_model):
    """recrop() kept the posterior but gave ``result = None``; now a copy of the fit's."""
    wide = tiny_pet_model.recrop(crop_margin_mm=40.0)
    assert wide.result == tiny_pet_model.result
    assert wide.result is not tiny_pet_model.result
    assert wide.result.extra is not tiny_pet_model.result.extra
