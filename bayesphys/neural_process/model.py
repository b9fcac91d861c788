r"""The random-grid neural process model: training, posteriors, I/O (presets in :mod:`.config`).

``RandomGridNP(problem, method)`` couples a :class:`~.forward.ForwardNet` (GP over the field)
and a :class:`~.gicnet.GICNet` (Gaussian over PDE parameters), trained jointly without solver
data by the physics ELBO (plus the noisy-data term when ``fit(data=...)`` is given).

Methods
-------
``"R0"``: a faithful torch re-implementation of the reference code's low-rank setting
(Poisson: 7x300 swish MLP, 100 fixed Fourier frequencies in [1e-3, 2], rank 2, i.i.d. uniform
grids of 30 points, batch 50, Adam 1e-3 constant because the reference decay never fires,
:math:`\sigma_r = 10^{-2}`; Burgers: 9x400, trainable frequencies, 225 points, batch 25, LR
halved every 16k steps, learned :math:`\sigma_r` from 1). Known reference bugs are fixed:
a single lifting layer, per-dimension frequencies, Chebyshev by recurrence, variance bounded once.

``"RGNP"``: our improved setting — scrambled-Sobol grids, a narrower/shallower forward MLP
(much cheaper per step), a learned residual scale :math:`\sigma_r` (Poisson: from 0.1; it makes
the field variance reflect the actual residual level, which fixes the 2-sigma coverage), a
two-layer lift and lengthscales initialised from 1 down to 0.05 (trained freely) in GICNet, a higher learning rate with smooth
exponential decay. Poisson also draws each batch's :math:`(z, w)` from a scrambled Sobol net
(``qmc_prior``) and uses the reference's batch of 50, Adam(8e-3, betas 0.9/0.95, halving every
2000 steps) with gradient clipping (fewer steps to a given error, C1). GICNet can also be
trained on extra clustered/uniform observation layouts (``aug_weight > 0``, :class:`~.grids.LayoutMixture`; off in the presets: at equal time
it cost more accuracy than it returned). R0 starts like the Keras reference (``init="keras"``,
Adam :math:`\epsilon = 10^{-7}`). Both methods use exact forward-mode (Taylor) input
derivatives; :meth:`RandomGridNP.calibrate` rescales the variances post hoc.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch import Tensor

from .._checks import (
    as_scalar,
    check_bool,
    check_callback,
    check_int,
    check_keys,
    check_optional_seed,
    check_real,
    did_you_mean,
    seed_or_draw,
)
from .._data_parallel import GradientSync, rank_generator_seed
from .._device import (
    ArrayLike,
    DeviceLike,
    DTypeLike,
    as_tensor,
    model_device,
    resolve_dtype,
    seeded_build,
)
from .._model import (
    DivergenceGuard,
    FitResult,
    autograd_on,
    load_checkpoint,
    optimize,
    rebuilding,
    refuse_unknown,
    require_entries,
    save_checkpoint,
    warn_untrained,
)
from .._progress import progress_bar
from .._time_budget import TimeBudget, check_max_seconds
from ..posterior import GaussianPosterior
from ..problems.rgnp import sample_prior
from .calibrate import calibrate_variance
from .config import (
    METHODS,
    PROBLEMS,
    SIZES,
    RGNPConfig,
    get_problem,
    keras_init,
    preset,
    with_overrides,
)
from .forward import ForwardNet
from .gicnet import GICNet
from .grids import check_points, make_grid
from .objective import data_log_likelihood, field_marginal, physics_elbo

#: configuration fields read only when the model is built (networks, grids, optimiser groups
#: and Adam's betas / eps); the rest are read at every step and may change between fits
_SET_AT_CONSTRUCTION = (
    "method",
    "hidden",
    "depth",
    "n_freq",
    "f_min",
    "f_max",
    "train_freq",
    "rank",
    "var_lo",
    "grid",
    "betas",
    "adam_eps",
    "init",
    "sigma_r",
    "learn_sigma_r",
    "inv_lr_mult",
    "sigma_r_lr_mult",
    "gic",
)

__all__ = ["RGNPConfig", "RandomGridNP", "SIZES", "preset", "get_problem"]


#: keys of ``fit(data=...)``: the required sets, the optional noise level, and the noise-free
#: values that :func:`~bayesphys.problems.rgnp.poisson_sensor_data` also returns (not used)
DATA_KEYS: tuple[str, ...] = ("x_obs", "y", "z", "w")
DATA_OPTIONAL: tuple[str, ...] = ("sigma_y", "u_obs")


def _as_points(name: str, x, problem, dtype, device) -> Tensor:
    t = as_tensor(name, x, dtype=dtype, device=device)
    if t.ndim == 1 and problem.dim_x == 1:
        t = t.unsqueeze(-1)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected shape [N, {problem.dim_x}], received {tuple(t.shape)}")
    return check_points(name, t, problem.lower, problem.upper)


def _as_batch(name: str, v, dim: int, dtype, device) -> Tensor:
    t = as_tensor(name, v, dtype=dtype, device=device)
    given = tuple(t.shape)  # named in the error as passed, not as reshaped
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] != dim or t.shape[0] == 0:
        raise ValueError(f"{name}: expected shape [{dim}] or [B, {dim}], received {given}")
    return t


class RandomGridNP:
    r"""Random Grid Neural Process with a GICNet inverse model.

    Parameters
    ----------
    problem: ``"poisson"``, ``"burgers"`` or a problem instance from ``bayesphys.problems.rgnp``.
    method: ``"R0"`` (faithful reference setting) or ``"RGNP"`` (ours; the default). With
        ``config``, the configuration's own ``method`` applies: a different ``method`` here is
        refused (``ValueError``) rather than ignored.
    size: ``"full"`` (the preset), ``"small"`` or ``"smoke"`` (reduced networks, :data:`SIZES`);
        presets only: with ``config`` (which sets every size) another size is refused.
    device, dtype, seed: placement (``None``: the CPU; ``"auto"``: CUDA when present),
        ``torch.float32`` (default: a neural model) or ``torch.float64`` (the Cholesky
        factors of the objective need one of them), and reproducibility: ``seed`` sets the
        initial weights and the stream of training batches and random grids (``None``: both
        from torch's global streams).
    **overrides: fields of :class:`RGNPConfig` to change; ``gic={...}`` is merged into the
        preset's (or ``config``'s) GICNet settings, keys among :data:`~.config.GIC_KEYS`
        (:func:`~.config.with_overrides`).

    Example
    -------
    >>> import torch
    >>> m = RandomGridNP("poisson", "RGNP", seed=0, hidden=16, depth=2, n_freq=4)
    >>> res = m.fit(steps=2, progress=False)
    >>> post = m.posterior(torch.linspace(-1, 1, 11), z=torch.zeros(5), w=torch.ones(1))
    >>> tuple(post.mean.shape)
    (1, 11)
    """

    def __init__(
        self,
        problem: Any = "poisson",
        method: str | None = None,
        *,
        config: RGNPConfig | None = None,
        size: str = "full",
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        self.problem = get_problem(problem)
        if method is not None and (not isinstance(method, str) or method not in METHODS):
            raise ValueError(
                f"method: expected one of {list(METHODS)}, received {method!r}{did_you_mean(method, list(METHODS))}"
            )
        if not isinstance(size, str) or size not in SIZES:
            raise ValueError(
                f"size: expected one of {sorted(SIZES)}, received {size!r}{did_you_mean(size, sorted(SIZES))}"
            )
        if config is None:
            cfg = preset(self.problem.name, "RGNP" if method is None else method, size)
        else:
            if not isinstance(config, RGNPConfig):
                raise TypeError(f"config: expected an RGNPConfig, received {type(config).__name__}")
            if method is not None and method != config.method:
                raise ValueError(
                    f"method: config= is a {config.method!r} configuration, received method "
                    f"{method!r}; drop method= (or pass preset(problem, {method!r}))"
                )
            if size != "full":
                raise ValueError(
                    f"size: {size!r} has no effect with config= (the configuration sets every "
                    f"size); pass preset(problem, method, {size!r}) as config instead"
                )
            cfg = config
        cfg = with_overrides(cfg, **overrides).validate()  # ``gic``: merged, not replaced
        if not cfg.learn_sigma_r and cfg.sigma_r_lr_mult != 1.0:  # it had no effect
            raise ValueError(
                f"sigma_r_lr_mult: only with learn_sigma_r=True (sigma_r is fixed, no learning "
                f"rate applies), received sigma_r_lr_mult={cfg.sigma_r_lr_mult!r}"
            )
        self.config = cfg
        self.device = model_device(device)
        self.dtype = resolve_dtype(dtype, default=torch.float32)
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"dtype: expected torch.float32 or torch.float64 (the objective's Cholesky "
                f"factorisations need one of them), received {self.dtype}"
            )
        # a plain int (a numpy seed was stored as given, and saved so)
        self.seed = seed = check_optional_seed("seed", seed)
        # initial weights from ``seed``, without reseeding the caller's global streams
        with seeded_build(seed, self.device):
            p = self.problem
            self.forward_net = ForwardNet(
                p.dim_x,
                p.dim_z,
                p.dim_w,
                hidden=cfg.hidden,
                depth=cfg.depth,
                n_freq=cfg.n_freq,
                f_min=cfg.f_min,
                f_max=cfg.f_max,
                train_freq=cfg.train_freq,
                rank=cfg.rank,
                var_lo=cfg.var_lo,
            ).to(self.device, self.dtype)
            self.inverse_net = GICNet(p.dim_x, p.dim_z, p.dim_w, p.lower, p.upper, **cfg.gic).to(
                self.device, self.dtype
            )
            self.log_sigma_r = torch.nn.Parameter(
                torch.tensor(math.log(cfg.sigma_r), dtype=self.dtype, device=self.device),
                requires_grad=cfg.learn_sigma_r,
            )
            self.net = torch.nn.ModuleDict({"fwd": self.forward_net, "inv": self.inverse_net})
            self.net.register_parameter("log_sigma_r", self.log_sigma_r)
            self.grid = make_grid(cfg.grid, p.lower, p.upper)
            self.layouts = make_grid("layouts", p.lower, p.upper)
            fwd_params = list(self.forward_net.parameters())
            groups = [
                {"params": fwd_params, "mult": 1.0},
                {"params": list(self.inverse_net.parameters()), "mult": cfg.inv_lr_mult},
            ]
            if cfg.learn_sigma_r:
                if cfg.sigma_r_lr_mult == 1.0:
                    fwd_params.append(self.log_sigma_r)
                else:
                    groups.append({"params": [self.log_sigma_r], "mult": cfg.sigma_r_lr_mult})
            if cfg.init == "keras":  # ``init`` is checked by ``validate``
                keras_init(self.net)
        self.optimizer = torch.optim.Adam(
            groups,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            eps=cfg.adam_eps,
            fused=True,  # one fused kernel over all tensors instead of a loop over them
        )
        self.generator = torch.Generator(device=self.device)
        # seed=None: the batch stream too from torch's global stream (it was seed 0's for every
        # unseeded model: random weights, the same batches)
        self.generator.manual_seed(int(seed) if seed is not None else seed_or_draw("seed", None))
        # split by rank at the next fit, once per stream (a new or a restored one): a split at
        # every fit reseeded ranks > 0 again, so fit(2) + fit(2) differed from fit(4) there
        self._split_gen = True
        self.step_count = 0
        #: variance multipliers set by :meth:`calibrate` (1.0 = as trained)
        self.variance_scale: dict[str, float] = {"field": 1.0, "parameters": 1.0}
        # fields read only here (networks, grid, optimiser): later assignments are refused
        self._built = {k: copy.deepcopy(getattr(cfg, k)) for k in _SET_AT_CONSTRUCTION}

    def _check_config(self, where: str) -> None:
        """``config`` as assigned since construction: checked again (:meth:`RGNPConfig.validate`),
        and the fields the networks, grid and optimiser were built from unchanged."""
        self.config.validate()
        changed = {k: v for k, v in self._built.items() if getattr(self.config, k) != v}
        if changed:
            built = ", ".join(f"{k}={v!r}" for k, v in changed.items())
            raise ValueError(
                f"{where}: config fields {sorted(changed)} were assigned after the model was "
                f"built, but they set its networks, grid or optimiser at construction (it still "
                f"uses {built}); build a new RandomGridNP with them, or set them back. Fields "
                f"read during training (lr and its schedule, grad_clip, batch, n_points, "
                f"data_batch, qmc_prior, aug_weight, aug_points) may be changed between fits"
            )

    # ------------------------------------------------------------------ training
    def _lr(self) -> float:
        c = self.config
        warm = min(1.0, (self.step_count + 1) / c.lr_warmup) if c.lr_warmup else 1.0
        if not c.lr_half_every:
            return c.lr * warm
        e = self.step_count / c.lr_half_every
        return c.lr * warm * 0.5 ** (math.floor(e) if c.lr_staircase else e)

    def _modules(self) -> torch.nn.ModuleDict:
        return self.net

    def _check_data(self, data: Mapping[str, Any]) -> dict[str, Tensor]:
        check_keys("data", data, DATA_KEYS, DATA_OPTIONAL, hint="u_obs is accepted and not used")
        p, dt, dev = self.problem, self.dtype, self.device
        x_obs = _as_points("data['x_obs']", data["x_obs"], p, dt, dev)
        y = as_tensor("data['y']", data["y"], dtype=dt, device=dev, ndim=2)
        z = _as_batch("data['z']", data["z"], p.dim_z, dt, dev)
        w = _as_batch("data['w']", data["w"], p.dim_w, dt, dev)
        if y.shape[1] != x_obs.shape[0] or not (y.shape[0] == z.shape[0] == w.shape[0] >= 1):
            raise ValueError(
                f"data: expected y [n, {x_obs.shape[0]}], z [n, {p.dim_z}], w [n, {p.dim_w}], "
                f"received {tuple(y.shape)}, {tuple(z.shape)}, {tuple(w.shape)}"
            )
        sy = as_scalar(data.get("sigma_y", p.sigma_y))
        sy = check_real("data['sigma_y']", sy, minimum=0.0, strict=True)
        return {"x_obs": x_obs, "y": y, "z": z, "w": w, "sigma_y": sy}

    def loss(self, data: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """One Monte Carlo estimate of the negative objective (fresh prior draws and grids)."""
        c, p, g = self.config, self.problem, self.generator
        if c.qmc_prior:
            z, w = self._qmc_prior(c.batch)
        else:
            z, w = sample_prior(p, c.batch, generator=g, dtype=self.dtype, device=self.device)
        x, wts = self.grid.sample(
            c.batch, c.n_points, generator=g, dtype=self.dtype, device=self.device
        )
        elbo, parts = physics_elbo(
            p, self.forward_net, self.inverse_net, x, wts, z, w, self.log_sigma_r.exp(), g
        )
        self.grid.update(x, parts["res_sq"])
        loss = -elbo.mean()
        if c.aug_weight > 0:
            aug = self._layout_term(z, w)
            loss = loss - c.aug_weight * aug.mean()
            parts["aug_log_p_beta"] = aug.detach()
        if data is not None:
            n = data["y"].shape[0]
            idx = torch.randint(0, n, (min(c.data_batch, n),), generator=g, device=self.device)
            ll = data_log_likelihood(
                p,
                self.forward_net,
                data["x_obs"],
                data["y"][idx],
                data["z"][idx],
                data["w"][idx],
                data["sigma_y"],
            )
            loss = loss - n / idx.numel() * ll.sum()
            parts["data_ll"] = ll.detach()
        return loss, parts

    def _qmc_prior(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` prior draws ``(z, w)`` from one scrambled Sobol net over the joint box: each draw
        is marginally uniform (unbiased Monte Carlo), the set covers the box more evenly."""
        p, g = self.problem, self.generator
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device).item())
        lo = torch.as_tensor([*p.z_low, *p.w_low], dtype=torch.float64)
        hi = torch.as_tensor([*p.z_high, *p.w_high], dtype=torch.float64)
        eng = torch.quasirandom.SobolEngine(len(lo), scramble=True, seed=seed)
        u = lo + (hi - lo) * eng.draw(n, dtype=torch.float64)
        u = u.to(self.dtype).to(self.device)
        return u[:, : p.dim_z], u[:, p.dim_z :]

    def _layout_term(self, z: Tensor, w: Tensor) -> Tensor:
        r"""Amortisation term on observation layouts: :math:`\log p_\beta(z \mid \tilde u', X', w)`
        ``[B]`` with :math:`X' \sim` :class:`~.grids.LayoutMixture` (``N'`` drawn from
        ``config.aug_points``) and :math:`\tilde u' \sim q_\alpha(\cdot \mid z, w, X')` drawn
        without gradient (the term trains GICNet only: it is not part of the ELBO)."""
        c, g = self.config, self.generator
        pts = c.aug_points
        gd = g.device
        n = int(pts[int(torch.randint(0, len(pts), (1,), generator=g, device=gd))])
        xa, _ = self.layouts.sample(
            z.shape[0], n, generator=g, dtype=self.dtype, device=self.device
        )
        with torch.no_grad():
            q = self.forward_net.distribution(xa, z, w)
            eps = torch.randn(q.loc.shape, generator=g, dtype=self.dtype, device=self.device)
            eta = torch.randn(
                (*q.loc.shape[:-1], q.cov_factor.shape[-1], 1),
                generator=g,
                dtype=self.dtype,
                device=self.device,
            )
            ua = q.loc + q.cov_diag.sqrt() * eps + (q.cov_factor @ eta)[..., 0]
        return self.inverse_net(xa, ua, w).log_prob(z)

    @autograd_on()
    def fit(
        self,
        data: dict[str, Any] | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        max_seconds: float | None = None,
        callback: Callable[[RandomGridNP, int], Any] | None = None,
        callback_every: int = 100,
    ) -> FitResult:
        """Train for ``steps`` Adam steps (or until ``max_seconds``); returns a ``FitResult``.

        Under ``torchrun`` (a process group of ``W > 1`` ranks) the fit is data-parallel: each
        rank draws its own batch and the gradients are averaged
        (:class:`~bayesphys.distributed.GradientSync`), so ``config.batch`` is per rank.
        ``data``: optional noisy labelled sets ``{"x_obs" [M, dim_x], "y" [n, M], "z" [n, dim_z],
        "w" [n, dim_w], "sigma_y"}`` (P2). ``callback(model, step)`` runs every
        ``callback_every`` steps (its time is excluded from ``seconds``). Checked: ``steps >= 0``
        and ``callback_every >= 1`` (ints), ``max_seconds`` ``None`` or ``> 0``, ``progress`` a
        bool, ``callback`` ``None`` or callable as ``callback(model, step)``, ``data`` a dict
        with the keys above (``u_obs``, as returned by
        :func:`~bayesphys.problems.rgnp.poisson_sensor_data`, is accepted and not used; other
        keys are refused), all before the first step; so is ``config`` (assigned fields
        re-checked; those the model was built from must be unchanged). A second call
        continues the same run: the optimiser's state and the schedule (read from
        ``step_count``) carry on from the last step.
        """
        self._check_config("fit")
        steps = check_int("steps", steps, minimum=0)
        max_seconds = check_max_seconds(max_seconds)
        callback_every = check_int("callback_every", callback_every, minimum=1)
        progress = check_bool("progress", progress)
        if callback is not None:
            check_callback("callback", callback, (self, 0), ("model", "step"))
        dat = self._check_data(data) if data is not None else None
        mods = self._modules()
        mods.train()
        # data-parallel under torchrun: identical replicas, per-rank batches, mean gradients
        sync = GradientSync(mods)
        if self._split_gen:
            rank_generator_seed(self.generator)
            self._split_gen = False
        progress = progress and sync.is_main
        params = list(mods.parameters())
        # divergence guard, shared by all chunks of this fit: a non-finite loss restores the
        # last verified values and never reaches the optimiser (NaN gradients poison Adam)
        guard = DivergenceGuard(mods)

        def step():
            for grp in self.optimizer.param_groups:
                grp["lr"] = self._lr() * grp["mult"]
            self.optimizer.zero_grad(set_to_none=True)
            try:
                loss, _ = self.loss(dat)
            except torch.linalg.LinAlgError:  # overflowing network: a Cholesky factor failed
                loss = torch.tensor(math.nan)
            # under torchrun, the mean over ranks: all ranks take the same decision
            val = sync.mean(loss) if sync.active else float(loss.detach())
            if not guard.admit(val):  # no update; the last verified values are back
                return torch.tensor(val)
            loss.backward()
            sync.average_gradients()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip, foreach=True)
            if not guard.admit_gradients(params):  # overflowing gradients would poison Adam
                return torch.tensor(math.nan)
            self.optimizer.step()
            self.step_count += 1
            return torch.tensor(val) if sync.active else loss

        hist: list[float] = []
        spent, cb_time, done = 0.0, 0.0, 0
        budget = TimeBudget(max_seconds, sync, every=1)  # asked at chunk ends, on every rank
        msg, conv = f"max steps ({steps})", True
        chunk = callback_every if callback is not None else max(1, min(steps, 50))
        if max_seconds is not None:
            chunk = math.gcd(chunk, 5)
        # one bar for the whole fit (the chunks below run without their own)
        bar = progress_bar(
            total=steps,
            desc=f"{self.config.method} {self.problem.name}",
            progress=progress,
            leave=False,
        )
        try:
            while done < steps:
                n = min(chunk, steps - done)
                r = optimize(step, steps=n, guard=guard, progress=False)
                hist += r.loss_history
                spent += r.seconds
                done += r.steps
                bar.update(r.steps)
                if progress and r.loss_history:
                    bar.set_postfix(loss=f"{r.loss_history[-1]:.4g}", refresh=False)
                if r.steps < n:  # diverged (the guard restored the last good state)
                    msg, conv = r.message, False
                    break
                if callback is not None and done % callback_every == 0:
                    t0 = time.perf_counter()
                    callback(self, self.step_count)
                    cb_time += time.perf_counter() - t0
                if done < steps and budget.over(spent):  # the ranks vote: all stop together
                    msg, conv = (
                        f"time budget ({max_seconds:.3g} s) reached after {done} steps",
                        False,
                    )
                    break
        finally:
            bar.close()
            mods.eval()  # an interrupted fit too
        return FitResult(
            loss_history=hist,
            seconds=spent,
            converged=conv,
            steps=done,
            message=msg,
            extra={
                "steps_per_second": done / max(spent, 1e-12),
                "sigma_r": float(self.log_sigma_r.detach().exp()),
            },
        )

    # ------------------------------------------------------------------ posteriors
    def default_points(self) -> Tensor:
        """Poisson: the 201-node reference mesh; Burgers: a 51 x 21 (x, t) grid, C order."""
        if self.problem.name == "poisson":
            return torch.linspace(-1, 1, 201, dtype=self.dtype, device=self.device).unsqueeze(-1)
        xs = torch.linspace(0, 1, 51, dtype=self.dtype, device=self.device)
        ts = torch.linspace(0, 1, 21, dtype=self.dtype, device=self.device)
        return torch.stack(torch.meshgrid(xs, ts, indexing="ij"), -1).reshape(-1, 2)

    @torch.no_grad()
    def posterior(
        self, x: ArrayLike | None = None, *, z: ArrayLike, w: ArrayLike, noise: float = 0.0
    ) -> GaussianPosterior:
        r"""Gaussian over :math:`u(X)` given parameters: mean ``[B, N]``, covariance
        ``LowRankRootAddedDiagLinearOperator`` :math:`(DC)(DC)^\top + \operatorname{diag}(D^2\sigma^2
        + \text{noise})` ``[B, N, N]`` (diagonal floored at 1e-12 where :math:`D = 0`).

        ``x`` ``[N, dim_x]`` (``[N]`` in 1-D; default :meth:`default_points`); ``z`` ``[dim_z]`` or
        ``[B, dim_z]``; ``w`` ``[dim_w]`` or ``[B, dim_w]``; a single ``z`` or ``w`` (or a batch
        of one) is shared by the other's ``B`` rows, as in :meth:`parameter_posterior`.
        """
        warn_untrained("RandomGridNP.posterior", self.step_count)
        noise = check_real("noise", noise, minimum=0.0)
        p = self.problem
        xs = self.default_points() if x is None else _as_points("x", x, p, self.dtype, self.device)
        zt = _as_batch("z", z, p.dim_z, self.dtype, self.device)
        wt = _as_batch("w", w, p.dim_w, self.dtype, self.device)
        if zt.shape[0] == 1 and wt.shape[0] > 1:
            zt = zt.expand(wt.shape[0], -1)
        elif wt.shape[0] == 1 and zt.shape[0] > 1:
            wt = wt.expand(zt.shape[0], -1)
        if zt.shape[0] != wt.shape[0]:
            raise ValueError(
                f"z/w: expected equal batch sizes, received {zt.shape[0]}, {wt.shape[0]}"
            )
        self._modules().eval()
        xb = xs.unsqueeze(0).expand(zt.shape[0], -1, -1)
        q = field_marginal(p, self.forward_net, xb, zt, wt, noise_var=0.0, floor=1e-12)
        s = self.variance_scale["field"]
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(q.cov_factor * math.sqrt(s)),
            DiagLinearOperator(q.cov_diag * s + noise),
        )
        return GaussianPosterior(q.loc, cov, event_shape=(xs.shape[0],), validate=False)

    @torch.no_grad()
    def parameter_posterior(
        self, x: ArrayLike, u: ArrayLike, w: ArrayLike, *, transformed: bool = False
    ) -> GaussianPosterior:
        r"""Amortised :math:`p_\beta(z \mid u(X), w)` from field values at any point set.

        ``x`` ``[N, dim_x]`` or ``[B, N, dim_x]`` (points where :math:`D \ne 0`), ``u``
        ``[N]``/``[B, N]`` physical field values (``transformed=True``: already
        :math:`\tilde u = (u - B)/D`), ``w`` ``[dim_w]``/``[B, dim_w]``. Returns mean
        ``[B, dim_z]`` with a low-rank-plus-diagonal covariance ``[B, dim_z, dim_z]``.
        """
        warn_untrained("RandomGridNP.parameter_posterior", self.step_count)
        p = self.problem
        transformed = check_bool("transformed", transformed)
        xt = as_tensor("x", x, dtype=self.dtype, device=self.device)
        if xt.ndim == 1 and p.dim_x == 1:
            xt = xt.unsqueeze(-1)
        if xt.ndim == 2:
            xt = xt.unsqueeze(0)
        if xt.ndim != 3:
            raise ValueError(
                f"x: expected shape [N, {p.dim_x}] or [B, N, {p.dim_x}], received {tuple(xt.shape)}"
            )
        check_points("x", xt, p.lower, p.upper)
        ut = as_tensor("u", u, dtype=self.dtype, device=self.device)
        if ut.ndim == 1:
            ut = ut.unsqueeze(0)
        if ut.ndim != 2:
            raise ValueError(f"u: expected shape [N] or [B, N], received {tuple(ut.shape)}")
        wt = _as_batch("w", w, p.dim_w, self.dtype, self.device)
        sizes = (xt.shape[0], ut.shape[0], wt.shape[0])
        if len(set(sizes) - {1}) > 1 or 0 in sizes:
            raise ValueError(
                f"x/u/w: expected equal batch sizes B >= 1 (or 1, broadcast), received {sizes}"
            )
        bsz = max(sizes)
        xt, ut, wt = xt.expand(bsz, -1, -1), ut.expand(bsz, -1), wt.expand(bsz, -1)
        if ut.shape[1] != xt.shape[1]:
            raise ValueError(
                f"u: expected {xt.shape[1]} values per set (one per point), "
                f"received shape {tuple(ut.shape)}"
            )
        if not transformed:
            b, d = p.transform(xt, wt)
            if bool((d.abs() < 1e-6).any()):
                raise ValueError(
                    "x: points on the Dirichlet boundary (D(x) = 0) carry no information; drop them"
                )
            ut = (ut - b) / d
        self._modules().eval()
        q = self.inverse_net(xt, ut, wt)
        s = self.variance_scale["parameters"]
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(q.cov_factor * math.sqrt(s)),
            DiagLinearOperator(q.cov_diag * s),
        )
        return GaussianPosterior(q.loc, cov, event_shape=(p.dim_z,), validate=False)

    def calibrate(
        self, x: ArrayLike, u: ArrayLike, z: ArrayLike, w: ArrayLike, **kwargs: Any
    ) -> dict[str, float]:
        r"""Fit the variance multipliers on validation instances with reference solutions
        (``x [N, dim_x]``, ``u [V, N]``, ``z [V, dim_z]``, ``w [V, dim_w]``); see
        :func:`~bayesphys.neural_process.calibrate.calibrate_variance`. Means are unchanged."""
        return calibrate_variance(self, x, u, z, w, **kwargs)

    # ------------------------------------------------------------------ I/O
    def __repr__(self) -> str:
        return (
            f"RandomGridNP(problem={self.problem.name!r}, method={self.config.method!r}, "
            f"device={self.device}, dtype={str(self.dtype).replace('torch.', '')})"
        )

    def state(self) -> dict[str, Any]:
        """Weights, optimiser state, step count, batch stream, GICNet grid and variance scales
        (CPU tensors): what :meth:`load` restores."""
        st = {
            "modules": self._modules().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
            "variance_scale": dict(self.variance_scale),
        }
        if hasattr(self.grid, "state_dict"):
            st["grid"] = self.grid.state_dict()
        return st

    def save(self, path: str | Path) -> Path:
        """Write config, weights, optimiser and RNG state (``torch.save``) to the file ``path``
        (an existing folder is refused with ``IsADirectoryError``, as every model's save)."""
        if not isinstance(path, (str, Path)):
            raise TypeError(f"path: expected a str or Path, received {type(path).__name__}")
        if Path(path).is_dir():
            raise IsADirectoryError(f"path: expected a file name, received the folder {path}")
        self._check_config("save")  # a checkpoint load() could not read is never written
        family = PROBLEMS.get(getattr(self.problem, "name", None))
        if family is None or type(self.problem) is not family:
            # load rebuilds the problem from its name and fields: a subclass came back as its
            # base class, its overridden residual silently replaced by the base's
            raise ValueError(
                f"problem: a {type(self.problem).__name__} cannot be saved (a checkpoint rebuilds "
                f"its problem as one of {sorted(c.__name__ for c in PROBLEMS.values())} from its "
                f"name and fields, without the "
                f"subclass's methods); keep the weights with model.state() instead"
            )
        cfg = {
            "problem": self.problem.name,
            # the problem's own settings (prior boxes, sigma_y, ...): a customised problem
            # instance must come back as it was, not as the default of its name
            "problem_fields": dataclasses.asdict(self.problem),
            "config": self.config.to_dict(),
            "dtype": str(self.dtype),
            "seed": self.seed,
        }
        return save_checkpoint(
            path, kind="neural_process.RandomGridNP", config=cfg, state=self.state()
        )

    @classmethod
    def load(cls, path: str | Path, *, device: DeviceLike = None) -> RandomGridNP:
        """Rebuild a model saved by :meth:`save` (predictions round-trip exactly; so does
        further training when loaded on the kind of device it was saved from: a CPU and a CUDA
        random stream differ, so across kinds the batch generator starts afresh from the seed)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind="neural_process.RandomGridNP", map_location="cpu")
        c, st = ck["config"], ck["state"]
        # problem_fields, generator_device, variance_scale and grid: absent from older files
        require_entries(c, path, "settings", ["problem", "config", "dtype", "seed"])
        refuse_unknown(ck, path, "settings", c, _CONFIG_KEYS)
        require_entries(
            st, path, "state entries", ["modules", "optimizer", "step_count", "generator"]
        )
        refuse_unknown(ck, path, "state entries", st, _STATE_KEYS)
        require_entries(c["config"], path, "RGNPConfig settings", [])  # a dict
        cfg = dict(c["config"])
        if not cfg.get("learn_sigma_r", False):  # stored, and ignored, before it was refused
            cfg.pop("sigma_r_lr_mult", None)
        # a newer release's settings: refused by name (a raw TypeError named no version)
        refuse_unknown(ck, path, "settings", cfg, {f.name for f in dataclasses.fields(RGNPConfig)})
        scales = st.get("variance_scale", {})
        require_entries(scales, path, "variance scales", [])  # a dict
        refuse_unknown(ck, path, "variance scales", scales, ("field", "parameters"))
        with rebuilding(path, "neural_process.RandomGridNP"):
            cfg["gic"] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["gic"].items()}
            problem = get_problem(c["problem"])
            if c.get("problem_fields"):  # absent in checkpoints written before it was saved
                known = {f.name for f in dataclasses.fields(type(problem))}
                refuse_unknown(ck, path, "problem fields", c["problem_fields"], known)
                problem = type(problem)(**c["problem_fields"])
            m = cls(
                problem, config=RGNPConfig(**cfg), device=device, dtype=c["dtype"], seed=c["seed"]
            )
            m._modules().load_state_dict(st["modules"])
            m.optimizer.load_state_dict(st["optimizer"])
            m.step_count = check_int("step_count", st["step_count"], minimum=0)
            if _generator_device(st) == m.generator.device.type:
                m.generator.set_state(st["generator"])
            if "grid" in st:
                m.grid.load_state_dict(st["grid"])
            # a calibration's variance multipliers are > 0 (a 0 or NaN one gave zero or NaN
            # variances)
            m.variance_scale.update(
                {
                    k: check_real(f"variance_scale[{k!r}]", v, minimum=0, strict=True)
                    for k, v in scales.items()
                }
            )
        m._modules().eval()
        return m

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameter counts of the forward and inverse networks."""

        def cnt(m):
            return sum(p.numel() for p in m.parameters() if p.requires_grad)

        return {"forward": cnt(self.forward_net), "inverse": cnt(self.inverse_net)}


#: the settings and state entries :meth:`RandomGridNP.save` writes (``grid`` only for a grid
#: with a state)
_CONFIG_KEYS = frozenset({"problem", "problem_fields", "config", "dtype", "seed"})
_STATE_KEYS = frozenset(
    {
        "modules",
        "optimizer",
        "step_count",
        "generator",
        "generator_device",
        "variance_scale",
        "grid",
    }
)


def _generator_device(state: dict[str, Any]) -> str:
    """Device type of the batch generator saved in ``state`` (older checkpoints do not record
    it: a CPU generator's state has the size of a fresh CPU generator's)."""
    if "generator_device" in state:
        return str(state["generator_device"])
    return "cpu" if state["generator"].numel() == torch.Generator().get_state().numel() else "cuda"
