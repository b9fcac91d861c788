r"""Bayesian inference of glioma growth from one segmented scan (Fisher-Kolmogorov model).

Unknowns :math:`\theta = (\log D_w, \log\rho, x_0, y_0[, z_0])` (diffusivity in white matter,
proliferation rate, focus in mm; with ``n_foci = K > 1`` the :math:`K` foci follow one after
another, ``[2 + K d]``, and :math:`c_0` is the maximum of the focal Gaussians,
:mod:`bayesphys.odil.foci`); :math:`D_g = D_w / r` with known ratio :math:`r`, time horizon
:math:`T` known (a single scan fixes the parameters only up to the time scale; GliODIL fixes
:math:`T` the same way). The tumour-cell map :math:`c(T)` solves the FK equation
(:mod:`bayesphys.problems.fisher_kolmogorov`) from :math:`c_0 = 0.5\exp(-|x-x_0|^2/2w^2)`.

**Likelihood.** Segmentation labels (2 = T1Gd core, 1 = FLAIR edema) are thresholds of
:math:`c(T)` observed with Gaussian jitter :math:`\sigma_s` (probit, Lipkova et al. 2019 use a
sigmoid): for each threshold :math:`\theta_k\in\{\theta_{down},\theta_{up}\}` and brain voxel
:math:`i`, :math:`P(\mathrm{label}_i \ge k) = \Phi((c_i - \theta_k)/\sigma_s)`. Written as a
residual :math:`r = \sqrt{-2\log\Phi(s(c_i-\theta_k)/\sigma_s)}` (:math:`s=\pm1`) so the loss stays
:math:`\tfrac12\lVert r\rVert^2` and Gauss-Newton applies; the residual is linear in :math:`c`
far from the threshold (the hinge of GliODIL's loss) and smooth near it. Optional PET:
:math:`(s_{pet} c_i - \mathrm{pet}_i)/\sigma_{pet}` on lesion voxels.

**Correlated noise / model error.** Voxel-iid likelihoods are overconfident (anchor: ~4 sd off):
segmentation and model errors are spatially correlated over a length :math:`\lambda`. We count
each block of :math:`\kappa = (\lambda/h)^d` voxels as one observation, i.e. divide every data
residual by :math:`\sqrt\kappa` (the likelihood of a field with correlation area :math:`\lambda^d`
evaluated on a grid of cell :math:`h^d`). :math:`\lambda` (``noise_corr_mm``) is calibrated on
simulated patients (benchmark B3). An optional model-error sd :math:`\sigma_m = \alpha h`
(``model_error`` = :math:`\alpha`, per mm) is added in quadrature to the data sds
(:math:`\sigma_s \to \sqrt{\sigma_s^2 + \sigma_m^2}`, PET: :math:`\sigma_{pet} \to
\sqrt{\sigma_{pet}^2 + s_{pet}^2\sigma_m^2}`): the error of a coarse grid's forward model
(cell-averaged tissue, the stencil) that grows with the cell size (the anchor's B6: "SDs
inflate to cover the drift").

**Fit and posterior.** Reduced-space ODIL: the discrete FK scheme is imposed exactly by the
explicit forward solver, the loss over :math:`\theta` is minimised by Levenberg-Marquardt with a
dense forward-mode Jacobian (:func:`bayesphys.odil.minimize`), started from the best point of a
small log-grid of :math:`(D_w,\rho)`. The Laplace posterior is :math:`\mathcal N(\theta^*,
H^{-1})` (``H`` the exact Hessian of the loss, or the Gauss-Newton :math:`J^\top J`); field draws
are forward solves of :math:`\theta` draws. Identifiable combinations: infiltration length
:math:`\ell=\sqrt{D_w/\rho}` and front speed :math:`v = 2\sqrt{D_w\rho}`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_real
from .._device import ArrayLike, as_tensor, check_finite_input
from .._model import FitResult, autograd_on
from ..problems.fisher_kolmogorov import _fk_forward, stable_steps
from ..problems.glioma import check_thresholds
from ._focal import FOCAL_WIDTH_MM, _multifocal
from ._glioma_fit import fit_reduced, hessian_covariance
from ._glioma_likelihood import data_residuals, tangent_jacobian
from ._glioma_setup import check_built, check_step_count, init_glioma, recropped
from .glioma_inputs import checked_prior
from .glioma_io import glioma_from_patient, load_glioma, save_glioma
from .glioma_posterior import GliomaPosteriorMixin
from .problem import DiscreteProblem

__all__ = ["GliomaModel"]


class _ThetaResiduals:
    """The residuals of :meth:`GliomaModel.problem`, ``(fields, params) ->
    model.residuals(params["theta"])``: a class, not a lambda, so that the problem pickles
    (it failed with "Can't pickle local object") and a deep copy of it holds a copy of the
    model (the lambda, copied as is, kept the original model)."""

    def __init__(self, model: GliomaModel) -> None:
        self.model = model

    def __call__(self, fields: dict[str, Tensor], params: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model.residuals(params["theta"])


class GliomaModel(GliomaPosteriorMixin):
    r"""Fisher-Kolmogorov glioma model with a Laplace posterior (module docstring).

    Parameters
    ----------
    wm, gm
        white/grey-matter probability maps ``[*grid]`` (``d`` = 2 or 3 axes), each in
        [0, 1] and ``wm + gm <= 1`` per voxel (CSF's probability is the rest; up to 0.05 over
        is taken as rounding).
    labels
        segmentation ``[*grid]`` with values 0 (none), 1 (FLAIR edema), 2 (T1Gd core).
        A lesion on the edge of the scan is warned of (``UserWarning``): the model's boundary
        is closed there (no flux), so a volume cropped through the tumour holds it back.
    spacing
        voxel size in mm: one number, or one per axis when all are equal (anisotropic
        voxels, e.g. 1 x 1 x 3 mm, are refused: the stencil is isotropic; resample the scan
        first). Positions (``focus_init``, the fitted foci) are in mm from the corner of voxel
        0 along the array's axes: the centre of voxel ``i`` is at ``(i + 0.5) * spacing``, not
        at the scanner (world) coordinates of a NIfTI affine.
    th_up, th_down
        the T1Gd / FLAIR thresholds of :math:`c`.
    t_end
        days from the focus to the scan.
    dg_ratio
        :math:`D_w/D_g`.
    pet
        optional PET map ``[*grid]``, modelled as ``pet_scale * c + N(0, pet_sigma^2)`` on
        lesion voxels.
    seg_sigma
        :math:`\sigma_s`.
    noise_corr_mm
        correlation length :math:`\lambda` of the data errors in mm (default 4 mm, calibrated
        in benchmark B3; at least one voxel is used).
    model_error
        :math:`\alpha` (per mm, ``>= 0``, default 0): the forward model's error in
        :math:`c` has sd :math:`\sigma_m = \alpha h`, added in quadrature to ``seg_sigma`` (and,
        times ``pet_scale``, to ``pet_sigma``). It grows with the voxel size: tissue maps and
        the stencil of a coarse grid misplace the front by a fraction of a cell. 0 trusts the
        solver as exact (data simulated on the fitted grid). On data simulated at 1 mm and
        fitted at 4 mm it widens the posterior but does not calibrate it
        (``benchmarks/odil_resolution.py``, docs/odil_notes.md); the joint ODIL fit
        (:meth:`fit_odil`, a soft PDE) does better there.
    d_max
        upper bound of :math:`D_w` used to fix the stable explicit time step.
    time_scheme
        ``"strang"`` (default: exact logistic reaction half-steps around an explicit
        diffusion step, :func:`~bayesphys.problems.fisher_kolmogorov.fk_forward`) or ``"euler"``
        (explicit Euler, the scheme before 2026-11-29; checkpoints without the key load with it).
        Same cost and stability limit; at 4 mm and 32 steps Strang's error in :math:`c(T)` is
        about 20x smaller.
    prior
        ``{"log_dw": (mean, sd), "log_rho": (mean, sd), "focus_sd": mm}`` (every focus's
        prior is centred on the centroid of the core voxels, label 2, or of the whole lesion,
        labels >= 1, when there is no core); missing keys take the defaults
        (:data:`~bayesphys.odil.glioma_inputs.DEFAULT_PRIOR`), also in a dict assigned to
        ``config["prior"]`` later.
    focus_init
        optional focus guess (mm) ``[d]``, or ``[n_foci, d]``; each must lie in the brain.
        Default: the core centroid (one focus) or k-means centres of the core voxels (the
        lesion's, when there is no core).
    n_foci
        number of focal seeds :math:`K` (GliODIL's multi-focal tumours); the prior of each
        focus is the same. :func:`~bayesphys.odil.select_n_foci` chooses :math:`K` by evidence.
    crop_margin_mm
        the model is solved on the lesion's bounding box grown by this margin;
        ``None`` = the whole grid. Fields returned by :meth:`posterior` are on the whole grid
        (zero outside the crop).
    crop_scale
        if given, GliODIL's crop instead: the lesion's bounding box scaled by this
        factor about its centre (GliODIL's ``trim_scale = 1.5``), clipped to the grid.
    device
        where the model lives (``None``: the CPU; ``"auto"``: CUDA when present).

    Notes
    -----
    Scalar settings are checked at construction (``TypeError`` / ``ValueError`` naming the
    argument; a 0-d tensor or array counts as its number): finite
    ``0 < th_down < th_up < 1``; ``spacing``, ``t_end``, ``dg_ratio``, ``pet_scale``,
    ``pet_sigma``, ``seg_sigma``, ``noise_corr_mm``, ``d_max`` finite and ``> 0``; ``n_foci``
    an int ``>= 1``; ``crop_margin_mm`` ``None`` or ``>= 0``; ``crop_scale`` ``None`` or
    ``>= 1``; ``seed`` ``None`` or an int; prior sds ``> 0``;
    ``dtype`` float32 or float64 (half precision is refused: the fit's linear algebra has none);
    ``wm``, ``gm`` finite probabilities in [0, 1] whose sum is at most 1.05. Lengths are in
    mm and times in days: a ``spacing`` that makes the scan narrower than the focus (3 mm; a
    voxel size in metres) or voxels wider than 30 mm (micrometres: the focus falls between
    the cell centres) and a forward solve of more than 200 000 explicit steps (``t_end`` in
    seconds) are refused (``ValueError`` naming the settings and their units). The settings
    read from ``config``
    at every use (the thresholds, ``seg_sigma``, ``pet_sigma``, ``pet_scale``, ``noise_corr_mm``,
    ``model_error``) are checked there the same way, a value assigned later included
    (``ValueError`` naming ``config['...']``). A ``theta`` passed to :meth:`forward`,
    :meth:`residuals`, :meth:`loss`, :meth:`jacobian`, :meth:`foci` or
    :meth:`initial_state` must have ``2 + n_foci * d`` entries.
    """

    kind = "bayesphys.odil.GliomaModel"

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(
        self,
        wm: Any,
        gm: Any,
        labels: Any,
        *,
        spacing: float = 1.0,
        th_up: float = 0.6,
        th_down: float = 0.25,
        t_end: float = 100.0,
        dg_ratio: float = 10.0,
        pet: Any = None,
        pet_scale: float = 0.75,
        pet_sigma: float = 0.05,
        seg_sigma: float = 0.05,
        noise_corr_mm: float = 4.0,
        model_error: float = 0.0,
        d_max: float = 1.0,
        time_scheme: str = "strang",
        prior: dict | None = None,
        focus_init: Any = None,
        n_foci: int = 1,
        crop_margin_mm: float | None = 24.0,
        crop_scale: float | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int | None = None,
    ) -> None:
        init_glioma(
            self,
            wm,
            gm,
            labels,
            spacing=spacing,
            th_up=th_up,
            th_down=th_down,
            t_end=t_end,
            dg_ratio=dg_ratio,
            pet=pet,
            pet_scale=pet_scale,
            pet_sigma=pet_sigma,
            seg_sigma=seg_sigma,
            noise_corr_mm=noise_corr_mm,
            model_error=model_error,
            d_max=d_max,
            time_scheme=time_scheme,
            prior=prior,
            focus_init=focus_init,
            n_foci=n_foci,
            crop_margin_mm=crop_margin_mm,
            crop_scale=crop_scale,
            device=device,
            dtype=dtype,
            seed=seed,
        )

    # -- model ------------------------------------------------------------------------------
    def _theta(self, theta: Any) -> Tensor:
        """``theta`` as a tensor ``[2 + K d]`` (a wrong length failed in a reshape, naming no
        argument). Tensors are passed through unchanged (autograd and ``torch.func``
        transforms see the same tensor); other array-likes are converted to the model's dtype."""
        if not isinstance(theta, Tensor):
            theta = as_tensor("theta", theta, dtype=self.dtype, device=self.device)
        elif theta.is_complex() or theta.dtype == torch.bool:  # failed inside torch.arange
            raise TypeError(f"theta: expected real values, received {theta.dtype}")
        elif not theta.is_floating_point():  # integers: D_w = exp(0) = 1 in int64 arithmetic
            theta = theta.to(self.dtype)
        p = 2 + self.n_foci * self.ndim
        if theta.shape != (p,):
            raise ValueError(
                f"theta: expected shape ({p},) = {self.param_names}, received {tuple(theta.shape)}"
            )
        return theta

    def full(self, c: ArrayLike) -> Tensor:
        """Embed a cropped field ``[..., *crop]`` into the whole grid ``[..., *full]`` (zeros);
        ``c`` a tensor, or an array or list converted to the model's dtype and device (a list
        failed with ``AttributeError``)."""
        if not isinstance(c, Tensor):
            c = as_tensor("c", c, dtype=self.dtype, device=self.device, finite=False)
        if tuple(c.shape[c.ndim - self.ndim :]) != self.shape:
            raise ValueError(
                f"c: expected a field [..., *{self.shape}] on the crop, received {tuple(c.shape)}"
            )
        out = torch.zeros(
            (*c.shape[: c.ndim - self.ndim], *self.full_shape), dtype=c.dtype, device=c.device
        )
        out[(..., *self.crop)] = c
        return out

    def forward(self, theta: Tensor, t_end: float | None = None) -> Tensor:
        r"""Tumour-cell map :math:`c(T)` on the crop ``[*crop]`` for :math:`\theta` ``[2 + K d]``
        (``K`` foci) (differentiable); :meth:`full` embeds it in the whole grid. ``t_end`` (days, >=
        0; 0 = the initial state) defaults to the scan time; one whose solve needs more than
        200 000 explicit steps (e.g. seconds) is a ``ValueError``. A ``theta`` with a NaN or
        infinite entry is a ``ValueError`` (not tested under a :mod:`torch.func` transform, whose
        wrapped values cannot be read)."""
        check_built(self, "forward")
        theta = self._theta(theta)
        check_finite_input("theta", theta)  # the map was NaN, silently
        return self._forward(theta, t_end)

    def _forward(self, theta: Tensor, t_end: float | None = None) -> Tensor:
        """:meth:`forward` without the test of ``theta``'s values, for the model's own solves
        (the loss at a sampler's or optimiser's trial point: a non-finite one gives a
        non-finite loss that they reject, where an error would stop them)."""
        check_built(self, "forward")
        cfg = self.config
        theta = self._theta(theta)
        if t_end is not None:
            t_end = check_real("t_end", t_end, minimum=0.0)
        t = cfg["t_end"] if t_end is None else t_end
        steps = self.steps
        if t_end is not None:
            steps = stable_steps(t, cfg["d_max"], cfg["spacing"], self.ndim)
            # a horizon in seconds ran millions of steps per solve (per draw in posterior)
            check_step_count(steps, t_end=t, d_max=cfg["d_max"], spacing=cfg["spacing"])
        c0 = self.initial_state(theta)
        return _fk_forward(
            c0,
            self.faces,
            torch.exp(theta[0]),
            torch.exp(theta[1]),
            t_end=t,
            steps=steps,
            spacing=cfg["spacing"],
            tissue=self._brain,
            scheme=cfg.get("time_scheme", "euler"),
            # steps are sized for d_max (stable_steps); fit reports a D_w above it
            check_stability=False,
        )

    def foci(self, theta: Tensor | None = None) -> Tensor:
        """The foci ``[n_foci, d]`` (mm) of ``theta``: a view of a given ``theta``; of the
        fitted one (the default) a copy, so that an edit of it leaves the model alone."""
        if theta is None:
            self._require_fit()
            theta = self.theta.clone()
        theta = self._theta(theta)
        return theta[2:].reshape(self.n_foci, self.ndim)

    def initial_state(self, theta: Tensor) -> Tensor:
        r""":math:`c_0` on the crop ``[*crop]``: the maximum of the focal Gaussians (the focal
        Gaussian itself for one focus; differentiable in the foci). A NaN ``theta`` gives a
        NaN state (the loss at a NaN trial point stays NaN, see :meth:`loss`)."""
        return _multifocal(
            self.shape,
            self.foci(theta),
            self.config["spacing"],
            origin=self.origin,
            width=FOCAL_WIDTH_MM,
            finite=False,
        )[0]

    def jacobian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        r"""Residual vector ``r [m]`` and its Jacobian ``[m, 2 + K d]`` by the tangent-linear FK
        model (one batched forward pass instead of ``2 + K d`` forward-mode AD passes); a ``theta``
        with a NaN or infinite entry is a ``ValueError``, as in :meth:`forward`."""
        check_built(self, "jacobian")
        check_finite_input("theta", self._theta(theta))
        return tangent_jacobian(self, theta)

    def _setting(self, key: str, *, strict: bool = True) -> float:
        """``config[key]`` checked at use as the constructor checks it: finite and ``> 0``
        (``strict``) or ``>= 0``. ``config`` is read at every use, and a value assigned after
        construction went in unchecked: a negative ``seg_sigma`` or ``model_error`` counted
        as positive (``hypot``), a zero ``seg_sigma`` gave an infinite loss, NaN a NaN one."""
        default = {"model_error": 0.0}.get(key)  # checkpoints made before the key
        value = self.config.get(key, default) if default is not None else self.config[key]
        return check_real(f"config[{key!r}]", value, minimum=0.0, strict=strict)

    def _thresholds(self) -> tuple[float, float]:
        """``(th_down, th_up)`` of ``config``, checked at use as at construction (``0 <
        th_down < th_up < 1``): thresholds assigned out of order were fitted silently."""
        try:
            th_up, th_down = check_thresholds(self.config["th_up"], self.config["th_down"])
        except (TypeError, ValueError) as err:
            raise type(err)(f"config {err}") from None
        return th_down, th_up

    def _noise(self) -> tuple[float, float, float]:
        r"""``(seg sd, PET sd, kappa)``: the data sds with the model error
        :math:`\sigma_m = \alpha h` added in quadrature, and the number of voxels
        :math:`\kappa = (\lambda/h)^d` counted as one observation. The settings are checked
        (:meth:`_setting`): ``seg_sigma``, ``pet_sigma``, ``pet_scale``, ``noise_corr_mm``
        ``> 0``, ``model_error >= 0``, all finite."""
        h = self.config["spacing"]
        sig_m = self._setting("model_error", strict=False) * h
        seg = math.hypot(self._setting("seg_sigma"), sig_m)
        pet = math.hypot(self._setting("pet_sigma"), self._setting("pet_scale") * sig_m)
        # at least one voxel (a length below the voxel size counted each voxel as a fraction
        # of an observation); config keeps the value given, so a checkpoint holds it exactly
        corr = max(self._setting("noise_corr_mm"), h)
        return seg, pet, (corr / h) ** self.ndim

    def _data_residuals(self, c: Tensor) -> dict[str, Tensor]:
        """Data residuals at the crop field ``c [*crop]``: ``seg1``, ``seg2`` (brain voxels) and
        ``pet`` (lesion voxels, with a PET map)."""
        return data_residuals(self, c)

    def _prior(self) -> dict:
        """``config["prior"]`` checked, with the defaults for missing keys, as the constructor
        and :meth:`load` read it (an assigned ``{"focus_sd": 5.0}`` failed with a bare
        ``KeyError: 'log_dw'`` in the fit, while its checkpoint loaded with the defaults)."""
        try:
            return checked_prior(self.config["prior"])
        except (TypeError, ValueError) as err:
            raise type(err)(f"config {err}") from None

    def _prior_residuals(self, theta: Tensor) -> Tensor:
        pr = self._prior()
        return torch.cat(
            [
                ((theta[0] - pr["log_dw"][0]) / pr["log_dw"][1]).reshape(1),
                ((theta[1] - pr["log_rho"][0]) / pr["log_rho"][1]).reshape(1),
                (theta[2:] - self.centroid.repeat(self.n_foci)) / pr["focus_sd"],
            ]
        )

    def residuals(self, theta: Tensor) -> dict[str, Tensor]:
        r"""Weighted residuals (data + prior) at ``theta [2 + K d]``; loss
        :math:`\tfrac12\sum_k\lVert r_k\rVert^2`. Keys: ``seg1``, ``seg2`` (probit residuals,
        one per brain voxel of the solver's crop, ``[n_brain]``: fewer than the whole grid's
        brain voxels when ``crop_margin_mm`` or ``crop_scale`` crops it), ``pet`` (lesion
        voxels, ``[n_lesion]``, with a PET map) and ``prior`` (``[2 + K d]``:
        :math:`(\theta_j - m_j)/s_j`)."""
        theta = self._theta(theta)
        out = self._data_residuals(self._forward(theta))
        out["prior"] = self._prior_residuals(theta)
        return out

    def problem(self) -> DiscreteProblem:
        """The reduced discrete problem over ``theta`` (no field unknowns)."""
        return DiscreteProblem(
            {},
            {"theta": self._theta0()},
            _ThetaResiduals(self),
            device=self.device,
            dtype=self.dtype,
        )

    def _theta0(self) -> Tensor:
        return torch.cat(
            [
                torch.tensor(
                    [self._prior()["log_dw"][0], self._prior()["log_rho"][0]],
                    dtype=self.dtype,
                    device=self.device,
                ),
                self.focus_init,
            ]
        )

    def loss(self, theta: Tensor) -> Tensor:
        r"""Reduced loss ``[]``: :math:`\tfrac12 \lVert r(\theta)\rVert^2` over all
        :meth:`residuals` at ``theta [2 + K d]`` (``K = n_foci``)."""
        r = torch.cat([v.reshape(-1) for v in self.residuals(theta).values()])
        return 0.5 * (r * r).sum()

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        data: Any = None,
        *,
        steps: int = 30,
        grid: int = 4,
        hessian: str = "exact",
        progress: bool = True,
        max_seconds: float | None = None,
    ) -> FitResult:
        r"""Multi-start grid over :math:`(D_w,\rho)` then Levenberg-Marquardt; sets the Laplace
        posterior.

        ``hessian``: ``"exact"`` (autograd Hessian of the reduced loss, :math:`(2+Kd)^2` entries
        for ``K = n_foci``; falls back to Gauss-Newton, with a ``RuntimeWarning``, if not
        positive definite) or ``"gn"`` (:math:`J^\top J`).
        ``data`` must be ``None`` (the data are given at construction; anything else was
        silently ignored). ``steps >= 0`` LM steps after
        a ``grid x grid`` start search (``grid >= 1``; 1 = the prior mean). Returns a
        :class:`FitResult` whose ``extra`` holds the estimates and the Laplace sds. A second
        call starts again from the start search (it does not refine the previous estimate)
        and replaces the posterior; a :meth:`recalibrate` map of the previous one is dropped
        (a ``UserWarning`` says so: recalibrate again). ``max_seconds`` (``None`` or ``> 0``): a
        wall-time budget for the LM steps (:func:`~bayesphys.odil.minimize`'s; the start search and
        the Laplace covariance are not counted): a fit it stops has ``converged=False``, says so in
        ``message``, and sets the posterior at its last accepted iterate.

        ``config`` is read at every use, except the settings the crop, tissue faces, time
        steps and foci are built from (``spacing``, ``t_end``, ``dg_ratio``, ``d_max``,
        ``crop_margin_mm``, ``crop_scale``, ``n_foci``): one of them assigned after
        construction is refused by name here, by :meth:`posterior`, :meth:`forward`,
        :meth:`fit_odil`, :meth:`recrop` and :meth:`save` (build a new model with it).
        """
        check_built(self, "fit")
        return fit_reduced(
            self,
            data,
            steps=steps,
            grid=grid,
            hessian=hessian,
            progress=progress,
            max_seconds=max_seconds,
        )

    def laplace_covariance(self, hessian: str = "exact") -> Tensor:
        r"""Laplace covariance ``[2 + K d, 2 + K d]`` (``K = n_foci``) at the fitted
        :math:`\theta^*` (:meth:`fitted_theta`: after :meth:`recalibrate`, the mode the map
        shifted, not ``theta``): inverse of the exact Hessian of the loss or of the Gauss-Newton
        matrix :math:`J^\top J`. An exact Hessian that is not positive definite (no local
        minimum at :math:`\theta^*`) falls back to :math:`J^\top J` with a ``RuntimeWarning``.
        The exact Hessian is taken with autograd on, also inside the caller's
        ``torch.no_grad()`` or ``torch.inference_mode()``, and row by row under
        ``torch.autograd.set_detect_anomaly(True)`` (the same values)."""
        return hessian_covariance(self, hessian)

    def fit_odil(
        self,
        *,
        nt: int = 16,
        sigma_pde: float = 1e-3,
        steps: int = 8,
        cg_maxiter: int = 400,
        progress: bool = True,
        linear_solver: str = "cg",
        max_seconds: float | None = None,
    ) -> FitResult:
        r"""Joint ODIL refinement: unknowns :math:`c` on ``nt`` time levels x the crop plus
        :math:`\theta`, residuals = Crank-Nicolson FK residual :math:`/\sigma_{pde}` (the PDE is a
        soft constraint: :math:`\sigma_{pde}` is the model-error scale, in :math:`c` per day)
        + the same data and prior terms, :math:`c(0) = c_0(x_0)` imposed exactly. Started from
        the model's fitted mode (:meth:`fitted_theta`, any :meth:`recalibrate` map undone;
        call :meth:`fit` first) and the forward solve there, minimised by Levenberg-Marquardt
        (damped Gauss-Newton) with matrix-free CG. After :meth:`fit` that mode is the reduced
        fit's; after an earlier ``fit_odil`` it is that call's estimate, so a second call
        continues the refinement from it (with a fresh damping and its field restarted from
        the forward solve) instead of starting again from the reduced fit (call :meth:`fit`
        again for that);
        the :math:`\theta` marginal covariance is the inverse Schur complement of the
        Gauss-Newton matrix (:func:`~bayesphys.odil.theta_covariance`, CG solves with the field
        block). ``linear_solver="sparse"`` replaces both CG solves by sparse LU on the Jacobian
        assembled by column colouring (:mod:`~bayesphys.odil.sparse`; a float64 model). Sets
        ``theta``/``theta_cov`` and ``result``; returns the :class:`FitResult` (``extra`` holds
        the CG iteration counts of the Schur solves). If ``steps >= 1`` were taken, none was
        accepted and the start is not a minimum, the model keeps its previous ``theta`` /
        ``theta_cov`` / ``result`` (a ``RuntimeWarning`` says so; the returned result has
        ``extra["kept_previous"]``); ``steps=0`` sets the joint posterior at the start (the
        fitted mode and its forward trajectory: the reduced fit's after :meth:`fit`), as
        :meth:`fit` with ``steps=0`` does at its start. A posterior it sets drops a
        :meth:`recalibrate` map (a ``UserWarning`` says so: recalibrate again); a kept one
        keeps it.
        A :math:`\theta` covariance that cannot be formed (the Schur complement singular to
        working precision, e.g. in float32 with a small ``sigma_pde``, or with its CG solves
        cut short by ``cg_maxiter``) is a ``ValueError`` saying so, and the model keeps its
        previous posterior.
        ``progress`` (default True, as in :meth:`fit`): a progress bar of the steps on stderr.
        Inner solves that stop short of their tolerance give one ``RuntimeWarning`` per kind
        (the steps', the covariance's), worded in these arguments (raise ``cg_maxiter``).
        ``max_seconds`` (``None`` or ``> 0``): a wall-time budget for the Levenberg-Marquardt
        steps (the forward start and the Schur covariance are not counted): a fit it stops
        has ``converged=False`` and says so in ``message``; the posterior is that of its last
        accepted iterate (if none was accepted, the previous one is kept, as above).
        """
        from .glioma_odil import fit_joint_odil

        check_built(self, "fit_odil")
        return fit_joint_odil(
            self,
            nt=nt,
            sigma_pde=sigma_pde,
            steps=steps,
            cg_maxiter=cg_maxiter,
            progress=progress,
            linear_solver=linear_solver,
            max_seconds=max_seconds,
        )

    def recrop(
        self, *, crop_margin_mm: float | None = 40.0, crop_scale: float | None = None
    ) -> GliomaModel:
        """The same data, configuration and fitted posterior (with its ``result`` and any
        recalibration map) on another solver domain (e.g. a wider one than the fit's, to
        predict beyond it). Returns a new model."""
        return recropped(self, crop_margin_mm=crop_margin_mm, crop_scale=crop_scale)

    # -- persistence ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"GliomaModel(ndim={self.ndim}, grid={list(self._wm.shape)}, "
            f"spacing={self.config['spacing']:g}, n_foci={self.n_foci}, "
            f"fitted={self.theta is not None}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')})"
        )

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint that :meth:`load` restores exactly. A setting the model read at
        construction assigned afterwards (see :meth:`fit`) is refused before anything is
        written."""
        check_built(self, "save")
        return save_glioma(self, path)

    @classmethod
    def from_patient(cls, patient: dict, *, use_pet: bool = False, **kwargs: Any) -> GliomaModel:
        """A model of one patient dict as :func:`~bayesphys.problems.glioma.synthetic_patient`
        returns it (``wm``, ``gm``, ``labels``, ``spacing``, ``th_up``, ``th_down``, the
        patient's ``t_end`` and ``dg_ratio`` when it has them and, with ``use_pet``, ``pet``);
        ``kwargs`` go to the constructor (``device``, ``seed``, ...) and override the
        patient's settings."""
        return glioma_from_patient(cls, patient, use_pet=use_pet, **kwargs)

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> GliomaModel:
        """Restore a model written by :meth:`save` exactly (on ``device``, default the CPU):
        its data, settings, posterior, recalibration map and ``result`` (the fit behind the
        posterior)."""
        return load_glioma(cls, path, device=device)
