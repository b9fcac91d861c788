"""Every warning of the package takes its stack level from ``user_stacklevel``: a fixed number is
right for one call path only (the package's own loops, hooks and examples moved the line)."""

from __future__ import annotations

import ast
from pathlib import Path

import bayesphys

PACKAGE = Path(bayesphys.__file__).parent


def _is_warn(call: ast.Call) -> bool:
    f = call.func
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "warn"
        and (isinstance(f.value, ast.Name) and f.value.id == "warnings")
    )


def _level_is_user_stacklevel(call: ast.Call) -> bool:
    for kw in call.keywords:
        if kw.arg == "stacklevel":
            v = kw.value
            return (
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id == "user_stacklevel"
                and not v.args
            )
    return False


def test_every_package_warning_uses_user_stacklevel():
    fixed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and _is_warn(node)
                and not _level_is_user_stacklevel(node)
            ):
                fixed.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not fixed, f"warnings.warn without stacklevel=user_stacklevel(): {fixed}"
