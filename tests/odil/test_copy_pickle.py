"""Copies of the glioma model's reduced problem: pickled, deep-copied, sent to a worker."""

from __future__ import annotations

import copy
import pickle

import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems import brain_phantom, synthetic_patient


def _model() -> GliomaModel:
    p = synthetic_patient(1, phantom=brain_phantom(32, 4.0))
    return GliomaModel(
        p["wm"], p["gm"], p["labels"], spacing=p["spacing"], th_up=p["th_up"], th_down=p["th_down"]
    )


def test_reduced_problem_pickles_and_deep_copies_with_its_own_model():
    """GliomaModel.problem() held a lambda over the model: pickle (a process pool, Ray, Dask,
    torch.save) failed with "Can't pickle local object", and a deep copy kept the original
    model, so a later change of that model's settings changed the copy's loss."""
    model = _model()
    prob = model.problem()
    x0 = prob.initial()
    loss = prob.loss(x0)
    back = pickle.loads(pickle.dumps(prob))
    assert torch.equal(back.loss(back.initial()), loss)
    deep = copy.deepcopy(prob)
    model.config["prior"] = {**model.config["prior"], "log_dw": (0.0, 1.0)}  # the original changes
    assert not torch.equal(prob.loss(x0), loss)
    assert torch.equal(deep.loss(x0), loss) and torch.equal(back.loss(x0), loss)
