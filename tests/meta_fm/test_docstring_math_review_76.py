"""Review 76: the docstrings' equations and tensor shapes of Meta Flow Matching (``meta_fm``)
and its population generators, as oracles, each computed independently of the code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from bayesphys.meta_fm import PopulationEmbedding, VectorField, time_embedding
from bayesphys.meta_fm._calibration import population_summaries
from bayesphys.meta_fm._train import normalization
from bayesphys.meta_fm.evaluation import ensemble_spread, population_metrics
from bayesphys.problems.populations import (
    PopulationPairs,
    linear_map,
    particle_velocity,
    patient_screen,
)

F64 = torch.float64


# ------------------------------------------------------------------------- findings (docs)


def test_film_modulates_a_residual_block_on_its_whole_output_after_its_activation():
    """``conditioning="film"`` with ``residual=True``: the first layer is modulated before its
    SELU, each residual block on its whole output, h <- (h + SELU(W h + b)) * (1 + gamma) +
    beta, with no activation after. ``_film_forward``'s docstring said every hidden layer was
    modulated "before its activation", which for a block would be h + SELU((W h + b) * (1 +
    gamma) + beta): that reading is asserted to be another field (off by O(1) here)."""
    torch.manual_seed(0)
    f = VectorField(
        2, 3, width=6, layers=4, time_dim=4, fourier=0, conditioning="film", residual=True
    ).double()
    for head in f.film:
        torch.nn.init.normal_(head.weight)
        torch.nn.init.normal_(head.bias)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(5, generator=g, dtype=F64)
    x = torch.randn(5, 2, generator=g, dtype=F64)
    c = torch.randn(5, 3, generator=g, dtype=F64)
    lin0, out = f.net[0], f.net[-1]
    blocks = [m.lin for m in f.net if not isinstance(m, (torch.nn.Linear, torch.nn.SELU))]
    assert len(blocks) == 2 and len(f.film) == 3

    def film(k, h):
        w, b = f.film[k].weight, f.film[k].bias
        gamma_beta = c @ w.T + b
        return h * (1 + gamma_beta[:, :6]) + gamma_beta[:, 6:]

    def selu(h):
        alpha, scale = 1.6732632423543772, 1.0507009873554805
        return scale * torch.where(h > 0, h, alpha * (torch.exp(h) - 1))

    z = torch.cat([time_embedding(t, 4), x, c], -1)
    h0 = selu(film(0, z @ lin0.weight.T + lin0.bias))
    after, before = h0, h0
    for k, lin in enumerate(blocks, 1):
        after = film(k, after + selu(after @ lin.weight.T + lin.bias))
        before = before + selu(film(k, before @ lin.weight.T + lin.bias))
    with torch.no_grad():
        got = f(t, x, c)
        want = after @ out.weight.T + out.bias
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    old_reading = (before @ out.weight.T + out.bias).detach()
    assert float((got - old_reading).abs().max()) > 1e-2


def test_normalization_scale_is_the_mean_of_the_bessel_corrected_sds():
    """``normalization``: mean [d] of all training points (sources and targets pooled) and
    one scale, the mean over dimensions of their sample sds (divisor N - 1; the docstring did
    not say which sd; N = 7 points here, where the two differ by 8 %)."""
    g = torch.Generator().manual_seed(0)
    src = [torch.randn(3, 2, generator=g, dtype=F64) * torch.tensor([1.0, 3.0])]
    tgt = [torch.randn(4, 2, generator=g, dtype=F64) + 2.0]
    data = PopulationPairs("n", src, tgt, torch.arange(1), {"train": [0]}, False)
    mean, scale = normalization(data)
    pts = np.concatenate([src[0].numpy(), tgt[0].numpy()])
    np.testing.assert_allclose(mean.numpy(), pts.mean(0), rtol=1e-14)
    assert mean.shape == (2,) and scale.shape == () and scale.dtype == F64
    assert float(scale) == pytest.approx(float(pts.std(0, ddof=1).mean()), rel=1e-13)
    assert abs(float(scale) - float(pts.std(0, ddof=0).mean())) > 0.05 * float(scale)


def test_population_summaries_spread_uses_the_biased_covariance():
    """``population_summaries``: [*S, n, d] -> [*S, d + 1], per-axis means then
    sqrt(tr C) with C the divisor-n covariance (the docstring did not say which), as numpy's
    ``np.cov(bias=True)``; n = 5 here, where the unbiased one is 12 % larger."""
    g = torch.Generator().manual_seed(2)
    pops = torch.randn(2, 3, 5, 2, generator=g, dtype=F64) * 1.5 + 0.3
    got = population_summaries(pops)
    assert got.shape == (2, 3, 3)
    for i in range(2):
        for j in range(3):
            p = pops[i, j].numpy()
            want = [*p.mean(0), math.sqrt(np.trace(np.cov(p.T, bias=True)))]
            np.testing.assert_allclose(got[i, j].numpy(), want, rtol=1e-13)
            unbiased = math.sqrt(np.trace(np.cov(p.T)))
            assert unbiased > 1.1 * float(got[i, j, 2])


# ------------------------------------------------------- formulas verified (no prior oracle)


def test_embedding_is_gcnconv_message_passing_over_the_knn_edges_then_normalised_mean():
    """``PopulationEmbedding``: edges j -> i from the k nearest j != i of each i, self-loops,
    messages h_j W / sqrt(deg_i deg_j) with deg the in-degree plus 1 (PyG ``GCNConv`` with
    ``gcn_norm``), + bias, ReLU between layers only, node mean, unit norm; node inputs are the
    coordinates then the features, the graph built on the coordinates only. Built from an
    explicit edge list with loops (no dense algebra), per population of a batch [P, n, d]."""
    torch.manual_seed(0)
    k = 4
    emb = PopulationEmbedding(3, hidden=5, layers=3, k=k, features=2).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 13, 3, generator=g, dtype=F64)
    f = torch.randn(2, 13, 2, generator=g, dtype=F64)
    z = emb(x, f)
    assert z.shape == (2, 5) and z.dtype == F64

    def by_hand(xp, fp):
        n = xp.shape[0]
        edges = [(i, i) for i in range(n)]  # (source j, target i), self-loops first
        for i in range(n):
            dist = sorted((float((xp[i] - xp[j]).pow(2).sum()), j) for j in range(n) if j != i)
            edges += [(j, i) for _, j in dist[:k]]
        deg = [sum(1 for _, i in edges if i == v) for v in range(n)]
        h = torch.cat([xp, fp], -1)
        for layer, lin in enumerate(emb.gcn.lins):
            hw = h @ lin.weight.T
            new = torch.zeros(n, hw.shape[1], dtype=F64)
            for j, i in edges:
                new[i] += hw[j] / math.sqrt(deg[i] * deg[j])
            h = new + lin.bias
            if layer < len(emb.gcn.lins) - 1:
                h = torch.relu(h)
        m = h.mean(0)
        return m / m.norm()

    with torch.no_grad():
        for p in range(2):
            torch.testing.assert_close(z[p], by_hand(x[p], f[p]), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(emb(x[1], f[1]), z[1], rtol=1e-12, atol=1e-14)


def test_particle_velocity_is_attraction_minus_the_kernel_gradient_by_autograd():
    """B3: v_j = -a (x_j - mean) - (b / n) sum_k grad_{x_j} exp(-|x_j - x_k|^2 / (2 ell^2)),
    the gradient taken by autograd on a loop over k (k = j included, whose term is 0): the
    minus sign makes it a repulsion (the anchor's "+ (b/n) sum grad" would attract)."""
    a, b, ell, n = 1.3, 2.0, 0.7, 7
    x = torch.randn(2, n, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    got = particle_velocity(x, a=a, b=b, ell=ell)
    want = torch.zeros_like(x)
    for p in range(2):
        for j in range(n):
            xj = x[p, j].clone().requires_grad_(True)
            kern = sum(torch.exp(-(xj - x[p, q]).pow(2).sum() / (2 * ell**2)) for q in range(n))
            (grad,) = torch.autograd.grad(kern, xj)
            want[p, j] = -a * (x[p, j] - x[p].mean(0)) - b / n * grad
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    # repulsion: two isolated particles (a = 0) move apart
    pair = torch.tensor([[[0.0, 0.0], [0.3, 0.0]]], dtype=F64)
    v = particle_velocity(pair, a=0.0)
    assert float(v[0, 0, 0]) < 0 < float(v[0, 1, 0])


def test_patient_screen_shifts_and_kills_type_a_cells_as_documented():
    """B4: the treated type-A cells are N(m_p + offset + delta_t (1 - pi_p) w_t, sd_a^2 I), and
    the survivors' share of the treated population is pi (1 - kappa pi) / (pi (1 - kappa pi) +
    1 - pi) (a fraction kappa_t pi_p of type A killed); the control's share is pi. Checked on
    200k cells against the sampling error (|z| < 5), from the recorded parameters."""
    n = 200_000
    d = patient_screen(
        n_patients=4, n_treatments=2, n_replicates=1, n_cells=n, dim=3, dtype=None, seed=3
    )
    prm = d.extra["params"]
    zs = []
    for i in range(len(d)):
        p, t = int(d.extra["patient"][i]), int(d.treatment[i])
        pi, kappa = float(prm["pi"][p]), float(prm["kappa"][t])
        l0, l1 = d.extra["cell_type"][i]
        surv = pi * (1 - kappa * pi)
        share = surv / (surv + 1 - pi)
        for got, want in (
            (float((l0 == 0).double().mean()), pi),
            (float((l1 == 0).double().mean()), share),
        ):
            zs.append((got - want) / math.sqrt(want * (1 - want) / n))
        a_cells = d.target[i][l1 == 0]
        centre = prm["m_a"][p] + d.extra["offset"][i]
        shift = float(prm["delta"][t]) * (1 - pi) * prm["w"][t]
        se = float(prm["sd_a"][p]) / math.sqrt(a_cells.shape[0])
        zs += ((a_cells.mean(0) - centre - shift) / se).tolist()
        assert float(prm["w"][t].norm()) == pytest.approx(1.0, rel=1e-12)
    assert max(abs(z) for z in zs) < 5.0, zs


def test_population_w1_w2_and_ensemble_spread_are_optimal_assignments():
    """For equal-size uniform clouds exact OT is an assignment: W1 = min mean |x_i - y_s(i)|,
    W2 = sqrt(min mean |x_i - y_s(i)|^2) (scipy's ``linear_sum_assignment``), and
    ``ensemble_spread`` = the mean of the pairwise W2 over the M(M-1)/2 member pairs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, 3, generator=g, dtype=F64)
    y = 0.3 + 1.5 * torch.randn(17, 3, generator=g, dtype=F64)

    def assignment(a, b, metric):
        cost = cdist(a.numpy(), b.numpy(), metric)
        r, c = linear_sum_assignment(cost)
        return cost[r, c].mean()

    met = population_metrics(x, y)
    assert met["w1"] == pytest.approx(assignment(x, y, "euclidean"), rel=1e-12)
    assert met["w2"] == pytest.approx(math.sqrt(assignment(x, y, "sqeuclidean")), rel=1e-12)
    members = [x, y, 0.5 * x]
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = np.mean([math.sqrt(assignment(members[i], members[j], "sqeuclidean")) for i, j in pairs])
    assert ensemble_spread(members) == pytest.approx(float(want), rel=1e-12)


def test_linear_map_near_singular_count_and_exact_law_of_the_default_draw():
    """B2 defaults (300 pairs, d = 2): 48 pairs have min_t det M_t < 1e-2 with
    M_t = (1 - t) I + t A, A = 0.5 R(|mu|) (``linear_map_exact_field``'s docstring), on a grid
    of 4001 times; and ``extra`` holds the exact target law N(mu + 0.5 tanh mu, A Sigma A^T)
    with A a half rotation by |mu| (A A^T = I / 4), built here from mu and Sigma."""
    d = linear_map()
    a, mu, cov = d.extra["A"], d.extra["source_mean"], d.extra["source_cov"]
    ang = mu.norm(dim=-1)
    c, s = torch.cos(ang), torch.sin(ang)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    torch.testing.assert_close(a, 0.5 * rot, rtol=0, atol=1e-15)
    torch.testing.assert_close(d.extra["target_mean"], mu + 0.5 * torch.tanh(mu))
    torch.testing.assert_close(d.extra["target_cov"], 0.25 * rot @ cov @ rot.mT)
    t = torch.linspace(0, 1, 4001, dtype=F64)[:, None, None, None]
    det = torch.linalg.det((1 - t) * torch.eye(2, dtype=F64) + t * a)  # [T, P]
    assert int((det.min(0).values < 1e-2).sum()) == 48 and det.shape[1] == 300
