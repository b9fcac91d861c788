"""A fit called inside ``torch.no_grad()`` or ``torch.inference_mode()`` (an evaluation block,
a validation hook) trains as it does outside one: every one failed at its first backward with
"element 0 of tensors does not require grad" (each test failed before)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_models import TINY_MFM, tiny_rgnp

MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def _gp_pde():
    from bayesphys.gp_pde import GPPDESolver

    return GPPDESolver("poisson1d-low", num_mixtures=3, seed=0), {"steps": 3}


def _probconserv():
    from bayesphys.probconserv import ProbConserv

    return ProbConserv("stefan", step1="anp", hidden=16, n_samples=8, seed=0), {"steps": 2}


def _neural_process():
    return tiny_rgnp(), {"steps": 2}


def _meta_fm():
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map

    data = linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=0)
    return MetaFlowMatching(data, seed=0, **TINY_MFM), {"steps": 2}


def _gaussian_field():
    from bayesphys.problems.linear_gaussian import ConjugateGaussianField

    x = torch.linspace(0, 1, 10, dtype=torch.float64)
    return ConjugateGaussianField(x, [1, 5], [0.2, 0.3], seed=0), {"steps": 3}


BUILDS = {
    "gp_pde": _gp_pde,
    "probconserv": _probconserv,
    "neural_process": _neural_process,
    "meta_fm": _meta_fm,
    "gaussian_field": _gaussian_field,
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("component", list(BUILDS))
def test_a_fit_inside_a_no_grad_block_trains_as_outside_it(component, mode):
    torch.set_num_threads(1)
    model, kw = BUILDS[component]()
    ref = model.fit(progress=False, **kw).loss_history
    model, kw = BUILDS[component]()
    with MODES[mode]():
        res = model.fit(progress=False, **kw)
        # the caller's mode is in force again after the fit
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == (mode == "inference_mode")
    assert res.steps == kw["steps"]
    assert res.loss_history == ref


def _odil_adam():
    from bayesphys.odil import minimize
    from tests.odil.test_engine import _linear_gaussian

    prob = _linear_gaussian()[0]
    return lambda: minimize(prob, method="adam", steps=3)[1].loss_history


def _train_ddp():
    from bayesphys.distributed.ddp import train_ddp

    x = torch.linspace(0, 1, 16).reshape(-1, 1)
    return lambda: (
        train_ddp(
            lambda: torch.nn.Linear(1, 1),
            lambda m, b: ((m(b[0]) - 2 * b[0]) ** 2).mean(),
            [x],
            epochs=2,
            batch_size=8,
            progress=False,
        ).loss_history
    )


def _nuts():
    from bayesphys.odil import GliomaModel, nuts_reference
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    model = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(32, 4.0)), seed=0)
    model.fit(progress=False)
    return lambda: nuts_reference(model, num_samples=3, warmup_steps=3)[0].flatten().tolist()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "build", [_odil_adam, _train_ddp, _nuts], ids=["odil_adam", "train_ddp", "nuts"]
)
def test_the_other_trainers_run_inside_a_no_grad_block(build, mode):
    # the discrete-loss engine's Adam and the data-parallel loop failed as the fits did
    ref = build()()
    run = build()
    with MODES[mode]():
        got = run()
        assert not torch.is_grad_enabled()
    assert got == ref and len(got) > 0


@pytest.mark.parametrize("mode", list(MODES))
def test_the_cohort_example_model_fits_inside_a_no_grad_block(mode):
    # the example's LinearGaussianModel.fit (run by fit_many and the cohort example) failed
    # at its first backward inside torch.no_grad() / inference_mode(), as the fits did
    from bayesphys.examples.cohort import LinearGaussianModel, make_cohort

    prob = make_cohort(1, seed=0)["p000"]
    ref = LinearGaussianModel(prob, seed=0).fit(steps=3, tol=None, progress=False)
    model = LinearGaussianModel(prob, seed=0)
    with MODES[mode]():
        res = model.fit(steps=3, tol=None, progress=False)
        assert not torch.is_grad_enabled()
    assert res.loss_history == ref.loss_history and len(res.loss_history) == 3


@pytest.mark.parametrize("mode", list(MODES))
def test_odil_laplace_covariances_inside_a_no_grad_block(mode):
    # jvp_vjp turned autograd on with enable_grad() alone, which inference_mode() overrides:
    # theta_covariance, field_posterior (and so GliomaModel.fit_odil) failed there with
    # "element 0 of tensors does not require grad"
    from bayesphys.odil import field_posterior, theta_covariance
    from tests.odil.test_engine import _linear_gaussian

    prob, cov, mean = _linear_gaussian()
    ref_t = theta_covariance(prob, mean, cg_tol=1e-13)[0]
    ref_u = field_posterior(prob, mean, "u").covariance.to_dense()
    with MODES[mode]():
        got_t = theta_covariance(prob, mean, cg_tol=1e-13)[0]
        got_u = field_posterior(prob, mean, "u").covariance.to_dense()
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(got_t, ref_t)
    torch.testing.assert_close(got_t, cov[-1:, -1:], rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(got_u, ref_u)


def _glioma():
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    patient = synthetic_patient(0, phantom=brain_phantom(32, 4.0))
    return GliomaModel.from_patient(patient, seed=0), {"steps": 2}


def _cohort():
    from bayesphys.examples.cohort import LinearGaussianModel, make_cohort

    return LinearGaussianModel(make_cohort(1, seed=0)["p000"], seed=0), {"steps": 3, "tol": None}


BUILT_IN_A_BLOCK = dict(BUILDS, glioma=_glioma, cohort=_cohort)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("component", list(BUILT_IN_A_BLOCK))
def test_a_model_built_inside_a_no_grad_block_trains_as_one_built_outside(component, mode):
    # built inside inference_mode(), the models held inference tensors and their fit failed
    # ("Inference tensors cannot be saved for backward", "Inplace update to inference
    # tensor", "element 0 of tensors does not require grad"); the gp_pde solver failed to
    # build at all (its manufactured source is an autograd derivative)
    torch.set_num_threads(1)
    build = BUILT_IN_A_BLOCK[component]
    model, kw = build()
    ref = model.fit(progress=False, **kw).loss_history
    with MODES[mode]():
        model, kw = build()
        assert not torch.is_grad_enabled()  # the caller's mode is back after the build
    res = model.fit(progress=False, **kw)
    assert res.loss_history == ref and len(ref) > 0


def test_a_model_loaded_inside_inference_mode_trains_on(tmp_path):
    model = tiny_rgnp()
    model.fit(steps=2, progress=False)
    model.save(tmp_path / "m.pt")
    from bayesphys.neural_process import RandomGridNP

    ref = RandomGridNP.load(tmp_path / "m.pt").fit(steps=2, progress=False).loss_history
    with torch.inference_mode():
        again = RandomGridNP.load(tmp_path / "m.pt")
    assert again.fit(steps=2, progress=False).loss_history == ref


def test_the_manufactured_source_inside_inference_mode():
    from bayesphys.problems.gp_pde import get_problem

    prob = get_problem("poisson1d-low")
    axes = prob.axes(16)
    ref = prob.source(axes)
    with torch.inference_mode():
        got = prob.source(prob.axes(16))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
