"""FiLM conditioning of the vector field (``MFMConfig.conditioning="film"``)."""

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMConfig
from bayesphys.meta_fm.field import VectorField, time_embedding
from bayesphys.problems.populations import linear_map
from tests.tiny_models import SMALL_MFM as SMALL


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
