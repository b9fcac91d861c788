"""The API reference (docs/api.md, rendered by mkdocstrings) shows every public name: each entry of
the ``__all__`` of ``bayesphys`` and of its public subpackages has an anchor on the built page
(names that are also a submodule's name, module constants without a docstring and the
subpackages' own extras were missing before), and renders the docstrings' reST roles as math and
code (``docs/_griffe_roles.py``; ``:math:`` and ``:func:`` were printed raw before)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

import bayesphys

ROOT = Path(__file__).resolve().parents[1]


def _public_packages() -> list[str]:
    names = ["bayesphys"]
    for info in pkgutil.walk_packages(bayesphys.__path__, "bayesphys."):
        if info.ispkg and not any(p.startswith("_") for p in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def _undocumented(anchors: set[str]) -> list[str]:
    gaps = []
    for package in _public_packages():
        for name in importlib.import_module(package).__all__:
            if name == "__version__":
                continue
            if not any(a == name or a.endswith("." + name) for a in anchors):
                gaps.append(f"{package}.{name}")
    return gaps


def test_the_check_sees_a_missing_name():
    gaps = _undocumented(set())
    assert {"bayesphys.FitResult", "bayesphys.diagnostics.pit_ecdf"} <= set(gaps)
    assert "bayesphys.FitResult" not in _undocumented({"bayesphys.FitResult"})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The docs site, built once for the checks of its API page."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    if not (ROOT / "mkdocs.yml").is_file():
        pytest.skip("not a source checkout")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env=env,
        capture_output=True,
    )
    return site


def test_every_public_name_is_in_the_api_reference(site):
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([^"]+)"', html))
    assert len(anchors) > 500
    gaps = _undocumented(anchors)
    assert not gaps, "public names missing from docs/api.md:\n" + "\n".join(gaps)


def test_the_api_reference_renders_the_docstrings_rest_roles(site):
    """``:math:`` and ``.. math::`` are math (arithmatex, typeset by MathJax) and ``:func:``,
    ``:class:``... are code or links (docs/_griffe_roles.py); they were printed raw."""
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    for raw in (":math:", ".. math::", ":func:", ":class:", ":meth:", ":attr:", ":data:", ":mod:"):
        count = html.count(raw)
        assert count == 0, f"{raw} {count} times on the API page"
    assert "$$" not in html and "&lt;autoref" not in html
    spans = re.findall(r'<span class="arithmatex">(.*?)</span>', html, flags=re.DOTALL)
    assert len(spans) > 500
    assert not [s for s in spans if "<" in s], "markup inside inline math"
    # a docstring's math, backslashes and all: GaussianPosterior's covariance
    assert '<span class="arithmatex">\\(\\mathcal N(\\mu, \\Sigma)\\)</span>' in html
    assert html.count('<div class="arithmatex">') >= 10
    assert html.count('class="autorefs autorefs-internal"') > 300
    # the helper scripts under docs/ are not copied into the site
    assert not list(site.glob("*.py"))


def _reads_as_prose(text: str) -> bool:
    text = text.strip()
    if text.endswith((".", ";", ":", ",")) or "; " in text or re.search(r"\w: ", text):
        return True
    flat = re.sub(r"\[[^\]]*\]|\{[^}]*\}|\([^)]*\)", "", text)
    return len([word for word in flat.split() if word not in ("|", "or")]) > 6


def test_the_api_reference_shows_no_prose_as_item_names_or_types(site):
    """The name and type cells of the Parameters / Returns / Raises / Attributes tables are
    code; docstrings written as ``name: text`` or with prose under ``Returns`` showed their
    sentences there (tests/test_docstring_sections.py checks the docstrings themselves)."""
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    cells = re.findall(r"<td>\s*<code>(.*?)</code>\s*</td>", html, flags=re.DOTALL)
    assert len(cells) > 500
    texts = [unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells]
    prose = [text for text in texts if _reads_as_prose(text)]
    assert not prose, "prose in item name / type cells:\n" + "\n".join(prose)
    # a reST list item's paragraph after its math stays in the item, and the next item is one
    assert re.search(r"<li>\s*<p><strong>Test\.</strong>", html)


def test_the_api_reference_shows_the_new_name_of_renamed_arguments(site):
    """The entry points whose draw count was ``num_draws`` or ``n_samples`` show ``num_samples``
    in their rendered signatures (the old keyword, still accepted through
    ``bayesphys._renamed.renamed_kwargs``, is on the page only in the note on renamed
    arguments)."""
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html)))
    for signature in (
        "plot_populations(post, *, truth=None, source=None, batch_index=None, dims=(0, 1), "
        "num_samples=None,",
        "field_posterior(problem, x, field, *, dense_max=4096, num_samples=64,",
        "nonnegative_posterior(post, x, mass, num_samples=500, *,",
        "monotone_posterior(post, x, mass, num_samples=500, *,",
        "shock_posterior(post, x, num_samples=500, *,",
        "posterior(x, treatment=None, *, num_samples=8,",  # MetaFlowMatching
        "posterior(x, treatment=None, *, num_samples=1,",  # MFMEnsemble
    ):
        assert signature in text
    assert "num_draws=" not in text
    assert "## Renamed arguments" in (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
