"""Source-centred field input (``MFMConfig.centered``)."""

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMConfig, population_metrics
from bayesphys.problems.populations import PopulationPairs
from tests.tiny_models import SMALL_MFM as SMALL


def _contractions(n_pops: int, seed: int) -> PopulationPairs:
    """Populations N(mu_i, 0.3^2 I) at far-apart means, each contracted to half its spread
    about its own mean: ``x1 = mu_i + 0.5 (x0 - mu_i)``. The velocity depends on ``x - mu_i``
    only, so a centred field needs no condition; a raw field must know ``mu_i``."""
    g = torch.Generator().manual_seed(seed)
    mus = 4.0 * torch.randn(n_pops, 2, generator=g)
    src = [mu + 0.3 * torch.randn(96, 2, generator=g) for mu in mus]
    tgt = [mu + 0.5 * (s - mu) for mu, s in zip(mus, src)]
    return PopulationPairs(
        name="contractions",
        source=src,
        target=tgt,
        source_id=torch.arange(n_pops),
        splits={"train": list(range(n_pops - 8)), "test": list(range(n_pops - 8, n_pops))},
        paired=True,
    )


def test_centered_fm_is_translation_equivariant():
    d = _contractions(12, seed=0)
    m = MetaFlowMatching(d, method="FM", centered=True, seed=0, **SMALL)
    m.fit(steps=5, progress=False)
    src = d.subset("test").source[:3]
    shift = torch.tensor([1.5, -2.0])
    a = m.predict(src)
    b = m.predict([s + shift for s in src])
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pb, pa + shift, rtol=0, atol=1e-5)
    # the raw field is not: the same shift moves the points through another part of it
    raw = MetaFlowMatching(d, method="FM", centered=False, seed=0, **SMALL)
    raw.fit(steps=5, progress=False)
    ra, rb = raw.predict(src), raw.predict([s + shift for s in src])
    assert max(float((y - x - shift).abs().max()) for x, y in zip(ra, rb)) > 1e-3


def test_centered_field_learns_a_family_of_maps_a_raw_field_cannot():
    d = _contractions(48, seed=1)
    test = d.subset("test")
    kw = dict(SMALL, width=48, lr=3e-3, fourier=0)
    w2 = {}
    for centered in (False, True):
        m = MetaFlowMatching(d, method="FM", centered=centered, seed=0, **kw)
        m.fit(steps=300, progress=False)
        pred = m.predict(test.source)
        w2[centered] = sum(population_metrics(p, t)["w2"] for p, t in zip(pred, test.target))
    assert w2[True] < 0.5 * w2[False], w2


def test_centered_round_trips_and_refuses_non_bools(tmp_path):
    d = _contractions(12, seed=2)
    m = MetaFlowMatching(d, method="MFM", centered=True, seed=0, **SMALL)
    m.fit(steps=4, progress=False)
    path = m.save(tmp_path / "m.pt")
    back = MetaFlowMatching.load(path)
    assert back.config.centered is True
    src = d.subset("test").source[:2]
    for a, b in zip(m.predict(src, seed=3), back.predict(src, seed=3)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert MFMConfig().centered is False
    with pytest.raises(ValueError, match="centered"):
        MFMConfig(centered="yes")


def _shifted(d: PopulationPairs, a: torch.Tensor) -> PopulationPairs:
    return PopulationPairs(
        name=d.name,
        source=[x + a for x in d.source],
        target=[y + a for y in d.target],
        source_id=d.source_id,
        splits=d.splits,
        paired=d.paired,
    )


@pytest.mark.parametrize("coupling", ["index", "ot", "ot_full"])
def test_centered_training_does_not_see_a_common_shift(coupling):
    # without the global standardisation a raw field trains differently on shifted data; a
    # centred one sees the same batches (the OT plans too are shift-invariant)
    d = _contractions(12, seed=3)
    a = torch.tensor([3.0, -5.0])
    kw = dict(SMALL, method="FM", coupling=coupling, normalize=False, seed=0)
    losses = {}
    for centered in (True, False):
        runs = []
        for data in (d, _shifted(d, a)):
            m = MetaFlowMatching(data, centered=centered, **kw)
            runs.append(torch.tensor(m.fit(steps=6, progress=False).loss_history))
        losses[centered] = runs
    torch.testing.assert_close(losses[True][0], losses[True][1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(losses[False][0], losses[False][1], rtol=1e-2)
