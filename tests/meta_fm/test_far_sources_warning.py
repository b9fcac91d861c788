"""MetaFlowMatching warns when a source population is far from every training source: shifted
many pooled sds beyond their means, or spread several times wider or narrower. The flow there
is an extrapolation, and its draws did not widen."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys._process_state import torch_threads
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM
from tests.warning_checks import messages_containing

FAR = "far from every training source"


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=6, n_cal=0, n_test=3, n_points=32, seed=0)


@pytest.fixture(scope="module")
def model(data):
    with torch_threads(1):  # the count was left at one for the module's other tests
        m = MetaFlowMatching(data, seed=0, **TINY_MFM)
        m.fit(steps=2, progress=False)
    return m


def _messages(fn) -> list[str]:
    return messages_containing(fn, FAR)


def _unit(data) -> float:
    """The pooled sd of the training points (the model's frame scale)."""
    tr = data.subset("train")
    allx = torch.cat([*tr.source, *tr.target]).double()
    return float((allx - allx.mean(0)).std(0).mean())


def _spreads(data) -> tuple[float, float]:
    s = [float(p.double().std(0).mean()) for p in data.subset("train").source]
    return min(s), max(s)


def _top(data) -> float:
    return float(torch.stack([p.mean(0) for p in data.subset("train").source]).max())


def test_held_out_populations_are_silent(model, data):
    test = data.subset("test").source
    assert _messages(lambda: model.predict(test)) == []
    assert _messages(lambda: model.posterior(test, num_samples=2)) == []


def test_shifted_population_warns_once(model, data):
    test = list(data.subset("test").source)
    shifted = test[0] - test[0].mean(0) + _top(data) + 6 * _unit(data)  # 3 sds is the limit
    msgs = _messages(lambda: model.predict([test[1], shifted]))
    assert len(msgs) == 1
    assert "1 of 2 source populations" in msgs[0] and "population 1" in msgs[0]
    assert "pooled training sds" in msgs[0]
    assert len(_messages(lambda: model.posterior([shifted, test[1]], num_samples=3))) == 1


def test_scaled_population_warns(model, data):
    p = data.subset("test").source[0]
    wide = (p - p.mean(0)) * 5 * _spreads(data)[1] / float(p.std(0).mean()) + p.mean(0)
    msgs = _messages(lambda: model.predict([wide]))
    assert len(msgs) == 1 and "spread" in msgs[0]


def test_warning_at_user_line(model, data):
    p = data.subset("test").source[0] + 100 * _unit(data)
    with pytest.warns(UserWarning, match=FAR) as rec:
        model.predict([p])
    assert rec[0].filename == __file__


def test_saved_model_keeps_the_record(model, data, tmp_path):
    path = model.save(tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading says nothing
        loaded = MetaFlowMatching.load(path)
    p = data.subset("test").source[0] + 100 * _unit(data)
    assert len(_messages(lambda: loaded.predict([p]))) == 1


def test_older_checkpoint_without_record_loads_silently(model, data, tmp_path):
    cfg = model.checkpoint_config()
    del cfg["trained_sources"]
    loaded = MetaFlowMatching.from_state(cfg, model.state())
    p = data.subset("test").source[0] + 100 * _unit(data)
    assert _messages(lambda: loaded.predict([p])) == []


def test_ensemble_warns_once(data, tmp_path, one_torch_thread):
    ens = MFMEnsemble(data, members=2, seed=0, method="FM", **TINY_MFM)
    ens.fit(steps=1, progress=False)
    p = data.subset("test").source[0] + 100 * _unit(data)
    assert len(_messages(lambda: ens.predict_members([p]))) == 1
    assert len(_messages(lambda: ens.posterior([p]))) == 1
    loaded = MFMEnsemble.load(ens.save(tmp_path / "ens.pt"))
    assert len(_messages(lambda: loaded.predict_members([p]))) == 1


def test_narrow_population_warns(model, data):
    p = data.subset("test").source[0]
    narrow = (p - p.mean(0)) * 0.2 * _spreads(data)[0] / float(p.std(0).mean()) + p.mean(0)
    assert len(_messages(lambda: model.predict([narrow]))) == 1


def test_centred_fm_compares_the_spread_only(data, one_torch_thread):
    m = MetaFlowMatching(data, seed=0, method="FM", centered=True, **TINY_MFM)
    m.fit(steps=1, progress=False)
    p = data.subset("test").source[0]
    assert _messages(lambda: m.predict([p + 100 * _unit(data)])) == []  # its flow is shift-free
    wide = (p - p.mean(0)) * 5 * _spreads(data)[1] / float(p.std(0).mean()) + p.mean(0)
    assert len(_messages(lambda: m.predict([wide]))) == 1


def test_benchmark_held_out_sources_are_not_far():
    """The warning stays silent on the meta_fm benchmark's held-out populations, the demo's
    and the example's (the quick cases of benchmarks/meta_fm_far_sources.py, whose full run
    gives the figures quoted in docs/meta_fm.md)."""
    from bayesphys._bench.paths import repo_root
    from bayesphys._bench.tasks import script_module
    from bayesphys.meta_fm._sources import FAR_MEAN, FAR_SPREAD

    script = script_module(str(repo_root() / "benchmarks" / "meta_fm_far_sources.py"))
    out = script.main(["--quick"])
    assert 0 < out["largest_excess"] < FAR_MEAN
    assert 1 < out["largest_ratio"] < FAR_SPREAD


@pytest.mark.parametrize(
    "edit",
    [{"unit": "x"}, {"mean_lo": ["a", 0.0]}, {"spread": [True, 1.0]}, {"extra": 1}],
)
def test_damaged_record_is_refused_by_name(edit):
    from bayesphys.meta_fm._sources import saved_sources

    good = {"mean_lo": [0.0, 0.0], "mean_hi": [1.0, 1.0], "spread": [0.5, 1.0], "unit": 1.0}
    assert saved_sources(good, 2) == good
    with pytest.raises(ValueError, match=r"trained_sources: expected None or a dict of numbers"):
        saved_sources({**good, **edit}, 2)
