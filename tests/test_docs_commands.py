"""Every command the docs quote parses with its own parser.

The docs promise that each figure comes from a command anyone can rerun. This collects the
commands quoted in README.md, docs/*.md, docs/tutorials/*.md and the module docstrings of
benchmarks/**/*.py, examples/*.py and docs/make_gallery.py -- inside inline code (`...`,
``...``), fenced code blocks and indented code lines -- of the forms

* ``python benchmarks/NAME.py ARGS`` (also under ``benchmarks/reference/``),
* ``bayesphys bench|calibrate|run|demo|list ARGS`` and ``python -m bayesphys ARGS``,
* ``python -m bayesphys.examples.NAME ARGS``,
* ``python examples/NAME.py ARGS`` (a thin wrapper: parsed by ``bayesphys.examples.NAME``,
  the module it names),
* ``python docs/make_gallery.py ARGS``,

each possibly after environment settings (``OMP_NUM_THREADS=1 ...``, ignored), and parses each
with the argparse parser of the script, example or ``bayesphys`` command it names, without
running anything: ``ArgumentParser.parse_args`` is wrapped to stop right after a successful
parse (every script and example parses with it), and the ``bayesphys`` subcommands that do not
hand on to a script or example (``demo``, ``list``, ``calibrate``) are stopped after the CLI's
own parse (CUDA is reported available, so a quoted GPU run parses on a machine without
one). An unknown flag, a bad choice or a value of the wrong type fails the test with the
file, line and command. The ids of a benchmark script's comma lists (``--only B0,B3``,
``--problems``, ``--methods``, ``--seeds`` ...) are checked by the parse (their argparse
``type``, ``bayesphys._bench.comma_ids``), so an unknown or repeated id fails here too; checks
a script makes after its parse (``ap.error`` on a combination of options, such as
``gp_pde.py --quick`` with an id of the full table only) are not reached.

Placeholders substituted before the parse (see ``_substitute``):

* ``[--flag]`` / ``[--flag VALUE]`` (an optional part): the part, without the brackets;
* ``DIR``, ``DIR2``, ``OUT_DIR``, ``OUT``, ``VAL``, ``D0``-``D9``, ``D`` (a folder): a
  temporary folder;
* ``N``, ``K``, ``S`` (a count, the number of foci, a seed): ``1``;
* ``<ids>`` as the value of an option that takes a comma list of ids: the first id that
  option accepts (its argparse ``type``'s ``allowed``, see ``bayesphys._bench.comma_ids``);
* other ``<...>`` tokens: ``x``;
* ``COMPONENT``: each choice of the subcommand in turn (``bench``, ``calibrate``);
* ``NAME`` / ``EXAMPLE`` after ``run`` or ``python -m bayesphys.examples.``: each example;
* ``...`` as an argument, or closing a comma list (``B0,B1,...``): dropped; a command that is
  only ``...`` (``python -m bayesphys ...``), a bare ``bayesphys bench|calibrate|run`` (the
  command named in prose) and a part that starts with ``...`` (``; ... probconserv``, short
  for the command before) are no commands;
* ``--model NAME`` of ``bayesphys run cohort``: each model the doc names (``_OPTION_VALUES``);
* ``a|b|c`` (alternatives, e.g. ``--executor local|ray``): each in turn.

A command runs to the first word that ends it: ``(`` (prose after the command), ``#``, a
shell redirection (``> log``, ``2>&1``) or ``&``; a trailing backslash joins a code line with
the next.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
GALLERY = ROOT / "docs" / "make_gallery.py"

# a command: optional VAR=value settings, then the program and the rest of the piece
_COMMAND = re.compile(
    r"(?:^|(?<=\s))(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"
    r"(?P<prog>python\s+-m\s+bayesphys(?:\.examples\.[\w-]+|\b(?!\.))"
    r"|python\s+(?:benchmarks/[\w/]+|examples/\w+|docs/make_gallery)\.py"
    r"|bayesphys\s+(?=(?:bench|calibrate|run|demo|list)\b))"
    r"(?P<rest>.*)$"
)
# where a quoted command ends and prose begins: a parenthesis, a comment, an arrow
_PROSE = re.compile(r"\s(?:\(|#|->|→)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
FOLDER = str(Path(tempfile.gettempdir()) / "bayesphys-docs-commands")  # for DIR; not made
_FOLDERS = {"DIR", "DIR2", "OUT_DIR", "OUT", "VAL", "D"} | {f"D{i}" for i in range(10)}
_NUMBERS = {"N", "K", "S"}
_IDS = "<ids>"  # kept to the parse: an option's first accepted id there (_ids_filled)
_EXAMPLE = {"NAME", "EXAMPLE"}
# (example, option, placeholder): the values the placeholder stands for
_OPTION_VALUES = {("cohort", "--model", "NAME"): ("linear-gaussian", "glioma")}


@dataclass(frozen=True)
class Quoted:
    """One quoted command: where it is and its words (placeholders substituted)."""

    where: str  # path:line
    text: str  # as quoted (whitespace collapsed)
    # "bayesphys", "benchmarks/NAME.py", "examples/NAME.py", "docs/make_gallery.py" or
    # "bayesphys.examples.NAME"
    prog: str
    argv: tuple[str, ...]


def _sources() -> list[tuple[str, int, str]]:
    """(relative path, first line number, text) of every file and docstring searched."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out.append((path.relative_to(ROOT).as_posix(), 1, path.read_text(encoding="utf-8")))
    for path in sorted((ROOT / "docs" / "tutorials").glob("*.md")):
        out.append((path.relative_to(ROOT).as_posix(), 1, path.read_text(encoding="utf-8")))
    scripts = [*BENCH.rglob("*.py"), *(ROOT / "examples").glob("*.py"), GALLERY]
    for path in sorted(scripts):
        source = path.read_text(encoding="utf-8")
        body = ast.parse(source).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node = body[0]
            lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
            out.append((path.relative_to(ROOT).as_posix(), node.lineno, "\n".join(lines)))
    return out


def code_spans(text: str) -> list[tuple[int, str]]:
    """(line offset from the text's first line, code) of every code span in ``text``: each
    line of a fenced block, each indented line without a backtick, each inline code span (one
    that runs over several lines joined with spaces; none crosses a blank line)."""
    lines = text.splitlines()
    spans: list[tuple[int, str]] = []
    blanked = []  # the text with code blocks blanked out (line numbers kept)
    fence = None
    held = None  # (first line, text) of a block line continued with a trailing backslash

    def block_line(i: int, line: str) -> None:
        nonlocal held
        first, code = held if held is not None else (i, "")
        code = f"{code} {line.strip()}".strip()
        if code.endswith("\\"):
            held = (first, code[:-1])
        else:
            held = None
            spans.append((first, code))

    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                block_line(i, line)
        elif (line.startswith("    ") and "`" not in line and line.strip()) or held:
            block_line(i, line)
        else:
            blanked.append(line)
            continue
        blanked.append("")
    joined = "\n".join(blanked)
    for m in _INLINE.finditer(joined):
        code = m.group(2)
        if re.search(r"\n\s*\n", code):
            continue  # not a span: a stray backtick pairs with one a paragraph later
        code = code.replace("`", " ")  # ``... `cmd` ...``: the inner quotes are quotes
        spans.append((joined.count("\n", 0, m.start()), " ".join(code.split())))
    return spans


def _pieces(code: str) -> list[str]:
    """The commands of one code span: parts split at ``;``, `` · `` and ``&&`` outside quotes
    (``--offsets "0,0;1,2"`` is one word)."""
    quoted = r"\"[^\"]*\"|'[^']*'"
    parts = re.split(rf"({quoted})|;|\s·\s|&&", code)
    pieces, current = [], ""
    for i, part in enumerate(parts):
        if i % 2 == 0:  # text between separators (and quoted strings)
            current += part or ""
            continue
        if part is None:  # a separator
            pieces.append(current)
            current = ""
        else:  # a quoted string: kept whole
            current += part
    pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _examples() -> list[str]:
    import pkgutil

    from bayesphys import examples

    return sorted(
        i.name.replace("_", "-")
        for i in pkgutil.iter_modules(examples.__path__)
        if not i.name.startswith("_")
    )


def _choices(sub: str) -> list[str]:
    from bayesphys.cli import build_parser

    parser = build_parser().subcommand_parsers[sub]
    (action,) = [a for a in parser._actions if a.dest == "component"]
    return list(action.choices)


def _expand(words: list[str]) -> list[list[str]]:
    """``--executor local|ray|dask``: one word list per alternative (each in turn)."""
    for i, w in enumerate(words):
        if re.fullmatch(r"[^|\s]+(?:\|[^|\s]+)+", w):
            return [v for alt in w.split("|") for v in _expand(words[:i] + [alt] + words[i + 1 :])]
    return [words]


def _substitute(prog: str, words: list[str], folder: str) -> list[list[str]]:
    """The argv lists one quoted command stands for (placeholders substituted, see the module
    docstring); none for no command (``...`` alone, a bare ``bayesphys run``)."""
    # "..." alone is dropped, ",..." closing a comma list ("--only B0,B1,...") too
    words = [re.sub(r",\.\.\.$", "", w) for w in words if w != "..."]
    for i, w in enumerate(words):  # a shell redirection or background ends the command
        if w in ("&", "|", "||") or re.match(r"\d*[<>]", w) and not re.fullmatch(r"<[^>]*>", w):
            words = words[:i]
            break
    if prog == "bayesphys" and (not words or words == ["..."]):
        return []
    if prog == "bayesphys" and len(words) == 1 and words[0] in ("bench", "calibrate", "run"):
        return []  # "rerunning `bayesphys calibrate`": the command named, not quoted
    out = []
    for w in words:
        if w in _FOLDERS:
            w = folder
        elif w in _NUMBERS:
            w = "1"
        elif re.fullmatch(r"<[^>]*>", w) and w != _IDS:
            w = "x"
        out.append(w)
    argvs = []
    for argv in _expand(out):
        if prog == "bayesphys" and argv[0] in ("bench", "calibrate") and "COMPONENT" in argv:
            i = argv.index("COMPONENT")
            argvs += [argv[:i] + [c] + argv[i + 1 :] for c in _choices(argv[0])]
        elif prog == "bayesphys" and argv[0] == "run" and len(argv) > 1 and argv[1] in _EXAMPLE:
            argvs += [argv[:1] + [e] + argv[2:] for e in _examples()]
        else:
            argvs.append(argv)
    for (example, flag, placeholder), values in _OPTION_VALUES.items():
        argvs = [b for a in argvs for b in _option_value(a, example, flag, placeholder, values)]
    return argvs


def _option_value(
    argv: list[str], example: str, flag: str, placeholder: str, values: tuple[str, ...]
) -> list[list[str]]:
    """``argv`` with ``FLAG PLACEHOLDER`` of ``run EXAMPLE`` given each value in turn."""
    if argv[:2] != ["run", example]:
        return [argv]
    for i in range(2, len(argv) - 1):
        if argv[i] == flag and argv[i + 1] == placeholder:
            return [argv[: i + 1] + [v] + argv[i + 2 :] for v in values]
    return [argv]


def parse_quoted(where: str, code: str, folder: str) -> list[Quoted]:
    """The commands quoted in one code span."""
    found = []
    for piece in _pieces(code):
        if piece.startswith("..."):
            continue  # "; ... probconserv": short for the command before, with another name
        m = _COMMAND.search(piece)
        if m is None:
            continue
        rest = _PROSE.split(" " + m.group("rest"), maxsplit=1)[0]
        rest = re.sub(r"\[(-[^\[\]]*)\]", r"\1", rest)  # [--smoke], [--foci K]: optional parts
        try:
            words = shlex.split(rest)
        except ValueError as err:  # an unclosed quote, a lone backslash: reported, not parsed
            found.append(Quoted(where, piece, "shell", (f"shell words: {err}",)))
            continue
        prog = " ".join(m.group("prog").split())
        if prog.startswith(("python benchmarks/", "python examples/", "python docs/")):
            prog = prog.split(None, 1)[1]
        elif prog.startswith("python -m bayesphys.examples."):
            prog = prog.rsplit(" ", 1)[1]
            name = prog.rsplit(".", 1)[1]
            if name in _EXAMPLE:  # python -m bayesphys.examples.NAME: as bayesphys run NAME
                for argv in _substitute("bayesphys", ["run", name, *words], folder):
                    found.append(Quoted(where, piece, "bayesphys", tuple(argv)))
                continue
        else:
            prog = "bayesphys"  # the subcommand is the first word of the rest
        for argv in _substitute(prog, words, folder):
            found.append(Quoted(where, piece, prog, tuple(argv)))
    return found


def quoted_commands(folder: str = FOLDER) -> list[Quoted]:
    """Every command quoted in the searched files (see the module docstring)."""
    out = []
    for rel, first, text in _sources():
        for offset, code in code_spans(text):
            out.extend(parse_quoted(f"{rel}:{first + offset}", code, folder))
    return out


class _Parsed(BaseException):
    """Raised right after a successful parse: nothing past the parse runs."""


def _stop(*args, **kwargs):
    raise _Parsed


def _load_script(rel: str):
    path = ROOT / rel
    name = "_docs_cmd_" + re.sub(r"\W", "_", rel)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ids_filled(parser: argparse.ArgumentParser, args: list[str] | None) -> list[str] | None:
    """``args`` with each ``<ids>`` that follows an option of ``parser`` taking a comma list of
    ids replaced by that option's first accepted id (others are left to the parser that
    takes them: ``bayesphys bench`` hands the script's options on)."""
    if args is None:
        return None
    out = list(args)
    for i in range(1, len(out)):
        action = parser._option_string_actions.get(out[i - 1])
        allowed = getattr(getattr(action, "type", None), "allowed", None)
        if out[i] == _IDS and allowed:
            out[i] = allowed[0]
    return out


def _wrapped_example(rel: str) -> str | None:
    """``bayesphys.examples.NAME`` for ``examples/NAME.py`` when that script is a thin wrapper
    naming the module (it runs the module's ``main``); else ``None``."""
    path = ROOT / rel
    module = "bayesphys.examples." + path.stem
    if not path.is_file() or not importlib.util.find_spec(module):
        return None
    return module if module in path.read_text(encoding="utf-8") else None


def parse_error(q: Quoted, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """``None`` when ``q`` parses; else what the parser said (its usage error)."""
    from bayesphys import cli
    from bayesphys.diagnostics import suite

    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, _ids_filled(self, args), namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for name in ("cmd_demo", "cmd_list", "cmd_calibrate"):
        monkeypatch.setattr(cli, name, _stop)
    # a full `calibrate` checks (by making it) that ./bayesphys-out/calibration can be written
    monkeypatch.setattr(suite, "default_out_problem", lambda: "")
    # `--device cuda` parses on a machine without a GPU (the docs quote GPU runs)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their _helpers, as when run
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if q.prog == "shell":
                return q.argv[0]
            if q.prog == "bayesphys":
                cli.main(list(q.argv))
            elif q.prog.startswith(("benchmarks/", "docs/")):
                if not (ROOT / q.prog).is_file():
                    return f"no script {q.prog}"
                _load_script(q.prog).main(list(q.argv))
            elif q.prog.startswith("examples/"):
                module = _wrapped_example(q.prog)
                if module is None:
                    return f"{q.prog}: no script, or not a wrapper of bayesphys.examples"
                importlib.import_module(module).main(list(q.argv))
            else:
                importlib.import_module(q.prog).main(list(q.argv))
    except _Parsed:
        return None
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            return None
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else repr(exc)
    return "ran past its parse without parse_args (the check cannot see its options)"


_QUOTED = quoted_commands()


def test_commands_found():
    """The search finds the commands of every kind (a broken extractor finds none)."""
    progs = {q.prog for q in _QUOTED}
    assert len(_QUOTED) > 100
    assert "bayesphys" in progs
    assert "benchmarks/gp_pde.py" in progs
    assert {q.argv[0] for q in _QUOTED if q.prog == "bayesphys"} >= {"bench", "calibrate", "run"}


@pytest.mark.parametrize("q", _QUOTED, ids=lambda q: f"{q.where}:{q.prog}")
def test_quoted_command_parses(q: Quoted, monkeypatch):
    problem = parse_error(q, monkeypatch)
    assert problem is None, f"{q.where}: `{q.text}` does not parse ({' '.join(q.argv)}): {problem}"


# --- the extractor and the check themselves -------------------------------------------------


def _line(rel: str, text: str) -> tuple[int, str]:
    """(number, text) of the first line of ``rel`` holding ``text``."""
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    return next((i + 1, line) for i, line in enumerate(lines) if text in line)


def _one(code: str) -> Quoted:
    (q,) = parse_quoted("doc.md:7", code, FOLDER)
    return q


def test_misspelt_flag_in_a_doc_line_fails(monkeypatch):
    """A copy of a real doc line with a misspelt flag is refused, naming the flag."""
    n, line = _line("docs/odil_notes.md", "python benchmarks/odil.py --only B0 --out D0")
    assert _one(line)  # the line as it is parses (the parametrised test checks it)
    assert parse_error(_one(line), monkeypatch) is None
    broken = _one(line.replace("--only", "--onyl"))
    problem = parse_error(broken, monkeypatch)
    assert problem is not None and "--onyl" in problem
    assert broken.where == "doc.md:7" and "--onyl" in broken.text


@pytest.mark.parametrize(
    "code, says",
    [
        ("bayesphys calibrate gp-pdx --quick", "invalid choice: 'gp-pdx'"),  # a bad choice
        ("bayesphys demo --seed one", "--seed"),  # a value of the wrong type
        ("python benchmarks/gp_pde.py --threads two", "--threads"),
        ("bayesphys bench odil --quick --onyl B1", "--onyl"),  # the script's own parser
        ("bayesphys run cohort --smoke --executor slurm", "invalid choice: 'slurm'"),
        ("bayesphys calibrate core --quik", "--quik"),
        ("python -m bayesphys.examples.glioma --foci none", "--foci"),
        ("OMP_NUM_THREADS=1 python benchmarks/no_such_script.py --quick", "no script"),
        # an unknown id in a comma list: refused by the script's parse itself
        ("python benchmarks/odil.py --only B0,B9 --out D0", "unknown ids ['B9']"),
        ("bayesphys bench meta_fm --quick --problems B1,B7", "unknown problems ['B7']"),
        ("python benchmarks/neural_process.py --skip SPEED,P4", "unknown rows ['P4']"),
        ("python benchmarks/probconserv.py --problems stefan,heat", "unknown problems ['heat']"),
        ("python benchmarks/gp_pde.py --methods GP-HM,GP", "unknown methods ['GP']"),
        ("python examples/ddp_training.py --nproc none", "--nproc"),
        ("python examples/no_such_example.py --smoke", "no script"),
        ("python docs/make_gallery.py --fulll", "--fulll"),
        ("python docs/make_gallery.py --only glioma no-such", "unknown example 'no-such'"),
    ],
)
def test_bad_commands_fail(code, says, monkeypatch):
    problem = parse_error(_one(code), monkeypatch)
    assert problem is not None and says in problem


def test_unknown_id_in_a_doc_line_fails(monkeypatch):
    """A copy of a real doc line with an id changed to an unknown one is refused, naming it."""
    _, line = _line("docs/odil_notes.md", "python benchmarks/odil.py --only B0 --out D0")
    assert parse_error(_one(line), monkeypatch) is None
    problem = parse_error(_one(line.replace("--only B0", "--only B0,B9")), monkeypatch)
    assert problem is not None and "--only" in problem and "'B9'" in problem


def test_example_wrappers_and_the_gallery_script_are_parsed(monkeypatch):
    found = [
        (q.prog, q.argv)
        for code in (
            "python examples/ddp_training.py --nproc 2 --out OUT",
            "python docs/make_gallery.py [--full]",
        )
        for q in parse_quoted("doc.md:1", code, FOLDER)
    ]
    assert found == [
        ("examples/ddp_training.py", ("--nproc", "2", "--out", FOLDER)),
        ("docs/make_gallery.py", ("--full",)),
    ]
    for prog, argv in found:
        assert parse_error(Quoted("doc.md:1", "", prog, argv), monkeypatch) is None
    assert {"examples/tutorial_arviz.py", "docs/make_gallery.py"} <= {q.prog for q in _QUOTED}


def test_an_ids_placeholder_takes_an_id_the_option_accepts(monkeypatch):
    q = _one("python benchmarks/odil.py --only <ids> --quick --out DIR")
    assert q.argv == ("--only", "<ids>", "--quick", "--out", FOLDER)
    assert parse_error(q, monkeypatch) is None
    problem = parse_error(_one("python benchmarks/odil.py --only <other> --quick"), monkeypatch)
    assert problem is not None and "unknown ids ['x']" in problem  # other placeholders: x


def test_nothing_runs_past_the_parse(monkeypatch):
    """A good command parses and stops: a benchmark's run step is never reached."""
    assert parse_error(_one("bayesphys bench gp_pde --quick --out DIR"), monkeypatch) is None
    assert (
        parse_error(_one("python benchmarks/probconserv.py --quick --jobs 2"), monkeypatch) is None
    )
    assert not Path(FOLDER).exists()


def test_code_spans_and_placeholders():
    text = (
        "Run `OMP_NUM_THREADS=1 python benchmarks/odil.py\n--only B1 --out DIR` (5 min) and\n"
        "\n"
        "```bash\n"
        "bayesphys run cohort [--smoke] [--executor local|ray] \\\n"
        "    --patients N   # a comment\n"
        "```\n"
        "    python benchmarks/meta_fm_b4_patients.py > b4.log 2>&1 &\n"
        "\n"
        "`bayesphys calibrate core; ... probconserv` and `python -m bayesphys ...`,"
        " `bayesphys calibrate`, `bayesphys bench COMPONENT --quick`\n"
    )
    found = [
        (line, q.prog, q.argv)
        for line, code in code_spans(text)
        for q in parse_quoted(f"x:{line}", code, "F")
    ]
    cohort = ("run", "cohort", "--smoke", "--executor")
    assert sorted(found) == sorted(
        [
            (0, "benchmarks/odil.py", ("--only", "B1", "--out", "F")),
            (4, "bayesphys", (*cohort, "local", "--patients", "1")),
            (4, "bayesphys", (*cohort, "ray", "--patients", "1")),
            (7, "benchmarks/meta_fm_b4_patients.py", ()),
            (9, "bayesphys", ("calibrate", "core")),
        ]
        + [(9, "bayesphys", ("bench", c, "--quick")) for c in _choices("bench")]
    )


def test_quoted_values_keep_separators():
    q = _one('python benchmarks/odil_b6_offsets.py --offsets "0,0;1,2" --name x  # 6 min')
    assert q.argv == ("--offsets", "0,0;1,2", "--name", "x")
    assert _one("python benchmarks/x.py --name 'a").prog == "shell"  # unclosed: reported
