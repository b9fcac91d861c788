"""Mismatched or empty inputs to RandomGridNP raise errors that name the argument."""

import pytest
import torch

from tests.tiny_models import tiny_rgnp as tiny

# tiny untrained models and parameters outside the prior box drive these argument checks: the
# package's warnings about them are expected here, not asserted (tests elsewhere assert them)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*outside the prior box:UserWarning"),
]


def test_mismatched_and_empty_inputs_raise_clear_errors():
    m = tiny()
    x = torch.linspace(-0.9, 0.9, 10)
    with pytest.raises(ValueError, match="batch sizes"):  # was torch's expand() RuntimeError
        m.parameter_posterior(x, torch.zeros(3, 10), torch.ones(2, 1))
    with pytest.raises(ValueError, match="batch sizes"):
        m.parameter_posterior(x, torch.zeros(0, 10), torch.ones(1))
    with pytest.raises(ValueError, match=r"u: expected shape \[N\] or \[B, N\]"):
        m.parameter_posterior(x, torch.zeros(2, 10, 1), torch.ones(1))
    with pytest.raises(ValueError, match="z: expected shape"):  # was a reshape RuntimeError
        m.posterior(x, z=torch.zeros(0, 5), w=torch.zeros(0, 1))
    data = {"x_obs": x, "y": torch.zeros(0, 10), "z": torch.zeros(0, 5), "w": torch.ones(0, 1)}
    with pytest.raises(ValueError, match="data"):  # was randint's "from >= to" RuntimeError
        m.fit(data, steps=1, progress=False)
    data = {"x_obs": x, "y": torch.zeros(2, 10), "z": torch.zeros(2, 5), "w": torch.ones(2, 1)}
    with pytest.raises(ValueError, match="sigma_y"):  # was a silent "diverged at step 0"
        m.fit(dict(data, sigma_y=float("inf")), steps=1, progress=False)


def test_batch_parameter_errors_name_the_shape_as_given():
    """A 1-D z of the wrong length was reported as reshaped, e.g. (1, 4) for a (4,) input."""
    m = tiny()
    dz = m.problem.dim_z
    with pytest.raises(
        ValueError, match=rf"^z: expected shape \[{dz}\] or \[B, {dz}\], received \({dz + 1},\)$"
    ):
        m.posterior(
            torch.linspace(-0.9, 0.9, 5), z=torch.ones(dz + 1), w=torch.ones(m.problem.dim_w)
        )


def test_inverse_point_errors_name_the_shape_as_given():
    """x [3, 4] of a 1-D problem (four coordinates per point) was reported as reshaped,
    '(1, 3, 4)', by the domain check."""
    m = tiny()
    with pytest.raises(
        ValueError,
        match=r"^x: expected shape \[N, 1\] or \[B, N, 1\], received \(3, 4\)$",
    ):
        m.parameter_posterior(torch.full((3, 4), 0.5), torch.zeros(3, 4), torch.ones(1))


@pytest.mark.filterwarnings("ignore:RandomGridNP.*has not been trained")
def test_overflowing_network_outputs_are_named_not_returned():
    """Finite but huge inputs overflow the float32 networks: ``posterior(z=1e30)`` raised
    torch's ``_LinAlgError`` from inside ``LowRankMultivariateNormal`` (naming no argument),
    and ``parameter_posterior`` of ``|u| ~ 1e30`` returned a posterior whose variances were
    infinite or NaN without a word; both are a ValueError naming the inputs now."""
    m = tiny()
    x = torch.linspace(-0.9, 0.9, 10)
    z, w = torch.zeros(5), torch.ones(1)
    for kw in (dict(z=torch.full((5,), 1e30), w=w), dict(z=z, w=torch.full((1,), 1e30))):
        with pytest.raises(ValueError, match=r"^z/w: the forward network's mean or variances"):
            m.posterior(x, **kw)
    with pytest.raises(ValueError, match=r"prior box is z in \[-1, 1\], w in \[1, 2\]"):
        m.posterior(x, z=torch.full((5,), 1e30), w=w)
    with pytest.raises(ValueError, match=r"^u/w: the inverse \(GICNet\) network's mean or var"):
        m.parameter_posterior(x, torch.full((10,), 1e30), w)
    with pytest.raises(ValueError, match=r"\(u - B\)/D\| up to inf"):  # D ~ 1e-6 at x ~ 1
        m.parameter_posterior(torch.tensor([0.0, 0.999999]), torch.tensor([0.0, 1e33]), w)
    # inputs of the order trained on are untouched: finite posteriors, as before
    post = m.posterior(x, z=z, w=w)
    assert torch.isfinite(post.variance).all() and post.mean.shape == (1, 10)
    par = m.parameter_posterior(x, post.mean[0], w)
    assert torch.isfinite(par.variance).all() and par.mean.shape == (1, 5)
    # a float64 model forms the Gaussian where float32 overflowed (the hint says so), and
    # its own refusal suggests no float64 model
    big = torch.full((5,), 1e8)
    with pytest.raises(ValueError, match=r"float32 for these inputs .* or use a float64 model$"):
        m.posterior(x, z=big, w=w)
    m64 = tiny(dtype=torch.float64)
    assert torch.isfinite(m64.posterior(x, z=big, w=w).variance).all()
    with pytest.raises(ValueError, match=r"float64 for these inputs .* was trained on$"):
        m64.posterior(x, z=torch.full((5,), 1e30), w=w)


@pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning")
@pytest.mark.parametrize(
    ("problem", "points", "first"),
    [
        ("poisson", [[0.5], [0.9999999], [-1.0]], r"\[0\.99999\d*\]"),
        ("burgers", [[0.5, 0.5], [0.001, 0.0003]], r"\[0\.001\d*, 0\.0003\d*\]"),
    ],
    ids=["poisson-end", "burgers-near-wall"],
)
def test_inverse_points_next_to_the_boundary_are_named_with_their_d(problem, points, first):
    # the message said "points on the Dirichlet boundary (D(x) = 0)" and named none: wrong for
    # (x, t) = (0.001, 0.0003), off every boundary, where D = t sin(pi x) ~ 9.4e-7 < 1e-6
    m = tiny(problem)
    x = torch.tensor(points)
    n_bad = len(points) - 1
    with pytest.raises(
        ValueError,
        match=rf"^x: {n_bad} of the {len(points)} points lie on or next to the Dirichlet "
        rf"boundary, where \|D\(x\)\| < 1e-06 .* e\.g\. {first} with D = ",
    ):
        m.parameter_posterior(x, torch.zeros(len(points)), torch.ones(1))
    # a batch of sets names the set holding the first such point
    xb = torch.stack([x[:1].expand(len(points), -1), x])
    with pytest.raises(ValueError, match=rf"^x: {n_bad} of the {len(points)} points of set 1 "):
        m.parameter_posterior(xb, torch.zeros(2, len(points)), torch.ones(1))
    q = m.parameter_posterior(x[:1], torch.zeros(1), torch.ones(1))  # the interior point alone
    assert q.mean.shape == (1, m.problem.dim_z)
