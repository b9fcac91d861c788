"""The GP Step 1 in several threads at once: each thread gets the values it gets alone, and
gpytorch's process-wide settings are left as found (before the lock in ``metagp.py`` two
threads predicting at once restored each other's ``max_cholesky_size``: most posteriors came
out different and the setting stayed at 10**6)."""

from __future__ import annotations

import gpytorch
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset
from tests.thread_checks import in_threads


def _fitted(seed: int) -> ProbConserv:
    m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=seed)
    m.fit(steps=3, progress=False)
    return m


def _settings() -> tuple:
    return gpytorch.settings.max_cholesky_size.value(), gpytorch.settings.fast_pred_var.on()


def test_gp_posteriors_in_four_threads_match_posteriors_one_after_another():
    before = _settings()
    models = [_fitted(s) for s in range(4)]
    test = make_dataset("diffusion", params=[2.0, 3.0], seed=1)
    alone = [m.posterior(test).mean for m in models]
    for _ in range(3):  # the race needs the threads' predictions to overlap
        together = in_threads(lambda m: m.posterior(test).mean, models)
        for a, t in zip(alone, together):
            assert isinstance(t, torch.Tensor), t
            assert torch.equal(a, t)
    assert _settings() == before


def test_gp_fits_in_three_threads_match_fits_one_after_another():
    before = _settings()
    alone = [_fitted(s).net.state_dict() for s in range(3)]
    together = in_threads(lambda s: _fitted(s).net.state_dict(), [0, 1, 2])
    for a, t in zip(alone, together):
        assert isinstance(t, dict), t
        assert a.keys() == t.keys() and all(torch.equal(a[k], t[k]) for k in a)
    assert _settings() == before


def test_one_gp_model_predicting_in_four_threads_uses_each_threads_context():
    """ExactGP keeps its conditioning data on the module: four threads predicting with one
    model used each other's contexts (15 of 20 posteriors wrong) until setting them and the
    prediction became one step under the lock."""
    model = _fitted(0)
    tests = [make_dataset("diffusion", params=[p], seed=s) for s, p in enumerate([1.5, 2.5, 3.5])]
    alone = [model.posterior(t).mean for t in tests]
    for _ in range(3):
        together = in_threads(lambda t: model.posterior(t).mean, tests)
        for a, t in zip(alone, together):
            assert isinstance(t, torch.Tensor), t
            assert torch.equal(a, t)
