"""Copies of the shared core's public objects: pickled (process pools, Ray, Dask, torch.save)
and deep-copied, they give the same results as the originals."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from bayesphys.diagnostics import CoreFamily, default_summaries, front_position, probe, total_mass
from bayesphys.problems import make_dataset

F64 = torch.float64
_U = (
    torch.linspace(0.0, 1.0, 8, dtype=F64).flip(0).repeat(3, 1)
    * torch.arange(1, 4, dtype=F64)[:, None]
)  # [3, 8]: three decreasing fields


_SUMMARIES = [
    lambda: probe(3),
    lambda: probe((1, 1)),
    lambda: total_mass(torch.full((8,), 0.5, dtype=F64)),
    lambda: front_position(torch.linspace(0.0, 1.0, 8, dtype=F64), level=1.2),
    lambda: default_summaries(torch.Size([]))["theta"],
    lambda: default_summaries(torch.Size([2]))["theta_1"],
    lambda: CoreFamily(n=8, m=3).summaries()["max"],
    lambda: CoreFamily(n=8, m=3).summaries()["mass"],
]


@pytest.mark.parametrize(
    "make",
    _SUMMARIES,
    ids=["probe", "probe-2d", "total_mass", "front", "default-0d", "default", "core-max", "mass"],
)
def test_summaries_pickle_and_deep_copy(make):
    """The summary builders returned closures (default_summaries and CoreFamily a lambda):
    pickle, as a process pool does to send the summaries with the work, failed with "Can't
    pickle local object 'probe.<locals>.f'"."""
    summary = make()
    u = _U.reshape(3, 4, 2) if make is _SUMMARIES[1] else _U  # probe((1, 1)): an n-D event
    want = summary(u)
    for back in (pickle.loads(pickle.dumps(summary)), copy.deepcopy(summary)):
        assert torch.equal(back(u), want)


def test_a_gpme_subset_pickles_at_its_own_size():
    """GPMEData.subset of a slice viewed the whole set's tensors: pickle (a process pool, Ray,
    Dask, torch.save) wrote all 40 functions with a subset of 2, and an edit of the subset's
    copy reached the set (an index list always copied)."""
    data = make_dataset("stefan", params=[0.6] * 40, seed=1)
    tensors = ("params", "x_context", "y_context", "x_target", "y_target")
    for idx in (slice(0, 2), [0, 1]):
        sub = data.subset(idx)
        own = sum(getattr(sub, k).numel() * getattr(sub, k).element_size() for k in tensors)
        back = pickle.loads(pickle.dumps(sub))
        assert len(pickle.dumps(sub)) < 1.5 * own
        assert all(torch.equal(getattr(back, k), getattr(data, k)[:2]) for k in tensors)
        before = data.y_target.clone()
        sub.y_target.add_(1.0)
        assert torch.equal(data.y_target, before)
