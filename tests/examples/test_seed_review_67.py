"""Seeds of the cohort example: any seed the package takes (numpy integers, the whole range
``[-2**63, 2**64)``) reaches the cohort's patients and the model's start, and a bool or float
is refused naming ``seed`` (review of seeds, 2026-12-06; each test failed before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.examples.cohort import LinearGaussianModel, make_cohort, make_glioma_cohort


def _same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(
        torch.equal(a[k][f], b[k][f]) for k in a for f in ("u", "idx", "y")
    )


def test_cohort_seeds_across_the_whole_range_wrap_as_torch_reads_them():
    # 2**64 - 3 is the seed -3 to torch: patient k's seed (wrapped) is the same, so is the
    # cohort (the product overflowed inside torch: "Overflow when unpacking long long")
    assert _same(make_cohort(2, seed=2**64 - 3, n=11, m=4), make_cohort(2, seed=-3, n=11, m=4))
    for seed in (2**50, -(2**63), 2**64 - 1):
        assert _same(make_cohort(2, seed=seed, n=11, m=4), make_cohort(2, seed=seed, n=11, m=4))
    assert not _same(make_cohort(1, seed=-3, n=11, m=4), make_cohort(1, seed=3, n=11, m=4))


def test_cohort_streams_of_seeds_that_worked_are_unchanged():
    p = make_cohort(2, seed=7, n=11, m=4)["p001"]
    gen = torch.Generator().manual_seed(7 * 100_003 + 1)
    torch.rand(3, generator=gen, dtype=torch.float64)
    idx = torch.sort(torch.randperm(11, generator=gen)[:4]).values
    assert torch.equal(p["idx"], idx)


def test_numpy_integer_seeds_equal_python_ints():
    assert _same(make_cohort(2, seed=np.int64(7), n=11, m=4), make_cohort(2, seed=7, n=11, m=4))
    prob = make_cohort(1, n=11, m=4)["p000"]
    a = LinearGaussianModel(prob, seed=np.int64(3))  # TypeError "an integer is required"
    assert a.lengthscale == LinearGaussianModel(prob, seed=3).lengthscale


@pytest.mark.parametrize("bad", [True, 1.5, "1"])
def test_bad_seeds_are_refused_by_name(bad):
    prob = make_cohort(1, n=11, m=4)["p000"]
    with pytest.raises(TypeError, match="seed"):
        LinearGaussianModel(prob, seed=bad)
    with pytest.raises(TypeError, match="seed"):
        make_cohort(1, seed=bad, n=11, m=4)  # True was taken as the seed 1


def test_glioma_cohort_takes_every_seed_torch_takes():
    # (2**64 - 1) * 100_003 was refused by synthetic_patient as a seed out of range
    a = make_glioma_cohort(1, seed=2**64 - 1)["p000"]
    b = make_glioma_cohort(1, seed=-1)["p000"]
    assert torch.equal(torch.as_tensor(a["labels"]), torch.as_tensor(b["labels"]))
