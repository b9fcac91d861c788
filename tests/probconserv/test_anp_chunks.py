"""The ANP's chunked decoder (prediction without gradients on a CPU) is pinned to the
unchunked one bit for bit."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv.anp import AttentiveNP, _chunked


@pytest.mark.parametrize("rows", [16, 25, 40, 60, 130, 10_000])
def test_chunked_decoder_equals_the_whole_tensor(rows):
    """Blocks of whole draws (``B * Nt <= rows``) or of functions of one draw, or no split
    (``S * B * Nt <= 2 rows``): torch.equal (blocks of >= 16 points, as MKL needs)."""
    torch.manual_seed(0)
    net = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=16).eval()
    rest = net.dec[1:]
    point, zpart = torch.randn(3, 20, 32), torch.randn(5, 3, 1, 32)
    with torch.no_grad():
        assert torch.equal(_chunked(rest, point, zpart, rows=rows), rest(point + zpart))


def test_predict_takes_the_chunked_path_with_the_same_numbers():
    """``_decode_draws`` without gradients (chunked) equals it with gradients (whole tensor)."""
    torch.manual_seed(1)
    net = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=16).eval()
    xc, yc, xt = torch.rand(4, 7, 2), torch.randn(4, 7), torch.rand(4, 3000, 2)
    with torch.no_grad():
        mz, sz = net.latent(xc, yc)
        z = mz + sz * torch.randn(6, *mz.shape)
        r = net.deterministic(xc, yc, xt)
        mu, sd = net._decode_draws(r, z, xt)
    mu2, sd2 = net._decode_draws(r, z, xt)  # gradients enabled: the unchunked path
    assert torch.equal(mu, mu2.detach()) and torch.equal(sd, sd2.detach())
