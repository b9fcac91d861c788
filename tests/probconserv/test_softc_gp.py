"""SoftC for the meta-GP (issue 4's ``SoftC-GP``): the penalty on its differentiable predictive
mean, training with it, the unchanged ``softc_weight = 0`` path, persistence and the
benchmark's load path that trains SoftC-GP alone."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from bayesphys import stream_seed
from bayesphys._bench import repo_root, script_module
from bayesphys.probconserv._train import softc_penalty_gp
from bayesphys.probconserv.model import ProbConserv
from bayesphys.problems.gpme import make_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _FieldMean:
    """A stand-in for :meth:`MetaGP.mean_at` returning ``f(t, x)`` at the targets."""

    def __init__(self, f):
        self.f = f

    def mean_at(self, xc, yc, xt):
        return self.f(xt[..., 0], xt[..., 1])


def test_mean_at_is_predicts_mean_and_differentiable():
    gp = ProbConserv("pme", step1="gp", gp_width=8, seed=1)
    gp.fit(steps=3, progress=False)
    d = make_dataset("pme", 3, seed=3)
    mean, _ = gp.net.predict(d.x_context, d.y_context, d.x_target)
    m = gp.net.mean_at(d.x_context, d.y_context, d.x_target)
    assert m.shape == mean.shape == (3, d.x_target.shape[1])
    torch.testing.assert_close(m.detach(), mean, rtol=0, atol=1e-9)
    # at targets that coincide with contexts too: finite gradients for every hyperparameter
    m = gp.net.mean_at(d.x_context, d.y_context, d.x_context)
    m.sum().backward()
    grads = [p.grad for p in gp.net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_penalty_vanishes_on_an_exact_solution_only():
    """Diffusion ``u = sin(x) e^{-k t}`` solves ``u_t = k u_xx``: its finite-difference residual
    is ~0 (second order in the step); a perturbed field's is not."""
    model = ProbConserv("diffusion", step1="gp", gp_width=4, seed=0, softc_points=16)
    d = make_dataset("diffusion", params=[1.0, 4.0], seed=0)
    k = d.params[:, None, None]

    def exact(t, x):
        return torch.sin(x) * torch.exp(-k[..., 0] * t)

    def perturbed(t, x):
        return exact(t, x) + 0.1 * torch.sin(3 * x) * t

    args = (d.x_context, d.y_context, d.x_target, d.params)
    model.net = _FieldMean(exact)
    r_exact = float(softc_penalty_gp(model, *args))
    model.net = _FieldMean(perturbed)
    r_pert = float(softc_penalty_gp(model, *args))
    assert r_exact < 1e-8
    assert r_pert > 1e-3


def test_pme_residual_matches_its_closed_form():
    """PME ``k(u) = u^m``: for ``u = 1 + t x`` (``u_t = x``, ``u_x = t``), the residual is
    ``x - m t^2 u^{m-1}`` (flux form ``d/dx(u^m t)``)."""
    model = ProbConserv("pme", step1="gp", gp_width=4, seed=0, softc_points=1000)
    d = make_dataset("pme", params=[2.0], seed=0)
    m = 2.0

    def field(t, x):
        return 1 + t * x

    model.net = _FieldMean(field)
    xt = d.x_target
    t, x = xt[..., 0], xt[..., 1]
    want = (x - m * t**2 * field(t, x) ** (m - 1)).pow(2).mean()
    got = softc_penalty_gp(model, d.x_context, d.y_context, xt, d.params)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


def test_softc_gp_fit_lowers_the_penalty():
    """20 steps on 16 PME functions: with the penalty (weight 0.1) the mean's residual on those
    functions is lower than after the plain marginal-likelihood fit (128 -> 101 here)."""
    d = make_dataset("pme", 16, seed=11)
    pens = {}
    for w in (0.0, 0.1):
        gp = ProbConserv("pme", step1="gp", gp_width=8, seed=0, softc_weight=w, batch_size=16)
        gp.fit(d, steps=20, progress=False)
        gp.config.softc_points = 100  # every target
        with torch.no_grad():
            pens[w] = float(softc_penalty_gp(gp, d.x_context, d.y_context, d.x_target, d.params))
    assert pens[0.1] < 0.9 * pens[0.0]


def test_weight_zero_gp_training_is_the_marginal_likelihood_path():
    """``softc_weight = 0``: each step's loss is :meth:`MetaGP.loss` exactly (no penalty, no
    random draw), so two fits agree bit for bit and the training stream is untouched; a
    SoftC-GP fit's first loss adds the non-negative penalty to the same loss."""
    gp = ProbConserv("stefan", step1="gp", gp_width=4, seed=2)
    twin = ProbConserv("stefan", step1="gp", gp_width=4, seed=2)
    rng0 = gp._train_rng.get_state()
    # the first training batch (the stream "probconserv-train" at step 0, rank 0)
    seed = stream_seed(2, "probconserv-train", 0, 0)
    first = make_dataset(gp.problem, gp.config.batch_size, seed=seed)
    want = gp.net.loss(first.x_context, first.y_context)  # with grad, as the fit computes it
    r = gp.fit(steps=3, progress=False)
    r2 = twin.fit(steps=3, progress=False)
    assert r.loss_history[0] == float(want.detach())
    assert r.loss_history == r2.loss_history
    assert all(torch.equal(a, b) for a, b in zip(gp.net.parameters(), twin.net.parameters()))
    assert torch.equal(gp._train_rng.get_state(), rng0)
    soft = ProbConserv("stefan", step1="gp", gp_width=4, seed=2, softc_weight=1e-3)
    rs = soft.fit(steps=1, progress=False)
    assert rs.loss_history[0] > r.loss_history[0]
    assert not torch.equal(soft._train_rng.get_state(), rng0)  # the residual's subset


def test_set_softc_weight_and_save_load_round_trip(tmp_path):
    gp = ProbConserv("pme", step1="gp", gp_width=4, seed=0, softc_points=8)
    assert gp.config.softc_points == 8
    gp.fit(steps=1, progress=False)
    gp.set_softc_weight(0.05)
    gp.fit(steps=2, progress=False)
    back = ProbConserv.load(gp.save(tmp_path / "softc_gp.pt"))
    assert back.config == gp.config
    assert (back.config.softc_weight, back.config.softc_points) == (0.05, 8)
    assert all(torch.equal(a, b) for a, b in zip(gp.net.parameters(), back.net.parameters()))
    # training on from the file continues as the model would
    a, b = gp.fit(steps=1, progress=False), back.fit(steps=1, progress=False)
    assert a.loss_history == b.loss_history
    with pytest.raises(ValueError, match="weight"):
        gp.set_softc_weight(-1.0)
    with pytest.raises(ValueError, match="softc_weight"):
        ProbConserv("pme", step1="gp", softc_weight=-0.5)
    with pytest.raises(ValueError, match="softc_weight"):
        ProbConserv("pme", step1="gp", softc_weight=math.nan)


def test_benchmark_load_path_trains_only_softc_gp(tmp_path, monkeypatch):
    """A ``--load-models`` folder with ANP, SoftC-ANP and GP but no SoftC-GP: the three are
    loaded unchanged and SoftC-GP alone is fine-tuned, from the loaded GP."""
    script_module(str(repo_root() / "benchmarks" / "probconserv.py"))
    train = sys.modules["_probconserv_train"]
    from bayesphys.problems.gpme import get_problem

    prob = get_problem("diffusion")
    anp = ProbConserv(prob, step1="anp", hidden=8, seed=0)
    anp.fit(steps=1, progress=False)
    gp = ProbConserv(prob, step1="gp", gp_width=4, seed=0)
    gp.fit(steps=2, progress=False)
    for key, m in (("ANP", anp), ("SoftC-ANP", anp), ("GP", gp)):
        m.save(tmp_path / f"diffusion_{key}.pt")
    fits = []
    real_fit = ProbConserv.fit

    def spy(self, *a, **kw):
        fits.append((self.config.step1, self.config.softc_weight))
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(ProbConserv, "fit", spy)
    prev = {f"diffusion/{k}": {"seconds": 7.0} for k in ("ANP", "SoftC-ANP", "GP")}
    cfg = {"anp": 1, "softc": 2, "gp": 1}
    out = train._train(prob, cfg, "cpu", 0, lambda s: None, str(tmp_path), prev)
    assert tuple(out) == train.MODELS == ("ANP", "SoftC-ANP", "GP", "SoftC-GP")
    assert fits == [("gp", train.SOFTC_WEIGHT["diffusion"])]
    for key in ("ANP", "SoftC-ANP", "GP"):
        model, info = out[key]
        ref = anp if key != "GP" else gp
        assert info["seconds"] == 7.0 and info["loaded_from"].endswith(f"diffusion_{key}.pt")
        assert model.steps_done == ref.steps_done
        sd, rd = model.net.state_dict(), ref.net.state_dict()
        assert all(torch.equal(sd[k], rd[k]) for k in rd)
    soft, info = out["SoftC-GP"]
    assert soft.config.step1 == "gp" and soft.config.softc_weight == train.SOFTC_WEIGHT["diffusion"]
    assert soft.steps_done == gp.steps_done + 2 and info["steps"] == gp.steps_done + 2
    assert info["seconds"] > 7.0 and "loaded_from" not in info
    # the loaded GP itself is left as loaded (the fine-tune works on a copy)
    assert out["GP"][0].config.softc_weight == 0.0
    # a folder that has SoftC-GP too: all four loaded, nothing trained
    soft.save(tmp_path / "diffusion_SoftC-GP.pt")
    fits.clear()
    again = train._train(prob, cfg, "cpu", 0, lambda s: None, str(tmp_path), prev)
    assert fits == [] and tuple(again) == train.MODELS
    assert all(
        torch.equal(a, b)
        for a, b in zip(again["SoftC-GP"][0].net.parameters(), soft.net.parameters())
    )
