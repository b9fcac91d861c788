"""Every public callable carries type hints (the developers' guide: type hints on public
functions): each function, method, property and constructor reached from a public module's
``__all__`` annotates every parameter but ``self`` / ``cls`` and, ``__init__`` aside, its return."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import bayesphys


def _public_modules() -> list[str]:
    names = ["bayesphys"]
    for info in pkgutil.walk_packages(bayesphys.__path__, "bayesphys."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def _callables(obj: object) -> list:
    if inspect.isfunction(obj):
        return [obj]
    if not inspect.isclass(obj):
        return []
    out = []
    for attr, value in vars(obj).items():
        if attr.startswith("_") and attr != "__init__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            value = value.fget
        if inspect.isfunction(value) and value.__module__.startswith("bayesphys"):
            out.append(value)
    return out


def _missing(fn) -> list[str]:
    sig = inspect.signature(fn)
    gaps = [
        p
        for p, v in sig.parameters.items()
        if v.annotation is inspect.Parameter.empty and p not in ("self", "cls")
    ]
    if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
        gaps.append("return")
    return gaps


def test_every_public_callable_is_annotated():
    seen, gaps = set(), []
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            for fn in _callables(getattr(module, name)):
                key = (fn.__module__, fn.__qualname__)
                if key in seen:
                    continue
                seen.add(key)
                if missing := _missing(fn):
                    gaps.append(f"{fn.__module__}.{fn.__qualname__}: {missing}")
    assert len(seen) > 500, f"only {len(seen)} public callables found: the walk is broken"
    assert not gaps, "public callables without type hints:\n" + "\n".join(gaps)


def test_the_check_sees_a_missing_hint():
    def untyped(a, b: int):
        return a

    def typed(a: int) -> int:
        return a

    assert _missing(untyped) == ["a", "return"]
    assert _missing(typed) == []
