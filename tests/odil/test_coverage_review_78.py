"""Coverage review (round 78): odil code that no default test executed.

``_calibration`` (the ``bayesphys calibrate odil`` hook: only the CLI's stand-ins ran), the
checks of a checkpoint's fit result in ``glioma_io`` and the one-size / complex spacings of
``radiotherapy``. Each test checks the path against its docstring or an independent oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys.odil import GliomaModel, standard_margin_plan

from .test_user_mends import _edited


@pytest.fixture()
def captured(monkeypatch):
    """``calibrate_rows``' arguments to ``calibration_rows`` (no SBC run)."""
    import bayesphys.diagnostics.calibrate as diag_calibrate

    seen: list[dict] = []

    def rows(simulate, infer, summaries, **kwargs):
        seen.append({"simulate": simulate, "infer": infer, "summaries": summaries, **kwargs})
        return []

    monkeypatch.setattr(diag_calibrate, "calibration_rows", rows)
    return seen


def test_calibration_hook_sizes_are_its_docstrings(captured):
    """``calibrate_rows``: "quick: N=50, L=49; full: N=200, L=99" (held-out fits 30 / 100)."""
    from bayesphys.odil._calibration import calibrate_rows

    assert calibrate_rows(True, 3) == [] and calibrate_rows(False, 3) == []
    quick, full = captured
    assert (quick["n_sims"], quick["n_draws"], quick["recalibrate"]) == (50, 49, 30)
    assert (full["n_sims"], full["n_draws"], full["recalibrate"]) == (200, 99, 100)
    for run in captured:
        assert run["problem"] == "glioma-phantom-32" and run["method"] == "ODIL-Laplace"
        assert run["seed"] == 3
    # theta = (log D_w, log rho, x0, y0): each summary reads its own column
    draws = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)
    for k, name in enumerate(("log_dw", "log_rho", "x0", "y0")):
        assert torch.equal(quick["summaries"][name](draws), draws[:, k])


def test_calibration_simulator_and_inference_agree_on_theta(captured):
    """The hook's simulator (module docstring: the 32 x 32 phantom at 4 mm, focus in white
    matter, thresholds 0.6 / 0.25, theta = (log D_w, log rho, x0, y0)) and its inference
    (GliomaModel fit + Laplace) on one patient: theta read from the patient's truth by hand,
    the reported setting is the model's own, and the fitted posterior is about the same
    theta (every component of the truth within 4 posterior sds; |z| <= 1.3 on this seed)."""
    from bayesphys.odil._calibration import calibrate_rows

    calibrate_rows(True, 0)
    (run,) = captured
    theta, patients = run["simulate"](2, seed=0)
    assert theta.shape == (2, 4) and theta.dtype == torch.float64 and len(patients) == 2
    for th, p in zip(theta, patients):
        tr = p["truth"]
        want = [math.log(tr["dw"]), math.log(tr["rho"]), tr["x0"], tr["y0"]]
        assert th.tolist() == pytest.approx(want, rel=1e-15)
        assert tuple(p["wm"].shape) == (32, 32) and p["spacing"] == run["setting"]["mm"] == 4.0
        assert (p["th_up"], p["th_down"]) == (0.6, 0.25)
        i, j = int(tr["x0"] // 4.0), int(tr["y0"] // 4.0)
        assert float(p["wm"][i, j]) > 0.9  # drawn from the white-matter voxels
    assert not torch.equal(theta[0], theta[1])  # two patients, not one twice
    model = GliomaModel.from_patient(patients[0])
    assert model.config["noise_corr_mm"] == run["setting"]["noise_corr_mm"]
    post = run["infer"](patients[0])
    assert post.mean.shape == (4,)
    z = (post.mean - theta[0]) / post.variance.sqrt()
    assert bool((z.abs() < 4.0).all()), z


# -- glioma_io: a checkpoint's fit result of the wrong types ----------------------------------


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda st: st["result"].update(loss_history=(1.0, 0.5)), r"loss_history: expected a list"),
        (lambda st: st["result"].update(converged=1), r"converged: expected a bool, received 1"),
        (lambda st: st["result"].update(message=3), r"message: expected a str, received int"),
        (lambda st: st["result"].update(extra=[]), r"extra: expected a dict, received list"),
    ],
)
def test_load_names_a_result_field_of_the_wrong_type(tiny_pet_model, tmp_path, edit, match):
    bad = _edited(tiny_pet_model.save(tmp_path / "m.pt"), "bad.pt", edit)
    with pytest.raises(ValueError, match=rf"^path: .*state\['result'\].*{match}"):
        GliomaModel.load(bad)


# -- radiotherapy: one voxel size given as a sequence, complex sizes --------------------------


def _lesion():
    lab = torch.zeros(9, 9, dtype=torch.long)
    lab[4, 4] = 2
    return lab, torch.ones_like(lab, dtype=torch.bool)


@pytest.mark.parametrize("spacing", [(2.0,), [2.0], torch.tensor([2.0]), np.array([2.0])])
def test_a_one_element_spacing_is_the_voxel_size(spacing):
    """A sequence of one size is that size on every axis (the docstring: "a one-element real
    tensor or array counts as its number"). Oracle: the Euclidean 4 mm disc around the core
    voxel on a 2 mm grid, by hand."""
    lab, brain = _lesion()
    plan = standard_margin_plan(lab, brain, spacing, margin_mm=4.0)
    ii, jj = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    disc = ((2.0 * (ii - 4)) ** 2 + (2.0 * (jj - 4)) ** 2) <= 16.0
    assert torch.equal(plan, disc)


@pytest.mark.parametrize(
    "spacing", [torch.tensor([2.0 + 0j]), np.array([2.0 + 0j]), torch.tensor(2.0 + 1j)]
)
def test_a_complex_spacing_is_refused_by_name(spacing):
    lab, brain = _lesion()
    with pytest.raises(TypeError, match=r"^spacing: expected a real number"):
        standard_margin_plan(lab, brain, spacing)
