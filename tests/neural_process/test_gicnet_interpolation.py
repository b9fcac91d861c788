"""GICNet's kernel interpolation: the hand-written backward (used when the points carry no
gradient) gives autograd's gradients bit for bit, and second derivatives through it are exact;
a domain box far from the (absolute) lengthscales is warned about."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.neural_process import SIZES, GICNet, RandomGridNP, get_problem, preset
from bayesphys.neural_process.config import METHODS, PROBLEMS
from bayesphys.neural_process.gicnet import KernelInterpolation, _kernel_average, _KernelAverage
from tests.tiny_models import TINY_GIC


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    nd2 = -torch.rand(2, 1, 7, 9, generator=g, dtype=dtype) * 3  # -d^2 [B, 1, M, N]
    inv = (0.5 + torch.rand(3, generator=g, dtype=dtype)).requires_grad_()  # [P]
    feat = torch.randn(2, 9, 3, generator=g, dtype=dtype).requires_grad_()  # [B, N, P]
    return nd2, inv, feat


@pytest.mark.parametrize("both", [True, False], ids=["h-and-sums", "h-only"])
def test_hand_written_backward_equals_autograd_bit_for_bit(both):
    nd2, inv, feat = _inputs()
    g = torch.Generator().manual_seed(1)
    wh, wk = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)

    def loss(fn):
        h, ks = fn(nd2, inv, feat)
        return (h * wh).sum() + ((ks * wk).sum() if both else 0)

    fast = torch.autograd.grad(loss(_KernelAverage.apply), (inv, feat))
    ref = torch.autograd.grad(loss(_kernel_average), (inv, feat))
    assert all(torch.equal(a, b) for a, b in zip(fast, ref))
    # the values too
    assert all(
        torch.equal(a, b)
        for a, b in zip(_KernelAverage.apply(nd2, inv, feat), _kernel_average(nd2, inv, feat))
    )


def test_second_derivatives_through_the_hand_written_backward():
    nd2, inv, feat = _inputs(torch.float64)

    def fn(i, f):
        return _KernelAverage.apply(nd2, i, f)

    assert torch.autograd.gradcheck(fn, (inv, feat))
    assert torch.autograd.gradgradcheck(fn, (inv, feat))


def test_interpolation_gradients_with_and_without_point_gradients_agree():
    # points that need gradients go through autograd's graph, the others through the
    # hand-written backward: the same gradients in the features and length scales
    torch.manual_seed(0)
    interp = KernelInterpolation(torch.linspace(0, 1, 6).unsqueeze(-1), 2)
    x = torch.rand(3, 8, 1)
    feat = torch.randn(3, 8, 2, requires_grad=True)
    grads = []
    for needs in (False, True):
        xx = x.clone().requires_grad_(needs)
        h = interp(xx, feat)
        grads.append(torch.autograd.grad(h.square().sum(), (feat, interp.log_ell)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize(("free", "sums_only"), [("inv", False), ("feat", False), ("both", True)])
def test_second_derivatives_when_an_input_carries_no_gradient(free, sums_only):
    # a Hessian in the length scales with fixed features (or the reverse), or of a loss of the
    # weights' sums alone (which do not depend on the features): the create_graph backward
    # differentiated both inputs through both outputs, and autograd refused the one outside
    # the graph
    nd2, inv, feat = _inputs(torch.float64)
    if free == "inv":
        feat = feat.detach()
    elif free == "feat":
        inv = inv.detach()
    wrt = [t for t in (inv, feat) if t.requires_grad]
    hessians = []
    for fn in (_KernelAverage.apply, _kernel_average):
        h, ks = fn(nd2, inv, feat)
        loss = ks.square().sum() if sums_only else h.square().sum() + ks.sum()
        g = torch.autograd.grad(loss, wrt, create_graph=True, allow_unused=True)
        second = sum(t.square().sum() for t in g if t is not None)
        hessians.append(torch.autograd.grad(second, wrt, allow_unused=True))
    for fast, ref in zip(*hessians):
        if ref is None:
            assert fast is None or not bool(fast.any())
        else:
            torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
            assert ref.abs().max() > 0


@settings(max_examples=25, deadline=None)
@given(
    dim=st.sampled_from([1, 2]),
    n=st.integers(1, 40),
    channels=st.integers(1, 4),
    ell_min=st.sampled_from([0.05, 0.2, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_interpolation_equals_the_dense_nadaraya_watson_formula(dim, n, channels, ell_min, seed):
    # h_j(g) = sum_i k_j(g, x_i) l_ij / (sum_i k_j(g, x_i) + 1e-6), rho_j(g) = mean_i k_j(g, x_i),
    # k_j(g, x) = exp(-|g - x|^2 / (2 lambda_j^2)), written out in numpy (float64)
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)] * dim
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    interp = KernelInterpolation(grid, channels, 1.0, ell_min).double()
    x = 2 * torch.rand(3, n, dim, generator=gen, dtype=torch.float64) - 1
    feat = torch.randn(3, n, channels, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        h, rho = interp(x, feat, density=True)
    ell = interp.log_ell.detach().exp().numpy()
    d2 = ((grid.numpy()[None, :, None, :] - x.numpy()[:, None, :, :]) ** 2).sum(-1)  # B, M, N
    k = np.exp(-d2[:, None] / (2 * ell[None, :, None, None] ** 2))  # B, P, M, N
    num = np.einsum("bpmn,bnp->bpm", k, feat.numpy())
    np.testing.assert_allclose(h.numpy(), num / (k.sum(-1) + 1e-6), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rho.numpy(), k.mean(-1), rtol=1e-9, atol=1e-300)
    assert h.shape == rho.shape == (3, channels, grid.shape[0])


def _box_warnings(build) -> list[str]:
    """The texts of the domain-box warnings GICNet raises while ``build()`` runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [str(w.message) for w in caught if "domain box" in str(w.message)]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_no_registered_problem_warns_about_its_domain_box(problem, method):
    """The registered problems' boxes ([-1, 1] and [0, 1]^2) suit the lengthscales of every
    preset and size: no warning, neither from RandomGridNP nor from GICNet built directly."""
    p = get_problem(problem)
    assert not _box_warnings(lambda: RandomGridNP(problem, method, size="smoke", seed=0))
    for size in SIZES:
        gic = preset(problem, method, size).gic
        assert not _box_warnings(
            partial(GICNet, p.dim_x, p.dim_z, p.dim_w, p.lower, p.upper, **gic)
        )


@pytest.mark.parametrize(
    ("upper", "ell", "axis", "phrase"),
    [
        ([1e3], {}, 0, "longer than 50 x ell_max=1"),
        ([1e-3], {}, 0, "shorter than 10 x ell_min=0.001"),
        ([0.3], {"ell_min": 0.05}, 0, "shorter than 10 x ell_min=0.05"),
        ([1.0, 200.0], {}, 1, "longer than 50 x ell_max=1"),
    ],
)
def test_gicnet_warns_on_a_box_far_from_its_lengthscales(upper, ell, axis, phrase):
    """The lengthscales are absolute: a box of length 1e3 or 1e-3 started every channel at the
    wrong scale without a word. Now a UserWarning names the axis, its length and the cause, at
    the caller's line."""
    dim = len(upper)
    with pytest.warns(UserWarning, match="domain box") as rec:
        GICNet(dim, 2, 1, [0.0] * dim, upper, **dict(TINY_GIC, **ell))
    (w,) = [w for w in rec if "domain box" in str(w.message)]
    assert f"axis {axis} of the domain box spans {upper[axis]:.3g} units" in str(w.message)
    assert phrase in str(w.message)
    assert w.filename == __file__
    # the remedy the warning names: lengthscales in the box's units, or x rescaled
    length = upper[axis]
    scaled = {"ell_max": length / 2, "ell_min": length / 40}
    if dim == 1:
        assert not _box_warnings(lambda: GICNet(1, 2, 1, [0.0], upper, **dict(TINY_GIC, **scaled)))
    assert not _box_warnings(lambda: GICNet(dim, 2, 1, [0.0] * dim, [1.0] * dim, **TINY_GIC))


@pytest.mark.parametrize("length", [1e3, 1e-3])
def test_the_warned_boxes_do_defeat_the_kernel_interpolation(length):
    """What the warning says, checked: with the default lengthscales, on [0, 1e3] most latent
    nodes see no point in any channel, and on [0, 1e-3] no channel resolves a field varying
    along the box; the lengthscales scaled with the box (ell_max = L/2, ell_min = L/40)
    interpolate it as on [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 30, 1, generator=gen, dtype=torch.float64)

    def interpolation_error(length, ell_max, ell_min):
        grid = torch.linspace(0.0, length, 20, dtype=torch.float64)[:, None]
        kip = KernelInterpolation(grid, 20, ell_max, ell_min).double()
        feat = torch.sin(2 * torch.pi * x).expand(-1, -1, 20)
        with torch.no_grad():
            h, rho = kip(x * length, feat, density=True)
        truth = torch.sin(2 * torch.pi * grid[:, 0] / length)
        err = (h - truth).pow(2).mean((0, 2)).sqrt().min()  # the best channel's rms error
        blind = ((rho * x.shape[1]).amax(1) < 1e-3).double().mean()  # nodes seeing no point
        return float(err), float(blind)

    err_unit, _ = interpolation_error(1.0, 1.0, 1e-3)
    err, blind = interpolation_error(length, 1.0, 1e-3)
    err_scaled, _ = interpolation_error(length, length / 2, length / 40)
    assert err > 3 * err_unit and err_scaled < 1.5 * err_unit, (err, err_unit, err_scaled)
    if length > 1:
        assert blind > 0.5


@pytest.mark.parametrize("density", [False, True], ids=["plain", "density"])
@pytest.mark.parametrize("shape", [(2, 0), (0, 3)], ids=["no-points", "no-sets"])
def test_an_empty_context_set_is_refused_by_name(density, shape):
    # no points: every kernel average is 0 / (0 + 1e-6), so the plain network answered from
    # nothing, and the density channels read 0 / 0 (NaN, a Cholesky failure); no sets: a
    # reshape error inside torch
    net = GICNet(1, 2, 1, [-1.0], [1.0], density=density, **TINY_GIC)
    b, n = shape
    with pytest.raises(ValueError, match=r"x: expected B >= 1 sets of N >= 1 points"):
        net(torch.zeros(b, n, 1), torch.zeros(b, n), torch.zeros(b, 1))
    kip = KernelInterpolation(torch.linspace(-1, 1, 5).unsqueeze(-1), 3)
    with pytest.raises(ValueError, match=r"x: expected shape \[B, N >= 1, 1\]"):
        kip(torch.zeros(2, 0, 1), torch.zeros(2, 0, 3), density=density)
    # one point is enough: a finite distribution
    d = net(torch.zeros(1, 1, 1), torch.ones(1, 1), torch.zeros(1, 1))
    assert torch.isfinite(d.mean).all() and torch.isfinite(d.variance).all()


def test_kernel_interpolation_checks_its_grid_and_channels():
    """A NaN grid interpolated NaN without a word, an empty one gave ``[B, P, 0]`` features and
    a 1-D one failed in ``cdist`` at the first call; features with the wrong channel count
    failed with einsum's "subscript p has size 4 ... does not broadcast"."""
    from bayesphys.neural_process import KernelInterpolation

    grid = torch.linspace(-1, 1, 5).unsqueeze(-1)
    for bad, err, msg in (
        (torch.full((5, 1), float("nan")), ValueError, r"^grid: expected finite values"),
        (torch.zeros(0, 1), ValueError, r"^grid: expected latent points \[M >= 1, dim_x >= 1\]"),
        (torch.linspace(-1, 1, 5), ValueError, r"^grid: expected latent points .* \(5,\)"),
        (torch.arange(5).unsqueeze(-1), TypeError, r"^grid: expected a floating tensor"),
        ([[0.0], [1.0]], TypeError, r"^grid: expected a floating tensor .* list"),
    ):
        with pytest.raises(err, match=msg):
            KernelInterpolation(bad, 3)
    ki = KernelInterpolation(grid, 3)
    x = torch.rand(2, 6, 1)
    with pytest.raises(ValueError, match=r"^feat: expected shape \[B, N, P\] = \[2, 6, 3\]"):
        ki(x, torch.rand(2, 6, 4))
    with pytest.raises(ValueError, match=r"^feat: expected shape"):
        ki(x, torch.rand(1, 6, 3))
    with pytest.raises(ValueError, match=r"^x: expected shape \[B, N >= 1, 1\]"):
        ki(torch.rand(2, 6, 2), torch.rand(2, 6, 3))
    assert ki(x, torch.rand(2, 6, 3)).shape == (2, 3, 5)


@settings(max_examples=20, deadline=None)
@given(
    dim=st.sampled_from([1, 2]),
    n=st.integers(1, 30),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_gicnet_is_a_set_function_of_each_random_grid(dim, n, batch, seed):
    """GICNet's output depends on a set of points only through kernel averages over it: on
    random grids (1-D or 2-D, any N >= 1, points anywhere in the closed box) it is invariant,
    to rounding, under reordering the points; each set's output ignores the other sets of a
    batch; and listing every point twice changes the output only through the averages'
    1e-6 guard (the preset's shortest initial lengthscale, 0.05)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = ([-1.0], [1.0]) if dim == 1 else ([0.0, 0.0], [1.0, 1.0])
    torch.manual_seed(seed)
    net = GICNet(dim, 3, 1, lo, hi, **dict(TINY_GIC, ell_min=0.05)).double().eval()
    span = torch.tensor(hi, dtype=torch.float64) - torch.tensor(lo, dtype=torch.float64)
    x = torch.tensor(lo, dtype=torch.float64) + span * torch.rand(
        batch, n, dim, generator=gen, dtype=torch.float64
    )
    x[0, 0] = torch.tensor(hi, dtype=torch.float64)  # a point on the box's corner
    v = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    w = 1 + torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    perm = torch.randperm(n, generator=gen)
    with torch.no_grad():
        q = net(x, v, w)
        qp = net(x[:, perm], v[:, perm], w)
        q_last = net(x[-1:], v[-1:], w[-1:])
        q_twice = net(torch.cat([x, x], 1), torch.cat([v, v], 1), w)
    out = lambda d: torch.cat([d.loc, d.cov_diag, d.cov_factor.flatten(1)], -1)  # noqa: E731
    ref = out(q)
    assert ref.shape == (batch, 3 * (2 + net.rank)) and torch.isfinite(ref).all()
    torch.testing.assert_close(out(qp), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out(q_last), ref[-1:], rtol=1e-10, atol=1e-12)
    # the guard's share: h = S / (K + 1e-6) against 2S / (2K + 1e-6), which differ only where a
    # latent node's kernel sum K is ~1e-6 or less (measured: at most 4e-4 of the output over
    # 2400 such draws); a sum in place of an average would move it by O(1)
    assert (out(q_twice) - ref).abs().max() < 1e-2 * (1 + ref.abs().max())
