r"""Meta-learned Gaussian process for Step 1 (gpytorch), with full predictive covariance.

One GP prior is shared by every function of a problem family; its hyperparameters, including
a deep-kernel feature map :math:`\phi_\theta(a) = [z(a),\ h_\theta(z(a))] \in \mathbb R^{d + 2}`
(:math:`z(a) = (a - lo) / (hi - lo) \in [0, 1]^2` the normalised input :math:`a = (t, x)`,
:math:`h_\theta` a tanh MLP of ``width`` to :math:`\mathbb R^d`, ``d = feat_dim``), are learned
across many training functions by maximising the summed exact marginal likelihood

.. math::  \max_\theta \sum_{f} \log \mathcal N\big(y_f \mid m_\theta \mathbf 1,
    K_\theta(X_f, X_f) + \sigma_n^2 I\big),

with :math:`k_\theta(a, b) = s^2\,k_{\mathrm{Mat\acute ern}\,5/2}(\phi_\theta(a), \phi_\theta(b))
+ s_0^2\,k_{\mathrm{RBF}}(z(a), z(b))`, both with one length scale per dimension (the RBF term
on the normalised inputs keeps a smooth fallback) and :math:`\sigma_n^2 \ge` ``noise_floor``.
At test time the GP is conditioned on one function's contexts and returns the latent
predictive :math:`\mathcal N(\mu_*, \Sigma_*)` with a **dense** :math:`\Sigma_*` ``[B, N, N]``
(float64), so the Step-2 correction is spread along the learned correlations.
"""

from __future__ import annotations

import threading

import gpytorch
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor, nn

from .._checks import check_int, check_real
from .._detached import no_grad_detached
from .anp import check_box, check_set_shapes, check_sets

__all__ = ["MetaGP"]

# gpytorch's settings (``max_cholesky_size``, ``fast_pred_var``) are class attributes: one value
# for the whole process. Two threads predicting at once restored each other's values (the
# second thread's solve ran under the defaults, and ``max_cholesky_size`` stayed at 10**6 after
# both), and a thread training meanwhile ran under the predicting thread's values. Every
# gpytorch computation here holds this lock, with the conditioning data it sets on the module
# (so one model predicts in several threads at once); a user's own gpytorch code in other
# threads is not covered.
GPYTORCH_SETTINGS_LOCK = threading.RLock()


class _Features(nn.Module):
    def __init__(self, lo, hi, width: int, out: int):
        super().__init__()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float64))
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float64))
        self.net = nn.Sequential(
            nn.Linear(2, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, out),
        )

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.lo) / (self.hi - self.lo)
        return torch.cat([z, self.net(z)], -1)


class _DKGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, lik, feats: _Features, d: int):
        super().__init__(x, y, lik)
        self.feats = feats
        self.mean_module = gpytorch.means.ConstantMean()
        self.k_deep = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=d + 2)
        )
        self.k_raw = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=2))

    def forward(self, x):
        f = self.feats(x)
        z = (x - self.feats.lo) / (self.feats.hi - self.feats.lo)
        cov = self.k_deep(f) + self.k_raw(z)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), cov)


def _check_not_wider(ref: Tensor, **tensors: Tensor) -> None:
    """``TypeError`` naming the first of ``tensors`` whose dtype is wider than the model's
    (``ref``'s): a float64 input to a model made float32 (``.float()``) failed inside torch
    with "mat1 and mat2 must have the same dtype", naming neither. A narrower one (float32
    into the float64 model) is promoted, as the class docstring says."""
    for name, v in tensors.items():
        if torch.promote_types(v.dtype, ref.dtype) != ref.dtype:
            raise TypeError(
                f"{name}: expected at most the MetaGP's precision {ref.dtype} (narrower inputs "
                f"are promoted to it), received {v.dtype} (convert it with "
                f"{name}.to({ref.dtype}), or the MetaGP with .to({v.dtype}))"
            )


class MetaGP(nn.Module):
    """Deep-kernel GP with hyperparameters shared across functions.

    Shapes: contexts ``xc [B, Nc, 2]`` (``t, x``), ``yc [B, Nc]``; targets ``xt [B, Nt, 2]``.

    Dtype: the model is built in float64 (GP linear algebra; ``ProbConserv(step1="gp")`` runs
    only in float64) and computes in its own dtype. Inputs of a narrower floating dtype
    (e.g. float32) are promoted to it, so :meth:`loss` and :meth:`predict` return
    float64 for float32 inputs (where :class:`~bayesphys.probconserv.anp.AttentiveNP`, which
    trains in float32, refuses inputs not in its own dtype); inputs wider than the model's
    dtype (float64 into a model converted with ``.float()``) are a ``TypeError`` naming them.
    """

    def __init__(
        self,
        lo: tuple[float, float],
        hi: tuple[float, float],
        width: int = 32,
        feat_dim: int = 2,
        noise_floor: float = 1e-6,
    ):
        lo, hi = check_box(lo, hi)
        width = check_int("width", width, minimum=1)
        feat_dim = check_int("feat_dim", feat_dim, minimum=1)
        noise_floor = check_real("noise_floor", noise_floor, minimum=0.0, strict=True)
        super().__init__()
        self.lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(noise_floor)
        )
        feats = _Features(lo, hi, width, feat_dim)
        x0 = torch.zeros(1, 4, 2, dtype=torch.float64)
        self.gp = _DKGP(x0, torch.zeros(1, 4, dtype=torch.float64), self.lik, feats, feat_dim)
        self.double()
        self.lik.noise = 1e-4

    def loss(self, xc: Tensor, yc: Tensor) -> Tensor:
        r"""Negative marginal log likelihood per point, averaged over the batch of functions:
        :math:`-\frac1{B N_c}\sum_b \log\mathcal N(y_b; m\mathbf 1, K_b + \sigma^2 I)` (``m``
        the constant mean, ``K_b`` the kernel on ``xc[b]``, :math:`\sigma^2` the noise) for
        contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]`` -> ``[]``: floating tensors on the model's
        device with ``B, Nc >= 1`` (:func:`~.anp.check_set_shapes`: structural checks only, no
        value is read; a ``yc`` of another shape was broadcast over the batch by gpytorch, an
        empty set gave NaN). The loss is in the model's dtype (class docstring)."""
        check_set_shapes(xc, yc, ref=self.lik.raw_noise, owner="MetaGP")
        _check_not_wider(self.lik.raw_noise, xc=xc, yc=yc)
        # under the lock: gpytorch's default settings, not another thread's predict's (and the
        # training data set here are the ones used)
        with GPYTORCH_SETTINGS_LOCK:
            # detached: an nn.Parameter as yc was registered as the module's parameter
            # "train_targets" by gpytorch's assignment, a KeyError (the attribute exists)
            self.gp.set_train_data(xc.detach(), yc.detach(), strict=False)
            self.train()
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.lik, self.gp)
            return -mll(self.gp(xc), yc).mean()

    @no_grad_detached("xc", "yc", "xt")
    def predict(self, xc: Tensor, yc: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        """Latent predictive mean ``[B, Nt]`` and dense covariance ``[B, Nt, Nt]`` (float64:
        the model's dtype, also for float32 inputs; class docstring) for contexts
        ``xc [B, Nc, 2]``, ``yc [B, Nc]`` and targets ``xt [B, Nt, 2]`` (finite floating
        tensors, refused otherwise: a NaN context gave a NaN posterior silently). Computed
        without gradient (inputs that require grad are a ``UserWarning``); the training
        objective :meth:`loss` is differentiable."""
        check_sets(xc, yc, xt, ref=self.lik.raw_noise, owner="MetaGP")
        _check_not_wider(self.lik.raw_noise, xc=xc, yc=yc, xt=xt)
        # the conditioning data live on the module (ExactGP): two threads predicting with one
        # model at once used each other's contexts (15 of 20 posteriors wrong) unless the
        # setting and the prediction are one step under the lock
        with (
            GPYTORCH_SETTINGS_LOCK,
            gpytorch.settings.fast_pred_var(False),
            gpytorch.settings.max_cholesky_size(10**6),
        ):
            # detached (as in loss): a context whose yc is an nn.Parameter failed with
            # KeyError "attribute 'train_targets' already exists"
            self.gp.set_train_data(xc.detach(), yc.detach(), strict=False)
            self.eval()
            try:
                pred = self.gp(xt)
                mean = pred.mean
                cov = pred.covariance_matrix
            finally:
                # the contexts and the caches gpytorch computed from them ([B, Nc, Nc]
                # factors) stayed on the module until its next prediction: 6.7 MB after a
                # posterior over 40 functions, kept in memory and in every pickle of the model
                self._release_conditioning_data()
        cov = 0.5 * (cov + cov.mT)
        return mean, cov

    def mean_at(self, xc: Tensor, yc: Tensor, xt: Tensor) -> Tensor:
        r"""Differentiable latent predictive mean ``[B, Nt]`` (the mean of :meth:`predict`):

        .. math::  m(a) = m_0 + K(a, X_c)\,\big(K(X_c, X_c) + \sigma_n^2 I\big)^{-1}
            (y_c - m_0 \mathbf 1)

        for contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]`` and targets ``xt [B, Nt, 2]`` (one
        function per batch entry), with the graph to the hyperparameters and the feature net
        kept (the SoftC penalty of the meta-GP differentiates it; :meth:`predict` is
        no-grad; gpytorch's own eval-mode prediction detaches its cached solve from the
        hyperparameters under its default ``detach_test_caches``). Computed from the kernel
        modules directly (a Cholesky solve of the
        ``[B, Nc, Nc]`` matrix, jitter added only if it fails), so no conditioning data are
        set on the module; under :data:`GPYTORCH_SETTINGS_LOCK` (gpytorch's settings)."""
        check_sets(xc, yc, xt, ref=self.lik.raw_noise, owner="MetaGP")
        _check_not_wider(self.lik.raw_noise, xc=xc, yc=yc, xt=xt)
        ref = self.lik.raw_noise
        xc, yc, xt = (v.to(ref.dtype) for v in (xc, yc, xt))
        gp = self.gp
        with GPYTORCH_SETTINGS_LOCK:
            lo, hi = gp.feats.lo, gp.feats.hi

            def kern(a: Tensor, b: Tensor) -> Tensor:
                za, zb = (a - lo) / (hi - lo), (b - lo) / (hi - lo)
                k = gp.k_deep(gp.feats(a), gp.feats(b)).to_dense()
                return k + gp.k_raw(za, zb).to_dense()

            m0 = gp.mean_module.constant.reshape(())
            kcc = kern(xc, xc)
            eye = torch.eye(kcc.shape[-1], dtype=kcc.dtype, device=kcc.device)
            chol = psd_safe_cholesky(kcc + self.lik.noise.reshape(()) * eye)
            alpha = torch.cholesky_solve((yc - m0)[..., None], chol)  # [B, Nc, 1]
            return m0 + (kern(xt, xc) @ alpha)[..., 0]

    def _release_conditioning_data(self) -> None:
        """Put back the placeholder conditioning data of a new model (one set of 4 zeros):
        ``set_train_data`` also drops gpytorch's prediction caches. Each :meth:`loss` and
        :meth:`predict` sets its own data first, so no result depends on what was there."""
        ref = self.lik.raw_noise
        x0 = torch.zeros(1, 4, 2, dtype=ref.dtype, device=ref.device)
        self.gp.set_train_data(x0, x0[..., 0], strict=False)
