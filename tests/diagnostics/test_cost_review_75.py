"""Cost review 75 of the recalibration: a quantile-map posterior maps its probabilities once,
not once per marginal, reads the probability grid as one shared row (no ``[M, G]`` copy of it),
and builds its quantile table block by block; the same numbers as before, bit for bit."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

import bayesphys.diagnostics.recalibrated as recalibrated
from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.diagnostics import Recalibrator

from ..memory_checks import linux_only, peak_rise_after

F64 = torch.float64


def _old_interp_rows(x, xp, fp):
    """The row-wise interpolation as written before the review (full [M, G] tables)."""
    g = xp.shape[-1]
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, g - 1)
    x0, x1 = xp.gather(-1, idx - 1), xp.gather(-1, idx)
    f0, f1 = fp.gather(-1, idx - 1), fp.gather(-1, idx)
    t = ((x - x0) / (x1 - x0).clamp_min(torch.finfo(x.dtype).tiny)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _old_table(rec, post):
    if isinstance(post, SamplePosterior):
        return rec._sample_quantiles(post)
    grid = rec._grid(post.mean)
    q = post.quantile(grid).reshape(len(grid), -1).mT.contiguous()
    return grid, torch.cummax(q, dim=-1).values


def _old_quantile_flat(rec, table, u, m):
    grid, q = table
    pu = rec.r_inverse(u.expand(m, -1).contiguous())
    return _old_interp_rows(pu, grid.expand_as(q).contiguous(), q)


def _fitted(dtype):
    g = torch.Generator().manual_seed(3)
    posts = [
        GaussianPosterior(
            torch.zeros(40, dtype=dtype), DiagLinearOperator(torch.full((40,), 0.5, dtype=dtype))
        )
        for _ in range(10)
    ]
    truths = [1.3 * torch.randn(40, generator=g, dtype=dtype) for _ in range(10)]
    return Recalibrator.fit(posts, truths, method="quantile")


def _bases(dtype):
    g = torch.Generator().manual_seed(4)
    mean = torch.randn(3, 7, generator=g, dtype=dtype)
    var = torch.rand(3, 7, generator=g, dtype=dtype) + 0.1
    return {
        "gaussian": GaussianPosterior(
            mean, DiagLinearOperator(var), event_shape=(7,)
        ),  # a batch of 3
        "sample": SamplePosterior(torch.randn(2, 15, 3, 7, generator=g, dtype=dtype)),
    }


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("kind", ["gaussian", "sample"])
def test_quantile_map_gives_the_old_formula_s_numbers_bit_for_bit(dtype, kind):
    rec = _fitted(dtype)
    base = _bases(dtype)[kind]
    post = rec.wrap(base)
    m = 21
    table = _old_table(rec, base)
    new_table = post._base_table()
    assert torch.equal(new_table[0], table[0]) and torch.equal(new_table[1], table[1])
    u = post._uniform_mid()
    vals = _old_quantile_flat(rec, table, u, m)
    assert torch.equal(post.mean, vals.mean(-1).reshape(3, 7))
    assert torch.equal(post.variance, vals.var(-1, correction=0).reshape(3, 7))
    q = torch.tensor([[0.02, 0.5, 0.97], [0.3, 0.6, 0.7]], dtype=dtype)
    old_q = _old_quantile_flat(rec, table, q.reshape(-1), m).mT.reshape(2, 3, 3, 7)
    assert torch.equal(post.quantile(q), old_q)
    x = base.sample((5,), seed=1)
    grid, tab = table
    flat = x.reshape(-1, m).mT
    p = _old_interp_rows(flat.contiguous(), tab, grid.expand_as(tab).contiguous())
    old_draws = _old_interp_rows(rec.r_inverse(p), grid.expand_as(tab).contiguous(), tab)
    assert torch.equal(post.map_draws(x), old_draws.mT.reshape(x.shape))
    old_cdf = _old_interp_rows(flat, tab, grid.expand_as(tab).contiguous()).mT.reshape(x.shape)
    assert torch.equal(rec._base_cdf(base, x), old_cdf)


def test_moments_and_quantiles_map_the_probabilities_once_for_all_marginals(monkeypatch):
    # R^{-1} of the 400 integration points (or the q asked for) is the same for every marginal:
    # it was computed on an [M, 400] copy of them
    rec = _fitted(F64)
    post = rec.wrap(_bases(F64)["gaussian"])
    post._base_table()
    shapes = []
    inverse = Recalibrator.r_inverse

    def spy(self, q):
        shapes.append(tuple(q.shape))
        return inverse(self, q)

    monkeypatch.setattr(Recalibrator, "r_inverse", spy)
    post.mean, post.variance, post.quantile([0.1, 0.9]), post.interval(0.8)
    assert shapes == [(400,), (400,), (2,), (2,)]


def test_draws_read_the_probability_grid_as_one_shared_row(monkeypatch):
    # map_draws and the base CDF interpolate in (or to) the grid [G]: it was expanded and copied
    # to [M, G] twice per call
    rec = _fitted(F64)
    base = _bases(F64)["gaussian"]
    post = rec.wrap(base)
    seen = []
    interp = recalibrated._interp_rows

    def spy(x, xp, fp):
        seen.append((xp.ndim, fp.ndim))
        return interp(x, xp, fp)

    monkeypatch.setattr(recalibrated, "_interp_rows", spy)
    post.sample((4,), seed=0)
    assert seen == [(2, 1), (1, 2)]


def _recalibrated_field_setup(n: int) -> str:
    """A quantile Recalibrator ``rec`` and a diagonal float64 posterior ``p`` of ``n`` points."""
    return f"""
        from bayesphys import GaussianPosterior
        from bayesphys.diagnostics import Recalibrator
        from linear_operator.operators import DiagLinearOperator
        g = torch.Generator().manual_seed(0)
        rec = Recalibrator("quantile", pits=torch.rand(100, generator=g, dtype=torch.float64))
        p = GaussianPosterior(torch.zeros({n}, dtype=torch.float64),
            DiagLinearOperator(torch.rand({n}, generator=g, dtype=torch.float64) + 0.1))
        """


@linux_only
def test_mean_of_a_recalibrated_field_holds_no_per_marginal_copies():
    # 20000 marginals: the [M, 400] values are 64 MB, the table [M, 241] 39 MB. The old mean
    # held an [M, 400] copy of the probabilities and ten more arrays of that size (~640 MB)
    assert peak_rise_after(_recalibrated_field_setup(20_000), "rec.wrap(p).mean") < 500


@linux_only
def test_quantile_table_is_built_without_a_transposed_copy_and_its_indices():
    # 50000 marginals x 241 grid points in float64: 96 MB a table; the cummax of the whole
    # transposed copy held it, the maxima and their int64 indices (~290 MB)
    assert peak_rise_after(_recalibrated_field_setup(50_000), "rec._base_quantiles(p)") < 270
