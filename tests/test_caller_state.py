"""A library call leaves the caller's process as it found it: thread counts, matplotlib
backend and figures, numpy's global stream (review of 2026-12-02; each test failed before)."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch

from bayesphys import fit_many
from bayesphys.distributed.executors import _restore_threads, limit_threads
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
