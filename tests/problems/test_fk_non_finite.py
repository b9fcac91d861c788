"""fk_forward / fk_forward_tangent refuse a NaN or infinite ``c0`` by name;
they returned a NaN map silently. Under torch.func transforms they still run."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys._device import check_finite_input, values_readable
from bayesphys.problems.fisher_kolmogorov import fk_forward, fk_forward_tangent, tissue_faces

N = 8
KW = dict(t_end=1.0, steps=10, spacing=1.0)


def _faces():
    return tissue_faces(
        torch.ones(N, N, dtype=torch.float64), torch.zeros(N, N, dtype=torch.float64)
    )


def _c0():
    c0 = torch.zeros(N, N, dtype=torch.float64)
    c0[N // 2, N // 2] = 0.5
    return c0


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_fk_forward_refuses_a_non_finite_c0(value, scheme):
    c0 = _c0()
    c0[1, 2] = value
    with pytest.raises(ValueError, match=r"^c0: expected finite values, received 1 NaN/Inf"):
        fk_forward(c0, _faces(), 0.1, 0.1, scheme=scheme, **KW)
    with pytest.raises(ValueError, match=r"^c0: expected finite values"):
        fk_forward_tangent(
            c0, torch.zeros(1, N, N, dtype=c0.dtype), _faces(), 0.1, 0.1,
            torch.zeros(1, dtype=c0.dtype), torch.zeros(1, dtype=c0.dtype), **KW,
        )  # fmt: skip


def test_fk_forward_runs_under_torch_func_transforms():
    faces, c0 = _faces(), _c0()

    def run(c):
        return fk_forward(c, faces, 0.1, 0.1, **KW)

    ref = run(c0)
    assert torch.allclose(torch.func.vmap(run)(torch.stack([c0, c0]))[1], ref)
    jf = torch.func.jacfwd(run)(c0)
    jr = torch.func.jacrev(run)(c0)
    assert jf.shape == (N, N, N, N) and torch.allclose(jf, jr)
    # the rates as tensors under grad: the test of their values is skipped, the gradient kept
    g = torch.func.grad(lambda dw: fk_forward(c0, faces, dw, 0.1, **KW).sum())(
        torch.tensor(0.1, dtype=torch.float64)
    )
    assert math.isfinite(float(g))


def test_values_readable_tells_transform_wrappers_from_plain_tensors():
    x = torch.randn(3)
    seen = []

    def probe(t):
        seen.append(values_readable(t))
        check_finite_input("t", t)  # no error under a transform, whatever the values
        return t.sum()

    probe(x)
    probe(x.clone().requires_grad_())
    torch.func.vmap(probe)(torch.randn(2, 3))
    torch.func.grad(probe)(x)
    torch.func.jacfwd(probe)(x)
    probe(torch.empty(3, device="meta"))  # shapes only: left to the device checks
    assert seen == [True, True, False, False, False, False]
    with pytest.raises(ValueError, match=r"^t: expected finite values"):
        probe(torch.tensor([math.nan]))
