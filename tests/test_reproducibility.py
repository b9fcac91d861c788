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


# --- the command line: a run's outputs name its seed, and the same seed repeats them ----------

_TIMINGS = ("second", "wall", "speed", "per_second", "worker", "record_token", "settings")


def _outputs(folder):
    """Every ``.nc`` file's arrays and top-level attributes and every JSON file's values
    under ``folder``, keyed by relative path; timings, worker names and paths left out."""
    import json
    from pathlib import Path

    from bayesphys.inference_data import group_dataset, group_names, load_netcdf

    def plain(obj, key=""):
        if isinstance(obj, dict):
            return {k: plain(v, k) for k, v in obj.items() if not any(t in k for t in _TIMINGS)}
        if isinstance(obj, list):
            return [plain(v) for v in obj]
        return "<path>" if isinstance(obj, str) and str(folder) in obj else obj

    out = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = str(path.relative_to(folder))
        if path.suffix == ".nc":
            idata = load_netcdf(path)
            arrays = {
                f"{g}/{v}": group_dataset(idata, g)[v].values
                for g in group_names(idata)
                for v in group_dataset(idata, g).variables
            }
            out[rel] = (dict(idata.attrs), arrays)
        elif path.suffix == ".json":
            out[rel] = plain(json.loads(path.read_text()))
    return out


def _equal(x, y) -> bool:
    if y is None or x.shape != y.shape or x.dtype != y.dtype:
        return False
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def _differences(a, b) -> list[str]:
    """The entries of two :func:`_outputs` that differ (arrays bit for bit)."""
    diffs = [] if a.keys() == b.keys() else [f"files {sorted(a.keys() ^ b.keys())}"]
    for rel in a.keys() & b.keys():
        if rel.endswith(".nc"):
            (attrs_a, arr_a), (attrs_b, arr_b) = a[rel], b[rel]
            if attrs_a != attrs_b or arr_a.keys() != arr_b.keys():
                diffs.append(rel)
            diffs += [f"{rel}:{k}" for k in arr_a if not _equal(arr_a[k], arr_b.get(k))]
        elif a[rel] != b[rel]:
            diffs.append(rel)
    return diffs


def test_the_core_demo_and_an_example_record_the_seed_they_ran_with(tmp_path, capsys):
    from bayesphys import cli
    from bayesphys.inference_data import load_netcdf

    assert cli.main(["demo", "--only", "--seed", "5", "--out", str(tmp_path / "demo")]) == 0
    assert load_netcdf(tmp_path / "demo" / "core.nc").attrs["seed"] == 5
    argv = ["run", "gp-pde-inverse", "--smoke", "--seed", "-3", "--out", str(tmp_path / "a")]
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "seed: -3" in capsys.readouterr().out.splitlines()  # the printed summary
    assert load_netcdf(tmp_path / "a" / "gp_pde_inverse.nc").attrs["seed"] == -3
    # and the recorded seed redoes the run: the same arrays
    argv[-1] = str(tmp_path / "b")
    assert cli.main(argv) == 0
    assert not _differences(_outputs(tmp_path / "a"), _outputs(tmp_path / "b"))


def _run_example(name: str, seed: int, out, cwd) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    argv = ["run", name, "--smoke", "--seed", str(seed), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bayesphys", *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _examples():
    from bayesphys.examples import available

    return sorted(available())


@pytest.mark.slow
@pytest.mark.parametrize("name", _examples())
def test_every_example_records_its_seed_and_repeats_it_in_a_fresh_process(name, tmp_path):
    """``bayesphys run NAME --smoke --seed S`` in two fresh processes, from two working
    folders, into a new ``--out`` and into one that existed: the same arrays and values (all
    but timings); another seed other draws; every netCDF file and JSON summary names S."""
    cwd1, cwd2 = tmp_path / "cwd1", tmp_path / "cwd2" / "deeper"
    for d in (cwd1, cwd2, tmp_path / "b"):
        d.mkdir(parents=True)
    _run_example(name, 3, tmp_path / "a", cwd1)
    _run_example(name, 3, tmp_path / "b", cwd2)
    _run_example(name, 4, tmp_path / "c", cwd1)
    a, b, c = (_outputs(tmp_path / k) for k in "abc")
    assert a and not _differences(a, b), _differences(a, b)
    assert _differences(a, c)  # another seed: other numbers
    ncs = [rel for rel in a if rel.endswith(".nc") and not rel.startswith("fits")]
    for rel in ncs:
        assert a[rel][0]["seed"] == 3 and c[rel][0]["seed"] == 4, rel
    summaries = [rel for rel in a if rel.endswith(".json") and "/" not in rel]
    assert ncs or summaries
    for rel in summaries:
        if rel.startswith("run_"):  # the ddp example's settings record names it too
            continue
        assert a[rel]["seed"] == 3 and c[rel]["seed"] == 4, rel
