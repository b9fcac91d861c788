"""Inverse-network training aids: layout mixture, density channels, layout augmentation, QMC
prior draws, warm-up / clipping, and the P3 information oracle."""

import math

import numpy as np
import pytest
import torch

from bayesphys.neural_process import (
    GICNet,
    RandomGridNP,
    check_points,
    information_oracle,
    make_grid,
    match_oracle_sigma,
)
from bayesphys.problems.rgnp import poisson_test_set
from tests.tiny_models import tiny_rgnp


def test_layout_mixture_in_domain_seeded_and_clustered():
    g = make_grid("layouts", [-1.0], [1.0], p_uniform=0.0, max_clusters=1, sd_min=0.02, sd_max=0.02)
    x, wts = g.sample(64, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x.shape == (64, 40, 1) and torch.equal(wts, torch.ones(64, 40, dtype=torch.float64))
    check_points("x", x, [-1.0], [1.0])
    x2, _ = make_grid(
        "layouts", [-1.0], [1.0], p_uniform=0.0, max_clusters=1, sd_min=0.02, sd_max=0.02
    ).sample(64, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(x, x2)
    # one narrow cluster per instance: the points of a set are far tighter than uniform ones
    assert float(x[..., 0].std(-1).median()) < 0.1 < 2 / math.sqrt(12) / 2
    g2 = make_grid("layouts", [0.0, 0.0], [1.0, 2.0])
    y, _ = g2.sample(5, 30, generator=torch.Generator().manual_seed(1))
    check_points("y", y, [0.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="p_uniform"):
        make_grid("layouts", [0.0], [1.0], p_uniform=1.5)


def test_density_channel_is_normalised_and_grid_invariant():
    torch.manual_seed(0)
    net = GICNet(1, 5, 1, [-1.0], [1.0], ell_min=0.1, density=True).double()
    x = torch.linspace(-1, 1, 400, dtype=torch.float64).reshape(1, -1, 1)
    xs = x[:, ::4]
    _, rho = net.kip(x, torch.zeros(1, 400, 20, dtype=torch.float64), density=True)
    _, rho_s = net.kip(xs, torch.zeros(1, 100, 20, dtype=torch.float64), density=True)
    assert rho.shape == (1, 20, 20)
    assert (rho - rho_s).abs().max() < 0.02 * rho.abs().max()  # a mean: no growth with N
    q = net(x, torch.sin(3 * x[..., 0]), torch.ones(1, 1, dtype=torch.float64))
    assert q.loc.shape == (1, 5) and torch.isfinite(q.loc).all()


def test_layout_augmentation_trains_the_inverse_only():
    m = tiny_rgnp(aug_weight=1.0, aug_points=(5, 9))
    z = torch.rand(4, 5) * 2 - 1
    w = torch.ones(4, 1) * 1.5
    term = m._layout_term(z, w)
    assert term.shape == (4,) and torch.isfinite(term).all()
    m.optimizer.zero_grad()
    (-term.mean()).backward()
    assert all(p.grad is None for p in m.forward_net.parameters())  # u' is drawn without gradient
    # a zero gradient is not None either: some inverse weight must actually be pushed
    assert any(p.grad is not None and bool(p.grad.ne(0).any()) for p in m.inverse_net.parameters())
    r = m.fit(steps=3, progress=False)
    assert r.steps == 3 and all(math.isfinite(v) for v in r.loss_history)


def test_qmc_prior_warmup_clip_betas():
    m = tiny_rgnp(qmc_prior=True, lr_warmup=10, grad_clip=1.0, betas=(0.9, 0.95))
    z, w = m._qmc_prior(64)
    assert z.shape == (64, 5) and w.shape == (64, 1)
    assert (
        float(z.min()) >= -1 and float(z.max()) <= 1 and 1 <= float(w.min()) <= float(w.max()) <= 2
    )
    # a scrambled net is more even than i.i.d. draws: every eighth of [-1, 1] in z_0 is hit 8 times
    counts = torch.histc(z[:, 0].double(), bins=8, min=-1, max=1)
    assert torch.equal(counts, torch.full((8,), 8.0, dtype=torch.float64))
    lr, half = m.config.lr, m.config.lr_half_every
    assert m._lr() == pytest.approx(lr / 10 * 0.5 ** (0 / half))
    norms = []  # each step's clipped gradient norm, read while the fit still holds them

    def clipped_norm(model, step):
        ps = model._modules().parameters()
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps])))

    r = m.fit(steps=2, progress=False, callback=clipped_norm, callback_every=1)
    assert r.steps == 2 and m.optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    # the warm-up ramps linearly: the second step ran at 2/10 of the rate, the next runs at
    # 3/10, and past lr_warmup steps only the halving schedule is left
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 2 / 10 * 0.5 ** (1 / half))
    assert m._lr() == pytest.approx(lr * 3 / 10 * 0.5 ** (2 / half))
    m.step_count = 25
    assert m._lr() == pytest.approx(lr * 0.5 ** (25 / half))
    # clipping took effect: the raw gradients of this tiny net have norm ~1e4, each step's were
    # scaled to the global norm grad_clip = 1 (the fit releases them once it is done)
    assert [float(n) for n in norms] == pytest.approx([1.0, 1.0], rel=1e-4)
    assert all(p.grad is None for p in m._modules().parameters())


def test_information_oracle_clustered_sees_less():
    test = poisson_test_set(8, seed=0)
    sig = match_oracle_sigma(test, 0.2, n_cases=8)
    rows = information_oracle(test, sig, n_points=(10, 199), n_cases=8)
    v = {(r["layout"], r["n_points"]): r["nse_z"] for r in rows}
    assert v[("uniform", 199)] == pytest.approx(0.2, rel=1e-3)
    assert v[("clustered", 10)] > v[("uniform", 10)]  # gaps lose information
    assert all(0 < x < 1.2 for x in v.values()) and np.isfinite(list(v.values())).all()


def test_match_oracle_sigma_passes_fd_step_to_its_sensitivities():
    """``kw`` reached information_oracle but not the precomputed sensitivities: ``fd_step``
    was silently ignored (the same sigma for any step)."""
    from bayesphys.neural_process.evaluate import sensitivities

    test = poisson_test_set(4, seed=0, n_nodes=21)
    coarse = match_oracle_sigma(test, 0.05, n_cases=4, fd_step=0.5)
    given = match_oracle_sigma(
        test, 0.05, n_cases=4, jac=sensitivities(test, n_cases=4, fd_step=0.5)
    )
    assert coarse == given
    assert coarse != match_oracle_sigma(test, 0.05, n_cases=4)


def test_sigma_r_learning_rate_multiplier_gets_its_own_group():
    m = tiny_rgnp(sigma_r_lr_mult=0.1)
    groups = m.optimizer.param_groups
    assert len(groups) == 3 and groups[2]["params"][0] is m.log_sigma_r
    m.fit(steps=1, progress=False)
    assert groups[2]["lr"] == pytest.approx(0.1 * groups[0]["lr"])


def test_sigma_r_learning_rate_multiplier_without_learned_sigma_r_is_refused():
    """With ``learn_sigma_r=False`` sigma_r is not optimised: ``sigma_r_lr_mult`` was accepted
    and changed nothing (no group of its own, the same training)."""
    with pytest.raises(ValueError, match="sigma_r_lr_mult: only with learn_sigma_r=True"):
        tiny_rgnp(learn_sigma_r=False, sigma_r_lr_mult=0.1)
    assert len(tiny_rgnp(learn_sigma_r=False).optimizer.param_groups) == 2


def test_a_checkpoint_with_an_ignored_sigma_r_lr_mult_still_loads(tmp_path):
    """Files written before ``sigma_r_lr_mult`` was refused without ``learn_sigma_r`` stored
    it (and it changed nothing); they load as they did, the multiplier back at its default."""
    a = tiny_rgnp(learn_sigma_r=False)
    a.fit(steps=1, progress=False)
    path = a.save(tmp_path / "new.pt")
    ck = torch.load(path, weights_only=False)
    ck["config"]["config"]["sigma_r_lr_mult"] = 0.1
    torch.save(ck, tmp_path / "old.pt")
    back = RandomGridNP.load(tmp_path / "old.pt")
    assert back.config == a.config and back.config.sigma_r_lr_mult == 1.0
    x, z, w = torch.linspace(-1, 1, 9), torch.zeros(5), torch.ones(1)
    assert torch.equal(a.posterior(x, z=z, w=w).mean, back.posterior(x, z=z, w=w).mean)
    assert back.fit(steps=1, progress=False).steps == 1
