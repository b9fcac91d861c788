"""Tiny model settings shared by the tests of several packages (fast CPU fits)."""

#: GICNet settings of a tiny random-grid neural process (``RandomGridNP(..., gic=TINY_GIC)``).
TINY_GIC = dict(
    latent=12,
    channels=6,
    lift_layers=1,
    conv_layers=2,
    conv_channels=4,
    dense=(16, 8),
    trunk=8,
    trunk_layers=1,
    head=16,
    head_layers=1,
    rank=1,
    # ``gic=`` is merged into the preset's GICNet settings: pin GICNet's default shortest
    # lengthscale (the poisson RGNP preset's is 0.05) so the tiny models stay as they were
    ell_min=1e-3,
)

#: Keyword settings of a tiny Meta Flow Matching model for argument checks (fits in ms).
TINY_MFM = dict(
    width=8, layers=2, time_dim=4, fourier=4, gnn_hidden=4, gnn_layers=1, knn_k=3, points=16
)

#: Keyword settings of a small Meta Flow Matching model (``MetaFlowMatching(data, **SMALL_MFM)``).
SMALL_MFM = dict(
    width=32,
    layers=2,
    time_dim=8,
    fourier=8,
    gnn_hidden=8,
    gnn_layers=2,
    knn_k=5,
    points=32,
    pops_per_step=2,
)


def tiny_rgnp(problem: str = "poisson", **kw):
    """A tiny ``RandomGridNP`` (seed 0) for fast tests; ``kw`` overrides any setting."""
    from bayesphys.neural_process import RandomGridNP

    gic = dict(TINY_GIC, latent=6 if problem == "burgers" else 12)
    args = dict(hidden=16, depth=2, n_freq=4, n_points=16, batch=4, gic=gic, seed=0)
    args.update(kw)
    return RandomGridNP(problem, "RGNP", **args)


def calibrated_tiny_rgnp():
    """A tiny ``RandomGridNP`` fitted 2 steps and calibrated (variance only) on 4 prior
    draws with the data ``u`` offset by 0.1; returns ``(model, x, z, w, u)``, ``x`` 9 points
    in [-1, 1]."""
    import torch

    from bayesphys.problems.rgnp import sample_prior

    m = tiny_rgnp()
    m.fit(steps=2, progress=False)
    x = torch.linspace(-1, 1, 9)
    z, w = sample_prior(m.problem, 4, generator=torch.Generator().manual_seed(0))
    u = m.posterior(x, z=z, w=w).mean + 0.1
    m.calibrate(x, u, z, w, parameters=False)
    return m, x, z, w, u
