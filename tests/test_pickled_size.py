"""Objects sent to another process (pickle, multiprocessing, Ray, Dask) carry their own data
and no more (review of 2026-12-03; each test failed before)."""

from __future__ import annotations

import pickle

import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import Recalibrator
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from bayesphys.problems.populations import linear_map


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_a_population_data_set_pickles_at_its_own_size():
    """Each population was a view of one stacked [P, n, d] draw: pickle wrote that whole draw
    once per population (50x the data set's size here)."""
    data = linear_map(n_train=20, n_cal=0, n_test=2, n_points=500, seed=0)
    own = _nbytes(data.source) + _nbytes(data.target)
    assert len(pickle.dumps(data)) < 1.5 * own
    back = pickle.loads(pickle.dumps(data.subset("test")))
    assert all(torch.equal(a, b) for a, b in zip(back.source, data.subset("test").source))


def test_predicted_populations_do_not_keep_their_batch():
    from bayesphys.meta_fm import MetaFlowMatching
    from tests.tiny_models import TINY_MFM

    data = linear_map(n_train=6, n_cal=0, n_test=3, n_points=64, seed=0)
    model = MetaFlowMatching(data, method="MFM", seed=0, **TINY_MFM)
    model.fit(steps=2, progress=False)
    preds = model.predict(data.subset("test").source, seed=0)
    for p in preds:
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size()


def test_a_glioma_model_pickles_each_map_once():
    from bayesphys.odil import GliomaModel

    model = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(96, 1.0)))
    own = _nbytes(v for v in vars(model).values() if torch.is_tensor(v))  # views at their size
    # the cropped maps viewed the full ones: 676 kB against 458 kB of own tensors here
    assert len(pickle.dumps(model)) < 1.25 * own


def test_a_recalibrated_posterior_pickles_without_its_quantile_table():
    var = torch.full((101,), 0.5, dtype=torch.float64)
    base = GaussianPosterior(torch.zeros(101, dtype=torch.float64), DiagLinearOperator(var))
    rec = Recalibrator("quantile", pits=torch.linspace(0.02, 0.98, 49, dtype=torch.float64))
    post = rec.wrap(base)
    before = len(pickle.dumps(post))
    q = post.quantile([0.1, 0.9])  # fills the cached table
    assert len(pickle.dumps(post)) == before
    torch.testing.assert_close(pickle.loads(pickle.dumps(post)).quantile([0.1, 0.9]), q)
