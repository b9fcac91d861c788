r"""The ProbConserv model: a Step-1 probabilistic model plus the Step-2 conservation update.

.. code-block:: python

    model = ProbConserv("pme", step1="anp", seed=0)
    result = model.fit(steps=2000)                     # trains Step 1 across GPME functions
    test = make_dataset("pme", params=[3.0] * 8, seed=1)
    prior = model.step1(test)                          # N(mu, Sigma), batch (8, 1), event (201,)
    post = model.posterior(test)                       # conditioned on int u dx = b(t)

``step1="anp"``: :class:`~bayesphys.probconserv.anp.AttentiveNP` (covariance ``"diag"`` as in
the paper, ``"lowrank"`` from the latent draws, or ``"mixture"``: Step 2 applied to each latent
draw and the updated mixture moment-matched, as the reference code does,
:mod:`~bayesphys.probconserv.mixture_update`); ``step1="gp"``:
:class:`~bayesphys.probconserv.metagp.MetaGP` with a dense covariance. ``softc_weight > 0``
trains either with the SoftC penalty :math:`\lambda\,\overline{r^2}`,
:math:`r = u_t - \partial_x(k(u)u_x)` at ``softc_points`` random targets (the ANP's mean by
autograd; the meta-GP's differentiable predictive mean by central finite differences,
:func:`~bayesphys.probconserv._train.softc_penalty_gp`).
``posterior(method=...)``: ``"probconserv"`` (limit or finite ``sigma_g``), ``"hardc"``
(projection of the mean, variance untouched) or ``"none"`` (Step 1 only).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._built_settings import check_built_settings, shape_settings
from .._checks import check_real
from .._detached import warn_detached
from .._device import as_tensor, model_device
from .._model import FitResult, autograd_on
from .._precision import own_precision
from .._process_state import seeded_build
from ..posterior import GaussianPosterior
from ..problems.gpme import GPMEData, GPMEProblem
from ._config import ProbConservConfig, checked_config, config_settings
from ._inputs import (
    check_calibrate_settings,
    check_data,
    check_grid,
    context_points,
    detached_context,
)
from ._model_calibration import mass_discrepancy_variance, run_calibrate
from ._persist import load_probconserv, save_probconserv
from ._predict import step1_posterior, updated_posterior
from ._train import fork_stream, train_step1
from .anp import AttentiveNP
from .calibration import HybridCalibration
from .metagp import MetaGP

__all__ = ["ProbConserv", "ProbConservConfig"]

# documented and pickled under this public module (defined in a private one)
ProbConservConfig.__module__ = __name__

_F64 = torch.float64


@functools.cache
def _calibrate_defaults() -> dict[str, Any]:
    """The defaults of :meth:`ProbConserv.calibrate`'s keyword arguments, read from its
    signature."""
    params = inspect.signature(ProbConserv.calibrate).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


@functools.cache
def _init_defaults() -> dict[str, Any]:
    """The defaults of :class:`ProbConserv`'s keyword settings, read from its signature."""
    params = inspect.signature(ProbConserv.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


class ProbConserv:
    r"""Step-1 model (ANP or meta-GP) + Step-2 conservation update on a GPME problem.

    ``problem``: a problem id (``"diffusion"``, ``"pme"``, ``"stefan"``), a
    :class:`~bayesphys.problems.gpme.GPMEProblem`, or a :class:`ProbConservConfig`, which
    gives every setting (its problem by id): ``ProbConserv(model.config)`` builds a fresh,
    untrained model with ``model``'s settings and, for a seeded config, its initial weights.
    With a config the keyword settings must be left at their defaults (one that differs is a
    ``ValueError`` naming it; change the config instead); ``device`` and ``dtype``, which the
    config does not hold, apply as usual.

    ``seed`` sets the initial weights, the training's random draws (the ANP's latent noise,
    SoftC's residual subsets) and the stream of training batches; the caller's global random
    streams are left as they were. ``seed=None`` draws the initial weights and the training's
    random draws from the global streams (advancing them), while the training batches use seed
    0, so that stream still repeats (any seed torch takes, ``[-2**63, 2**64)``). The batches
    come from their own stream (:func:`bayesphys.stream_seed`), so no ``make_dataset`` seed a
    user passes (a validation or test set) reproduces a training batch. ``device``: ``None``
    (the default) is the CPU, ``"auto"`` CUDA when present.

    ``hidden`` (default 64), ``n_samples`` (latent draws, default 32) and ``covariance``
    (default ``"lowrank"``; ``"diag"``; ``"mixture"``, whose Step 1 is ``"diag"``'s and whose
    ProbConserv update is per latent draw, with a scalar calibration only) are settings of the ANP
    (``step1="anp"``), ``gp_width`` (default
    32) of the meta-GP (``step1="gp"``); giving one to the other model is refused, as it would
    have no effect. ``softc_weight`` and ``softc_points`` (the SoftC penalty's weight and
    random targets per function) apply to both models. ``dtype`` may be a name
    (``"float32"``); ``sigma_g``
    is a number ``>= 0`` or ``inf``, ``relative`` a bool. ``train_margin`` (default 0, the paper's
    setting) widens the range the training functions' parameters are drawn from by that fraction of
    its length at each end, e.g. diffusion :math:`k \sim U[0.8, 5.2]` at 0.05, so that the ends
    of the paper's range are no longer the ends of what the model has seen. It widens the
    training only: :meth:`calibrate` still draws its validation functions from the unwidened
    ``train_range`` (widened by its own ``range_margin``), and the mass check's
    "outside the training range" gate reads ``train_range`` too.

    The parameters Step 1 was trained on (``train_range`` widened by ``train_margin``, or
    the span of ``fit(data)``'s ``data.params``; unknown when one is not finite) are recorded
    and saved with the model. A posterior (:meth:`step1`, :meth:`posterior`) of a context
    function whose known parameter lies outside them warns (``UserWarning``, once per call):
    the mean there is an extrapolation whose covariance need not widen. Only the mass check
    of a hybrid calibration widens it, so the warning is not given where that check applies
    (``posterior(method="probconserv")`` on the calibration grid after
    ``calibrate(objective="hybrid", local_functions=M)``).
    """

    kind = "probconserv"

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(
        self,
        problem: str | GPMEProblem | ProbConservConfig = "pme",
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
        settings = {
            "step1": step1,
            "hidden": hidden,
            "softc_weight": softc_weight,
            "covariance": covariance,
            "n_samples": n_samples,
            "sigma_g": sigma_g,
            "relative": relative,
            "lr": lr,
            "batch_size": batch_size,
            "gp_width": gp_width,
            "softc_points": softc_points,
            "noise_std": noise_std,
            "train_margin": train_margin,
            "seed": seed,
        }
        if isinstance(problem, ProbConservConfig):  # every setting from the config
            problem, settings = config_settings(problem, settings, _init_defaults())
        self.problem, self.config, dtype = checked_config(problem, dtype=dtype, **settings)
        cfg, prob = self.config, self.problem
        self.device = model_device(device)
        # the ANP trains in float32 (or ``dtype``), the GP and Step 2 in float64
        self.dtype = dtype or (torch.float32 if cfg.step1 == "anp" else _F64)
        lo = (prob.t_range[0], prob.x_range[0])
        hi = (prob.t_range[1], prob.x_range[1])
        # initial weights from ``seed``, without reseeding the caller's global streams
        with seeded_build(cfg.seed, self.device):
            if cfg.step1 == "anp":
                self.net: torch.nn.Module = AttentiveNP(lo, hi, hidden=cfg.hidden)
            else:
                self.net = MetaGP(lo, hi, width=cfg.gp_width)
            self.net.to(device=self.device, dtype=self.dtype)
            #: the stream of the training's random draws (ANP latent noise, SoftC subsets): it
            #: continues from the seeded state the weights left, as the global stream did when
            #: construction reseeded it; ``None`` (unseeded model): the global streams
            self._train_rng = None if cfg.seed is None else fork_stream(self.device)
        # split by rank at the next fit, once per stream (new or loaded): not at every fit
        self._split_rng = True
        # the settings the Step-1 weights' shapes come from (save refuses them changed)
        size = "hidden" if cfg.step1 == "anp" else "gp_width"  # the one the network reads
        self._shape_settings = shape_settings(cfg, ("step1", size))
        # the settings read at construction only, refused at use once changed: the network's
        # and the problem's (by its name: fit and the posteriors read self.problem)
        self._built = shape_settings(cfg, ("problem", "step1", size))
        self.steps_done = 0
        #: the span of parameters Step 1 was trained on, ``(lo, hi)`` (NaN: unknown), ``None``
        #: before a fit; predictions warn for a context function outside it
        self._trained_params: tuple[float, float] | None = None
        self.var_scale = 1.0
        self.calibration: HybridCalibration | None = None
        #: ``steps_done`` at which :meth:`calibrate` fitted ``var_scale`` / ``calibration``
        self._calibrated_at: int | None = None

    def _check_built(self, where: str) -> None:
        """Refuse (``ValueError`` naming ``where`` and the setting) a ``config`` whose
        settings read at construction (the problem's name, ``step1`` and the network's size)
        were assigned afterwards: fit and the posteriors went on with the built network and
        problem (or failed inside torch, for ``step1``), and a checkpoint recorded a
        ``config.problem`` that never applied. The other Step-1 model's settings may change
        (this network reads none of them)."""
        check_built_settings(self.config, getattr(self, "_built", {}), "ProbConserv", where)

    # -- training ---------------------------------------------------------------------------
    def set_softc_weight(self, weight: float) -> None:
        """Switch the SoftC penalty on (``weight > 0``) or off (``0``) e.g. to fine-tune a
        trained ANP or meta-GP (SoftC-ANP / SoftC-GP); ``ValueError`` naming ``weight`` for a
        negative or non-finite one."""
        weight = check_real("weight", weight, minimum=0.0)
        self.config.softc_weight = float(weight)

    @autograd_on()
    @own_precision()
    def fit(
        self,
        data: GPMEData | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        lr: float | None = None,
        max_seconds: float | None = None,
        callback: Callable[[ProbConserv, int], Any] | None = None,
        callback_every: int = 100,
    ) -> FitResult:
        """Train Step 1 for ``steps`` Adam steps (cosine learning-rate decay), or until
        ``max_seconds`` of wall time (``None`` or ``> 0``; asked after each step, so at least
        one step is taken; the result then has ``converged=False`` and says so in
        ``message``).

        ``data=None`` draws a fresh batch of ``batch_size`` training functions (parameters
        ``U(train_range)``, widened by ``train_margin`` times its length at each end; the
        paper's context design, sensor noise ``noise_std``) every step, seeded by ``seed``;
        otherwise minibatches of ``data``. Returns a :class:`~bayesphys.FitResult`.
        Under ``torchrun`` (``W > 1`` ranks) the fit is data-parallel: each rank draws its own
        batch and the gradients are averaged (:class:`~bayesphys.distributed.GradientSync`).
        A second call continues from the current weights and batch stream (``steps_done``)
        with a fresh Adam and a fresh cosine schedule over its own ``steps``. A non-finite
        loss, or an update that leaves Adam's state non-finite, stops the fit as a divergence
        and restores the last good weights: those before the last recorded step's update,
        which ``steps_done`` then no longer counts. An interrupt (Ctrl-C) or an error inside
        a step, before its update, leaves the weights of the last completed step with
        ``steps_done`` counting the completed steps only, and the latent-noise stream where
        the interrupted step began: the next fit draws that step's batch again, as after a
        fit that stopped there.

        ``callback(model, step)`` runs after the update of every ``callback_every``-th step
        of this call (its steps ``c, 2c, ...`` up to ``steps``, ``c = callback_every``; not
        after a step whose loss is non-finite, or whose update left Adam's state non-finite,
        which ends the fit as a divergence), on every rank under
        ``torchrun``. ``model`` is this model holding the weights of that update, in
        evaluation mode (ready to predict or :meth:`save`; the next step sets training mode
        again), and ``step`` is the model's total number of steps, ``model.steps_done`` at
        that moment (a second call counts on from the first). Its time is excluded from the
        result's ``seconds`` and from ``max_seconds``. An exception it raises
        (``KeyboardInterrupt`` and ``StopIteration`` included) propagates and leaves the
        weights of that last completed step, ``steps_done`` counting it.

        Checked before the first step: ``steps >= 0`` and ``callback_every >= 1`` (ints),
        ``progress`` a bool, ``lr`` and ``max_seconds`` ``None`` or ``> 0``, ``callback``
        ``None`` or callable as ``callback(model, step)``, ``data`` ``None`` or a
        :class:`~bayesphys.problems.gpme.GPMEData` of this problem with targets.
        """
        self._check_built("fit")
        return train_step1(
            self,
            data,
            steps=steps,
            progress=progress,
            lr=lr,
            max_seconds=max_seconds,
            callback=callback,
            callback_every=callback_every,
        )

    # -- prediction -------------------------------------------------------------------------
    def _check_context(self, context, name: str = "context") -> None:
        check_data(name, context, self.problem, targets=False)

    def _grid(self, t, x) -> tuple[Tensor, Tensor]:
        return check_grid(self.problem, t, x)

    @own_precision()
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
        the GP: ``[B, nt, nx, nx]``, refused with a ``MemoryError`` before the GP runs when
        it cannot fit on the model's device). Defaults: the table time and 201 uniform points. After
        ``calibrate(objective="hybrid")`` the covariance on the calibration grid is the hybrid
        :math:`s(\beta a\Sigma + (1-\beta)\Sigma_{\rm err})` with the Step-1 scale ``s``
        (:mod:`~bayesphys.probconserv.calibration`). This is the unconstrained model, the same
        as ``posterior(method="none")``: it never sees the conservation right-hand side, so
        its scale is the pooled validation scale even when a parameter-conditional one was
        fitted (that one, and the mass check, read :math:`b`; ``posterior(sigma_g=inf)`` is the
        Step-1 posterior with them, the prior the ProbConserv update starts from).
        Computed without gradient: detached from ``t``, ``x``, the context's points and the
        weights (inputs that require grad are a ``UserWarning`` saying so). ``seed``: the
        ANP's latent draws, each function's from a stream of its own (seeded by ``seed`` and
        the function's context values), so a function's posterior is the one it gets alone,
        whichever functions share the call and in whichever order (``None``: one block from
        torch's global stream).
        """
        warn_detached("ProbConserv.step1", **context_points(context), t=t, x=x)
        self._check_built("step1")
        context = detached_context(context)
        t = t.detach() if isinstance(t, Tensor) else t
        x = x.detach() if isinstance(x, Tensor) else x
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
        sizes: str = "t/x",
    ) -> GaussianPosterior:
        """Step 1 with the calibration of ``stage`` (``"prior"``, ``"post"`` or ``"raw"``);
        ``mass [B, nt]`` (default: analytic) feeds a parameter-conditional scale;
        ``use_mass=False``: a calibration that never sees the mass (unconstrained baselines).
        ``caller``: the public method, named by the other-grid warning; ``sizes``: the
        caller's arguments that size the problem, named by a memory refusal."""
        return step1_posterior(
            self,
            context,
            t,
            x,
            seed=seed,
            stage=stage,
            mass=mass,
            use_mass=use_mass,
            caller=caller,
            sizes=sizes,
        )

    @own_precision()
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
        self._check_built("mass_discrepancy")
        return mass_discrepancy_variance(self, context, t, mass=mass, seed=seed)

    @own_precision()
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
        coverage before and after the update) on the grid ``t [nt] x 201 points`` (``t`` a
        time or a tensor of times, default the table time); stored in
        ``self.calibration``, returns :math:`\beta`; ``posterior(method="probconserv")`` then
        uses the post-update scale, the other methods the Step-1 scale. With
        ``covariance="mixture"`` (an update per latent draw) the ProbConserv posterior cannot
        use a hybrid calibration and refuses it; only the Step-1 scale serves (the baselines,
        ``sigma_g=inf``), so ``calibrate`` warns (``UserWarning``) when asked for one.

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

        Scalar objectives, over the Step-1 marginals on the grid with
        :math:`z_{f,i} = (u_{f,i} - \mu_{f,i}) / \sigma_{f,i}`: ``"ll"`` gives
        :math:`c = \operatorname{mean}_{f,i}\, z_{f,i}^2` (the Gaussian-likelihood optimum of
        :math:`\Sigma \to c\Sigma`); ``"coverage90"`` gives
        :math:`c = (q_{0.9}(|z|) / 1.645)^2` (the scale whose central 90 % intervals cover 90 %
        of the validation values). ``data=None`` draws ``n_functions`` validation
        functions from the training distribution (never the test parameters). ``data`` (a
        :class:`~bayesphys.problems.gpme.GPMEData` of this problem) gives them instead: its
        contexts and parameters are read, its targets are not, since every objective scores
        Step 1 against the problem's exact solution :math:`u` at each function's parameter on
        the grid above; so each parameter must be known, finite and inside the family's
        domain (``ValueError`` naming ``data.params`` otherwise, before any prediction). The
        scale is applied to :math:`\Sigma` before Step 2 (the limit update's mean does not depend on
        it) and is saved with the model.

        A setting of a mode that is off is refused rather than ignored when it differs from
        its default: ``neighbours``, ``selection`` and ``range_margin`` without
        ``objective="hybrid"``; ``mass_length``, ``mass_gate`` and ``mass_floor`` without the
        mass check (``mass_floor`` also with ``mass_gate=None``); ``local_seed`` without
        ``local_functions``; with ``data``, an ``n_functions`` other than ``len(data)``, and a
        ``seed`` or (hybrid) a ``range_margin`` when no local functions are drawn.

        Each call fits on the uncalibrated Step 1 and replaces the calibration in force
        (hybrid or scalar), so a second call with the same arguments gives the same calibration,
        never a scale on top of a scale.

        The calibration is fitted to the current Step-1 weights: a later :meth:`fit` keeps it
        (it is saved with the model), and the calibrated posteriors (:meth:`step1`,
        :meth:`posterior`, :meth:`mass_discrepancy`) then warn (``UserWarning``) that it was
        made for other weights until ``calibrate`` is called again.
        """
        self._check_built("calibrate")
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

    @own_precision()
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

    @own_precision()
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
        the analytic :math:`b(t)` is the mass of that window, not the domain's total. The
        constrained methods need a strictly increasing ``x`` (the trapezoid rule integrates
        along it; another is a ``ValueError`` naming the first pair out of order);
        ``method="none"``, like :meth:`step1`, predicts at the points in any order.

        ``mass [B, nt]`` overrides the analytic :math:`b(t)` (e.g. flux-integrated boundary
        data); ``sigma_g``/``relative`` override the configured constraint noise (with
        ``method="probconserv"`` only: the other methods have no constraint noise).
        ``method="none"`` (the unconstrained Step 1) and ``"hardc"`` (its projection onto
        :math:`G u = b`, variance untouched) use a calibration that never sees :math:`b`: the
        pooled validation scale instead of the parameter-conditional one (whose parameter
        estimate reads :math:`b`), and no mass-residual check; only the ProbConserv update uses
        the conservation law. With ``covariance="mixture"`` the ProbConserv update conditions
        each latent draw's Gaussian and returns the updated mixture's moments, a dense
        covariance per slice ``[B, nt, nx, nx]`` and its root of the same size (3.2 GB for
        ``B = 50``, ``nt = 100``, ``nx = 201``: query fewer slices at a time; beyond the
        device's memory a ``MemoryError`` before the latent draws)
        (:func:`~bayesphys.probconserv.conserve_latent_mixture`; the hybrid calibration is
        refused there, ``ValueError``). ``seed``: the ANP's latent draws, as in :meth:`step1`
        (each function's from a stream of its own: its posterior does not depend on the other
        functions of ``context``).

        Gradients: the Step-1 posterior is computed without gradient, so the result is
        detached from ``t``, ``x``, the context's points and the weights (``t``, ``x`` or
        ``context.x_context`` / ``y_context`` that require grad are a ``UserWarning`` naming
        them, and are read detached: the quadrature weights alone gave ``x`` a
        partial gradient, the Step-1 mean's dependence on ``x`` missing). A ``mass`` that
        requires grad is differentiated through the update (:func:`conservation_update` is
        differentiable in :math:`b`); a parameter-conditional calibration reads it without
        gradient.
        """
        warn_detached("ProbConserv.posterior", **context_points(context), t=t, x=x)
        self._check_built("posterior")
        return updated_posterior(
            self,
            detached_context(context),
            t.detach() if isinstance(t, Tensor) else t,
            x.detach() if isinstance(x, Tensor) else x,
            method=method,
            mass=mass,
            sigma_g=sigma_g,
            relative=relative,
            seed=seed,
        )

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
        class, or a ``config.step1`` or network size (``hidden`` for the ANP, ``gp_width``
        for the GP) assigned after construction (the network keeps the shapes it was built
        with), is refused before anything is written (it could not be rebuilt), and so is a
        ``config.problem`` assigned after it (the model's problem is the one it was built
        with)."""
        self._check_built("save")
        return save_probconserv(self, path)

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> ProbConserv:
        """Rebuild a model saved with :meth:`save`."""
        return load_probconserv(cls, path, device=device)
