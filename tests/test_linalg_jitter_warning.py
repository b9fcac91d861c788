"""The "singular covariance, jittered" warning: once per root, at the user's line, worded
without repeating itself."""

from __future__ import annotations

import warnings

import torch
from linear_operator.operators import KroneckerProductLinearOperator

from bayesphys import GaussianPosterior

F64 = torch.float64


def _singular(n: int = 50) -> torch.Tensor:
    x = torch.linspace(0, 1, n, dtype=F64)
    return torch.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 0.3**2)  # singular in float64


def _jitter_warnings(fn) -> list:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return [w for w in rec if "singular to working precision" in str(w.message)]


def test_dense_log_prob_warns_once_at_user_line():
    p = GaussianPosterior(torch.zeros(50, dtype=F64), _singular())
    got = _jitter_warnings(lambda: p.log_prob(torch.zeros(50, dtype=F64)))
    assert len(got) == 1
    w = got[0]
    assert issubclass(w.category, RuntimeWarning) and w.filename == __file__
    msg = str(w.message)
    assert msg.startswith("covariance: singular to working precision")
    assert msg.count("covariance") == 1
    # the root is kept: later densities of the same posterior do not repeat it
    assert _jitter_warnings(lambda: p.log_prob(torch.ones(50, dtype=F64))) == []


def test_kronecker_log_prob_warns_once():
    k = _singular(50)
    cov = KroneckerProductLinearOperator(k, torch.eye(2, dtype=F64))
    p = GaussianPosterior(torch.zeros(100, dtype=F64), cov)
    got = _jitter_warnings(lambda: p.log_prob(torch.zeros(100, dtype=F64)))
    assert len(got) == 1 and got[0].filename == __file__


def test_an_error_filter_raises_on_every_call():
    """Under an "error" filter every density of a singular covariance raises (the once-flag
    was set before warning, so the second call returned the jittered density silently)."""
    import pytest

    p = GaussianPosterior(torch.zeros(50, dtype=F64), _singular())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(2):
            with pytest.raises(RuntimeWarning, match="singular to working precision"):
                p.log_prob(torch.zeros(50, dtype=F64))


def test_recalibrated_log_prob_warns_at_user_line():
    """A variance-scaled posterior's density is its base's: the warning named recalibrate.py."""
    from bayesphys.diagnostics import RecalibratedPosterior, Recalibrator

    base = GaussianPosterior(torch.zeros(50, dtype=F64), _singular())
    post = RecalibratedPosterior(base, Recalibrator("zscore", scale=2.0))
    got = _jitter_warnings(lambda: post.log_prob(torch.zeros(50, dtype=F64)))
    assert len(got) == 1 and got[0].filename == __file__


def test_the_warning_says_draws_share_the_jittered_covariance():
    """Draws come from the jittered factor too: a coordinate of tiny variance beside large ones
    is widened (the message said draws were unaffected)."""
    b = torch.tensor([[1e3, 0.0], [0.0, 1e3], [1e3, 1e3]], dtype=F64)
    cov = torch.zeros(4, 4, dtype=F64)
    cov[:3, :3] = b @ b.mT  # rank 2 of 3: singular
    cov[3, 3] = 1e-6
    p = GaussianPosterior(torch.zeros(4, dtype=F64), cov)
    got = _jitter_warnings(lambda: p.log_prob(torch.zeros(4, dtype=F64)))
    assert len(got) == 1
    msg = str(got[0].message)
    assert "unaffected" not in msg and "draws are those of the jittered matrix" in msg
    draws = p.sample((20000,), seed=0)
    assert float(draws[:, 3].var()) > 10 * 1e-6  # widened, as the message says


def _conditioned_float32(n: int = 60) -> torch.Tensor:
    """A float32 GP posterior covariance formed by subtraction (prior minus the part explained
    by 20 near-noise-free observations): round-off of the prior's scale leaves eigenvalues
    near -7e-7 beside a mean variance of 6e-5, so the factor needs a jitter of 1e-2 of it."""
    x = torch.linspace(0, 1, n)
    k = torch.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 0.2**2)
    ko = k[:, ::3]
    s = k - ko @ torch.linalg.solve(k[::3, ::3] + 1e-4 * torch.eye(ko.shape[1]), ko.mT)
    return 0.5 * (s + s.mT)


def test_draws_through_a_large_jitter_warn_once_per_posterior_at_the_user_line():
    """sample / rsample drew through a factor jittered by 1e-2 of the mean variance (noise of
    ~10 % of the typical sd added to every draw) without a word, while log_prob warned that
    its density was that of the jittered matrix."""
    p = GaussianPosterior(torch.zeros(60), _conditioned_float32())
    got = _jitter_warnings(lambda: p.sample((3,), seed=0))
    assert (
        len(got) == 1
        and issubclass(got[0].category, RuntimeWarning)
        and got[0].filename == __file__
    )
    assert "draws are those of the jittered matrix" in str(got[0].message)
    # once per posterior: later draws and densities of the same posterior do not repeat it
    assert _jitter_warnings(lambda: p.rsample((2,))) == []
    assert _jitter_warnings(lambda: p.log_prob(torch.zeros(60))) == []
    q = GaussianPosterior(torch.zeros(60), _conditioned_float32())
    assert len(_jitter_warnings(lambda: q.rsample((2,)))) == 1  # rsample alone warns too


def test_draws_through_a_small_jitter_are_silent_and_log_prob_still_warns():
    """A float64 jitter (at most 1e-5 of the mean variance: added noise under 0.4 % of the
    typical sd) leaves draws silent, as any sampler adding a nugget; the density warns."""
    p = GaussianPosterior(torch.zeros(50, dtype=F64), _singular())
    assert _jitter_warnings(lambda: p.sample((3,), seed=0)) == []
    assert len(_jitter_warnings(lambda: p.log_prob(torch.zeros(50, dtype=F64)))) == 1


def test_kronecker_draws_through_a_large_jitter_warn_once():
    cov = KroneckerProductLinearOperator(_conditioned_float32(), torch.eye(2))
    p = GaussianPosterior(torch.zeros(120), cov)
    got = _jitter_warnings(lambda: p.sample((2,), seed=0))
    assert len(got) == 1 and got[0].filename == __file__
    assert _jitter_warnings(lambda: p.sample((2,), seed=1)) == []
    small = KroneckerProductLinearOperator(_singular(50), torch.eye(2, dtype=F64))
    q = GaussianPosterior(torch.zeros(100, dtype=F64), small)
    assert _jitter_warnings(lambda: q.sample((2,), seed=0)) == []


def test_draws_of_a_well_conditioned_covariance_do_not_warn():
    p = GaussianPosterior(torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64))
    assert _jitter_warnings(lambda: p.sample((4,), seed=0)) == []
