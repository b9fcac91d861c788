"""Every warning of the package is a :class:`bayesphys.BayesphysWarning` (and still the standard
category it names), so that a filter can single the package's warnings out: the test suite's
``error::bayesphys.BayesphysWarning`` (pyproject.toml) fails a test on a package warning it
does not expect, and leaves other libraries' warnings alone."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

import bayesphys
from bayesphys._model import warn_untrained

PACKAGE = Path(bayesphys.__file__).parent
_OURS = {
    "BayesphysUserWarning": UserWarning,
    "BayesphysRuntimeWarning": RuntimeWarning,
    "BayesphysDeprecationWarning": DeprecationWarning,
    "BayesphysFutureWarning": FutureWarning,
}


def _category(call: ast.Call) -> str:
    if len(call.args) > 1:
        return ast.unparse(call.args[1])
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == "category"), "")


def test_every_package_warning_has_a_package_category():
    other = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            f = getattr(node, "func", None)
            if (
                isinstance(f, ast.Attribute)
                and f.attr == "warn"
                and isinstance(f.value, ast.Name)
                and f.value.id == "warnings"
                and _category(node) not in _OURS
            ):
                other.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {_category(node)}")
    assert not other, f"warnings.warn with a category not the package's: {other}"


@pytest.mark.parametrize(("name", "standard"), sorted(_OURS.items()))
def test_each_category_is_the_package_s_and_the_standard_one(name, standard):
    cls = getattr(bayesphys, name)
    assert issubclass(cls, bayesphys.BayesphysWarning) and issubclass(cls, standard)
    # a runtime warning is not a user warning, nor the reverse: filters on each stay apart
    assert [s for s in _OURS.values() if issubclass(cls, s)] == [standard]


def test_a_package_warning_is_caught_by_its_standard_category():
    with pytest.warns(UserWarning, match="has not been trained") as got:
        warn_untrained("posterior", 0)
    assert got[0].category is bayesphys.BayesphysUserWarning


def test_the_suite_raises_the_package_s_warnings_and_no_other(request):
    if request.config.getoption("pythonwarnings"):
        pytest.skip("-W on the command line overrides pyproject.toml's filterwarnings")
    with pytest.raises(bayesphys.BayesphysUserWarning, match="has not been trained"):
        warn_untrained("posterior", 0)
    with warnings.catch_warnings(record=True) as got:
        warnings.warn("another library's", UserWarning, stacklevel=1)
    assert [str(w.message) for w in got] == ["another library's"]
