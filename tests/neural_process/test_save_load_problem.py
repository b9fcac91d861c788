"""RandomGridNP.save/load keeps a customised problem instance."""

import re

import torch

from bayesphys.neural_process import RandomGridNP
from bayesphys.problems.rgnp import PoissonProblem
from tests.tiny_models import tiny_rgnp as tiny


def test_save_load_keeps_a_customised_problem(tmp_path):
    # a problem instance with its own prior box and noise level must survive save/load:
    # the prior drives every training batch after loading, sigma_y the default data noise
    prob = PoissonProblem(z_low=(-2.0,) * 5, z_high=(2.0,) * 5, sigma_y=0.2)
    a = tiny(prob)
    a.fit(steps=1, progress=False)
    back = RandomGridNP.load(a.save(tmp_path / "custom.pt"))
    assert back.problem == prob
    assert (
        a.fit(steps=2, progress=False).loss_history
        == back.fit(steps=2, progress=False).loss_history
    )


def test_save_refuses_a_problem_subclass_that_load_would_lose(tmp_path):
    import dataclasses

    import pytest

    @dataclasses.dataclass(frozen=True)
    class ShiftedPoisson(PoissonProblem):
        def residual(self, x, derivs, z, w):
            return super().residual(x, derivs, z, w) - 5.0

    m = tiny(ShiftedPoisson())
    # it came back as a PoissonProblem, its residual silently the base class's
    with pytest.raises(ValueError, match=r"^problem: a ShiftedPoisson cannot be saved"):
        m.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_an_unknown_problem_names_the_instances_too():
    import pytest

    with pytest.raises(ValueError, match=r"or a PoissonProblem / BurgersProblem instance"):
        RandomGridNP(object())


def test_load_refuses_a_variance_scale_no_calibration_gives(tmp_path):
    """calibrate() sets scales > 0; a file's 0 or NaN scale loaded and gave zero or NaN
    variances."""
    import math

    import pytest
    import torch

    path = tiny().save(tmp_path / "m.pt")
    for name, value, error in (
        ("zero", 0.0, "expected a number > 0, received 0.0"),
        ("negative", -2.0, "expected a number > 0"),
        ("nan", math.nan, "expected a finite number, received nan"),
        ("text", "2", "expected a real number"),
    ):
        ck = torch.load(path, weights_only=False)
        ck["state"]["variance_scale"]["field"] = value
        torch.save(ck, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=rf"^path: .*{name}\.pt.*variance_scale\['field'\]"):
            RandomGridNP.load(tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=error):
            RandomGridNP.load(tmp_path / f"{name}.pt")
    assert RandomGridNP.load(path).variance_scale == {"field": 1.0, "parameters": 1.0}


def test_a_checkpoint_without_problem_fields_loads_the_named_problem(tmp_path):
    """Checkpoints written before the problem's fields were saved name the problem only."""
    a = tiny()
    a.fit(steps=1, progress=False)
    ck = torch.load(a.save(tmp_path / "m.pt"), weights_only=False)
    del ck["config"]["problem_fields"]
    torch.save(ck, tmp_path / "old.pt")
    back = RandomGridNP.load(tmp_path / "old.pt")
    assert back.problem == PoissonProblem() and back.step_count == 1
    x, z, w = torch.linspace(-0.9, 0.9, 7), torch.zeros(5), torch.ones(1)
    torch.testing.assert_close(back.posterior(x, z=z, w=w).mean, a.posterior(x, z=z, w=w).mean)


def test_load_refuses_a_malformed_calibration_step_record(tmp_path):
    import pytest

    path = tiny().save(tmp_path / "m.pt")
    for bad in (["field"], {"other": 3}):
        ck = torch.load(path, weights_only=False)
        ck["state"]["calibrated_at"] = bad
        torch.save(ck, tmp_path / "bad.pt")
        with pytest.raises(
            ValueError,
            match=r"^path: .*bad\.pt: state\['calibrated_at'\]: expected a dict with keys among "
            rf"'field', 'parameters', received {re.escape(repr(bad))}",
        ):
            RandomGridNP.load(tmp_path / "bad.pt")


def test_state_is_a_snapshot_that_later_training_leaves_alone(tmp_path):
    import torch

    m = tiny()
    m.fit(steps=1, progress=False)
    st = m.state()
    weights = {k: v.clone() for k, v in st["modules"].items()}
    moments = {i: s["exp_avg"].clone() for i, s in st["optimizer"]["state"].items()}
    m.fit(steps=2, progress=False)
    # state_dict() shared the live tensors: the kept state followed the later steps while
    # its step_count still said 1
    assert st["step_count"] == 1
    assert all(torch.equal(st["modules"][k], v) for k, v in weights.items())
    assert all(torch.equal(st["optimizer"]["state"][i]["exp_avg"], v) for i, v in moments.items())
    assert all(v.device.type == "cpu" for v in st["modules"].values())
    # and it is still what a checkpoint holds: save/load round-trips exactly
    back = RandomGridNP.load(m.save(tmp_path / "m.pt"))
    x, z, w = torch.linspace(-1, 1, 9), torch.zeros(5), torch.ones(1)
    assert torch.equal(m.posterior(x, z=z, w=w).mean, back.posterior(x, z=z, w=w).mean)


def test_a_loaded_model_keeps_its_seed_adaptive_grid_and_uncalibrated_outputs(tmp_path):
    m = tiny(grid="adaptive", seed=3)
    m.fit(steps=3, progress=False)
    assert m.grid.initialised
    back = RandomGridNP.load(m.save(tmp_path / "m.pt"))
    assert back.seed == 3 and back.step_count == 3
    # the adaptive grid's bin scores, on which the next batches' points depend
    assert back.grid.initialised and torch.equal(back.grid.score, m.grid.score)
    # no variance scale was calibrated: none is recorded as fitted at any step, so a model
    # trained on after the load writes no calibration step either
    back.fit(steps=1, progress=False)
    assert "calibrated_at" not in back.state()
