"""The meta_fm warnings point at the user's line, also when the package's own methods reach
them (MFMEnsemble.uncertainty predicts through predict_members and scores through
conformal_coverage: those warnings named ensemble.py)."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from bayesphys import SamplePosterior
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble, w2_inference_data
from bayesphys.meta_fm.evaluation import conformal_coverage
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=4, n_cal=2, n_test=2, n_points=16)


@pytest.fixture(scope="module")
def uneven(data):
    """An ensemble whose members were trained for 1 and 0 steps (an interrupted fit)."""
    ens = MFMEnsemble(data, members=2, seed=0, method="FM", **TINY_MFM)
    ens.models[0].fit(steps=1, progress=False)
    return ens


def _recorded(fn) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return list(rec)


def _at(rec, text: str, line: int) -> list[warnings.WarningMessage]:
    """The warnings containing ``text``, checked to point at this file's ``line``."""
    got = [w for w in rec if text in str(w.message)]
    assert got, [str(w.message) for w in rec]
    assert all((w.filename, w.lineno) == (__file__, line) for w in got), [
        (w.filename, w.lineno) for w in got
    ]
    return got


def test_fit_points_warning_at_user_line(data):
    m = MetaFlowMatching(data, method="MFM", seed=0, **{**TINY_MFM, "points": 32})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        m.fit(steps=1, progress=False)
    (w,) = _at(rec, "fewer than config.points", line)
    assert issubclass(w.category, UserWarning) and str(w.message).startswith("fit: ")


def test_posterior_zero_spread_warning_at_user_line(data):
    m = MetaFlowMatching(data, method="MFM", seed=0, **TINY_MFM)  # points=16: embedded whole
    m.fit(steps=1, progress=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        m.posterior(data.subset("test").source, num_samples=2)
    (w,) = _at(rec, "every draw is identical", line)
    assert str(w.message).startswith("posterior: populations of 16 points")


def test_uneven_members_warn_at_user_line(uneven, data):
    src = data.subset("test").source
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        uneven.posterior(src)
        uneven.predict_members(src)
    got = [w for w in rec if "different numbers of steps [1, 0]" in str(w.message)]
    assert [w.lineno for w in got] == [line, line + 1]
    assert all(w.filename == __file__ and issubclass(w.category, RuntimeWarning) for w in got)


def test_uncertainty_warns_at_user_line(uneven, data):
    """Both warnings came from inside uncertainty: predict_members' uneven-members warning and
    conformal_coverage's infinite-radius one (2 calibration populations at alpha=0.1)."""
    cal, test = data.subset("cal"), data.subset("test")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        uneven.uncertainty(cal, test, aleatoric=False, max_points=None)
    assert len(_at(rec, "different numbers of steps [1, 0]", line)) == 2  # cal and test
    assert len(_at(rec, "conformal_coverage: 2 calibration scores", line)) == 2  # both scores


def test_conformal_coverage_warning_at_user_line():
    rec = _recorded(lambda: conformal_coverage([0.1, 0.2], [0.5], alpha=0.1))
    (w,) = [w for w in rec if "radius is infinite" in str(w.message)]
    assert w.filename == __file__ and issubclass(w.category, UserWarning)


def test_w2_inference_data_warning_at_user_line():
    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 2, 3, 10, 2, generator=g))  # n = 10 points
    truth = torch.randn(3, 12, 2, generator=g)  # m = 12 > n: no replicates
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        w2_inference_data(post, truth, max_points=None)
    (w,) = _at(rec, "posterior_predictive left out", line)
    assert str(w.message).startswith("w2_inference_data: ")


def test_a_call_refused_for_its_arguments_gives_no_untrained_warning(data):
    """predict and posterior (and an ensemble's) warned that the model is untrained before
    checking their arguments, so a call they then refused also gave that warning."""
    m = MetaFlowMatching(data, seed=0, **TINY_MFM)
    ens = MFMEnsemble(data, members=2, seed=0, method="FM", **TINY_MFM)
    for call in (m.predict, m.posterior, ens.predict_members, ens.posterior):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            with pytest.raises(TypeError, match="received numpy.ndarray"):
                call(data.source[0].numpy())
        assert not [w for w in got if "not been trained" in str(w.message)]
