"""The core's conjugate reference model."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bayesphys.problems.linear_gaussian import (
    ConjugateGaussianField,
    linear_gaussian_problem,
    log_marginal_likelihood,
)


def _model(seed=0):
    p = linear_gaussian_problem(seed=seed)
    return p, ConjugateGaussianField(p["x"], p["idx"], p["y"], noise=0.1, lengthscale=0.5)


def test_fit_raises_marginal_likelihood_and_posterior_is_exact():
    p, m = _model()
    before = float(log_marginal_likelihood(p["x"], p["idx"], p["y"], 0.1, m.lengthscale))
    res = m.fit(progress=False)
    after = float(
        log_marginal_likelihood(p["x"], p["idx"], p["y"], 0.1, m.lengthscale, m.outputscale)
    )
    assert after > before + 1.0 and res.steps > 0
    post = m.posterior()
    # exactness: the posterior mean at the sensors equals the GP smoother K (K + s^2 I)^-1 y
    xs = p["x"][p["idx"]]
    k = m.outputscale * torch.exp(-0.5 * (xs[:, None] - xs[None]) ** 2 / m.lengthscale**2)
    smooth = k @ torch.linalg.solve(k + 0.01 * torch.eye(len(xs), dtype=k.dtype), p["y"])
    torch.testing.assert_close(post.mean[p["idx"]], smooth, rtol=1e-6, atol=1e-8)


def test_save_load_roundtrip(tmp_path):
    _, m = _model(1)
    m.fit(steps=20, progress=False)
    m.save(tmp_path / "m.pt")
    back = ConjugateGaussianField.load(tmp_path / "m.pt")
    assert torch.equal(back.posterior().mean, m.posterior().mean)
    assert back.lengthscale == m.lengthscale


def test_bad_input():
    p = linear_gaussian_problem()
    with pytest.raises(ValueError, match="y: expected shape"):
        ConjugateGaussianField(p["x"], p["idx"], p["y"][:-1])
    with pytest.raises(ValueError, match="idx"):
        ConjugateGaussianField(p["x"], p["idx"] + 1000, p["y"])
    with pytest.raises(ValueError, match="y: expected finite"):
        ConjugateGaussianField(p["x"], p["idx"], p["y"] * float("nan"))
    with pytest.raises(ValueError, match="noise"):
        ConjugateGaussianField(p["x"], p["idx"], p["y"], noise=0.0)
    with pytest.raises(ValueError, match="m: expected"):
        linear_gaussian_problem(n=5, m=6)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(noise=float("nan")), ValueError, r"^noise: expected a finite number"),  # NaN data
        (dict(noise=-0.1), ValueError, r"^noise: expected a number >= 0.0, received -0.1"),
        (dict(seed=1.5), TypeError, r"^seed: expected an int, received 1.5"),
        (dict(m=2.5), TypeError, r"^m: expected an int, received 2.5"),
        (dict(n=0, m=0), ValueError, r"^n: expected an int >= 1, received 0"),
        (dict(n=5, m=0), ValueError, r"^m: expected an int >= 1, received 0"),
    ],
)
def test_problem_arguments_are_checked(kw, error, match):
    with pytest.raises(error, match=match):
        linear_gaussian_problem(**kw)


def test_problem_accepts_exact_data():
    p = linear_gaussian_problem(noise=0.0)
    assert torch.equal(p["y"], p["u"][p["idx"]])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(noise=float("nan")), r"^noise: expected a finite number, received nan"),
        (dict(noise=float("inf")), r"^noise: expected a finite number, received inf"),
        (dict(lengthscale=0.0), r"^lengthscale: expected a number > 0.0, received 0.0"),
        (dict(lengthscale=-1.0), r"^lengthscale: expected a number > 0.0, received -1.0"),
        (dict(outputscale=0.0), r"^outputscale: expected a number > 0.0, received 0.0"),
    ],
)
def test_model_settings_are_checked(kw, match):
    p = linear_gaussian_problem()
    with pytest.raises(ValueError, match=match):
        ConjugateGaussianField(p["x"], p["idx"], p["y"], **kw)


def test_later_edits_of_the_callers_arrays_do_not_reach_the_model():
    p, m = _model()
    m.fit(steps=5, progress=False)
    before = m.posterior().mean.clone()
    for key in ("x", "idx", "y"):  # buffers refilled for the next problem
        p[key].zero_()
    torch.testing.assert_close(m.posterior().mean, before, rtol=0, atol=0)


def test_posterior_for_refuses_data_of_another_length():
    # a y one shorter than idx failed with "mat1 and mat2 shapes cannot be multiplied"
    from bayesphys.problems.linear_gaussian import posterior_for

    p = linear_gaussian_problem()
    with pytest.raises(
        ValueError, match=r"^x, idx, y: expected .* received shapes \(101,\), \(30,\), \(29,\)"
    ):
        posterior_for(p["x"], p["idx"], p["y"][:-1], 0.1)
    post = posterior_for(p["x"], p["idx"], p["y"], 0.1)
    assert post.mean.shape == (101,)


def test_posterior_for_checks_its_inputs_as_the_model_does():
    # the README's tour function: sensor indices out of range or fractional failed with
    # torch's IndexError, a NaN in y was reported as "mean", and numpy arrays or lists failed
    # with "'str' object has no attribute 'type'"
    from bayesphys.problems.linear_gaussian import posterior_for

    p = linear_gaussian_problem()
    ref = posterior_for(p["x"], p["idx"], p["y"], 0.1)
    with pytest.raises(ValueError, match=r"^idx: expected indices in \[0, 101\), received"):
        posterior_for(p["x"], p["idx"] + 100, p["y"], 0.1)
    with pytest.raises(ValueError, match=r"^idx: expected whole-number sensor indices"):
        posterior_for(p["x"], p["idx"] + 0.5, p["y"], 0.1)
    with pytest.raises(ValueError, match=r"^idx: expected whole-number sensor indices"):
        posterior_for(p["x"], p["idx"] > 50, p["y"], 0.1)
    with pytest.raises(ValueError, match=r"^y: expected finite values"):
        posterior_for(p["x"], p["idx"], p["y"] * math.nan, 0.1)
    with pytest.raises(ValueError, match=r"^x: expected finite values"):
        posterior_for(p["x"] * math.inf, p["idx"], p["y"], 0.1)
    # numpy arrays and lists give the tensors' posterior; whole-number float indices too
    for args in [
        (p["x"].numpy(), p["idx"].numpy(), p["y"].numpy()),
        (p["x"].tolist(), p["idx"].tolist(), p["y"].tolist()),
        (p["x"], p["idx"].double(), p["y"]),
    ]:
        post = posterior_for(*args, 0.1)
        assert post.dtype == torch.float64
        torch.testing.assert_close(post.mean, ref.mean, rtol=0, atol=0)
        torch.testing.assert_close(post.variance, ref.variance, rtol=0, atol=0)
    # an integer grid gives a float64 posterior (it was refused as an integer mean)
    grid = torch.arange(5)
    post = posterior_for(grid, [1, 3], [0.5, -0.5], 0.1, lengthscale=1.0)
    torch.testing.assert_close(
        post.mean, posterior_for(grid.double(), [1, 3], [0.5, -0.5], 0.1, lengthscale=1.0).mean
    )


@pytest.mark.parametrize(
    "device, message",
    [
        ("tpu", r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received 'tpu'"),
        ("cuda:7", r"^device: cuda:7 was requested but CUDA is not available here"),
    ],
)
def test_linear_gaussian_problem_refuses_an_unknown_device_by_name(device, message):
    # the README tour's problem raised torch's RuntimeError ("Expected one of cpu, cuda, ...")
    # for "tpu" and an AssertionError ("Torch not compiled with CUDA enabled") for "cuda:7"
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA present: cuda:7 may exist")
    with pytest.raises(ValueError, match=message):
        linear_gaussian_problem(device=device)
    # None and "auto" are accepted as for a model; the CPU data are the same numbers
    ref = linear_gaussian_problem()
    for dev in (None, "cpu:0"):
        got = linear_gaussian_problem(device=dev)
        assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert linear_gaussian_problem(device="auto")["x"].device.type in ("cpu", "cuda")


def test_fit_without_sensors_is_refused_by_name_and_the_posterior_is_the_prior():
    # an empty idx was accepted, then fit failed inside torch ("cannot reshape tensor of 0
    # elements into shape [-1, 0, 0]")
    p = linear_gaussian_problem()
    m = ConjugateGaussianField(p["x"], torch.zeros(0, dtype=torch.long), torch.zeros(0))
    with pytest.raises(ValueError, match=r"^idx: fit needs at least one sensor"):
        m.fit(steps=2, progress=False)
    post = m.posterior()
    torch.testing.assert_close(post.mean, torch.zeros(101, dtype=torch.float64))
    torch.testing.assert_close(post.variance, torch.full((101,), 1.0 + 1e-9, dtype=torch.float64))


def test_float32_field_with_small_noise_matches_float64(tmp_path):
    # computed in float32, the posterior covariance K - K H^T (H K H^T + s^2 I)^{-1} H K was
    # indefinite (smallest eigenvalue -5.6e-7) and posterior() refused it; with noise 1e-4
    # fit() failed inside torch.distributions
    p = linear_gaussian_problem(seed=0, noise=1e-3)
    m32 = ConjugateGaussianField(p["x"], p["idx"], p["y"], noise=1e-3, dtype=torch.float32)
    m64 = ConjugateGaussianField(p["x"], p["idx"], p["y"], noise=1e-3)
    post32, post64 = m32.posterior(), m64.posterior()
    assert post32.dtype == post32.mean.dtype == post32.variance.dtype == torch.float32
    torch.testing.assert_close(post32.mean, post64.mean.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(post32.variance, post64.variance.float(), rtol=1e-4, atol=1e-9)
    lo, hi = post32.interval(0.99)
    assert lo.dtype == torch.float32
    torch.testing.assert_close(hi - post32.mean, post32.mean - lo, rtol=1e-5, atol=1e-7)
    draws = post32.sample((4,), seed=0)
    assert draws.dtype == torch.float32 and bool(torch.isfinite(draws).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 may need a jitter
        assert bool(torch.isfinite(post32.log_prob(draws)).all())
    m32.save(tmp_path / "f.pt")
    back = ConjugateGaussianField.load(tmp_path / "f.pt")
    assert back.x.dtype == back.log_lengthscale.dtype == torch.float32
    torch.testing.assert_close(back.posterior().mean, post32.mean, rtol=0, atol=0)
    q = linear_gaussian_problem(seed=0, noise=1e-4)
    m = ConjugateGaussianField(q["x"], q["idx"], q["y"], noise=1e-4, dtype=torch.float32)
    res = m.fit(steps=3, progress=False)
    assert math.isfinite(res.loss_history[-1])
    assert m.log_lengthscale.dtype == torch.float32
    assert m.posterior().dtype == torch.float32


def test_log_marginal_likelihood_checks_noise_and_indices_by_name():
    """A NaN noise or an index outside the grid failed inside torch; values unchanged."""
    from bayesphys.problems.linear_gaussian import log_marginal_likelihood

    d = linear_gaussian_problem(n=21, m=5, seed=1)
    x, idx, y = d["x"], d["idx"], d["y"]
    ref = log_marginal_likelihood(x, idx, y, 0.1, 0.08)
    assert torch.isfinite(ref)
    for bad in (float("nan"), 0.0, -0.1, torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="noise"):
            log_marginal_likelihood(x, idx, y, bad, 0.08)
    with pytest.raises(ValueError, match=r"idx: expected indices in \[0, 21\)"):
        log_marginal_likelihood(x, idx + 30, y, 0.1, 0.08)
    # a differentiable lengthscale and noise keep their gradients
    ell = torch.tensor(0.08, dtype=x.dtype, requires_grad=True)
    sig = torch.tensor(0.1, dtype=x.dtype, requires_grad=True)
    val = log_marginal_likelihood(x, idx, y, sig, ell)
    val.backward()
    assert ell.grad is not None and sig.grad is not None
    torch.testing.assert_close(val.detach(), ref, rtol=0, atol=0)


def test_posterior_for_beyond_memory_is_refused_before_the_kernel(
    memory_limit, no_dense_allocation
):
    """The exact posterior is dense [n, n] (about six such float64 matrices): a grid of 100k
    points needs ~480 GB. Beyond the device's memory it is refused by name before the kernel
    matrix is formed."""
    from bayesphys.problems.linear_gaussian import posterior_for

    p = linear_gaussian_problem(n=60, m=10, noise=0.1, seed=0)
    memory_limit(100_000)  # 6 x 60 x 60 float64: about 169 kB
    no_dense_allocation("bayesphys.problems.linear_gaussian._kernel")
    with pytest.raises(
        MemoryError,
        match=r"^x: the exact posterior on a grid of 60 points \(dense \[60, 60\] covariance, "
        r"torch\.float64\) would need .* use a coarser grid x$",
    ):
        posterior_for(p["x"], p["idx"], p["y"], 0.1)


def test_posterior_is_on_the_models_own_grid():
    _, m = _model(0)
    with pytest.raises(ValueError, match=r"^x: this model predicts on its own grid; pass None$"):
        m.posterior(torch.linspace(0, 1, 5))
    assert m.posterior().event_shape == m.x.shape
