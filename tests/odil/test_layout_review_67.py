"""Tissue maps of a tensor subclass (``class T(torch.Tensor)``): GliomaModel kept the
subclass in its state, so ``save`` refused it ("state['wm'] is of type T, which a checkpoint
cannot hold"); the maps are now plain tensors (the test failed before)."""

from __future__ import annotations

import torch

from bayesphys.odil import GliomaModel


class _Sub(torch.Tensor):
    """A user's tensor subclass that adds nothing."""


def test_tissue_maps_of_a_tensor_subclass_save_and_load(patient, tmp_path):
    wm, gm = patient["wm"].as_subclass(_Sub), patient["gm"].as_subclass(_Sub)
    kw = {k: patient[k] for k in ("spacing", "th_up", "th_down")}
    m = GliomaModel(wm, gm, patient["labels"], **kw)
    assert type(m.wm) is torch.Tensor and type(m.gm) is torch.Tensor
    back = GliomaModel.load(m.save(tmp_path / "g.pt"))
    assert torch.equal(back.wm, patient["wm"]) and torch.equal(back.gm, patient["gm"])
    assert type(wm) is _Sub  # the caller's map is left as it is
