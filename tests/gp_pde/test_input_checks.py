"""Bad inputs to the GP PDE solvers fail early, with an error naming the argument.

Before these checks: a negative ``tau2``/``gamma`` of ``DenseSolve`` failed with ``math domain
error``, a NaN or infinite one gave a NaN field silently, a tensor of shape ``(2,)`` failed with
``only one element tensors can be converted``; ``PicardKronSolve`` solved with a negative
``tau2``; wrong-shaped ``f``/``g``/``u0`` failed inside torch (``size mismatch``, ``shape '[8]' is
invalid``), NaN ``u0`` was silently replaced by the default start; ``linearise`` of a list failed
with ``'list' object has no attribute 'shape'``, of a float32 field (Gauss-Newton) with ``both
inputs should have same dtype``; posterior pieces before a solve with ``'NoneType' object has no
attribute``. On the model, a source callable of the wrong arity failed with ``<lambda>() takes 1
positional argument but 2 were given``, one returning ``None`` with ``Could not infer dtype of
NoneType``, a complex one lost its imaginary part; ``x``/``equation`` given with a problem and
``n_col`` without one were silently ignored; ``weighting="prio"`` and ``zero_component="no"`` were
accepted; unknown ``solver_options`` keys failed at the first solve (or never), and
``precond="ilu"`` made every fit step NaN.
"""

import math
from dataclasses import replace

import pytest
import torch

from bayesphys.gp_pde import (
    DenseSolve,
    GaussNewtonKronSolve,
    GPPDESolver,
    KronSolve,
    PicardKronSolve,
)
from bayesphys.gp_pde.operator import build_factors

from .test_solve import _setup

F64 = torch.float64
NAN = float("nan")

# (bad value, exception, message) for a penalty scalar that must be finite and >= 0
BAD_PENALTIES = [
    (-1.0, ValueError, r"expected a number >= 0\.0, received -1\.0"),
    (NAN, ValueError, "expected a finite number, received nan"),
    (math.inf, ValueError, "expected a finite number, received inf"),
    (
        torch.tensor([1.0, 2.0]),
        ValueError,
        r"expected a scalar .* received a tensor of shape \(2,\)",
    ),
    ("1", TypeError, "expected a real number, received str"),
    (True, TypeError, "expected a real number, received bool"),
]


def _linear(shape=(8,)):
    _, _, op, fac, f, gb = _setup(shape, seed=0)
    return op, fac, f, gb


def _cubic(shape=(7, 6)):
    ks, axes, op, _, f, gb = _setup(shape, seed=3, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    return op, fac, 0.3 * f, 0.3 * gb


@pytest.mark.parametrize("name", ["tau2", "gamma"])
@pytest.mark.parametrize("bad,err,msg", BAD_PENALTIES)
def test_dense_solve_refuses_bad_penalties(name, bad, err, msg):
    op, fac, f, gb = _linear()
    ds = DenseSolve(fac, op, "prior")
    kw = dict(tau2=2.0, gamma=30.0)
    kw[name] = bad
    with pytest.raises(err, match=f"{name}: {msg}"):
        ds.solve(f, gb, kw["tau2"], kw["gamma"])
    with pytest.raises(err, match=f"{name}: {msg}"):
        ds.linearise(f, kw["tau2"], kw["gamma"])


def test_dense_solve_valid_penalties_unchanged():
    """Zeros drop a term (the identity block keeps the system regular); 0-d tensors are numbers."""
    op, fac, f, gb = _linear()
    ds = DenseSolve(fac, op, "prior")
    u = ds.solve(f, gb, 2.0, 30.0)
    torch.testing.assert_close(
        ds.solve(f, gb, torch.tensor(2.0, dtype=F64), torch.tensor(30.0)), u, rtol=0, atol=0
    )
    for tau2, gamma in ((0.0, 30.0), (2.0, 0.0), (0.0, 0.0)):
        ud = ds.solve(f, gb, tau2, gamma)
        uk = KronSolve(fac, op, tau2, gamma).solve(f, gb)
        assert bool(torch.isfinite(ud).all())
        torch.testing.assert_close(uk, ud, rtol=1e-9, atol=1e-12)
    assert not bool(ds.solve(f, gb, 0.0, 0.0).any())  # no data: the prior mean


@pytest.mark.parametrize("name", ["tau2", "gamma"])
@pytest.mark.parametrize("bad,err,msg", BAD_PENALTIES[:4])
def test_structured_solvers_refuse_bad_penalties(name, bad, err, msg):
    op, fac, _, _ = _linear((6, 5))
    cop, cfac, _, _ = _cubic()
    kw = dict(tau2=2.0, gamma=30.0)
    kw[name] = bad
    with pytest.raises(err, match=f"{name}: {msg}"):
        KronSolve(fac, op, kw["tau2"], kw["gamma"])
    with pytest.raises(err, match=f"{name}: {msg}"):
        PicardKronSolve(cfac, cop, kw["tau2"], kw["gamma"])


def test_gauss_newton_penalties_are_positive_scalars():
    op, fac, _, _ = _cubic()
    with pytest.raises(ValueError, match=r"tau2: expected a scalar .* shape \(2,\)"):
        GaussNewtonKronSolve(fac, op, torch.tensor([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match=r"gamma: expected a number > 0\.0, received 0\.0"):
        GaussNewtonKronSolve(fac, op, 1.0, 0.0)
    with pytest.raises(TypeError, match="tau2: expected a real number, received str"):
        GaussNewtonKronSolve(fac, op, "1", 1.0)


def test_penalties_are_annotated_and_taken_as_numbers_or_0d_tensors():
    """The solvers' annotations said float, yet every one reads tau2 and gamma through
    check_scalar, which takes a 0-d tensor (a model's learned penalty) as its number."""
    import typing

    for fn in (
        GaussNewtonKronSolve.__init__,
        PicardKronSolve.__init__,
        KronSolve.__init__,
        DenseSolve.solve,
        DenseSolve.linearise,
    ):
        hints = typing.get_type_hints(fn)
        for name in ("tau2", "gamma"):
            assert hints[name] == torch.Tensor | float, (fn.__qualname__, name, hints[name])
    op, fac, f, gb = _cubic()
    t2, gm = torch.tensor(2.0, dtype=F64), torch.tensor(30.0, dtype=F64)
    for cls in (PicardKronSolve, GaussNewtonKronSolve):
        want = cls(fac, op, 2.0, 30.0).solve(f, gb)
        torch.testing.assert_close(cls(fac, op, t2, gm).solve(f, gb), want, rtol=0, atol=0)


def test_dense_solve_checks_weighting_and_grid_tensors():
    op, fac, f, gb = _linear((5, 4))
    with pytest.raises(
        ValueError, match="weighting: expected 'identity' or 'prior', received 'prio'"
    ):
        DenseSolve(fac, op, "prio")
    ds = DenseSolve(fac, op, "prior")
    with pytest.raises(ValueError, match=r"f: expected a finite grid tensor of shape \(5, 4\)"):
        ds.solve(f.mT, gb, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"g: .* shape \(18,\), received shape \(17,\)"):
        ds.solve(f, gb[:-1], 1.0, 1.0)
    with pytest.raises(ValueError, match="f: expected finite values, received 1 NaN"):
        ds.solve(
            f.index_put((torch.tensor(0), torch.tensor(0)), torch.tensor(NAN, dtype=F64)),
            gb,
            1.0,
            1.0,
        )
    with pytest.raises(ValueError, match=r"u0: .* received shape \(3, 4\)"):
        ds.solve(f, gb, 1.0, 1.0, u0=f[:3])
    # a flat f [M] is still accepted, with the same result
    torch.testing.assert_close(ds.solve(f.reshape(-1), gb, 1.0, 2.0), ds.solve(f, gb, 1.0, 2.0))


def test_linearise_checks_its_field():
    op, fac, f, gb = _linear()
    cop, cfac, cf, cgb = _cubic()
    ds = DenseSolve(fac, op, "prior")
    ps = PicardKronSolve(cfac, cop, 2.0, 30.0)
    gn = GaussNewtonKronSolve(cfac, cop, 2.0, 30.0)
    for lin in (lambda u: ds.linearise(u, 1.0, 1.0), ps.linearise, gn.linearise):
        with pytest.raises(TypeError, match=r"u: expected a grid tensor of shape .* received list"):
            lin([[0.0] * 6] * 7)
        with pytest.raises(ValueError, match=r"u: expected a finite grid tensor of shape"):
            lin(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="u: expected finite values"):
        ps.linearise(torch.full((7, 6), NAN, dtype=F64))
    with pytest.raises(TypeError, match="u: expected dtype torch.float64"):
        gn.linearise(cf.float())
    with pytest.raises(ValueError, match=r"w: .* received shape \(3, 6\)"):
        gn.linearise(cf, cf[:3])


def test_posterior_pieces_need_a_solve_first():
    op, fac, f, gb = _linear()
    cop, cfac, cf, cgb = _cubic()
    ds = DenseSolve(fac, op, "prior")
    with pytest.raises(ValueError, match="cov_u: call solve"):
        ds.cov_u()
    with pytest.raises(ValueError, match="sample_u: call solve"):
        ds.sample_u(torch.zeros(2, 8, dtype=F64))
    ps = PicardKronSolve(cfac, cop, 2.0, 30.0)
    with pytest.raises(ValueError, match="root_dim: call solve"):
        _ = ps.root_dim
    with pytest.raises(ValueError, match="sample_u: call solve"):
        ps.sample_u(torch.zeros(2, 10, dtype=F64))
    with pytest.raises(ValueError, match="test_variance: call solve"):
        GaussNewtonKronSolve(cfac, cop, 2.0, 30.0).test_variance([torch.eye(7, dtype=F64)] * 2)
    ps.linearise(cf)  # then they work
    assert ps.sample_u(torch.zeros(2, ps.root_dim, dtype=F64)).shape == (2, 7, 6)


def test_picard_solve_checks_its_data():
    op, fac, f, gb = _cubic()
    ps = PicardKronSolve(fac, op, 2.0, 30.0)
    with pytest.raises(ValueError, match=r"f: expected a finite grid tensor of shape \(7, 6\)"):
        ps.solve(f[:3], gb)
    with pytest.raises(ValueError, match=r"g: expected a finite boundary-value tensor of shape"):
        ps.solve(f, gb[:3])
    with pytest.raises(ValueError, match="f: expected finite values"):
        ps.solve(f * NAN, gb)
    with pytest.raises(ValueError, match="u0: expected finite values"):
        ps.solve(f, gb, u0=f * NAN)
    with pytest.raises(TypeError, match=r"u0: expected dtype torch.float64"):
        GaussNewtonKronSolve(fac, op, 2.0, 30.0).solve(f, gb, u0=f.float())


def _grid2():
    return [torch.linspace(0, 1, 8, dtype=F64), torch.linspace(0, 2, 6, dtype=F64)]


def _src(a, b):
    return torch.sin(a) * b


@pytest.mark.parametrize(
    "name,value,err,msg",
    [
        ("source", lambda a: a, TypeError, r"source: expected a callable source\(x1, x2\)"),
        (
            "boundary",
            lambda a, b, c: a,
            TypeError,
            r"boundary: expected a callable boundary\(x1, x2\)",
        ),
        (
            "source",
            lambda a, b: None,
            TypeError,
            r"source: expected real values .* returned NoneType",
        ),
        ("source", lambda a, b: a + 1j * b, TypeError, r"source: expected real values .* complex"),
        ("boundary", "zero", TypeError, r"boundary: expected real values .* received str"),
    ],
)
def test_source_and_boundary_are_checked(name, value, err, msg):
    kw = dict(x=_grid2(), source=_src, boundary=torch.zeros(8, 6), num_mixtures=2)
    kw[name] = value
    with pytest.raises(err, match=msg):
        GPPDESolver(**kw)


def test_source_callables_with_defaults_or_varargs_still_work():
    kw = dict(x=_grid2(), boundary=torch.zeros(8, 6), num_mixtures=2)
    ref = GPPDESolver(source=_src, **kw).f
    torch.testing.assert_close(GPPDESolver(source=lambda *c: _src(*c), **kw).f, ref)
    torch.testing.assert_close(GPPDESolver(source=lambda a, b, s=1.0: s * _src(a, b), **kw).f, ref)


@pytest.mark.parametrize(
    "args,kw,err,msg",
    [
        (("poisson1d-low",), dict(x=[torch.linspace(0, 1, 5)]), ValueError, "x: the grid comes"),
        (("poisson1d-low",), dict(equation="allencahn"), ValueError, "equation: problem"),
        (("advection-low",), dict(beta=3.0), ValueError, r"beta: problem .* has beta 2\.0"),
        ((3,), {}, TypeError, "problem: expected a PDEProblem"),
        (("poisson1d-low",), dict(weighting="prio"), ValueError, "weighting: expected None"),
        (("poisson1d-low",), dict(zero_component="no"), TypeError, "zero_component: expected"),
        (
            ("poisson1d-low",),
            dict(solver_options=dict(maxiter=5)),
            ValueError,
            "solver_options: unknown",
        ),
        (
            ("allencahn2d-low",),
            dict(nonlinear_solver="gauss-newton", solver_options=dict(precond="ilu")),
            ValueError,
            "precond: expected 'diag' or 'shift'",
        ),
    ],
)
def test_model_refuses_conflicting_or_unknown_settings(args, kw, err, msg):
    with pytest.raises(err, match=msg):
        GPPDESolver(*args, num_mixtures=2, **kw)


def test_model_settings_that_agree_are_accepted():
    x = torch.linspace(0, 1, 9, dtype=F64)
    with pytest.raises(ValueError, match="n_col: only used with a problem"):
        GPPDESolver(x=[x], source=torch.sin(x), boundary=torch.zeros(9), n_col=12)
    m = GPPDESolver("advection-low", beta=2.0, equation="advection", n_col=8, num_mixtures=2)
    assert m.config["beta"] == 2.0
    with pytest.warns(UserWarning, match=r"^beta: only equation='advection' reads it"):
        unused = GPPDESolver("poisson1d-low", beta=5.0, num_mixtures=2)  # beta: not read
    assert unused.config["beta"] == 0.0
    m = GPPDESolver(
        "allencahn2d-low",
        n_col=8,
        num_mixtures=2,
        nonlinear_solver="gauss-newton",
        solver_options=dict(precond="shift", max_iter=2),
    )
    assert m.config["solver_options"] == dict(precond="shift", max_iter=2)
    # a bare 1-D axis is a 1-D grid (as for predict/posterior), checked as an axis
    a = GPPDESolver(x=x, source=torch.sin(x), boundary=torch.zeros(9), num_mixtures=2, seed=0)
    b = GPPDESolver(x=[x], source=torch.sin(x), boundary=torch.zeros(9), num_mixtures=2, seed=0)
    assert a.shape == b.shape == (9,)
    torch.testing.assert_close(a.axes[0], b.axes[0])
    with pytest.raises(ValueError, match=r"x\[0\]: expected strictly increasing"):
        GPPDESolver(x=x.flip(0), source=torch.sin(x), boundary=torch.zeros(9), num_mixtures=2)


def test_warm_start_from_checks_other():
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2)
    with pytest.raises(TypeError, match="other: expected a GPPDESolver, received str"):
        m.warm_start_from("coarse")
    with pytest.raises(ValueError, match="other: expected a solver with num_mixtures=2"):
        m.warm_start_from(GPPDESolver("poisson1d-low", n_col=12, num_mixtures=3))
    # same parameter names, another kernel form: its log_a / mu mean other length scales
    other = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, kind="gm")
    with pytest.raises(ValueError, match="other: expected a solver with kind='gm'"):
        other.warm_start_from(m)


def test_grid_axes_must_be_one_dimensional():
    """A [3, 4] axis was flattened into a 12-point 1-D grid, silently."""
    x = torch.linspace(0, 1, 12, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"x\[0\]: expected a 1-D grid axis, received shape \(3, 4\)"
    ):
        GPPDESolver(
            x=[x.reshape(3, 4)], source=torch.sin(x), boundary=torch.zeros(2), num_mixtures=2
        )


def test_a_solver_keeps_no_view_of_the_callers_grid_source_or_boundary():
    """Solvers built in a loop from one reused buffer: each kept a view of the caller's
    tensors (axes, source) and arrays, so refilling the buffer for the next solver rewrote the
    source (and grid) of the earlier ones."""
    import numpy as np

    x = torch.linspace(0.0, 1.0, 10, dtype=torch.float64)
    src = -torch.ones(10, dtype=torch.float64)
    bnd = np.zeros(10)
    captured = torch.full((10,), 2.0, dtype=torch.float64)
    a = GPPDESolver(x=x, source=src, boundary=bnd, num_mixtures=2, seed=0)
    b = GPPDESolver(x=[x.numpy()], source=lambda x1: captured, boundary=bnd, num_mixtures=2)
    axis, f, g = a.axes[0].clone(), a.f.clone(), a.g.clone()
    src.mul_(3.0)  # the caller's next problem
    x.mul_(2.0)
    bnd[:] = 5.0
    captured.zero_()
    assert torch.equal(a.f, f) and torch.equal(a.axes[0], axis) and torch.equal(a.g, g)
    assert torch.equal(b.axes[0], axis)
    assert torch.equal(b.f, torch.full((10,), 2.0, dtype=torch.float64))


def test_a_custom_problem_is_checked_whole_and_its_equation_by_name():
    x = torch.linspace(0, 1, 9, dtype=F64)
    kw = dict(x=[x], source=torch.sin(x), boundary=torch.zeros(9), num_mixtures=2)
    for missing in ("source", "boundary"):
        part = {k: v for k, v in kw.items() if k != missing}
        with pytest.raises(
            ValueError, match=r"^problem: give a problem, or all of x, source and boundary$"
        ):
            GPPDESolver(**part)
    with pytest.raises(
        ValueError,
        match=r"^equation: expected 'poisson', 'allencahn' or 'advection', received 'heat'$",
    ):
        GPPDESolver(equation="heat", **kw)
    with pytest.raises(
        ValueError, match=r"^equation: advection needs a 2-D grid \(x, t\), received dim 1$"
    ):
        GPPDESolver(equation="advection", **kw)
    with pytest.raises(
        TypeError, match=r"^solver_options: expected a dict or None, received list$"
    ):
        GPPDESolver("poisson1d-low", num_mixtures=2, solver_options=[("max_iter", 5)])


def test_a_source_without_an_introspectable_signature_is_called_as_it_is():
    """``source=torch.sin`` (a builtin: Python cannot read its signature) on a 1-D grid is
    evaluated at the coordinates, as a lambda of one argument would be."""
    x = torch.linspace(0, 1, 9, dtype=F64)
    kw = dict(x=[x], boundary=torch.zeros(9), num_mixtures=2, seed=0)
    m = GPPDESolver(source=torch.sin, **kw)
    torch.testing.assert_close(m.f, torch.sin(x), rtol=0, atol=0)
    torch.testing.assert_close(m.f, GPPDESolver(source=lambda t: torch.sin(t), **kw).f)


def test_complex_or_meta_grids_sources_and_test_axes_are_refused_by_name():
    """Complex coordinates ``x`` lost their imaginary part with only torch's warning (a solver
    on the real parts, silently); a ``meta`` source or test axis failed with torch's
    ``NotImplementedError: Cannot copy out of meta tensor``, naming no argument."""
    x = torch.linspace(0, 1, 8, dtype=F64)
    kw = dict(source=torch.sin(x), boundary=torch.zeros(8), num_mixtures=2)
    for bad in (x.to(torch.complex128), x.numpy().astype(complex), [x.to(torch.complex128)]):
        with pytest.raises(TypeError, match=r"x(\[0\])?: expected real coordinates .* complex"):
            GPPDESolver(x=bad, **kw)
    with pytest.raises(ValueError, match=r"x: expected real coordinates .* 'meta' device"):
        GPPDESolver(x=x.to("meta"), **kw)
    with pytest.raises(ValueError, match=r"source: expected real values .* 'meta' device"):
        GPPDESolver(x=x, source=torch.zeros(8, device="meta"), boundary=torch.zeros(8))
    with pytest.raises(ValueError, match=r"boundary: expected real values .* 'meta' device"):
        GPPDESolver(x=x, source=torch.sin(x), boundary=lambda a: a.to("meta"))
    m = GPPDESolver(x=x, **kw)
    with pytest.raises(ValueError, match=r"x\[0\]: expected real test coordinates .* 'meta'"):
        m.posterior(torch.zeros(3, device="meta"))
    with pytest.raises(TypeError, match=r"test_axes\[0\]: expected real test coordinates"):
        m.predict(torch.zeros(3, dtype=torch.complex64))
    # real inputs of any real dtype, numpy included, are still taken as before
    for ok in (x.float(), x.numpy(), x.tolist()):
        torch.testing.assert_close(GPPDESolver(x=ok, **kw).axes[0], x, rtol=1e-7, atol=0)


def test_solve_field_newton_must_be_a_bool():
    """``solve_field(newton="no")`` ran Newton-GMRES (a non-empty string is truthy)."""
    m = GPPDESolver("allencahn2d-low", n_col=8, num_mixtures=2)
    for bad in ("no", 1, None):
        with pytest.raises(TypeError, match=r"^newton: expected True or False"):
            m.solve_field(newton=bad)
    assert m.solve_field(newton=False)["solver"] == "PicardKronSolve"


def test_build_factors_annotation_admits_the_axes_it_takes():
    """``axes`` was annotated ``list[Tensor]``, though arrays and lists of numbers are taken
    (and checked) as well."""
    import typing

    import numpy as np

    from bayesphys._device import AxisLike
    from bayesphys.gp_pde import LinearPDEOperator, SpectralMixture1d

    hint = typing.get_type_hints(build_factors)["axes"]
    assert hint == list[AxisLike] | tuple[AxisLike, ...], hint
    assert set(typing.get_args(AxisLike)) >= {torch.Tensor, np.ndarray}
    op = LinearPDEOperator.for_equation("poisson", 1)
    x = torch.linspace(0, 1, 8, dtype=torch.float64)
    k = SpectralMixture1d(2)
    want = build_factors([k], [x], op)[0].C
    for axis in (x.tolist(), x.numpy()):
        torch.testing.assert_close(build_factors([k], (axis,), op)[0].C, want, rtol=0, atol=0)


def test_gram_of_an_axis_that_requires_grad_reads_its_spacing_without_a_warning():
    """The uniform-grid test read the spacing with float() of a tensor in the graph: torch
    warned "Converting a tensor with requires_grad=True to a scalar"."""
    import warnings

    from bayesphys.gp_pde import SpectralMixture1d

    k = SpectralMixture1d(2)
    x = torch.linspace(0, 1, 8, dtype=torch.float64).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C = k.gram(x)
    torch.testing.assert_close(C, k.gram(x.detach()), rtol=0, atol=0)
    assert C.requires_grad  # the Gram stays differentiable in the axis
    (g,) = torch.autograd.grad(C.sum(), x)
    assert torch.isfinite(g).all()
