"""Property tests of the multigrid decomposition's exact algebra for random shapes of 1 to 4
axes (size-1 axes, some axes not coarsened): the interpolation to the fine grid is a partition
of unity and reproduces functions linear in each axis (end points aligned), and the map from
coefficients to the field is linear."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import Multigrid

F64 = torch.float64


def _linear_field(shape: tuple[int, ...], slopes: list[float], offset: float) -> torch.Tensor:
    """offset + sum_k slope_k * s_k on ``shape``, s_k in [0, 1] along axis k (end points at 0
    and 1; a size-1 axis has s = 0)."""
    out = torch.full(shape, offset, dtype=F64)
    for k, n in enumerate(shape):
        s = torch.linspace(0, 1, n, dtype=F64) if n > 1 else torch.zeros(1, dtype=F64)
        view = [1] * len(shape)
        view[k] = n
        out = out + slopes[k] * s.reshape(view)
    return out


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    levels=st.integers(1, 4),
    data=st.data(),
)
def test_every_level_interpolates_constants_and_linear_functions_exactly(shape, levels, data):
    """A level whose coefficients sample a function linear in each axis (on its own coarse
    grid, the end points aligned with the fine grid's) gives that function on the fine grid,
    constants included; the other levels set to 0; and to_fine is linear in the
    coefficients."""
    nd = len(shape)
    axes = data.draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd), label="axes")
    mg = Multigrid(shape, levels, axes or None)
    level = data.draw(st.integers(0, levels - 1), label="level")
    slopes = data.draw(st.lists(st.floats(-3, 3), min_size=nd, max_size=nd), label="slopes")
    offset = data.draw(st.floats(-3, 3), label="offset")
    coarse = mg.level_shapes[level]
    parts = [torch.zeros(m, dtype=F64) for m in mg.sizes]
    # a coarse axis of size 1 holds the value at s = 0 and copies it: only a constant along it
    slopes_here = [0.0 if (coarse[k] == 1 and shape[k] > 1) else v for k, v in enumerate(slopes)]
    parts[level] = _linear_field(coarse, slopes_here, offset).reshape(-1)
    got = mg.to_fine(torch.cat(parts))
    want = _linear_field(shape, slopes_here, offset)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * (1 + sum(map(abs, slopes))))
    g = torch.Generator().manual_seed(len(shape) * 31 + levels)
    c1 = torch.randn(mg.size, generator=g, dtype=F64)
    c2 = torch.randn(mg.size, generator=g, dtype=F64)
    torch.testing.assert_close(
        mg.to_fine(2.0 * c1 - 0.5 * c2),
        2.0 * mg.to_fine(c1) - 0.5 * mg.to_fine(c2),
        rtol=0,
        atol=1e-12 * levels,
    )


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(2, 7), min_size=2, max_size=3).map(tuple),
    frac=st.floats(0.0, 1.0),
    positive=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_model_plans_are_the_top_scores_and_grow_by_nesting(shape, frac, positive, seed):
    """The iso-volumetric plan holds exactly ``volume`` brain voxels. Ranked by distinct
    scores (a volume within the positive support, or no support at all) its lowest score is
    above every excluded brain voxel's and the plan of volume v lies inside that of v + 1;
    a volume beyond the support holds the whole support (the distance fallback adds the
    voxels nearest to it)."""
    from bayesphys.odil.radiotherapy import model_plan

    g = torch.Generator().manual_seed(seed)
    brain = torch.rand(shape, generator=g) < 0.8
    brain.view(-1)[0] = True
    n_brain = int(brain.sum())
    # distinct scores; a share of the voxels positive
    score = torch.randperm(brain.numel(), generator=g).to(F64).reshape(shape) + 1.0
    score = score - float(torch.quantile(score, 1.0 - positive))
    volume = min(n_brain, int(frac * n_brain))
    plan = model_plan(score, brain, volume)
    bigger = model_plan(score, brain, min(volume + 1, n_brain))
    assert int(plan.sum()) == volume and bool((plan <= brain).all())
    n_pos = int(((score > 0) & brain).sum())
    if volume + 1 <= n_pos or n_pos == 0:  # ranked by the distinct scores alone
        assert bool((plan <= bigger).all())
        if 0 < volume < n_brain:
            assert float(score[plan].min()) > float(score[brain & ~plan].max())
    else:  # beyond the support: its voxels first, then the nearest (distances may tie)
        support = (score > 0) & brain
        assert bool((support <= plan).all())


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(3, 9), min_size=2, max_size=3).map(tuple),
    margins=st.lists(st.floats(0.0, 12.0), min_size=2, max_size=2),
    spacing=st.sampled_from([0.5, 1.0, 2.0]),
    seed=st.integers(0, 10_000),
)
def test_margin_plans_grow_with_the_margin_and_scale_with_the_voxels(shape, margins, spacing, seed):
    """The margin plan contains the core inside the brain, grows with the margin (a smaller
    margin's plan lies inside a larger one's), and a margin m at voxel size h is the margin
    2m at voxel size 2h (the same distances in other units); per-axis sizes all equal to h are
    the number h."""
    from bayesphys.odil.radiotherapy import standard_margin_plan

    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(shape, dtype=torch.long)
    labels.view(-1)[torch.randint(0, labels.numel(), (3,), generator=g)] = 2
    brain = torch.rand(shape, generator=g) < 0.9
    small, large = sorted(margins)
    p_small = standard_margin_plan(labels, brain, spacing, small)
    p_large = standard_margin_plan(labels, brain, spacing, large)
    assert bool(((labels == 2) & brain <= p_small).all())
    assert bool((p_small <= p_large).all())
    assert torch.equal(standard_margin_plan(labels, brain, 2 * spacing, 2 * small), p_small)
    per_axis = (spacing,) * len(shape)
    assert torch.equal(standard_margin_plan(labels, brain, per_axis, small), p_small)
