"""One default device for every model: ``device=None`` (and ``load`` without ``device``) is the
CPU, also where CUDA exists; ``"auto"`` is the opt-in to CUDA.

Before, ``GPPDESolver``, ``GliomaModel``, ``DiscreteProblem(device=None)``, ``MetaFlowMatching``
and ``MFMEnsemble`` went to CUDA when present while ``ProbConserv``, ``RandomGridNP`` and
``ConjugateGaussianField`` stayed on the CPU, and ``GPPDESolver.load`` / ``ProbConserv.load``
took ``None`` while ``GliomaModel.load`` / ``MetaFlowMatching.load`` defaulted to ``"cpu"``.
CUDA is faked here (``torch.cuda.is_available`` patched to ``True``): a model that resolved
``None`` to CUDA fails to build on this CPU-only torch or reports a CUDA device.
"""

from __future__ import annotations

import pytest
import torch

from bayesphys import model_device, resolve_device
from tests.tiny_models import TINY_MFM

CPU = torch.device("cpu")


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA looks present (one device); nothing may be placed there on this machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_model_device_rule(fake_cuda):
    assert model_device(None) == CPU
    assert model_device("cpu") == CPU
    assert model_device("auto") == torch.device("cuda")  # opt-in: resolve_device's "auto"
    assert model_device("auto") == resolve_device("auto")
    with pytest.raises(ValueError, match="^device: "):
        model_device("gpu0")


def _gp_pde(device=None):
    from bayesphys.gp_pde import GPPDESolver

    return GPPDESolver("poisson1d-low", n_col=8, num_mixtures=2, seed=0, device=device)


def _glioma(device=None):
    from bayesphys.odil import GliomaModel
    from bayesphys.problems import brain_phantom, synthetic_patient

    p = synthetic_patient(0, phantom=brain_phantom(24, 4.0))
    return GliomaModel(
        p["wm"], p["gm"], p["labels"], spacing=p["spacing"], th_up=p["th_up"],
        th_down=p["th_down"], device=device,
    )  # fmt: skip


def _discrete(device=None):
    from bayesphys.odil import DiscreteProblem

    return DiscreteProblem(
        {"u": (6,)}, {"c": 0.5}, lambda f, p: {"r": f["u"] - p["c"]}, device=device
    )


def _mfm(device=None):
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems import linear_map

    return MetaFlowMatching(linear_map(n_train=4, n_cal=3, n_test=3, n_points=20), seed=0,
                            device=device, **TINY_MFM)  # fmt: skip


def _ensemble(device=None):
    from bayesphys.meta_fm import MFMEnsemble
    from bayesphys.problems import linear_map

    data = linear_map(n_train=4, n_cal=3, n_test=3, n_points=20)
    return MFMEnsemble(data, members=2, seed=0, device=device, **TINY_MFM)


def _probconserv(device=None):
    from bayesphys.probconserv import ProbConserv

    return ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0, device=device)


def _rgnp(device=None):
    from tests.tiny_models import tiny_rgnp

    return tiny_rgnp(device=device)


def _conjugate(device=None):
    from bayesphys.problems import ConjugateGaussianField

    return ConjugateGaussianField(torch.linspace(0, 1, 10), [1, 5], [0.2, 0.3], seed=0,
                                  device=device)  # fmt: skip


BUILDERS = {
    "GPPDESolver": _gp_pde,
    "GliomaModel": _glioma,
    "DiscreteProblem": _discrete,
    "MetaFlowMatching": _mfm,
    "MFMEnsemble": _ensemble,
    "ProbConserv": _probconserv,
    "RandomGridNP": _rgnp,
    "ConjugateGaussianField": _conjugate,
}


def _devices(model) -> set[torch.device]:
    if hasattr(model, "models"):  # the ensemble: its members' devices
        return {torch.device(m.device) for m in model.models}
    return {torch.device(model.device)}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_models_default_to_the_cpu_where_cuda_exists(name, fake_cuda):
    assert _devices(BUILDERS[name]()) == {CPU}


@pytest.mark.parametrize("name", [n for n in BUILDERS if n != "DiscreteProblem"])
def test_load_without_device_is_the_cpu_where_cuda_exists(name, tmp_path, monkeypatch):
    model = BUILDERS[name]("cpu")
    path = tmp_path / "model.pt"
    model.save(path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    loaded = type(model).load(path)
    assert _devices(loaded) == {CPU}


def test_posterior_to_none_is_the_cpu_where_cuda_exists(fake_cuda):
    from bayesphys import GaussianPosterior, SamplePosterior

    g = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    s = SamplePosterior(torch.zeros(1, 4, 3))
    assert g.to(None).device == CPU and s.to(None).device == CPU
