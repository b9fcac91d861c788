r"""A conjugate linear-Gaussian inverse problem with an exact posterior.

Field :math:`u(x) = \sin(2\pi x) + 0.5\sin(6\pi x)` on ``n`` grid points of :math:`[0, 1]`,
prior :math:`u \sim \mathcal N(0, K)` with a squared-exponential kernel
:math:`K_{ij} = s^2 \exp(-(x_i - x_j)^2 / 2\ell^2)`, data :math:`y = H u + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \sigma^2 I)` at ``m`` sensors. The posterior is exact:

.. math:: \mu = K H^\top (H K H^\top + \sigma^2 I)^{-1} y, \qquad
          \Sigma = K - K H^\top (H K H^\top + \sigma^2 I)^{-1} H K .

:class:`ConjugateGaussianField` wraps it in the package's model API (``fit`` chooses the
lengthscale by type-II maximum likelihood); it is the reference model of the shared core, used
by the demo, the tour, the calibration suite and ``fit_many``.

Example
-------
>>> from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
>>> prob = linear_gaussian_problem(seed=0)
>>> model = ConjugateGaussianField(prob["x"], prob["idx"], prob["y"], noise=0.1)
>>> _ = model.fit(progress=False)
>>> model.posterior().event_shape
torch.Size([101])
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import rebuilding, refuse_unknown, require_entries
from .._checks import (
    check_dense_memory,
    check_int,
    check_optional_seed,
    check_real,
    check_scalar,
    check_seed,
)
from .._device import (
    ArrayLike,
    DeviceLike,
    DTypeLike,
    as_tensor,
    model_device,
    own_memory,
    resolve_dtype,
    single_or_double,
)
from .._model import FitResult, autograd_on, optimize
from ..posterior import GaussianPosterior

__all__ = [
    "linear_gaussian_problem",
    "posterior_for",
    "log_marginal_likelihood",
    "ConjugateGaussianField",
]


def linear_gaussian_problem(
    n: int = 101, m: int = 30, noise: float = 0.1, seed: int = 0, device: DeviceLike = "cpu"
) -> dict[str, torch.Tensor]:
    r"""Grid ``x [n]``, truth ``u [n]``, sorted sensor indices ``idx [m]`` and data ``y [m]``.

    ``n >= 1`` and ``1 <= m <= n`` (ints), ``noise`` :math:`\sigma \ge 0` finite (0: exact
    data), ``seed`` an int seed; otherwise a ``TypeError`` / ``ValueError`` naming the argument
    (NaN noise gave NaN data, a negative one was accepted). ``device`` as a model's (``None``:
    the CPU, ``"auto"``: CUDA when present; an unknown or absent device is a ``ValueError``,
    where torch's ``RuntimeError`` or ``AssertionError`` came before); the data are drawn on
    the CPU, so they are the same numbers on every device.
    """
    device = model_device(device)
    n = check_int("n", n, minimum=1)
    m = check_int("m", m, minimum=1)
    if m > n:
        raise ValueError(f"m: expected 1 <= m <= n = {n}, received {m}")
    noise = check_real("noise", noise, minimum=0.0)
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    u = torch.sin(2 * math.pi * x) + 0.5 * torch.sin(6 * math.pi * x)
    idx = torch.sort(torch.randperm(n, generator=gen)[:m]).values
    y = u[idx] + noise * torch.randn(m, generator=gen, dtype=torch.float64)
    return {k: v.to(device) for k, v in dict(x=x, u=u, idx=idx, y=y).items()}


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    r"""The dtype of the exact linear algebra: float64 (where the device has it). The posterior
    covariance :math:`K - K H^\top (\dots)^{-1} H K` cancels entries of size :math:`s^2` down to
    variances far smaller: in float32 its rounding (~:math:`10^{-6} s^2`, more for long
    lengthscales) left it indefinite beyond any jitter on the scale of those variances."""
    return x.dtype if x.device.type == "mps" else torch.float64


def _kernel(x: torch.Tensor, lengthscale, outputscale) -> torch.Tensor:
    return outputscale * torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2)


def _grid_data(
    x: ArrayLike, idx: ArrayLike, y: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x [n] floating, idx [m] long, y [m])`` checked: ``x`` 1-D, ``idx`` and ``y`` of one
    shape ``[m]``, ``x`` and ``y`` finite, ``idx`` whole numbers in ``[0, n)`` (tensors, numpy
    arrays and lists; an integer grid becomes float64)."""
    x = as_tensor("x", x)
    idx = as_tensor("idx", idx, device=x.device)
    y = as_tensor("y", y, device=x.device)
    if x.ndim != 1 or idx.ndim != 1 or tuple(y.shape) != tuple(idx.shape):
        raise ValueError(
            f"x, idx, y: expected a grid x [n] and sensor indices idx [m] with data y [m], "
            f"received shapes {tuple(x.shape)}, {tuple(idx.shape)}, {tuple(y.shape)}"
        )
    if not x.is_floating_point():
        x = x.to(torch.float64)
    return x, _sensor_indices(idx, len(x)), y


def _sensor_indices(idx: torch.Tensor, n: int) -> torch.Tensor:
    """``idx [m]`` as long indices, checked: whole numbers (``.long()`` truncated 1.7 to
    sensor 1; bools refused) in ``[0, n)`` (torch's ``IndexError`` before)."""
    if idx.dtype == torch.bool or (
        idx.is_floating_point() and not bool((idx == idx.round()).all())
    ):
        raise ValueError(
            f"idx: expected whole-number sensor indices, received {idx.tolist()!r:.200}"
        )
    idx = idx.long()
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(
            f"idx: expected indices in [0, {n}), received values in "
            f"[{int(idx.min())}, {int(idx.max())}]"
        )
    return idx


def log_marginal_likelihood(
    x: ArrayLike,
    idx: ArrayLike,
    y: ArrayLike,
    noise: float | torch.Tensor,
    lengthscale: float | torch.Tensor,
    outputscale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    r""":math:`\log \mathcal N(y \mid 0, H K H^\top + \sigma^2 I)` (differentiable), in
    ``x``'s dtype; evaluated in float64 (see :func:`posterior_for`). ``x``, ``idx``, ``y`` as
    in :func:`posterior_for`; ``noise`` a finite number ``> 0`` (or a tensor of finite values
    ``> 0``, kept differentiable): a NaN noise, or indices outside the grid, failed inside
    torch."""
    x, idx, y = _grid_data(x, idx, y)
    if isinstance(noise, torch.Tensor):
        if noise.numel() != 1 or not bool(torch.isfinite(noise).all() & (noise > 0).all()):
            raise ValueError(f"noise: expected one finite value > 0, received {noise!r:.200}")
    else:
        noise = check_scalar("noise", noise, minimum=0.0, strict=True)
    out, work = x.dtype, _work_dtype(x)
    x, y = x.to(work), y.to(work)
    if isinstance(lengthscale, torch.Tensor):
        lengthscale = lengthscale.to(work)
    if isinstance(outputscale, torch.Tensor):
        outputscale = outputscale.to(work)
    koo = _kernel(x[idx], lengthscale, outputscale)
    koo = koo + noise**2 * torch.eye(len(idx), dtype=x.dtype, device=x.device)
    mvn = torch.distributions.MultivariateNormal(torch.zeros_like(y), covariance_matrix=koo)
    return mvn.log_prob(y).to(out)


def posterior_for(
    x: ArrayLike,
    idx: ArrayLike,
    y: ArrayLike,
    noise: float | torch.Tensor,
    lengthscale: float | torch.Tensor = 0.08,
    outputscale: float | torch.Tensor = 1.0,
) -> GaussianPosterior:
    """Exact posterior over the grid ``x [n]`` given data ``y [m]`` at ``x[idx]``.

    ``noise``, ``lengthscale`` and ``outputscale`` finite and ``> 0``, numbers or 0-d tensors
    (a NaN noise ended in a Cholesky error); ``x`` 1-D, ``idx`` and ``y`` of one shape ``[m]`` (a
    ``y`` of another length failed in a matrix product). The posterior has ``x``'s dtype (float64
    for an integer grid); it is computed in float64 and then cast, so a float32 one is the float64
    one rounded (computed in float32, with noise ``1e-3`` its covariance was indefinite and
    the posterior was refused). Tensors, numpy arrays and lists are taken; ``x`` and ``y``
    finite, ``idx`` whole numbers in ``[0, n)`` (as :class:`ConjugateGaussianField` checks
    them: out-of-range or fractional indices, numpy arrays and lists failed inside torch).
    A grid whose dense ``[n, n]`` matrices (about six, float64) cannot fit on ``x``'s device
    is refused with a ``MemoryError`` before the kernel is formed.

    The covariance carries a nugget ``1e-9 * outputscale`` (the prior variance) on its
    diagonal: the exact one is singular to round-off on a fine grid. It is negligible at the
    usual noise levels; at the sensors the posterior variance is about :math:`\\sigma^2`, so
    with ``outputscale = 1`` and ``noise`` below about ``1e-4`` the nugget is more than a
    tenth of it (the share is ``1e-9 * outputscale / noise**2``)."""
    x, idx, y = _grid_data(x, idx, y)
    noise = check_scalar("noise", noise, minimum=0.0, strict=True)
    lengthscale = check_scalar("lengthscale", lengthscale, minimum=0.0, strict=True)
    outputscale = check_scalar("outputscale", outputscale, minimum=0.0, strict=True)
    out, work = x.dtype, _work_dtype(x)
    n = len(x)
    # the prior kernel, the covariance, its symmetrised and jittered copies and the
    # posterior's factor: about six dense [n, n] matrices in the working dtype
    check_dense_memory(
        "x",
        6 * n * n * torch.finfo(work).bits // 8,
        what=f"the exact posterior on a grid of {n} points (dense [{n}, {n}] covariance, {work})",
        alternative="use a coarser grid x",
        device=x.device,
    )
    x, y = x.to(work), y.to(work)
    k = _kernel(x, lengthscale, outputscale)
    kxo = k[:, idx]
    koo = k[idx][:, idx] + noise**2 * torch.eye(len(idx), dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(koo)
    a = torch.cholesky_solve(kxo.mT, chol)  # [m, n]
    mean = (a.mT @ y[:, None]).squeeze(-1)
    cov = k - kxo @ a
    cov = 0.5 * (cov + cov.mT) + 1e-9 * outputscale * torch.eye(
        len(x), dtype=x.dtype, device=x.device
    )
    return GaussianPosterior(mean.to(out), cov.to(out))


class ConjugateGaussianField:
    """GP-prior field observed at sensors, with exact Gaussian posterior (model API).

    Parameters
    ----------
    x : Tensor
        The grid ``[n]``.
    idx : Tensor
        Sensor indices ``[m]`` into ``x`` (whole numbers).
    y : Tensor
        Data ``[m]``.
    noise : float or 0-d Tensor
        Observation noise sd :math:`\\sigma > 0`.
    lengthscale, outputscale : float or 0-d Tensor
        Initial kernel values (``> 0``).
    device : str, torch.device or None
        Where the model lives (``None``: the CPU; ``"auto"``: CUDA when present).
    dtype : torch.dtype or str
        ``float32`` or ``float64`` (default float64): the dtype of the data, the parameters and
        the posterior. The exact linear algebra (likelihood, posterior) runs in float64 either
        way, so a float32 posterior is the float64 one rounded.
    seed : int or None
        Kept with the model and its checkpoint (the posterior is exact; nothing is drawn).

    Notes
    -----
    ``noise``, ``lengthscale`` and ``outputscale`` must be finite (numbers or 0-d tensors);
    otherwise a ``TypeError`` / ``ValueError`` names the argument (a NaN noise was accepted
    and gave a NaN posterior, a lengthscale ``<= 0`` failed with "math domain error").
    """

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(
        self,
        x: ArrayLike,
        idx: ArrayLike,
        y: ArrayLike,
        *,
        noise: float | torch.Tensor = 0.1,
        lengthscale: float | torch.Tensor = 0.1,
        outputscale: float | torch.Tensor = 1.0,
        device: DeviceLike = None,
        dtype: DTypeLike = torch.float64,
        seed: int | None = None,
    ) -> None:
        self.device = dev = model_device(device)
        # an integer dtype rounded the grid to [0, ..., 0, 1]; Cholesky has no half kernels
        dtype = single_or_double(dtype)
        # memory of its own (as every model's data): a view of the caller's arrays saw their
        # later edits, which moved the posterior away from the fitted hyperparameters
        self.x = own_memory(as_tensor("x", x, dtype=dtype, device=dev, ndim=1), x)
        idx_in = idx
        idx = _sensor_indices(as_tensor("idx", idx, device=dev, ndim=1), len(self.x))
        self.idx = own_memory(idx, idx_in)
        self.y = own_memory(as_tensor("y", y, dtype=dtype, device=dev, ndim=1), y)
        if self.idx.shape != self.y.shape:
            raise ValueError(
                f"y: expected shape {tuple(self.idx.shape)} (one per sensor), received "
                f"{tuple(self.y.shape)}"
            )
        self.noise = check_scalar("noise", noise, minimum=0.0, strict=True)
        lengthscale = check_scalar("lengthscale", lengthscale, minimum=0.0, strict=True)
        outputscale = check_scalar("outputscale", outputscale, minimum=0.0, strict=True)
        self.log_lengthscale = torch.tensor(math.log(lengthscale), dtype=dtype, device=dev)
        self.log_outputscale = torch.tensor(math.log(outputscale), dtype=dtype, device=dev)
        self.seed = check_optional_seed("seed", seed)  # "a" and 1.5 were kept and saved
        self.dtype = dtype

    @property
    def lengthscale(self) -> float:
        r"""The kernel lengthscale :math:`\ell = e^{\log\ell}` (a float)."""
        return float(self.log_lengthscale.exp())

    @property
    def outputscale(self) -> float:
        r"""The kernel outputscale :math:`\sigma_f^2 = e^{\log\sigma_f^2}` (a float)."""
        return float(self.log_outputscale.exp())

    @autograd_on()
    def fit(
        self, data: None = None, *, steps: int = 200, lr: float = 0.05, progress: bool = True
    ) -> FitResult:
        """Type-II maximum likelihood for lengthscale and outputscale (Adam on log values).

        ``data`` must be ``None`` (the data are given at construction; anything else was
        silently ignored); ``lr`` finite and ``> 0``. A second call continues from the current
        values with a fresh optimiser. A field without sensors (``idx`` empty) has no
        likelihood to maximise: ``ValueError`` (it failed inside torch); its :meth:`posterior`
        is the prior."""
        if data is not None:
            raise ValueError(
                "data: expected None; ConjugateGaussianField takes its data (x, idx, y) at "
                f"construction, received {type(data).__name__}"
            )
        if len(self.idx) == 0:
            raise ValueError(
                "idx: fit needs at least one sensor (type-II maximum likelihood of the data); "
                "this field has none, and its posterior() is the prior"
            )
        lr = check_real("lr", lr, minimum=0.0, strict=True)
        params = [
            self.log_lengthscale.clone().requires_grad_(True),
            self.log_outputscale.clone().requires_grad_(True),
        ]
        opt = torch.optim.Adam(params, lr=lr)

        def step():
            opt.zero_grad()
            loss = -log_marginal_likelihood(
                self.x, self.idx, self.y, self.noise, params[0].exp(), params[1].exp()
            )
            loss.backward()
            opt.step()
            return loss

        res = optimize(
            step, steps=steps, params=params, progress=progress, desc="gp-field", tol=1e-9
        )
        self.log_lengthscale, self.log_outputscale = (p.detach() for p in params)
        return res

    def posterior(self, x: None = None) -> GaussianPosterior:
        """Exact posterior on the model grid (``x`` must be ``None``), as :func:`posterior_for`
        gives it: its covariance carries the nugget ``1e-9 * outputscale`` on the diagonal."""
        if x is not None:
            raise ValueError("x: this model predicts on its own grid; pass None")
        return posterior_for(
            self.x, self.idx, self.y, self.noise, self.lengthscale, self.outputscale
        )

    def save(self, path: str | Path) -> Path:
        """Write grid, data, noise and the fitted length and output scales; :meth:`load`
        restores them exactly."""
        cfg = {
            "noise": self.noise,
            "seed": self.seed,
            "dtype": str(self.x.dtype).removeprefix("torch."),
        }
        state = {
            k: getattr(self, k).cpu()
            for k in ("x", "idx", "y", "log_lengthscale", "log_outputscale")
        }
        return save_checkpoint(path, kind="ConjugateGaussianField", config=cfg, state=state)

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: DeviceLike = None) -> ConjugateGaussianField:
        """Restore a field written by :meth:`save` (on ``device``, default the CPU)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind="ConjugateGaussianField")
        c, s = ck["config"], ck["state"]
        # checkpoints written before the dtype was saved hold float64 models
        require_entries(c, path, "settings", sorted(_CONFIG_KEYS - {"dtype"}))
        refuse_unknown(ck, path, "settings", c, _CONFIG_KEYS)
        require_entries(s, path, "state entries", sorted(_STATE_KEYS))
        refuse_unknown(ck, path, "state entries", s, _STATE_KEYS)
        with rebuilding(path, "ConjugateGaussianField"):
            m = cls(
                s["x"],
                s["idx"],
                s["y"],
                noise=c["noise"],
                device=device,
                dtype=resolve_dtype(c.get("dtype", "float64")),
                seed=c["seed"],
            )
            kw = {"dtype": m.x.dtype, "device": m.x.device}
            m.log_lengthscale = as_tensor("log_lengthscale", s["log_lengthscale"], **kw)
            m.log_outputscale = as_tensor("log_outputscale", s["log_outputscale"], **kw)
        return m


#: the settings and state entries :meth:`ConjugateGaussianField.save` writes
_CONFIG_KEYS = frozenset({"noise", "seed", "dtype"})
_STATE_KEYS = frozenset({"x", "idx", "y", "log_lengthscale", "log_outputscale"})
