r"""Posterior side of :class:`~bayesphys.odil.GliomaModel`: estimates, Laplace draws of
:math:`\theta = (\log D_w, \log\rho, \text{foci})` ``[2 + K d]``, tumour-cell map draws and the
ArviZ export (Balcerak et al., GliODIL, arXiv 2312.05063; the posterior is ours).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, seed_or_draw, stream_seed
from .._device import as_tensor
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from ..inference_data import _Fresh, build_inference_data
from ..posterior import GaussianPosterior, SamplePosterior
from ..problems.fisher_kolmogorov import max_steps, stable_steps
from ._glioma_setup import check_built

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["GliomaPosteriorMixin"]


class GliomaPosteriorMixin:
    """Methods of :class:`~bayesphys.odil.GliomaModel` that read the fitted Laplace posterior
    (``theta [2 + K d]``, ``theta_cov [2 + K d, 2 + K d]``)."""

    def _require_fit(self) -> None:
        if self.theta is None:
            raise RuntimeError("GliomaModel: call fit() before asking for the posterior")

    def estimates(self) -> dict[str, float]:
        r"""Point estimates and sds of the Laplace posterior :math:`\mathcal N(\theta^*, \Sigma)`.

        ``dw``, ``rho``, ``ell`` :math:`= \sqrt{D_w/\rho}` and ``v`` :math:`= 2\sqrt{D_w\rho}`
        are log-normal under it: the values given are their posterior medians
        (:math:`\exp` of the log-space mean), with log-space sds ``sd_log_dw``, ``sd_log_rho``,
        ``sd_log_ell``, ``sd_log_v`` (exact: the logs are linear in :math:`\theta`). Their
        posterior means, as ``az.summary`` of :meth:`to_inference_data` reports them, are
        larger by the factor :math:`\exp(s^2/2)` (``s`` the log-space sd). The focus
        coordinates are Gaussian: mean and sd. ``foci``/``sd_foci``: ``[n_foci][d]`` lists;
        with one focus also ``x0, y0[, z0]`` and their sds ``sd_x0, ...``."""
        self._require_fit()
        th, sd = self.theta, self.theta_cov.diagonal().sqrt()
        out = {"dw": math.exp(float(th[0])), "rho": math.exp(float(th[1]))}
        if self.n_foci == 1:
            for k, name in enumerate(["x0", "y0", "z0"][: self.ndim]):
                out[name] = float(th[2 + k])
                out[f"sd_{name}"] = float(sd[2 + k])
        out["foci"] = self.foci().tolist()
        out["sd_foci"] = sd[2:].reshape(self.n_foci, self.ndim).tolist()
        out["sd_log_dw"], out["sd_log_rho"] = float(sd[0]), float(sd[1])
        out["ell"] = math.sqrt(out["dw"] / out["rho"])
        out["v"] = 2 * math.sqrt(out["dw"] * out["rho"])
        c = self.theta_cov
        out["sd_log_ell"] = 0.5 * math.sqrt(max(float(c[0, 0] + c[1, 1] - 2 * c[0, 1]), 0.0))
        out["sd_log_v"] = 0.5 * math.sqrt(max(float(c[0, 0] + c[1, 1] + 2 * c[0, 1]), 0.0))
        return out

    # -- posterior ----------------------------------------------------------------------------
    def theta_posterior(self) -> GaussianPosterior:
        r"""Laplace posterior :math:`\mathcal N(\theta^*, H^{-1})`, event ``[2 + K d]`` (``K`` foci;
        ``H`` the exact Hessian of the loss, or :math:`J^\top J` with ``hessian="gn"``, and any
        recalibration applied). Its mean and covariance are copies: an edit of them leaves the
        model's ``theta`` / ``theta_cov`` alone. It exports to ArviZ as ``theta``
        (``export_name``; :meth:`to_inference_data` of the model names each parameter)."""
        self._require_fit()
        return GaussianPosterior(self.theta.clone(), self.theta_cov.clone(), export_name="theta")

    def fitted_theta(self) -> tuple[Tensor, Tensor]:
        r"""The fitted Laplace posterior ``(theta [2 + K d], cov [2 + K d, 2 + K d])``, with any
        :meth:`recalibrate` map undone (``theta`` / ``theta_cov`` hold the recalibrated one).
        Copies: an edit of them leaves the model alone."""
        self._require_fit()
        theta, cov = self.theta.clone(), self.theta_cov.clone()
        if self.recalibration is not None:
            kw = {"dtype": cov.dtype, "device": cov.device}
            b0, s0 = (v.to(**kw) for v in self.recalibration)
            cov = cov / (s0[:, None] * s0[None, :])
            theta = theta + b0 * cov.diagonal().sqrt()
        return theta, cov

    def recalibrate(self, shift: Any, scale: Any) -> None:
        r"""Apply a recalibration map fitted on simulated patients
        (:func:`~bayesphys.odil.fit_recalibration_map`): :math:`\theta \leftarrow \theta -
        b\odot\sigma`, :math:`\Sigma \leftarrow S\Sigma S`, :math:`S = \operatorname{diag}(s)`,
        with :math:`\sigma` the fitted sds. ``shift`` (:math:`b`) and ``scale`` (:math:`s > 0`)
        are scalars or ``[2 + K d]``. Correlations are kept. The map always acts on the fitted
        Laplace posterior: a second call replaces the first map instead of compounding it
        (``recalibrate(0, 1)`` restores the fit); the map in force is ``recalibration``. Call
        after :meth:`fit`: a new fit (:meth:`fit`, or :meth:`fit_odil` that sets a posterior)
        discards the map, with a ``UserWarning`` saying to call ``recalibrate`` again."""
        b, s = self._recalibration_map(shift, scale)
        theta, cov = self.fitted_theta()  # the map acts on the fitted posterior
        self.theta = theta - b * cov.diagonal().sqrt()
        self.theta_cov = s[:, None] * cov * s[None, :]
        self.recalibration = (b.clone(), s.clone())

    def _recalibration_map(self, shift: Any, scale: Any) -> tuple[Tensor, Tensor]:
        """``(shift, scale)`` of :meth:`recalibrate` as checked tensors ``[2 + K d]`` in the
        posterior's dtype and device (a loaded map is checked here too)."""
        self._require_fit()
        p = self.theta_cov.shape[0]
        kw = {"dtype": self.theta_cov.dtype, "device": self.theta_cov.device}
        # as_tensor names the argument (a string failed in torch with "invalid data type")
        b = as_tensor("shift", shift, finite=False)
        s = as_tensor("scale", scale, finite=False)
        for name, v in (("shift", b), ("scale", s)):
            if v.dtype == torch.bool or v.is_complex():
                raise TypeError(f"{name}: expected real numbers, received {v.dtype}")
        # constants of the map: ones that required grad made theta a graph node (estimates
        # warned on reading it, copy.deepcopy of the model refused it)
        b, s = b.detach().to(**kw), s.detach().to(**kw)
        b, s = (b.expand(p) if b.ndim == 0 else b), (s.expand(p) if s.ndim == 0 else s)
        for name, v in (("shift", b), ("scale", s)):
            if v.shape != (p,):
                raise ValueError(
                    f"{name}: expected a scalar or shape [{p}], received {tuple(v.shape)}"
                )
        if not bool(torch.isfinite(b).all()):
            raise ValueError("shift: expected finite values")
        if not bool((torch.isfinite(s) & (s > 0)).all()):
            raise ValueError("scale: expected positive finite values")
        return b, s

    def theta_draws(
        self, num_samples: int = 200, num_chains: int = 1, seed: int | None = 0
    ) -> Tensor:
        """Draws ``[chain, draw, 2 + K d]`` of the Laplace posterior (``num_samples``,
        ``num_chains >= 1``; ``seed`` an int, or ``None``: drawn from torch's global stream,
        as ``seed=None`` does everywhere; it read as 0 before)."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        num_chains = check_int("num_chains", num_chains, minimum=1)
        seed = seed_or_draw("seed", seed)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        return self.theta_posterior().sample((num_chains, num_samples), generator=gen)

    def posterior(
        self,
        x: Any = None,
        *,
        num_samples: int = 100,
        seed: int | None = 0,
        t_end: float | None = None,
    ) -> SamplePosterior:
        r"""Posterior of the tumour-cell map :math:`c(T)` (or at ``t_end``): forward solves of
        Laplace draws of :math:`\theta`, a :class:`SamplePosterior` with draws
        ``[1, num_samples, *grid]`` (``num_samples >= 2``). ``x`` must be ``None`` (the grid is
        the model's; anything else was silently ignored); ``t_end`` (days, >= 0) defaults to
        the scan time."""
        if x is not None:
            raise ValueError(
                "x: expected None; the posterior is on the model's own grid, received "
                f"{type(x).__name__}"
            )
        check_built(self, "posterior")  # before the draws: no solve with stale time steps
        num_samples = check_int("num_samples", num_samples, minimum=2)
        if t_end is not None:
            t_end = check_real("t_end", t_end, minimum=0.0)
        draws = self.theta_draws(num_samples, 1, seed)[0]
        self._warn_unstable_draws(draws, t_end, "posterior")
        with torch.no_grad():
            fields = self._field_draws(draws, t_end)
        return SamplePosterior(fields[None], event_ndim=self.ndim)

    def _field_draws(self, th: Tensor, t_end: float | None) -> Tensor:
        """Forward solves of the draws ``th [*lead, 2 + K d]``: maps ``[*lead, *grid]`` on the
        whole grid (0 outside the crop), each written into the result as it is solved. Stacking
        the crop maps first and embedding the stack kept two more copies of every draw's crop
        map at the peak (the list and its stack); the same values."""
        lead = tuple(th.shape[:-1])
        out = None
        for idx in np.ndindex(*lead):
            c = self._forward(th[idx], t_end)
            if out is None:
                out = torch.zeros((*lead, *self.full_shape), dtype=c.dtype, device=c.device)
            out[(*idx, *self.crop)] = c
        return out

    def to_inference_data(
        self,
        *,
        num_samples: int = 200,
        seed: int | None = 0,
        field: bool = True,
        predictive: bool | None = None,
    ) -> arviz.InferenceData | xr.DataTree:
        r"""ArviZ InferenceData: named draws ``D_w, rho, x0, y0[, z0], ell, v`` ``[chain, draw]``,
        observed labels and, if ``field``, the map ``c`` and the pointwise log likelihood of
        the thresholds ``labels [chain, draw, *grid]`` (group ``log_likelihood``: per voxel
        :math:`\sum_k \log\Phi(s_k(c_i-\theta_k)/\sigma_s)/\kappa`, the data term of the fitted
        loss; 0 outside the modelled brain voxels). A model with a PET map also exports it
        (``observed_data.pet``) and its Gaussian log likelihood ``pet [chain, draw, *grid]``
        (lesion voxels, tempered by :math:`\kappa` as in the loss; 0 elsewhere).
        ``num_samples >= 1`` draws per chain (2 chains).

        ``predictive`` (default: ``field``) adds the group ``posterior_predictive``: replicated
        observations ``labels [chain, draw, *grid]`` (int8 as ``observed_data.labels``; and
        ``pet``), one per posterior draw of :math:`c`, drawn from the fit's observation model by
        :meth:`replicate_observations` (seeded by ``seed``), with the dims of ``observed_data`` so
        ``az.plot_ppc`` works. It reuses the maps of ``field``; with ``field=False`` it costs the
        same forward solves."""
        field = check_bool("field", field)
        predictive = field if predictive is None else check_bool("predictive", predictive)
        seed = seed_or_draw("seed", seed)  # once: the draws and replicates share it
        th = self.theta_draws(num_samples, 2, seed)
        post = {
            "D_w": th[..., 0].exp(),
            "rho": th[..., 1].exp(),
            "ell": (0.5 * (th[..., 0] - th[..., 1])).exp(),
            "v": 2 * (0.5 * (th[..., 0] + th[..., 1])).exp(),
        }
        dims, coords = {}, {}
        for k, name in enumerate(["x0", "y0", "z0"][: self.ndim]):
            post[name] = th[..., 2 + k :: self.ndim]  # [chain, draw, n_foci]
            if self.n_foci == 1:
                post[name] = post[name][..., 0]
            else:
                dims[name] = ["focus"]
        if self.n_foci > 1:
            coords["focus"] = np.arange(self.n_foci)
        names = ["x", "y", "z"][: self.ndim]
        dims["labels"] = names
        coords.update(
            {
                n: (np.arange(s) + 0.5) * self.config["spacing"]
                for n, s in zip(names, self.full_shape)
            }
        )
        if field or predictive:
            self._warn_unstable_draws(th.reshape(-1, th.shape[-1]), None, "to_inference_data")
            with torch.no_grad():
                c = self._field_draws(th, None)
        if field:
            post["c"] = c
            loglik = {"labels": self._pointwise_log_likelihood(c)}
            if self._pet is not None:
                loglik["pet"] = self._pointwise_pet_log_likelihood(c)
            dims["c"] = names
        # labels take the values 0/1/2: int8 in the export (8x smaller arrays in memory; on
        # disk the float maps dominate either way)
        observed = {"labels": self.labels.to(torch.int8)}
        if self._pet is not None:
            observed["pet"] = self.pet
            dims["pet"] = names
        replicates = None
        if predictive:
            # int8 from the start: a long map of every draw (8 bytes a voxel) was made and
            # then converted
            replicates = self._replicates(c, seed, torch.int8)
        # the draw-sized maps are made for this export and held nowhere else: the export takes
        # their memory instead of a copy of each (the copies doubled its peak)
        fresh = {"c"}
        post = {k: _Fresh(v) if k in fresh else v for k, v in post.items()}
        if field:
            loglik = {k: _Fresh(v) for k, v in loglik.items()}
        if replicates is not None:
            replicates = {k: _Fresh(v) for k, v in replicates.items()}
        return build_inference_data(
            posterior=post,
            posterior_predictive=replicates,
            observed_data=observed,
            log_likelihood=loglik if field else None,
            coords=coords,
            dims=dims,
        )

    def _warn_unstable_draws(self, draws: Tensor, t_end: float | None, where: str) -> None:
        r"""Warn when draws ``[n, 2 + K d]`` have :math:`(D_w, \rho)` for which the forward
        solver's time step (sized for ``d_max`` by :func:`stable_steps`) is above the scheme's
        stability bound (:func:`max_step`): their maps oscillate or blow up (values far
        outside [0, 1]) instead of solving the model, and were returned without a word. Draws
        with a NaN rate (NaN bound) are counted and warned about on their own: their maps are
        NaN, which the comparison with the bound let through as stable."""
        cfg = self.config
        t = cfg["t_end"] if t_end is None else t_end
        steps = (
            self.steps
            if t_end is None
            else stable_steps(t, cfg["d_max"], cfg["spacing"], self.ndim)
        )
        dt = t / steps
        scheme = cfg.get("time_scheme", "euler")
        rates = draws[:, :2].detach().exp().cpu().double()
        limit = max_steps(self.faces, rates[:, 0], rates[:, 1], cfg["spacing"], scheme)
        bad = rates[:, 0][dt > limit * (1 + 1e-12)].tolist()
        n = rates.shape[0]
        n_nan = int(torch.isnan(limit).sum())
        if n_nan:
            warnings.warn(
                f"{where}: {n_nan} of {n} posterior draws have a NaN D_w or rho: their "
                "tumour-cell maps are NaN; the fit's posterior has NaN parameters (check the "
                "fit's loss and its inputs, and fit again)",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        if bad:
            warnings.warn(
                f"{where}: {len(bad)} of {n} posterior draws have D_w (up to "
                f"{max(bad):.3g}) beyond the stability bound of the forward solver's time "
                f"step, sized for d_max={cfg['d_max']:g}: their tumour-cell maps oscillate or "
                "blow up instead of solving the model; rebuild the model with a larger d_max "
                "(e.g. GliomaModel.from_patient(..., d_max=...)) and fit again",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def replicate_observations(self, c: Any, *, seed: int | None = 0) -> dict[str, Tensor]:
        r"""Replicated observations of tumour-cell maps ``c [..., *grid]`` (whole grid, e.g.
        posterior draws ``[chain, draw, *grid]``) under the fit's observation model.

        Labels: per modelled voxel :math:`i` (brain voxels of the crop) a latent
        :math:`\tilde c_i = c_i + \sigma_s\varepsilon_i`, :math:`\varepsilon_i\sim\mathcal
        N(0,1)` iid, and :math:`\tilde y_i = [\tilde c_i\ge\theta_{down}] +
        [\tilde c_i\ge\theta_{up}]`, so :math:`P(\tilde y_i\ge k) = \Phi((c_i -
        \theta_k)/\sigma_s)`: the probit threshold terms of the loss (:math:`\sigma_s` with
        any model error; the :math:`1/\kappa` tempering of the correlated-noise likelihood
        changes no voxel's marginal and is not drawn). PET, if the model has it:
        :math:`s_{pet} c_i + \sigma_{pet}\varepsilon'_i` on the observed lesion voxels of the
        crop, where the loss models it. Voxels the likelihood does not model keep the observed
        value. Returns ``{"labels": long [..., *grid]}`` (values 0/1/2) and ``"pet"`` (the
        model's dtype). ``seed``: an int, or ``None``: drawn from torch's global stream (it read
        as 0 before); same seed, same replicate; its noise
        is a stream of its own (not the normals of ``theta_draws`` with the same seed).

        Only each voxel's marginal is the likelihood's: the replicate noise is independent
        between voxels, while the likelihood of a correlated-noise fit (``noise_corr_mm``)
        tempers every voxel by :math:`1/\kappa`, so aggregates of a replicate (e.g. its lesion
        volume) are less variable than the data's; and the loss's two probit terms are a
        product, not the ordered-probit pmf drawn here (they differ by
        :math:`\Phi(b)\Phi(-a)`, negligible at the default noise)."""
        c = as_tensor("c", c, dtype=self.dtype, device=self.device)
        if c.ndim < self.ndim or tuple(c.shape[c.ndim - self.ndim :]) != self.full_shape:
            raise ValueError(
                f"c: expected maps [..., *{self.full_shape}] on the whole grid, received "
                f"{tuple(c.shape)}"
            )
        return self._replicates(c, seed_or_draw("seed", seed), torch.long)

    def _replicates(self, c: Tensor, seed: int, label_dtype: torch.dtype) -> dict[str, Tensor]:
        """:meth:`replicate_observations` of checked maps ``c [..., *grid]`` and ``seed``, the
        labels in ``label_dtype`` (``long`` there; ``int8`` for the export, which made them
        ``long`` first: 8 bytes a voxel of every draw)."""
        gen = torch.Generator(device=self.device)
        # a stream of its own: the same seed in theta_draws / posterior draws other normals
        gen.manual_seed(stream_seed(seed, "glioma-replicates"))
        seg_sd, pet_sd, _ = self._noise()
        cc = c[(..., *self.crop)]
        latent = cc + seg_sd * torch.randn(
            cc.shape, generator=gen, dtype=cc.dtype, device=cc.device
        )
        th_down, th_up = self._thresholds()
        lab = (latent >= th_down).to(label_dtype) + (latent >= th_up).to(label_dtype)
        labels = self.labels.to(label_dtype).expand(c.shape).clone()
        observed = self._labels.to(label_dtype)
        labels[(..., *self.crop)] = torch.where(self._brain > 0, lab, observed)
        out = {"labels": labels}
        if self._pet is not None:
            noise = torch.randn(cc.shape, generator=gen, dtype=cc.dtype, device=cc.device)
            pet_rep = self._setting("pet_scale") * cc + pet_sd * noise
            pet = self.pet.expand(c.shape).clone()
            pet[(..., *self.crop)] = torch.where(self._labels > 0, pet_rep, self._pet)
            out["pet"] = pet
        return out

    def _pointwise_log_likelihood(self, c: Tensor) -> Tensor:
        """Threshold log likelihood per voxel ``[..., *grid]`` of maps ``c [..., *grid]``
        (whole grid): the negative data term of the loss (``_data_residuals``) voxel by voxel."""
        seg_sd, _, kappa = self._noise()
        cc = c[(..., *self.crop)]
        ll = torch.zeros_like(cc)
        for k, th in zip((1, 2), self._thresholds()):
            sgn = (self._labels >= k).to(cc.dtype) * 2 - 1
            ll = ll + torch.special.log_ndtr(sgn * (cc - th) / seg_sd)
        return self.full(ll * (self._brain > 0).to(cc.dtype) / kappa)

    def _pointwise_pet_log_likelihood(self, c: Tensor) -> Tensor:
        r"""PET log likelihood per voxel ``[..., *grid]``:
        :math:`\log\mathcal N(\mathrm{pet}_i;\ s_{pet} c_i, \sigma_{pet}^2)/\kappa` on lesion
        voxels (the PET residual of the loss, with its normalising constant), 0 elsewhere."""
        _, pet_sd, kappa = self._noise()
        cc = c[(..., *self.crop)]
        z = (self._setting("pet_scale") * cc - self._pet) / pet_sd
        ll = -0.5 * z * z - math.log(pet_sd * math.sqrt(2 * math.pi))
        return self.full(ll * (self._labels > 0).to(cc.dtype) / kappa)
