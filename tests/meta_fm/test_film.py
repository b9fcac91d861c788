"""FiLM conditioning of the vector field (``MFMConfig.conditioning="film"``)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.meta_fm import MetaFlowMatching, MFMConfig
from bayesphys.meta_fm.field import VectorField, time_embedding
from bayesphys.problems.populations import linear_map
from tests.tiny_models import SMALL_MFM as SMALL

F64 = torch.float64


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("layers", [2, 4])
def test_untrained_film_field_equals_concat_field(residual, layers):
    kw = dict(width=16, layers=layers, time_dim=8, fourier=4, residual=residual)
    concat = VectorField(3, 5, conditioning="concat", **kw)
    film = VectorField(3, 5, conditioning="film", **kw)
    film.net.load_state_dict(concat.net.state_dict())
    film.fourier.B.copy_(concat.fourier.B)
    assert len(film.film) == 1 + max(layers - 2, 0)
    t, x, c = torch.rand(7), torch.randn(7, 3), torch.randn(7, 5)
    torch.testing.assert_close(film(t, x, c), concat(t, x, c), rtol=0, atol=0)


def test_film_forward_matches_the_equation():
    torch.manual_seed(0)
    f = VectorField(2, 3, width=8, layers=3, time_dim=4, fourier=0, conditioning="film")
    for head in f.film:
        torch.nn.init.normal_(head.weight)
        torch.nn.init.normal_(head.bias)
    t, x, c = torch.rand(5), torch.randn(5, 2), torch.randn(5, 3)
    lin0, lin1, out = (m for m in f.net if isinstance(m, torch.nn.Linear))
    h = lin0(torch.cat([time_embedding(t, 4), x, c], -1))
    g, b = f.film[0](c).chunk(2, -1)
    h = torch.selu(h * (1 + g) + b)
    g, b = f.film[1](c).chunk(2, -1)
    h = torch.selu(lin1(h) * (1 + g) + b)
    torch.testing.assert_close(f(t, x, c), out(h), rtol=1e-6, atol=1e-6)
    # and the modulation is active: the same body without it gives another field
    plain = VectorField(2, 3, width=8, layers=3, time_dim=4, fourier=0)
    plain.net.load_state_dict(f.net.state_dict())
    assert not torch.allclose(f(t, x, c), plain(t, x, c))


def test_film_without_condition_is_plain_mlp():
    f = VectorField(2, 0, width=8, layers=3, time_dim=4, fourier=0, conditioning="film")
    assert f.film is None
    assert f(torch.rand(4), torch.randn(4, 2)).shape == (4, 2)


def test_film_model_fits_and_round_trips(tmp_path):
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=48)
    m = MetaFlowMatching(d, seed=1, conditioning="film", **SMALL)
    fit = m.fit(steps=15, progress=False)
    assert fit.steps == 15
    heads = m.net["field"].film
    assert any(float(h.weight.detach().abs().max()) > 0 for h in heads)  # the heads were trained
    src = d.subset("test").source
    before = m.predict(src, seed=3)
    m2 = MetaFlowMatching.load(m.save(tmp_path / "film.pt"))
    assert m2.config.conditioning == "film"
    for a, b in zip(before, m2.predict(src, seed=3)):
        assert torch.equal(a, b)


def test_bad_conditioning_is_refused():
    with pytest.raises(ValueError, match="conditioning: expected 'concat' or 'film'"):
        MFMConfig(conditioning="gate")
    with pytest.raises(ValueError, match="conditioning: expected 'concat' or 'film'"):
        VectorField(2, 1, conditioning="gate")


def test_old_configs_default_to_concat():
    cfg = MFMConfig.from_dict(
        {k: v for k, v in MFMConfig().to_dict().items() if k != "conditioning"}
    )
    assert cfg.conditioning == "concat"


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=2),
    conditioning=st.sampled_from(["concat", "film"]),
    seed=st.integers(0, 10_000),
)
def test_a_condition_row_per_population_equals_the_per_point_condition(shape, conditioning, seed):
    """cond [G, 1, c] for x [G, n, d] gives the per-point field and gradients (to round-off;
    in float64, where the two summation orders agree to ~1e-12: in float32 the parameter
    gradients differed by up to 3e-5 for some draws)."""
    torch.manual_seed(seed)
    f = VectorField(2, 3, width=8, layers=3, time_dim=4, fourier=2, conditioning=conditioning)
    for head in f.film or []:
        torch.nn.init.normal_(head.weight)
        torch.nn.init.normal_(head.bias)
    f = f.double()
    g, n = shape[0], shape[-1] if len(shape) > 1 else 3
    t, x = torch.rand(g, n, dtype=F64), torch.randn(g, n, 2, dtype=F64)
    cg = torch.randn(g, 1, 3, dtype=F64, requires_grad=True)
    cp = cg.detach().expand(g, n, 3).reshape(g * n, 3).clone().requires_grad_(True)
    vg = f(t, x, cg)
    vp = f(t.reshape(-1), x.reshape(-1, 2), cp)
    assert vg.shape == (g, n, 2)
    torch.testing.assert_close(vg.reshape(-1, 2), vp, rtol=1e-10, atol=1e-12)
    wg = torch.autograd.grad(vg.square().sum(), [cg, *f.parameters()])
    wp = torch.autograd.grad(vp.square().sum(), [cp, *f.parameters()])
    # the row's gradient is the sum of its points' gradients
    torch.testing.assert_close(wg[0], wp[0].reshape(g, n, 3).sum(1, keepdim=True))
    for a, b in zip(wg[1:], wp[1:]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # one time for all points (an ODE step) equals that time given per point
    torch.testing.assert_close(
        f(torch.tensor(0.3, dtype=F64), x, cg), f(torch.full((g, n), 0.3, dtype=F64), x, cg)
    )


def test_condition_of_a_wrong_shape_is_refused():
    f = VectorField(2, 3, width=8, layers=3, time_dim=4, fourier=0, conditioning="film")
    t, x = torch.rand(2, 4), torch.randn(2, 4, 2)
    # [2, 3] against x [2, 4, 2] would pair the populations with the points: refused
    for bad in (torch.randn(2, 1, 5), torch.randn(3, 1, 3), torch.randn(2, 3), None):
        with pytest.raises(
            ValueError, match=r"cond: expected one condition \(3,\) or shape \(2, 4, 3\)"
        ):
            f(t, x, bad)
    with pytest.raises(ValueError, match=r"cond: expected one condition \(3,\) or shape \(4, 3\)"):
        f(torch.rand(4), torch.randn(4, 2), torch.randn(2, 3))


@pytest.mark.parametrize("conditioning", ["concat", "film"])
def test_one_point_and_one_condition_for_all_points(conditioning):
    """``x [d]`` (no leading dims) is one point, and ``cond [c]`` one condition for every
    point: each equals the same call with the dims spelled out (both raised before)."""
    torch.manual_seed(0)
    f = VectorField(2, 3, width=8, layers=3, time_dim=4, fourier=4, conditioning=conditioning)
    f = f.to(F64)
    for head in f.film or []:
        torch.nn.init.normal_(head.weight)  # FiLM heads start at zero: make them count
    t = torch.tensor(0.3, dtype=F64)
    x, c = torch.randn(2, 4, 2, dtype=F64), torch.randn(3, dtype=F64)
    full = f(t, x, c.expand(2, 4, 3))
    torch.testing.assert_close(f(t, x, c), full, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(f(t, x[1, 2], c), full[1, 2], rtol=1e-12, atol=1e-13)
    plain = VectorField(2, 0, width=8, layers=2, time_dim=4, fourier=0).to(F64)
    torch.testing.assert_close(plain(t, x[0, 0]), plain(t, x)[0, 0], rtol=1e-12, atol=1e-13)


def test_predict_mixes_population_sizes_and_matches_one_at_a_time():
    """Populations of several sizes give what each gives alone (bit for bit, each integrated
    on its own; within round-off when grouped by size, ``batch=True``)."""
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=48)
    m = MetaFlowMatching(d, seed=1, conditioning="film", centered=True, **SMALL)
    m.fit(steps=5, progress=False)
    gen = torch.Generator().manual_seed(0)
    pops = [torch.randn(n, 2, generator=gen) for n in (30, 17, 30, 9)]
    both = m.predict(pops, seed=4)
    assert [p.shape for p in both] == [q.shape for q in pops]
    for q, p in zip(pops, both):
        (alone,) = m.predict([q], seed=4)
        assert torch.equal(p, alone)
    for a, b in zip(both, m.predict(pops, seed=4, batch=True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a chunk smaller than one population still integrates it whole
    for a, b in zip(both, m.predict(pops, seed=4, chunk=8, batch=True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for bad, err in ((0, ValueError), (-3, ValueError), (2.5, TypeError)):
        with pytest.raises(err, match="chunk: expected an int"):
            m.predict(pops, chunk=bad)
