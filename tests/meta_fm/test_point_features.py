"""Per-point features of the source (e.g. a cell-type one-hot) read by the MFM embedding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.meta_fm.embedding import PopulationEmbedding
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import SMALL_MFM as SMALL

# tiny (often untrained) models on toy populations drive these tests: the package's warnings
# about them are expected here, not asserted (tests elsewhere assert them)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*far from every training source:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*calibration scores are too few:UserWarning"),
]


@pytest.fixture(scope="module")
def screen():
    return patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=40, fold=0)


def test_embedding_reads_features_and_stays_order_invariant():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 30, 3, generator=gen)
    f = torch.nn.functional.one_hot(torch.randint(2, (2, 30), generator=gen), 2).float()
    emb = PopulationEmbedding(3, hidden=8, layers=2, k=5, features=2)
    z = emb(x, f)
    assert z.shape == (2, 8)
    perm = torch.randperm(30, generator=gen)
    assert torch.allclose(emb(x[:, perm], f[:, perm]), z, atol=1e-6)
    assert not torch.allclose(emb(x, 1.0 - f), z, atol=1e-4)  # the features matter
    with pytest.raises(ValueError, match="point features"):
        emb(x)
    with pytest.raises(ValueError, match="point features"):
        emb(x, f[..., :1])
    with pytest.raises(ValueError, match="no point features"):
        PopulationEmbedding(3, hidden=8, layers=2, k=5)(x, f)


def test_screen_gives_the_source_cell_type_one_hot(screen):
    for f, (l0, _), s in zip(screen.source_features, screen.extra["cell_type"], screen.source):
        assert f.shape == (s.shape[0], 2)
        assert torch.equal(f.argmax(-1), l0) and torch.equal(f.sum(-1), torch.ones(len(l0)))
    test = screen.subset("test")
    assert len(test.source_features) == len(test.source)
    assert torch.equal(test.source_features[0], screen.source_features[screen.splits["test"][0]])


def test_mfm_trains_and_predicts_with_features(screen, tmp_path):
    m = MetaFlowMatching(screen, seed=0, **SMALL)
    assert m.config.node_features == 2
    m.fit(steps=3, progress=False)
    test = screen.subset("test")
    with pytest.raises(ValueError, match="features"):
        m.predict(test.source, test.treatment)
    pred = m.predict(test.source, test.treatment, features=test.source_features, seed=1)
    assert [p.shape for p in pred] == [s.shape for s in test.source]
    flipped = [1.0 - f for f in test.source_features]
    other = m.predict(test.source, test.treatment, features=flipped, seed=1)
    assert any(not torch.allclose(a, b) for a, b in zip(pred, other))
    back = MetaFlowMatching.load(m.save(tmp_path / "mfm.pt"))
    again = back.predict(test.source, test.treatment, features=test.source_features, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(pred, again))
    bad = [f[:-1] for f in test.source_features]
    with pytest.raises(ValueError, match=r"features\[0\]"):
        m.predict(test.source, test.treatment, features=bad)


def test_feature_settings_and_baselines(screen):
    # FM and CGFM have no embedding: they ignore the features
    fm = MetaFlowMatching(screen, method="FM", seed=0, **SMALL)
    assert fm.config.node_features == 0
    fm.fit(steps=2, progress=False)
    test = screen.subset("test")
    a = fm.predict(test.source, test.treatment)
    b = fm.predict(test.source, test.treatment, features=test.source_features)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    # node_features=0 ignores them; any other count that disagrees with the data is an error
    assert MetaFlowMatching(screen, node_features=0, **SMALL).config.node_features == 0
    with pytest.raises(ValueError, match="node_features"):
        MetaFlowMatching(screen, node_features=3, **SMALL)
    with pytest.raises(ValueError, match="node_features"):
        MetaFlowMatching(screen, node_features=-1, **SMALL)
    # malformed source_features are refused when the pairs are checked
    broken = dataclasses.replace(screen, source_features=[f[:, :1] for f in screen.source_features])
    broken.source_features[1] = broken.source_features[1][:-1]
    with pytest.raises(ValueError, match=r"source_features\[1\]"):
        MetaFlowMatching(broken, **SMALL)


# a 2-step ensemble on a small screen finds some test sources far from the training ones, and
# its 2 calibration populations give a vacuous conformal radius; those warnings are not what
# the test (features pass through) checks
@pytest.mark.filterwarnings("ignore:conformal_coverage. .* scores are too few:UserWarning")
@pytest.mark.filterwarnings("ignore:MFMEnsemble.predict_members. .* far from every training")
def test_ensemble_passes_features_through_uncertainty(screen):
    ens = MFMEnsemble(screen, members=2, seed=0, **SMALL)
    ens.fit(steps=2, progress=False)
    out = ens.uncertainty(screen.subset("cal"), screen.subset("test"), max_points=40)
    assert len(out["test_error"]) == len(screen.splits["test"])
    # data without features keep working
    d = linear_map(n_train=6, n_cal=2, n_test=2, n_points=32)
    assert d.source_features is None
    assert MetaFlowMatching(d, **SMALL).config.node_features == 0
