"""Step 2 per latent draw (the reference code's update) and ``covariance="mixture"``."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.probconserv import (
    ProbConserv,
    conserve_latent_mixture,
    conserve_slices,
    trapezoid_weights,
)
from bayesphys.probconserv._predict import function_noise
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _draws(s, batch, nx, seed):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(s, *batch, nx, generator=g, dtype=F64)
    var = 0.05 + torch.rand(s, *batch, nx, generator=g, dtype=F64)
    x = torch.sort(torch.rand(nx, generator=g, dtype=F64)).values * 2.0
    mass = torch.randn(tuple(batch), generator=g, dtype=F64)
    return mu, var, x, mass


def _brute_force(mu, var, x, mass, sigma_g, spread_scale):
    """Dense numpy conditioning of every draw, then the mixture's first two moments."""
    g = trapezoid_weights(x).numpy()
    means, covs = [], []
    for m, v in zip(mu.numpy(), var.numpy()):
        cov = np.diag(v)
        k = cov @ g / (g @ cov @ g + sigma_g**2)
        means.append(m - k * (g @ m - mass))
        covs.append(cov - np.outer(k, g @ cov))
    means = np.array(means)
    mean = means.mean(0)
    dev = means - mean
    return mean, np.mean(covs, 0) + spread_scale * dev.T @ dev / len(means)


@pytest.mark.parametrize("sigma_g", [0.0, 0.3])
@pytest.mark.parametrize("spread_scale", [1.0, 2.5])
def test_moments_equal_dense_conditioning_of_every_draw(sigma_g, spread_scale):
    mu, var, x, mass = _draws(5, (), 9, seed=3)
    post = conserve_latent_mixture(mu, var, x, mass, sigma_g, spread_scale=spread_scale)
    mean, cov = _brute_force(mu, var, x, float(mass), sigma_g, spread_scale)
    np.testing.assert_allclose(post.mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(post.covariance.to_dense().numpy(), cov, atol=1e-12)


def test_one_draw_is_the_diagonal_update():
    mu, var, x, mass = _draws(1, (3, 2), 7, seed=1)
    post = conserve_latent_mixture(mu, var, x, mass)
    prior = GaussianPosterior(mu[0], DiagLinearOperator(var[0]), event_shape=(7,))
    ref = conserve_slices(prior, x, mass)
    torch.testing.assert_close(post.mean, ref.mean, atol=1e-13, rtol=0)
    torch.testing.assert_close(
        post.covariance.to_dense(), ref.covariance.to_dense(), atol=1e-13, rtol=0
    )


def test_the_update_differs_from_the_moment_matched_one_when_the_means_spread():
    """Per-draw weights (each draw's own variance) vs the moment-matched diagonal, which
    also counts the latent means' spread: different corrections, both conserving."""
    mu, var, x, mass = _draws(4, (), 11, seed=5)
    mu[:, 5:] *= 10.0  # the latent means disagree on half of the slice
    mix = conserve_latent_mixture(mu, var, x, mass)
    mm = GaussianPosterior(
        mu.mean(0), DiagLinearOperator(var.mean(0) + mu.var(0, unbiased=False)), event_shape=(11,)
    )
    one = conserve_slices(mm, x, mass)
    g = trapezoid_weights(x)
    assert float((mix.mean @ g - mass).abs()) < 1e-12
    assert float((one.mean @ g - mass).abs()) < 1e-12
    assert float((mix.mean - one.mean).abs().max()) > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    s=st.integers(1, 6),
    nx=st.integers(2, 30),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_limit_conserves_mean_covariance_and_every_draw(s, nx, seed, scale):
    mu, var, x, mass = _draws(s, (2,), nx, seed)
    post = conserve_latent_mixture(scale * mu, scale**2 * var, x, scale * mass)
    g = trapezoid_weights(x)
    tol = 1e-12 * scale * (1 + float(mu.abs().max()))
    assert float((post.mean @ g - scale * mass).abs().max()) <= tol
    cov = post.covariance.to_dense()
    assert float((cov @ g).abs().max()) <= 1e-12 * scale**2 * (1 + float(cov.abs().max()))
    draws = post.sample((50,), generator=torch.Generator().manual_seed(seed))
    assert float((draws @ g - scale * mass).abs().max()) <= 10 * tol


def test_draws_have_the_stated_covariance():
    mu, var, x, mass = _draws(3, (), 6, seed=2)
    post = conserve_latent_mixture(mu, var, x, mass, spread_scale=1.7)
    d = post.sample((40_000,), generator=torch.Generator().manual_seed(0))
    emp = torch.cov(d.T)
    cov = post.covariance.to_dense()
    assert float((emp - cov).abs().max()) < 0.03 * float(cov.abs().max())
    torch.testing.assert_close(d.mean(0), post.mean, atol=0.02, rtol=0)


def test_sigma_g_infinite_is_the_mixture_of_the_priors_and_large_sigma_g_tends_to_it():
    mu, var, x, mass = _draws(4, (), 8, seed=4)
    dev = mu - mu.mean(0)
    prior_cov = torch.diag(var.mean(0)) + dev.T @ dev / 4
    inf = conserve_latent_mixture(mu, var, x, mass, math.inf)
    torch.testing.assert_close(inf.mean, mu.mean(0), atol=1e-14, rtol=0)
    torch.testing.assert_close(inf.covariance.to_dense(), prior_cov, atol=1e-13, rtol=0)
    far = conserve_latent_mixture(mu, var, x, mass, 1e6)
    torch.testing.assert_close(far.mean, mu.mean(0), atol=1e-9, rtol=0)
    torch.testing.assert_close(far.covariance.to_dense(), prior_cov, atol=1e-9, rtol=0)


def test_posterior_pickles_and_moves():
    mu, var, x, mass = _draws(2, (), 5, seed=0)
    post = conserve_latent_mixture(mu, var, x, mass)
    back = pickle.loads(pickle.dumps(post))
    gen = torch.Generator().manual_seed(1)
    a = post.sample((3,), generator=gen)
    b = back.to("cpu").sample((3,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_bad_input_is_refused_with_the_argument_named():
    mu, var, x, mass = _draws(2, (3,), 5, seed=0)
    with pytest.raises(ValueError, match="variances: expected the shape of means"):
        conserve_latent_mixture(mu, var[:, :2], x, mass)
    with pytest.raises(ValueError, match="means: expected shape \\[S, \\*batch, nx\\]"):
        conserve_latent_mixture(mu[0, 0], var[0, 0], x, mass)
    with pytest.raises(ValueError, match="S >= 1 latent draws"):  # was a LinAlgError
        conserve_latent_mixture(mu[:0], var[:0], x, mass)
    with pytest.raises(ValueError, match="variances: expected positive"):
        conserve_latent_mixture(mu, torch.zeros_like(var), x, mass)
    bad = mu.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="means"):
        conserve_latent_mixture(bad, var, x, mass)
    with pytest.raises(ValueError, match="x: expected 5 grid points"):
        conserve_latent_mixture(mu, var, x[:4], mass)
    with pytest.raises(ValueError, match="spread_scale"):
        conserve_latent_mixture(mu, var, x, mass, spread_scale=-1.0)
    with pytest.raises(ValueError, match="sigma_g"):
        conserve_latent_mixture(mu, var, x, mass, -1.0)


@pytest.fixture(scope="module")
def mixture_model():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("stefan", step1="anp", hidden=16, n_samples=6, seed=0, covariance="mixture")
        m.fit(steps=5, progress=False)
        m.calibrate(n_functions=12, objective="ll")
        yield m
    finally:
        torch.set_num_threads(n)


def test_model_mixture_updates_each_latent_draw(mixture_model):
    m = mixture_model
    test = make_dataset("stefan", params=[0.6] * 3, seed=1)
    post = m.posterior(test, seed=4)
    # by hand: the same latent draws (each function's noise from its own stream), each
    # updated with the calibrated variance
    tt, xx = m._grid(None, None)
    grid = torch.stack(torch.broadcast_tensors(tt[:, None], xx[None, :]), -1).reshape(-1, 2)
    xc, yc = test.x_context.to(m.dtype), test.y_context.to(m.dtype)
    with torch.no_grad():
        eps = function_noise(xc, yc, 6, m.net.hidden, 4)
        mu, sig = m.net._predict_noise(xc, yc, grid.to(m.dtype).expand(3, -1, -1), eps)
    mu, var = mu.double().reshape(6, 3, 1, -1), sig.double().pow(2).reshape(6, 3, 1, -1)
    c = m.var_scale
    ref = conserve_latent_mixture(mu, c * var, xx, m.mass(test), spread_scale=c)
    torch.testing.assert_close(post.mean, ref.mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        post.covariance.to_dense(), ref.covariance.to_dense(), atol=1e-12, rtol=0
    )
    g = trapezoid_weights(xx)
    draws = post.sample((20,), generator=torch.Generator().manual_seed(0))
    assert float((draws @ g - m.mass(test)).abs().max()) < 1e-12
    # Step 1 and the baselines are the moment-matched diagonal model's
    diag = ProbConserv("stefan", step1="anp", hidden=16, n_samples=6, seed=0, covariance="diag")
    diag.net.load_state_dict(m.net.state_dict())
    diag.var_scale, diag.steps_done = m.var_scale, m.steps_done
    for method in ("none", "hardc"):
        a, b = m.posterior(test, method=method), diag.posterior(test, method=method)
        torch.testing.assert_close(a.mean, b.mean, atol=0, rtol=0)
        torch.testing.assert_close(a.variance, b.variance, atol=0, rtol=0)
    # the same seed repeats, another one draws other latent samples
    torch.testing.assert_close(m.posterior(test, seed=4).mean, post.mean, atol=0, rtol=0)
    assert not torch.equal(m.posterior(test, seed=5).mean, post.mean)


def test_model_mixture_refuses_the_hybrid_calibration_and_round_trips(mixture_model, tmp_path):
    m = mixture_model
    m.save(tmp_path / "m.pt")
    back = ProbConserv.load(tmp_path / "m.pt")
    assert back.config.covariance == "mixture"
    test = make_dataset("stefan", params=[0.6] * 2, seed=2)
    torch.testing.assert_close(
        back.posterior(test).covariance.to_dense(),
        m.posterior(test).covariance.to_dense(),
        atol=0,
        rtol=0,
    )
    # the combination is warned about when it is made, naming both settings (it was refused
    # only later, by the ProbConserv posterior); the baselines still use its Step-1 scale
    raw = back.posterior(test, method="none").variance
    with pytest.warns(UserWarning, match=r"objective='hybrid' with covariance='mixture'") as rec:
        back.calibrate(n_functions=12, objective="hybrid")
    assert rec[0].filename == __file__  # at the user's line
    with pytest.raises(ValueError, match="hybrid calibration .* has no per-draw form"):
        back.posterior(test)
    for method in ("none", "hardc"):
        assert not torch.equal(back.posterior(test, method=method).variance, raw)
    with pytest.raises(ValueError, match="'diag', 'lowrank' or 'mixture'"):
        ProbConserv("stefan", covariance="mixed")


@pytest.mark.parametrize("sigma_g", ["zero", "per_slice", "relative"])
def test_many_slices_are_updated_a_chunk_at_a_time_with_the_same_result(monkeypatch, sigma_g):
    """Above the chunk size the slices are updated a few at a time (the whole batch's dense
    work space is about ten [B, nt, nx, nx] tensors: 17 GB for B = 50, nt = 100, nx = 201):
    the same moments as dense conditioning of every draw, slice by slice."""
    import bayesphys.probconserv.mixture_update as mu_mod

    mu, var, x, mass = _draws(4, (2, 3), 6, seed=7)
    sg = {"zero": 0.0, "per_slice": 0.05 + torch.rand(2, 3, 1, dtype=F64), "relative": 0.4}[sigma_g]
    rel = sigma_g == "relative"
    whole = conserve_latent_mixture(mu, var, x, mass, sg, relative=rel, spread_scale=1.3)
    monkeypatch.setattr(mu_mod, "_CHUNK_BYTES", 2 * 6 * 6 * 8)  # two slices per chunk
    post = conserve_latent_mixture(mu, var, x, mass, sg, relative=rel, spread_scale=1.3)
    assert post.batch_shape == (2, 3) and post.covariance.shape == (2, 3, 6, 6)
    for i in range(2):
        for j in range(3):
            s = sg[i, j].item() if isinstance(sg, torch.Tensor) else sg
            if rel:  # relative to each draw's own sqrt(g^T diag(v_s) g)
                continue
            mean, cov = _brute_force(mu[:, i, j], var[:, i, j], x, float(mass[i, j]), s, 1.3)
            np.testing.assert_allclose(post.mean[i, j].numpy(), mean, atol=1e-12)
            np.testing.assert_allclose(post.covariance.to_dense()[i, j].numpy(), cov, atol=1e-12)
    torch.testing.assert_close(post.mean, whole.mean, atol=1e-13, rtol=0)
    torch.testing.assert_close(
        post.covariance.to_dense(), whole.covariance.to_dense(), atol=1e-13, rtol=0
    )
    draws = post.sample((50,), generator=torch.Generator().manual_seed(0))
    if sigma_g == "zero":
        assert float((draws @ trapezoid_weights(x) - mass).abs().max()) < 1e-12
    bad = torch.full((2, 3, 1), math.inf, dtype=F64)
    bad[0, 0] = 0.1  # in another chunk than the infinite ones: still refused
    with pytest.raises(ValueError, match="mixing infinite and finite"):
        conserve_latent_mixture(mu, var, x, mass, bad)


@pytest.mark.parametrize("chunked", [False, True])
def test_slices_in_the_limit_of_a_per_slice_sigma_g_have_conserving_draws(monkeypatch, chunked):
    """A per-slice sigma_g with zeros and positive values: the zero slices are in the limit,
    so their draws conserve to round-off (as with sigma_g = 0 everywhere), the others not."""
    import bayesphys.probconserv.mixture_update as mu_mod

    mu, var, x, mass = _draws(5, (2, 3), 9, seed=11)
    sg = torch.zeros(2, 3, 1, dtype=F64)
    sg[0, 1] = 0.3
    if chunked:
        monkeypatch.setattr(mu_mod, "_CHUNK_BYTES", 2 * 9 * 9 * 8)  # two slices per chunk
    post = conserve_latent_mixture(mu, var, x, mass, sg)
    draws = post.sample((200,), generator=torch.Generator().manual_seed(0))
    defect = draws @ trapezoid_weights(x) - mass  # [200, 2, 3]
    exact = sg[..., 0] == 0
    assert float(defect[:, exact].abs().max()) < 1e-13
    assert float(defect[:, ~exact].abs().max()) > 1e-3
    # on those slices, the covariance of the update with sigma_g = 0 everywhere
    ref = conserve_latent_mixture(mu, var, x, mass)
    torch.testing.assert_close(
        post.covariance.to_dense()[exact], ref.covariance.to_dense()[exact], atol=1e-13, rtol=0
    )


def test_a_per_slice_sigma_g_array_is_taken_chunked_as_unchunked(monkeypatch):
    """A per-slice sigma_g given as an array or a list ([B, nt, 1]) went whole to every chunk
    of slices and was refused as not broadcasting to the chunk; unchunked it was taken."""
    import bayesphys.probconserv.mixture_update as mu_mod

    mu, var, x, mass = _draws(3, (2, 3), 6, seed=2)
    sg = np.random.default_rng(0).uniform(0.1, 0.5, (2, 3, 1))
    whole = conserve_latent_mixture(mu, var, x, mass, torch.tensor(sg))
    monkeypatch.setattr(mu_mod, "_CHUNK_BYTES", 2 * 6 * 6 * 8)  # two slices per chunk
    chunked = conserve_latent_mixture(mu, var, x, mass, torch.tensor(sg))
    for arg in (sg, sg.tolist()):
        post = conserve_latent_mixture(mu, var, x, mass, arg)
        torch.testing.assert_close(post.mean, chunked.mean, atol=0, rtol=0)
        torch.testing.assert_close(post.mean, whole.mean, atol=1e-13, rtol=0)
        torch.testing.assert_close(
            post.covariance.to_dense(), whole.covariance.to_dense(), atol=1e-13, rtol=0
        )


@pytest.mark.parametrize("per_chunk", [1, 4, 5])
@pytest.mark.parametrize("sigma_g", ["zero", "broadcast", "0d", "relative"])
def test_chunks_that_leave_a_partial_last_chunk_give_the_whole_update(
    monkeypatch, per_chunk, sigma_g
):
    """Six slices a chunk of 1, 4 or 5 at a time (4 and 5 leave a last partial chunk; the
    other chunk tests use 2, which divides 6): the mean, covariance and draws of the whole
    update, with sigma_g a number, a per-slice tensor broadcast over the functions with some
    slices in the limit, a 0-d tensor, or relative."""
    import bayesphys.probconserv.mixture_update as mu_mod

    nx = 7
    mu, var, x, mass = _draws(4, (2, 3), nx, seed=13)
    sg = {
        "zero": 0.0,
        "broadcast": torch.tensor([[[0.0], [0.3], [0.0]]], dtype=F64),  # [1, 3, 1]
        "0d": torch.tensor(0.2, dtype=F64),
        "relative": 0.4,
    }[sigma_g]
    kw = dict(relative=sigma_g == "relative", spread_scale=0.7)
    whole = conserve_latent_mixture(mu, var, x, mass[0], sg, **kw)  # mass [3] broadcast
    monkeypatch.setattr(mu_mod, "_CHUNK_BYTES", per_chunk * nx * nx * 8)
    post = conserve_latent_mixture(mu, var, x, mass[0], sg, **kw)
    assert post.batch_shape == (2, 3) and post.covariance.shape == (2, 3, nx, nx)
    torch.testing.assert_close(post.mean, whole.mean, rtol=0, atol=1e-13)
    torch.testing.assert_close(
        post.covariance.to_dense(), whole.covariance.to_dense(), rtol=0, atol=1e-13
    )
    draws, ref = (
        p.sample((20,), generator=torch.Generator().manual_seed(1)) for p in (post, whole)
    )
    torch.testing.assert_close(draws, ref, rtol=0, atol=1e-12)
    if sigma_g != "relative":  # each slice also equals that slice updated alone
        for i, j in ((0, 0), (1, 2)):
            s_ij = sg if isinstance(sg, float) else sg.broadcast_to(2, 3, 1)[i, j]
            one = conserve_latent_mixture(
                mu[:, i, j][:, None], var[:, i, j][:, None], x, mass[0, j : j + 1], s_ij, **kw
            )
            torch.testing.assert_close(post.mean[i, j], one.mean[0], rtol=0, atol=1e-13)
            torch.testing.assert_close(
                post.covariance.to_dense()[i, j], one.covariance.to_dense()[0], rtol=0, atol=1e-13
            )


def test_dense_mixture_beyond_memory_is_refused_before_the_updates(
    memory_limit, no_dense_allocation
):
    """The moment-matched mixture returns a dense covariance and root [*batch, nx, nx]: on
    64 functions x 200 times x 1000 grid points that is ~200 GB. Beyond the device's memory
    it is refused by name before any update (the model's posterior before its latent draws)."""
    mu, var, x, mass = _draws(2, (3, 4), 50, seed=0)
    memory_limit(100_000)  # 12 slices of 50 points: about 2.9 MB
    no_dense_allocation("bayesphys.probconserv.mixture_update._mixture_moments")
    with pytest.raises(
        MemoryError,
        match=r"^means: the dense covariance and root of 12 slices of 50 grid points .* "
        r"more than the 97\.7 KiB of the CPU; use covariance='lowrank' or 'diag'",
    ):
        conserve_latent_mixture(mu, var, x, mass)
    m = ProbConserv("stefan", step1="anp", hidden=8, n_samples=2, seed=0, covariance="mixture")
    test = make_dataset("stefan", params=[0.6] * 2, seed=1)
    no_dense_allocation("bayesphys.probconserv._predict.latent_draws")
    with pytest.raises(MemoryError, match=r"^t/x: the dense covariance and root of \d+ slices"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # untrained
            m.posterior(test)


def test_meta_gp_dense_covariances_beyond_memory_are_refused_before_the_gp(
    memory_limit, no_dense_allocation
):
    """The meta-GP's Step 1 is dense per time slice, [B, nt, nx, nx] float64 (a 200 x 1000
    grid: 1.6 GB a function, about four copies). Beyond the device's memory it is refused by
    name before the GP runs."""
    m = ProbConserv("pme", step1="gp", gp_width=8, seed=1)
    test = make_dataset("pme", params=[3.0] * 2, seed=1)
    memory_limit(100_000)
    no_dense_allocation("bayesphys.probconserv._predict._net_inputs")
    with pytest.raises(
        MemoryError, match=r"^t/x: the meta-GP's dense covariances of 2 function\(s\) on \d+ times"
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # untrained
            m.posterior(test, method="none")
