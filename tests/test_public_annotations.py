"""Every public callable is annotated and its annotations resolve.

Walks the ``__all__`` of the package and its subpackages; for each public function and each
public method (and ``__init__``) of each public class defined in bayesphys, every parameter
other than ``self`` / ``cls`` / ``*args`` / ``**kwargs`` carries an annotation and so does the
return (``__init__`` excepted). ``typing.get_type_hints`` must then resolve them, with the
names a module imports only under ``if TYPE_CHECKING:`` in scope, as a type checker sees them
(bayesphys keeps heavy optional imports such as arviz or matplotlib out of import time).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
import textwrap
import typing
from functools import cache
from types import ModuleType

import pytest

MODULES = [
    "bayesphys",
    "bayesphys.gp_pde",
    "bayesphys.probconserv",
    "bayesphys.neural_process",
    "bayesphys.odil",
    "bayesphys.meta_fm",
    "bayesphys.diagnostics",
    "bayesphys.distributed",
    "bayesphys.problems",
    "bayesphys.metrics",
    "bayesphys.inference_data",
    "bayesphys.posterior",
]

#: packages bayesphys may run without (the ``distributed`` and ``atlas`` extras)
OPTIONAL = ("ray", "dask", "distributed", "nilearn")

_SKIP_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "bayesphys"


def _methods(cls: type) -> list[tuple[str, typing.Callable]]:
    """Public methods and ``__init__`` of ``cls``, own or inherited from a bayesphys base."""
    seen: dict[str, typing.Callable] = {}
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, raw in vars(klass).items():
            if name in seen or (name.startswith("_") and name != "__init__"):
                continue
            fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if inspect.isfunction(fn) and _ours(fn):
                seen[name] = fn
    return list(seen.items())


@cache
def public_callables() -> tuple[tuple[str, typing.Callable, bool], ...]:
    """``(qualified name, function, is __init__)`` for every public callable, each once."""
    out: dict[int, tuple[str, typing.Callable, bool]] = {}
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) and _ours(obj):
                for meth, fn in _methods(obj):
                    out.setdefault(
                        id(fn),
                        (f"{obj.__module__}.{obj.__qualname__}.{meth}", fn, meth == "__init__"),
                    )
            elif inspect.isfunction(obj) and _ours(obj):
                out.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj, False))
    return tuple(sorted(out.values(), key=lambda t: t[0]))


def _missing(fn: typing.Callable, is_init: bool) -> list[str]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    missing = [
        p.name
        for i, p in enumerate(params)
        if p.annotation is inspect.Parameter.empty
        and p.kind not in _SKIP_KINDS
        and not (i == 0 and p.name in ("self", "cls"))
    ]
    if not is_init and sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_the_walk_finds_the_public_callables():
    names = {name for name, _, _ in public_callables()}
    assert len(names) > 200
    for expected in (
        "bayesphys.inference_data.save_netcdf",
        "bayesphys._checkpoint.load_checkpoint",
        "bayesphys.distributed._runner.SequentialRunner.run",
        "bayesphys.problems.gpme.datasets.GPMEData.subset",
        "bayesphys.neural_process.grids.AdaptiveGrid.__init__",
    ):
        assert expected in names


def test_every_public_callable_is_annotated():
    offenders = [
        f"{name} ({', '.join(missing)})"
        for name, fn, is_init in public_callables()
        if (missing := _missing(fn, is_init))
    ]
    assert not offenders, f"{len(offenders)} public callables lack annotations:\n" + "\n".join(
        offenders
    )


class _OptionalMissing(Exception):
    pass


@cache
def _type_checking_names(modname: str) -> dict[str, typing.Any]:
    """The names ``modname`` binds under ``if TYPE_CHECKING:`` (run now that the package is
    imported, so that an import kept there to avoid a cycle resolves)."""
    module: ModuleType = sys.modules[modname]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # pragma: no cover
        return {}
    namespace = dict(vars(module))
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            block = textwrap.dedent("\n".join(ast.unparse(stmt) for stmt in node.body))
            try:
                exec(compile(block, f"<TYPE_CHECKING of {modname}>", "exec"), namespace)
            except ModuleNotFoundError as err:
                if (err.name or "").split(".")[0] not in OPTIONAL:
                    raise
                raise _OptionalMissing(err.name) from err
    return namespace


def test_the_annotations_of_every_public_callable_resolve():
    unresolved, skipped = [], []
    for name, fn, _ in public_callables():
        modname = inspect.unwrap(fn).__module__
        try:
            localns = _type_checking_names(modname)
        except _OptionalMissing as err:
            skipped.append(f"{name}: optional package {err} is not installed")
            continue
        try:
            typing.get_type_hints(fn, localns=localns)
        except NameError as err:
            missing = getattr(err, "name", None) or ""
            if missing in OPTIONAL and importlib.util.find_spec(missing) is None:
                skipped.append(f"{name}: its hint names {missing}, which is not installed")
                continue
            unresolved.append(f"{name}: NameError: {err}")
        except AttributeError as err:
            if "module 'arviz'" in str(err) and "InferenceData" in str(err):
                # ArviZ >= 1 (Python >= 3.12) returns xarray.DataTree and has no InferenceData
                skipped.append(f"{name}: this ArviZ has no InferenceData")
                continue
            if "module 'xarray'" in str(err) and "DataTree" in str(err):
                # xarray < 2024.10 (allowed: xarray >= 2024.6) has no DataTree
                skipped.append(f"{name}: this xarray has no DataTree")
                continue
            unresolved.append(f"{name}: AttributeError: {err}")
        except Exception as err:  # a malformed hint (e.g. `int | "Foo"` evaluated at runtime)
            unresolved.append(f"{name}: {type(err).__name__}: {err}")
    assert not unresolved, (
        f"{len(unresolved)} public callables have hints that do not resolve:\n"
        + "\n".join(unresolved)
    )
    if skipped:
        pytest.skip("hints not checked: " + "; ".join(skipped))
