"""The dense-memory refusals of a Meta FM fit or embedding name what the user set (the
config's ``points``, the user's own pair of ``data``), not the internal arguments of the kNN
graph (``x``) or of the OT plans (``x0/x1``, ``sources[i]/targets[i]``) they come from; and
they come before any training step or distance. Between half and all of memory a fit or an
embedding warns once, naming the same setting (the helpers, which check again, warned too)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, knn_adjacency
from bayesphys.problems.populations import PopulationPairs, linear_map
from tests.tiny_models import TINY_MFM


def _data():
    return linear_map(n_train=4, n_cal=0, n_test=2, n_points=24)


def test_mfm_fit_names_points_for_its_knn_graphs(memory_limit, no_dense_allocation):
    m = MetaFlowMatching(_data(), **TINY_MFM, pops_per_step=4, seed=0)
    memory_limit(8000)  # [4, 16, 16] x 3 float32 + mask: about 12 kB
    no_dense_allocation("torch.cdist")
    with pytest.raises(
        MemoryError,
        match=r"^points: the kNN graph of 4 population\(s\) of 16 points .* fewer populations "
        r"a step \(pops_per_step\)",
    ):
        m.fit(steps=2, progress=False)
    assert m.steps_done == 0


def test_mfm_embed_names_points(memory_limit, no_dense_allocation):
    data = _data()
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    memory_limit(7000)  # a graph of 16 points (3.3 kB) fits, one of 24 (7.5 kB) does not
    assert m.embed(data.source[:1], points=16).shape == (1, TINY_MFM["gnn_hidden"])
    no_dense_allocation("torch.cdist")
    with pytest.raises(MemoryError, match=r"^points: the kNN graph of 1 population\(s\) of 24"):
        m.embed(data.source[:1], points=30)  # a 24-point population is embedded whole


def test_minibatch_ot_fit_names_points(memory_limit, no_dense_allocation):
    m = MetaFlowMatching(_data(), **TINY_MFM, method="FM", coupling="ot", seed=0)
    memory_limit(8000)  # 16 x 16 pairs: about 12 kB
    no_dense_allocation("ot.emd")
    with pytest.raises(
        MemoryError, match=r"^points: exact optimal transport between 16 and 16 points"
    ):
        m.fit(steps=1, progress=False)
    assert m.steps_done == 0


def _three_pairs(sizes: list[int]) -> PopulationPairs:
    """Three unpaired 2-D pairs of the given sizes; the training split is pairs 1 and 2."""
    g = torch.Generator().manual_seed(0)
    return PopulationPairs(
        name="toy",
        source=[torch.randn(n, 2, generator=g) for n in sizes],
        target=[torch.randn(n, 2, generator=g) for n in sizes],
        source_id=torch.arange(3),
        splits={"test": [0], "train": [1, 2]},
        paired=False,
    )


@pytest.mark.parametrize("passed", [False, True], ids=["data-of-construction", "fit(data)"])
def test_full_plan_fit_names_the_users_pair_of_data(memory_limit, no_dense_allocation, passed):
    """The training split is pairs 1 and 2 of the user's data: the big pair is named
    ``data.source[2]/data.target[2]``, not by its place in the split or the plans' helper,
    whether the data were given at construction (the model keeps their split) or to fit."""
    data = _three_pairs([4, 4, 40])
    kw = dict(TINY_MFM, points=4)
    m = MetaFlowMatching(data, **kw, method="FM", coupling="ot_full", seed=0)
    memory_limit(4000)  # 4 x 4 pairs (784 B) pass, 40 x 40 (about 77 kB) do not
    no_dense_allocation("ot.emd")
    with pytest.raises(
        MemoryError,
        match=r"^data\.source\[2\]/data\.target\[2\]: exact optimal transport between 40 and "
        r"40 points",
    ):
        m.fit(data if passed else None, steps=1, progress=False)


def _memory_warnings(call) -> list[str]:
    """The texts of the memory warnings ``call()`` gives, every one (repeats included)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in seen if "of memory, over half" in str(w.message)]


def test_mfm_fit_warns_once_for_its_knn_graphs(memory_limit):
    m = MetaFlowMatching(_data(), **TINY_MFM, pops_per_step=4, seed=0)
    memory_limit(20000)  # [4, 16, 16] x 3 float32 + mask: about 12 kB, over half
    texts = _memory_warnings(lambda: m.fit(steps=3, progress=False))
    assert len(texts) == 1 and texts[0].startswith("points: the kNN graph of 4 population(s)")
    assert m.steps_done == 3


def test_mfm_embed_warns_once_naming_points(memory_limit):
    data = _data()
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    memory_limit(12000)  # a graph of 24 points: 7.5 kB, over half
    texts = _memory_warnings(lambda: m.embed(data.source[:1], points=30))
    assert len(texts) == 1 and texts[0].startswith("points: the kNN graph of 1 population(s)")


def test_minibatch_ot_fit_warns_once_naming_points(memory_limit):
    m = MetaFlowMatching(_data(), **TINY_MFM, method="FM", coupling="ot", seed=0)
    memory_limit(20000)  # 16 x 16 pairs: about 12 kB, over half
    texts = _memory_warnings(lambda: m.fit(steps=3, progress=False))
    assert len(texts) == 1
    assert texts[0].startswith("points: exact optimal transport between 16 and 16 points")


def test_full_plan_fit_warns_once_naming_the_users_largest_pair(memory_limit):
    """Pairs 1 and 2 (the training split) each need over half of memory: one warning, for
    the larger, named as the user's pair (each pair warned, and each again under the plans'
    helper's sources[k]/targets[k])."""
    data = _three_pairs([4, 36, 40])
    m = MetaFlowMatching(data, **dict(TINY_MFM, points=4), method="FM", coupling="ot_full")
    memory_limit(100_000)  # 36 x 36 pairs (62 kB) and 40 x 40 (77 kB): over half
    texts = _memory_warnings(lambda: m.fit(steps=1, progress=False))
    assert len(texts) == 1
    assert texts[0].startswith("data.source[2]/data.target[2]: exact optimal transport between")


def test_a_callback_outside_the_checked_steps_still_warns(memory_limit):
    """The fit drops the helpers' repeated warnings for the sizes it checked only: a kNN
    graph the user's callback computes (never checked) still warns, naming x."""
    m = MetaFlowMatching(_data(), **TINY_MFM, seed=0)
    big = torch.randn(40, 2)  # 40 x 40 x 3 float32 + mask: about 21 kB, over half
    memory_limit(30000)  # the fit's own graphs ([2, 16, 16]: 6 kB) pass silently
    seen = []

    def callback(model, step):
        seen.append(step)
        knn_adjacency(big, 3)

    texts = _memory_warnings(
        lambda: m.fit(steps=1, progress=False, callback=callback, callback_every=1)
    )
    assert seen == [1]
    assert len(texts) == 1 and texts[0].startswith("x: the kNN graph of 1 population(s) of 40")
