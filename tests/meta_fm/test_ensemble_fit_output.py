"""MFMEnsemble.fit's warnings, progress and message: once for the ensemble, not per member."""

from __future__ import annotations

import io
import warnings

import pytest

from bayesphys.meta_fm import MFMEnsemble
from bayesphys.problems.populations import interacting_particles

TINY = dict(width=16, layers=2, time_dim=4, fourier=4, gnn_hidden=8, knn_k=5, lr=1e-3, gnn_lr=1e-3)


@pytest.fixture(scope="module")
def data():
    return interacting_particles(n_train=6, n_cal=2, n_test=2, n_points=16, seed=0)


def test_points_warning_once_at_user_line(data):
    ens = MFMEnsemble(data, members=3, seed=0, points=32, **TINY)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = ens.fit(steps=2, progress=False)
    got = [w for w in rec if "fewer than config.points" in str(w.message)]
    assert len(got) == 1, [str(w.message) for w in rec]
    w = got[0]
    assert w.filename == __file__
    assert str(w.message).startswith("MFMEnsemble.fit: a training source population has 16")
    assert "points at most 16" in str(w.message)
    assert fit.message == "max steps (2) (all 3 members)"


def test_no_points_warning_when_points_fit(data):
    ens = MFMEnsemble(data, members=2, seed=0, points=16, **TINY)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ens.fit(steps=1, progress=False)
    assert not [w for w in rec if "config.points" in str(w.message)]


def test_progress_labels_the_member(data, monkeypatch):
    from bayesphys import _progress

    out = io.StringIO()
    real = _progress.tqdm

    def to_buffer(*a, **kw):
        kw["file"] = out
        kw["mininterval"] = 0
        return real(*a, **kw)

    monkeypatch.setattr(_progress, "tqdm", to_buffer)
    ens = MFMEnsemble(data, members=2, seed=0, points=16, **TINY)
    ens.fit(steps=1, progress=True)
    text = out.getvalue()
    assert "MFM member 1/2" in text and "MFM member 2/2" in text
    # each member's step bar names it too (they all read "MFM fit")
    assert "MFM member 1/2 steps" in text and "MFM member 2/2 steps" in text
    assert "MFM fit" not in text
    assert all(getattr(m, "_bar_label", None) is None for m in ens.models)


def test_members_message_groups_identical_messages():
    from bayesphys.meta_fm._ensemble_fit import members_message

    assert members_message(["a", "a", "a"]) == "a (all 3 members)"
    assert members_message(["a", "b", "a"]) == "a (members 0, 2); b (member 1)"


def test_ensemble_fit_swaps_no_process_wide_warning_state(data, monkeypatch):
    """The members' points warnings are silenced by a flag on the member, not by a warnings
    filter (catch_warnings is process-wide: fits in other threads shared the filter), and a
    member fitted alone afterwards warns again."""
    ens = MFMEnsemble(data, members=2, seed=0, points=32, **TINY)

    def refused(*args, **kwargs):
        raise AssertionError("catch_warnings inside a fit")

    with monkeypatch.context() as mp:
        mp.setattr(warnings, "catch_warnings", refused)
        with pytest.warns(UserWarning, match="MFMEnsemble.fit: a training source population"):
            ens.fit(steps=1, progress=False)
    with pytest.warns(UserWarning, match="^fit: a training source population"):
        ens.models[0].fit(data, steps=1, progress=False)
