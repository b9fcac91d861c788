"""Every ``from bayesphys... import name`` in the repository names something that exists.

Read with :mod:`ast`, so imports inside functions are checked too: a benchmark's function-level
import of a private helper that moved (``_init_worker`` after the split of ``executors.py``) used
to fail only when that branch of the benchmark ran. The benchmark scripts' imports of their
helper modules (``from _odil_common import ...``) are checked the same way, and so are the
functions a benchmark reaches by name (``call_script(__file__, "run_task")``, a worker's
entry point, or ``ODIL.coarsened_model`` on another script's module).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ("bayesphys", "tests", "benchmarks", "examples", "docs")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every absolute ``from module import names`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.lineno, node.module, [a.name for a in node.names if a.name != "*"])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]


def _missing(module: str, names: list[str]) -> list[str]:
    """The names that ``module`` neither defines nor has as a submodule."""
    mod = importlib.import_module(module)
    gone = []
    for name in names:
        if hasattr(mod, name):
            continue
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            gone.append(name)
    return gone


def _files() -> list[Path]:
    return [p for t in TREES if (REPO / t).is_dir() for p in sorted((REPO / t).rglob("*.py"))]


def test_the_reader_finds_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from bayesphys.x import y, z\n")
    assert _imports(src) == [(4, "bayesphys.x", ["y", "z"])]


def test_missing_names_are_reported():
    assert _missing("bayesphys", ["GaussianPosterior", "no_such_name"]) == ["no_such_name"]
    assert _missing("bayesphys", ["diagnostics"]) == []  # a submodule counts


def test_every_package_import_resolves():
    files = _files()
    if not (REPO / "benchmarks").is_dir():
        pytest.skip("not a source checkout (no benchmarks/ beside tests/)")
    broken = []
    for path in files:
        for line, module, names in _imports(path):
            if module.split(".")[0] != "bayesphys":
                continue
            gone = _missing(module, names)
            if gone:
                broken.append(f"{path.relative_to(REPO)}:{line}: {module} has no {gone}")
    assert not broken, "\n".join(broken)


def test_benchmark_helper_imports_resolve(monkeypatch):
    bench = REPO / "benchmarks"
    if not bench.is_dir():
        pytest.skip("not a source checkout")
    local = {p.stem for p in bench.glob("*.py")}
    monkeypatch.syspath_prepend(str(bench))
    before = set(sys.modules)
    broken = []
    try:
        for path in sorted(bench.glob("*.py")):
            for line, module, names in _imports(path):
                if module not in local:
                    continue
                gone = _missing(module, names)
                if gone:
                    broken.append(f"{path.name}:{line}: {module} has no {gone}")
    finally:  # leave no benchmark module behind (odil.py would shadow the odil package)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in local:
                del sys.modules[name]
    assert not broken, "\n".join(broken)


# functions that reach a benchmark script's function by its name: (name, index of the script
# path, index of the function name) among the positional arguments; smoke_ablation_main runs
# the script's run_task
_BY_NAME = {"call_script": (0, 1), "run_script_tasks": (0, 1)}
_RUNS_RUN_TASK = ("smoke_ablation_main",)


def _func_name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def _py_names(node: ast.AST) -> list[str]:
    """The ``*.py`` file names written as string constants under ``node``."""
    return [
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".py")
    ]


def _dispatched_names(path: Path) -> list[tuple[int, str, str]]:
    """(line, script file, name) of every name a benchmark script reaches in a script module
    at run time: ``call_script(__file__, "run_task")`` (also inside ``functools.partial``),
    ``run_script_tasks(__file__, "fit_one", ...)``, ``smoke_ablation_main`` (``run_task``), and
    ``ODIL.coarsened_model`` where ``ODIL`` is a script module loaded from ``"odil.py"``
    (``script_module(...)`` or a local function that loads that file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    out, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            called = _func_name(node.value.func)
            files = _py_names(node.value) if called == "script_module" else []
            if (
                not files
                and called in funcs
                and "spec_from_file_location" in ast.dump(funcs[called])
            ):
                files = _py_names(funcs[called])
            if len(files) == 1:
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        aliases[t.id] = files[0]
        if not isinstance(node, ast.Call):
            continue
        name, args = _func_name(node.func), list(node.args)
        if name == "partial" and args and _func_name(args[0]) in _BY_NAME:
            name, args = _func_name(args[0]), args[1:]
        if name in _RUNS_RUN_TASK:
            out.append((node.lineno, path.name, "run_task"))
        elif name in _BY_NAME:
            i, j = _BY_NAME[name]
            own = len(args) > j and isinstance(args[i], ast.Name) and args[i].id == "__file__"
            if own and isinstance(args[j], ast.Constant):
                out.append((node.lineno, path.name, args[j].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in aliases:
                out.append((node.lineno, aliases[node.value.id], node.attr))
    return out


def test_the_dispatch_reader_finds_names_and_script_modules(tmp_path):
    src = tmp_path / "s.py"
    src.write_text(
        "import functools\n"
        "ODIL = script_module(str(Path(__file__).with_name('odil.py')))\n"
        "def _load():\n"
        "    return importlib.util.spec_from_file_location('x', HERE / 'meta_fm.py')\n"
        "def main():\n"
        "    bench = _load()\n"
        "    bench.problem_data\n"
        "    fn = functools.partial(call_script, __file__, 'run_task', quick=True)\n"
        "    run_script_tasks(__file__, 'fit_one', [], 1)\n"
        "    return ODIL._fit_case\n"
    )
    assert sorted(_dispatched_names(src)) == [
        (7, "meta_fm.py", "problem_data"),
        (8, "s.py", "run_task"),
        (9, "s.py", "fit_one"),
        (10, "odil.py", "_fit_case"),
    ]


def test_benchmark_functions_reached_by_name_exist():
    """A function a benchmark reaches by its name (worker entry points, another script's
    helpers through its module) exists: a rename otherwise fails only in a full or
    multi-process run (``--jobs 2``)."""
    from bayesphys._bench import script_module

    bench = REPO / "benchmarks"
    if not bench.is_dir():
        pytest.skip("not a source checkout")
    found, broken = 0, []
    for path in sorted(bench.glob("*.py")):
        for line, script, name in _dispatched_names(path):
            found += 1
            if not hasattr(script_module(str(bench / script)), name):
                broken.append(f"{path.name}:{line}: {script} defines no {name!r}")
    assert found >= 10  # the reader still sees the scripts' dispatch
    assert not broken, "\n".join(broken)
