"""Mutation review (round 77) of ProbConserv's Step 2, its checks and the GPME problems: tests
that fail on hand-made wrong formulas the rest of the suite let through. Each test names the
mutant it kills; every expected value comes from an independent oracle (a closed form, the
constraint itself, the documented rule, or the projection at a resolvable mass)."""

from __future__ import annotations

import math

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.probconserv import hard_projection, project_monotone, trapezoid_weights
from bayesphys.probconserv.conditional import choose_bandwidth
from bayesphys.probconserv.mass_check import fit_mass_kappa

F64 = torch.float64


@pytest.mark.parametrize("rows", [1, 2])
def test_hardc_meets_the_constraint_to_round_off_for_a_mean_far_along_it(rows):
    """Kills ``hard_projection``'s ``project(project(mean))`` -> ``project(mean)`` (the
    iterative-refinement pass dropped). A mean ``1e8`` along the constraint rows: one
    projection leaves a defect of the round-off of ``G mu`` (``~1e-16 * 1e8``, about 4e-10);
    the second, on the now small mean, meets ``G mu~ = b`` to round-off of the answer."""
    gen = torch.Generator().manual_seed(0)
    n = 50
    x = torch.sort(torch.rand(n, generator=gen, dtype=F64)).values
    G = trapezoid_weights(x)[None]
    if rows == 2:
        G = torch.cat([G, torch.randn(1, n, generator=gen, dtype=F64)])
    b = torch.randn(4, rows, generator=gen, dtype=F64)
    mu = torch.randn(4, n, generator=gen, dtype=F64) + 1e8 * G.sum(0)
    prior = GaussianPosterior(mu, DiagLinearOperator(torch.ones(4, n, dtype=F64)), event_shape=(n,))
    post = hard_projection(prior, G, b)
    assert float((post.mean @ G.mT - b).abs().max()) < 1e-13


def test_choose_bandwidth_breaks_ties_toward_the_larger_bandwidth():
    """Kills ``choose_bandwidth``'s ``max(k ...)`` -> ``min(k ...)`` (ties to the smaller
    bandwidth). Every calibration function with the same |z| values: the weights cannot matter,
    so every bandwidth has the same error, and the documented rule ("ties go to the larger
    ``h``") picks the largest one."""
    gen = torch.Generator().manual_seed(0)
    m, n = 12, 40
    absz = torch.randn(1, 1, n, generator=gen, dtype=F64).abs().expand(m, 1, n).contiguous()
    theta = torch.linspace(-1, 1, m, dtype=F64)
    h, cv = choose_bandwidth(absz, theta, theta, -1.0, 1.0, bandwidths=(0.1, 0.2, 0.4, math.inf))
    assert len(set(cv.values())) == 1
    assert h == math.inf
    h, _ = choose_bandwidth(absz, theta, theta, -1.0, 1.0, bandwidths=(0.4, 0.1, 0.2))
    assert h == 0.4


def test_fit_mass_kappa_is_the_mean_squared_z_score():
    """Kills ``fit_mass_kappa``'s ``r^2 / v`` -> ``|r| / v``: kappa is the mean of ``r^2 / v``
    (docstring), here ``(1 + 4/2 + 9 + 16/4) / 4 = 4`` (``|r| / v`` gives 2)."""
    r = torch.tensor([[1.0, -2.0], [3.0, 4.0]], dtype=F64)
    v = torch.tensor([[1.0, 2.0], [1.0, 4.0]], dtype=F64)
    assert fit_mass_kappa(r, v) == pytest.approx(4.0, rel=1e-15)


@pytest.mark.parametrize(
    ("v", "g"),
    [
        # prefixes 1 and 2 tied (V_k / G_k = 1): their levels differ (g_1 > g_2)
        ([2.0, 1.0, -5.0, -5.0], [2.0, 1.0, 1.0, 1.0]),
        # prefixes 1, 3 and 4 tied, pieces {1}, {2, 3}, {4} of mean g 1, 2, 3: pooled into one
        ([1.0, 0.0, 4.0, 3.0, -9.0], [1.0, 1.0, 3.0, 3.0, 1.0]),
        # prefixes 2 and 4 tied, pieces of mean g 2 and 1: two levels
        ([1.0, 3.0, 1.0, 1.0, -9.0, -9.0], [2.0, 2.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
@pytest.mark.parametrize("decreasing", [True, False])
def test_a_tiny_mass_with_tied_prefixes_is_the_limit_of_the_projection(v, g, decreasing):
    """A mass below what the multiplier resolves (``b ~ 1e-17 |v|``) with several prefixes
    tied for the largest ``V_k / G_k`` (integer data: exact ties). The projection at a
    resolvable mass is ``b`` times a fixed direction for every small ``b`` (``1e-6`` .. ``1e-12``
    agree); the tiny-mass path must return that direction too. It returned one tied prefix,
    ``1{1..k} / G_k`` (``[0.5, 0, 0, 0]`` for ``[0.4, 0.2, 0, 0]`` on the first case), a
    feasible point but not the projection's limit: the top entries of
    ``iso(v - lambda g)`` split at the tied prefixes into the isotonic fit of the piece means of
    ``g``. (Also kills the tie-break mutant ``rate = G_k / k`` -> ``G_k``.)"""
    vt, gt = torch.tensor(v, dtype=F64), torch.tensor(g, dtype=F64)
    if not decreasing:
        vt, gt = vt.flip(-1), gt.flip(-1)
    kw = {"nonnegative": True, "decreasing": decreasing}
    ref = project_monotone(vt, gt, 1e-9, **kw) / 1e-9
    torch.testing.assert_close(
        project_monotone(vt, gt, 1e-6, **kw) / 1e-6, ref, rtol=1e-8, atol=1e-8
    )
    for b in (1e-17, 1e-30):
        u = project_monotone(vt, gt, b, **kw)
        assert float(u @ gt) == pytest.approx(b, rel=1e-12)
        torch.testing.assert_close(u / b, ref, rtol=1e-6, atol=1e-6)


class _FieldMean:
    """A stand-in for :meth:`MetaGP.mean_at` returning ``f(t, x)`` at the targets."""

    def __init__(self, f):
        self.f = f

    def mean_at(self, xc, yc, xt):
        return self.f(xt[..., 0], xt[..., 1])


def test_softc_gp_steps_are_a_thousandth_of_each_side_of_the_box():
    """Kills ``softc_penalty_gp``'s steps taken from the swapped sides (``h_t`` from
    ``x_range``, ``h_x`` from ``t_range``). For ``u = t^3 + x^4`` the stencils' errors are exact
    polynomials in the steps: ``(u(t+h) - u(t-h)) / 2h = 3t^2 + h_t^2`` and
    ``(u(x+h) - 2u + u(x-h)) / h^2 = 12x^2 + 2h_x^2``; with the constant diffusivity ``k`` the
    penalty is ``mean((3t^2 + h_t^2 - k(12x^2 + 2h_x^2))^2)`` with ``h_t = 1e-3`` and
    ``h_x = 2 pi 1e-3`` on the diffusion box (the swapped steps change it by ~1e-6 relative;
    round-off ~1e-11)."""
    from bayesphys.probconserv._train import softc_penalty_gp
    from bayesphys.probconserv.model import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    model = ProbConserv("diffusion", step1="gp", gp_width=4, seed=0, softc_points=1000)
    d = make_dataset("diffusion", params=[1.0, 3.0], seed=0)
    model.net = _FieldMean(lambda t, x: t**3 + x**4)
    got = float(softc_penalty_gp(model, d.x_context, d.y_context, d.x_target, d.params))
    ht, hx = 1e-3 * 1.0, 1e-3 * 2 * math.pi
    t, x = d.x_target[..., 0], d.x_target[..., 1]
    k = d.params[:, None]
    r = 3 * t**2 + ht**2 - k * (12 * x**2 + 2 * hx**2)
    assert got == pytest.approx(float(r.pow(2).mean()), rel=1e-9)


def test_anp_loss_is_the_nll_plus_the_kl_of_the_target_latent_from_the_context_latent():
    """Kills ``AttentiveNP.loss``'s KL arguments swapped (``KL(q_c || q_a)``): the negative
    ELBO is ``-mean log N(y_t | mu, sigma) + mean_B KL(q(z | C u T) || q(z | C)) / N_t``, the
    KL of two diagonal Gaussians in closed form
    ``sum log(s_c / s_a) + (s_a^2 + (m_a - m_c)^2) / (2 s_c^2) - 1/2``."""
    from bayesphys.probconserv.anp import AttentiveNP

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = AttentiveNP((0.0, 0.0), (1.0, 1.0), hidden=16, heads=2)
    gen = torch.Generator().manual_seed(1)
    xc, xt = torch.rand(3, 7, 2, generator=gen), torch.rand(3, 5, 2, generator=gen)
    yc, yt = torch.randn(3, 7, generator=gen), torch.randn(3, 5, generator=gen)
    loss, mu, sig = net.loss(xc, yc, xt, yt, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        mc, sc = (v.double() for v in net.latent(xc, yc))
        ma, sa = (v.double() for v in net.latent(torch.cat([xc, xt], 1), torch.cat([yc, yt], 1)))
    kl = (torch.log(sc / sa) + (sa**2 + (ma - mc) ** 2) / (2 * sc**2) - 0.5).sum(-1)
    mu, sig, y = mu.detach().double(), sig.detach().double(), yt.double()
    nll = (torch.log(sig) + 0.5 * math.log(2 * math.pi) + 0.5 * ((y - mu) / sig) ** 2).mean()
    want = float(nll + (kl / yt.shape[1]).mean())
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    assert float((kl / yt.shape[1]).mean()) > 1e-3  # the KL term is not negligible here


def _shifted_copy(model, lo, hi, **kw):
    """A model of the same class and weights on the box ``lo, hi`` (only the box buffers
    differ)."""
    other = type(model)(lo, hi, **kw)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("lo", "hi"))}
    missing, unexpected = other.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(("lo", "hi")) for k in missing)
    return other


def _sets(dtype, shift):
    gen = torch.Generator().manual_seed(3)
    scale = torch.tensor([1.0, 2.0], dtype=dtype)
    xc = torch.rand(2, 7, 2, generator=gen, dtype=dtype) * scale + shift
    xt = torch.rand(2, 5, 2, generator=gen, dtype=dtype) * scale + shift
    yc = torch.rand(2, 7, generator=gen, dtype=dtype)
    return xc, yc, xt


def test_metagp_predictions_move_with_its_box():
    """Kills the meta-GP's normalisation ``(x - lo) / (hi - lo)`` -> ``x / (hi - lo)``, which
    every built-in GPME problem (boxes starting at 0) lets through. Oracle: translation
    equivariance of the documented map ``z = (a - lo) / (hi - lo)``: the same weights on the
    box shifted by ``c`` predict the same mean and covariance at inputs shifted by ``c``."""
    from bayesphys.probconserv import MetaGP

    torch.manual_seed(0)
    shift = torch.tensor([1.5, -3.0], dtype=F64)
    gp0 = MetaGP((0.0, 0.0), (1.0, 2.0), width=8)
    gp1 = _shifted_copy(gp0, (1.5, -3.0), (2.5, -1.0), width=8)
    m0, c0 = gp0.predict(*_sets(F64, 0.0))
    m1, c1 = gp1.predict(*_sets(F64, shift))
    torch.testing.assert_close(m1, m0, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(c1, c0, rtol=1e-9, atol=1e-12)
    # the differentiable mean (SoftC-GP's penalty) normalises on its own path too (there the
    # same mutant is equivalent: its raw kernel is stationary, so a dropped ``lo`` cancels)
    torch.testing.assert_close(gp1.mean_at(*_sets(F64, shift)), m0, rtol=1e-9, atol=1e-12)
    # the shift is not absorbed: the unshifted model at the shifted inputs predicts otherwise
    assert float((gp0.predict(*_sets(F64, shift))[0] - m0).abs().max()) > 1e-3


def test_anp_predictions_move_with_its_box():
    """Kills the attentive NP's normalisation ``(x - lo) / (hi - lo)`` -> ``x / (hi - lo)``
    (the same blind spot as the meta-GP's). Oracle: translation equivariance, as above, with
    the same latent noise (a generator of the same seed)."""
    from bayesphys.probconserv import AttentiveNP

    torch.manual_seed(0)
    f32 = torch.float32
    anp0 = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=8, heads=2)
    anp1 = _shifted_copy(anp0, (1.5, -3.0), (2.5, -1.0), hidden=8, heads=2)
    shift = torch.tensor([1.5, -3.0], dtype=f32)
    m0, s0 = anp0.predict(*_sets(f32, 0.0), n_samples=3, generator=torch.Generator().manual_seed(1))
    m1, s1 = anp1.predict(
        *_sets(f32, shift), n_samples=3, generator=torch.Generator().manual_seed(1)
    )
    # float32 normalisation of shifted inputs: round-off of order 1e-7 relative
    torch.testing.assert_close(m1, m0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s1, s0, rtol=1e-4, atol=1e-5)
    m2, _ = anp0.predict(
        *_sets(f32, shift), n_samples=3, generator=torch.Generator().manual_seed(1)
    )
    assert float((m2 - m0).abs().max()) > 1e-3
