"""A user's posterior with only the members of the public ``Posterior`` protocol (no
``stddev``, no private export helper) goes through every public function that takes one."""

from __future__ import annotations

import pytest
import torch

from bayesphys import GaussianPosterior, Posterior
from bayesphys.diagnostics import CoreFamily, Recalibrator, run_sbc
from bayesphys.inference_data import group_dataset, to_inference_data


class ProtocolOnly:
    """Delegates the protocol's members, and nothing else, to a GaussianPosterior."""

    def __init__(self, base: GaussianPosterior):
        self._base = base

    event_shape = property(lambda self: self._base.event_shape)
    batch_shape = property(lambda self: self._base.batch_shape)
    device = property(lambda self: self._base.device)
    dtype = property(lambda self: self._base.dtype)
    mean = property(lambda self: self._base.mean)
    variance = property(lambda self: self._base.variance)

    def sample(self, sample_shape=torch.Size(), generator=None, *, seed=None):
        return self._base.sample(sample_shape, generator, seed=seed)

    def rsample(self, sample_shape=torch.Size()):
        return self._base.rsample(sample_shape)

    def quantile(self, q):
        return self._base.quantile(q)

    def interval(self, level=0.95):
        return self._base.interval(level)

    def log_prob(self, value):
        return self._base.log_prob(value)

    def to(self, device):
        return ProtocolOnly(self._base.to(device))

    def to_inference_data(self, **kwargs):
        return to_inference_data(self, **kwargs)


def _gaussian(shift: float = 0.0) -> GaussianPosterior:
    cov = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    return GaussianPosterior(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) + shift, cov)


def test_a_protocol_only_posterior_is_a_posterior_without_stddev():
    p = ProtocolOnly(_gaussian())
    assert isinstance(p, Posterior) and not hasattr(p, "stddev")


def test_to_inference_data_draws_from_a_protocol_only_posterior():
    p = ProtocolOnly(_gaussian())
    idata = p.to_inference_data(num_samples=4000, num_chains=2, seed=3)
    u = group_dataset(idata, "posterior")["u"]
    assert tuple(u.shape) == (2, 4000, 3)
    assert abs(float(u.values[..., 2].var()) - 3.0) < 0.3
    again = group_dataset(p.to_inference_data(num_samples=4000, num_chains=2, seed=3), "posterior")
    assert (again["u"].values == u.values).all()  # seeded


def test_recalibrator_fits_and_wraps_protocol_only_posteriors():
    gen = torch.Generator().manual_seed(0)
    posts, truths = [], []
    for _ in range(40):
        base = _gaussian()
        posts.append(ProtocolOnly(base))
        # truths twice as spread as the posterior claims: the z-score scale must be ~2
        truths.append(base.mean + 2 * base.variance.sqrt() * torch.randn(3, generator=gen).double())
    for method in ("zscore", "conformal", "quantile"):
        rec = Recalibrator.fit(posts, truths, method=method)
        wrapped = rec.wrap(posts[0])
        assert isinstance(wrapped, Posterior)
        lo, hi = wrapped.interval(0.9)
        assert (hi - lo > 0).all()
        assert set(rec.evaluate(posts, truths)) >= {"coverage_before", "coverage_after"}
    scaled = Recalibrator.fit(posts, truths, method="zscore")
    assert 1.6 < scaled.scale < 2.5


def test_run_sbc_accepts_an_inference_returning_protocol_only_posteriors():
    fam = CoreFamily()
    res = run_sbc(
        fam.simulate,
        lambda y: ProtocolOnly(fam.infer(y)),
        fam.summaries(),
        n_sims=20,
        n_draws=19,
        seed=0,
        progress=False,
    )
    assert tuple(res.ranks.shape) == (20, 5)


def _without(member: str) -> type:
    """ProtocolOnly without one of the protocol's members."""
    attrs = {k: v for k, v in vars(ProtocolOnly).items() if k != member}
    return type(f"No_{member}", (), attrs)


def test_every_protocol_member_is_required_and_a_partial_one_is_named():
    from bayesphys._posterior_base import _MEMBERS, missing_members

    for drop in _MEMBERS:
        obj = _without(drop)(_gaussian())
        assert not isinstance(obj, Posterior), drop
        assert missing_members(obj) == f" (missing the Posterior member(s) {drop})"
    assert isinstance(ProtocolOnly(_gaussian()), Posterior)
    assert missing_members(ProtocolOnly(_gaussian())) == "" and missing_members(3.0) == ""


def _simulate(n, *, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return theta, [{"y": y} for y in theta + torch.randn(n, 2, generator=gen, dtype=torch.float64)]


_GEN = torch.Generator().manual_seed(1)


def _draws(d):
    # the exact conjugate posterior N(y / 2, I / 2), as 200 draws
    return d["y"] / 2 + 0.5**0.5 * torch.randn(200, 2, generator=_GEN, dtype=torch.float64)


def test_run_sbc_takes_numpy_draws_and_names_missing_members():
    res = run_sbc(
        _simulate, lambda d: _draws(d).numpy(), n_sims=20, n_draws=19, seed=0, progress=False
    )
    assert tuple(res.ranks.shape)[0] == 20

    no_device = _without("device")
    with pytest.raises(
        TypeError,
        # the message, then the note every error of one of the N inferences carries
        match=r"^infer \(problem 0\): .* No_device \(missing the Posterior member\(s\) device\)"
        r"\nsimulate_and_infer: raised in problem 0 of 3 \(seed=",
    ):
        run_sbc(
            _simulate,
            lambda d: no_device(GaussianPosterior(d["y"] / 2, torch.eye(2, dtype=torch.float64))),
            n_sims=3,
            n_draws=9,
            progress=False,
        )


def test_fit_recalibration_takes_an_infer_returning_draws():
    from bayesphys import SamplePosterior
    from bayesphys.diagnostics import fit_recalibration

    rec = fit_recalibration(_simulate, _draws, n_fit=20, n_eval=20, method="zscore")
    assert 0.7 < rec.scale < 1.4  # the draws are the exact posterior's
    assert rec.heldout["n_problems"] == 20
    wrapped = rec.wrap(SamplePosterior(_draws({"y": torch.zeros(2, dtype=torch.float64)})[None]))
    assert isinstance(wrapped, Posterior)


def test_naming_missing_members_runs_none_of_the_values_code():
    calls = []

    class Costly(_without("to_inference_data")):
        @property
        def variance(self):
            calls.append(1)
            raise RuntimeError("a costly or failing property")

    from bayesphys._posterior_base import missing_members

    assert missing_members(Costly(_gaussian())) == (
        " (missing the Posterior member(s) to_inference_data)"
    )
    assert calls == []


def test_a_delegating_proxy_is_told_the_member_its_target_lacks():
    from bayesphys._posterior_base import missing_members

    class Proxy:  # delegates everything through __getattr__
        def __init__(self, target):
            self._target = target

        def __getattr__(self, name):
            return getattr(self._target, name)

    assert missing_members(Proxy(_without("log_prob")(_gaussian()))) == (
        " (missing the Posterior member(s) log_prob)"
    )


def test_a_proxy_whose_lookup_fails_otherwise_than_by_attributeerror_lacks_that_member():
    """A delegating proxy whose ``__getattr__`` raises something else (a closed remote
    handle's RuntimeError) for a member is told it lacks it; the check does not fail."""
    from bayesphys._posterior_base import is_posterior, missing_members

    class Delegating:
        def __init__(self, target, failing):
            self._target, self._failing = target, failing

        def __getattr__(self, name):
            if name in self._failing:
                raise RuntimeError("connection closed")
            return getattr(self._target, name)

    broken = Delegating(_gaussian(), ("quantile",))
    assert missing_members(broken) == " (missing the Posterior member(s) quantile)"
    assert not is_posterior(broken) and is_posterior(Delegating(_gaussian(), ()))


def test_a_protocol_only_export_defaults_to_one_chain_of_1000_draws_like_the_packages():
    # the package's posteriors and a user's protocol-only one export the same default layout,
    # and with one seed the same draws
    base = _gaussian()
    mine = group_dataset(ProtocolOnly(base).to_inference_data(seed=4), "posterior")["u"]
    ours = group_dataset(base.to_inference_data(seed=4), "posterior")["u"]
    assert mine.dims == ("chain", "draw", "u_dim_0") and tuple(mine.shape) == (1, 1000, 3)
    assert (mine.values == ours.values).all()
    two = group_dataset(ProtocolOnly(base).to_inference_data(num_chains=2, seed=4), "posterior")
    assert tuple(two["u"].shape) == (2, 1000, 3)
