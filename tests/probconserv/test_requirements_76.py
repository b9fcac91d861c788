"""Review 76 (requirements traceability) of issue 4, ProbConserv: the requirements the issue
states that were met but had no test that would fail if they broke.

* "the parameter ranges and context design of the paper" and the table times: the GPME
  families' fields against the anchor (§2), and the setting dicts the issue fixes;
* the ids the issue fixes for ``benchmarks/results/probconserv.json``: problem ids, methods,
  settings, the metric keys of each row kind and the anchor figures it quotes;
* "NaN data gets a clear error" and "NaN or Inf in data is refused before fitting"
  (ARCHITECTURE.md) for the meta-GP, and for the data a user hands to ``fit`` and the
  ``mass`` handed to ``posterior`` (both Step-1 models);
* "``fit`` with progress": a tqdm bar with ``progress=True``, nothing with ``progress=False``;
* "``bayesphys run ...``" for the inverse-problem example, through the command itself;
* "runs on CUDA when asked (a gpu-marked test)" for the meta-GP and the example (only the ANP
  had one);
* ARCHITECTURE.md's ``Component(problem_or_config, ...)``: ``ProbConserv(config)`` (a fix: it
  was a ``TypeError``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from bayesphys._bench import repo_root
from bayesphys.probconserv import ProbConserv, ProbConservConfig, trapezoid_weights
from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan, make_dataset

F64 = torch.float64
NAN = float("nan")

# ------------------------------------------------------------------------------------------
# the paper's problems: ranges, test parameters, table times, settings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "param", "x_range", "t_range", "train", "test", "table_time"),
    [
        (Diffusion, "diffusion", "k", (0.0, 2 * math.pi), (0.0, 1.0), (1.0, 5.0), (1.0, 5.0), 0.5),
        (PorousMedium, "pme", "m", (0.0, 1.0), (0.0, 1.0), (1.0, 6.0), (1.0, 3.0, 6.0), 0.5),
        (Stefan, "stefan", "u_star", (0.0, 1.0), (0.0, 0.1), (0.55, 0.7), (0.5, 0.6), 0.05),
    ],
)
def test_gpme_families_carry_the_papers_domains_ranges_and_table_times(
    cls, name, param, x_range, t_range, train, test, table_time
):
    """Anchor §2 (from the reference configs): diffusion k ~ U[1, 5] on [0, 2 pi] x [0, 1],
    test k in {1, 5} at t = 0.5; PME m ~ U[1, 6], test {1, 3, 6} at t = 0.5; Stefan
    u* ~ U[0.55, 0.7] on [0, 1] x [0, 0.1], test {0.5 (out of range), 0.6} at t = 0.05."""
    prob = cls()
    assert (prob.name, prob.param_name) == (name, param)
    assert prob.x_range == pytest.approx(x_range, abs=0)
    assert prob.t_range == t_range and prob.train_range == train
    assert prob.test_params == test and prob.table_time == table_time
    # a default data set draws its parameters from the training range, and its contexts on
    # the paper's design: 10 stratified times x the same 10 sorted sensors
    d = make_dataset(prob, 64, seed=0)
    assert bool(((d.params >= train[0]) & (d.params <= train[1])).all())
    assert float(d.params.max() - d.params.min()) > 0.8 * (train[1] - train[0])
    t = d.x_context[..., 0].reshape(64, 10, 10)
    xs = d.x_context[..., 1].reshape(64, 10, 10)
    assert bool((xs == xs[:, :1]).all()) and bool((xs.diff(dim=-1) > 0).all())
    assert bool((t == t[..., :1]).all())
    edges = torch.linspace(*t_range, 11, dtype=F64)
    assert bool(((t[..., 0] >= edges[:-1]) & (t[..., 0] < edges[1:])).all())
    assert bool(((xs >= x_range[0]) & (xs <= x_range[1])).all())


def test_settings_are_the_issues_dicts():
    """Issue 4: settings ``{"k": 5, "t": 0.5}``, ``{"m": 3, "t": 0.5}``,
    ``{"u_star": 0.6, "t": 0.05}`` (ints where the parameter is whole)."""
    got = [Diffusion().setting(5.0), PorousMedium().setting(3.0), Stefan().setting(0.6)]
    assert got == [{"k": 5, "t": 0.5}, {"m": 3, "t": 0.5}, {"u_star": 0.6, "t": 0.05}]
    assert [type(s[k]) for s, k in zip(got, ("k", "m", "u_star"))] == [int, int, float]


# ------------------------------------------------------------------------------------------
# the committed results file: the ids and keys the issue fixes
# ------------------------------------------------------------------------------------------

FIELD_METRICS = {"mse", "mse_se", "ll", "ll_se", "ce", "ce_se", "coverage90", "crps"}
# "ANP, SoftC-ANP, HardC-ANP, ProbConserv-ANP, and the same with -GP" (SoftC-GP since 2026-12-07)
METHODS = {
    "ANP",
    "SoftC-ANP",
    "HardC-ANP",
    "ProbConserv-ANP",
    "GP",
    "SoftC-GP",
    "HardC-GP",
    "ProbConserv-GP",
}
SETTINGS = {
    "diffusion": [{"k": 1, "t": 0.5}, {"k": 5, "t": 0.5}],
    "pme": [{"m": m, "t": 0.5} for m in (1, 3, 6)],
    "stefan": [{"u_star": u, "t": 0.05} for u in (0.5, 0.6)],
    "stefan-shock": [{"u_star": u, "t": 0.05} for u in (0.5, 0.6)],
}


def _committed() -> dict:
    path = repo_root() / "benchmarks" / "results" / "probconserv.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _rows(payload: dict, problem: str, setting: dict) -> dict[str, dict]:
    return {
        r["method"]: r
        for r in payload["rows"]
        if r["problem"] == problem and r["setting"] == setting
    }


def test_committed_results_use_the_issues_problem_ids_methods_settings_and_keys():
    payload = _committed()
    assert payload["component"] == "probconserv" and payload["quick"] is False
    assert {r["problem"] for r in payload["rows"]} == set(SETTINGS)
    for problem, settings in SETTINGS.items():
        for setting in settings:
            rows = _rows(payload, problem, setting)
            missing = METHODS - set(rows)
            assert not missing, (problem, setting, sorted(missing))
            for method in METHODS:
                keys = set(rows[method]["metrics"])
                want = {"bias", "sd"} if problem == "stefan-shock" else FIELD_METRICS
                assert want <= keys, (problem, setting, method, sorted(want - keys))
                assert all(k == k.lower() for k in keys)
                anchor = rows[method]["anchor"]
                assert anchor is None or {"source", "metrics"} <= set(anchor)
    # training cost beside the reference ANP's (~3 s per step x 20k steps on 2 cores)
    assert "3 s/step" in payload["reference_training_cost"]


def test_committed_anchor_figures_are_the_issues():
    """Paper Table 1 (diffusion, t = 0.5) and the Stefan shock anchor (ProbConserv-ANP
    0.2410 against the true 0.2351 at u* = 0.6, sd 0.0146) as the issue quotes them."""
    payload = _committed()
    table1 = {
        "ANP": {"ce": 4.68e-3, "ll": 2.72, "mse": 1.71e-4},
        "HardC-ANP": {"ce": 0.0, "ll": 3.08, "mse": 1.37e-4},
        "ProbConserv-ANP": {"ce": 0.0, "ll": 2.74, "mse": 1.55e-4},
    }
    rows = _rows(payload, "diffusion", {"k": 5, "t": 0.5})
    for method, figures in table1.items():
        got = rows[method]["anchor"]
        assert "Table 1" in got["source"]
        for key, value in figures.items():
            assert got["metrics"][key] == pytest.approx(value, rel=1e-12, abs=0), (method, key)
    shock = _rows(payload, "stefan-shock", {"u_star": 0.6, "t": 0.05})["ProbConserv-ANP"]
    fig = shock["anchor"]["metrics"]
    assert fig["bias_fid1"] == pytest.approx(0.2410 - 0.2351, abs=1e-12)
    assert fig["sd_fid1"] == pytest.approx(0.0146, abs=1e-12)


# ------------------------------------------------------------------------------------------
# bad input: NaN data refused with the name of what holds it
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        anp = ProbConserv("stefan", step1="anp", hidden=8, n_samples=4, seed=0)
        anp.fit(steps=2, progress=False)
        gp = ProbConserv("stefan", step1="gp", gp_width=4, seed=0)
        gp.fit(steps=2, progress=False)
        yield {"anp": anp, "gp": gp}
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("step1", ["anp", "gp"])
@pytest.mark.parametrize("field", ["x_context", "y_context", "x_target", "y_target"])
@pytest.mark.parametrize("bad", [NAN, math.inf])
def test_fit_refuses_non_finite_data_by_field_before_a_step(models, step1, field, bad):
    model = models[step1]
    data = make_dataset("stefan", 3, seed=1)
    getattr(data, field)[1, 2, ...] = bad
    before = [p.detach().clone() for p in model.net.parameters()]
    steps = model.steps_done
    with pytest.raises(ValueError, match=f"data.{field}: expected finite values"):
        model.fit(data, steps=1, progress=False)
    assert model.steps_done == steps
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters()))


@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_posterior_refuses_non_finite_contexts_and_mass_by_name(models, step1):
    model = models[step1]
    for field in ("x_context", "y_context"):
        data = make_dataset("stefan", params=[0.6, 0.55], seed=2)
        getattr(data, field)[0, 7, ...] = NAN
        for call in (model.step1, model.posterior):
            with pytest.raises(ValueError, match=f"context.{field}: expected finite values"):
                call(data)
    data = make_dataset("stefan", params=[0.6, 0.55], seed=2)
    for bad in (NAN, math.inf):
        mass = model.mass(data).clone()
        mass[1, 0] = bad
        for method in ("probconserv", "hardc"):
            with pytest.raises(ValueError, match="mass: expected finite values"):
                model.posterior(data, mass=mass, method=method)
    # the same mass, finite, is met exactly: the refusal is the value's, not the argument's
    post = model.posterior(data, mass=model.mass(data))
    g = trapezoid_weights(model.problem.grid(201))
    torch.testing.assert_close(post.mean @ g, model.mass(data), rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------
# the model API: Component(problem_or_config, ...)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"step1": "anp", "hidden": 8, "n_samples": 4, "covariance": "diag", "sigma_g": 0.1},
        {"step1": "gp", "gp_width": 4, "relative": True, "sigma_g": 0.5, "seed": 7},
    ],
)
def test_a_config_builds_the_model_it_describes(settings):
    """ARCHITECTURE.md: ``Component(problem_or_config, ...)``. ``ProbConserv(config)`` was a
    ``TypeError`` ("problem: expected one of [...] or a GPMEProblem"), though the config is
    public and every model carries one."""
    model = ProbConserv("stefan", **settings)
    again = ProbConserv(model.config)
    assert again.config == model.config and again.problem == model.problem
    assert again.dtype == model.dtype and again.steps_done == 0
    # a seeded config gives the same initial weights
    assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(), again.net.parameters()))
    # device and dtype are not settings of the config: they still apply
    assert ProbConserv(model.config, device="cpu").device.type == "cpu"


def test_a_config_refuses_keyword_settings_and_bad_values_by_name():
    config = ProbConservConfig(problem="pme", hidden=8, n_samples=4)
    with pytest.raises(ValueError, match=r"hidden, seed: a ProbConservConfig gives every"):
        ProbConserv(config, seed=1, hidden=16)
    config.hidden = 0
    with pytest.raises(ValueError, match="hidden: expected an int >= 1"):
        ProbConserv(config)
    with pytest.raises(ValueError, match="problem: expected one of"):
        ProbConserv(ProbConservConfig(problem="burgers"))


# ------------------------------------------------------------------------------------------
# fit with progress
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_fit_shows_a_progress_bar_only_when_asked(step1, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kw = {"hidden": 8, "n_samples": 4} if step1 == "anp" else {"gp_width": 4}
        model = ProbConserv("pme", step1=step1, seed=0, **kw)
        capsys.readouterr()
        model.fit(steps=2, progress=False)
        quiet = capsys.readouterr()
        assert quiet.err == "" and quiet.out == ""
        model.fit(steps=2, progress=True)
        err = capsys.readouterr().err
    finally:
        torch.set_num_threads(n)
    assert f"ProbConserv {step1} (pme)" in err and "2/2" in err


# ------------------------------------------------------------------------------------------
# the example through the command
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bayesphys_run_stefan_front_smoke_writes_the_posterior_and_the_bands(tmp_path, capsys):
    """``bayesphys run stefan_front --smoke``: the command (not only ``main``) runs the
    example and writes its InferenceData and its bands plot."""
    from bayesphys import cli
    from bayesphys.inference_data import group_dataset, load_netcdf

    rc = cli.main(["run", "stefan_front", "--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("ce_after:") == 1 and "front_after:" in out
    idata = load_netcdf(tmp_path / "stefan_front.nc")
    assert {"front", "u_star", "u"} <= set(group_dataset(idata, "posterior").data_vars)
    assert {"front", "u"} <= set(group_dataset(idata, "prior").data_vars)
    assert (tmp_path / "stefan_front.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------
# CUDA when asked (the ANP has its own gpu test in test_model.py)
# ------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_meta_gp_fits_and_conserves_on_cuda(cuda_device):
    gp = ProbConserv("stefan", step1="gp", gp_width=4, device=cuda_device, seed=0)
    res = gp.fit(steps=3, progress=False)
    assert all(math.isfinite(v) for v in res.loss_history)
    test = make_dataset("stefan", params=[0.6, 0.55], seed=1)
    post = gp.posterior(test)
    assert post.device.type == "cuda" and post.dtype == F64
    assert post.covariance.shape == (2, 1, 201, 201)
    g = trapezoid_weights(gp.problem.grid(201)).to(cuda_device)
    mass = gp.mass(test)
    assert float((post.mean @ g - mass).abs().max()) < 1e-10
    draws = post.sample((8,), generator=torch.Generator(device=cuda_device).manual_seed(0))
    assert draws.device.type == "cuda" and float((draws @ g - mass).abs().max()) < 1e-9


@pytest.mark.gpu
@pytest.mark.slow
def test_stefan_front_example_runs_on_cuda_when_asked(tmp_path, cuda_device):
    from bayesphys.examples.stefan_front import main

    res = main(["--smoke", "--device", "cuda", "--out", str(tmp_path), "--seed", "0"])
    assert abs(res["ce_after"]) < 1e-3 and 0.0 < res["front_after"][0] < 1.0
    assert (tmp_path / "stefan_front.nc").exists() and (tmp_path / "stefan_front.png").exists()
