"""Requirements traceability (review 76): the cross-cutting contracts of the architecture notes
that no test held as a whole.

* "Every model follows one shape of API": ``Component(problem_or_config, ..., device=None,
  dtype=None, seed=None)``, ``fit(data=None, *, steps=..., progress=True) -> FitResult(
  loss_history, seconds, converged)``, ``posterior(...)``, ``save(path)`` and
  ``Component.load(path)``, on every model class the five components export.
* "Benchmark results format": the committed ``benchmarks/results/COMPONENT.json`` of every
  ``bayesphys bench`` / ``bayesphys calibrate`` target has the header and rows the notes fix.
* "every posterior's calibration is measured (SBC, coverage; ``bayesphys calibrate``)": the
  committed calibration table has rows, with SBC and coverage, for the core and each component.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import re
from pathlib import Path

import pytest

from bayesphys import FitResult
from bayesphys.cli import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: the model classes of the five components (each a ``fit`` / ``posterior`` / ``save`` /
#: ``load`` class); a new one exported by a component is found by :func:`_model_classes` too
MODEL_CLASSES = {
    "gp_pde": {"GPPDESolver"},
    "probconserv": {"ProbConserv"},
    "neural_process": {"RandomGridNP"},
    "odil": {"GliomaModel"},
    "meta_fm": {"MetaFlowMatching", "MFMEnsemble"},
}


def _model_classes() -> list[tuple[str, type]]:
    """``(component, class)`` for every class a component exports with a ``fit`` method."""
    found = []
    for comp in COMPONENTS:
        mod = importlib.import_module(f"bayesphys.{comp}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) and callable(getattr(obj, "fit", None)):
                found.append((comp, obj))
    return found


def test_the_model_classes_are_those_of_the_five_components():
    found = {}
    for comp, cls in _model_classes():
        found.setdefault(comp, set()).add(cls.__name__)
    assert found == MODEL_CLASSES


def test_fit_result_holds_the_loss_history_seconds_and_converged():
    names = [f.name for f in dataclasses.fields(FitResult)]
    assert names[:3] == ["loss_history", "seconds", "converged"], names
    res = FitResult(loss_history=[1.0, 0.5], seconds=0.1, converged=True)
    assert (res.loss_history, res.seconds, res.converged) == ([1.0, 0.5], 0.1, True)


@pytest.mark.parametrize("cls", [cls for _, cls in _model_classes()], ids=lambda c: c.__name__)
def test_every_model_class_follows_the_one_shape_of_api(cls):
    init = inspect.signature(cls).parameters
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for name in ("device", "dtype", "seed"):
        assert name in init and init[name].kind in keyword, f"{cls.__name__}(..., {name}=)"
    # device=None and dtype=None: the defaults the device / dtype resolution picks
    assert init["device"].default is None and init["dtype"].default is None, cls.__name__
    fit = list(inspect.signature(cls.fit).parameters.values())[1:]
    assert fit and fit[0].name == "data" and fit[0].default is None, f"{cls.__name__}.fit(data=None"
    params = {p.name: p for p in fit}
    assert params["steps"].kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.__name__}.fit(*, steps)"
    assert params["progress"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["progress"].default is True, f"{cls.__name__}.fit(progress=True)"
    ret = inspect.signature(cls.fit).return_annotation
    assert ret in (FitResult, "FitResult"), f"{cls.__name__}.fit -> {ret}"
    assert callable(getattr(cls, "posterior", None)), f"{cls.__name__}.posterior"
    assert callable(getattr(cls, "save", None)), f"{cls.__name__}.save"
    assert isinstance(inspect.getattr_static(cls, "load"), classmethod), f"{cls.__name__}.load"


#: the header keys of a results file (architecture notes, "Benchmark results format")
HEADER = ("component", "command", "quick", "date", "torch", "device", "threads", "rows")


def _format_problems(payload: dict, stem: str) -> list[str]:
    """What in the committed results file ``stem.json`` breaks the results format."""
    bad = [f"no header key {k!r}" for k in HEADER if k not in payload]
    if bad:
        return bad
    if payload["component"] != stem:
        bad.append(f"component {payload['component']!r} is not the file's name")
    if payload["quick"] is not False:  # the committed run is the full one
        bad.append("quick: the committed file is not a full run")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(payload["date"])):
        bad.append(f"date {payload['date']!r} is not YYYY-MM-DD")
    if not re.fullmatch(r"\d+\.\d+\.\d+.*", str(payload["torch"])):
        bad.append(f"torch {payload['torch']!r} is not a version")
    if not payload["rows"]:
        bad.append("no rows")
    for i, row in enumerate(payload["rows"]):
        missing = {"problem", "setting", "method", "metrics", "anchor"} - set(row)
        if missing:
            bad.append(f"row {i}: no {sorted(missing)}")
            continue
        if not (isinstance(row["problem"], str) and isinstance(row["method"], str)):
            bad.append(f"row {i}: problem and method are not strings")
        if not isinstance(row["setting"], dict):
            bad.append(f"row {i}: setting is not an object")
        for group, metrics in [("metrics", row["metrics"])] + (
            [("anchor metrics", row["anchor"]["metrics"])]
            if isinstance(row["anchor"], dict) and "metrics" in row["anchor"]
            else []
        ):
            for k, v in metrics.items():
                if k != k.lower():
                    bad.append(f"row {i}: {group} key {k!r} is not lower-case")
                if not (v is None or isinstance(v, (int, float)) or v in ("nan", "inf", "-inf")):
                    bad.append(f"row {i}: {group} {k!r} = {v!r} is not a number")
        anchor = row["anchor"]
        if anchor is not None and not (
            isinstance(anchor, dict) and set(anchor) == {"source", "metrics"}
        ):
            bad.append(f"row {i}: anchor is neither null nor {{source, metrics}}")
    return bad


@pytest.mark.parametrize("stem", [*COMPONENTS, "scale_out", "calibration"])
def test_the_committed_results_of_every_bench_target_follow_the_format(stem):
    # `bayesphys bench COMPONENT` (and `calibrate`) write DIR/COMPONENT.json; the committed
    # full runs are those files, read by the docs tables and by users
    path = RESULTS / f"{stem}.json"
    assert path.is_file(), f"no committed {path.name}"
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert _format_problems(payload, stem) == []


def test_the_format_check_finds_what_breaks_the_format():
    good = {
        "component": "x",
        "command": "bayesphys bench x",
        "quick": False,
        "date": "2026-12-01",
        "torch": "2.13.0",
        "device": "cpu",
        "threads": 2,
        "rows": [
            {
                "problem": "p",
                "setting": {"k": 5},
                "method": "m",
                "metrics": {"mse": 1.0},
                "anchor": None,
            }  # fmt: skip
        ],
    }
    assert _format_problems(good, "x") == []
    row = good["rows"][0]
    for broken in (
        {**good, "quick": True},
        {**good, "component": "y"},
        {**good, "rows": [{**row, "metrics": {"MSE": 1.0}}]},
        {**good, "rows": [{**row, "anchor": {"metrics": {}}}]},
        {**good, "rows": [{**row, "setting": "k=5"}]},
        {k: v for k, v in good.items() if k != "threads"},
    ):
        assert _format_problems(broken, "x"), broken


def test_every_component_and_the_core_has_a_measured_calibration():
    # the developers' guide: every posterior's calibration is measured (SBC, coverage), by
    # `bayesphys calibrate COMPONENT`; the committed table holds each target's rows
    payload = json.loads((RESULTS / "calibration.json").read_text(encoding="utf-8"))
    measured: dict[str, list[dict]] = {}
    for row in payload["rows"]:
        measured.setdefault(row["setting"].get("component"), []).append(row["metrics"])
    assert set(measured) == {"core", *COMPONENTS}
    for comp, rows in measured.items():
        for metrics in rows:
            for key in ("coverage90", "sbc_pvalue"):
                value = metrics.get(key)
                assert isinstance(value, (int, float)) and math.isfinite(value), (comp, key)
                assert 0.0 <= value <= 1.0, (comp, key, value)


def test_ci_installs_torch_first_then_everything_and_runs_the_test_command():
    # the developers' guide: `bash .ci/run` installs everything (torch==2.13.0 first), lints
    # with ruff and runs the README's test command
    lines = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    installs = [i for i, ln in enumerate(lines) if "pip install" in ln]
    assert installs and "torch==2.13.0" in lines[installs[0]].split(), lines[installs[0]]
    everything = [i for i in installs if '-e ".[dev,docs,distributed]"' in lines[i]]
    assert everything and everything[0] > installs[0]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[dev]" && pytest' in readme  # the README's test command
    tests = [i for i, ln in enumerate(lines) if re.match(r"(python -m )?pytest\b", ln)]
    assert tests and tests[0] > everything[0]
    assert any(ln.startswith("ruff check") for ln in lines)
    assert any(ln.startswith("ruff format --check") for ln in lines)
