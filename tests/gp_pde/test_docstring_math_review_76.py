"""Review 76: the docstrings' equations and shapes as oracles (GP-HM solver, its problems and
the stencils). Each test computes what a docstring states from the formula alone (numpy,
dense matrices, explicit index rules) and compares it with the code."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from bayesphys.gp_pde import (
    GaussNewtonKronSolve,
    GPPDESolver,
    LinearPDEOperator,
    SpectralMixture1d,
    _kron,
    build_factors,
)
from bayesphys.gp_pde import gauss_newton as gn_module
from bayesphys.gp_pde._kron import face_values, kron_dense
from bayesphys.problems.stencil import shift

from .dense_reference import dense_posterior

F64 = torch.float64


def _mixture_np(kind: str, z: np.ndarray, log_w, mu, log_a) -> np.ndarray:
    """The module docstring of ``kernels``, written out in float64 numpy: GM
    :math:`\\sum_q w_q e^{-a_q z^2}\\cos 2\\pi\\mu_q z`; StM the reference code's
    ``Matern52_Cos_1d``, :math:`\\sum_q w_q (1 + \\sqrt5 a_q d + \\tfrac53 a_q^2 d^2)
    e^{-\\sqrt5 a_q d}\\cos 2\\pi\\mu_q d`, :math:`d = |z|` (the anchor's form, not the
    module's :math:`\\alpha_q = \\sqrt5 a_q` one)."""
    w, a, m = np.exp(log_w), np.exp(log_a), np.asarray(mu)
    out = np.zeros_like(z)
    for q in range(len(w)):
        d = np.abs(z)
        if kind == "gm":
            env = np.exp(-a[q] * z**2)
        else:
            env = (1 + math.sqrt(5) * a[q] * d + 5 / 3 * a[q] ** 2 * d**2) * np.exp(
                -math.sqrt(5) * a[q] * d
            )
        out += w[q] * env * np.cos(2 * math.pi * m[q] * z)
    return out


def _stm_deriv_np(z: np.ndarray, n: int, log_w, mu, log_a) -> np.ndarray:
    r""":math:`k^{(n)}(z)` of the StM mixture, symbolically (sympy) from the formula on
    :math:`z \ge 0` and by evenness, :math:`k^{(n)}(-z) = (-1)^n k^{(n)}(z)`; at
    :math:`z = 0` the one-sided limit (autograd through :math:`|z|` is wrong there)."""
    fn = _stm_deriv_fn(n, tuple(log_w), tuple(mu), tuple(log_a))
    r = np.abs(z)
    return np.broadcast_to(fn(r), r.shape) * np.where(z < 0, (-1.0) ** n, 1.0)


@functools.cache
def _stm_deriv_fn(n: int, log_w: tuple, mu: tuple, log_a: tuple):
    """The numpy function :math:`r \\mapsto k^{(n)}(r)`, :math:`r \\ge 0` (sympy, cached)."""
    import sympy

    s = sympy.symbols("s", nonnegative=True)
    expr = 0
    for lw, m, la in zip(log_w, mu, log_a):
        al = sympy.sqrt(5) * sympy.exp(sympy.Float(la, 30))
        expr += (
            sympy.exp(sympy.Float(lw, 30))
            * (1 + al * s + al**2 * s**2 / 3)
            * sympy.exp(-al * s)
            * sympy.cos(2 * sympy.pi * sympy.Float(m, 30) * s)
        )
    return sympy.lambdify(s, sympy.diff(expr, s, n), "numpy")


@pytest.mark.parametrize("kind", ["gm", "stm"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("grad", [False, True])
def test_kernel_values_are_the_docstring_mixtures(kind, dtype, grad):
    """``k(z)`` ``[*] -> [*]`` in the kernel's dtype equals the stated mixture (no existing
    test compared the values themselves with a formula: the derivative tests differentiate
    ``deriv(z, 0)``), on both paths (with and without autograd), for a batch of lags; and the
    ``gm`` rate is an inverse squared length scale, :math:`a = 1/(2\\ell^2)` for the envelope
    :math:`e^{-z^2/2\\ell^2}`."""
    log_w, mu, log_a = [-1.0, 0.3, -0.5], [0.0, 0.7, 2.3], [-0.3, 0.2, 0.5]
    k = SpectralMixture1d(
        3,
        kind=kind,
        mu=torch.tensor(mu),
        log_w=torch.tensor(log_w),
        log_a=torch.tensor(log_a),
        dtype=dtype,
    )
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=F64) * 1.3
    with torch.set_grad_enabled(grad):
        got = k(z.to(dtype))
    assert got.shape == (4, 5) and got.dtype == dtype
    # the reference in float64 from the parameters as stored (rounded to float32 there)
    p = [t.detach().double().numpy() for t in (k.log_w, k.mu, k.log_a)]
    want = _mixture_np(kind, z.to(dtype).double().numpy(), *p)
    tol = 1e-14 if dtype == F64 else 1e-6
    np.testing.assert_allclose(got.detach().double().numpy(), want, rtol=0, atol=tol)
    if kind == "gm":
        ell = 0.37
        one = SpectralMixture1d(
            1, kind="gm", mu=torch.zeros(1), log_w=0.0, log_a=math.log(1 / (2 * ell**2))
        )
        zz = torch.linspace(-1, 1, 9, dtype=F64)
        torch.testing.assert_close(one(zz).detach(), torch.exp(-(zz**2) / (2 * ell**2)))


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_operator_factors_for_every_stated_order(order):
    """The ``operator`` module docstring said :math:`C^{(o)}_j` is formed for orders "1 or 2";
    :class:`LinearPDEOperator` takes 0..4 and every one of them gives
    :math:`C^{(o)} = [k^{(o)}(x_a - x_b)]` *without* jitter and :math:`D = C^{(o)}C^{-1}` with
    the jittered :math:`C` (so order 0 gives :math:`K C^{-1}`, not the identity), on an uneven
    grid. Reference: :math:`k^{(o)}` of the formula by sympy, dense inverse in float64."""
    g = torch.Generator().manual_seed(order)
    x = torch.rand(7, generator=g, dtype=F64).sort().values * 1.5 + torch.arange(7) * 0.1
    log_w, mu, log_a = [-0.2, -1.1], [0.4, 1.3], [0.1, -0.4]
    k = SpectralMixture1d(
        2, kind="stm", mu=torch.tensor(mu), log_w=torch.tensor(log_w), log_a=torch.tensor(log_a)
    )
    jitter = 1e-3
    (fac,) = build_factors([k], [x], LinearPDEOperator((order,), (1.0,)), jitter=jitter)
    p = [t.detach().tolist() for t in (k.log_w, k.mu, k.log_a)]  # as stored (float64)
    z = (x[:, None] - x[None, :]).numpy()
    cop = torch.from_numpy(_stm_deriv_np(z, order, *p).copy())
    torch.testing.assert_close(fac.Cop.detach(), cop, rtol=1e-9, atol=1e-9 * float(cop.abs().max()))
    C = torch.from_numpy(_stm_deriv_np(z, 0, *p).copy()) + jitter * torch.eye(7, dtype=F64)
    torch.testing.assert_close(fac.C.detach(), C, rtol=1e-12, atol=1e-14)
    D = cop @ torch.linalg.inv(C)
    torch.testing.assert_close(fac.D.detach(), D, rtol=1e-8, atol=1e-8 * float(D.abs().max()))
    if order == 0:  # no jitter on C^(0): D = K C^-1 differs from I by O(jitter)
        assert float((fac.D.detach() - torch.eye(7, dtype=F64)).abs().max()) > 1e-6


def test_gauss_newton_hessian_product_is_four_kronecker_products(monkeypatch):
    """The ``gauss_newton`` module docstring (and docs/gp_pde.md item 7) said one
    :math:`H` product is "six Kronecker mode-product passes"; it is four Kronecker products
    (:math:`R`, :math:`R^{-1}`, :math:`R^{-\\top}`, :math:`R^\\top`), i.e. ``4 d`` mode
    products, counted here on a 2-D grid; the product itself is
    :math:`v + \\tau_2 G^\\top G v + \\gamma B^\\top B v` with the dense
    :math:`G = R^{-1}(\\mathcal A + \\mathrm{diag}(d))R`."""
    shape = (5, 4)
    axes = [torch.linspace(0, 1, n, dtype=F64) for n in shape]
    ks = [SpectralMixture1d(2, kind="stm", freq_scale=2.0) for _ in shape]
    op = LinearPDEOperator((2, 2), (1.0, 1.0), c0=-1.0, cubic=True)
    with torch.no_grad():
        fac = build_factors(ks, axes, op, jitter=1e-4, eigen=True)
    tau2, gamma = 3.0, 20.0
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma)
    g = torch.Generator().manual_seed(1)
    d = torch.rand(shape, generator=g, dtype=F64) * 2
    v = torch.randn(shape, generator=g, dtype=F64)
    counts = {"kron": 0, "mode": 0}
    real_kron, real_mode = gn_module.kron_apply, _kron.mode_apply

    def kron(*a, **kw):
        counts["kron"] += 1
        return real_kron(*a, **kw)

    def mode(*a, **kw):
        counts["mode"] += 1
        return real_mode(*a, **kw)

    monkeypatch.setattr(gn_module, "kron_apply", kron)
    monkeypatch.setattr(_kron, "mode_apply", mode)
    hv = gn.hessian_matvec(v, d)
    assert counts == {"kron": 4, "mode": 4 * len(shape)}
    m = math.prod(shape)
    R = kron_dense([fc.R for fc in fac])
    eye = torch.eye(m, dtype=F64)
    A = (
        -eye
        + torch.kron(fac[0].D, torch.eye(4, dtype=F64))
        + torch.kron(torch.eye(5, dtype=F64), fac[1].D)
    )
    G = torch.linalg.solve(R, (A + torch.diag(d.reshape(-1))) @ R)
    SR = face_values(eye.reshape(m, *shape), shape).mT @ R
    H = eye + tau2 * G.mT @ G + gamma * SR.mT @ SR
    torch.testing.assert_close(hv.reshape(-1), H @ v.reshape(-1), rtol=1e-9, atol=1e-9)


def test_shift_neumann_clamps_the_index_it_does_not_mirror():
    """The ``stencil`` docstring called ``neumann`` "mirror of the edge value", which for
    :math:`|k| \\ge 2` reads as a reflection (``numpy.pad(mode="symmetric")``:
    :math:`v_{n-1} = u_{n-2}` for ``k = 2``); the code repeats the edge value (the index
    clamped, ``mode="edge"``), as the corrected docstring states. ``periodic`` is
    :math:`u_{(i+k) \\bmod n}` and ``zero`` pads zeros; on a middle axis with batch dims."""
    u = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    un = u.numpy()
    n = 6
    for k in (-7, -3, -2, -1, 1, 2, 3, 7):
        idx = np.arange(n) + k
        torch.testing.assert_close(
            shift(u, 1, k, "neumann"), torch.from_numpy(np.take(un, np.clip(idx, 0, n - 1), 1))
        )
        torch.testing.assert_close(
            shift(u, 1, k, "periodic"), torch.from_numpy(np.take(un, idx % n, 1))
        )
        inside = (idx >= 0) & (idx < n)
        want = np.take(un, np.clip(idx, 0, n - 1), 1) * inside[None, :, None]
        torch.testing.assert_close(shift(u, 1, k, "zero"), torch.from_numpy(want))
    pad = np.pad(un, ((0, 0), (0, 2), (0, 0)), mode="symmetric")[:, 2:]
    assert not np.allclose(shift(u, 1, 2, "neumann").numpy(), pad)  # not a reflection


@pytest.mark.parametrize(
    "kw",
    [
        dict(problem="poisson1d-low", n_col=10, weighting="identity"),  # dense solve
        dict(problem="poisson2d-low", n_col=5),  # Kronecker solve, real eigenbasis
        dict(problem="advection-low", n_col=5),  # complex eigenbasis
    ],
)
def test_pathwise_draws_have_the_docstring_joint_covariance(kw):
    """The ``posterior`` module docstring: :math:`u(X_*) = WU + \\varepsilon_*` with
    :math:`U \\sim \\mathcal N(U^\\star, \\Sigma_U)` and :math:`\\varepsilon_* \\sim \\mathcal
    N(0, K_{**} - WCW^\\top)`, drawn pathwise as :math:`W(U_s - f_X) + f_*`. The draws' map
    applied to unit noise is a square root of the *joint* covariance
    :math:`W\\Sigma_UW^\\top + K_{**} - K_{*X}C^{-1}K_{X*}` (off-diagonal entries included;
    existing tests compared only the marginal variances, or Monte Carlo draws), with
    :math:`\\Sigma_U` the dense inverse of
    :math:`C^{-1} + \\gamma S^\\top S + \\tau_2 \\mathcal A^\\top W_r^{-1}\\mathcal A`."""
    kw = dict(kw)
    m = GPPDESolver(kw.pop("problem"), num_mixtures=2, seed=0, **kw)
    ta = [torch.linspace(0.1, 0.9, 3 + j, dtype=F64) for j in range(len(m.shape))]
    post = m.posterior(ta)
    root, dim = post._custom_root, post._custom_root_dim
    T = root(torch.eye(dim, dtype=F64))
    assert T.shape == (dim, math.prod(3 + j for j in range(len(m.shape))))
    full = dense_posterior(m, ta)["full"]
    got = T.mT @ T
    torch.testing.assert_close(got, full, rtol=0, atol=1e-6 * float(full.abs().max()))
    torch.testing.assert_close(
        post.variance.reshape(-1), got.diagonal(), rtol=0, atol=1e-9 * float(full.abs().max())
    )


def test_calibration_infer_is_the_stated_conditional():
    """``PoissonFamily.infer`` (``_calibration``): the docstring said ":math:`\\tau^2 I` added
    to the source block only"; the code also puts a 1e-10 jitter on the boundary block and
    1e-12 on the posterior covariance, as the corrected docstring states (both below this
    comparison's tolerance: the test pins the conditional itself, which no test compared with
    an independent formula). Reference: the
    Gaussian conditional with those nuggets, the joint covariances of the module docstring
    (:math:`k`, :math:`-k''`, :math:`k^{(4)}` of :math:`f = -u''`) from the kernel formula by
    sympy (not from ``deriv``)."""
    from bayesphys.gp_pde._calibration import PoissonFamily

    fam = PoissonFamily(n_col=5, n_probe=4, tau_rel=0.2)
    _, data = fam.simulate(1, seed=3)
    post = fam.infer(data[0])
    k = fam.kernel
    p = [t.detach().double().tolist() for t in (k.log_w, k.mu, k.log_a)]

    def cov(xa, xb, da, db):  # cov(d^da u(xa), d^db u(xb)) = (-1)^db k^(da + db)(xa - xb)
        z = (xa[:, None] - xb[None, :]).numpy()
        return torch.from_numpy((-1.0) ** db * _stm_deriv_np(z, da + db, *p))

    xc, xb, xp = fam.xc, fam.xb, fam.xp
    kff = cov(xc, xc, 2, 2)  # cov(-u'', -u''): the two minus signs cancel
    kfb, kfp = -cov(xc, xb, 2, 0), -cov(xc, xp, 2, 0)
    kbb, kbp, kpp = cov(xb, xb, 0, 0), cov(xb, xp, 0, 0), cov(xp, xp, 0, 0)
    nc = len(xc)
    kyy = np.block(
        [
            [kff.numpy() + fam.infer_tau**2 * np.eye(nc), kfb.numpy()],
            [kfb.numpy().T, kbb.numpy() + 1e-10 * np.eye(2)],
        ]
    )
    kyp = np.concatenate([kfp.numpy(), kbp.numpy()], 0)
    y = np.concatenate([data[0]["f"].numpy(), data[0]["g"].numpy()])
    mean = kyp.T @ np.linalg.solve(kyy, y)
    covp = kpp.numpy() - kyp.T @ np.linalg.solve(kyy, kyp)
    covp = 0.5 * (covp + covp.T) + 1e-12 * np.eye(len(xp))
    assert post.mean.shape == (len(xp),)
    np.testing.assert_allclose(post.mean.numpy(), mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        post.covariance.to_dense().numpy(), covp, rtol=1e-6, atol=1e-9 * np.abs(covp).max()
    )
