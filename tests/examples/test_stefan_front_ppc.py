"""The Stefan-front example's posterior predictive: replicated sensor readings ``y_sensors``
(the updated field at the sensors plus the example's Gaussian sensor noise) and their
pointwise log-likelihood, next to ``observed_data`` so ``az.plot_ppc`` works."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.examples.stefan_front import _sensor_predictive
from bayesphys.problems.gpme import get_problem, make_dataset, mass_from_fluxes

NOISE = 0.01


class _FieldModel:
    """A stand-in ProbConserv whose posterior is (almost) the known field u(t, x) = 10 t + x."""

    def __init__(self):
        self.problem = get_problem("stefan")
        self.calls: list[dict] = []

    def posterior(self, data, t, x, **kw) -> GaussianPosterior:
        self.calls.append({"t": t, "x": x, **kw})
        mean = (10 * t[:, None] + x[None, :])[None]  # [1, nt, nx]
        cov = DiagLinearOperator(torch.full(mean.shape, 1e-20, dtype=torch.float64))
        return GaussianPosterior(mean, cov, event_shape=mean.shape[-1:])


@pytest.fixture(scope="module")
def sensors():
    return make_dataset("stefan", params=[0.6], seed=99, noise_std=NOISE)


def test_sensor_replicates_read_the_updated_field_at_the_sensors_plus_noise(sensors):
    model = _FieldModel()
    kw = dict(n=4000, noise=NOISE, mass_tol=1e-4, u_star=0.6)
    y_rep, log_lik = _sensor_predictive(model, sensors, seed=0, **kw)
    ts, xs = sensors.x_context[0].unbind(-1)
    f = 10 * ts + xs  # the field at each sensor
    assert y_rep.shape == log_lik.shape == (4000, 100)
    assert torch.allclose(y_rep.mean(0), f, atol=5 * NOISE / 4000**0.5)
    assert torch.allclose(y_rep.std(0).mean(), torch.tensor(NOISE, dtype=torch.float64), rtol=0.05)
    obs = torch.distributions.Normal(f, NOISE).log_prob(sensors.y_context[0])
    assert torch.allclose(log_lik, obs.expand(4000, -1), atol=1e-5)
    # one updated posterior: every sensor time, the 201-point grid merged with the sensor
    # positions, each slice's mass from the boundary inflow, the example's constraint noise
    (call,) = model.calls
    assert torch.equal(call["t"], ts.unique())
    grid = model.problem.grid(201).to(torch.float64)
    assert bool(torch.isin(xs, call["x"]).all() and torch.isin(grid, call["x"]).all())
    assert bool((call["x"].diff() > 0).all())
    b = [mass_from_fluxes(model.problem, float(t), 0.6) for t in ts.unique()]
    assert torch.allclose(call["mass"], torch.tensor([b], dtype=torch.float64))
    assert call["sigma_g"] == 1e-4 and call["relative"] is False
    # seeded: the same seed repeats the replicates, another gives new ones
    assert torch.equal(_sensor_predictive(model, sensors, seed=0, **kw)[0], y_rep)
    assert not torch.equal(_sensor_predictive(model, sensors, seed=1, **kw)[0], y_rep)
    # noiseless sensors: the replicate is the field itself and there is no density
    y0, ll0 = _sensor_predictive(model, sensors, seed=0, **{**kw, "noise": 0.0})
    assert ll0 is None and torch.allclose(y0, f.expand(4000, -1), atol=1e-8)


def test_the_prior_group_holds_the_step1_draws_and_says_so(tmp_path):
    """The Step-1 draws (conditioned on the sensors) sat in an ArviZ 'prior' group with
    nothing in the file to tell them from data-free prior draws."""
    from bayesphys.examples.stefan_front import main
    from bayesphys.inference_data import load_netcdf

    res = main(["--smoke", "--out", str(tmp_path)])
    idata = load_netcdf(res["netcdf"])
    note = idata.prior.attrs["description"]
    assert "Step-1 posterior" in note and "not draws from a data-free prior" in note
    assert "description" not in idata.posterior.attrs
    # the group's fronts are the 'before' (Step-1) fronts of the result, not the updated ones
    before = idata.prior["front"].values.reshape(-1)
    assert float(before.mean()) == pytest.approx(res["front_before"][0], rel=1e-12)
    assert float(before.std(ddof=1)) == pytest.approx(res["front_before"][1], rel=1e-6)
