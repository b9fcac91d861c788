"""``docs/_griffe_roles.py``: the API reference shows the docstrings' reST roles as math and code.

The docstrings keep Sphinx roles (``:math:``, ``.. math::``, ``:func:`` ...) for ``help()``;
before this extension the site printed them raw (``:math:`` followed by code-formatted LaTeX).
The built page itself is checked in ``tests/test_api_docs.py`` (one site build for both).
"""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from bayesphys._bench import repo_root

pytest.importorskip("griffe")


def _roles():
    spec = importlib.util.spec_from_file_location(
        "_griffe_roles_under_test", repo_root() / "docs" / "_griffe_roles.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


roles = _roles()


def _html(markdown_text: str) -> str:
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("pymdownx")
    return markdown.markdown(
        markdown_text,
        extensions=["pymdownx.arithmatex"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )


@pytest.mark.parametrize(
    ("latex"),
    [
        r"a_{ij} * b_k * c",  # underscores and asterisks: no emphasis
        r"\frac{\sum_{i \in \{1, 2\}} x_i}{\operatorname{sd}[u_{ij}]}",  # nested braces
        r"\Sigma_{\rm post} = K \\ \quad \hat\sigma\, \mathcal N(\mu, \Sigma)",  # backslashes
        r"|x|_2 < y^\top z",
    ],
)
def test_inline_math_keeps_its_latex_through_markdown(latex):
    text = roles.convert(f"Before :math:`{latex}` after.")
    assert text == f"Before \\({latex}\\) after."
    html = _html(text)
    span = html.split('<span class="arithmatex">', 1)[1].split("</span>", 1)[0]
    assert span.replace("&lt;", "<") == f"\\({latex}\\)"
    assert "<em>" not in html


def test_a_role_at_a_line_end_is_joined_onto_one_line():
    text = roles.convert("with :math:`k(a) = s^2\n+ s_0^2 k(b)` and more")
    assert text == "with \\(k(a) = s^2 + s_0^2 k(b)\\) and more"
    html = _html(text)
    assert "<li>" not in html and html.count('class="arithmatex"') == 1


def test_a_math_block_of_several_lines_becomes_display_math():
    source = textwrap.dedent(
        r"""
        The objective is

        .. math:: \mathcal J(U) = \tfrac12 U^\top C^{-1} U
           + \tfrac{\tau_2}2 \|r(U)\|^2,

           \qquad r(U) = \mathcal A U - f,

        with :math:`C` the prior.
        """
    ).strip()
    text = roles.convert(source)
    assert text == textwrap.dedent(
        r"""
        The objective is

        $$
        \mathcal J(U) = \tfrac12 U^\top C^{-1} U
        + \tfrac{\tau_2}2 \|r(U)\|^2,
        $$

        $$
        \qquad r(U) = \mathcal A U - f,
        $$

        with \(C\) the prior.
        """
    ).strip("\n")
    html = _html(text)
    assert html.count('<div class="arithmatex">') == 2
    assert "\\mathcal J(U) = \\tfrac12 U^\\top C^{-1} U\n+ \\tfrac{\\tau_2}2 \\|r(U)\\|^2," in html


def test_a_math_block_on_the_next_line_and_right_before_text():
    text = roles.convert(".. math::\n    a = b\nnext")
    assert text == "$$\na = b\n$$\n\nnext"


def test_a_math_block_in_a_list_item_stays_in_the_item():
    source = "1. first\n2. second, so\n\n   .. math:: g = \\frac1W\n\n3. third"
    text = roles.convert(source)
    assert "\n    $$\n    g = \\frac1W\n    $$\n" in text
    html = _html(text)
    item = html.split("<li>")[2].split("</li>")[0]
    assert '<div class="arithmatex">\\[\ng = \\frac1W\n\\]</div>' in item


@pytest.mark.parametrize(
    ("role", "shown"),
    [
        (":func:`~bayesphys.gp_pde.solve.objective`", "`objective`"),
        (":func:`bayesphys.metrics.crps`", "`bayesphys.metrics.crps`"),
        (":meth:`~.solve.KronSolve.cov_u`", "`cov_u`"),
        (":mod:`.operator`", "`operator`"),
        (":class:`GaussianPosterior`", "`GaussianPosterior`"),
        (":attr:`FitResult.extra`", "`FitResult.extra`"),
        (":data:`~bayesphys.problems.rgnp.POISSON_SENSOR_INDEX`", "`POISSON_SENSOR_INDEX`"),
        (":py:func:`~a.b`", "`b`"),
        (":meth:`ProbConserv.calibrate <bayesphys.probconserv.ProbConserv.calibrate>`",
         "`ProbConserv.calibrate`"),
        (":class:`~bayesphys.neural_process.\nRandomGridNP`", "`RandomGridNP`"),
    ],
)  # fmt: skip
def test_references_become_code(role, shown):
    assert roles.convert(f"See {role}.") == f"See {shown}."


def test_a_resolved_reference_becomes_an_optional_autorefs_link():
    seen = []

    def resolve(target):
        seen.append(target)
        return "pkg.mod.func" if target == ".mod.func" else None

    text = roles.convert("Use :func:`~.mod.func` or :func:`other`; not :func:`!pkg.x`.", resolve)
    assert text == (
        'Use <autoref identifier="pkg.mod.func" optional>`func`</autoref> or `other`; not `pkg.x`.'
    )
    assert seen == [".mod.func", "other"]


def test_item_lines_of_numpy_sections_get_bare_text():
    source = textwrap.dedent(
        """
        Summary with :math:`x`.

        Returns
        -------
        :class:`Result` with :math:`\\hat\\theta`
            the fit, see :func:`~a.fit` and :math:`y_i`.
        """
    ).strip()
    text = roles.convert(source)
    assert "\nResult with \\hat\\theta\n" in text
    assert "    the fit, see `fit` and \\(y_i\\)." in text
    assert text.startswith("Summary with \\(x\\).")


def test_conversion_is_idempotent():
    source = "A :math:`a_b` and :func:`~x.y`.\n\n.. math:: c = d\n\nEnd."
    once = roles.convert(source)
    assert roles.convert(once) == once
    assert ":math:" not in once and ".. math::" not in once and ":func:" not in once


def test_the_extension_rewrites_a_loaded_package_and_resolves_references(tmp_path):
    griffe = pytest.importorskip("griffe")
    package = tmp_path / "rolepkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""Top: :func:`~.sub.f` and :func:`missing`."""\nfrom .sub import f\n'
    )
    (package / "sub.py").write_text(
        'def f(x):\n    r"""Square :math:`x_i^2`, see :func:`g`."""\n\n\n'
        'def g():\n    """Other."""\n'
    )
    loader = griffe.GriffeLoader(
        extensions=griffe.load_extensions(roles.ReSTRoles), search_paths=[tmp_path]
    )
    pkg = loader.load("rolepkg")
    assert pkg.docstring.value == (
        'Top: <autoref identifier="rolepkg.sub.f" optional>`f`</autoref> and `missing`.'
    )
    assert pkg["sub.f"].docstring.value == (
        'Square \\(x_i^2\\), see <autoref identifier="rolepkg.sub.g" optional>`g`</autoref>.'
    )


def test_a_list_items_later_paragraph_stays_in_the_item():
    """reST continues an item at its text's column (3 after ``1.``); Markdown needs 4, so the
    paragraph after the math left the list and the next item was glued onto it."""
    source = (
        "1. first\n2. second, so\n\n   .. math:: g = \\frac1W\n\n   the mean gradient,\n"
        "   as with DDP.\n3. third\n\n* a bullet\n\n  its second paragraph.\n"
    )
    text = roles.convert(source)
    assert "\n    the mean gradient,\n    as with DDP.\n\n3. third" in text
    assert "\n    its second paragraph." in text
    assert roles.convert(text) == text
    html = _html(text)
    items = [item.split("</li>")[0] for item in html.split("<li>")[1:]]
    assert len(items) == 4
    assert "the mean gradient" in items[1] and "third" not in items[1]
    assert items[2].strip() == "<p>third</p>"
    assert "its second paragraph." in items[3]
