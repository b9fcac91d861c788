"""Argument checks of the glioma test problems: devices named as strings, integer dtypes and
phantom maps of another shape are refused by name before any map is built or read."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems import glioma as gp


def _no_maps(*args, **kwargs):
    raise AssertionError("the atlas maps were read before the arguments were checked")


@pytest.mark.parametrize("device", ["gpu", "CPU", "tpu"], ids=["gpu-name", "CPU", "tpu"])
def test_unknown_device_strings_are_refused_by_name(device, monkeypatch):
    monkeypatch.setattr(gp, "_mni_maps", _no_maps)
    with pytest.raises(ValueError, match="device"):
        gp.brain_phantom(32, 4.0, device=device)
    with pytest.raises(ValueError, match="device"):
        gp.synthetic_patient(0, n=32, spacing=4.0, device=device)
    with pytest.raises(ValueError, match="device"):
        gp.mni_atlas(4.0, axial_mm=8.0, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(gp, "_mni_maps", _no_maps)
    with pytest.raises(ValueError, match="device: cuda"):
        gp.brain_phantom(32, 4.0, device="cuda")
    with pytest.raises(ValueError, match="device: cuda"):
        gp.synthetic_patient(0, n=32, spacing=4.0, device="cuda")
    with pytest.raises(ValueError, match="device: cuda"):
        gp.mni_atlas(4.0, axial_mm=8.0, device="cuda")


def test_device_strings_torch_knows_still_work():
    a = gp.brain_phantom(32, 4.0, device="cpu:0")
    b = gp.brain_phantom(32, 4.0, device=torch.device("cpu"))
    assert a["wm"].device.type == "cpu" and torch.equal(a["wm"], b["wm"])
    p = gp.synthetic_patient(0, n=32, spacing=4.0, refine=1, device="cpu")
    assert p["labels"].device.type == "cpu" and int((p["labels"] > 0).sum()) > 0


def test_mni_atlas_refuses_an_integer_dtype_before_reading_the_maps(monkeypatch):
    """An integer dtype truncated the probability maps to 0 / 1 without a word."""
    monkeypatch.setattr(gp, "_mni_maps", _no_maps)
    with pytest.raises(ValueError, match="dtype"):
        gp.mni_atlas(4.0, axial_mm=8.0, dtype=torch.int64)
    with pytest.raises(ValueError, match="dtype"):
        gp.mni_atlas(4.0, axial_mm=8.0, dtype="int32")


@pytest.mark.parametrize("key", ["gm", "brain"])
def test_synthetic_patient_names_a_phantom_map_of_another_shape(key):
    """A brain mask of another shape was named "tissue" by the solver, after the focus was
    drawn."""
    ph = gp.brain_phantom(32, 4.0)
    bad = {**ph, key: ph[key][:-1]}
    with pytest.raises(ValueError, match=rf"phantom\['{key}'\].*\(32, 32\).*\(31, 32\)"):
        gp.synthetic_patient(0, phantom=bad, refine=1)


def test_synthetic_patient_checks_its_focus_and_keeps_extra_foci_in_tissue():
    ph = gp.brain_phantom(16, 8.0)
    with pytest.raises(ValueError, match=r"^focus: expected 2 coordinates \(mm from the grid's"):
        gp.synthetic_patient(0, phantom=ph, focus=(float("nan"), 60.0))
    # a focus at the edge of the tissue: candidates around it outside the brain are redrawn
    edge = (ph["brain"] > 0).nonzero()
    i, j = (int(v) for v in edge[edge[:, 0].argmin()])
    p = gp.synthetic_patient(0, phantom=ph, focus=((i + 0.5) * 8.0, (j + 0.5) * 8.0), extra_foci=3)
    assert len(p["foci"]) == 4
    for f in p["foci"]:
        k = tuple(int(v) for v in torch.floor(torch.as_tensor(f) / 8.0).long())
        assert float(ph["brain"][k]) > 0


def test_synthetic_patient_sizes_its_steps_by_dw_or_step_d(monkeypatch):
    """The solves take ``refine * stable_steps(T, max(dw, step_d), ...)`` steps; with
    ``step_d=None``, ``stable_steps(T, dw, ...)``."""
    seen = []
    real = gp.stable_steps

    def spy(t_end, d, *args, **kwargs):
        seen.append(d)
        return real(t_end, d, *args, **kwargs)

    monkeypatch.setattr(gp, "stable_steps", spy)
    ph = gp.brain_phantom(16, 8.0)
    gp.synthetic_patient(0, phantom=ph, dw=0.05, rho=0.05, step_d=None, refine=1)
    assert seen == [0.05, 0.05]
    seen.clear()
    gp.synthetic_patient(0, phantom=ph, dw=0.05, rho=0.05, step_d=1.0, refine=1)
    assert seen == [1.0, 1.0]
