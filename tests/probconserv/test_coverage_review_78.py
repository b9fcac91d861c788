"""Coverage review (round 78): probconserv code that no default test executed.

The calibration hook's simulator, a config given with a tensor keyword, the ANP's latent draws
from the global stream (``seed=None``), ``fit(steps=0)``, a checkpoint's reversed trained
range, analog error roots (``root_for`` with ``K > 0``), a few argument checks, integer
discrepancy variances and the mixture update of draws that require grad. Each test checks the
path against its docstring or an independent oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear_operator.operators import DiagLinearOperator
from scipy.optimize import brentq
from scipy.special import erf

from bayesphys.probconserv import (
    ProbConserv,
    ProbConservConfig,
    add_discrepancy,
    conserve_latent_mixture,
    fit_hybrid,
    fit_local_scale,
    mass_residual,
)
from bayesphys.problems.gpme import make_dataset
from tests.warning_checks import messages_containing

from .test_calibration import error_direction_set
from .test_review_74 import _local_args

F64 = torch.float64
OUTSIDE = "outside the range the Step-1 model was trained on"


def _anp(**kw) -> ProbConserv:
    torch.set_num_threads(1)
    return ProbConserv("diffusion", step1="anp", hidden=16, n_samples=4, seed=0, **kw)


# -- _calibration.simulate ----------------------------------------------------------------------


def _stefan_field(u_star: float, t: float, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The Stefan solution by its textbook construction (scipy root and erf) and its front:
    z1 solves u* erf(z) z exp(z^2) = (1 - u*)/sqrt(pi), front alpha sqrt(t) with
    alpha = 2 z1, u = 1 - c1 erf(x / 2 sqrt t) behind it (c1 = (1 - u*)/erf(z1)), 0 ahead."""
    rhs = (1 - u_star) / math.sqrt(math.pi)
    z1 = brentq(lambda z: u_star * erf(z) * z * math.exp(z * z) - rhs, 1e-12, 10.0, xtol=1e-15)
    c1 = (1 - u_star) / erf(z1)
    front = 2 * z1 * math.sqrt(t)
    return np.where(x < front, 1 - c1 * erf(x / (2 * math.sqrt(t))), 0.0), front


def test_calibration_simulator_is_the_stefan_field_of_each_data_set():
    """``_calibration.simulate``: "theta [n, 201] (true slices at t = 0.05) and n
    single-function data sets", u* ~ U[0.55, 0.7]; row i is the field of data set i."""
    from bayesphys.probconserv._calibration import simulate

    theta, sets = simulate(3, seed=4)
    assert theta.shape == (3, 201) and len(sets) == 3
    x = np.linspace(0.0, 1.0, 201)
    for row, d in zip(theta, sets):
        assert len(d) == 1
        u_star = float(d.params[0])
        assert 0.55 <= u_star <= 0.7
        want, front = _stefan_field(u_star, 0.05, x)
        # a grid point within 1e-9 of the front is left out: there a round-off change of the
        # front moves it from one side to the other
        far = np.abs(x - front) > 1e-9
        assert far.sum() >= 200
        np.testing.assert_allclose(row.numpy()[far], want[far], rtol=0, atol=1e-10)
    assert len({float(d.params[0]) for d in sets}) == 3  # three functions, not one three times


# -- a config with a tensor keyword -------------------------------------------------------------


def test_a_config_refuses_a_tensor_keyword_of_several_values_by_name():
    """``bool(tensor == default)`` of a several-valued tensor raises: read as "changed" and
    named, not a torch "Boolean value of Tensor ... is ambiguous"; a 0-d tensor equal to the
    default is left at it."""
    cfg = ProbConservConfig(problem="pme", hidden=8, n_samples=4)
    with pytest.raises(ValueError, match=r"^sigma_g: a ProbConservConfig gives every setting"):
        ProbConserv(cfg, sigma_g=torch.tensor([0.1, 0.2]))
    same = ProbConserv(cfg, sigma_g=torch.tensor(cfg.sigma_g))
    assert same.config == ProbConserv(cfg).config


# -- the ANP's latent draws from the global stream ----------------------------------------------


def test_anp_step1_seed_none_draws_from_the_global_stream():
    """``step1`` docstring: ``seed=None`` draws "one block from torch's global stream": the
    global seed repeats it, advances by it and another global seed gives other draws."""
    m = _anp()
    m.fit(steps=2, progress=False)
    d = make_dataset("diffusion", params=[2.0, 4.0], seed=1)
    torch.manual_seed(5)
    a = m.step1(d, seed=None)
    after = torch.rand(3)
    torch.manual_seed(5)
    b = m.step1(d, seed=None)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    torch.manual_seed(5)
    assert not torch.equal(torch.rand(3), after)  # the draws advanced the global stream
    torch.manual_seed(6)
    c = m.step1(d, seed=None)
    assert not torch.equal(a.mean, c.mean)
    assert a.mean.shape == m.step1(d, seed=0).mean.shape
    assert bool(torch.isfinite(a.mean).all()) and bool((a.variance > 0).all())


# -- fit(steps=0) -----------------------------------------------------------------------------


def test_fit_of_no_steps_leaves_the_trained_range():
    """``fit(data, steps=0)`` trains on nothing, so the range the weights saw stays as it was:
    a function outside it still warns (recording the data's parameters would silence it)."""
    m = _anp()
    m.fit(steps=2, progress=False)  # trained on k in [1, 5]
    res = m.fit(make_dataset("diffusion", params=[9.0], seed=2), steps=0, progress=False)
    assert res.steps == 0 and res.loss_history == [] and m.steps_done == 2
    far = make_dataset("diffusion", params=[9.0], seed=1)
    msgs = messages_containing(lambda: m.posterior(far), OUTSIDE)
    assert len(msgs) == 1 and "[1, 5]" in msgs[0]
    fresh = _anp()
    fresh.fit(steps=0, progress=False)
    assert fresh.steps_done == 0
    # an untrained model knows no range: no outside-range warning (it warns of no training)
    assert messages_containing(lambda: fresh.posterior(far), OUTSIDE) == []


# -- a checkpoint's trained range ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [[5.0, 1.0], [math.nan, 1.0], [1.0, math.nan]])
def test_load_refuses_a_reversed_or_half_known_trained_range(tmp_path, bad):
    m = _anp()
    path = m.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=False)
    ck["state"]["trained_params"] = bad
    torch.save(ck, path)
    with pytest.raises(ValueError, match=r"trained_params: expected lo <= hi"):
        ProbConserv.load(path)


def test_load_reads_an_unknown_trained_range_as_no_warning(tmp_path):
    m = _anp()
    m.fit(steps=1, progress=False)
    path = m.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=False)
    ck["state"]["trained_params"] = [math.nan, math.nan]  # a fit on data of unknown parameters
    torch.save(ck, path)
    loaded = ProbConserv.load(path)
    far = make_dataset("diffusion", params=[9.0], seed=1)
    assert messages_containing(lambda: loaded.posterior(far), OUTSIDE) == []
    assert len(messages_containing(lambda: m.posterior(far), OUTSIDE)) == 1


# -- analog error roots -------------------------------------------------------------------------


def test_root_for_with_analogs_is_the_k_nearest_validation_errors():
    """Module docstring: with ``K`` analogs, Sigma_err(f) uses only the errors of the K
    validation functions whose Step-1 means are nearest to mu_f. Oracle: a naive loop over
    the validation functions (Euclidean distance over the grid), E_near E_near^T / K."""
    mean, cov, truth, update, t, x = error_direction_set()
    cal = fit_hybrid(mean, cov, truth, update, t, x, neighbours=(2,))
    assert cal.neighbours == 2
    gen = torch.Generator().manual_seed(7)
    query = torch.cat(
        [
            mean[[3, 17]] + 1e-4 * torch.randn(2, 1, 9, generator=gen, dtype=F64),
            torch.rand(1, 1, 9, generator=gen, dtype=F64),
        ]
    )
    root = cal.root_for(query)
    assert root.shape == (3, 1, 9, 2)
    err = (mean - truth).numpy()
    val = mean.numpy().reshape(len(mean), -1)
    for b, q in enumerate(query.numpy()):
        dist = [float(np.sqrt(((q.reshape(-1) - v) ** 2).sum())) for v in val]
        near = np.argsort(dist)[:2]
        e = err[near][:, 0]  # [K, N] (one time slice)
        want = e.T @ e / 2
        got = (root[b, 0] @ root[b, 0].T).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert 3 in np.argsort([np.abs(query[0].numpy().reshape(-1) - v).sum() for v in val])[:2]
    # K = 0 (all errors): the same for every query, E E^T / V
    all_errors = fit_hybrid(mean, cov, truth, update, t, x).root_for(query)
    full = err[:, 0].T @ err[:, 0] / len(err)
    np.testing.assert_allclose((all_errors[0] @ all_errors[0].mT).numpy(), full, rtol=1e-12)


# -- argument checks ----------------------------------------------------------------------------


def test_fit_local_scale_refuses_calibration_means_on_another_grid():
    args = _local_args()
    args["cal_mean"] = args["cal_mean"][..., :6]
    args["z"] = {"post": args["z"]["post"][..., :6]}
    with pytest.raises(
        ValueError, match=r"^cal_mean: expected shape \[M, 1, 7\] \(the grid of val_mean\)"
    ):
        fit_local_scale(**args)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.bool])
def test_mass_residual_refuses_a_complex_or_bool_covariance(dtype):
    mean = torch.rand(2, 3, 5, dtype=F64)
    cov = torch.eye(5, dtype=F64).expand(2, 3, 5, 5).to(dtype)
    with pytest.raises(TypeError, match=rf"^cov: expected real values, received dtype {dtype}"):
        mass_residual(mean, cov, torch.rand(5, dtype=F64), torch.rand(2, 3, dtype=F64))


@pytest.mark.parametrize(
    "cov",
    [
        torch.eye(4, dtype=F64).expand(2, 3, 4, 4),
        DiagLinearOperator(torch.ones(2, 3, 4, dtype=F64)),
    ],
)
def test_mass_residual_refuses_a_covariance_of_another_grid_size(cov):
    mean = torch.rand(2, 3, 5, dtype=F64)
    with pytest.raises(ValueError, match=r"^cov: expected shape \[B, nt, N, N\] with N = 5"):
        mass_residual(mean, cov, torch.rand(5, dtype=F64), torch.rand(2, 3, dtype=F64))


# -- integer discrepancy variances --------------------------------------------------------------


@pytest.mark.parametrize("structured", [False, True])
def test_add_discrepancy_takes_integer_variances_in_the_covariance_dtype(structured):
    """An integer ``sd2`` tensor is cast to ``cov``'s dtype (the docstring: "converted to cov's
    dtype"), not used as integers. Oracle: Sigma + sd2 L L^T in float64 by hand."""
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(2, 3, 5, generator=gen, dtype=F64) + 0.5
    root = torch.rand(5, 2, generator=gen, dtype=F64)
    sd2 = torch.tensor([[1, 0, 2], [0, 3, 1]])
    want = torch.diag_embed(d) + sd2.to(F64)[..., None, None] * (root @ root.T)
    cov = DiagLinearOperator(d.float()) if structured else torch.diag_embed(d).float()
    out = add_discrepancy(cov, sd2, root.float())
    dense = out.to_dense() if structured else out
    assert dense.dtype == torch.float32 and dense.shape == (2, 3, 5, 5)
    torch.testing.assert_close(dense.double(), want, rtol=1e-6, atol=1e-6)


# -- the mixture update of draws that require grad -----------------------------------------------


def test_mixture_update_of_draws_that_require_grad():
    """With ``variances`` requiring grad (the updated covariance then does) it is densified
    without the in-place diagonal add: the same values as without grad, and gradients in
    the means and variances that match finite differences (``torch.autograd.gradcheck``,
    float64)."""
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(2, 2, 4, generator=gen, dtype=F64)
    variances = torch.rand(2, 2, 4, generator=gen, dtype=F64) + 0.2
    x = torch.linspace(0.0, 1.0, 4, dtype=F64)
    mass = torch.rand(2, generator=gen, dtype=F64)
    plain = conserve_latent_mixture(means, variances, x, mass, 0.1)
    graph = conserve_latent_mixture(
        means.clone().requires_grad_(), variances.clone().requires_grad_(), x, mass, 0.1
    )
    assert graph.mean.requires_grad and graph.covariance.requires_grad
    assert torch.equal(graph.mean.detach(), plain.mean)
    assert torch.equal(graph.covariance.to_dense().detach(), plain.covariance.to_dense())

    def moments(m, v):
        post = conserve_latent_mixture(m, v, x, mass, 0.1)
        return post.mean, post.covariance.to_dense()

    inputs = (means.clone().requires_grad_(), variances.clone().requires_grad_())
    assert torch.autograd.gradcheck(moments, inputs)
