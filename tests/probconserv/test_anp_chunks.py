"""The ANP's chunked decoder (prediction without gradients on a CPU) is pinned to the
unchunked one to the round-off of its matrix products: a BLAS may round a row of a product
by the matrix's row count and thread split (MKL's AVX2 kernels round the last rows mod 6
apart), so blocks of rows need not give the whole tensor's bits."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import bayesphys.probconserv.anp as anp
from bayesphys.probconserv.anp import AttentiveNP, _chunked


def _reorder_bound(layers: torch.nn.Sequential, u: Tensor) -> Tensor:
    """Elementwise bound on how far two evaluations of ``layers(u)`` (ReLUs and Linears)
    can differ when their products sum their terms in other orders. A float sum of ``n``
    terms, in any order, is within ``gamma_n * sum|t_i|`` of the exact one
    (``gamma_n = n u / (1 - n u)``, ``u`` the unit round-off), so two orders differ by at
    most twice that; a Linear also maps the difference of its inputs through ``|W|``, a ReLU
    passes it on (it is 1-Lipschitz)."""
    unit = torch.finfo(u.dtype).eps / 2
    h = u.detach().double()
    err = torch.zeros_like(h)
    for mod in layers:
        if isinstance(mod, torch.nn.ReLU):
            h = h.clamp_min(0.0)
            continue
        assert isinstance(mod, torch.nn.Linear), mod
        w, b = mod.weight.detach().double(), mod.bias.detach().double()
        n = w.shape[1] + 1  # the products and the bias
        gamma = n * unit / (1 - n * unit)
        err = err @ w.abs().T + 2 * gamma * ((h.abs() + err) @ w.abs().T + b.abs())
        h = h @ w.T + b
    return err


def _within(got: Tensor, want: Tensor, bound: Tensor) -> bool:
    return bool(((got.double() - want.double()).abs() <= bound).all())


@pytest.mark.parametrize("rows", [16, 25, 40, 60, 130, 10_000])
def test_chunked_decoder_equals_the_whole_tensor(rows):
    """Blocks of whole draws (``B * Nt <= rows``) or of functions of one draw, or no split
    (``S * B * Nt <= 2 rows``): the whole tensor to the round-off of reordered sums, which
    a block fed another draw's latent part is far outside."""
    torch.manual_seed(0)
    net = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=16).eval()
    rest = net.dec[1:]
    point, zpart = torch.randn(3, 20, 32), torch.randn(5, 3, 1, 32)
    with torch.no_grad():
        got, whole = _chunked(rest, point, zpart, rows=rows), rest(point + zpart)
        swapped = rest(point + zpart.roll(1, 0))  # each draw decoded with the next one's z
    bound = _reorder_bound(rest, point + zpart)
    assert got.shape == whole.shape == (5, 3, 20, 2)
    assert _within(got, whole, bound)
    assert not _within(swapped, whole, bound)


def test_predict_takes_the_chunked_path_with_the_same_numbers(monkeypatch):
    """``_decode_draws`` without gradients (chunked) equals it with gradients (whole tensor)
    to the round-off of reordered sums: the mean, and the sd ``1e-3 + softplus(.)``, which
    moves at most as much as its input (slope below 1) plus its own rounding at each of the
    two inputs (a few ulps: 8 eps of it covers both)."""
    torch.manual_seed(1)
    net = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=16).eval()
    xc, yc, xt = torch.rand(4, 7, 2), torch.randn(4, 7), torch.rand(4, 3000, 2)
    seen = []
    real = anp._chunked
    monkeypatch.setattr(anp, "_chunked", lambda *a, **k: seen.append(a[1:3]) or real(*a, **k))
    with torch.no_grad():
        mz, sz = net.latent(xc, yc)
        z = mz + sz * torch.randn(6, *mz.shape)
        r = net.deterministic(xc, yc, xt)
        mu, sd = net._decode_draws(r, z, xt)
    assert len(seen) == 1  # the chunked path, once
    mu2, sd2 = net._decode_draws(r, z, xt)  # gradients enabled: the unchunked path
    assert len(seen) == 1
    point, zpart = seen[0]
    bound = _reorder_bound(net.dec[1:], point + zpart)
    eps = torch.finfo(sd.dtype).eps
    assert _within(mu, mu2.detach(), bound[..., 0])
    assert _within(sd, sd2.detach(), bound[..., 1] + 8 * eps * sd.double())
