"""predict / predict_members of a model that has trained no step warn, as posterior does:
they returned the initial weights' flow without a word (a skipped fit cell in a notebook)."""

import warnings

import pytest

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=4, n_cal=0, n_test=2, n_points=16)


def _messages(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return [f"{w.filename}|{w.message}" for w in rec if "not been trained" in str(w.message)]


def test_untrained_predict_warns_once_at_the_callers_line(data):
    m = MetaFlowMatching(data, seed=0, **TINY_MFM)
    src = data.subset("test").source
    got = _messages(lambda: m.predict(src))
    assert len(got) == 1 and got[0].startswith(__file__)
    assert "MetaFlowMatching.predict: the model has not been trained" in got[0]
    # posterior warns once, not once more per draw
    assert len(_messages(lambda: m.posterior(src, num_samples=3))) == 1
    m.fit(steps=1, progress=False)
    assert _messages(lambda: m.predict(src)) == []


def test_untrained_ensemble_predict_members_warns_once(data):
    ens = MFMEnsemble(data, members=2, seed=0, method="FM", **TINY_MFM)
    src = data.subset("test").source
    got = _messages(lambda: ens.predict_members(src))
    assert len(got) == 1 and "MFMEnsemble.predict_members" in got[0]
    assert got[0].startswith(__file__)
    assert len(_messages(lambda: ens.posterior(src, num_samples=2))) == 1
    ens.models[0].fit(steps=1, progress=False)  # one trained member: no warning, as posterior
    assert _messages(lambda: ens.predict_members(src)) == []


def test_uneven_ensemble_posterior_does_not_warn_per_untrained_member(data):
    """posterior() of an ensemble with one trained member draws through each member's
    predict: the untrained member's own warning stays silent there (the ensemble's rule is
    'none trained'), and the silence ends with the call."""
    ens = MFMEnsemble(data, members=2, seed=0, method="FM", **TINY_MFM)
    ens.models[0].fit(steps=1, progress=False)
    src = data.subset("test").source
    assert _messages(lambda: ens.posterior(src, num_samples=1)) == []
    assert len(_messages(lambda: ens.models[1].predict(src))) == 1
