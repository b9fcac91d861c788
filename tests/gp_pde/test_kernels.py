import math

import pytest
import torch

from bayesphys.gp_pde import SpectralMixture1d


def _autograd_derivs(k: SpectralMixture1d, z: torch.Tensor, n: int) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    out = k.deriv(z, 0)
    for _ in range(n):
        (out,) = torch.autograd.grad(out.sum(), z, create_graph=True)
    return out.detach()


@pytest.mark.parametrize("kind", ["gm", "stm"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_closed_form_derivatives_match_autograd(kind, n):
    torch.manual_seed(0)
    k = SpectralMixture1d(
        4,
        kind=kind,
        mu=torch.tensor([0.0, 0.7, 1.9, 3.2], dtype=torch.float64),
        log_a=torch.randn(4, dtype=torch.float64) * 0.3,
    )
    z = torch.linspace(-2.3, 2.1, 41, dtype=torch.float64)
    z = z[z.abs() > 1e-3]  # the Matern envelope is not smooth at 0 beyond order 4
    got = k.deriv(z, n)
    want = _autograd_derivs(k, z, n)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["gm", "stm"])
def test_cross_covariance_signs(kind):
    # d/dx k(x - x') = k'(z); d^2/dx dx' k(x - x') = -k''(z); d^4/dx^2 dx'^2 = k''''(z)
    # (in general d^i/dx^i d^j/dx'^j k(x - x') = (-1)^j k^(i+j)(z))
    k = SpectralMixture1d(2, kind=kind, mu=torch.tensor([0.3, 1.1], dtype=torch.float64))
    x = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    xp = torch.tensor(-0.2, dtype=torch.float64, requires_grad=True)
    z = (x - xp).detach()

    def grad(f, var):
        return torch.autograd.grad(f, var, create_graph=True)[0]

    def close(got, n, sign):
        want = sign * float(k.deriv(z, n).detach())
        assert math.isclose(float(got.detach()), want, rel_tol=1e-10), (n, sign)

    val = k.deriv(x - xp, 0)
    dx = grad(val, x)
    close(dx, 1, 1)
    close(grad(val, xp), 1, -1)
    dxdxp = grad(dx, xp)
    close(dxdxp, 2, -1)
    dxx = grad(dx, x)
    close(dxx, 2, 1)
    dxxdxp = grad(dxx, xp)
    close(dxxdxp, 3, -1)
    close(grad(dxxdxp, xp), 4, 1)


@torch.no_grad()
def test_matern_fourth_derivative_at_zero_is_finite():
    k = SpectralMixture1d(1, kind="stm", mu=torch.zeros(1, dtype=torch.float64), log_a=0.0)
    eps = 1e-4
    v0 = float(k.deriv(torch.tensor(0.0, dtype=torch.float64), 4))
    fd = float(
        (
            k.deriv(torch.tensor(eps, dtype=torch.float64), 3)
            - k.deriv(torch.tensor(-eps, dtype=torch.float64), 3)
        )
        / (2 * eps)
    )
    assert math.isclose(v0, 25.0 * float(k.weights[0]), rel_tol=1e-9)  # alpha^4 = 25 a^4
    assert math.isclose(v0, fd, rel_tol=1e-3)


def test_toeplitz_gram_equals_direct():
    k = SpectralMixture1d(5, kind="stm", freq_scale=4.0)
    x = torch.linspace(0, 3, 37, dtype=torch.float64)
    for n in range(3):
        torch.testing.assert_close(k.gram(x, n=n), k.deriv(x[:, None] - x[None, :], n))


@pytest.mark.parametrize("kind", ["gm", "stm"])
def test_gram_of_integer_points_equals_that_of_the_same_floats(kind):
    # an integer grid failed in the uniform-grid test with "Long did not match Float"
    k = SpectralMixture1d(3, kind=kind, freq_scale=0.4)
    for x in (torch.arange(6), torch.tensor([0, 1, 3, 7])):
        xf = x.to(torch.float64)
        for n in (0, 2):
            torch.testing.assert_close(k.gram(x, n=n), k.gram(xf, n=n))
            torch.testing.assert_close(k.gram(x, x, n), k.gram(xf, xf, n))


def test_gram_is_psd_and_weights_are_log_domain():
    k = SpectralMixture1d(6, kind="gm", freq_scale=3.0)
    x = torch.linspace(0, 2, 40, dtype=torch.float64)
    assert torch.linalg.eigvalsh(k.gram(x)).min() > -1e-10
    torch.testing.assert_close(k.weights, torch.full((6,), 1 / 6, dtype=torch.float64))


def test_bad_kernel_arguments():
    with pytest.raises(ValueError, match="kind"):
        SpectralMixture1d(3, kind="rbf")
    with pytest.raises(ValueError, match="num_mixtures"):
        SpectralMixture1d(0)
    with pytest.raises(ValueError, match="mu"):
        SpectralMixture1d(3, mu=torch.zeros(4))
    with pytest.raises(ValueError, match=r"^n: expected a derivative order"):
        SpectralMixture1d(3).deriv(torch.zeros(2, dtype=torch.float64), 5)


def test_derivative_order_must_be_an_int():
    # n=True was taken as the first derivative, n=2.0 failed with "list indices must be
    # integers" from the binomial table
    k = SpectralMixture1d(3)
    z = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^n: expected an int"):
        k.deriv(z, True)
    with pytest.raises(TypeError, match=r"^n: expected an int"):
        k.gram(z, n=1.5)
    assert torch.equal(k.deriv(z, 2.0), k.deriv(z, 2))
    assert torch.equal(k.gram(z, n=2.0), k.gram(z, n=2))


def test_kernel_parameter_shapes_and_values_are_checked():
    """A longer log_w was cut to Q silently (weights had 5 entries, the kernel used 3), a
    shorter log_a failed inside torch, NaN initial values gave a NaN kernel."""
    for name in ("log_w", "log_a"):
        for bad in (torch.zeros(5), torch.zeros(2), torch.zeros(3, 1)):
            with pytest.raises(ValueError, match=rf"^{name}: expected a number or shape \(3,\)"):
                SpectralMixture1d(3, **{name: bad})
        with pytest.raises(ValueError, match=rf"^{name}: expected finite"):
            SpectralMixture1d(3, **{name: [0.0, float("nan"), 0.0]})
    with pytest.raises(ValueError, match=r"^mu: expected finite"):
        SpectralMixture1d(3, mu=[0.0, float("nan"), 1.0])
    k = SpectralMixture1d(3, log_w=-1.0, log_a=torch.tensor([0.0, 0.5, 1.0]))
    assert k.weights.shape == (3,) and torch.allclose(
        k.weights, torch.full((3,), math.exp(-1), dtype=torch.float64)
    )
    assert k.log_a[2] == 1.0


@pytest.mark.parametrize("kind", ["gm", "stm"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_without_autograd_equal_the_differentiable_path_bit_for_bit(kind, dtype):
    # kernel values computed without autograd (checkpoints, predict, the posterior) run on
    # reused buffers; they must be the training path's numbers exactly, zero lag and extremes
    torch.manual_seed(1)
    k = SpectralMixture1d(5, kind=kind, log_a=torch.randn(5, dtype=torch.float64)).to(dtype)
    z = torch.cat(
        [
            torch.linspace(-3, 3, 61, dtype=dtype),
            torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e3, -1e3], dtype=dtype),
        ]
    )
    with torch.enable_grad():
        want = k(z.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        got = k(z)
    assert torch.equal(got, want)
    with torch.no_grad():  # no state kept: a later call leaves an earlier result as it was
        first = k.gram(z[:20], z[5:30])
        kept = first.clone()
        k.gram(z[30:50], z[40:65])
        assert torch.equal(first, kept)
    with torch.enable_grad():
        assert torch.equal(
            k.gram(z[:20], z[5:30]).detach(), torch.no_grad()(k.gram)(z[:20], z[5:30])
        )


def test_gram_names_points_on_another_device():
    """Points on another device than the kernel failed inside the mixture sum with torch's
    error (on the meta device: 'Tensor.item() cannot be called'); they are named now."""
    k = SpectralMixture1d(2, kind="gm")
    x = torch.linspace(0, 1, 6, dtype=k.mu.dtype)
    with pytest.raises(ValueError, match=r"^x1: expected points on the kernel's device cpu"):
        k.gram(x.to("meta"))
    with pytest.raises(ValueError, match=r"^x2: expected points on the kernel's device cpu"):
        k.gram(x, x.to("meta"))
    assert k.gram(x).shape == (6, 6)


@pytest.mark.parametrize("kind", ["gm", "stm"])
@pytest.mark.parametrize("step", [1, 2, 3, 6, 7])
def test_mixture_summed_in_blocks_equals_the_whole_sum(kind, step, monkeypatch):
    """Above ``_MIX_ELEMENTS`` (lags x components) the components are summed ``step`` at a
    time (Q = 7: blocks that divide Q or leave a last partial block, Q - 1, Q): values, every
    derivative order, and the parameters' gradients equal the whole sum to round-off."""
    import bayesphys.gp_pde.kernels as kernels

    g = torch.Generator().manual_seed(3)
    q = 7
    k = SpectralMixture1d(
        q,
        kind=kind,
        mu=torch.rand(q, generator=g, dtype=torch.float64) * 4,
        log_a=torch.randn(q, generator=g, dtype=torch.float64),
        log_w=torch.randn(q, generator=g, dtype=torch.float64),
    )
    z = torch.linspace(-2, 2, 41, dtype=torch.float64)
    scale = float(k.weights.detach().sum())

    def values_and_grads(n):
        with torch.no_grad():
            plain = k.deriv(z, n)
        k.zero_grad()
        out = k.deriv(z, n)
        out.square().sum().backward()
        return plain, out.detach(), [p.grad.clone() for p in (k.mu, k.log_w, k.log_a)]

    whole = [values_and_grads(n) for n in range(5)]
    monkeypatch.setattr(kernels, "_MIX_ELEMENTS", step * z.numel())
    for n, (plain, out, grads) in enumerate(whole):
        got_plain, got, got_grads = values_and_grads(n)
        tol = dict(
            rtol=1e-13, atol=1e-13 * scale * (1 + float(k.mu.detach().max()) * 2 * math.pi) ** n
        )
        torch.testing.assert_close(got_plain, plain, **tol)
        torch.testing.assert_close(got, out, **tol)
        for a, b in zip(got_grads, grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))


def test_a_kernel_prints_its_kind_and_size():
    k = SpectralMixture1d(3, kind="stm")
    assert repr(k) == "SpectralMixture1d(kind='stm', num_mixtures=3)"


def test_gram_of_no_points_complex_points_and_dtype_names():
    """``gram`` of an empty axis raised ``IndexError: index -1 is out of bounds``; complex
    points lost their imaginary part with only torch's warning; ``dtype=torch.int64`` failed in
    ``nn.Parameter`` ("Only Tensors of floating point ... can require gradients") and
    ``dtype="float32"`` inside ``linspace``."""
    k = SpectralMixture1d(3)
    none = torch.zeros(0, dtype=torch.float64)
    assert k.gram(none).shape == (0, 0)
    assert k.gram(none, n=2).shape == (0, 0)
    assert k.gram(none, torch.linspace(0, 1, 4, dtype=torch.float64)).shape == (0, 4)
    x = torch.linspace(0, 1, 5, dtype=torch.complex128)
    with pytest.raises(TypeError, match=r"^x1: expected real points, received torch.complex128"):
        k.gram(x)
    with pytest.raises(TypeError, match=r"^x2: expected real points"):
        k.gram(x.real, x)
    with pytest.raises(ValueError, match=r"^dtype: expected a floating dtype"):
        SpectralMixture1d(3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"^dtype: unknown dtype 'float99'"):
        SpectralMixture1d(3, dtype="float99")
    assert SpectralMixture1d(3, dtype="float32").mu.dtype == torch.float32
    assert SpectralMixture1d(3, dtype=None).mu.dtype == torch.float64
