"""fit_many: equality with sequential fits per executor, fault isolation, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bayesphys
from bayesphys._checks import stream_seed
from bayesphys._process_state import seed_everything, torch_threads
from bayesphys.distributed import CombineError, fit_many, problem_seed
from bayesphys.distributed._combine import _combine
from bayesphys.distributed.executors import MapRunner, SequentialRunner, resolve_runner
from bayesphys.inference_data import group_dataset

from . import _tasks, _toy

STEPS = 15
NS = 20


def _reference(problems: dict, builder, seed: int) -> dict:
    """The plain sequential loop fit_many must reproduce (1 thread, per-problem seeds)."""
    with torch_threads(1):  # it set one thread and left it to the rest of the test and after
        return _reference_loop(problems, builder, seed)


def _reference_loop(problems: dict, builder, seed: int) -> dict:
    out = {}
    for pid, prob in problems.items():
        if prob.get("fail"):
            continue
        s = problem_seed(seed, pid)
        seed_everything(s)
        try:
            model = builder(prob, seed=s)
        except TypeError:
            model = builder(prob)
        model.fit(steps=STEPS, progress=False)
        post = model.posterior()
        # the draws' own stream (not s itself, whose normals build / fit drew)
        gen = torch.Generator().manual_seed(stream_seed(s, "fit_many/export"))
        out[pid] = post.sample((1, NS), generator=gen).numpy()
    return out


def _draws(res, pid) -> np.ndarray:
    return group_dataset(res.idata, "posterior")["u"].sel(problem=pid).values


def _check_equal(res, ref: dict) -> None:
    assert sorted(res.per_problem) == sorted(ref)
    for pid, expected in ref.items():
        np.testing.assert_array_equal(_draws(res, pid), expected)


def _check_failure(res, bad: str) -> None:
    row = res.table.loc[bad]
    assert row["status"] == "error"
    assert "boom" in row["error"] and "RuntimeError" in row["error"]
    assert "Traceback" in row["traceback"]
    assert res.failed == [bad]
    assert bad not in group_dataset(res.idata, "posterior")["problem"].values


def _run(executor, problems, builder=_toy.build, **kw):
    if "export" not in kw:  # an export makes its own draws (num_samples does not apply)
        kw["num_samples"] = NS
    return fit_many(
        problems,
        builder,
        executor=executor,
        seed=7,
        progress=False,
        fit_kwargs={"steps": STEPS},
        **kw,
    )


def test_problem_seed_is_deterministic_and_distinct():
    assert problem_seed(0, "p001") == problem_seed(0, "p001")
    seeds = {problem_seed(0, f"p{k:03d}") for k in range(100)}
    assert len(seeds) == 100
    assert problem_seed(0, "a") != problem_seed(1, "a")
    with pytest.raises(TypeError, match="seed"):
        problem_seed("0", "a")


def test_problem_seed_is_the_same_in_a_fresh_process():
    # workers are fresh processes: a seed from the salted built-in hash() would change with
    # PYTHONHASHSEED; the child gets another hash seed than this process and the same package
    ids = ["a", "p001", "p042"]
    code = (
        "from bayesphys.distributed import problem_seed; "
        f"print([problem_seed(s, p) for s in (0, 7) for p in {ids!r}])"
    )
    root = str(Path(bayesphys.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONHASHSEED="2" if os.environ.get("PYTHONHASHSEED") == "1" else "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([problem_seed(s, p) for s in (0, 7) for p in ids])


def test_sequential_equals_manual_loop_and_stacks_problems():
    probs = _toy.problems(3)
    res = _run("sequential", probs)
    _check_equal(res, _reference(probs, _toy.build, 7))
    u = group_dataset(res.idata, "posterior")["u"]
    assert u.dims == ("chain", "draw", "problem", "u_dim_0")
    assert u.shape == (1, NS, 3, 41)
    assert list(res.table.index) == list(probs)
    assert res.table["status"].eq("ok").all() and res.table["steps"].eq(STEPS).all()
    idata, table = res  # unpacks as (idata, table)
    assert table is res.table and idata is res.idata


def test_global_rng_models_are_seeded_per_problem():
    probs = _toy.problems(3)
    res = _run("sequential", probs, builder=_toy.build_global)
    _check_equal(res, _reference(probs, _toy.build_global, 7))
    # different problems get different starts (seeds differ), same problem same start
    again = _run("sequential", probs, builder=_toy.build_global)
    for pid in probs:
        np.testing.assert_array_equal(_draws(res, pid), _draws(again, pid))


def test_local_processes_equal_sequential_and_isolate_a_failure():
    probs = _toy.problems(4, fail=(2,))
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 4 problems failed"):
        res = _run("local", probs, max_workers=2)
    assert res.executor == "local" and res.workers == 2
    _check_equal(res, _reference(probs, _toy.build, 7))
    _check_failure(res, "p002")
    # each task ran in a worker process, limited to one thread
    assert all(":" in w for w in res.table["worker"])
    # the caller's problem tensors stay in its own memory: the pool's pickler moved each into
    # shared memory with a file descriptor held while the caller kept it (a cohort of a few
    # hundred problems ran out of descriptors; review of 2026-12-03)
    shared = [
        k for p in probs.values() for k, v in p.items() if torch.is_tensor(v) and v.is_shared()
    ]
    assert shared == []


def test_map_only_executor_object():
    class MapOnly:  # e.g. an MPI pool exposing only map(fn, iterable)
        def map(self, fn, items):
            return [fn(x) for x in items]

    probs = _toy.problems(3, fail=(0,))
    runner = resolve_runner(MapOnly())
    assert isinstance(runner, MapRunner)
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 3 problems failed"):
        res = _run(MapOnly(), probs)
    _check_equal(res, _reference(probs, _toy.build, 7))
    _check_failure(res, "p000")


def test_an_interrupted_call_keeps_the_finished_problems_on_the_exception():
    # without out= nothing is on disk: the problems fitted before the interrupt ride on it
    probs = _toy.problems(4, fail=(2,))
    with pytest.raises(KeyboardInterrupt) as err:
        _run("sequential", probs, builder=_toy.build_interrupt)
    part = err.value.partial_result
    assert part.idata is None and list(part.per_problem) == ["p000", "p001"]
    assert part.table.index.tolist() == ["p000", "p001"] and part.seed == 7
    assert (part.table["status"] == "ok").all()


def test_resume_after_crash_skips_finished_problems(tmp_path):
    probs = _toy.problems(4, fail=(2,))
    with pytest.raises(KeyboardInterrupt):
        _run("sequential", probs, builder=_toy.build_interrupt, out=tmp_path)
    done = sorted(p.stem for p in tmp_path.glob("*.json"))
    assert done == ["p000", "p001"]
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("p00[01].*")}
    fixed = _toy.problems(4)
    res = _run("sequential", fixed, builder=_toy.build_interrupt, out=tmp_path)
    assert res.table["resumed"].tolist() == [True, True, False, False]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("p00[01].*")} == stamps
    _check_equal(res, _reference(fixed, _toy.build, 7))
    meta = json.loads((tmp_path / "p003.json").read_text())
    assert meta["status"] == "ok" and meta["seed"] == problem_seed(7, "p003")
    # a third run recomputes nothing
    again = _run("sequential", fixed, builder=_toy.build_interrupt, out=tmp_path)
    assert again.table["resumed"].all() and again.executor == "none (all resumed)"
    _check_equal(again, _reference(fixed, _toy.build, 7))


def test_failed_problems_are_retried_on_rerun(tmp_path):
    probs = _toy.problems(3, fail=(1,))
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 3 problems failed"):
        first = _run("sequential", probs, out=tmp_path)
    assert first.failed == ["p001"]
    assert json.loads((tmp_path / "p001.json").read_text())["status"] == "error"
    assert not (tmp_path / "p001.nc").exists()
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 3 problems failed"):
        kept = _run("sequential", probs, out=tmp_path, retry_failed=False)
    assert kept.table["resumed"].all() and kept.failed == ["p001"]
    second = _run("sequential", _toy.problems(3), out=tmp_path)
    assert second.table["resumed"].tolist() == [True, False, True]
    assert second.failed == []


def test_all_failed_gives_no_idata():
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"):
        res = _run("sequential", _toy.problems(2, fail=(0, 1)))
    assert res.idata is None and res.failed == ["p000", "p001"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="executor"):
        _run("spark", _toy.problems(1))
    with pytest.raises(TypeError, match="executor"):
        _run(object(), _toy.problems(1))
    with pytest.raises(TypeError, match="build"):
        fit_many([1], build=3, executor="sequential")
    with pytest.raises(ValueError, match="collide"):  # two rows labelled "1"
        fit_many({1: 1, "1": 2}, _toy.build, executor="sequential")
    with pytest.raises(ValueError, match="max_workers"):
        _run("local", _toy.problems(1), max_workers=0)


@pytest.mark.parametrize("name,module", [("ray", "ray"), ("dask", "dask.distributed")])
def test_missing_extra_is_reported(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"bayesphys\[distributed\]"):
        _run(name, _toy.problems(1))


def test_ray_equals_sequential_and_isolates_a_failure():
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    probs = _toy.problems(4, fail=(1,))
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 4 problems failed"):
        res = _run("ray", probs, max_workers=2)
    assert res.executor == "ray"
    assert not ray.is_initialized()  # the local instance started by fit_many was shut down
    _check_equal(res, _reference(probs, _toy.build, 7))
    _check_failure(res, "p001")


@pytest.mark.slow  # ~8 s idle, > 20 s on the shared 2-core machine (worker torch imports)
def test_dask_equals_sequential_and_isolates_a_failure():
    pytest.importorskip("dask.distributed")
    probs = _toy.problems(4, fail=(3,))
    environ = dict(os.environ)
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 4 problems failed"):
        res = _run("dask", probs, builder=_toy.build_no_trim, max_workers=2)
    assert res.executor == "dask" and res.workers == 2
    # the nannies' pre-spawn variables (thread counts, PYTHONHASHSEED) were left in this
    # process's environment
    assert dict(os.environ) == environ
    _check_equal(res, _reference(probs, _toy.build, 7))
    _check_failure(res, "p003")


def test_dask_cluster_started_here_leaves_the_environment(monkeypatch):
    """A LocalCluster's nannies set their pre-spawn variables in the starting process's own
    environment (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) and leave them; the cluster fit_many
    starts gives the caller's environment back."""
    distributed = pytest.importorskip("dask.distributed")
    from bayesphys.distributed import _pool_runners

    class FakeCluster:
        def __init__(self, **kwargs):
            os.environ["OMP_NUM_THREADS"] = "1"  # what Nanny.start does before spawning
            os.environ["PYTHONHASHSEED"] = "6640"

    class FakeClient:
        def __init__(self, cluster, set_as_default=True):
            self.cluster = cluster

        def scheduler_info(self):
            return {"workers": {"w0": {}}}

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", FakeClient)
    monkeypatch.setattr(_pool_runners, "DaskRunner", lambda client, cluster, n: (client, n))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    environ = dict(os.environ)
    client, workers = _pool_runners._dask_runner(None, 1, None)
    assert isinstance(client, FakeClient) and workers == 1
    assert dict(os.environ) == environ


def test_dask_client_passed_in_is_left_running():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        probs = _toy.problems(2)
        res = _run(client, probs)
        _check_equal(res, _reference(probs, _toy.build, 7))
        assert client.status == "running"


@pytest.mark.parametrize(
    "kw,err",
    [
        ({"max_workers": 2.5}, TypeError),
        ({"threads_per_worker": 0}, ValueError),
        ({"threads_per_worker": True}, TypeError),
        ({"num_samples": 0}, ValueError),
        ({"num_chains": 1.5}, TypeError),
    ],
)
def test_size_arguments_get_the_core_check(kw, err):
    name = next(iter(kw))
    with pytest.raises(err, match=f"{name}: expected an int"):
        fit_many(_toy.problems(1), _toy.build, executor="sequential", progress=False, **kw)


def test_no_problems_gives_an_empty_table_with_its_columns():
    res = fit_many({}, _toy.build, executor="sequential", progress=False)
    assert res.idata is None and res.per_problem == {}
    assert res.failed == [] and res.ok == []
    assert "status" in res.table.columns and len(res.table) == 0


class _SendFailsPool:
    """Like ``multiprocessing.Pool.imap_unordered``: a task that cannot be pickled raises its
    error in place of its result, and the iterator goes on with the other tasks."""

    def imap_unordered(self, fn, items):
        def call(item):
            if item[1].problem.get("unpicklable"):
                raise TypeError("cannot pickle '_thread.lock' object")
            return fn(item)

        return _tasks.ResumingIterator(call, items)


def test_map_pool_keeps_the_results_after_one_task_fails_to_send():
    probs = _toy.problems(3)
    probs["p000"]["unpicklable"] = True
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 3 problems failed"):
        res = _run(_SendFailsPool(), probs)
    assert res.failed == ["p000"]
    assert "cannot pickle" in res.table.loc["p000", "error"]
    assert "task 0 (problem 'p000') failed" in res.table.loc["p000", "error"]
    ref = _reference(probs, _toy.build, 7)
    del ref["p000"]
    _check_equal(res, ref)


def test_map_pool_errors_without_a_task_name_every_task_they_may_belong_to(tmp_path):
    probs = _toy.problems(4)
    for pid in ("p001", "p003"):
        probs[pid]["unpicklable"] = True
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 4 problems failed"):
        res = _run(_SendFailsPool(), probs, out=tmp_path)
    assert res.failed == ["p001", "p003"]
    for pid in res.failed:
        err = res.table.loc[pid, "error"]
        assert f"(problem {pid!r}) failed" in err and "cannot pickle" in err
        assert "(problem 'p001'), task 3 (problem 'p003')" in err
    # the finished problems are written as they come, whatever the others did
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["p000.nc", "p002.nc"]


def _export_bad_attr(model, post, seed):
    idata = post.to_inference_data(num_samples=NS, seed=seed)
    if model.problem.get("bad_attr"):
        idata.posterior.attrs["settings"] = {"steps": STEPS}  # netCDF refuses a dict attribute
    return idata


def test_a_problem_that_cannot_be_written_is_recorded_and_the_others_finish(tmp_path):
    probs = _toy.problems(4)
    probs["p001"]["bad_attr"] = True
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 4 problems failed"):
        res = _run("sequential", probs, out=tmp_path, export=_export_bad_attr)
    assert res.failed == ["p001"]
    assert "writing to" in res.table.loc["p001", "error"]
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["p000.nc", "p002.nc", "p003.nc"]
    assert not list(tmp_path.glob(".*.tmp"))
    assert json.loads((tmp_path / "p001.json").read_text())["status"] == "error"
    probs["p001"]["bad_attr"] = False
    again = _run("sequential", probs, out=tmp_path, export=_export_bad_attr)
    assert again.table["resumed"].tolist() == [True, False, True, True] and again.failed == []


def test_resume_refits_files_written_with_another_seed_or_build(tmp_path):
    probs = _toy.problems(2)
    _run("sequential", probs, out=tmp_path)  # seed 7
    other = fit_many(
        probs,
        _toy.build,
        executor="sequential",
        seed=8,
        num_samples=NS,
        progress=False,
        fit_kwargs={"steps": STEPS},
        out=tmp_path,
    )
    assert not other.table["resumed"].any()
    ref8 = _reference(probs, _toy.build, 8)
    for pid, expected in ref8.items():
        np.testing.assert_array_equal(_draws(other, pid), expected)
    assert (other.table["seed"] == [problem_seed(8, p) for p in probs]).all()
    # another builder with the same seed does not pick up the files of the first
    glob = _run("sequential", probs, builder=_toy.build_global, out=tmp_path)
    assert not glob.table["resumed"].any()
    _check_equal(glob, _reference(probs, _toy.build_global, 7))
    # and the same call again resumes everything
    assert _run("sequential", probs, builder=_toy.build_global, out=tmp_path).table["resumed"].all()


def test_resume_refits_files_written_with_other_settings(tmp_path):
    """Only the seed and build were compared: another num_samples resumed the stale draws (or
    ended in a CombineError when new problems joined the call)."""
    from bayesphys.distributed._records import _settings_key

    def run(probs, **kw):
        args = dict(num_samples=NS, fit_kwargs={"steps": STEPS})
        args.update(kw)
        return fit_many(
            probs, _toy.build, executor="sequential", seed=3, progress=False, out=tmp_path, **args
        )

    probs = _toy.problems(2)
    run(probs)
    assert run(probs).table["resumed"].all()
    more = run(_toy.problems(3), num_samples=NS + 2)
    assert not more.table["resumed"].any()
    assert group_dataset(more.idata, "posterior").sizes["draw"] == NS + 2
    assert (
        not run(probs, num_samples=NS + 2, fit_kwargs={"steps": STEPS + 1}).table["resumed"].any()
    )
    assert (
        not run(probs, num_samples=NS + 2, fit_kwargs={"steps": STEPS + 1}, num_chains=2)
        .table["resumed"]
        .any()
    )
    # the fingerprint is stable across sessions: no memory addresses, callables by name
    k1 = _settings_key(fit_kwargs={"callback": _toy.build, "obj": object()}, name="u")
    k2 = _settings_key(fit_kwargs={"obj": object(), "callback": _toy.build}, name="u")
    assert k1 == k2 and k1 != _settings_key(fit_kwargs={"callback": _toy.build_global}, name="u")
    # a sequence's values are fingerprinted, not its type: fit(**fit_kwargs) reads a list and
    # a tuple of the same values alike, so their records resume; other values are refitted
    as_tuple = _settings_key(fit_kwargs={"grid": (8, 8)}, name="u")
    assert as_tuple == _settings_key(fit_kwargs={"grid": [8, 8]}, name="u")
    assert as_tuple != _settings_key(fit_kwargs={"grid": (8, 9)}, name="u")


def test_problems_on_different_grids_are_not_padded_with_nan():
    """Exported coordinates that differ between problems (grids of 41 and 51 points) are
    refused instead of being stacked onto the union of the grids and padded with NaN."""
    from functools import partial

    from bayesphys.examples.cohort import LinearGaussianModel, export_cohort, make_cohort

    probs = {"a": make_cohort(1, n=41, m=10)["p000"], "b": make_cohort(1, n=51, m=10)["p000"]}
    with pytest.raises(ValueError, match="per_problem") as info:
        fit_many(
            probs,
            LinearGaussianModel,
            executor="sequential",
            seed=0,
            progress=False,
            fit_kwargs={"steps": 5},
            export=partial(export_cohort, num_samples=5),
        )
    msg = str(info.value)
    assert "variable 'u' of group 'posterior'" in msg
    assert "(1, 5, 41) in problem(s) 'a'" in msg and "(1, 5, 51) in problem(s) 'b'" in msg
    # the fits are not lost with the error: the per-problem results and the table come with it
    assert sorted(info.value.result.per_problem) == ["a", "b"]
    assert info.value.result.ok == ["a", "b"] and info.value.result.idata is None


def test_a_drawn_base_seed_is_recorded_and_reproduces_the_run(tmp_path):
    # seed=None drew secrets.randbits(32) and kept only its BLAKE2b hashes: not repeatable
    probs = _toy.problems(2)
    kw = {"executor": "sequential", "num_samples": NS, "progress": False}
    kw["fit_kwargs"] = {"steps": STEPS}
    first = fit_many(probs, _toy.build, seed=None, out=tmp_path, **kw)
    base = first.seed
    assert isinstance(base, int) and 0 <= base < 2**32
    assert first.table["base_seed"].tolist() == [base, base]
    assert first.table["seed"].tolist() == [problem_seed(base, pid) for pid in probs]
    assert json.loads((tmp_path / "p001.json").read_text())["base_seed"] == base
    again = fit_many(probs, _toy.build, seed=base, **kw)
    assert again.seed == base and again.table["seed"].tolist() == first.table["seed"].tolist()
    _check_equal(again, {pid: _draws(first, pid) for pid in probs})
    # resumed rows report the base seed of the run that fitted them
    resumed = fit_many(probs, _toy.build, seed=None, out=tmp_path, **kw)
    assert resumed.table["resumed"].all() and resumed.table["base_seed"].tolist() == [base, base]
    # ... and the call reports that base seed, not a new draw; a partly resumed run fits the
    # rest with it, so the whole table repeats with seed=result.seed
    assert resumed.seed == base
    (tmp_path / "p001.json").unlink()
    partly = fit_many(probs, _toy.build, seed=None, out=tmp_path, **kw)
    assert partly.seed == base and partly.table["seed"].tolist() == first.table["seed"].tolist()
    # a numpy integer is recorded as a Python int (JSON), a string is refused up front
    assert type(fit_many({}, _toy.build, seed=np.int64(5), **kw).seed) is int
    with pytest.raises(TypeError, match="seed: expected an int, received str"):
        fit_many({}, _toy.build, seed="5", **kw)


def _export_extra_var(model, post, seed):
    """Adds a variable ``D`` for one problem only (e.g. a parameter only some models have)."""
    idata = post.to_inference_data(num_samples=NS, seed=seed)
    if model.problem.get("with_D"):
        idata.posterior["D"] = idata.posterior["u"].isel(u_dim_0=0)
    return idata


def test_a_variable_of_some_problems_only_is_refused_not_padded_with_nan():
    # it used to be stacked with NaN for the problems without it, silently
    probs = _toy.problems(3)
    probs["p001"]["with_D"] = True
    with pytest.raises(CombineError) as info:
        _run("sequential", probs, export=_export_extra_var)
    msg = str(info.value)
    assert "variable 'D' of group 'posterior' differs" in msg
    assert "in problem(s) 'p001'" in msg and "missing in problem(s) 'p000', 'p002'" in msg
    res = info.value.result
    assert sorted(res.per_problem) == list(probs) and res.failed == []


def _post(n=4, var="u", x=None, extra=None):
    import xarray as xr

    data = {var: (("chain", "draw", "x"), np.zeros((1, 3, n)))}
    if extra:
        data[extra] = (("chain", "draw"), np.zeros((1, 3)))
    return xr.Dataset(data, coords={} if x is None else {"x": x})


def _obs():
    import xarray as xr

    return xr.Dataset({"y": ("obs", np.zeros(2))})


COMBINE_CASES = {  # per-problem groups that cannot be stacked, and what the message must name
    "shape": (
        {"a": {"posterior": _post(4)}, "b": {"posterior": _post(4)}, "c": {"posterior": _post(5)}},
        "problem",
        [
            "variable 'u' of group 'posterior'",
            "(1, 3, 4) in problem(s) 'a', 'b'",
            "(1, 3, 5) in problem(s) 'c'",
        ],
    ),
    "coordinate": (
        {
            "a": {"posterior": _post(3, x=[0.0, 0.5, 1.0])},
            "b": {"posterior": _post(3, x=[0.0, 0.4, 0.8])},
        },
        "problem",
        ["coordinate 'x' of group 'posterior'", "problem 'a'", "problem(s) 'b'", "0.8"],
    ),
    "empty coordinate": (
        {"a": {"posterior": _post(0, x=[])}, "b": {"posterior": _post(0)}},
        "problem",
        ["coordinate 'x' of group 'posterior' differs", "'a' (no labels)", "'b' (absent)"],
    ),
    "extra coordinate": (
        {"a": {"posterior": _post(3)}, "b": {"posterior": _post(3, x=[0.0, 0.5, 1.0])}},
        "problem",
        ["coordinate 'x' of group 'posterior' is in problem 'b' but not in problem 'a'"],
    ),
    # a non-index coordinate of one problem only: xarray attached problem 'a''s labels to
    # every problem (one 'label' along x, not one per problem)
    "non-index coordinate": (
        {
            "a": {"posterior": _post(3).assign_coords(label=("x", ["p", "q", "r"]))},
            "b": {"posterior": _post(3)},
        },
        "problem",
        ["coordinate 'label' of group 'posterior' is in problem(s) 'a' but missing from 'b'"],
    ),
    "variable": (
        {"a": {"posterior": _post(extra="D")}, "b": {"posterior": _post()}},
        "problem",
        ["variable 'D'", "in problem(s) 'a'", "missing in problem(s) 'b'"],
    ),
    "group": (
        {"a": {"posterior": _post(), "observed_data": _obs()}, "b": {"posterior": _post()}},
        "problem",
        ["group 'observed_data' is in problem(s) 'a' but missing from 'b'"],
    ),
    "problem_dim": (
        {"a": {"posterior": _post()}, "b": {"posterior": _post()}},
        "x",
        ["problem_dim 'x' is already a dimension or variable of group 'posterior'"],
    ),
}


@pytest.mark.parametrize("case", list(COMBINE_CASES))
def test_combine_names_the_problems_and_what_differs(case):
    per_problem, dim, parts = COMBINE_CASES[case]
    with pytest.raises(CombineError) as info:
        _combine(per_problem, dim)
    for part in parts:
        assert part in str(info.value)
    assert "error.result.per_problem" in str(info.value)


def test_bad_arguments_are_refused_before_anything_is_read_or_run(tmp_path):
    probs = _toy.problems(1)
    _run("sequential", probs, out=tmp_path)
    # everything resumes, so no runner is built: an unknown executor used to pass unnoticed
    with pytest.raises(ValueError, match="executor: expected one of"):
        _run("spark", probs, out=tmp_path)
    with pytest.raises(TypeError, match="export: expected a callable"):
        _run("sequential", probs, export="netcdf")
    with pytest.raises(TypeError, match="posterior_kwargs: expected a mapping"):
        _run("sequential", probs, posterior_kwargs=["num_samples"])
    for dim in ("draw", ""):
        with pytest.raises(ValueError, match="problem_dim: expected a dimension name"):
            _run("sequential", probs, problem_dim=dim)
    with pytest.raises(TypeError, match="problem_dim: expected a str"):
        _run("sequential", probs, problem_dim=3)
    with pytest.raises(
        TypeError,
        match=(
            "^problems: expected a mapping id -> problem or an iterable of problems, received int"
        ),
    ):
        _run("sequential", 3)


class _CountingRunner(SequentialRunner):
    closed = 0

    def close(self):
        type(self).closed += 1


def test_a_runner_passed_in_is_left_open():
    runner = _CountingRunner(threads=1)
    for _ in range(2):
        res = _run(runner, _toy.problems(1))
        assert res.ok == ["p000"]
    assert _CountingRunner.closed == 0


def test_an_unreadable_record_is_fitted_again_when_failures_are_kept(tmp_path):
    probs = _toy.problems(2, fail=(1,))
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 2 problems failed"):
        _run("sequential", probs, out=tmp_path)
    (tmp_path / "p001.json").write_text('{"status": "err')  # cut short, e.g. a full disk
    # it used to stop the whole call with a JSONDecodeError
    res = _run("sequential", _toy.problems(2), out=tmp_path, retry_failed=False)
    assert res.table["resumed"].tolist() == [True, False] and res.failed == []


def _damage(path, how: str) -> None:
    """Replace ``path`` by a damaged copy (a new file, as a rerun or a disk would leave it)."""
    data = path.read_bytes()
    path.unlink()
    if how == "truncated":  # a run killed while writing, or a full disk
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bad_bytes":  # a disk error: bytes that are neither netCDF nor UTF-8
        path.write_bytes(b"\xff\xfe\x00garbage" * 64)
    elif how != "missing":
        raise ValueError(how)


@pytest.mark.parametrize("retry_failed", [True, False])
@pytest.mark.parametrize(
    "suffix, how",
    [(".nc", "truncated"), (".nc", "empty"), (".nc", "missing"), (".json", "bad_bytes")],
)
def test_a_damaged_record_is_fitted_again_and_the_others_resume(
    tmp_path, suffix, how, retry_failed
):
    """A finished problem whose saved file cannot be read is fitted again and its files are
    overwritten; the call goes on. A damaged .nc used to stop the whole call (OSError), a
    missing one was reported as finished but left out of idata with retry_failed=False, and
    a .json of bytes that are not UTF-8 stopped the call (UnicodeDecodeError)."""
    probs = _toy.problems(2)
    _run("sequential", probs, out=tmp_path)
    _damage(tmp_path / f"p000{suffix}", how)
    res = _run("sequential", probs, out=tmp_path, retry_failed=retry_failed)
    assert res.table["resumed"].tolist() == [False, True] and res.failed == []
    _check_equal(res, _reference(probs, _toy.build, 7))
    assert not list(tmp_path.glob(".*.tmp"))
    # the files were rewritten: the next run reads them back
    again = _run("sequential", probs, out=tmp_path, retry_failed=retry_failed)
    assert again.table["resumed"].all()
    _check_equal(again, _reference(probs, _toy.build, 7))


def test_a_crash_between_the_nc_and_the_json_leaves_no_record_that_looks_finished(
    tmp_path, monkeypatch
):
    """A refit (here by another builder) that stops after its .nc is in place but before its
    .json is must not leave the old record next to the new draws: they used to be resumed as
    the old builder's result."""
    import os

    probs = _toy.problems(1)
    _run("sequential", probs, out=tmp_path)  # _toy.build: p000.json + p000.nc
    replace = os.replace

    def crash_before_json(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("simulated crash")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_before_json)
    with pytest.raises(KeyboardInterrupt):
        _run("sequential", probs, builder=_toy.build_global, out=tmp_path)
    monkeypatch.setattr(os, "replace", replace)
    left = list(tmp_path.glob(".*.tmp"))
    res = _run("sequential", probs, out=tmp_path)
    assert res.table["resumed"].tolist() == [False]
    _check_equal(res, _reference(probs, _toy.build, 7))
    assert not left  # the interrupted write removed its temporary file


def test_two_writers_sharing_out_use_their_own_temporary_files(tmp_path, monkeypatch):
    """Every record write goes through a temporary name of its own: two fit_many calls on
    one ``out`` used the same ``.<id>.nc.tmp`` / ``.<id>.json.tmp`` and could publish each
    other's half-written files."""
    import os

    seen = []
    replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    probs = _toy.problems(1)
    _run("sequential", probs, out=tmp_path)
    _run("sequential", probs, out=tmp_path, builder=_toy.build_global)  # refits p000
    assert len(seen) == 4 and len(set(seen)) == 4  # nc + json, twice: four distinct names
    assert all(n.endswith(".tmp") and n.startswith(".") for n in seen)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="the sweep checks processes on POSIX only")
def test_temporary_files_a_killed_writer_left_are_swept(tmp_path):
    """A writer killed between writing a temporary file and renaming it left the file in
    ``out`` for good (the names are never reused); the next call removes it. Files of live
    processes and of other machines are kept."""
    import os
    import subprocess

    from bayesphys._files import host_token as _host

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # its pid no longer exists
    stale = tmp_path / f".p000.nc.{_host()}.{done.pid}.0123abcd.tmp"
    live = tmp_path / f".p000.json.{_host()}.{os.getpid()}.89abcdef.tmp"
    foreign = tmp_path / f".p000.nc.other-machine.{done.pid}.0123abcd.tmp"
    for path in (stale, live, foreign):
        path.write_text("half-written")
    res = _run("sequential", _toy.problems(1), out=tmp_path)
    assert res.failed == []
    assert not stale.exists()
    assert live.exists() and foreign.exists()


def test_resume_tells_partials_arrays_and_problem_data_apart(tmp_path):
    """The resume check compared a builder's qualified name ('partial' for every partial),
    arrays by a repr that elides their middle, and never the problem's data: each reused
    stale draws."""
    from functools import partial

    from bayesphys.distributed._records import _build_name, _settings_key

    def run(probs, build, sub):
        return fit_many(
            probs,
            build,
            executor="sequential",
            seed=3,
            progress=False,
            out=tmp_path / sub,
            num_samples=NS,
            fit_kwargs={"steps": STEPS},
        )

    probs = _toy.problems(2)
    a = run(probs, partial(_toy.build_scaled, noise=0.1), "p")
    b = run(probs, partial(_toy.build_scaled, noise=5.0), "p")
    assert not b.table["resumed"].any()
    assert not np.array_equal(_draws(a, "p000"), _draws(b, "p000"))
    assert run(probs, partial(_toy.build_scaled, noise=5.0), "p").table["resumed"].all()
    # the problem's data: a regenerated cohort in the same folder is refitted
    run(probs, _toy.build, "d")
    other = {k: dict(v, y=v["y"] + 1.0) for k, v in probs.items()}
    assert not run(other, _toy.build, "d").table["resumed"].any()
    # large arrays that differ only in the middle, and closures over different values
    x, y = np.zeros(5000), np.zeros(5000)
    y[2500] = 1.0
    assert _settings_key(fit_kwargs={"w": x}) != _settings_key(fit_kwargs={"w": y})
    assert _settings_key(w=torch.as_tensor(x)) != _settings_key(w=torch.as_tensor(y))

    def closure(v):
        return lambda problem, seed=None: v

    assert _build_name(closure(1)) != _build_name(closure(2))
    assert _build_name(closure(1)) == _build_name(closure(1))
    assert _build_name(_toy.build_interrupt) == _build_name(_toy.build_interrupt)


def test_a_builder_closing_over_a_module_runs_and_resumes(tmp_path):
    """A builder closure that captures a module (a local ``import torch``) crashed fit_many
    before any fit: the fingerprint walked the module's namespace as an object's attributes
    and torch's raised a TypeError (review of 2026-12-03)."""
    import torch as local_torch

    from bayesphys.distributed._records import _build_name

    def build(problem, seed=None):
        local_torch.manual_seed(0)
        return _toy.build(problem, seed=seed)

    kw = dict(executor="sequential", seed=3, progress=False, out=tmp_path, num_samples=NS)
    first = fit_many(_toy.problems(1), build, **kw)
    assert list(first.table["status"]) == ["ok"]
    assert fit_many(_toy.problems(1), build, **kw).table["resumed"].all()
    assert _build_name(build).startswith(build.__qualname__ + ":")


def test_draws_of_another_runs_record_under_the_same_name_are_not_resumed(tmp_path):
    """Two runs writing one id into a shared out/ could leave one's .nc beside the other's
    .json (each file renamed whole, the pair not): the record resumed the other run's draws
    (review of 2026-12-03). Both files now carry one token, and a mismatch is fitted again."""
    import shutil

    probs = _toy.problems(1)
    kw = dict(executor="sequential", seed=3, progress=False, fit_kwargs={"steps": STEPS})
    mine = fit_many(probs, _toy.build, out=tmp_path / "a", num_samples=NS, **kw)
    fit_many(probs, _toy.build, out=tmp_path / "b", num_samples=NS + 5, **kw)
    shutil.copy(tmp_path / "b" / "p000.nc", tmp_path / "a" / "p000.nc")
    again = fit_many(probs, _toy.build, out=tmp_path / "a", num_samples=NS, **kw)
    assert not again.table["resumed"].any()
    np.testing.assert_array_equal(_draws(again, "p000"), _draws(mine, "p000"))
    meta = json.loads((tmp_path / "a" / "p000.json").read_text())
    assert meta["bayesphys_version"] == bayesphys.__version__
    assert (
        fit_many(probs, _toy.build, out=tmp_path / "a", num_samples=NS, **kw).table["resumed"].all()
    )


def test_a_runner_that_does_not_start_keeps_the_resumed_problems(tmp_path, monkeypatch):
    """The exception of a runner that failed to start carried no partial_result, so the
    problems resumed from out/ were lost with it (the docs promise them)."""
    probs = _toy.problems(3)
    kw = dict(executor="sequential", seed=3, progress=False, out=tmp_path, num_samples=NS)
    fit_many(dict(list(probs.items())[:2]), _toy.build, **kw)

    def broken(*a, **k):
        raise RuntimeError("the cluster is down")

    monkeypatch.setattr("bayesphys.distributed.executors.resolve_runner", broken)
    with pytest.raises(RuntimeError, match="cluster is down") as info:
        fit_many(probs, _toy.build, **kw)
    part = info.value.partial_result
    assert int(part.table["resumed"].sum()) == 2
    # not "none (all resumed)": the third problem was neither resumed nor fitted
    assert part.executor == "none (the executor did not start)" and part.workers is None


def test_settings_fingerprint_of_sets_and_grad_tensors_is_stable(tmp_path):
    """A set's iteration order (strings) changes between sessions, so its repr gave another
    key in every session; a bfloat16 tensor that requires grad could not be fingerprinted."""
    import subprocess

    code = (
        "from bayesphys.distributed._records import _settings_key;"
        "print(_settings_key(fit_kwargs={'tags': {'alpha', 'beta', 'gamma', 'delta'}}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**__import__("os").environ, "PYTHONHASHSEED": str(h)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for h in (1, 2, 3)
    }
    assert len(keys) == 1
    from bayesphys.distributed._records import _settings_key

    w = torch.ones(3, dtype=torch.bfloat16, requires_grad=True)
    assert _settings_key(w=w) != _settings_key(w=w.detach() * 2)


def test_a_full_disk_keeps_the_finished_draws_in_the_result(tmp_path, monkeypatch):
    import errno

    import bayesphys._netcdf as idmod

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(idmod, "_write_netcdf", disk_full)
    probs = _toy.problems(2)
    res = _run("sequential", probs, out=tmp_path)
    # the fits finished: their draws are in the result, the table says the write failed
    assert res.failed == [] and res.idata is not None
    assert sorted(res.per_problem) == ["p000", "p001"]
    for pid in ("p000", "p001"):
        assert "No space left" in res.table.loc[pid, "write_error"]
        # no record is left on disk, so a rerun fits the problem again (whatever retry_failed)
        assert not (tmp_path / f"{pid}.json").exists()
    _check_equal(res, _reference(probs, _toy.build, 7))
    monkeypatch.undo()
    again = _run("sequential", probs, out=tmp_path, retry_failed=False)
    assert not again.table["resumed"].any() and again.table["write_error"].isna().all()


def test_resuming_records_of_several_base_seeds_with_seed_none_warns(tmp_path):
    probs = _toy.problems(4)
    kw = dict(executor="sequential", num_samples=NS, progress=False, out=tmp_path)
    kw["fit_kwargs"] = {"steps": STEPS}
    fit_many({k: probs[k] for k in ("p000", "p001")}, _toy.build, seed=1, **kw)
    fit_many({k: probs[k] for k in ("p002", "p003")}, _toy.build, seed=2, **kw)
    with pytest.warns(RuntimeWarning, match="2 different base seeds") as rec:
        res = fit_many(probs, _toy.build, seed=None, **kw)
    (w,) = [w for w in rec if "different base seeds" in str(w.message)]
    assert w.filename == __file__  # the caller's line
    assert res.table["resumed"].all()
    assert res.table["base_seed"].tolist() == [1, 1, 2, 2]


def test_ids_outside_plain_names_get_distinct_file_stems():
    """Ids differing only in characters a file name cannot carry ("模型" / "数据", "a b" /
    "a/b") collided as one stem; they keep their safe characters plus a hash of the id, plain
    names stay as they are, Windows' reserved names and hidden names are hashed."""
    from bayesphys.distributed._records import _stem

    assert _stem("p000") == "p000" and _stem(7) == "7" and _stem("run.v2") == "run.v2"
    for a, b in (("模型", "数据"), ("a b", "a/b"), ("résultat", "r_sultat")):
        assert _stem(a) != _stem(b)
    assert _stem("résultat").startswith("r_sultat-")
    for name in ("CON", "aux", "nul.txt", "..", ".hidden"):
        assert _stem(name) != name and "-" in _stem(name)


@pytest.mark.parametrize("setting", [{"num_samples": 5}, {"num_chains": 2}, {"name": "v"}])
def test_draw_settings_with_an_export_are_refused(setting):
    """With ``export`` the export makes the draws: ``num_samples`` / ``num_chains`` / ``name``
    were accepted and silently ignored (the draws had the export's own count and name)."""
    key = next(iter(setting))
    with pytest.raises(ValueError, match=f"{key}: do not apply with export="):
        fit_many(
            _toy.problems(1),
            _toy.build,
            executor="sequential",
            seed=0,
            progress=False,
            fit_kwargs={"steps": STEPS},
            export=_export_bad_attr,
            **setting,
        )


def test_tuple_ids_are_labels_of_the_problem_dimension():
    """Tuple ids (``(patient, visit)``) made pandas build a MultiIndex for the table, which
    refused the dimension name after every fit had run: the fits were lost with a pandas
    ``ValueError``. They are plain labels of the table and of ``problem_dim``."""
    base = _toy.problems(3, fail=(2,))
    probs = {(k, "visit"): p for k, p in enumerate(base.values())}
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 3 problems failed"):
        res = _run("sequential", probs)
    assert list(res.table.index) == list(probs)
    assert res.failed == [(2, "visit")] and res.ok == [(0, "visit"), (1, "visit")]
    u = group_dataset(res.idata, "posterior")["u"]
    assert u.dims == ("chain", "draw", "problem", "u_dim_0")
    assert list(u["problem"].values) == [(0, "visit"), (1, "visit")]
    ref = _reference(probs, _toy.build, 7)
    for pid in ref:
        np.testing.assert_array_equal(u.sel(problem=[pid]).values[:, :, 0], ref[pid])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"name": 5}, "name: expected a non-empty string"),
        ({"name": ""}, "name: expected a non-empty string"),
        ({"retry_failed": "no"}, "retry_failed: expected True or False"),
    ],
)
def test_name_and_retry_failed_are_checked_before_any_fit(kw, match):
    """A bad ``name`` failed every problem in its export, after all the fitting; a truthy
    string such as ``retry_failed="no"`` retried the failed problems."""

    def build_not_called(problem, seed=None):
        raise AssertionError("a problem was built before the arguments were checked")

    with pytest.raises(TypeError, match=match):
        _run("sequential", _toy.problems(1), builder=build_not_called, **kw)


def test_a_sample_posterior_keeps_its_chains_unless_counts_are_given(tmp_path):
    """A posterior of stored draws (SamplePosterior) exports its chains as they are when
    neither num_samples nor num_chains is given (a default of 200 draws would refuse 10
    stored ones); given, they pick that many of the stored draws, and the records in ``out``
    made with the stored chains are not resumed as if they were those."""
    probs = _toy.problems(2)
    kw = dict(executor="sequential", seed=7, progress=False, fit_kwargs={"steps": 2})
    res = fit_many(probs, _toy.build_stored, out=tmp_path, **kw)
    u = group_dataset(res.idata, "posterior")["u"]
    assert u.shape == (2, 5, 2, 41) and res.table["status"].eq("ok").all()
    picked = fit_many(probs, _toy.build_stored, out=tmp_path, num_samples=4, **kw)
    assert not picked.table["resumed"].any()
    assert group_dataset(picked.idata, "posterior")["u"].shape == (1, 4, 2, 41)
    again = fit_many(probs, _toy.build_stored, out=tmp_path, **kw)
    assert not again.table["resumed"].any()  # the picked records are not the stored chains
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"):
        too_many = fit_many(probs, _toy.build_stored, num_samples=11, **kw)
    assert too_many.table["status"].eq("error").all()
    assert too_many.table["error"].str.contains("num_samples: 11 draws").all()


def test_combine_stacks_the_problems_in_the_order_given():
    """The problem coordinate follows the order of the per-problem results (fit_many passes
    them in the order of its problems, as its table), not a sorted order of the ids, and each
    problem's values stay under its own label."""
    per_problem = {
        pid: {"posterior": _post(3) + k} for k, pid in enumerate(("p10", "b", "p2", "a"))
    }
    idata = _combine(per_problem, "problem")
    u = group_dataset(idata, "posterior")["u"]
    assert list(u["problem"].values) == ["p10", "b", "p2", "a"]
    assert u.dims[:3] == ("chain", "draw", "problem")
    for pid, groups in per_problem.items():
        np.testing.assert_array_equal(u.sel(problem=pid).values, groups["posterior"]["u"].values)


def test_ids_differing_only_in_case_collide_only_with_an_out_folder(tmp_path):
    probs = _toy.problems(1)
    both = {"Run": probs["p000"], "run": probs["p000"]}
    with pytest.raises(ValueError, match=r"problems: ids 'Run' and 'run' collide \(file stem"):
        _run("sequential", both, out=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was fitted or written
    res = _run("sequential", both)  # no files: two labels
    assert sorted(res.per_problem) == ["Run", "run"]


def test_a_disk_failure_removes_an_older_record_of_the_problem(tmp_path, monkeypatch):
    import errno

    import bayesphys._netcdf as idmod

    probs = _toy.problems(1)
    fit_many(
        probs,
        _toy.build,
        executor="sequential",
        seed=1,
        progress=False,
        out=tmp_path,
        num_samples=NS,
        fit_kwargs={"steps": STEPS},
    )
    assert (tmp_path / "p000.json").exists() and (tmp_path / "p000.nc").exists()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(idmod, "_write_netcdf", disk_full)
    res = _run("sequential", probs, out=tmp_path)  # another seed: refitted, then not written
    assert "No space left" in res.table.loc["p000", "write_error"]
    # the older record (another run's) is gone with it: out holds nothing of this problem
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failure_of_another_id_with_the_same_legacy_stem_is_not_kept(tmp_path, monkeypatch):
    # "a b" has the hashed stem "a_b-<hash>"; releases before it wrote "a_b", which is also
    # the plain id "a_b"'s stem: that problem's failed record (same data and builder) is not
    # "a b"'s to keep
    prob = _toy.problems(1)["p000"]
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1")  # build_no_trim fails while it is set
    with pytest.warns(RuntimeWarning, match="fit_many: 1 of 1 problems failed"):
        _run("sequential", {"a_b": prob}, builder=_toy.build_no_trim, out=tmp_path)
    assert json.loads((tmp_path / "a_b.json").read_text())["status"] == "error"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    res = fit_many(  # seed=None: the records' seeds are not compared
        {"a b": prob}, _toy.build_no_trim, executor="sequential", progress=False, out=tmp_path,
        retry_failed=False, num_samples=NS, fit_kwargs={"steps": STEPS},
    )  # fmt: skip
    assert res.table.loc["a b", "status"] == "ok" and not res.table.loc["a b", "resumed"]


def test_fingerprints_see_closures_without_defaults_and_nested_settings():
    from bayesphys.distributed._records import _build_name, _settings_key

    def builder_of(noise):
        def build(problem):  # a closure: no defaults, its captured value decides the model
            return noise

        return build

    assert _build_name(builder_of(0.1)) != _build_name(builder_of(5.0))
    assert _build_name(builder_of(0.1)) == _build_name(builder_of(0.1))
    assert _build_name(_toy.build_global) == "build_global"  # a plain function: its name

    def nested(lr):
        return {"fit_kwargs": {"options": {"inner": {"schedule": {"lr": lr}}}}}

    assert _settings_key(**nested(0.1)) != _settings_key(**nested(0.2))
    assert _settings_key(**nested(0.1)) == _settings_key(**nested(0.1))


class _Factory:
    def __init__(self, noise):
        self.noise = noise

    def build(self, problem):
        return self.noise


def test_fingerprints_of_bound_methods_sets_cycles_and_unbound_closures():
    """A builder that is a bound method differs by its object's attributes; sets by their
    members in any order; a cyclic or very deep setting is fingerprinted without recursing
    forever; a closure over a name not bound yet is fingerprinted by what it has."""
    from bayesphys.distributed._records import _build_name, _settings_key

    assert _build_name(_Factory(0.1).build) == _build_name(_Factory(0.1).build)
    assert _build_name(_Factory(0.1).build) != _build_name(_Factory(5.0).build)
    assert _settings_key(tags={"b", "a"}) == _settings_key(tags=frozenset({"a", "b"}))
    assert _settings_key(tags={"a", "b"}) != _settings_key(tags={"a"})
    cyclic = {"lr": 0.1}
    cyclic["self"] = cyclic
    assert _settings_key(opts=cyclic) == _settings_key(opts=cyclic)
    deep = deeper = {}
    for _ in range(20):
        deeper["x"] = {}
        deeper = deeper["x"]
    assert isinstance(_settings_key(opts=deep), str)

    def builder():
        def build(problem):
            return later(problem)

        first = _build_name(build)  # `later` is an empty cell here
        later = abs  # noqa: F841 - bound after the fingerprint above
        return first, _build_name(build)

    unbound, bound = builder()
    assert unbound != bound


def test_a_folder_written_under_the_legacy_file_stem_resumes(tmp_path):
    # releases before the hashed stems wrote "a b" as a_b.json / a_b.nc
    probs = {"a b": _toy.problems(1)["p000"]}
    first = _run("sequential", probs, out=tmp_path)
    (stem,) = {p.stem for p in tmp_path.glob("*.json")}
    assert stem.startswith("a_b-")
    for ext in ("json", "nc"):
        (tmp_path / f"{stem}.{ext}").rename(tmp_path / f"a_b.{ext}")
    again = _run("sequential", probs, out=tmp_path)
    assert again.table["resumed"].tolist() == [True]
    np.testing.assert_array_equal(_draws(again, "a b"), _draws(first, "a b"))


def test_a_legacy_file_of_another_id_or_a_record_without_groups_is_fitted_again(tmp_path):
    """'a b' and 'a?b' share the legacy stem a_b: the record's own id decides whose it is;
    a netCDF file holding no group has no draws to resume."""
    import xarray as xr

    probs = {"a b": _toy.problems(1)["p000"]}
    _run("sequential", probs, out=tmp_path)
    (stem,) = {p.stem for p in tmp_path.glob("*.json")}
    for ext in ("json", "nc"):
        (tmp_path / f"{stem}.{ext}").rename(tmp_path / f"a_b.{ext}")
    other = _run("sequential", {"a?b": probs["a b"]}, out=tmp_path)
    assert other.table["resumed"].tolist() == [False] and other.ok == ["a?b"]
    assert json.loads((tmp_path / "a_b.json").read_text())["id"] == "a b"  # left alone
    assert _run("sequential", probs, out=tmp_path).table["resumed"].tolist() == [True]
    (tmp_path / "a_b.nc").unlink()
    xr.Dataset().to_netcdf(tmp_path / "a_b.nc")  # a valid file without any group
    assert _run("sequential", probs, out=tmp_path).table["resumed"].tolist() == [False]


class _RecordingModel(_toy.LinearGaussianModel):
    seen: list = []

    def fit(self, **kw):
        type(self).seen.append(kw.get("progress"))
        return super().fit(**kw)


def _build_recording(problem, seed=None):
    return _RecordingModel(problem, seed=seed)


def test_fit_kwargs_progress_is_passed_on_and_otherwise_off():
    """Each problem's own progress bar is off unless fit_kwargs asks for it."""
    _RecordingModel.seen = []
    probs = _toy.problems(1)
    _run("sequential", probs, builder=_build_recording)
    kw = dict(executor="sequential", seed=7, num_samples=NS, progress=False)
    fit_many(probs, _build_recording, fit_kwargs={"steps": STEPS, "progress": True}, **kw)
    assert _RecordingModel.seen == [False, True]


def test_problem_seed_refuses_a_nan_id_and_reads_none_as_its_str():
    """A NaN id was seeded from its stable str 'nan', but equals no id that came back from a
    worker, so its problem's record was lost; None is taken as 'None', as documented."""
    import numpy as np

    for pid in (float("nan"), np.float64("nan"), ("p", float("nan"))):
        with pytest.raises(ValueError, match=r"problem_id: expected an id equal to itself"):
            problem_seed(0, pid)
    assert problem_seed(0, None) == problem_seed(0, "None")
    assert problem_seed(0, ("p", 1.5)) == problem_seed(0, "('p', 1.5)")
    built = []
    with pytest.raises(ValueError, match=r"problem_id: .*received nan"):
        fit_many({float("nan"): {}}, lambda p, seed=None: built.append(p), executor="sequential")
    assert not built  # refused before any fit
