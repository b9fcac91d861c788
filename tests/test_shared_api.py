"""One meaning per keyword across the components (API review of 2026-12-02; each test failed
on the code before): ``seed=None`` draws from torch's global stream wherever a seed is taken,
``progress`` is checked, data-at-construction models refuse ``fit(data)``, models expose
``device`` and ``dtype``."""

from __future__ import annotations

import pytest
import torch

from bayesphys import optimize
from bayesphys._checks import seed_or_draw
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.odil import DiscreteProblem, minimize
from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


def test_seed_or_draw_checks_a_seed_and_draws_none_from_the_global_stream():
    assert seed_or_draw("seed", 7) == 7
    with pytest.raises(TypeError, match="seed"):
        seed_or_draw("seed", 1.5)
    torch.manual_seed(0)
    a = seed_or_draw("seed", None)
    torch.manual_seed(0)
    assert seed_or_draw("seed", None) == a and seed_or_draw("seed", None) != a


@pytest.mark.parametrize("run", ["optimize", "minimize"])
def test_progress_must_be_a_bool(run):
    # a string such as "no" is truthy: it showed the bar
    with pytest.raises(TypeError, match="progress: expected True or False"):
        if run == "optimize":
            optimize(lambda: torch.tensor(0.0), steps=1, progress="no")
        else:
            prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"] - 1.0})
            minimize(prob, method="lm", steps=1, progress="no")


def _cgf(**kw):
    q = linear_gaussian_problem(seed=0)
    return ConjugateGaussianField(q["x"], q["idx"], q["y"], noise=0.1, **kw)


def test_the_conjugate_field_checks_fit_and_seed():
    m = _cgf(dtype=torch.float32)
    assert m.dtype == torch.float32
    with pytest.raises(ValueError, match="data: expected None"):
        m.fit(data={"y": 1}, steps=1, progress=False)  # was ignored
    with pytest.raises(ValueError, match="lr"):
        m.fit(steps=1, lr=-1.0, progress=False)  # torch's "Invalid learning rate"
    for bad in ("a", 1.5):
        with pytest.raises(TypeError, match="seed"):
            _cgf(seed=bad)  # kept and saved


@pytest.fixture(scope="module")
def mfm_pair():
    data = linear_map(dim=2, n_train=4, n_cal=0, n_test=2, n_points=40, seed=0)
    ens = MFMEnsemble(data, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=2, progress=False)
    return data, ens


def test_meta_fm_posteriors_take_seed_none(mfm_pair):
    data, ens = mfm_pair
    pops = data.subset("test").source
    model: MetaFlowMatching = ens.models[0]
    torch.manual_seed(0)
    a = model.posterior(pops, num_samples=2, seed=None).draws  # was a TypeError
    b = model.posterior(pops, num_samples=2, seed=None).draws
    torch.manual_seed(0)
    assert torch.equal(a, model.posterior(pops, num_samples=2, seed=None).draws)
    assert not torch.equal(a, b)  # the global stream advanced
    torch.manual_seed(1)
    e = ens.posterior(pops, num_samples=1, seed=None).draws
    torch.manual_seed(1)
    assert torch.equal(e, ens.posterior(pops, num_samples=1, seed=None).draws)
    assert len(ens.predict_members(pops, seed=None)) == 2


def test_an_ensemble_exposes_its_device_and_dtype(mfm_pair):
    _, ens = mfm_pair
    assert ens.device == ens.models[0].device and ens.dtype == ens.models[0].dtype


def test_an_ensemble_can_be_built_unseeded():
    data = linear_map(dim=2, n_train=4, n_cal=0, n_test=0, n_points=40, seed=0)
    torch.manual_seed(0)
    ens = MFMEnsemble(data, members=2, seed=None, **TINY_MFM)  # was a TypeError
    assert ens.seed is None and all(m.seed is None for m in ens.models)
    w0 = [p.detach().clone() for p in ens.models[0].net.parameters()]
    w1 = list(ens.models[1].net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(w0, w1))


def test_the_api_page_lists_the_core_under_its_public_names():
    """docs/api.md rendered the private modules (their helpers too, under private paths);
    the core's public names defined in private modules are listed as ``bayesphys.NAME``."""
    from pathlib import Path

    import bayesphys

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    assert "::: bayesphys._" not in page
    listed = {line.strip()[2:] for line in page.splitlines() if line.strip().startswith("- ")}
    private = [
        name
        for name in bayesphys.__all__
        if name != "__version__"
        and any(part.startswith("_") for part in getattr(bayesphys, name).__module__.split("."))
    ]
    import importlib

    shown = [line.split()[1] for line in page.splitlines() if line.startswith("::: ")]
    exported = set()  # names a rendered public module lists in its __all__
    for mod in shown:
        try:
            exported |= set(getattr(importlib.import_module(mod), "__all__", ()))
        except ImportError:  # an object path such as a.b.func
            continue
    missing = sorted(set(private) - listed - exported)
    assert private and not missing, missing


def test_missing_package_is_exported_and_is_what_a_missing_optional_package_raises():
    """``MissingPackage`` was importable only from a private module, so a user could not write
    ``except bayesphys.MissingPackage``."""
    import bayesphys
    from bayesphys._checks import require

    assert "MissingPackage" in bayesphys.__all__
    assert issubclass(bayesphys.MissingPackage, ImportError)
    with pytest.raises(bayesphys.MissingPackage, match="pip install no-such-pkg"):
        require("bayesphys_no_such_module", "no-such-pkg", "this test")
