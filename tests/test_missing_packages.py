"""A missing package is named as the package to install (``pot``, ``pyro-ppl``), and checked
before the work it would spoil: a fit_many run writing netCDF without h5netcdf threw every
fit away after fitting; a dopri5 model failed at its first predict after training."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch


@pytest.fixture
def without(monkeypatch):
    """Make ``import NAME`` fail (and ``find_spec(NAME)`` say absent) for the given names."""

    def hide(*names):
        real = importlib.util.find_spec
        for name in names:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, key)
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a)
        )

    return hide


def test_the_package_to_install_is_named(without):
    from bayesphys.meta_fm.coupling import ot_pairing
    from bayesphys.metrics import wasserstein

    without("ot")
    x = torch.randn(5, 2, dtype=torch.float64)
    for call in (lambda: wasserstein(x, x), lambda: ot_pairing(x, x)):
        with pytest.raises(ImportError, match="pip install pot"):
            call()


def test_fit_many_checks_its_netcdf_writer_before_fitting(without, tmp_path):
    from bayesphys import fit_many
    from tests.distributed import _toy

    without("h5netcdf")
    built = []

    def build(problem, seed=None):
        built.append(1)
        return _toy.build(problem, seed=seed)

    with pytest.raises(ImportError, match="pip install h5netcdf"):
        fit_many(_toy.problems(1), build, executor="sequential", out=tmp_path / "o", progress=False)
    assert built == [] and not (tmp_path / "o").exists()


# the saved model is untrained (no training is needed to check that it loads and predicts)
@pytest.mark.filterwarnings("ignore:MetaFlowMatching.predict. the model has not been trained")
def test_a_dopri5_model_is_refused_before_training_without_torchdiffeq(without, tmp_path):
    """Checked at fit (it failed at the first predict, after training); a saved dopri5 model
    still loads and predicts with rk4."""
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map
    from tests.tiny_models import TINY_MFM

    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)
    saved = MetaFlowMatching(data, **TINY_MFM, solver="dopri5", seed=0).save(tmp_path / "m.pt")
    without("torchdiffeq")
    model = MetaFlowMatching(data, **TINY_MFM, solver="dopri5", seed=0)
    with pytest.raises(ImportError, match="pip install torchdiffeq"):
        model.fit(steps=1, progress=False)
    assert model.steps_done == 0
    back = MetaFlowMatching.load(saved)
    src = data.source[data.splits["test"][0]]
    assert back.predict([src], solver="rk4")[0].shape == src.shape


def test_a_broken_install_keeps_its_own_error(monkeypatch):
    """Only the package itself missing is reworded; a module it fails to import is its own
    error (a broken numpy inside POT read as 'pip install pot')."""
    import importlib

    from bayesphys._checks import require

    def broken(name, *a, **k):
        raise ModuleNotFoundError("No module named 'numpy.core.x'", name="numpy.core.x")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="numpy.core.x"):
        require("ot", "pot", "wasserstein")
