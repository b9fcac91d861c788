"""A library call leaves the caller's process as it found it: thread counts, matplotlib
backend and figures, numpy's global stream (review of 2026-12-02; each test failed before)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from bayesphys import fit_many
from bayesphys.distributed._worker_threads import _restore_threads, limit_threads
from bayesphys.examples import load
from tests.distributed import _toy


def _sequential_fit_many(n: int) -> None:
    fit_many(
        _toy.problems(n),
        _toy.build,
        executor="sequential",
        seed=0,
        fit_kwargs={"steps": 3},
        progress=False,
    )


def _with_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def test_limiting_threads_for_a_task_restores_the_callers_count():
    before = _with_threads(2)
    try:
        prev = limit_threads(1)
        assert torch.get_num_threads() == 1
        _restore_threads(prev)
        assert torch.get_num_threads() == 2  # was 1: the OpenMP pool restored last reset it
    finally:
        torch.set_num_threads(before)


def test_a_sequential_fit_many_keeps_the_callers_threads():
    before = _with_threads(2)
    try:
        _sequential_fit_many(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_sequential_fit_many_puts_back_initialised_cuda_streams(monkeypatch):
    """Seeding a task reseeds every CUDA generator: states saved before are set back after
    (simulated: this machine may have no GPU)."""
    saved, restored = [torch.tensor([1, 2, 3], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    _sequential_fit_many(1)
    assert restored == [saved]


def test_an_example_keeps_the_backend_threads_and_open_figures(tmp_path):
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    before = _with_threads(2)
    matplotlib.use("svg")
    mine = plt.figure()
    try:
        np.random.seed(0)
        load("tutorial-arviz").main(["--smoke", "--out", str(tmp_path / "t")])
        after_tutorial = np.random.rand()
        load("poisson-coefficient").main(["--smoke", "--steps", "2", "--out", str(tmp_path / "p")])
        assert matplotlib.get_backend() == "svg"  # was switched to Agg
        assert plt.get_fignums() == [mine.number]  # was closed with plt.close("all")
        assert torch.get_num_threads() == 2  # poisson-coefficient left 1
        np.random.seed(0)
        assert after_tutorial == np.random.rand()  # az.plot_ppc drew from numpy's stream
    finally:
        plt.close(mine)
        matplotlib.use(backend)
        torch.set_num_threads(before)


def test_seeded_builds_in_two_threads_run_one_after_the_other():
    """Two threads building seeded models at once: each build draws as on its own and the
    caller's stream and default dtype come back (interleaved, the second thread reseeded the
    first's build and its exit put back the first's seeded stream and float32)."""
    import threading
    import time

    from bayesphys import seeded
    from bayesphys._process_state import seeded_build

    with seeded(0):
        ref0 = torch.rand(3, dtype=torch.float64)
    with seeded(1):
        ref1 = torch.rand(3, dtype=torch.float64)
    before_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        before_rng = torch.get_rng_state()
        a_in, b_go, a_drew = threading.Event(), threading.Event(), threading.Event()
        out = {}

        def first():
            with seeded_build(0):
                a_in.set()
                b_go.wait(5)
                time.sleep(0.2)  # the other thread is (trying to get) inside its block
                out["a"] = torch.rand(3, dtype=torch.float64)
                a_drew.set()

        def second():
            a_in.wait(5)
            b_go.set()
            with seeded_build(1):
                out["b"] = torch.rand(3, dtype=torch.float64)
                a_drew.wait(1)

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert torch.equal(out["a"], ref0) and torch.equal(out["b"], ref1)
        assert torch.get_default_dtype() == torch.float64  # was left at float32
        assert torch.equal(torch.get_rng_state(), before_rng)
    finally:
        torch.set_default_dtype(before_dtype)


def test_fit_many_on_a_thread_pool_gives_back_the_callers_state(monkeypatch):
    """Tasks overlapping in a thread pool: the caller's stream and thread variables come back
    (each task restored what it found, so a task ending last put back the first task's seeded
    stream and one-thread limits)."""
    import os
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    probs = _toy.problems(2)
    last = sorted(probs)[1]
    probs[last]["ends_last"] = True
    both_in = threading.Barrier(2, timeout=20)

    def build(problem, seed=None):
        both_in.wait()  # both tasks inside fit_many's per-task state at once
        if problem.get("ends_last"):
            time.sleep(0.3)
        return _toy.LinearGaussianModel(problem, seed=seed)

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before_threads = torch.get_num_threads()
    before_rng = torch.get_rng_state()
    with ThreadPoolExecutor(2) as pool:
        res = fit_many(probs, build, executor=pool, seed=0, fit_kwargs={"steps": 2}, progress=False)
    assert all(s == "ok" for s in res.table["status"])
    assert os.environ["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.get_rng_state(), before_rng)


def test_fit_many_on_a_thread_pool_inside_a_seeded_block_finishes():
    """A caller's ``seeded`` block around a threaded fit_many whose tasks seed and build seeded
    models: the block holds no lock the tasks need (it did: the run never ended)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from bayesphys import seeded

    out = {}

    def run():
        with seeded(0), ThreadPoolExecutor(2) as pool:
            out["res"] = fit_many(
                _toy.problems(2),
                _toy.build,
                executor=pool,
                seed=0,
                fit_kwargs={"steps": 2},
                progress=False,
            )

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "fit_many inside seeded() did not finish (deadlock)"
    assert list(out["res"].table["status"]) == ["ok", "ok"]


def test_two_sequential_fit_many_calls_in_two_threads_give_back_the_callers_threads(
    monkeypatch,
):
    """Each sequential run restored what it found: the one ending last put back the other's
    one-thread limit (the caller kept OMP_NUM_THREADS=1)."""
    import os
    import threading

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    gate = threading.Barrier(2, timeout=30)

    def build(problem, seed=None, *, late=False):
        gate.wait()  # both runs inside a task at once
        return _toy.LinearGaussianModel(problem, seed=seed)

    def run(threads, late):
        def b(problem, seed=None):
            m = build(problem, seed)
            if late:
                import time

                time.sleep(0.3)
            return m

        fit_many(
            _toy.problems(1),
            b,
            executor="sequential",
            seed=0,
            threads_per_worker=threads,
            fit_kwargs={"steps": 2},
            progress=False,
        )

    ts = [
        threading.Thread(target=run, args=(1, False)),
        threading.Thread(target=run, args=(2, True)),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_every_task_on_a_reused_thread_pool_runs_with_threads_per_worker():
    """torch's thread count is each OS thread's own: on a pool whose threads had run torch
    code, only the first task to enter got ``threads_per_worker`` and the one joining it kept
    the thread's former count (review of 2026-12-03); each pool thread gets its count back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    torch_before = _with_threads(2)
    seen: dict[str, int] = {}
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="reuse") as pool:
            warm = threading.Barrier(2, timeout=30)

            def warm_up():
                warm.wait()  # one call per pool thread
                torch.zeros(1).sum()
                return threading.current_thread().name, torch.get_num_threads()

            before = dict(f.result() for f in [pool.submit(warm_up), pool.submit(warm_up)])
            both_in = threading.Barrier(2, timeout=30)

            def build(problem, seed=None):
                both_in.wait()  # both tasks inside at once
                seen[threading.current_thread().name] = torch.get_num_threads()
                return _toy.LinearGaussianModel(problem, seed=seed)

            res = fit_many(
                _toy.problems(2),
                build,
                executor=pool,
                seed=0,
                threads_per_worker=1,
                fit_kwargs={"steps": 2},
                progress=False,
            )
            warm = threading.Barrier(2, timeout=30)
            after = dict(f.result() for f in [pool.submit(warm_up), pool.submit(warm_up)])
    finally:
        torch.set_num_threads(torch_before)
    assert list(res.table["status"]) == ["ok", "ok"]
    assert sorted(seen.values()) == [1, 1], seen
    assert after == before == {name: 2 for name in before}


def test_threads_started_after_a_threaded_run_get_the_callers_count():
    """set_num_threads also sets the count new threads start with: a fresh pool thread that
    joined during the run and left last put its own (the task's 1) there, and every thread
    started after the run got one thread (review of 2026-12-03)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from bayesphys._process_state import in_new_thread as _in_new_thread
    from bayesphys.distributed._worker_threads import task_state

    before = _with_threads(4)
    try:
        inside = threading.Event()

        def first():
            with task_state(1):
                inside.wait(10)
                time.sleep(0.1)  # leaves first

        def joins_and_leaves_last():
            with task_state(1):
                inside.set()
                time.sleep(0.5)

        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(first)
            time.sleep(0.2)
            b = pool.submit(joins_and_leaves_last)
            a.result(), b.result()
        assert torch.get_num_threads() == 4
        assert _in_new_thread(torch.get_num_threads) == 4
    finally:
        torch.set_num_threads(before)


def _unseeded_models():
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
    from bayesphys.odil import GliomaModel
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems import brain_phantom, synthetic_patient
    from bayesphys.problems.populations import linear_map
    from tests.tiny_models import TINY_MFM, tiny_rgnp

    pops = linear_map(n_train=2, n_cal=0, n_test=1, n_points=20, seed=0)
    patient = synthetic_patient(5000, phantom=brain_phantom(32, 4.0))
    return {
        "ProbConserv-ANP": lambda: ProbConserv(
            "diffusion", step1="anp", hidden=16, n_samples=8, seed=None
        ),
        "ProbConserv-GP": lambda: ProbConserv("diffusion", step1="gp", seed=None),
        "RandomGridNP": lambda: tiny_rgnp(seed=None),
        "MetaFlowMatching": lambda: MetaFlowMatching(pops, **TINY_MFM, seed=None),
        "MFMEnsemble": lambda: MFMEnsemble(pops, members=2, **TINY_MFM, seed=None),
        "GPPDESolver": lambda: GPPDESolver("poisson1d-sin100", n_col=32, num_mixtures=4),
        "GliomaModel": lambda: GliomaModel.from_patient(patient),
    }


# the GP PDE model's 32-point grid is below its Nyquist rate (small for speed; the test checks
# the caller's random streams, not the resolution warning)
@pytest.mark.filterwarnings("ignore:problem 'poisson1d-sin100'.*Nyquist:UserWarning")
def test_loading_an_unseeded_model_leaves_the_callers_streams(tmp_path):
    """An unseeded model is rebuilt at load (initial weights drawn, then replaced by the
    file's): ProbConserv and RandomGridNP drew them from the caller's torch stream."""
    import random

    for name, build in _unseeded_models().items():
        model = build()
        model.save(tmp_path / f"{name}.pt")
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
        type(model).load(tmp_path / f"{name}.pt")
        assert torch.equal(torch.get_rng_state(), before[0]), name
        assert (np.random.get_state()[1] == before[1]).all(), name
        assert random.getstate() == before[2], name


def test_threads_started_during_a_torch_threads_block_keep_their_usual_count():
    """torch.set_num_threads also sets the count new threads start with, process-wide: a thread
    pool started while another thread's ``torch_threads(1)`` block ran got one thread each."""
    import threading

    from bayesphys._process_state import in_new_thread, torch_threads

    usual = in_new_thread(torch.get_num_threads)
    inside, go_on = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def block() -> None:
        with torch_threads(1):
            seen["block"] = torch.get_num_threads()
            inside.set()
            go_on.wait(30)

    t = threading.Thread(target=block)
    t.start()
    assert inside.wait(30)
    seen["new"] = in_new_thread(torch.get_num_threads)
    go_on.set()
    t.join(30)
    seen["after"] = in_new_thread(torch.get_num_threads)
    assert seen == {"block": 1, "new": usual, "after": usual}


def test_a_fit_many_task_starting_inside_a_torch_threads_switch_keeps_the_usual_count(
    monkeypatch,
):
    """``task_state`` (fit_many in threads) read and put back the count new threads start with
    outside the lock of ``torch_threads``: a task starting while another thread's block had
    set 1 (before putting the usual count back) saved that 1 and restored it when it ended,
    so every later thread started with one thread. Interleaving forced: the block pauses
    inside its switch until the task has started (up to 1 s, where the task waits for it)."""
    import threading

    from bayesphys import _process_state
    from bayesphys.distributed._worker_threads import task_state

    real = _process_state.in_new_thread
    usual = real(torch.get_num_threads)
    paused, go = threading.Event(), threading.Event()
    calls = {"n": 0}

    def slow(fn, *args):
        if threading.current_thread().name == "block":
            calls["n"] += 1
            if calls["n"] == 2:  # the block is about to put the usual count back
                paused.set()
                go.wait(1.0)
        return real(fn, *args)

    monkeypatch.setattr(_process_state, "in_new_thread", slow)

    def block() -> None:
        with _process_state.torch_threads(1):
            pass

    def task() -> None:
        paused.wait(10)
        with task_state(2):
            go.set()
            tb.join(10)

    tb = threading.Thread(target=block, name="block")
    tt = threading.Thread(target=task, name="task")
    tb.start()
    tt.start()
    tt.join(30)
    monkeypatch.setattr(_process_state, "in_new_thread", real)
    assert real(torch.get_num_threads) == usual


def test_torch_threads_gives_the_callers_count_back_when_the_new_thread_count_fails(
    monkeypatch,
):
    """Leaving the block read the new-thread count (in a short-lived thread) before putting
    the caller's own count back: a thread that could not start left the caller at ``n``."""
    from bayesphys import _process_state

    before = torch.get_num_threads()
    n = 1 if before != 1 else 2

    def refused(fn, *args):
        raise RuntimeError("can't start new thread")

    with pytest.raises(RuntimeError, match="can't start"):
        with _process_state.torch_threads(n):
            assert torch.get_num_threads() == n
            monkeypatch.setattr(_process_state, "in_new_thread", refused)
    monkeypatch.undo()
    try:
        assert torch.get_num_threads() == before
    finally:
        _process_state.set_thread_counts(before)


def test_torch_threads_gives_the_callers_count_back_when_entering_fails(monkeypatch):
    """Entering set this thread's count and then failed to read the new-thread count (a
    thread that could not start) outside the block's try/finally: the caller stayed at n."""
    from bayesphys import _process_state

    before = torch.get_num_threads()
    n = 1 if before != 1 else 2

    def refused(fn, *args):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_process_state, "in_new_thread", refused)
    with pytest.raises(RuntimeError, match="can't start"):
        with _process_state.torch_threads(n):
            pass
    monkeypatch.undo()
    try:
        assert torch.get_num_threads() == before
    finally:
        _process_state.set_thread_counts(before)


def test_seeded_exclusive_blocks_in_two_threads_each_draw_their_own_stream():
    """Two threads drawing from torch's global stream in ``seeded`` blocks at once interleave
    their draws; ``seeded_exclusive`` runs them one after the other."""
    import time

    from bayesphys._process_state import seeded_exclusive
    from tests.thread_checks import in_threads

    def draws(seed: int) -> torch.Tensor:
        with seeded_exclusive(seed):
            out = []
            for _ in range(5):
                out.append(torch.rand(1))
                time.sleep(0.01)  # the other thread would draw here
            return torch.cat(out)

    alone = [draws(s) for s in (0, 1)]
    together = in_threads(draws, [0, 1])
    assert all(torch.equal(a, t) for a, t in zip(alone, together))


def test_a_sequential_fit_many_gives_back_the_python_and_numpy_streams():
    import random

    random.seed(11)
    np.random.seed(12)
    py, npy = random.getstate(), np.random.get_state()
    fit_many(
        _toy.problems(2), _toy.build, executor="sequential", seed=0, fit_kwargs={"steps": 2},
        progress=False,
    )  # fmt: skip
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[0] == npy[0] and (after[1] == npy[1]).all() and after[2:] == npy[2:]
