"""A posterior asked of a model that never trained warns at the user's line."""

from __future__ import annotations

import warnings

import torch


def _untrained_warnings(call):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call()
    return [w for w in rec if "has not been trained" in str(w.message)]


def test_probconserv_warns_before_fit_and_not_after():
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    data = make_dataset("diffusion", params=[1.0, 2.0], seed=0)
    model = ProbConserv("diffusion", step1="gp", seed=0, batch_size=2)
    got = _untrained_warnings(lambda: model.posterior(data, t=0.5))
    assert len(got) == 1 and got[0].filename == __file__
    assert str(got[0].message).startswith("ProbConserv.posterior: the model has not been trained")
    model.fit(data, steps=1, progress=False)
    got = _untrained_warnings(lambda: model.posterior(data, t=0.5))
    assert got == []


def test_meta_fm_and_ensemble_warn_once():
    from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
    from bayesphys.problems.populations import linear_map

    data = linear_map(n_train=4, n_cal=2, n_test=2, seed=0)
    src = [data.source[0]]
    m = MetaFlowMatching(data, seed=0)
    got = _untrained_warnings(lambda: m.posterior(src, num_samples=2))
    assert len(got) == 1 and got[0].filename == __file__
    ens = MFMEnsemble(data, members=2, seed=0)
    got = _untrained_warnings(lambda: ens.posterior(src, num_samples=2))
    assert len(got) == 1 and "MFMEnsemble.posterior" in str(got[0].message)


def test_random_grid_np_warns_for_both_posteriors():
    from bayesphys.neural_process import RandomGridNP

    model = RandomGridNP("poisson", "RGNP", seed=0)
    got = _untrained_warnings(lambda: model.posterior(z=[0.1] * 5, w=[1.0]))
    assert len(got) == 1 and got[0].filename == __file__
    x = torch.linspace(-0.8, 0.8, 9)
    y = torch.zeros(9)
    got = _untrained_warnings(lambda: model.parameter_posterior(x, y, w=[1.0]))
    assert len(got) == 1


def test_random_grid_np_after_a_step_is_quiet():
    from bayesphys.neural_process import RandomGridNP
    from bayesphys.problems.rgnp import poisson_sensor_data

    model = RandomGridNP("poisson", "RGNP", seed=0)
    model.fit(poisson_sensor_data(4, seed=1), steps=1, progress=False)
    got = _untrained_warnings(lambda: model.posterior(z=[0.1] * 5, w=[1.0]))
    assert got == []


def test_probconserv_a_posterior_refused_for_its_arguments_does_not_warn():
    """posterior warned that the model is untrained before checking its arguments, so a call
    it then refused (a context that is not a dataset, an unknown method) also warned."""
    import pytest

    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    model = ProbConserv("diffusion", step1="gp", seed=0)
    data = make_dataset("diffusion", params=[1.0], seed=0)
    for call, error in (
        (lambda: model.posterior(torch.zeros(3)), TypeError),
        (lambda: model.posterior(data, method="exact"), ValueError),
    ):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            with pytest.raises(error):
                call()
        assert not [w for w in rec if "has not been trained" in str(w.message)]
