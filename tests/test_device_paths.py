"""Device and dtype paths of the core (posterior, metrics, problems, ``_model``, ``_linalg``).

A static review found places that only work on the CPU or in float32: a custom sampler
(``root``) that ``GaussianPosterior.to`` left on the old device, a generator check that compared
only the device type (``cuda:1`` passed for a posterior on ``cuda:0``), metrics that turned a
Python-number variance into a float32 tensor (a float64 NLL/CRPS computed with a rounded value)
or never moved ``y`` to the posterior's device, ``synthetic_patient`` building float64 CPU
tensors beside a phantom's maps, ``ConjugateGaussianField.load`` losing the model's dtype,
``DivergenceGuard.admit_gradients`` reading each gradient norm back separately (one device sync
per tensor), and ``torch.linalg.lstsq`` fallbacks that need full rank on CUDA.

``meta`` tensors stand in for a second device on the CPU: ``model_device`` refuses them, so
those tests patch it; what they check is where every tensor of the moved sampler lives.
"""

from __future__ import annotations

import math

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

import bayesphys._gaussian_posterior as gp_mod
from bayesphys._checkpoint import load_checkpoint, save_checkpoint
from bayesphys._device import same_device
from bayesphys._linalg import _lstsq_qr_gelsd, lstsq_any_rank
from bayesphys._model import DivergenceGuard
from bayesphys._posterior_args import _check_generator
from bayesphys.diagnostics import RecalibratedPosterior, Recalibrator
from bayesphys.metrics import calibration_curve, crps_gaussian, gaussian_nll
from bayesphys.posterior import GaussianPosterior
from bayesphys.problems import ConjugateGaussianField, brain_phantom, synthetic_patient
from tests.rng_checks import FakeDeviceGenerator

F64 = torch.float64
META = torch.device("meta")


class _MovableRoot:
    """A custom sampler ``z -> L z`` with a ``to(device)`` method."""

    def __init__(self, L: torch.Tensor) -> None:
        self.L = L

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.L.mT

    def to(self, device: torch.device) -> _MovableRoot:
        return _MovableRoot(self.L.to(device))


def _rooted(root, n: int = 4) -> GaussianPosterior:
    L = torch.tril(torch.ones(n, n, dtype=F64))
    return GaussianPosterior(
        torch.zeros(n, dtype=F64), L @ L.mT, validate=False, root=root, root_dim=n
    )


@pytest.fixture
def to_meta(monkeypatch):
    """``GaussianPosterior.to`` sends everything to the ``meta`` device."""
    monkeypatch.setattr(gp_mod, "model_device", lambda device: META)


# -- same_device / the generator check -------------------------------------------------------
def test_same_device_compares_type_and_index(monkeypatch):
    assert same_device("cpu", torch.device("cpu"))
    assert not same_device("cpu", "cuda:0")
    assert same_device("cuda:1", torch.device("cuda", 1))
    assert not same_device("cuda:0", "cuda:1")
    # 'cuda' without an index is the current device
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert same_device("cuda", "cuda:1") and not same_device("cuda", "cuda:0")
    assert same_device("cuda", "cuda")


def test_generator_on_another_gpu_is_refused(monkeypatch):
    """Only the device type was compared: a cuda:1 generator passed for a cuda:0 posterior and
    failed inside torch.randn."""
    with pytest.raises(ValueError, match=r"generator: expected a generator on the posterior's"):
        _check_generator(FakeDeviceGenerator("cuda:1"), torch.device("cuda:0"))
    _check_generator(FakeDeviceGenerator("cuda:0"), torch.device("cuda:0"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    _check_generator(FakeDeviceGenerator("cuda:0"), torch.device("cuda"))
    with pytest.raises(ValueError, match="cuda:1"):
        _check_generator(FakeDeviceGenerator("cuda:1"), torch.device("cuda"))
    _check_generator(torch.Generator(), torch.device("cpu"))


def test_posterior_value_checks_take_another_name_of_its_device(monkeypatch):
    """``log_prob`` and ``base_samples`` compared devices with ``!=``: a posterior whose device
    reads ``cpu:0`` (or ``cuda`` for ``cuda:0``) refused a value on that very device."""
    post = GaussianPosterior(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    monkeypatch.setattr(GaussianPosterior, "device", property(lambda self: torch.device("cpu:0")))
    value = torch.zeros(3, dtype=F64)
    assert torch.allclose(
        post.log_prob(value), torch.tensor(-1.5 * math.log(2 * math.pi), dtype=F64)
    )
    base = torch.ones(2, 3, dtype=F64)
    assert torch.allclose(post.rsample((2,), base_samples=base), base)
    monkeypatch.setattr(GaussianPosterior, "device", property(lambda self: META))
    with pytest.raises(ValueError, match="value: expected a tensor on meta"):
        post.log_prob(value)
    with pytest.raises(ValueError, match="base_samples: expected a tensor on meta"):
        post.rsample((2,), base_samples=base)


# -- GaussianPosterior.to with a custom root ------------------------------------------------
def test_to_moves_a_custom_root_that_can_move(to_meta):
    post = _rooted(_MovableRoot(torch.eye(4, dtype=F64)))
    moved = post.to("elsewhere")
    assert moved.device == META and moved._custom_root.L.device == META
    assert moved.sample((3,)).device == META  # the draws follow the mean
    assert post._custom_root.L.device.type == "cpu"  # the original is left as it was


def test_to_refuses_moving_a_root_without_to(to_meta):
    """A root without ``to`` stayed behind silently: its draws met noise on the new device."""
    post = _rooted(lambda z: z)
    with pytest.raises(ValueError, match=r"device: the posterior's custom root \(function\)"):
        post.to("elsewhere")


def test_to_same_device_keeps_any_root():
    post = _rooted(lambda z: 2 * z)
    same = post.to("cpu")
    assert same._custom_root is post._custom_root
    g = torch.Generator().manual_seed(0)
    z = post.sample((5,), generator=g)
    assert torch.equal(same.sample((5,), generator=torch.Generator().manual_seed(0)), z)


def test_recalibrated_posterior_to_moves_the_root(to_meta):
    post = RecalibratedPosterior(
        _rooted(_MovableRoot(torch.eye(4, dtype=F64))), Recalibrator("zscore", scale=2.0)
    )
    moved = post.to("elsewhere")
    assert moved.device == META and moved.base._custom_root.L.device == META


@pytest.mark.gpu
def test_rooted_posterior_round_trip_on_cuda(cuda_device):
    L = torch.tril(torch.ones(4, 4, dtype=F64))
    post = _rooted(_MovableRoot(L))
    on = post.to(cuda_device)
    assert on._custom_root.L.device.type == "cuda"
    z = torch.randn(6, 4, dtype=F64)
    a = post.rsample(base_samples=z)
    b = on.rsample(base_samples=z.to(cuda_device))
    torch.testing.assert_close(b.cpu(), a)
    back = on.to("cpu")
    torch.testing.assert_close(back.rsample(base_samples=z), a)
    with pytest.raises(ValueError, match="has no to"):
        _rooted(lambda z: z).to(cuda_device)


@pytest.mark.gpu
def test_generator_index_checked_on_cuda(cuda_device):
    post = GaussianPosterior(torch.zeros(3, dtype=F64, device=cuda_device), torch.eye(3))
    dev = torch.device("cuda", torch.cuda.current_device())
    assert post.sample((2,), generator=torch.Generator(device=dev).manual_seed(0)).shape == (2, 3)
    if torch.cuda.device_count() > 1:
        other = torch.device("cuda", (dev.index + 1) % torch.cuda.device_count())
        with pytest.raises(ValueError, match="generator: expected a generator"):
            post.sample((2,), generator=torch.Generator(device=other))


# -- metrics ---------------------------------------------------------------------------------
def test_gaussian_nll_keeps_float64_for_a_python_variance():
    """``torch.as_tensor(0.1)`` is float32: the log and the division used 0.1 rounded to
    float32, an error of ~1e-8 in a float64 metric."""
    g = torch.Generator().manual_seed(0)
    y, mean = torch.randn(50, generator=g, dtype=F64), torch.randn(50, generator=g, dtype=F64)
    var = 0.1
    want = (
        0.5 * (torch.log(2 * math.pi * torch.tensor(var, dtype=F64)) + (y - mean) ** 2 / var)
    ).mean()
    got = gaussian_nll(mean, var, y)
    assert got.dtype == F64
    assert abs(float(got) - float(want)) <= 1e-15 * abs(float(want))


def test_crps_gaussian_python_std_equals_a_float64_tensor_std():
    g = torch.Generator().manual_seed(1)
    y, mean = torch.randn(40, generator=g, dtype=F64), torch.randn(40, generator=g, dtype=F64)
    got = crps_gaussian(mean, 0.3, y)
    want = crps_gaussian(mean, torch.full_like(mean, 0.3), y)
    assert got.dtype == F64 and torch.equal(got, want)


@pytest.mark.gpu
def test_metrics_with_cpu_arguments_and_cuda_mean(cuda_device):
    g = torch.Generator().manual_seed(2)
    y, mean = torch.randn(30, generator=g, dtype=F64), torch.randn(30, generator=g, dtype=F64)
    std = torch.rand(30, generator=g, dtype=F64) + 0.5
    want = crps_gaussian(mean, std, y)
    got = crps_gaussian(mean.to(cuda_device), std, y.to(cuda_device))  # std left on the CPU
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want)
    nll = gaussian_nll(mean.to(cuda_device), std**2, y.to(cuda_device))
    torch.testing.assert_close(nll.cpu(), gaussian_nll(mean, std**2, y))
    assert gaussian_nll(mean.to(cuda_device), 0.5, y.to(cuda_device)).dtype == F64


@pytest.mark.gpu
def test_calibration_curve_moves_y_to_the_posterior(cuda_device):
    g = torch.Generator().manual_seed(3)
    y = torch.randn(200, generator=g, dtype=F64)
    post = GaussianPosterior(
        torch.zeros(200, dtype=F64), DiagLinearOperator(torch.ones(200, dtype=F64))
    )
    want = calibration_curve(post, y)[1]
    torch.testing.assert_close(calibration_curve(post.to(cuda_device), y)[1], want)
    draws = post.sample((50,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        calibration_curve(draws.to(cuda_device), y)[1], calibration_curve(draws, y)[1]
    )


# -- problems --------------------------------------------------------------------------------
def _tensors(patient: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in patient.items() if isinstance(v, torch.Tensor)}


def test_synthetic_patient_follows_a_float32_phantom():
    """The maps (and their faces) were float32 while the focus, noise and PET were float64."""
    ph = brain_phantom(24, 5.0, dtype=torch.float32)
    p = synthetic_patient(0, phantom=ph, t_end=30.0, future_days=5.0)
    floats = {k: t.dtype for k, t in _tensors(p).items() if t.is_floating_point()}
    assert set(floats.values()) == {torch.float32}, floats
    explicit = synthetic_patient(
        0, phantom=ph, t_end=30.0, future_days=5.0, dtype=torch.float32, device="cpu"
    )
    for k, t in _tensors(p).items():
        assert torch.equal(t, explicit[k]), k


def test_synthetic_patient_float64_defaults_unchanged():
    ph = brain_phantom(24, 5.0)
    p = synthetic_patient(0, phantom=ph, t_end=30.0, future_days=5.0)
    q = synthetic_patient(0, phantom=ph, t_end=30.0, future_days=5.0, dtype=F64, device="cpu")
    assert p["pet"].dtype == F64 and p["truth"] == q["truth"] and p["foci"] == q["foci"]
    for k, t in _tensors(p).items():
        assert torch.equal(t, q[k]), k


@pytest.mark.gpu
def test_synthetic_patient_on_a_cuda_phantom(cuda_device):
    ph = brain_phantom(24, 5.0, device=cuda_device)
    p = synthetic_patient(0, phantom=ph, t_end=30.0, future_days=5.0)
    assert all(t.device.type == "cuda" for t in _tensors(p).values())
    cpu = synthetic_patient(0, phantom=brain_phantom(24, 5.0), t_end=30.0, future_days=5.0)
    torch.testing.assert_close(p["c_true"].cpu(), cpu["c_true"])


def test_conjugate_field_load_keeps_float32(tmp_path):
    x = torch.linspace(0, 1, 20)
    m = ConjugateGaussianField(x, [2, 9, 15], [0.1, 0.5, -0.2], dtype=torch.float32, seed=3)
    back = ConjugateGaussianField.load(m.save(tmp_path / "f32.pt"))
    for name in ("x", "y", "log_lengthscale", "log_outputscale"):
        assert getattr(back, name).dtype == torch.float32, name
        assert torch.equal(getattr(back, name), getattr(m, name)), name
    assert back.posterior().mean.dtype == torch.float32


def test_conjugate_field_old_checkpoint_loads_as_float64(tmp_path):
    m = ConjugateGaussianField(torch.linspace(0, 1, 10), [1, 5], [0.2, 0.3], seed=0)
    path = m.save(tmp_path / "f64.pt")
    ck = load_checkpoint(path, kind="ConjugateGaussianField")
    cfg = {k: v for k, v in ck["config"].items() if k != "dtype"}  # written before dtype was
    save_checkpoint(path, kind="ConjugateGaussianField", config=cfg, state=ck["state"])
    back = ConjugateGaussianField.load(path)
    assert back.x.dtype == F64 and back.log_lengthscale.dtype == F64


# -- DivergenceGuard.admit_gradients ----------------------------------------------------------
def _with_grads(values: list[tuple[float, torch.dtype]]) -> list[torch.Tensor]:
    out = []
    for v, dt in values:
        t = torch.zeros(3, dtype=dt, requires_grad=True)
        t.grad = torch.full((3,), v, dtype=dt)
        out.append(t)
    return out


def test_admit_gradients_decisions():
    ok = _with_grads([(1.0, torch.float32), (1e150, F64), (-2.0, torch.float16)])
    assert DivergenceGuard(ok).admit_gradients(ok)
    big = _with_grads([(1.0, F64), (3e19, torch.float32)])  # (3e19)^2 overflows float32
    guard = DivergenceGuard(big)
    assert not guard.admit_gradients(big) and "gradients overflow" in guard.reason
    nan = _with_grads([(math.nan, F64)])
    assert not DivergenceGuard(nan).admit_gradients(nan)
    edge = _with_grads([(1.8e19, torch.float32)])  # (1.8e19)^2 = 3.24e38 < float32 max
    assert DivergenceGuard(edge).admit_gradients(edge)


def test_admit_gradients_reads_the_norms_back_once(host_reads):
    """``float(n)`` per tensor: one device sync for each parameter on a GPU."""
    ts = _with_grads([(float(i + 1), torch.float32) for i in range(6)])
    guard = DivergenceGuard(ts)
    reads = host_reads
    assert guard.admit_gradients(ts)
    assert len(reads) <= 1


def _sync_warnings(fn) -> list[str]:
    """The synchronising-operation warnings CUDA's sync debug mode raises while ``fn`` runs."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # the mode's own one-time "prototype feature ... synchronizing operations" notice is no sync
    msgs = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught]
    return [m for m in msgs if "called a synchronizing" in m]


@pytest.mark.gpu
def test_admit_gradients_syncs_once_on_cuda(cuda_device):
    """One read-back for all gradients: six tensors wait on the device as often as one does
    (a read per tensor waited six times). The count of one read-back is torch's own (its
    device-to-host copy can warn more than once)."""

    def syncs(n: int) -> list[str]:
        ts = [torch.zeros(3, device=cuda_device, requires_grad=True) for _ in range(n)]
        for t in ts:
            t.grad = torch.ones(3, device=cuda_device)
        guard = DivergenceGuard(ts)
        ok = []
        caught = _sync_warnings(lambda: ok.append(guard.admit_gradients(ts)))
        assert ok == [True]
        return caught

    one, six = syncs(1), syncs(6)
    assert len(six) == len(one) == 1, f"one tensor: {one}\nsix tensors: {six}"


@pytest.mark.gpu
def test_optimize_checks_the_optimizer_state_in_one_read_back_on_cuda(cuda_device):
    """``optimize(..., optimizer=)`` reads the loss and the max of each of Adam's moments back
    in one device-to-host copy (Adam's step counters live on the CPU and wait for nothing):
    eight parameters wait on the device as often as two do."""
    from bayesphys._model import optimize

    def syncs(n: int) -> list[str]:
        ws = [torch.nn.Parameter(torch.ones(5, device=cuda_device)) for _ in range(n)]
        opt = torch.optim.Adam(ws, lr=0.1)

        def step():
            opt.zero_grad()
            loss = sum((w**2).sum() for w in ws)
            loss.backward()
            opt.step()
            return loss

        step()  # Adam's state created outside the count
        ok = []
        caught = _sync_warnings(
            lambda: ok.append(optimize(step, steps=3, params=ws, optimizer=opt, progress=False))
        )
        assert ok[0].steps == 3
        return caught

    two, eight = syncs(2), syncs(8)
    assert 3 <= len(two) == len(eight), f"two: {two}\neight: {eight}"


# -- lstsq on every device --------------------------------------------------------------------
def test_lstsq_any_rank_full_rank_matches_torch_default():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(30, 4, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    torch.testing.assert_close(lstsq_any_rank(a, b), torch.linalg.lstsq(a, b).solution)


def _middle_dependent(device) -> tuple[torch.Tensor, torch.Tensor]:
    """A dependent column before independent ones: the CPU default ``gelsy`` (pivot array not
    zeroed) reported rank 1 of 3 here and returned a non-solution."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(40, 3, generator=g, dtype=F64)
    a = torch.stack([u[:, 0], 2 * u[:, 0], u[:, 1], u[:, 2]], 1)
    return a.to(device), torch.randn(40, 1, generator=g, dtype=F64).to(device)


def _rank_deficient(device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(6)
    u = torch.randn(40, 2, generator=g, dtype=F64)
    a = torch.cat([u, u[:, :1] + u[:, 1:], 2 * u[:, :1]], 1)  # rank 2 of 4 columns
    b = torch.randn(40, 1, generator=g, dtype=F64)
    return a.to(device), b.to(device)


def _singular_square(device) -> tuple[torch.Tensor, torch.Tensor]:
    """J^T J, J^T r of a Jacobian with a zero column (an unknown no residual reads)."""
    g = torch.Generator().manual_seed(7)
    jac = torch.randn(6, 4, generator=g, dtype=F64)
    jac[:, 2] = 0
    r = torch.randn(6, 1, generator=g, dtype=F64)
    return (jac.mT @ jac).to(device), (jac.mT @ r).to(device)


MAKERS = (_rank_deficient, _singular_square, _middle_dependent)


def test_lstsq_any_rank_rank_deficient_on_the_cpu():
    for make in MAKERS:
        a, b = make("cpu")
        for _ in range(3):  # gelsy's result depended on the memory it was given
            torch.testing.assert_close(
                lstsq_any_rank(a, b), torch.linalg.pinv(a) @ b, rtol=1e-8, atol=1e-10
            )


def test_lstsq_off_the_cpu_path_gives_the_minimum_norm_solution():
    """The path used on CUDA (QR on the device, SVD-based gelsd on the CPU), run on CPU
    tensors: the minimum-norm least-squares solution for rank-deficient systems."""
    for make in MAKERS:
        a, b = make("cpu")
        torch.testing.assert_close(
            _lstsq_qr_gelsd(a, b), torch.linalg.pinv(a) @ b, rtol=1e-8, atol=1e-10
        )
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(30, 4, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    torch.testing.assert_close(_lstsq_qr_gelsd(a, b), torch.linalg.lstsq(a, b).solution)


@pytest.mark.gpu
def test_lstsq_any_rank_on_cuda_rank_deficient(cuda_device):
    """CUDA's only lstsq driver (gels) assumes full rank: a rank-deficient Anderson or
    Gauss-Newton system gave NaN or huge coefficients."""
    for make in MAKERS:
        a, b = make("cpu")
        got = lstsq_any_rank(*make(cuda_device))
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), torch.linalg.pinv(a) @ b, rtol=1e-8, atol=1e-10)
