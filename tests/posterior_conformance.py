"""One conformance suite for every :class:`~bayesphys.Posterior` the package returns.

Not collected itself (no ``test_`` prefix): a test file subclasses :class:`PosteriorConformance`
once per implementation, provides :meth:`~PosteriorConformance.make_posterior` (the smallest
real instance; cache an expensive fit, e.g. with :func:`functools.cache`) and sets the flags
for what the implementation documents it lacks::

    class TestMyPosterior(PosteriorConformance):
        has_log_prob = False  # documented: raises NotImplementedError

        def make_posterior(self):
            return _cached_fit().posterior()

Every test method makes one real assertion about the protocol of
:mod:`bayesphys._posterior_base` (shapes, seeds, quantiles, intervals, moments, export).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys import Posterior
from bayesphys.inference_data import group_dataset

#: bad quantile levels: outside (0, 1), its ends, NaN
BAD_Q = (0.0, 1.0, float("nan"), -0.1, 1.5)
#: bad interval levels
BAD_LEVELS = (0.0, 1.0, float("nan"), -0.5, 1.5)


class PosteriorConformance:
    """Base class of the conformance tests; subclass it as ``Test...`` and override
    :meth:`make_posterior` and the flags below."""

    #: ``log_prob`` is documented to raise ``log_prob_error`` (e.g. draws have no density)
    has_log_prob: bool = True
    log_prob_error: type[Exception] = NotImplementedError
    #: ``rsample`` is documented to raise ``rsample_error``
    has_rsample: bool = True
    rsample_error: type[Exception] = NotImplementedError
    #: draws for the Monte-Carlo moment check (the tolerance is set from this size)
    mc_samples: int = 2000
    #: number of standard errors the Monte-Carlo moments may be off (over all points)
    mc_z: float = 6.0
    #: ``sample`` resamples ``S`` stored draws with replacement (a :class:`SamplePosterior`):
    #: the draws then have the plug-in variance ``(S - 1) / S * variance`` (``variance`` is the
    #: unbiased one), which the moment check expects
    resamples_stored_draws: bool = False
    #: extra relative slack on the moments, for a posterior whose moments are documented as
    #: an approximation of its draws' (e.g. integrated over a quantile grid); 0: none
    mc_rtol: float = 0.0

    def make_posterior(self) -> Posterior:
        """The posterior under test (the smallest real instance)."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def post(cls):
        # built once per subclass: no test changes the posterior it is given. One thread: the
        # instances are tiny, and torch's thread pool on a loaded machine made a 0.05 s
        # prediction take 15 s
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield cls().make_posterior()
        finally:
            torch.set_num_threads(threads)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _full(post) -> tuple[int, ...]:
        return (*post.batch_shape, *post.event_shape)

    @staticmethod
    def _gen(post, seed: int) -> torch.Generator:
        return torch.Generator(device=post.device).manual_seed(seed)

    # -- protocol and shapes ----------------------------------------------------------------
    def test_is_a_posterior(self, post):
        assert isinstance(post, Posterior)

    def test_mean_and_variance_shapes(self, post):
        assert tuple(post.mean.shape) == self._full(post)
        assert tuple(post.variance.shape) == self._full(post)

    def test_sample_shapes_int_tuple_and_empty(self, post):
        full = self._full(post)
        assert tuple(post.sample(3, seed=0).shape) == (3, *full)
        assert tuple(post.sample((2, 3), seed=0).shape) == (2, 3, *full)
        assert tuple(post.sample(seed=0).shape) == full
        assert tuple(post.sample(torch.Size([2]), seed=0).shape) == (2, *full)

    def test_empty_sample_shape_gives_no_draws(self, post):
        assert tuple(post.sample(0, seed=0).shape) == (0, *self._full(post))
        assert tuple(post.sample((2, 0), seed=0).shape) == (2, 0, *self._full(post))

    def test_sample_carries_no_gradient(self, post):
        assert not post.sample(2, seed=0).requires_grad

    def test_int_sample_shape_is_the_one_tuple(self, post):
        torch.testing.assert_close(post.sample(3, seed=5), post.sample((3,), seed=5))

    @pytest.mark.parametrize(
        ("shape", "error"),
        [(-1, ValueError), ((2, -1), ValueError), (2.5, TypeError), (True, TypeError)],
    )
    def test_bad_sample_shape_is_refused_naming_it(self, post, shape, error):
        with pytest.raises(error, match="sample_shape"):
            post.sample(shape, seed=0)

    def test_bad_generator_and_seed_are_refused_naming_them(self, post):
        with pytest.raises(TypeError, match="generator"):
            post.sample(2, 3)  # an int where a generator goes
        with pytest.raises(ValueError, match="seed"):
            post.sample(2, seed=2**64)  # past torch's seed range
        with pytest.raises(TypeError, match="seed"):
            post.sample(2, seed=1.5)

    def test_rsample_shape_or_documented_error(self, post):
        if not self.has_rsample:
            with pytest.raises(self.rsample_error, match="rsample"):
                post.rsample(2)
            return
        torch.manual_seed(0)
        assert tuple(post.rsample(2).shape) == (2, *self._full(post))
        assert tuple(post.rsample((1, 2)).shape) == (1, 2, *self._full(post))

    def test_variance_is_finite_and_non_negative(self, post):
        var = post.variance
        assert bool(torch.isfinite(var).all()), "non-finite variances"
        assert bool((var >= 0).all()), f"negative variance {float(var.min())}"
        assert bool(torch.isfinite(post.mean).all()), "non-finite mean"

    def test_dtype_and_device_match_the_tensors(self, post):
        for t in (post.mean, post.variance, post.sample(2, seed=0), post.quantile(0.3)):
            assert t.dtype == post.dtype
            assert t.device == post.device
        lo, hi = post.interval(0.8)
        assert lo.dtype == hi.dtype == post.dtype

    # -- seeds and randomness ---------------------------------------------------------------
    def test_seed_reproduces_and_different_seeds_differ(self, post):
        a, b = post.sample(4, seed=7), post.sample(4, seed=7)
        assert torch.equal(a, b)
        c = post.sample(4, seed=8)
        assert not torch.equal(a, c), "seeds 7 and 8 gave the same draws"

    def test_generator_is_equivalent_to_seed(self, post):
        torch.testing.assert_close(
            post.sample(4, generator=self._gen(post, 11)), post.sample(4, seed=11)
        )

    def test_seed_and_generator_together_are_refused(self, post):
        with pytest.raises(ValueError, match="seed"):
            post.sample(2, self._gen(post, 0), seed=0)

    def test_seeded_draws_leave_the_global_rng_alone(self, post):
        state = torch.get_rng_state()
        post.sample(3, seed=1)
        post.sample(3, generator=self._gen(post, 2))
        post.to_inference_data(num_samples=2, num_chains=2, seed=3)
        assert torch.equal(torch.get_rng_state(), state), "seeded draws advanced torch's RNG"

    # -- quantiles and intervals ------------------------------------------------------------
    def test_quantile_shape_and_monotone_in_q(self, post):
        q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
        qs = post.quantile(q)
        assert tuple(qs.shape) == (5, *self._full(post))
        assert bool((qs.diff(dim=0) >= 0).all()), "quantiles decrease in q"
        assert tuple(post.quantile(0.5).shape) == self._full(post)
        assert tuple(post.quantile([0.2, 0.8]).shape) == (2, *self._full(post))
        assert tuple(post.quantile([[0.2, 0.3], [0.6, 0.8]]).shape) == (2, 2, *self._full(post))

    @pytest.mark.parametrize("q", BAD_Q)
    def test_bad_q_is_a_value_error_naming_q(self, post, q):
        with pytest.raises(ValueError, match="q"):
            post.quantile(q)
        with pytest.raises(ValueError, match="q"):
            post.quantile([0.5, q])

    def test_non_numeric_q_and_level_are_type_errors_naming_them(self, post):
        with pytest.raises(TypeError, match="q"):
            post.quantile("0.5")
        with pytest.raises(TypeError, match="level"):
            post.interval("0.9")
        with pytest.raises(TypeError, match="level"):
            post.interval(True)

    def test_array_and_tensor_q_give_the_float_q_quantiles(self, post):
        want = post.quantile([0.3, 0.6])
        torch.testing.assert_close(post.quantile(np.array([0.3, 0.6])), want)
        torch.testing.assert_close(
            post.quantile(torch.tensor([0.3, 0.6], dtype=torch.float64)), want
        )
        torch.testing.assert_close(post.quantile(torch.tensor(0.3, dtype=torch.float64)), want[0])

    def test_median_lies_inside_the_intervals(self, post):
        med = post.quantile(0.5)
        for level in (0.5, 0.9):
            lo, hi = post.interval(level)
            assert bool((lo <= med).all() and (med <= hi).all())

    def test_intervals_ordered_and_nested_in_level(self, post):
        inner, outer = post.interval(0.5), post.interval(0.9)
        assert tuple(inner[0].shape) == tuple(inner[1].shape) == self._full(post)
        assert bool((inner[0] <= inner[1]).all())
        assert bool((outer[0] <= inner[0]).all() and (inner[1] <= outer[1]).all())

    @pytest.mark.parametrize("level", BAD_LEVELS)
    def test_bad_level_is_a_value_error_naming_level(self, post, level):
        with pytest.raises(ValueError, match="level"):
            post.interval(level)

    def test_level_rounding_to_one_is_refused(self, post):
        # (1 + level) / 2 rounds to 1 in the posterior's dtype: the upper "quantile" would be
        # infinite or the largest draw, not the level asked for
        level = 1 - 1e-9 if post.dtype == torch.float32 else math.nextafter(1.0, 0.0)
        with pytest.raises(ValueError, match="level"):
            post.interval(level)

    # -- Monte-Carlo moments ----------------------------------------------------------------
    def test_draw_moments_agree_with_mean_and_variance(self, post):
        n = self.mc_samples
        draws = post.sample(n, seed=123).double()
        mean, var = post.mean.double(), post.variance.double()
        if self.resamples_stored_draws:
            stored = post.num_chains * post.num_draws
            var = var * (stored - 1) / stored
        smean = draws.mean(0)
        dev = draws - smean
        svar = dev.square().mean(0) * n / (n - 1)
        m4 = dev.pow(4).mean(0)
        scale = var.max().clamp_min(1e-300)
        eps = 1e-6 * scale + 1e-30  # an exactly pinned point: round-off only
        se_mean = (var / n).sqrt()
        # the exact sd of the unbiased sample variance, (m4 - s^4 (n - 3)/(n - 1)) / n: its
        # second-order term keeps a tolerance for draws of two equally likely values (m4 = s^4)
        se_var = ((m4 - svar.square()).clamp_min(0) / n + 2 * svar.square() / (n * (n - 1))).sqrt()
        tol_mean = self.mc_z * se_mean + self.mc_rtol * var.sqrt() + eps.sqrt()
        tol_var = self.mc_z * se_var + self.mc_rtol * var + eps
        worst_mean = float(((smean - mean).abs() / tol_mean).max())
        worst_var = float(((svar - var).abs() / tol_var).max())
        assert worst_mean <= 1, f"draw mean off by {worst_mean:.2f} tolerances"
        assert worst_var <= 1, f"draw variance off by {worst_var:.2f} tolerances"

    # -- log density ------------------------------------------------------------------------
    def test_log_prob_shapes_and_finite_at_the_mean(self, post):
        if not self.has_log_prob:
            with pytest.raises(self.log_prob_error, match="log_prob"):
                post.log_prob(post.mean)
            return
        one = post.log_prob(post.mean)
        assert tuple(one.shape) == tuple(post.batch_shape)
        assert bool(torch.isfinite(one).all())
        many = post.log_prob(post.sample(3, seed=0))
        assert tuple(many.shape) == (3, *post.batch_shape)
        with pytest.raises(ValueError, match="value"):
            last = post.event_shape[-1] + 1 if len(post.event_shape) else 2
            post.log_prob(post.mean.new_zeros((*post.batch_shape, last)))
        with pytest.raises(TypeError, match="value"):
            post.log_prob(post.mean.round().long())
        with pytest.raises(TypeError, match="value"):
            post.log_prob(post.mean.tolist())

    # -- devices, export, repr --------------------------------------------------------------
    def test_to_cpu_keeps_values(self, post):
        assert post.to(None).device == torch.device("cpu")  # None: the CPU, as for a model
        moved = post.to("cpu")
        assert moved.device == torch.device("cpu")
        assert tuple(moved.event_shape) == tuple(post.event_shape)
        assert tuple(moved.batch_shape) == tuple(post.batch_shape)
        torch.testing.assert_close(moved.mean, post.mean.cpu())
        torch.testing.assert_close(moved.variance, post.variance.cpu())
        if post.device.type == "cpu":
            torch.testing.assert_close(moved.sample(3, seed=4), post.sample(3, seed=4))

    def test_to_inference_data_posterior_group_shape(self, post):
        idata = post.to_inference_data(num_samples=2, num_chains=2, seed=0)
        name = getattr(post, "export_name", "u")
        var = group_dataset(idata, "posterior")[name]
        assert tuple(var.shape) == (2, 2, *self._full(post))
        assert var.dims[:2] == ("chain", "draw")

    def test_stored_chains_export_as_they_are(self, post):
        if not self.resamples_stored_draws:
            # a posterior without stored chains draws the default 1000 in one chain
            idata = post.to_inference_data(seed=0)
            shape = (1, 1000)
        else:
            idata = post.to_inference_data()
            shape = (post.num_chains, post.num_draws)
        var = group_dataset(idata, "posterior")[getattr(post, "export_name", "u")]
        assert tuple(var.shape) == (*shape, *self._full(post))

    def test_repr_does_not_raise(self, post):
        text = repr(post)
        assert isinstance(text, str) and text
