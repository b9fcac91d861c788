"""ProbConserv warns when a context function's parameter lies outside the range its Step 1 was
trained on: the posterior there is an extrapolation whose covariance need not widen."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset
from tests.warning_checks import messages_containing

OUTSIDE = "outside the range the Step-1 model was trained on"


def _tiny(**kw) -> ProbConserv:
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=4, seed=0, **kw)
    m.fit(steps=2, progress=False)
    return m


def _messages(fn) -> list[str]:
    return messages_containing(fn, OUTSIDE)


@pytest.fixture(scope="module")
def model() -> ProbConserv:
    return _tiny()


@pytest.mark.parametrize(
    "call",
    [
        lambda m, d: m.step1(d),
        lambda m, d: m.posterior(d),
        lambda m, d: m.posterior(d, method="none"),
        lambda m, d: m.posterior(d, method="hardc"),
        lambda m, d: m.posterior(d, sigma_g=math.inf),
    ],
)
def test_every_posterior_warns_once_outside(model, call):
    d = make_dataset("diffusion", params=[3.0, 9.0, 0.5], seed=1)
    msgs = _messages(lambda: call(model, d))
    assert len(msgs) == 1
    assert "2 of 3 context functions" in msgs[0]
    assert "[1, 5]" in msgs[0] and "function 1: 9" in msgs[0]


def test_warning_at_user_line(model):
    d = make_dataset("diffusion", params=[9.0], seed=1)
    with pytest.warns(UserWarning, match=OUTSIDE) as rec:
        model.posterior(d)
    assert rec[0].filename == __file__


def test_no_warning_inside_or_unknown(model):
    inside = make_dataset("diffusion", params=[1.0, 3.0, 5.0], seed=1)
    assert _messages(lambda: model.posterior(inside)) == []
    unknown = make_dataset("diffusion", params=[9.0], seed=1)
    unknown.params = torch.full_like(unknown.params, math.nan)  # a parameter not known
    mass = torch.ones(1, 1, dtype=torch.float64)
    assert _messages(lambda: model.posterior(unknown, mass=mass)) == []


def test_train_margin_widens_the_range():
    m = _tiny(train_margin=0.2)  # k ~ U[0.2, 5.8]
    assert _messages(lambda: m.posterior(make_dataset("diffusion", params=[5.7], seed=1))) == []
    assert len(_messages(lambda: m.posterior(make_dataset("diffusion", params=[5.9], seed=1))))


def test_fit_on_data_records_its_parameters():
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=4, seed=0)
    m.fit(make_dataset("diffusion", params=[6.0, 8.0], seed=2), steps=2, progress=False)
    assert _messages(lambda: m.posterior(make_dataset("diffusion", params=[7.0], seed=1))) == []
    assert len(_messages(lambda: m.posterior(make_dataset("diffusion", params=[3.0], seed=1))))
    m.fit(steps=1, progress=False)  # a second fit on the training range widens the record
    assert _messages(lambda: m.posterior(make_dataset("diffusion", params=[3.0], seed=1))) == []
    byo = make_dataset("diffusion", params=[2.0], seed=2)
    byo.params = torch.full_like(byo.params, math.nan)
    m.fit(byo, steps=1, progress=False)  # data of unknown parameters: nothing known
    assert _messages(lambda: m.posterior(make_dataset("diffusion", params=[99.0], seed=1))) == []


def test_saved_model_keeps_the_record(model, tmp_path):
    path = model.save(tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading says nothing
        loaded = ProbConserv.load(path)
    d = make_dataset("diffusion", params=[9.0], seed=1)
    assert len(_messages(lambda: loaded.posterior(d))) == 1


def test_older_checkpoint_without_record_loads_silently(model, tmp_path):
    path = model.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=False)
    del ck["state"]["trained_params"]
    torch.save(ck, path)
    loaded = ProbConserv.load(path)
    d = make_dataset("diffusion", params=[9.0], seed=1)
    assert _messages(lambda: loaded.posterior(d)) == []


def test_mixture_posterior_warns_once():
    m = _tiny(covariance="mixture")
    d = make_dataset("diffusion", params=[9.0, 2.0], seed=1)
    assert len(_messages(lambda: m.posterior(d))) == 1


def test_mass_check_replaces_the_warning_where_it_applies():
    m = _tiny()
    m.calibrate(n_functions=10, objective="hybrid", local_functions=8)
    d = make_dataset("diffusion", params=[9.0], seed=1)
    assert _messages(lambda: m.posterior(d)) == []  # the gate widens such a function itself
    assert _messages(lambda: m.posterior(d, sigma_g=math.inf)) == []
    assert len(_messages(lambda: m.posterior(d, method="none"))) == 1  # it reads no mass
    assert len(_messages(lambda: m.step1(d))) == 1


@pytest.mark.parametrize("bad", [["a", "b"], [1.0], [True, 2.0], 3.0])
def test_damaged_record_is_refused_by_name(bad):
    from bayesphys.probconserv._trained_range import checked_record

    with pytest.raises(ValueError, match=r"trained_params: expected None or \[lo, hi\] numbers"):
        checked_record(bad)
    assert checked_record(None) is None and checked_record([1, 2.5]) == (1.0, 2.5)
