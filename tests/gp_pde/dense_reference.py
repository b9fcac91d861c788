"""The dense Gaussian posterior a GP-HM model stands for, formed with dense inverses: the
reference of the Kronecker solves' mean, variances and draws in the tests."""

from __future__ import annotations

import torch
from torch import Tensor

from bayesphys.gp_pde._kron import face_values, kron_dense

F64 = torch.float64


def dense_posterior(m, ta: list[Tensor]) -> dict[str, Tensor]:
    r"""For a fitted :class:`~bayesphys.gp_pde.GPPDESolver` ``m`` and test axes ``ta``: the
    grid posterior :math:`\Sigma_U = (C^{-1} + \gamma S^\top S + \tau_2 \mathcal A^\top
    W_r^{-1}\mathcal A)^{-1}` ``[M, M]`` and mean ``mu`` ``[M]`` of ``U ~ N(0, C)`` given
    ``g ~ N(S U, gamma^-1 I)`` and ``0 ~ N(A U - f, tau_2^-1 W_r)``; the test-to-grid map
    ``W = K_*X C^-1`` ``[P, M]`` and the joint test covariance
    ``full = W Sigma_U W^T + K_** - K_*X C^-1 K_X*`` ``[P, P]``."""
    with torch.no_grad():
        fac = m._factors()
        eye = [torch.eye(n, dtype=F64) for n in m.shape]
        C = kron_dense([fc.C for fc in fac])
        M = C.shape[0]
        A = m.op.c0 * torch.eye(M, dtype=F64)
        for j, fc in enumerate(fac):
            A = A + m.op.coefs[j] * kron_dense([fc.D if i == j else e for i, e in enumerate(eye)])
        S = face_values(torch.eye(M, dtype=F64).reshape(M, *m.shape), m.shape).mT
        tau2 = float(m.log_tau_pde.exp())
        gam = m.config["lam_b"] * float(m.log_tau_b.exp())
        Wr = C if m.config["weighting"] == "prior" else torch.eye(M, dtype=F64)
        Ci = torch.linalg.inv(C)
        Sig = torch.linalg.inv(Ci + gam * S.T @ S + tau2 * A.T @ torch.linalg.solve(Wr, A))
        mu = Sig @ (gam * S.T @ m.g + tau2 * A.T @ torch.linalg.solve(Wr, m.f.reshape(-1)))
        Kxs = kron_dense([k.gram(xt, fc.x) for k, fc, xt in zip(m.kernels, fac, ta)])
        Kss = kron_dense([k.gram(xt, xt) for k, xt in zip(m.kernels, ta)])
        W = Kxs @ Ci
        full = W @ Sig @ W.T + Kss - Kxs @ Ci @ Kxs.T
    return {"mu": mu, "Sig": Sig, "W": W, "full": full}
