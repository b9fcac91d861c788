"""Every public callable has a docstring, and one that takes or returns tensors states their
shapes. "Public": each entry of the ``__all__`` of ``bayesphys`` and of its public subpackages
(as tests/test_api_docs.py walks them) that is a function or a class defined in the package,
and the public methods and properties of those classes (inherited ones from the package's own
base classes included). The API reference renders these docstrings.

The checkable part of the rule: a callable whose signature annotates a parameter or its return
as ``Tensor`` (``torch.Tensor``, ``np.ndarray``, ``NDArray``, inside ``list[...]``,
``X | None`` and so on) has a shape in its docstring (the class docstring and ``__init__``'s
together for a class): a bracketed dimension list such as ``[N, L, K]``, ``[*grid]``,
``[p_1..p_d]``, ``[2 + K d]`` or ``[]`` (0-dim), or a parenthesised one in double backquotes
such as ``(nt, nx)``. Indexing (``x[i]``) and numeric intervals (``[0, 1]``) do not count.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator

import pytest

from tests.test_api_docs import _public_packages

# Public callables whose docstring may lack a shape, each with its reason. Empty now: every
# public callable annotated with tensors states their shapes. An entry that no longer lacks
# one is refused (test_the_allow_list_names_only_real_gaps), so the list cannot go stale.
SHAPE_EXEMPT: dict[str, str] = {}

_TENSOR = re.compile(r"\b(Tensor|ndarray|NDArray)\b")
# one dimension: a name, a number, *name, *, ... or a short expression of them (2 + K d,
# p_1..p_d, bins**dim)
_TOKEN = r"(?:\*?[A-Za-z_0-9'.]+|\*|\.\.\.)"
_DIM = rf"{_TOKEN}(?:\s*(?:[-+/]|\*\*?)\s*{_TOKEN}|\s+{_TOKEN})*"
_SHAPE = re.compile(
    rf"\[\s*\]|\[\s*{_DIM}(?:\s*,\s*{_DIM})*\s*,?\s*\]"  # [N, L, K], [*grid], []
    rf"|``\(\s*{_DIM}\s*,(?:\s*{_DIM}\s*,?)*\s*\)``"  # ``(nt, nx)``, ``(nx,)``
)
_NUMBER = re.compile(r"[-+]?[0-9.]+(?:e[-+]?[0-9]+)?")


def shape_in(doc: str) -> str | None:
    """The first dimension list in ``doc`` (``None`` when there is none)."""
    for m in _SHAPE.finditer(doc):
        text, start = m.group(), m.start()
        if text.startswith("[") and start and (doc[start - 1].isalnum() or doc[start - 1] in "_])"):
            continue  # indexing: x[i], a[0][1]
        parts = [p.strip() for p in text.strip("`").strip("[]()").split(",") if p.strip()]
        if (
            len(parts) > 1
            and all(_NUMBER.fullmatch(p) for p in parts)
            and any("." in p or p.startswith("-") or p == "0" for p in parts)
        ):
            continue  # a numeric interval [0, 1], [-1, 1], (0.5, 0.9)
        return text
    return None


def _ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("bayesphys")


def public_callables() -> Iterator[tuple[str, str, object]]:
    """``(qualified name, docstring, what the signature is read from)`` of each public
    callable; the signature object is ``None`` for a class without its own ``__init__``."""
    seen: set = set()
    for package in _public_packages():
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not _ours(obj):
                continue
            seen.add(id(obj))
            qual = f"{package}.{name}"
            if inspect.isclass(obj):
                init = vars(obj).get("__init__")
                doc = inspect.getdoc(obj) or ""
                if init is not None and init.__doc__:
                    doc += "\n" + (inspect.getdoc(init) or "")
                yield qual, doc, init
                for klass in obj.__mro__:
                    if not _ours(klass):
                        continue
                    for attr, value in vars(klass).items():
                        if attr.startswith("_") or (id(obj), attr) in seen:
                            continue
                        seen.add((id(obj), attr))
                        if isinstance(value, property):
                            func, doc = value.fget, inspect.getdoc(value)
                        else:
                            func = getattr(value, "__func__", value)
                            if not callable(func):
                                continue
                            doc = inspect.getdoc(getattr(obj, attr))
                        yield f"{qual}.{attr}", doc or "", func
            elif callable(obj):
                yield qual, inspect.getdoc(obj) or "", obj


def takes_tensors(func: object) -> bool:
    """Whether ``func``'s signature annotates a parameter or its return with a tensor type."""
    if func is None:
        return False
    try:
        sig = inspect.signature(func, eval_str=False)
    except (TypeError, ValueError):
        return False
    notes = [p.annotation for p in sig.parameters.values()] + [sig.return_annotation]
    return any(
        a is not inspect.Parameter.empty and _TENSOR.search(a if isinstance(a, str) else repr(a))
        for a in notes
    )


def shape_gaps() -> list[str]:
    return sorted(
        qual
        for qual, doc, func in public_callables()
        if takes_tensors(func) and shape_in(doc) is None
    )


@pytest.mark.parametrize(
    "text",
    [
        "``draws [N, L, K]``",
        "returns ``[*grid]``",
        "``(nt, nx)`` grid",
        "event ``(nx,)``",
        "a 0-dim ``[]`` loss",
        "``theta [2 + K d]``",
        "``[p_1..p_d]``",
        "``score [bins**dim]``",
        "``z [*, root_dim]``",
        "``[..., n, ...]``",
    ],
)
def test_a_shape_is_recognised(text):
    assert shape_in(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "no shape here",
        "values in [0, 1]",
        "in [-1, 1]",
        "``xs[i]``",
        "the pair (truth, draws)",
        "``(0.5, 0.9)``",
    ],
)
def test_prose_indexing_and_intervals_are_not_shapes(text):
    assert shape_in(text) is None


def test_the_check_sees_a_missing_shape():
    import torch

    def bare(x: torch.Tensor) -> torch.Tensor:
        """Doubles ``x``."""
        return 2 * x

    def stated(x: torch.Tensor) -> torch.Tensor:
        """Doubles ``x [*]`` (any shape, the same out)."""
        return 2 * x

    def untyped(x):
        """Not annotated: not checked."""

    assert takes_tensors(bare) and takes_tensors(stated) and not takes_tensors(untyped)
    assert shape_in(inspect.getdoc(bare)) is None
    assert shape_in(inspect.getdoc(stated)) == "[*]"
    # string annotations, as `from __future__ import annotations` leaves them
    untyped.__annotations__ = {"x": "Tensor | None", "return": "list[np.ndarray]"}
    assert takes_tensors(untyped)
    untyped.__annotations__ = {"x": "int", "return": "dict[str, float]"}
    assert not takes_tensors(untyped)


def test_the_walk_reaches_functions_classes_methods_and_properties():
    names = {qual for qual, _, _ in public_callables()}
    assert {
        "bayesphys.GaussianPosterior",
        "bayesphys.GaussianPosterior.log_prob",
        "bayesphys.SamplePosterior.sample",
        "bayesphys.diagnostics.standardised_residuals",
        "bayesphys.diagnostics.SimulationRecord.n_sims",
        "bayesphys.odil.face_average",
        "bayesphys.problems.gpme.stefan_constants",
    } <= names
    assert len(names) > 300


def test_every_public_callable_has_a_docstring():
    missing = sorted(qual for qual, doc, _ in public_callables() if not doc.strip())
    assert not missing, "public callables without a docstring:\n" + "\n".join(missing)


def test_every_public_callable_with_tensors_states_their_shapes():
    gaps = [q for q in shape_gaps() if q not in SHAPE_EXEMPT]
    assert not gaps, (
        "public callables annotated with tensors whose docstring states no shape (write one, "
        "e.g. ``x [N, d]`` -> ``[N]``, or ``(nt, nx)``):\n" + "\n".join(gaps)
    )


def test_the_allow_list_names_only_real_gaps():
    stale = sorted(set(SHAPE_EXEMPT) - set(shape_gaps()))
    assert not stale, "SHAPE_EXEMPT entries that now state a shape (remove them):\n" + "\n".join(
        stale
    )
