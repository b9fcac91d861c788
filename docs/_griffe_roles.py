"""Griffe extension for the API reference: reST roles in docstrings become Markdown.

The docstrings keep the Sphinx roles that ``help()`` and IDEs show (``:math:`x```,
``.. math::`` blocks, ``:func:`~a.b```, ...); mkdocstrings renders Markdown, so when Griffe
loads the package (``mkdocs.yml``: the python handler's ``extensions``) each docstring's text is
rewritten for the site only:

* ``:math:`X``` becomes ``\\(X\\)``, which ``pymdownx.arithmatex`` takes before any Markdown
  escaping or emphasis (so backslashes, ``_`` and ``*`` in ``X`` survive);
* a ``.. math::`` block (its first line's text and the lines indented under it) becomes a
  ``$$`` ... ``$$`` display block, one per blank-line-separated group of lines;
* ``:func:`a.b```, ``:class:``, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:`` (also ``:exc:``,
  ``:obj:``, ``:const:``, with or without ``py:``) become inline code: ``a.b``, the last
  component with ``~``, the title of ``title <target>``; where the target is an object of the
  loaded package the code is wrapped in an optional autorefs reference, which links to the
  object's entry when the site renders one and is plain code otherwise (no warning);
* a list item's paragraph after a blank line, at the column of the item's text (reST), is
  indented 4 spaces past the marker, where Markdown keeps it in the item.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from typing import Any

from griffe import AliasResolutionError, CyclicAliasError, Extension, Object

ROLE = re.compile(
    r":(?:py:)?(?P<role>math|func|class|meth|attr|data|mod|exc|obj|const):`(?P<content>[^`]+)`"
)
MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ ]*)\.\. math::[ ]*(?P<rest>.*)$")
# a list item's first line: its marker's indent and the column its text starts at
LIST_ITEM = re.compile(r"^(?P<indent>[ ]*)(?:[-*+]|\d+[.)]|#\.)[ ]+(?=\S)")
# the numpy sections whose unindented lines are items (names and types), as Griffe reads them
ITEM_SECTIONS = {
    "parameters",
    "other parameters",
    "type parameters",
    "returns",
    "yields",
    "receives",
    "raises",
    "warns",
    "attributes",
    "functions",
    "methods",
    "classes",
    "type aliases",
    "modules",
}
TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)

Resolver = Callable[[str], "str | None"]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _fence_indent(lines: list[str], at: int, indent: int) -> int:
    """The indent for a display block replacing the directive at ``lines[at]``.

    reST list items continue at the column of their text (2 or 3 spaces after ``*`` or ``1.``);
    Markdown needs 4 spaces past the marker, so a block inside a list item moves there.
    Elsewhere (free text, an indented parameter description) it keeps the directive's indent.
    """
    if indent == 0:
        return 0
    for line in reversed(lines[:at]):
        if not line.strip() or _indent(line) >= indent:
            continue
        item = LIST_ITEM.match(line)
        if item and item.end() == indent:
            return len(item["indent"]) + 4
        return indent
    return indent


def _math_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        directive = MATH_DIRECTIVE.match(lines[i])
        if directive is None:
            out.append(lines[i])
            i += 1
            continue
        indent = len(directive["indent"])
        body = [directive["rest"]]
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
            body.append(lines[j])
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # the blank lines after it stay
            body.pop()
            j -= 1
        groups: list[list[str]] = [[]]
        for line in body:
            if line.strip():
                groups[-1].append(line.strip())
            elif groups[-1]:
                groups.append([])
        pad = " " * _fence_indent(lines, i, indent)
        block: list[str] = []
        for group in (g for g in groups if g):
            block += ["", pad + "$$", *(pad + line for line in group), pad + "$$"]
        if not out or not out[-1].strip():
            block = block[1:]
        if j < len(lines) and lines[j].strip():
            block.append("")
        out += block
        i = j
    return "\n".join(out)


def _list_paragraphs(text: str) -> str:
    """``text`` with the later paragraphs of reST list items indented as Markdown reads them.

    A list item's paragraph after a blank line continues at the column of the item's text in
    reST (2 or 3 spaces after ``*`` or ``1.``); Python-Markdown needs 4 spaces past the marker,
    else the paragraph leaves the list (and a next item is glued onto it as plain text). A
    line right after such a paragraph (the next item) gets a blank line before it, without
    which Markdown reads it as more of the paragraph.
    """
    lines = text.split("\n")
    out: list[str] = []
    shift = start = 0
    for i, line in enumerate(lines):
        if not line.strip():
            shift = 0
            out.append(line)
            continue
        if shift and _indent(line) >= start:
            out.append(" " * shift + line)
            continue
        if shift:
            out.append("")
        shift = 0
        out.append(line)
        if i == 0 or lines[i - 1].strip():
            continue
        indent = _indent(line)
        for previous in reversed(lines[:i]):
            if not previous.strip() or _indent(previous) >= indent:
                continue
            item = LIST_ITEM.match(previous)
            if item and item.end() == indent and indent < len(item["indent"]) + 4:
                shift, start = len(item["indent"]) + 4 - indent, indent
                out[-1] = " " * shift + line
            break
    return "\n".join(out)


def _is_dash_line(line: str) -> bool:
    return "-" in line and not line.replace("-", "").strip()


def _item_lines(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` offsets of the item lines of the numpy sections of ``text``.

    In a ``Parameters``, ``Returns``, ``Raises``... section (as Griffe reads them) each line
    that is not indented starts an item: its name and type, shown as literal code, not Markdown.
    """
    spans = []
    items = False
    offset = 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and _is_dash_line(lines[i + 1]):
            items = line.strip().lower() in ITEM_SECTIONS
        elif items and line.strip() and not line[0].isspace() and not _is_dash_line(line):
            spans.append((offset, offset + len(line)))
        offset += len(line) + 1
    return spans


def _reference(content: str, resolve: Resolver | None, plain: bool) -> str:
    titled = TITLED.match(content)
    title, target = (titled["title"], titled["target"]) if titled else (None, content)
    title = title and " ".join(title.split())
    target = "".join(target.split())  # a dotted name broken over two lines
    link = not target.startswith("!")
    target = target.lstrip("!")
    short = target.startswith("~")
    target = target.lstrip("~")
    if not title:
        title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    if plain:
        return title
    identifier = resolve(target) if (resolve is not None and link) else None
    if identifier is None:
        return f"`{title}`"
    return f'<autoref identifier="{identifier}" optional>`{title}`</autoref>'


def convert(text: str, resolve: Resolver | None = None) -> str:
    """The docstring ``text`` with its reST math and cross-reference roles as Markdown.

    Parameters
    ----------
    text : str
        A docstring, as Griffe holds it (dedented).
    resolve : callable, optional
        Maps a reference's target (``a.b`` or ``.b``, without ``~``) to the full path of the
        object it names, or ``None``; a resolved reference becomes an optional autorefs link.

    Returns
    -------
    str
        The text with ``:math:`X``` as ``\\(X\\)``, ``.. math::`` blocks as ``$$`` blocks,
        list items' later paragraphs indented for Markdown and object roles as inline code;
        on the item lines of numpy sections (shown as literal code) a role becomes its bare
        text (``X``, the title).
    """
    text = _list_paragraphs(_math_blocks(text))
    items = _item_lines(text)
    starts = [start for start, _ in items]

    def replace(match: re.Match[str]) -> str:
        at = bisect.bisect_right(starts, match.start()) - 1
        plain = at >= 0 and match.start() < items[at][1]
        if match["role"] != "math":
            return _reference(match["content"], resolve, plain)
        # one line: a role that spans lines would otherwise leave LaTeX at a line's start,
        # where Markdown may read ``+ x`` or ``# x`` as a list or a heading
        latex = re.sub(r"[ ]*\n[ ]*", " ", match["content"])
        return latex if plain else "\\(" + latex + "\\)"

    return ROLE.sub(replace, text)


def _lookup(package: Object, path: str) -> str | None:
    if path == package.path:
        return path
    if not path.startswith(package.path + "."):
        return None
    try:
        package[path[len(package.path) + 1 :]]
    except (KeyError, ValueError, AliasResolutionError, CyclicAliasError):
        return None
    return path


def resolver(package: Object, obj: Object, paths: list[str]) -> Resolver:
    """Resolve references the way Sphinx searches: the class, the module, then the package.

    ``.b`` (relative) is also looked up in the enclosing packages and, failing that, as the
    suffix of exactly one of ``paths`` (all object paths of ``package``).
    """
    module = obj if obj.is_module else obj.module
    scopes = [obj.path] if obj.is_class else []
    if obj.parent is not None and obj.parent.is_class:
        scopes.append(obj.parent.path)
    parts = module.path.split(".")
    packages = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]

    def resolve(target: str) -> str | None:
        name = target.lstrip(".")
        if not name:
            return None
        relative = target.startswith(".")
        candidates = [*scopes, packages[0]]
        candidates = [f"{scope}.{name}" for scope in candidates]
        candidates += [name] if not relative else []
        candidates += [f"{scope}.{name}" for scope in packages[1:]]
        for candidate in candidates:
            if (found := _lookup(package, candidate)) is not None:
                return found
        if relative:
            matches = [p for p in paths if p.endswith("." + name)]
            if len(matches) == 1:
                return matches[0]
        return None

    return resolve


def _objects(obj: Object) -> Iterator[Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class ReSTRoles(Extension):
    """Rewrites the docstrings of each loaded package with :func:`convert`."""

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        objects = list(_objects(pkg))
        paths = [obj.path for obj in objects]
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, resolver(pkg, obj, paths))

    # the name of the same hook in Griffe < 1.14 (the conversion is idempotent)
    on_package_loaded = on_package
