r"""The random-grid neural process model: training, posteriors, I/O (presets in :mod:`.config`).

``RandomGridNP(problem, method)`` couples a :class:`~.forward.ForwardNet` (GP over the field)
and a :class:`~.gicnet.GICNet` (Gaussian over PDE parameters), trained jointly without solver
data by the physics ELBO (plus the noisy-data term when ``fit(data=...)`` is given).

The two methods:

``"R0"``: a faithful torch re-implementation of the reference code's low-rank setting
(Poisson: 7x300 swish MLP, 100 fixed Fourier frequencies in [1e-3, 2], rank 2, i.i.d. uniform
grids of 30 points, batch 50, Adam 1e-3 constant because the reference decay never fires,
:math:`\sigma_r = 10^{-2}`; Burgers: 9x400, trainable frequencies, 225 points, batch 25, LR
halved every 16k steps, learned :math:`\sigma_r` from 1). Known reference bugs are fixed:
a single lifting layer, per-dimension frequencies, Chebyshev by recurrence, variance bounded once.

``"RGNP"``: our improved setting — scrambled-Sobol grids, a narrower/shallower forward MLP
(much cheaper per step), a learned residual scale :math:`\sigma_r` (Poisson: from 0.1; it makes
the field variance reflect the actual residual level, which fixes the 2-sigma coverage), a
two-layer lift and lengthscales initialised from 1 down to 0.05 (Poisson; Burgers keeps GICNet's
default 1e-3; trained freely) in GICNet, a higher learning rate with smooth exponential decay.
Poisson also draws each batch's :math:`(z, w)` from a scrambled Sobol net (``qmc_prior``) and
uses the reference's batch of 50, Adam(8e-3, betas 0.9/0.95, halving every 2000 steps) with
gradient clipping (fewer steps to a given error, C1). GICNet can also be trained on extra
clustered/uniform observation layouts (``aug_weight > 0``,
:class:`~.grids.LayoutMixture`; off in the presets: at equal time it cost more accuracy than it
returned). R0 starts like the Keras reference (``init="keras"``, Adam :math:`\epsilon = 10^{-7}`).
Both methods use exact forward-mode (Taylor) input derivatives; :meth:`RandomGridNP.calibrate`
rescales the variances post hoc.

:class:`RandomGridNP` holds the model's state and its public methods; the pieces they run live
in private modules: its configuration (``_settings``), networks (``_net``), input checks
(``_inputs``), training (``_train``) and checkpoint format (``_persist``).
"""

from __future__ import annotations

import math
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

from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import rebuilding
from .._checks import (
    as_scalar,
    check_bool,
    check_callback,
    check_int,
    check_optional_seed,
    check_real,
    seed_or_draw,
)
from .._data_parallel import GradientSync, rank_generator_seed
from .._detached import no_grad_detached
from .._device import ArrayLike, DeviceLike, DTypeLike, model_device
from .._model import DivergenceGuard, FitResult, autograd_on, release_grads, warn_untrained
from .._precision import own_precision
from .._process_state import streams_kept
from .._time_budget import check_max_seconds
from ..posterior import GaussianPosterior
from ..problems.rgnp import sample_prior
from ._inputs import (
    as_points,
    check_data,
    check_outputs,
    inverse_inputs,
    parameter_batches,
    warn_outside_prior,
)
from ._net import build_networks
from ._persist import (
    KIND,
    check_save_path,
    checkpoint_settings,
    model_state,
    read_checkpoint,
    restore_state,
    saved_calibration_step,
    saved_problem,
)
from ._settings import built_fields, check_unchanged, model_config, net_dtype
from ._train import (
    OptimizerUndo,
    check_fit_memory,
    layout_term,
    learning_rate,
    qmc_prior,
    run_chunks,
)
from .calibrate import calibrate_variance, warn_stale_calibration
from .config import SIZES, RGNPConfig, get_problem, preset
from .objective import data_log_likelihood, field_marginal, physics_elbo

__all__ = ["RGNPConfig", "RandomGridNP", "SIZES", "preset", "get_problem"]


class RandomGridNP:
    r"""Random Grid Neural Process with a GICNet inverse model.

    Parameters
    ----------
    problem
        ``"poisson"``, ``"burgers"`` or a problem instance from ``bayesphys.problems.rgnp``.
    method
        ``"R0"`` (faithful reference setting) or ``"RGNP"`` (ours; the default). With
        ``config``, the configuration's own ``method`` applies: a different ``method`` here is
        refused (``ValueError``) rather than ignored.
    size
        ``"full"`` (the preset), ``"small"`` or ``"smoke"`` (reduced networks, :data:`SIZES`);
        presets only: with ``config`` (which sets every size) another size is refused.
    device, dtype, seed
        placement (``None``: the CPU; ``"auto"``: CUDA when present),
        ``torch.float32`` (default: a neural model) or ``torch.float64`` (the Cholesky
        factors of the objective need one of them), and reproducibility: ``seed`` sets the
        initial weights and the stream of training batches and random grids (``None``: both
        from torch's global streams).
    **overrides
        fields of :class:`RGNPConfig` to change; ``gic={...}`` is merged into the
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

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
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
        cfg = model_config(self.problem.name, method, config, size, overrides)
        self.config = cfg
        self.device = model_device(device)
        self.dtype = net_dtype(dtype)
        # a plain int (a numpy seed was stored as given, and saved so)
        self.seed = seed = check_optional_seed("seed", seed)
        built = build_networks(self.problem, cfg, seed, self.device, self.dtype)
        self.forward_net, self.inverse_net = built.forward_net, built.inverse_net
        self.log_sigma_r, self.net = built.log_sigma_r, built.net
        self.grid, self.layouts = built.grid, built.layouts
        self.optimizer = torch.optim.Adam(
            built.groups,
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
        #: ``step_count`` at which :meth:`calibrate` fitted each of them (absent: never)
        self._calibrated_at: dict[str, int] = {}
        # fields read only here (networks, grid, optimiser): later assignments are refused
        self._built = built_fields(cfg)

    def _check_config(self, where: str) -> None:
        """``config`` as assigned since construction: checked again (:meth:`RGNPConfig.validate`),
        and the fields the networks, grid and optimiser were built from unchanged."""
        check_unchanged(self.config, self._built, where)

    # ------------------------------------------------------------------ training
    def _lr(self) -> float:
        return learning_rate(self.config, self.step_count)

    def _modules(self) -> torch.nn.ModuleDict:
        return self.net

    def _check_data(self, data: Mapping[str, Any]) -> dict[str, Tensor]:
        return check_data(data, self.problem, self.dtype, self.device)

    @own_precision()
    def loss(self, data: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        r"""One Monte Carlo estimate of the negative objective (fresh prior draws and grids):
        :math:`-\frac1B\sum_b \mathrm{ELBO}_b` (:func:`~.objective.physics_elbo`), minus
        ``aug_weight`` times the layout term's mean and, with ``data``, the data
        log-likelihood scaled to the ``n`` observations. Returns ``(loss [], parts)``,
        ``parts`` the ELBO's per-instance terms (``loglik``, ``log_p_beta``, ``log_q``
        ``[B]``; ``res_sq [B, N]``) and, when used, ``aug_log_p_beta`` / ``data_ll``."""
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
        return qmc_prior(self.problem, n, self.generator, self.dtype, self.device)

    def _layout_term(self, z: Tensor, w: Tensor) -> Tensor:
        r"""Amortisation term on observation layouts: :math:`\log p_\beta(z \mid \tilde u', X', w)`
        ``[B]`` with :math:`X' \sim` :class:`~.grids.LayoutMixture` (``N'`` drawn from
        ``config.aug_points``) and :math:`\tilde u' \sim q_\alpha(\cdot \mid z, w, X')` drawn
        without gradient (the term trains GICNet only: it is not part of the ELBO)."""
        return layout_term(
            self.layouts,
            self.forward_net,
            self.inverse_net,
            self.config.aug_points,
            self.generator,
            z,
            w,
            self.dtype,
            self.device,
        )

    @autograd_on()
    @own_precision()  # in the model's dtype inside a caller's autocast too
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
        ``callback_every`` steps with the model in evaluation mode, ready to predict or
        :meth:`save` (training mode is back for the next step; its time is excluded from
        ``seconds``). Checked: ``steps >= 0``
        and ``callback_every >= 1`` (ints), ``max_seconds`` ``None`` or ``> 0``, ``progress`` a
        bool, ``callback`` ``None`` or callable as ``callback(model, step)``, ``data`` a dict
        with the keys above (``u_obs``, as returned by
        :func:`~bayesphys.problems.rgnp.poisson_sensor_data`, is accepted and not used; other
        keys are refused), all before the first step; so is ``config`` (assigned fields
        re-checked; those the model was built from must be unchanged), and that GICNet's
        kernel weights of a step fit in memory (a ``MemoryError`` naming ``batch/n_points``
        or ``batch/aug_points``). A second call
        continues the same run: the optimiser's state and the schedule (read from
        ``step_count``) carry on from the last step. A non-finite loss, or gradients that
        are not finite or whose squares overflow, stop the fit as a divergence and restore
        the last good weights: those before the last recorded step's update, which
        ``step_count`` then no longer counts (after a divergence at step ``k`` of the call,
        ``result.steps == k`` and ``step_count`` has grown by ``max(k - 1, 0)``, as every
        model's ``steps_done``: docs/concepts.md, "Models"), and the optimiser's state from
        before that update (Adam's moments and step count), so that the model is the one the
        kept steps alone give and a further fit continues from it as from a checkpoint saved
        there (the batch stream and an adaptive grid's scores are not rewound).
        """
        self._check_config("fit")
        steps = check_int("steps", steps, minimum=0)
        max_seconds = check_max_seconds(max_seconds)
        callback_every = check_int("callback_every", callback_every, minimum=1)
        progress = check_bool("progress", progress)
        if callback is not None:
            check_callback("callback", callback, (self, 0), ("model", "step"))
        dat = self._check_data(data) if data is not None else None
        check_fit_memory(self.config, self.inverse_net, self.dtype, self.device)
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
        # the optimiser's state before the latest update: a divergence undoes that update's
        # weights, and with this its moments and step count too
        undo = OptimizerUndo(self.optimizer)

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
            undo.save()
            self.optimizer.step()
            self.step_count += 1
            return val if sync.active else loss  # the mean over ranks, unrounded

        def user_callback() -> None:
            # the model as a fit leaves it (evaluation mode: ready to predict), training mode
            # back for the next step (posterior() switches to evaluation mode and stays there)
            mods.eval()
            try:
                callback(self, self.step_count)
            finally:
                mods.train()

        start = self.step_count
        try:
            res = run_chunks(
                step,
                steps,
                guard,
                sync,
                progress=progress,
                desc=f"{self.config.method} {self.problem.name}",
                callback=None if callback is None else user_callback,
                callback_every=callback_every,
                max_seconds=max_seconds,
            )
        finally:
            mods.eval()  # an interrupted fit too
            release_grads(mods)  # the last step's gradients: read by no later step
        if res.message.startswith("diverged"):
            # the guard restored the weights the last recorded step started from: its update
            # (counted in step_count) is undone, so step_count names the weights the model
            # holds, as the other models' steps_done (docs/concepts.md, "Models")
            self.step_count = start + max(res.steps - 1, 0)
            if res.steps > 0:  # an update of this call was undone: Adam's state goes back too
                undo.restore()
        res.extra["sigma_r"] = float(self.log_sigma_r.detach().exp())
        return res

    # ------------------------------------------------------------------ posteriors
    def default_points(self) -> Tensor:
        """Poisson: the 201-node reference mesh, ``[201, 1]``; Burgers: a 51 x 21 (x, t) grid,
        C order, ``[1071, 2]``."""
        if self.problem.name == "poisson":
            return torch.linspace(-1, 1, 201, dtype=self.dtype, device=self.device).unsqueeze(-1)
        xs = torch.linspace(0, 1, 51, dtype=self.dtype, device=self.device)
        ts = torch.linspace(0, 1, 21, dtype=self.dtype, device=self.device)
        return torch.stack(torch.meshgrid(xs, ts, indexing="ij"), -1).reshape(-1, 2)

    @no_grad_detached("x", "z", "w", "noise")
    @own_precision()
    def posterior(
        self,
        x: ArrayLike | None = None,
        *,
        z: ArrayLike,
        w: ArrayLike,
        noise: float | Tensor = 0.0,
    ) -> GaussianPosterior:
        r"""Gaussian over :math:`u(X)` given parameters: mean :math:`B + D\mu` ``[B, N]``,
        covariance ``LowRankRootAddedDiagLinearOperator``
        :math:`s\,[(DC)(DC)^\top + \operatorname{diag}(\max(D^2\sigma^2, 10^{-12}))]
        + \text{noise}\cdot I` ``[B, N, N]``, with :math:`s` = ``variance_scale["field"]``
        (1 unless :meth:`calibrate` set it; the white ``noise`` is not scaled). The floor
        :math:`10^{-12}` only acts next to the Dirichlet boundary, where :math:`D \approx 0`.

        ``x`` ``[N, dim_x]`` (``[N]`` in 1-D; default :meth:`default_points`); ``z`` ``[dim_z]`` or
        ``[B, dim_z]``; ``w`` ``[dim_w]`` or ``[B, dim_w]``; a single ``z`` or ``w`` (or a batch
        of one) is shared by the other's ``B`` rows, as in :meth:`parameter_posterior`.
        The diagonal part is per entry of ``x``: a point listed twice gets two entries whose
        covariance is the low-rank part alone, so a draw gives them values that differ by
        independent diagonal noise (list each point once for a field's value there).
        Parameters for which the network's mean or variances are not finite in the model's
        dtype (far outside the prior box, e.g. ``|z| ~ 1e5`` in float32) are a ``ValueError``
        naming ``z/w``. ``noise``: a white-noise variance ``>= 0`` added to the diagonal, a
        number (or a one-element tensor or array). A ``z`` or ``w`` outside the problem's prior
        box (the training range) is a ``UserWarning``: the result is an extrapolation whose
        variance neither widens nor is calibrated there. Computed without gradient (under
        ``torch.no_grad``): the mean and covariance are detached from ``x``, ``z``, ``w`` and
        the weights, and inputs that require grad are a ``UserWarning`` saying so.
        """
        warn_untrained("RandomGridNP.posterior", self.step_count)
        warn_stale_calibration(self, "RandomGridNP.posterior", "field")
        # a one-element tensor or array too, as field_marginal's noise_var (it was a TypeError)
        noise = check_real("noise", as_scalar(noise), minimum=0.0)
        p = self.problem
        xs = self.default_points() if x is None else as_points("x", x, p, self.dtype, self.device)
        zt, wt = parameter_batches(z, w, p, self.dtype, self.device)
        warn_outside_prior("RandomGridNP.posterior", p, (("z", zt), ("w", wt)))
        self._modules().eval()
        xb = xs.unsqueeze(0).expand(zt.shape[0], -1, -1)
        try:
            q = field_marginal(p, self.forward_net, xb, zt, wt, noise_var=0.0, floor=1e-12)
        except torch.linalg.LinAlgError:  # overflowing outputs: the capacitance factor failed
            q = None
        s = self.variance_scale["field"]
        post = None
        if q is not None:
            cov = LowRankRootAddedDiagLinearOperator(
                LowRankRootLinearOperator(q.cov_factor * math.sqrt(s)),
                DiagLinearOperator(q.cov_diag * s + noise),
            )
            post = GaussianPosterior(q.loc, cov, event_shape=(xs.shape[0],), validate=False)
        check_outputs(post, "z/w", "forward", self.dtype, (("z", zt), ("w", wt)), p)
        return post

    @no_grad_detached("x", "u", "w")
    @own_precision()
    def parameter_posterior(
        self, x: ArrayLike, u: ArrayLike, w: ArrayLike, *, transformed: bool = False
    ) -> GaussianPosterior:
        r"""Amortised :math:`p_\beta(z \mid u(X), w)` from field values at any point set.

        ``x`` ``[N, dim_x]`` or ``[B, N, dim_x]`` (with physical ``u``, points off the
        Dirichlet boundary, :math:`|D(x)| \ge 10^{-6}`: others are a ``ValueError`` naming
        them; ``transformed=True`` takes any point of the domain), ``u``
        ``[N]``/``[B, N]`` physical field values (``transformed=True``: already
        :math:`\tilde u = (u - B)/D`), ``w`` ``[dim_w]``/``[B, dim_w]``. Returns mean
        ``[B, dim_z]`` with a low-rank-plus-diagonal covariance ``[B, dim_z, dim_z]``,
        :math:`s\,(FF^\top + \operatorname{diag} s_\beta^2)` (GICNet's, scaled by
        :math:`s` = ``variance_scale["parameters"]``, 1 unless :meth:`calibrate` set it), a
        :class:`~bayesphys.GaussianPosterior` with ``export_name="z"``: its
        ``to_inference_data`` names the variable ``z`` (the field's :meth:`posterior` exports
        ``u``). GICNet's dense kernel weights ``[B, channels, M, N]`` (``M`` latent nodes)
        that cannot fit in memory are a ``MemoryError`` naming ``x``: pass fewer sets or points
        at a time. Field values for which GICNet's mean or variances are not finite in the
        model's dtype (e.g. ``|u| ~ 1e25`` in float32) are a ``ValueError`` naming ``u/w``.
        A ``w`` outside the problem's prior box ``[w_low, w_high]`` (the training range) is a
        ``UserWarning``. Computed without gradient, as :meth:`posterior` (inputs that require
        grad are a ``UserWarning``).
        """
        warn_untrained("RandomGridNP.parameter_posterior", self.step_count)
        warn_stale_calibration(self, "RandomGridNP.parameter_posterior", "parameters")
        p = self.problem
        transformed = check_bool("transformed", transformed)
        xt, ut, wt = inverse_inputs(x, u, w, transformed, p, self.dtype, self.device)
        warn_outside_prior("RandomGridNP.parameter_posterior", p, (("w", wt),))
        self._modules().eval()
        try:
            q = self.inverse_net(xt, ut, wt)
        except torch.linalg.LinAlgError:  # overflowing outputs: the capacitance factor failed
            q = None
        s = self.variance_scale["parameters"]
        post = None
        if q is not None:
            cov = LowRankRootAddedDiagLinearOperator(
                LowRankRootLinearOperator(q.cov_factor * math.sqrt(s)),
                DiagLinearOperator(q.cov_diag * s),
            )
            post = GaussianPosterior(
                q.loc, cov, event_shape=(p.dim_z,), validate=False, export_name="z"
            )
        ulabel = "u" if transformed else "(u - B)/D"  # what the network read
        check_outputs(post, "u/w", "inverse (GICNet)", self.dtype, ((ulabel, ut), ("w", wt)), None)
        return post

    @own_precision()
    def calibrate(
        self, x: ArrayLike, u: ArrayLike, z: ArrayLike, w: ArrayLike, **kwargs: Any
    ) -> dict[str, float]:
        r"""Fit the variance multipliers on validation instances with reference solutions
        (``x [N, dim_x]``, ``u [V, N]``, ``z [V, dim_z]``, ``w [V, dim_w]``); see
        :func:`~bayesphys.neural_process.calibrate.calibrate_variance`. Means are unchanged.
        Each call fits on the unscaled variances (the multipliers in force are set aside) and
        replaces them, so a second call with the same arguments gives the same multipliers,
        never a scale on top of a scale (``parameters=False`` keeps the parameter one).

        The multipliers are fitted to the current weights: a later :meth:`fit` keeps them
        (they are saved with the model), and :meth:`posterior` / :meth:`parameter_posterior`
        then warn (``UserWarning``) that they were made for other weights until
        ``calibrate`` is called again."""
        out = calibrate_variance(self, x, u, z, w, **kwargs)
        fitted = ("field", "parameters") if kwargs.get("parameters", True) else ("field",)
        self._calibrated_at.update(dict.fromkeys(fitted, self.step_count))
        return out

    # ------------------------------------------------------------------ I/O
    def __repr__(self) -> str:
        return (
            f"RandomGridNP(problem={self.problem.name!r}, method={self.config.method!r}, "
            f"device={self.device}, dtype={str(self.dtype).replace('torch.', '')})"
        )

    def state(self) -> dict[str, Any]:
        """Weights, optimiser state, step count, batch stream, GICNet grid and variance scales
        (CPU tensors): what :meth:`load` restores. A snapshot: its tensors are copies, which
        later training leaves as they were (``state_dict`` shares the live weights and Adam's
        moments, so a kept ``state()`` followed every further step)."""
        return model_state(self)

    def save(self, path: str | Path) -> Path:
        """Write config, weights, optimiser and RNG state (``torch.save``) to the file ``path``
        (an existing folder is refused with ``IsADirectoryError``, as every model's save)."""
        check_save_path(path)
        self._check_config("save")  # a checkpoint load() could not read is never written
        cfg = checkpoint_settings(self.problem, self.config, self.dtype, self.seed)
        return save_checkpoint(path, kind=KIND, config=cfg, state=self.state())

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: DeviceLike = None) -> RandomGridNP:
        """Rebuild a model saved by :meth:`save` (predictions round-trip exactly; so does
        further training when loaded on the kind of device it was saved from: a CPU and a CUDA
        random stream differ, so across kinds the batch generator starts afresh from the seed)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind=KIND, map_location="cpu")
        c, st, cfg, scales = read_checkpoint(ck, path)
        with rebuilding(path, KIND):
            cfg["gic"] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["gic"].items()}
            problem = saved_problem(ck, path, c)
            with streams_kept(device):  # an unseeded build must not advance the caller's
                m = cls(
                    problem,
                    config=RGNPConfig(**cfg),
                    device=device,
                    dtype=c["dtype"],
                    seed=c["seed"],
                )
            m.step_count, saved_scales = restore_state(
                st, scales, m._modules(), m.optimizer, m.generator, m.grid
            )
            m.variance_scale.update(saved_scales)
            m._calibrated_at = saved_calibration_step(st, m.step_count, m.variance_scale)
        m._modules().eval()
        return m

    @property
    def steps_done(self) -> int:
        """Training steps taken so far (:attr:`step_count`), under the name the other models
        use (``ProbConserv``, ``MetaFlowMatching``, ``GPPDESolver``): the ``step`` a fit's
        callback receives, the updates of the weights the model holds (a divergence's
        restore undoes one, which it then no longer counts)."""
        return self.step_count

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameter counts of the forward and inverse networks."""

        def cnt(m):
            return sum(p.numel() for p in m.parameters() if p.requires_grad)

        return {"forward": cnt(self.forward_net), "inverse": cnt(self.inverse_net)}
