"""Data-parallel fits of the neural components (GradientSync) on two gloo processes."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from bayesphys.distributed import GradientSync, rank_generator_seed
from bayesphys.distributed.ddp import (
    cleanup_distributed,
    free_port,
    init_distributed,
    set_local_rank_env,
)
from tests.tiny_models import SMALL_MFM, tiny_rgnp


def _rgnp(**kw):
    return tiny_rgnp("poisson", **kw)


def _mfm():
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map

    d = linear_map(n_train=6, n_cal=0, n_test=0, n_points=48, seed=0)
    return MetaFlowMatching(d, seed=0, **SMALL_MFM), d


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_local_rank_env(rank, world, port)
    torch.set_num_threads(1)
    init_distributed(backend="gloo", device="cpu")
    # 1. the bare averaging: rank r holds gradient r + 1 everywhere
    lin = torch.nn.Linear(3, 2)
    torch.manual_seed(100 + rank)  # different inits: broadcast must make them equal
    for p in lin.parameters():
        p.data.normal_()
    sync = GradientSync(lin)
    for p in lin.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    sync.average_gradients()
    g = torch.Generator().manual_seed(7)
    rank_generator_seed(g)
    # 2. the components' own fits, data-parallel
    np_model = _rgnp()
    # perturb rank 1's weights: the fit's broadcast must undo it
    if rank == 1:
        with torch.no_grad():
            for p in np_model.net.parameters():
                p.add_(0.1)
    np_res = np_model.fit(steps=3, progress=False)
    mfm, d = _mfm()
    # a callback runs on every rank at the same steps, the replicas in sync there
    seen = []

    def record(model, step):
        seen.append(
            (type(model).__name__, step, [p.detach().clone() for p in model.net.parameters()])
        )

    mfm_res = mfm.fit(d, steps=4, progress=False, callback=record, callback_every=2)
    # a resumed fit: rank 0 saves, every rank loads the same checkpoint and trains on
    from bayesphys.meta_fm import MetaFlowMatching

    ckpt = os.path.join(out, "mfm_ckpt.pt")
    if rank == 0:
        mfm.save(ckpt)
    torch.distributed.barrier()
    mfm_resumed = MetaFlowMatching.load(ckpt)
    mfm_resumed.fit(d, steps=2, progress=False)
    from bayesphys.probconserv import ProbConserv

    anp = ProbConserv("stefan", step1="anp", hidden=16, n_samples=8, seed=0)
    anp_res = anp.fit(steps=3, progress=False, callback=record, callback_every=2)
    torch.save(
        {
            "lin": [p.detach().clone() for p in lin.parameters()],
            "grads": [p.grad.clone() for p in lin.parameters()],
            "draw": torch.rand(3, generator=g),
            "np": [p.detach().clone() for p in np_model.net.parameters()],
            "np_loss": np_res.loss_history,
            "mfm": [p.detach().clone() for p in mfm.net.parameters()],
            "mfm_loss": mfm_res.loss_history,
            "mfm_rng": mfm._train_gen.get_state(),
            "mfm_resumed": [p.detach().clone() for p in mfm_resumed.net.parameters()],
            "mfm_resumed_rng": mfm_resumed._train_gen.get_state(),
            "anp": [p.detach().clone() for p in anp.net.parameters()],
            "anp_loss": anp_res.loss_history,
            "anp_rng": anp._train_rng.get_state(),
            "callback": seen,
        },
        os.path.join(out, f"rank{rank}.pt"),
    )
    cleanup_distributed()  # barrier, then rank 0 leaves last


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        r["_out"] = out
    return ranks


def test_gradients_are_averaged_and_replicas_broadcast(two_ranks):
    r0, r1 = two_ranks
    for a, b in zip(r0["lin"], r1["lin"]):
        assert torch.equal(a, b)
    for g in r0["grads"] + r1["grads"]:
        assert torch.allclose(g, torch.full_like(g, 1.5))
    assert not torch.equal(r0["draw"], r1["draw"])  # ranks draw different batches


@pytest.mark.parametrize("name", ["np", "mfm", "anp"])
def test_component_fits_stay_in_sync_across_ranks(two_ranks, name):
    r0, r1 = two_ranks
    for a, b in zip(r0[name], r1[name]):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert r0[f"{name}_loss"] == r1[f"{name}_loss"]  # the rank-mean loss, the same on both


def test_callbacks_run_on_every_rank_at_the_same_steps(two_ranks):
    r0, r1 = two_ranks
    steps = [(name, step) for name, step, _ in r0["callback"]]
    assert steps == [("MetaFlowMatching", 2), ("MetaFlowMatching", 4), ("ProbConserv", 2)]
    assert steps == [(name, step) for name, step, _ in r1["callback"]]
    for (*_, a), (*_, b) in zip(r0["callback"], r1["callback"]):
        assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(a, b))


def test_probconserv_ranks_draw_their_own_latent_noise(two_ranks):
    # the ANP's private training stream was the same on every rank (identical latent draws)
    r0, r1 = two_ranks
    assert not torch.equal(r0["anp_rng"], r1["anp_rng"])


def test_meta_fm_resumed_fit_splits_the_restored_stream_by_rank(two_ranks):
    """A checkpoint loaded on every rank: replicas stay in sync, ranks draw different batches,
    and rank 0 continues the saved stream exactly as a single process resuming it would."""
    r0, r1 = two_ranks
    assert not torch.equal(r0["mfm_rng"], r1["mfm_rng"])
    for a, b in zip(r0["mfm_resumed"], r1["mfm_resumed"]):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert not torch.equal(r0["mfm_resumed_rng"], r1["mfm_resumed_rng"])
    from bayesphys.meta_fm import MetaFlowMatching

    ckpt = r0["_out"] / "mfm_ckpt.pt"
    alone, d = MetaFlowMatching.load(ckpt), _mfm()[1]
    alone.fit(d, steps=2, progress=False)
    assert torch.equal(alone._train_gen.get_state(), r0["mfm_resumed_rng"])


def test_single_process_is_unchanged():
    """Without a process group the fit is the plain one: same seed, same weights."""
    a, b = _rgnp(), _rgnp()
    assert not GradientSync(a.net).active
    a.fit(steps=2, progress=False)
    b.fit(steps=2, progress=False)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    g = torch.Generator().manual_seed(7)
    rank_generator_seed(g)
    assert torch.equal(
        torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(7))
    )


def test_without_a_group_every_method_is_a_no_op():
    """A single process (no process group): broadcast and averaging leave the parameters and
    gradients as they are, and the mean of a value is the value."""
    lin = torch.nn.Linear(2, 1)
    lin(torch.ones(1, 2)).sum().backward()
    before = [t.detach().clone() for t in (*lin.parameters(), *(p.grad for p in lin.parameters()))]
    sync = GradientSync(lin)
    assert not sync.active and sync.is_main and (sync.rank, sync.world_size) == (0, 1)
    sync.broadcast()
    sync.average_gradients()
    after = [*lin.parameters(), *(p.grad for p in lin.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert sync.mean(torch.tensor([2.5])) == 2.5 and sync.mean(1.5) == 1.5


def test_averaging_with_no_gradients_sends_nothing(monkeypatch):
    """On a group, a step where no parameter has a gradient (on every rank alike) reduces
    nothing; one with gradients reduces them all in a single call."""
    import bayesphys._data_parallel as dp

    monkeypatch.setattr(dp, "_active_group", lambda: (1, 2))
    sent = []
    monkeypatch.setattr(dp.dist, "all_reduce", lambda t, *a, **k: sent.append(t))
    lin = torch.nn.Linear(2, 1)
    sync = GradientSync(lin, broadcast=False)
    assert sync.active and not sync.is_main
    sync.average_gradients()
    assert sent == [] and all(p.grad is None for p in lin.parameters())
    lin(torch.ones(1, 2)).sum().backward()
    sync.average_gradients()
    assert len(sent) == 1 and sent[0].numel() == 3  # the weight's 2 and the bias's 1, at once


def test_bad_module():
    with pytest.raises(TypeError, match="module"):
        GradientSync([torch.zeros(2)])


def test_the_loss_mean_is_reduced_on_the_device_the_backend_serves(monkeypatch):
    """NCCL reduces CUDA tensors only: GradientSync.mean used to send a CPU tensor there."""
    import bayesphys._data_parallel as dp

    monkeypatch.setattr(dp.dist, "get_backend", lambda *a: "nccl")
    monkeypatch.setattr(dp.torch.cuda, "current_device", lambda: 1)
    assert dp._reduce_device() == torch.device("cuda", 1)
    monkeypatch.setattr(dp.dist, "get_backend", lambda *a: "gloo")
    assert dp._reduce_device() == torch.device("cpu")
    # on two gloo ranks it stays on the CPU and averages
    monkeypatch.setattr(dp, "_active_group", lambda: (0, 2))
    sent = []
    monkeypatch.setattr(dp.dist, "all_reduce", lambda t, *a, **k: sent.append(t) or t.mul_(2))
    sync = GradientSync(torch.nn.Linear(2, 1), broadcast=False)
    assert sync.mean(torch.tensor(1.5)) == 1.5 and sent[0].device.type == "cpu"


def test_the_old_import_path_still_works():
    from bayesphys import _data_parallel
    from bayesphys.distributed.data_parallel import GradientSync as Moved

    assert Moved is _data_parallel.GradientSync


@pytest.mark.parametrize("backend", ["nccl", "cpu:gloo,cuda:nccl"])
def test_an_existing_cuda_group_puts_each_rank_on_its_own_device(monkeypatch, backend):
    """A group the user started (``init_process_group()`` without a backend reports
    ``"cpu:gloo,cuda:nccl"`` on a CUDA build) trains on ``cuda:LOCAL_RANK``, made the current
    device (it trained on the CPU, and NCCL ran every rank on cuda:0). Simulated: no GPU here."""
    import bayesphys.distributed._process_group as pg

    current = []
    monkeypatch.setattr(pg.dist, "get_rank", lambda *a: 3)
    monkeypatch.setattr(pg.dist, "get_world_size", lambda *a: 4)
    monkeypatch.setattr(pg.dist, "get_backend", lambda *a: backend)
    monkeypatch.setattr(pg.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pg.torch.cuda, "set_device", current.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = pg._context_from_group(None)
    assert ctx.device == torch.device("cuda", 1) and current == [torch.device("cuda", 1)]
    assert ctx.rank == 3 and ctx.world_size == 4
    current.clear()
    assert pg._context_from_group(torch.device("cuda")).device == torch.device("cuda", 1)
    assert current == [torch.device("cuda", 1)]
    monkeypatch.setattr(pg.dist, "get_backend", lambda *a: "gloo")
    assert pg._context_from_group(None).device == torch.device("cpu")


def _float64_fit_losses(name: str) -> list[float]:
    if name == "neural_process":
        return _rgnp(dtype="float64").fit(steps=3, progress=False).loss_history
    if name == "probconserv":
        from bayesphys.probconserv import ProbConserv

        pc = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
        return pc.fit(steps=3, progress=False).loss_history
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map

    d = linear_map(n_train=6, n_cal=2, n_test=4, n_points=48, seed=0)
    m = MetaFlowMatching(d, method="MFM", seed=0, dtype="float64", **SMALL_MFM)
    return m.fit(steps=3, progress=False).loss_history


@pytest.mark.parametrize("name", ["neural_process", "probconserv", "meta_fm"])
def test_a_synced_fit_reports_the_rank_mean_unrounded(monkeypatch, name):
    """Under a process group the fits reported ``torch.tensor(mean)``: rounded to the default
    dtype (float32), so a float64 fit's loss history lost digits (and changed with the default
    dtype). One rank with no-op collectives must report the plain fit's losses."""
    import bayesphys._data_parallel as dp

    plain = _float64_fit_losses(name)
    monkeypatch.setattr(dp, "_active_group", lambda: (0, 1))
    monkeypatch.setattr(dp, "_reduce_device", lambda: torch.device("cpu"))
    for fn in ("all_reduce", "broadcast"):
        monkeypatch.setattr(dp.dist, fn, lambda t, *a, **k: t)
    synced = _float64_fit_losses(name)
    assert synced == plain
