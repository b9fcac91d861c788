"""Cost review 75 of Meta Flow Matching: memory and repeated work at realistic sizes.

Each fix is pinned structurally (peak memory of a fresh process, the largest array a step
makes, the calls to a metric it need not compute) and by the bit-identity of its results with
the formula it replaced.
"""

from __future__ import annotations

import pytest
import torch
import torch.utils._pytree as pytree
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import bayesphys.meta_fm.embedding as embedding
import bayesphys.meta_fm.evaluation as evaluation
import bayesphys.problems.populations.b3_particles as b3
from bayesphys import SamplePosterior
from bayesphys.meta_fm import (
    MetaFlowMatching,
    MFMEnsemble,
    PopulationEmbedding,
    knn_adjacency,
    normalized_adjacency,
    population_metrics,
    w2_inference_data,
)
from bayesphys.problems.populations import linear_map
from tests.memory_checks import linux_only
from tests.memory_checks import peak_rise_after as _peak_rise_after
from tests.tiny_models import TINY_MFM


class _BigArrays(TorchDispatchMode):
    """Records the shape of every tensor of at least ``numel`` entries that an op returns in
    storage of its own (not an input's: in-place edits and views are not counted)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.shapes = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in pytree.tree_leaves((args, kwargs))
            if isinstance(t, Tensor)
        }
        for t in pytree.tree_leaves(out):
            if (
                isinstance(t, Tensor)
                and t.numel() >= self.numel
                and t.untyped_storage().data_ptr() not in inputs
            ):
                self.shapes.append(tuple(t.shape))
        return out


def _old_knn_adjacency(x: Tensor, k: int) -> Tensor:
    """The kNN adjacency as it was computed before this review (a masked copy of the
    distances, then a fresh adjacency)."""
    n = x.shape[-2]
    d2 = torch.cdist(x, x)
    d2 = d2.masked_fill(torch.eye(n, dtype=torch.bool), float("inf"))
    idx = d2.topk(min(k, n - 1), dim=-1, largest=False, sorted=False).indices
    return torch.zeros(d2.shape, dtype=x.dtype).scatter_(-1, idx, 1.0)


# ---------------------------------------------------------------- embedding: one [P, n, n]


def test_knn_graph_and_its_normalisation_are_the_old_formulas_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 120, 4, generator=g, dtype=dtype)
        adj = knn_adjacency(x, 10)
        assert torch.equal(adj, _old_knn_adjacency(x, 10))
        # in place, the embedding's normalisation is the public out-of-place one, bit for bit
        assert torch.equal(embedding._normalized_(adj.clone()), normalized_adjacency(adj))


def test_knn_adjacency_of_points_that_require_grad_holds_no_graph():
    x = torch.randn(30, 2, requires_grad=True)
    adj = knn_adjacency(x, 4)  # its distances are edited in place: computed detached
    assert not adj.requires_grad and torch.equal(adj, _old_knn_adjacency(x.detach(), 4))


def test_embedding_makes_one_graph_sized_array():
    """The distances' masked copy, a fresh adjacency, ``A + I`` and the two scalings of the
    normalisation were five more ``[P, n, n]`` arrays than the distances; now the distances'
    storage holds the graph throughout."""
    torch.manual_seed(0)
    e = PopulationEmbedding(3, 8, 2, 10)
    x = torch.randn(4, 200, 3)
    with torch.no_grad(), _BigArrays(4 * 200 * 200) as big:
        e(x)
    assert big.shapes == [(4, 200, 200)]


@pytest.mark.slow
@linux_only
def test_embedding_builds_its_graph_in_one_population_sized_array():
    """4 populations of 1500 points: one [4, 1500, 1500] float32 array is 34 MB. The masked
    copy of the distances, ``A + I`` and the two scalings of the normalisation held four of
    them at the peak (137 MB measured); computed in place, one (38 MB)."""
    rise = _peak_rise_after(
        "from bayesphys.meta_fm import PopulationEmbedding\n"
        "torch.manual_seed(0)\n"
        "e = PopulationEmbedding(3, 16, 2, 50)\n"
        "pts = torch.randn(4, 1500, 3, generator=torch.Generator().manual_seed(1))\n"
        "with torch.no_grad():\n"
        "    e(pts[:, :50])",
        "with torch.no_grad():\n    z = e(pts)",
    )
    one = 4 * 1500 * 1500 * 4 / 2**20
    assert rise < 1.6 * one, f"{rise:.0f} MB for a {one:.0f} MB graph"


def test_embedding_is_unchanged_bit_for_bit_with_its_gradients():
    """The embedding and its weights' gradients equal those of the old graph formulas."""
    torch.manual_seed(0)
    e = PopulationEmbedding(3, 8, 2, 7)
    x = torch.randn(2, 60, 3, generator=torch.Generator().manual_seed(2))
    z = e(x)
    z.square().sum().backward()
    grads = [p.grad.clone() for p in e.parameters()]
    # the old formulas, on the canonical order the embedding reads the points in
    from bayesphys.meta_fm._canonical import canonical_order

    order = canonical_order(x)
    xs = x.gather(-2, order[..., None].expand_as(x))
    a_hat = normalized_adjacency(_old_knn_adjacency(xs, 7))
    e.zero_grad()
    ref = e.gcn(xs, a_hat).mean(-2)
    ref = ref / ref.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    ref.square().sum().backward()
    assert torch.equal(z, ref)
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, e.parameters()))


# ---------------------------------------------------------------- posterior: draws held once


def _fitted(method: str, seed: int = 0, **kw) -> tuple[MetaFlowMatching, list[Tensor]]:
    data = linear_map(n_train=4, n_cal=0, n_test=0, n_points=48, seed=0)
    m = MetaFlowMatching(data, **dict(TINY_MFM, **kw), method=method, seed=seed)
    m.fit(steps=1, progress=False)
    return m, data.source[:3]  # training sources: no warning of a far source


def test_model_posterior_draws_are_the_stacked_predictions():
    m, src = _fitted("MFM")  # 48-point populations, 16-point subsamples: draws differ
    post = m.posterior(src, num_samples=3, seed=5)
    old = torch.stack([torch.stack(m.predict(src, seed=5 + k)) for k in range(3)])[None]
    assert torch.equal(post.draws, old)
    fm, src = _fitted("FM")  # no subsample: one prediction repeated
    post = fm.posterior(src, num_samples=3, seed=5)
    assert torch.equal(post.draws, torch.stack(fm.predict(src, seed=5)).expand(1, 3, -1, -1, -1))


def test_ensemble_posterior_draws_are_the_stacked_member_predictions():
    models = [_fitted("MFM", seed=s)[0] for s in range(2)]
    src = _fitted("MFM")[1]
    ens = MFMEnsemble(models=models)
    post = ens.posterior(src, num_samples=2, seed=3)
    old = torch.stack(
        [
            torch.stack([torch.stack(m.predict(src, seed=3 + 2 * j + k)) for k in range(2)])
            for j, m in enumerate(models)
        ]
    )
    assert torch.equal(post.draws, old)


_POSTERIOR_SETUP = """
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
kw = dict(width=8, layers=2, time_dim=4, fourier=0, dim=64, solver_steps=1)
g = torch.Generator().manual_seed(0)
pops = [torch.randn(8000, 64, generator=g) for _ in range(4)]
"""
#: one draw of the 4 populations of 8000 points in d = 64 (MB)
_DRAW_MB = 4 * 8000 * 64 * 4 / 2**20


def test_posteriors_make_one_array_of_draws():
    """Stacked per draw, then per member and over members (per draw, then over draws for one
    model), the draws were made two or three times over; now each prediction is written into
    the one array of draws."""
    models = [_fitted("MFM", seed=s)[0] for s in range(3)]
    src = _fitted("MFM")[1]  # 3 populations of 48 points in d = 2

    def draw_arrays(big: _BigArrays) -> list[tuple[int, ...]]:  # of whole draws, or more
        return [s for s in big.shapes if s[-2:] == (48, 2)]

    with _BigArrays(3 * 48 * 2) as big:
        MFMEnsemble(models=models).posterior(src, num_samples=2)
    assert draw_arrays(big) == [(3, 2, 3, 48, 2)]
    with _BigArrays(3 * 48 * 2) as big:
        models[0].posterior(src, num_samples=4)
    assert draw_arrays(big) == [(1, 4, 3, 48, 2)]


@pytest.mark.slow
@linux_only
def test_ensemble_posterior_holds_its_draws_once():
    """2 members x 4 draws of 4 populations of 8000 points in d = 64: 62 MB of draws. Stacked
    per member and then over members, they were held twice (125 MB at the peak, 2.0x); written
    into one array as they come, once (84 MB, 1.35x: the draws, one more draw and the
    integration's own arrays)."""
    rise = _peak_rise_after(
        _POSTERIOR_SETUP
        + "e = MFMEnsemble(models=[MetaFlowMatching(method='FM', **kw, seed=s) for s in (0, 1)])\n"
        + "e.posterior(pops, num_samples=1)  # first-call allocations out of the measurement",
        "post = e.posterior(pops, num_samples=4)",
    )
    draws = 2 * 4 * _DRAW_MB
    assert rise < 1.55 * draws, f"{rise:.0f} MB for {draws:.0f} MB of draws"


@pytest.mark.slow
@linux_only
def test_model_posterior_holds_its_draws_once():
    """An MFM model's 8 draws of the same populations (62 MB): the list of draws and their
    stack were both held (125 MB at the peak, 2.0x; now 84 MB, 1.35x)."""
    rise = _peak_rise_after(
        _POSTERIOR_SETUP + "m = MetaFlowMatching(method='MFM', **kw, points=32, knn_k=5, "
        "gnn_hidden=4, gnn_layers=1, seed=0)\n"
        "m.posterior(pops, num_samples=2)  # first-call allocations out of the measurement",
        "post = m.posterior(pops, num_samples=8)",
    )
    draws = 8 * _DRAW_MB
    assert rise < 1.55 * draws, f"{rise:.0f} MB for {draws:.0f} MB of draws"


# ---------------------------------------------------------------- B3: kernel chunked, in place


def _old_particle_velocity(x: Tensor, a=1.0, b=2.0, ell=0.5) -> Tensor:
    attraction = -a * (x - x.mean(1, keepdim=True))
    sq = x.pow(2).sum(-1)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2 * x @ x.mT).clamp_min(0)
    ker = torch.exp(-d2 / (2 * ell**2))
    rep = (x * ker.sum(-1, keepdim=True) - ker @ x) / (ell**2 * x.shape[1])
    return attraction + b * rep


def test_particle_velocity_and_simulation_are_the_old_formulas_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = 2 * torch.randn(3, 300, 2, generator=g, dtype=dtype)
        for ell in (0.5, 0.05, 3.0):
            assert torch.equal(b3.particle_velocity(x, ell=ell), _old_particle_velocity(x, ell=ell))
    # 300 points: 46 populations a chunk, not 64; each population's RK4 is its own
    x0 = torch.randn(50, 300, 2, generator=g, dtype=torch.float64)
    h, y = 0.5, x0.float()
    for _ in range(2):
        k1 = _old_particle_velocity(y)
        k2 = _old_particle_velocity(y + 0.5 * h * k1)
        k3 = _old_particle_velocity(y + 0.5 * h * k2)
        k4 = _old_particle_velocity(y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert b3._particle_chunk(300) == 46
    assert torch.equal(b3._simulate_particles(x0, 2, 1.0, 2.0, 0.5), y)


def test_particle_simulation_bounds_its_kernel_by_points_not_only_populations(monkeypatch):
    """8 populations of 1000 points were one chunk: kernels [8, 1000, 1000] (32 MB each in
    float32; 64 populations held 256 MB per array, 743 MB at the peak). The chunk now keeps
    them near B3's [64, 256, 256], whose 64-population chunks are unchanged."""
    seen = []
    real = b3.particle_velocity

    def spy(x, *args):
        seen.append(x.shape[0] * x.shape[1] ** 2)
        return real(x, *args)

    monkeypatch.setattr(b3, "particle_velocity", spy)
    x0 = torch.randn(8, 1000, 2, dtype=torch.float64)
    b3._simulate_particles(x0, 1, 1.0, 2.0, 0.5)
    assert max(seen) <= 64 * 256 * 256
    assert b3._particle_chunk(256) == 64  # the benchmark's B3 (256 points): as before


# ---------------------------------------------------------------- W2 export: no W1, no MMD


def test_w2_export_computes_w2_alone_and_the_same_w2(monkeypatch):
    """Each (chain, draw, population) of ``w2_inference_data`` read ``population_metrics``'
    ``w2`` and discarded its W1 and MMD, together about three times the W2's cost."""
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(2, 2, 3, 60, 2, generator=g)
    truth = [torch.randn(40, 2, generator=g) + 0.3 for _ in range(3)]
    post = SamplePosterior(draws, event_ndim=2)
    ref = torch.tensor(
        [
            [
                [
                    population_metrics(draws[a, b, i], truth[i], max_points=30, seed=i)["w2"]
                    for i in range(3)
                ]
                for b in range(2)
            ]
            for a in range(2)
        ],
        dtype=torch.float64,
    )
    calls = {"mmd": 0, "w1": 0}
    real_w = evaluation.wasserstein

    def count_mmd(*args, **kw):
        calls["mmd"] += 1
        return 0.0

    def count_w(x, y, p=2, **kw):
        calls["w1"] += p == 1
        return real_w(x, y, p=p, **kw)

    monkeypatch.setattr(evaluation, "mmd_anchor", count_mmd)
    monkeypatch.setattr(evaluation, "wasserstein", count_w)
    idata = w2_inference_data(post, truth, max_points=30)
    assert calls == {"mmd": 0, "w1": 0}
    got = torch.as_tensor(idata.posterior["w2"].values)
    assert torch.equal(got, ref)
