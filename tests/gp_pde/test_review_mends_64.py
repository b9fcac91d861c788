"""Review mends of the GP PDE solver found by using it through its public API.

Before: a ``source`` or ``boundary`` tensor that requires grad kept its graph in the model, so
each fit step's backward pass accumulated gradients into the caller's tensor (and
``copy.deepcopy`` of the model failed: a non-leaf tensor); an axis ``x`` that requires grad,
with a callable source, made the second fit step fail with torch's "Trying to backward
through the graph a second time" (and torch warned "Converting a tensor with
requires_grad=True to a scalar" at construction, and ``rel_l2`` on test axes that require
grad warned the same); points ``x`` of shape ``[M, 0]`` failed
with torch's "cannot reshape tensor of 0 elements", and so did ``posterior().sample(0)`` (an
empty draw, which the shared posterior allows) on every grid, and ``face_values`` of an empty
batch. A setting read at every use and assigned after construction to a value the constructor
refuses went unchecked until ``save``: ``config["lam_b"] = 0`` made ``fit`` report a
divergence ("final solve failed (tau: ...)") and ``posterior`` raise about ``tau``, and
``config["method"] = "rfe"`` fitted as ``"gp-hm"``. A huge ``num_mixtures`` failed with
torch's "can't allocate memory" (at construction for 1e12, at the first fit step for 1e6 on a
400-point axis) instead of an error naming it. A custom problem's grid and defaults went
unchecked: a reversed domain failed with "math domain error", an empty one with a
``ZeroDivisionError``, ``n_col=2``, a 4-D domain, ``llk_weight=0`` and ``n_test=0`` were
taken (a 2-point grid, a 4-D grid, a fit that diverged, an empty prediction).
"""

import copy
import math
import warnings
from dataclasses import replace

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from bayesphys.gp_pde._kron import face_values, scatter_faces
from bayesphys.problems.gp_pde import PDEProblem

F64 = torch.float64


@pytest.fixture
def torch_warns_always():
    """torch gives its "requires_grad=True to a scalar" warning once per process unless told
    otherwise: without this, whether a test sees it depends on the tests run before it."""
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(before)


def _src(x):
    return -(math.pi**2) * torch.sin(math.pi * x)


def _exact(x):
    return torch.sin(math.pi * x)


@pytest.mark.parametrize("which", ["source", "boundary"])
def test_data_tensors_that_require_grad_are_taken_as_data(which):
    x = torch.linspace(0, 1, 8, dtype=F64)
    data = {"source": _src(x), "boundary": _exact(x)}
    given = data[which].clone().requires_grad_(True)
    data[which] = given
    m = GPPDESolver(x=x, num_mixtures=2, **data)
    ref = GPPDESolver(x=x, num_mixtures=2, source=_src(x), boundary=_exact(x))
    m.fit(steps=2, progress=False)
    ref.fit(steps=2, progress=False)
    assert given.grad is None  # the fit left the caller's tensor alone
    assert not m.f.requires_grad and not m.g.requires_grad
    torch.testing.assert_close(m.predict(), ref.predict(), rtol=0, atol=0)
    twin = copy.deepcopy(m)
    torch.testing.assert_close(twin.predict(), m.predict(), rtol=0, atol=0)


@pytest.mark.parametrize("as_points", [False, True])
def test_an_axis_that_requires_grad_fits_as_a_plain_one(as_points, torch_warns_always):
    x = torch.linspace(0, 1, 8, dtype=F64)
    xg = x.clone().requires_grad_(True)
    given = xg[:, None] if as_points else xg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = GPPDESolver(x=given, source=_src, boundary=_exact, num_mixtures=2)
    ref = GPPDESolver(x=x, source=_src, boundary=_exact, num_mixtures=2)
    res = m.fit(steps=3, progress=False)
    ref.fit(steps=3, progress=False)
    assert res.steps == 3 and xg.grad is None
    assert not any(a.requires_grad for a in m.axes) and not m.f.requires_grad
    torch.testing.assert_close(m.predict(), ref.predict(), rtol=0, atol=0)


def test_points_without_coordinates_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^x: expected points \[M, d\] with d >= 1 .*\(5, 0\)"):
        GPPDESolver(x=torch.zeros(5, 0, dtype=F64), source=_src, boundary=_exact)


def test_rel_l2_on_test_axes_that_require_grad_does_not_warn(torch_warns_always):
    m = GPPDESolver("poisson1d-low", n_col=16, num_mixtures=2)
    m.fit(steps=2, progress=False)
    t = torch.linspace(0.1, 0.9, 5, dtype=F64)
    want = m.rel_l2(t)
    tg = t.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = m.rel_l2(tg)
    # predict says its mean is detached from such axes (and nothing else: no torch warning)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        mean = m.predict(tg)
    assert [str(w.message).split(":")[0] for w in rec] == ["GPPDESolver.predict"]
    assert got == want and not mean.requires_grad


@pytest.mark.parametrize(
    "problem, options",
    [
        ("poisson1d-low", {}),
        ("poisson2d-low", {}),
        ("advection-low", {}),
        ("allencahn2d-low", {}),
        ("allencahn2d-low", {"nonlinear_solver": "gauss-newton"}),
        ("poisson2d-low", {"method": "ref"}),
    ],
)
def test_posterior_draws_none_as_an_empty_tensor(problem, options):
    m = GPPDESolver(problem, n_col=6, num_mixtures=2, **options)
    axes = [torch.linspace(0.1, 0.9, 3, dtype=F64)] * m.dim
    post = m.posterior(axes)
    event = (3,) * m.dim
    for shape in [0, (0, 2), (2, 0)]:
        draws = post.sample(shape)
        lead = (shape,) if isinstance(shape, int) else shape
        assert draws.shape == (*lead, *event) and draws.dtype == F64
    assert post.sample(2, seed=0).shape == (2, *event)


@pytest.mark.parametrize("shape", [(4,), (4, 5), (3, 4, 2)])
def test_face_values_of_an_empty_batch(shape):
    u = torch.zeros(0, *shape, dtype=F64)
    e = face_values(u, shape)
    full = face_values(torch.zeros(1, *shape, dtype=F64), shape)
    assert e.shape == (0, full.shape[-1])
    assert scatter_faces(e, shape).shape == (0, *shape)


@pytest.mark.parametrize(
    "key, value",
    [
        ("lam_b", 0.0),
        ("lam_b", -5.0),
        ("method", "rfe"),
        ("nonlinear_solver", "newton"),
        ("solver_options", {"max_iters": 3}),
    ],
)
def test_a_setting_assigned_a_refused_value_is_named_at_every_use(key, value):
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2)
    m.config[key] = value
    for where, call in [
        ("fit", lambda: m.fit(steps=2, progress=False)),
        ("posterior", m.posterior),
        ("predict", m.predict),
        ("rel_l2", m.rel_l2),
        ("solve_field", m.solve_field),
    ]:
        with pytest.raises(ValueError, match=rf"^{where}: config {key}: .*constructor refuses it"):
            call()
    assert m.steps_done == 0  # refused before any step


def test_a_setting_assigned_a_valid_value_is_still_used():
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2)
    ref = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, lam_b=50.0)
    m.config["lam_b"] = 50.0
    torch.testing.assert_close(m.posterior().variance, ref.posterior().variance, rtol=0, atol=0)


def test_a_mixture_too_large_for_the_memory_is_refused_by_name(monkeypatch):
    import bayesphys._checks as checks

    monkeypatch.setattr(checks, "_host_memory", lambda: 2**30)  # a 1 GiB machine
    x = torch.linspace(0, 1, 400, dtype=F64)
    kw = dict(x=x, source=_src, boundary=_exact)
    with pytest.raises(MemoryError, match=r"^num_mixtures: the kernels' parameters .* 1\.0 GiB"):
        GPPDESolver(num_mixtures=10**8, **kw)  # 2.4 GiB of parameters alone
    m = GPPDESolver(num_mixtures=10**5, **kw)  # 2.4 MB of parameters: built
    with pytest.raises(MemoryError, match=r"^num_mixtures: a fit step's kernel evaluations"):
        m.fit(steps=1, progress=False)  # [799 lags, 1e5] arrays of 0.6 GB each
    assert m.steps_done == 0
    # an uneven axis evaluates n^2 lags, not 2n - 1
    xc = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, 400, dtype=F64))
    m = GPPDESolver(x=xc, source=_src, boundary=_exact, num_mixtures=100)
    with pytest.raises(MemoryError, match=r"\[160000\] lags per axis"):
        m.fit(steps=1, progress=False)
    with warnings.catch_warnings():  # the default size fits silently
        warnings.simplefilter("error")
        GPPDESolver(x=x, source=_src, boundary=_exact, num_mixtures=30).fit(steps=1, progress=False)


@pytest.mark.parametrize(
    "fields, error, match",
    [
        ({"domain": ((1.0, 0.0),)}, ValueError, r"^problem\.domain\[0\]: expected lo < hi"),
        (
            {"domain": ((0.0, 1.0), (1.0, 1.0))},
            ValueError,
            r"^problem\.domain\[1\]: expected lo < hi, received \(1\.0, 1\.0\)",
        ),
        ({"domain": ((0.0, math.inf),)}, ValueError, r"^problem\.domain\[0\]\[1\]: .*finite"),
        ({"domain": ((0.0, 1.0),) * 4}, ValueError, r"^problem: expected a 1-, 2- or 3-D domain"),
        ({"n_col": 2}, ValueError, r"^problem\.n_col: expected an int >= 4, received 2"),
        ({"llk_weight": 0.0}, ValueError, r"^problem\.llk_weight: expected a number > 0"),
        ({"freq_scale": -1.0}, ValueError, r"^problem\.freq_scale: expected a number >= 0"),
        ({"n_test": 0}, ValueError, r"^problem\.n_test: expected an int >= 1, received 0"),
    ],
)
def test_a_custom_problem_is_checked_as_the_arguments_are(fields, error, match):
    domain = fields.get("domain", ((0.0, 1.0),))
    p = PDEProblem(
        "mine",
        "poisson",
        domain,
        fields.get("n_col", 8),
        lambda *c: c[0] * c[-1],
        fields.get("freq_scale", 1.0),
        **{k: v for k, v in fields.items() if k in ("llk_weight", "n_test")},
    )
    with pytest.raises(error, match=match):
        GPPDESolver(p, num_mixtures=2)


def test_a_custom_problem_with_a_constant_exact_solution_fits():
    p = PDEProblem("flat", "poisson", ((0.0, 1.0), (0.0, 2.0)), 6, lambda x, y: 1 + x, 1.0)
    m = GPPDESolver(p, num_mixtures=2)
    assert torch.equal(m.f, torch.zeros(6, 6, dtype=F64))
    assert m.fit(steps=2, progress=False).steps == 2
    assert math.isfinite(m.rel_l2())
    # in 1-D (the identity metric) a line is solved closely
    line = PDEProblem("line", "poisson", ((0.0, 1.0),), 12, lambda x: 1 + 2 * x, 1.0)
    m = GPPDESolver(line, num_mixtures=2)
    m.fit(steps=20, progress=False)
    assert m.rel_l2() < 1e-2  # 1.4e-3
    # the solver's own n_col replaces a problem's too small one
    assert GPPDESolver(replace(p, n_col=2), n_col=5, num_mixtures=2).shape == (5, 5)
