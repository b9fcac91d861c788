r"""The ProbConserv model: a Step-1 probabilistic model plus the Step-2 conservation update.

.. code-block:: python

    model = ProbConserv("pme", step1="anp", seed=0)
    result = model.fit(steps=2000)                     # trains Step 1 across GPME functions
    test = make_dataset("pme", params=[3.0] * 8, seed=1)
    prior = model.step1(test)                          # N(mu, Sigma), batch (8, 1), event (201,)
    post = model.posterior(test)                       # conditioned on int u dx = b(t)

``step1="anp"``: :class:`~bayesphys.probconserv.anp.AttentiveNP` (covariance ``"diag"`` as in
the paper, or ``"lowrank"`` from the latent draws); ``step1="gp"``:
:class:`~bayesphys.probconserv.metagp.MetaGP` with a dense covariance. ``softc_weight > 0``
trains the ANP with the SoftC penalty :math:`\lambda\,\overline{r^2}`,
:math:`r = u_t - \partial_x(k(u)u_x)` (PDE residual by autograd at the targets).
``posterior(method=...)``: ``"probconserv"`` (limit or finite ``sigma_g``), ``"hardc"``
(projection of the mean, variance untouched) or ``"none"`` (Step 1 only).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import replace
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
    check_bool,
    check_int,
    check_optional_seed,
    check_real,
    did_you_mean,
    stream_seed,
)
from .._data_parallel import GradientSync, rank_generator_seed
from .._device import as_tensor, model_device, resolve_dtype, seeded_build
from .._model import FitResult, autograd_on, optimize, warn_untrained
from .._time_budget import TimeBudget, check_max_seconds
from ..posterior import GaussianPosterior
from ..problems.gpme import GPMEData, GPMEProblem, get_problem, make_dataset
from ._config import ANP_ONLY, GP_ONLY, ProbConservConfig
from ._inputs import (
    check_calibrate_settings,
    check_data,
    check_mass,
    check_sigma_g_value,
)
from ._model_calibration import calibrated_step1, discrepancy, run_calibrate
from ._persist import load_probconserv, save_probconserv
from .anp import AttentiveNP
from .calibration import HybridCalibration, hybrid_covariance
from .metagp import MetaGP
from .update import check_sigma_g, check_sigma_g_shape, conserve_slices, trapezoid_weights

__all__ = ["ProbConserv", "ProbConservConfig"]

# documented and pickled under this public module (defined in a private one)
ProbConservConfig.__module__ = __name__

_F64 = torch.float64


@functools.cache
def _calibrate_defaults() -> dict[str, Any]:
    """The defaults of :meth:`ProbConserv.calibrate`'s keyword arguments, read from its signature."""
    params = inspect.signature(ProbConserv.calibrate).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _fork_stream(device: torch.device) -> torch.Generator:
    """A generator on ``device`` holding the current state of torch's global generator there."""
    gen = torch.Generator(device=device)
    if device.type == "cuda":
        gen.set_state(torch.cuda.get_rng_state(device))
    else:
        gen.set_state(torch.get_rng_state())
    return gen


class ProbConserv:
    r"""Step-1 model (ANP or meta-GP) + Step-2 conservation update on a GPME problem.

    ``seed`` sets the initial weights, the training's random draws (the ANP's latent noise,
    SoftC's residual subsets) and the stream of training batches; the caller's global random
    streams are left as they were. ``seed=None`` draws the initial weights and the training's
    random draws from the global streams (advancing them), while the training batches use seed
    0, so that stream still repeats (any seed torch takes, ``[-2**63, 2**64)``). The batches
    come from their own stream (:func:`bayesphys.stream_seed`), so no ``make_dataset`` seed a
    user passes (a validation or test set) reproduces a training batch. ``device``: ``None``
    (the default) is the CPU, ``"auto"`` CUDA when present.

    ``hidden`` (default 64), ``n_samples`` (latent draws, default 32) and ``covariance``
    (default ``"lowrank"``) are settings of the ANP (``step1="anp"``), ``gp_width`` (default
    32) of the meta-GP (``step1="gp"``); giving one to the other model is refused, as it would
    have no effect (so are a ``softc_weight > 0`` and a ``softc_points`` other than 32, the
    ANP's SoftC penalty, with ``step1="gp"``). ``dtype`` may be a name (``"float32"``); ``sigma_g`` is a number ``>= 0``
    or ``inf``, ``relative`` a bool. ``train_margin`` (default 0, the paper's setting) widens
    the range the training functions' parameters are drawn from by that fraction of its
    length at each end, e.g. diffusion :math:`k \sim U[0.8, 5.2]` at 0.05, so that the ends
    of the paper's range are no longer the ends of what the model has seen. It widens the
    training only: :meth:`calibrate` still draws its validation functions from the unwidened
    ``train_range`` (widened by its own ``range_margin``), and the mass check's
    "outside the training range" gate reads ``train_range`` too.
    """

    kind = "probconserv"

    def __init__(
        self,
        problem: str | GPMEProblem = "pme",
        *,
        step1: str = "anp",
        hidden: int | None = None,
        softc_weight: float = 0.0,
        covariance: str | None = None,
        n_samples: int | None = None,
        sigma_g: float = 0.0,
        relative: bool = False,
        lr: float | None = None,
        batch_size: int = 16,
        gp_width: int | None = None,
        softc_points: int = 32,
        noise_std: float = 0.0,
        train_margin: float = 0.0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = 0,
    ) -> None:
        prob = get_problem(problem)
        if step1 not in ("anp", "gp"):
            raise ValueError(
                f"step1: expected 'anp' or 'gp', received {step1!r}"
                f"{did_you_mean(step1, ('anp', 'gp'))}"
            )
        given = {"hidden": hidden, "n_samples": n_samples, "covariance": covariance}
        given["gp_width"] = gp_width
        for name in GP_ONLY if step1 == "anp" else ANP_ONLY:
            if given[name] is not None:
                other = "gp" if step1 == "anp" else "anp"
                raise ValueError(
                    f"{name}: only used with step1={other!r} (step1={step1!r} ignores it), "
                    f"received {name}={given[name]!r}"
                )
        hidden, n_samples, covariance, gp_width = (
            ANP_ONLY["hidden"] if hidden is None else hidden,
            ANP_ONLY["n_samples"] if n_samples is None else n_samples,
            ANP_ONLY["covariance"] if covariance is None else covariance,
            GP_ONLY["gp_width"] if gp_width is None else gp_width,
        )
        if dtype is not None:
            dtype = resolve_dtype(dtype)
            if dtype not in (torch.float32, _F64):
                # half-precision training diverged to NaN weights while reporting success
                raise ValueError(
                    f"dtype: expected torch.float32 or torch.float64, received {dtype} (the "
                    "neural process trains in single or double precision)"
                )
        if step1 == "gp" and dtype not in (None, _F64):
            # its predictive covariance must be PSD to float64 accuracy for the update
            raise ValueError(f"dtype: step1='gp' runs in torch.float64, received {dtype}")
        if covariance not in ("diag", "lowrank"):
            raise ValueError(
                f"covariance: expected 'diag' or 'lowrank', received {covariance!r}"
                f"{did_you_mean(covariance, ('diag', 'lowrank'))}"
            )
        softc_weight = check_real("softc_weight", softc_weight, minimum=0.0)
        if softc_weight > 0 and step1 != "anp":
            raise ValueError(
                f"softc_weight: expected >= 0 and only with step1='anp', received {softc_weight}"
            )
        n_samples = check_int("n_samples", n_samples, minimum=2)
        hidden = check_int("hidden", hidden, minimum=1)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        gp_width = check_int("gp_width", gp_width, minimum=1)
        softc_points = check_int("softc_points", softc_points, minimum=1)
        if softc_points != 32 and step1 != "anp":  # SoftC is the ANP's: it had no effect
            raise ValueError(
                f"softc_points: only with step1='anp' (the SoftC penalty's points), received "
                f"{softc_points} with step1={step1!r}"
            )
        sigma_g = check_sigma_g_value("sigma_g", sigma_g)  # inf: no update (the prior)
        relative = check_bool("relative", relative)
        seed = check_optional_seed("seed", seed)
        noise_std = check_real("noise_std", noise_std, minimum=0.0)
        train_margin = check_real("train_margin", train_margin, minimum=0.0)
        prob.check_params(f"train_margin = {train_margin:g}", *prob.widened_range(train_margin))
        if lr is not None:
            lr = check_real("lr", lr, minimum=0.0, strict=True)
        self.problem = prob
        self.config = ProbConservConfig(
            prob.name,
            step1,
            hidden,
            float(softc_weight),
            covariance,
            int(n_samples),
            float(sigma_g),
            bool(relative),
            lr,
            int(batch_size),
            int(gp_width),
            seed,
            int(softc_points),
            float(noise_std),
            float(train_margin),
        )
        self.device = model_device(device)
        # the ANP trains in float32 (or ``dtype``), the GP and Step 2 in float64
        self.dtype = dtype or (torch.float32 if step1 == "anp" else _F64)
        lo = (prob.t_range[0], prob.x_range[0])
        hi = (prob.t_range[1], prob.x_range[1])
        # initial weights from ``seed``, without reseeding the caller's global streams
        with seeded_build(seed, self.device):
            if step1 == "anp":
                self.net: torch.nn.Module = AttentiveNP(lo, hi, hidden=hidden)
            else:
                self.net = MetaGP(lo, hi, width=gp_width)
            self.net.to(device=self.device, dtype=self.dtype)
            #: the stream of the training's random draws (ANP latent noise, SoftC subsets): it
            #: continues from the seeded state the weights left, as the global stream did when
            #: construction reseeded it; ``None`` (unseeded model): the global streams
            self._train_rng = None if seed is None else _fork_stream(self.device)
        # split by rank at the next fit, once per stream (new or loaded): not at every fit
        self._split_rng = True
        self.steps_done = 0
        self.var_scale = 1.0
        self.calibration: HybridCalibration | None = None

    # -- training ---------------------------------------------------------------------------
    def _residual_penalty(self, xc, yc, xt, params) -> Tensor:
        net: AttentiveNP = self.net  # type: ignore[assignment]
        if xt.shape[1] > self.config.softc_points:  # the residual on a random subset of targets
            idx = torch.randperm(xt.shape[1], device=xt.device, generator=self._train_rng)
            idx = idx[: self.config.softc_points]
            xt = xt[:, idx]
        xt = xt.detach().clone().requires_grad_(True)
        mz, _ = net.latent(xc, yc)
        mu, _ = net.decode(net.deterministic(xc, yc, xt), mz, xt)
        (du,) = torch.autograd.grad(mu.sum(), xt, create_graph=True)
        k = self.problem.diffusivity(mu, params[:, None].to(mu.dtype))
        (dflux,) = torch.autograd.grad((k * du[..., 1]).sum(), xt, create_graph=True)
        r = du[..., 0] - dflux[..., 1]
        return r.pow(2).mean()

    def set_softc_weight(self, weight: float) -> None:
        """Switch the SoftC penalty on (``weight > 0``, ANP only) e.g. to fine-tune a trained ANP."""
        weight = check_real("weight", weight, minimum=0.0)
        if weight > 0 and self.config.step1 != "anp":
            raise ValueError(f"weight: expected >= 0 (ANP only), received {weight}")
        self.config.softc_weight = float(weight)

    @autograd_on()
    def fit(
        self,
        data: GPMEData | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        lr: float | None = None,
        max_seconds: float | None = None,
    ) -> FitResult:
        """Train Step 1 for ``steps`` Adam steps (cosine learning-rate decay), or until
        ``max_seconds`` of wall time (``None`` or ``> 0``; the result then has
        ``converged=False`` and says so in ``message``).

        ``data=None`` draws a fresh batch of ``batch_size`` training functions (parameters
        ``U(train_range)``, widened by ``train_margin`` times its length at each end; the
        paper's context design, sensor noise ``noise_std``) every step, seeded by ``seed``;
        otherwise minibatches of ``data``. Returns a :class:`~bayesphys.FitResult`.
        Under ``torchrun`` (``W > 1`` ranks) the fit is data-parallel: each rank draws its own
        batch and the gradients are averaged (:class:`~bayesphys.distributed.GradientSync`).
        A second call continues from the current weights and batch stream (``steps_done``)
        with a fresh Adam and a fresh cosine schedule over its own ``steps``.
        """
        cfg = self.config
        if data is not None and not isinstance(data, GPMEData):
            raise TypeError(f"data: expected GPMEData or None, received {type(data).__name__}")
        steps = check_int("steps", steps, minimum=0)
        progress = check_bool("progress", progress)
        max_seconds = check_max_seconds(max_seconds)
        if data is not None:
            check_data("data", data, self.problem, targets=True)
            for f in ("params", "x_context", "y_context", "x_target", "y_target"):
                if not isinstance(getattr(data, f), Tensor):
                    raise TypeError(
                        f"data.{f}: expected a torch.Tensor, received "
                        f"{type(getattr(data, f)).__name__}"
                    )
            if cfg.softc_weight > 0:  # the SoftC residual uses each function's parameter
                self.problem.check_params(
                    "data.params", float(data.params.min()), float(data.params.max())
                )
        if lr is not None:
            lr = check_real("lr", lr, minimum=0.0, strict=True)
        lr = lr or cfg.lr or (1e-3 if cfg.step1 == "anp" else 1e-2)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.05)
        # training batches: the stream "probconserv-train" keyed by (global step, rank), apart
        # from every dataset seed a user (or a calibration) passes to make_dataset; minibatches
        # of ``data``: "probconserv-subset" keyed the same way, so fit(4) + fit(2) draws the
        # batches of fit(6) on either path
        start, seed0 = self.steps_done, cfg.seed or 0
        counter = {"k": 0}
        # data-parallel under torchrun: identical replicas, per-rank batches, mean gradients
        sync = GradientSync(self.net)
        if self._train_rng is not None and self._split_rng:
            # ranks draw their own latent noise (rank 0 keeps its)
            rank_generator_seed(self._train_rng)
            self._split_rng = False
        progress = progress and sync.is_main

        # training parameters: U(train_range), widened by train_margin at each end
        train_range = self.problem.widened_range(cfg.train_margin) if cfg.train_margin else None

        def batch():
            if data is None:
                return make_dataset(
                    self.problem,
                    cfg.batch_size,
                    seed=stream_seed(seed0, "probconserv-train", start + counter["k"], sync.rank),
                    noise_std=cfg.noise_std,
                    param_range=train_range,
                )
            key = stream_seed(seed0, "probconserv-subset", start + counter["k"], sync.rank)
            gen = torch.Generator().manual_seed(key)
            idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=gen)
            return data.subset(idx)

        def step():
            d = batch()
            counter["k"] += 1
            cast = {"device": self.device, "dtype": self.dtype}
            xc, yc = d.x_context.to(**cast), d.y_context.to(**cast)
            xt, yt = d.x_target.to(**cast), d.y_target.to(**cast)
            self.net.train()
            if cfg.step1 == "anp":
                loss, _, _ = self.net.loss(xc, yc, xt, yt, generator=self._train_rng)
                if cfg.softc_weight > 0:
                    loss = loss + cfg.softc_weight * self._residual_penalty(
                        xc, yc, xt, d.params.to(**cast)
                    )
            else:
                loss = self.net.loss(xc, yc)
            opt.zero_grad()
            loss.backward()
            sync.average_gradients()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
            opt.step()
            sched.step()
            return torch.tensor(sync.mean(loss)) if sync.active else loss.detach()

        budget = TimeBudget(max_seconds, sync)  # every rank stops after the same step

        def budgeted() -> Tensor:
            if budget.over():
                raise StopIteration
            return step()

        budget.start()
        try:
            res = optimize(
                budgeted,
                steps=steps,
                params=self.net,
                progress=progress,
                desc=f"ProbConserv {cfg.step1} ({cfg.problem})",
            )
        except BaseException:
            # interrupted (e.g. Ctrl-C): the steps begun count, so that the next fit draws
            # fresh training batches instead of repeating these
            self.steps_done += counter["k"]
            self.net.eval()
            raise
        self.net.eval()  # as after an interrupt: left ready to predict
        self.steps_done += res.steps
        if budget.reached:
            res.message, res.converged = budget.message(res.steps), False
        return res

    # -- prediction -------------------------------------------------------------------------
    def _check_context(self, context, name: str = "context") -> None:
        check_data(name, context, self.problem, targets=False)

    def _grid(self, t, x) -> tuple[Tensor, Tensor]:
        t = self.problem.table_time if t is None else t
        tt = as_tensor("t", t, dtype=_F64)
        if tt.ndim > 1:  # a [2, 2] tensor of times was read as four times
            raise ValueError(
                f"t: expected a number or a 1-D tensor of times, received shape {tuple(tt.shape)}"
            )
        tt = tt.reshape(-1)
        xx = self.problem.grid(201) if x is None else as_tensor("x", x, dtype=_F64, ndim=1)
        if tt.numel() == 0 or xx.numel() < 2:
            raise ValueError(
                f"t, x: expected at least one time and two points, received {tt.numel()} "
                f"time(s) and {xx.numel()} point(s)"
            )
        for name, v, (lo, hi) in (
            ("t", tt, self.problem.t_range),
            ("x", xx, self.problem.x_range),
        ):
            tol = 1e-12 * max(1.0, abs(lo), abs(hi))
            if v.numel() and bool(((v < lo - tol) | (v > hi + tol)).any()):
                raise ValueError(
                    f"{name}: expected values in the {self.problem.name} domain [{lo}, {hi}] "
                    f"(where the model was trained), received [{float(v.min())}, "
                    f"{float(v.max())}]"
                )
        return tt, xx

    def step1(
        self,
        context: GPMEData,
        t: float | Tensor | None = None,
        x: Tensor | None = None,
        *,
        seed: int | None = 0,
    ) -> GaussianPosterior:
        r"""Step-1 posterior on the grid ``t [nt] x x [nx]``.

        Returns a float64 :class:`GaussianPosterior` with batch ``(B, nt)`` and event ``(nx,)``
        (covariance per time slice: diagonal / low-rank-plus-diagonal for the ANP, dense for
        the GP). Defaults: the table time and 201 uniform points. After
        ``calibrate(objective="hybrid")`` the covariance on the calibration grid is the hybrid
        :math:`s(\beta a\Sigma + (1-\beta)\Sigma_{\rm err})` with the Step-1 scale ``s``
        (:mod:`~bayesphys.probconserv.calibration`). This is the unconstrained model, the same
        as ``posterior(method="none")``: it never sees the conservation right-hand side, so
        its scale is the pooled validation scale even when a parameter-conditional one was
        fitted (that one, and the mass check, read :math:`b`; ``posterior(sigma_g=inf)`` is the
        Step-1 posterior with them, the prior the ProbConserv update starts from).
        """
        return self._step1(context, t, x, seed=seed, stage="prior", use_mass=False, caller="step1")

    def _step1(
        self,
        context,
        t,
        x,
        *,
        seed,
        stage: str,
        mass=None,
        use_mass: bool = True,
        caller: str = "step1",
    ) -> GaussianPosterior:
        """Step 1 with the calibration of ``stage`` (``"prior"``, ``"post"`` or ``"raw"``);
        ``mass [B, nt]`` (default: analytic) feeds a parameter-conditional scale;
        ``use_mass=False``: a calibration that never sees the mass (unconstrained baselines).
        ``caller``: the public method, named by the other-grid warning."""
        self._check_context(context)
        seed = check_optional_seed("seed", seed)
        tt, xx = self._grid(t, x)
        if not use_mass:
            mass = None
        elif mass is None and stage != "raw" and self.calibration is not None:
            mass = self.mass(context, tt)
        b, nt, nx = len(context), tt.numel(), xx.numel()
        cast = {"device": self.device, "dtype": self.dtype}
        xc = as_tensor("context.x_context", context.x_context).to(**cast)
        yc = as_tensor("context.y_context", context.y_context).to(**cast)
        grid = torch.stack(torch.broadcast_tensors(tt[:, None], xx[None, :]), -1).reshape(-1, 2)
        xt = grid.to(**cast).expand(b, -1, -1)
        self.net.eval()
        if self.config.step1 == "anp":
            g = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
            mu, sig = self.net.predict(xc, yc, xt, self.config.n_samples, generator=g)
            mu = mu.to(_F64).reshape(-1, b, nt, nx)
            var = sig.to(_F64).pow(2).mean(0).reshape(b, nt, nx)
            mean = mu.mean(0)
            c = 1.0 if stage == "raw" else self.var_scale
            if self.config.covariance == "diag":
                cov = DiagLinearOperator(c * (var + mu.var(0, unbiased=False)))
            else:
                s = mu.shape[0]
                root = (mu - mean).permute(1, 2, 3, 0) * math.sqrt(c / s)  # [B, nt, nx, S]
                cov = LowRankRootAddedDiagLinearOperator(
                    LowRankRootLinearOperator(root), DiagLinearOperator(c * var)
                )
            return calibrated_step1(
                self, mean, cov, tt, xx, stage, mass, use_mass=use_mass, caller=caller
            )
        means, covs = [], []
        for j in range(nt):
            m, c = self.net.predict(xc.to(_F64), yc.to(_F64), xt[:, j * nx : (j + 1) * nx].to(_F64))
            means.append(m)
            covs.append(c)
        mean = torch.stack(means, 1)
        cov = torch.stack(covs, 1)
        c = 1.0 if stage == "raw" else self.var_scale
        cov = c * cov + 1e-10 * torch.eye(nx, dtype=_F64, device=cov.device)
        return calibrated_step1(
            self, mean, cov, tt, xx, stage, mass, use_mass=use_mass, caller=caller
        )

    def mass_discrepancy(
        self,
        context: GPMEData,
        t: float | Tensor | None = None,
        *,
        mass: Tensor | None = None,
        seed: int | None = 0,
    ) -> Tensor:
        r""":math:`\hat\sigma_d^2` ``[B, nt]`` of the mass-residual check
        (:mod:`~bayesphys.probconserv.mass_check`): zero where the calibrated Step-1 model
        explains the function's mass residual, positive where the conservation law contradicts
        it (e.g. a parameter outside the training range). Needs ``calibrate(objective="hybrid",
        local_functions=M)`` with the check on; ``mass [B, nt]`` overrides the analytic one;
        ``seed`` is the ANP's latent-draw seed, as in :meth:`posterior`."""
        self._check_context(context)
        cal = self.calibration
        if cal is None or cal.mass_kappa is None or cal.local is None:
            raise ValueError(
                "mass_discrepancy: calibrate(objective='hybrid', local_functions=M) with "
                "mass_check first"
            )
        tt, xx = self._grid(t, None)
        if not cal.matches(tt, xx):
            raise ValueError("t: expected the calibration times (the check is fitted there)")
        b = (
            self.mass(context, tt)
            if mass is None
            else check_mass(mass, len(context.params), len(tt), self.device)
        )
        raw = self._step1(context, tt, xx, seed=seed, stage="raw")
        ps = cal.scale_for(raw.mean, "prior", b)
        pcov = hybrid_covariance(
            raw.covariance, cal.root_for(raw.mean), cal.beta, cal.trace_ratio, ps
        )
        return discrepancy(self.calibration, raw.mean, pcov, xx, b)[0]

    def calibrate(
        self,
        data: GPMEData | None = None,
        *,
        n_functions: int = 100,
        t: float | Tensor | None = None,
        seed: int = 424_242,
        objective: str = "ll",
        neighbours: tuple[int, ...] = (0,),
        local_functions: int = 0,
        local_seed: int | None = None,
        range_margin: float = 0.05,
        selection: str = "one_se",
        mass_check: bool | None = None,
        mass_length: float = 0.05,
        mass_gate: float | None = 2.0,
        mass_floor: float = 1.0,
    ) -> float:
        r"""Fit the Step-1 variance calibration on held-out validation functions.

        ``objective="ll"`` / ``"coverage90"``: one variance scale :math:`c` (returned).
        ``objective="hybrid"``: the validation-fitted hybrid covariance of
        :mod:`~bayesphys.probconserv.calibration` (error covariance blended with the model's,
        weight :math:`\beta` by 2-fold held-out MSE of the updated mean, scales by 2-fold 90 %
        coverage before and after the update) on the grid ``t x 201 points``; stored in
        ``self.calibration``, returns :math:`\beta`; ``posterior(method="probconserv")`` then
        uses the post-update scale, the other methods the Step-1 scale.

        ``local_functions = M > 0`` (hybrid only) replaces the scalar scales of the
        ProbConserv update (and of its Step-1 prior, ``posterior(sigma_g=inf)``) by
        parameter-conditional ones; the unconstrained model (``step1``,
        ``posterior(method="none" / "hardc")``) keeps the pooled scale, since these read the
        mass (:mod:`~bayesphys.probconserv.conditional`): an inferred
        parameter :math:`\hat\theta(\mu, b)` fitted on the validation functions, and a
        localized split-conformal 90 % scale :math:`s(\hat\theta)` fitted on ``M`` further
        functions (seed ``local_seed``, default ``seed + 100_003``) whose z-scores are taken
        under the final hybrid covariance. ``range_margin`` (hybrid only): the functions
        ``calibrate`` draws itself (the validation functions when ``data`` is None, and the
        ``M`` functions) have parameters from the training range widened by ``range_margin``
        times its length at each end (0: the training distribution), so that a function at an
        end of the range has calibration functions on both sides; the default was chosen on
        validation functions (``benchmarks/probconserv_margin.py``). ``selection`` (hybrid
        only): how :math:`(K, \beta)` is picked from the held-out MSEs, the one-standard-error
        rule ``"one_se"`` (the default, chosen on validation functions:
        ``benchmarks/probconserv_selection.py``) or the smallest, ``"min"``
        (:func:`~bayesphys.probconserv.fit_hybrid`).
        ``mass_check`` (default: on with ``local_functions``, which it needs) adds a smooth
        model-discrepancy covariance :math:`\hat\sigma_d^2 K` to a function whose mass residual
        :math:`g^\top\mu - b` is larger than its calibrated variance explains
        (:mod:`~bayesphys.probconserv.mass_check`; kernel length ``mass_length`` times the
        domain length); :math:`\kappa` is fitted on the same calibration functions. Posterior
        means never change, and updated draws still conserve mass. ``mass_gate`` (default 2)
        limits it to functions whose inferred parameter lies more than ``mass_gate`` sd of its
        calibration error outside the training range (``None``: every function); such a
        function gets at least ``mass_floor`` times the resolution of its residual,
        :math:`\hat\sigma_d^2 \ge \texttt{mass\_floor}\,\kappa v / g^\top K g` (``0``: the
        maximum-likelihood estimate alone; :mod:`~bayesphys.probconserv.mass_check`, "Floor").

        Scalar objectives: :math:`c = \operatorname{mean}_{f,i}\,(u_{f,i} - \mu_{f,i})^2 / \sigma_{f,i}^2` over
        the Step-1 marginals on the grid (the Gaussian-likelihood optimum of
        :math:`\Sigma \to c\Sigma`). ``data=None`` draws ``n_functions`` validation
        functions from the training distribution (never the test parameters). The scale is
        applied to :math:`\Sigma` before Step 2 (the limit update's mean does not depend on
        it) and is saved with the model.

        A setting of a mode that is off is refused rather than ignored when it differs from
        its default: ``neighbours``, ``selection`` and ``range_margin`` without
        ``objective="hybrid"``; ``mass_length``, ``mass_gate`` and ``mass_floor`` without the
        mass check (``mass_floor`` also with ``mass_gate=None``); ``local_seed`` without
        ``local_functions``; with ``data``, an ``n_functions`` other than ``len(data)`` and a
        ``seed`` when no local functions are drawn.
        """
        s = check_calibrate_settings(
            self.problem,
            _calibrate_defaults(),
            data=data,
            n_functions=n_functions,
            seed=seed,
            objective=objective,
            neighbours=neighbours,
            local_functions=local_functions,
            local_seed=local_seed,
            range_margin=range_margin,
            selection=selection,
            mass_check=mass_check,
            mass_length=mass_length,
            mass_gate=mass_gate,
            mass_floor=mass_floor,
        )
        return run_calibrate(self, s, data, t, objective, selection)

    def mass(self, context: GPMEData, t: float | Tensor | None = None) -> Tensor:
        """Analytic total mass :math:`b(t)` ``[B, nt]`` of each context function."""
        self._check_context(context)
        params = as_tensor("context.params", context.params, finite=False)
        if not bool(torch.isfinite(params).all()):
            raise ValueError(
                "context.params: expected finite parameters for the analytic mass (give mass= "
                "for functions of unknown parameter)"
            )
        self.problem.check_params("context.params", float(params.min()), float(params.max()))
        tt, _ = self._grid(t, None)
        return self.problem.mass(tt[None, :], context.params[:, None].to(_F64)).to(self.device)

    def _grid_mass(self, context: GPMEData, tt: Tensor, xx: Tensor) -> Tensor:
        """Analytic mass ``[B, nt]`` over the grid's span ``[x[0], x[-1]]``: the domain's
        :meth:`mass` when the grid spans the domain, else the same problem's on the window
        (the domain's total would be forced into the window)."""
        lo, hi = self.problem.x_range
        tol = 1e-12 * max(1.0, abs(lo), abs(hi))
        x0, x1 = float(xx[0]), float(xx[-1])
        if abs(x0 - lo) <= tol and abs(x1 - hi) <= tol:
            return self.mass(context, tt)
        self.mass(context, tt)  # the same checks of the parameters
        window = replace(self.problem, x_range=(x0, x1))
        return window.mass(tt[None, :], context.params[:, None].to(_F64)).to(self.device)

    def posterior(
        self,
        context: GPMEData,
        t: float | Tensor | None = None,
        x: Tensor | None = None,
        *,
        method: str = "probconserv",
        mass: Tensor | None = None,
        sigma_g: float | None = None,
        relative: bool | None = None,
        seed: int | None = 0,
    ) -> GaussianPosterior:
        r"""Updated posterior (batch ``(B, nt)``, event ``(nx,)``), float64.

        The constraint is :math:`\int_{x_0}^{x_{n-1}} u\,dx = b(t)` over the grid ``x``
        (default 201 points spanning the domain): on a grid spanning only part of the domain
        the analytic :math:`b(t)` is the mass of that window, not the domain's total.

        ``mass [B, nt]`` overrides the analytic :math:`b(t)` (e.g. flux-integrated boundary
        data); ``sigma_g``/``relative`` override the configured constraint noise (with
        ``method="probconserv"`` only: the other methods have no constraint noise).
        ``method="none"`` (the unconstrained Step 1) and ``"hardc"`` (its projection onto
        :math:`G u = b`, variance untouched) use a calibration that never sees :math:`b`: the
        pooled validation scale instead of the parameter-conditional one (whose parameter
        estimate reads :math:`b`), and no mass-residual check; only the ProbConserv update uses
        the conservation law.
        """
        warn_untrained("ProbConserv.posterior", self.steps_done)
        self._check_context(context)
        if method not in ("probconserv", "hardc", "none"):
            raise ValueError(
                f"method: expected 'probconserv', 'hardc' or 'none', received {method!r}"
            )
        if method != "probconserv" and (sigma_g is not None or relative is not None):
            raise ValueError(
                f"sigma_g, relative: only with method='probconserv' (method={method!r} has no "
                f"constraint noise), received sigma_g={sigma_g!r}, relative={relative!r}"
            )
        if isinstance(sigma_g, Tensor):  # [B, nt, 1]: per function and slice
            check_sigma_g(sigma_g)
            check_sigma_g_shape(sigma_g, (len(context.params), len(self._grid(t, x)[0]), 1))
        elif sigma_g is not None:
            sigma_g = check_sigma_g_value("sigma_g", sigma_g)
        if relative is not None:
            relative = check_bool("relative", relative)
        sg = self.config.sigma_g if sigma_g is None else sigma_g
        rel = self.config.relative if relative is None else relative
        # sigma_g = inf is no update: the Step-1 posterior with its own ("prior") calibration,
        # not the covariance calibrated for the updated posterior
        no_update = bool(torch.isinf(torch.as_tensor(sg, dtype=_F64)).all())
        stage = "post" if method == "probconserv" and not no_update else "prior"
        tt, xx = self._grid(t, x)
        if method != "none":
            trapezoid_weights(xx)  # a grid the update can integrate on, before Step 1
        if mass is not None and method == "none":
            raise ValueError(
                "mass: method='none' is the unconstrained model and uses no mass; pass it with "
                "method='probconserv' or 'hardc'"
            )
        if mass is not None:
            b = check_mass(mass, len(context.params), len(tt), self.device)
        elif method != "none":
            b = self._grid_mass(context, tt, xx)
        else:
            b = None  # the unconstrained posterior needs no mass
        # the unconstrained baselines never see b: the constrained update is the only user of
        # the conservation law (HardC projects onto it, keeping the baseline's variance)
        baseline = method != "probconserv"
        prior = self._step1(
            context,
            t,
            x,
            seed=seed,
            stage=stage,
            mass=b,
            use_mass=not baseline,
            caller="posterior",
        )
        if method == "none":
            return prior
        if method == "hardc":  # the projection has no constraint noise
            return conserve_slices(prior, xx.to(self.device), b, method=method)
        return conserve_slices(prior, xx.to(self.device), b, sg, relative=rel, method=method)

    # -- persistence ------------------------------------------------------------------------
    def __repr__(self) -> str:
        c = self.config
        return (
            f"ProbConserv(problem={c.problem!r}, step1={c.step1!r}, "
            + (f"covariance={c.covariance!r}, " if c.step1 == "anp" else "")
            + f"softc_weight={c.softc_weight:g}, steps_done={self.steps_done}, "
            f"device={self.device}, dtype={str(self.dtype).replace('torch.', '')})"
        )

    def save(self, path: str | Path) -> Path:
        """Checkpoint (config + Step-1 weights); :meth:`load` restores it exactly. The problem
        is saved by its family (one of ``PROBLEM_CLASSES``) and fields; a problem of another
        class is refused before anything is written (it could not be rebuilt)."""
        return save_probconserv(self, path)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> ProbConserv:
        """Rebuild a model saved with :meth:`save`."""
        return load_probconserv(cls, path, device=device)
