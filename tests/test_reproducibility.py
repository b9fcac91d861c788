"""Seeds reproduce: the same numbers whatever the caller's default dtype or earlier fits, and
``seed=None`` read from torch's global stream everywhere (found by a reproducibility review)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.neural_process import RandomGridNP
from bayesphys.probconserv import ProbConserv
from bayesphys.problems.populations import linear_map
from bayesphys.problems.rgnp import invariance_points, poisson_sensor_data, poisson_test_set
from tests.tiny_models import TINY_MFM, tiny_rgnp


def _builds():
    data = linear_map(n_train=6, n_cal=4, n_test=4, n_points=24)
    return {
        "rgnp": lambda: tiny_rgnp()._modules(),
        "pc": lambda: ProbConserv("diffusion", hidden=8, n_samples=2, seed=0).net,
        "mfm": lambda: MetaFlowMatching(data, method="MFM", seed=0, **TINY_MFM).net,
    }


@pytest.mark.parametrize("name", ["rgnp", "pc", "mfm"])
def test_seeded_initial_weights_do_not_depend_on_the_default_dtype(name):
    build = _builds()[name]
    ref = [p.detach().clone() for p in build().parameters()]
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = [p.detach().clone() for p in build().parameters()]
    finally:
        torch.set_default_dtype(prev)
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ranks_split_their_batch_streams_once_per_stream(monkeypatch, tmp_path):
    import bayesphys.neural_process.model as np_model
    import bayesphys.probconserv._train as pc_train

    calls = []
    for mod in (np_model, pc_train):
        monkeypatch.setattr(mod, "rank_generator_seed", lambda gen: calls.append(gen))
    m = tiny_rgnp()
    m.fit(steps=1, progress=False)
    m.fit(steps=1, progress=False)  # a continuation: no second split (ranks > 0 reseeded)
    assert len(calls) == 1
    m.save(tmp_path / "m.pt")
    RandomGridNP.load(tmp_path / "m.pt").fit(steps=1, progress=False)  # a restored stream
    assert len(calls) == 2
    pc = ProbConserv("diffusion", hidden=8, n_samples=2, seed=0)
    pc.fit(steps=1, progress=False)
    pc.fit(steps=1, progress=False)
    assert len(calls) == 3


def test_seed_none_reads_torchs_global_stream():
    def twice(fn):
        torch.manual_seed(11)
        a = fn()
        torch.manual_seed(11)
        return a, fn()

    a, b = twice(lambda: poisson_test_set(3, seed=None)["z"])
    assert np.array_equal(a, b)  # was fresh OS entropy
    a, b = twice(lambda: poisson_sensor_data(3, seed=None)["y"])
    assert np.array_equal(a, b)
    a, b = twice(lambda: invariance_points(5, "random", seed=None))
    assert np.array_equal(a, b)
    # two unseeded models: their own batch streams (both had seed 0's)
    g1 = RandomGridNP("poisson", "RGNP", seed=None, size="smoke").generator.get_state()
    g2 = RandomGridNP("poisson", "RGNP", seed=None, size="smoke").generator.get_state()
    assert not torch.equal(g1, g2)


def test_cohort_example_start_does_not_depend_on_the_default_dtype():
    from bayesphys.examples.cohort import LinearGaussianModel
    from bayesphys.problems import linear_gaussian_problem

    prob = linear_gaussian_problem(seed=0)
    ref = float(LinearGaussianModel(prob, seed=3).log_lengthscale.detach())
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = float(LinearGaussianModel(prob, seed=3).log_lengthscale.detach())
    finally:
        torch.set_default_dtype(prev)
    assert got == ref


def test_unseeded_flow_matching_models_draw_their_streams_from_the_global_one():
    data = linear_map(n_train=6, n_cal=4, n_test=4, n_points=24)

    def fourier():
        m = MetaFlowMatching(data, method="MFM", seed=None, **TINY_MFM)
        return m.net.state_dict()["field.fourier.B"].clone()

    torch.manual_seed(3)
    a = fourier()
    torch.manual_seed(3)
    assert torch.equal(fourier(), a)  # torch.manual_seed repeats an unseeded model
    assert not torch.equal(fourier(), a)  # two unseeded models differ (both had seed 0's)


def test_checkpoints_of_numpy_valued_settings_load():
    import tempfile
    from pathlib import Path

    from bayesphys import load_checkpoint, save_checkpoint

    m = tiny_rgnp(seed=np.int64(0))
    assert type(m.seed) is int  # stored as a plain int, not as given
    with tempfile.TemporaryDirectory() as tmp:
        m.save(Path(tmp) / "m.pt")
        back = RandomGridNP.load(Path(tmp) / "m.pt")
        assert back.seed == 0 and type(back.seed) is int
        cfg = {"width": np.int64(4), "grid": np.array([0.1, 0.2]), "lr": np.float32(0.5)}
        save_checkpoint(Path(tmp) / "c.pt", kind="toy", config=cfg, state={})
        back = load_checkpoint(Path(tmp) / "c.pt", kind="toy")["config"]
        assert back["width"] == 4 and np.array_equal(back["grid"], cfg["grid"])


def test_annotations_of_the_entry_points_resolve():
    import typing

    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.problems import ConjugateGaussianField

    for fn in (RandomGridNP.posterior, GPPDESolver.__init__, ConjugateGaussianField.__init__):
        assert typing.get_type_hints(fn)
