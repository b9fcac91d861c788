"""The ``bayesphys`` command: ``list``, ``demo``, ``run``, ``bench``, ``calibrate``.

Components plug in without touching this file:

* ``bayesphys/<component>/_demo.py`` defines ``demo(out_dir, *, device, seed) -> list[dict]``;
* ``bayesphys/examples/<name>.py`` defines ``DESCRIPTION`` and ``main(argv) -> dict``;
* ``benchmarks/<component>.py`` (source checkout) defines ``main(argv) -> Path | None`` (the
  results file; ``None`` for a mode that only prints);
* ``bayesphys/<component>/_calibration.py`` defines ``calibrate_rows(quick, seed)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import numbers
import sys
import time
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._cli_args import device_arg as _device_arg
from ._cli_args import out_arg as _out_arg
from ._cli_args import seed_arg as _seed_arg
from ._console import closed_stdout, discard_stdout, tolerant_stdout
from ._hooks import component_hook as _component_module
from ._version import __version__

COMPONENTS = ("gp_pde", "probconserv", "neural_process", "odil", "meta_fm")

__all__ = ["main", "COMPONENTS"]


def _print_table(rows: list[dict]) -> None:
    cols = ["component", "problem", "metric", "value", "target"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    # a list: no rows (a demo interrupted in its first component) gave max() one int
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3e}" if (v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4)) else f"{v:.4f}"
    return "" if v is None else str(v)


def _fmt_result(v) -> str:
    """A value of an example's result as ``bayesphys run`` prints it: real numbers (numpy's
    too) as :func:`_fmt` writes floats, also inside tuples and lists (``D_ci95: (0.9731,
    1.0342)``; they printed with every digit of their repr before); anything else as ``str``."""
    if isinstance(v, (tuple, list)):
        inner = ", ".join(repr(x) if isinstance(x, str) else _fmt_result(x) for x in v)
        if isinstance(v, list):
            return f"[{inner}]"
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, numbers.Real) and not isinstance(v, (numbers.Integral, bool)):
        return _fmt(float(v))
    return str(v)


def cmd_list(args) -> int:
    from .examples import available

    print("examples (bayesphys run NAME [--smoke]):")
    for name, desc in sorted(available().items()):
        print(f"  {name:24s} {desc}")
    print("components (bayesphys demo / bench / calibrate):")
    for comp in COMPONENTS:
        state = []
        for hook in ("_demo", "_calibration"):
            state.append(f"{hook[1:]}:{'yes' if _component_module(comp, hook) else 'no'}")
        bench = _bench_script(comp, must_exist=False)
        state.append(f"bench:{'yes' if bench else 'no'}")
        print(f"  {comp:24s} {' '.join(state)}")
    print("also: bayesphys bench scale_out (fit_many / DDP speed-ups); bayesphys calibrate core")
    print("  (the shared core's conjugate problem)")
    return 0


def _demo_status(text: str) -> None:
    """A ``demo: ...`` progress line on stderr, shown at once."""
    print(f"demo: {text}", file=sys.stderr, flush=True)


def cmd_demo(args) -> int:
    import torch

    from ._demo_core import demo as core_demo
    from ._device import resolve_device
    from ._process_state import seed_everything

    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    if args.threads is not None:  # at most the current number; none given: left as it is
        # (it was capped at 64, below the current number its help promised on larger machines)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), args.threads)))
    rows: list[dict] = []
    t0 = time.perf_counter()
    # --only with no names: the shared-core demo alone (it used to run every component)
    # a component named twice (--only gp_pde gp_pde) runs once, in the order first named
    wanted = list(COMPONENTS) if args.only is None else list(dict.fromkeys(args.only))
    failed = []
    current = "core"
    try:
        # the core is one component among the others: its failure (it ended the command with
        # a traceback, no component run) is reported and the others go on
        for comp in ["core", *wanted]:
            current = comp
            if comp == "core":
                mod = types.SimpleNamespace(demo=core_demo)
            else:
                mod = _component_module(comp, "_demo")
            if mod is None:
                _demo_status(f"{comp} skipped (not landed yet)")
                rows.append(
                    {
                        "component": comp,
                        "problem": "-",
                        "metric": "status",
                        "value": "not landed yet",
                        "target": None,
                    }
                )
                continue
            if not _demo_component(comp, mod, out, device, args.seed, rows):
                failed.append(comp)
    except KeyboardInterrupt:
        # Ctrl-C between or inside components: the table of those that finished is printed
        # (it was lost with the traceback; their files are in out), then the interrupt goes on
        _demo_status(f"interrupted during {current}")
        _demo_table(rows, out, t0, f"interrupted during {current}: wrote what finished")
        raise
    done = "wrote InferenceData (.nc) and plots (.png)" if not failed else "wrote what finished"
    _demo_table(rows, out, t0, done)
    return 1 if failed else 0


def _demo_table(rows: list[dict], out: Path, t0: float, done: str) -> None:
    """The demo's table, the note on its targets and where its files are."""
    _print_table(rows)
    print(
        "\n'target' is the issue's target or a reference figure for the full-scale problem; "
        "the demo runs each component at small settings (one to two minutes in all on two CPU "
        "cores) and is not judged against it (docs/benchmarks.md has the measured figures and "
        "which targets are met)."
    )
    print(f"{done} to {out.resolve()} in {time.perf_counter() - t0:.1f} s")


def _demo_component(comp: str, mod, out: Path, device, seed: int, rows: list[dict]) -> bool:
    """Run ``mod.demo`` of ``comp``, appending its rows and its seconds (or its error) to
    ``rows``; whether it succeeded (its traceback goes to stderr when not)."""
    t = time.perf_counter()
    _demo_status(f"{comp} ...")
    try:
        rows += mod.demo(out, device=device, seed=seed)
    except Exception as err:  # keep the other components' results
        # the table cuts the error short: its whole traceback goes to stderr here
        _demo_status(
            f"{comp} FAILED after {time.perf_counter() - t:.1f} s (the other components go on):"
        )
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        rows.append(
            {
                "component": comp,
                "problem": "-",
                "metric": "error",
                "value": f"{type(err).__name__}: {err}"[:120],
                "target": None,
            }
        )
        return False
    if comp != "core":  # the core's own rows are its figures (its time is on stderr)
        rows.append(
            {
                "component": comp,
                "problem": "-",
                "metric": "seconds",
                "value": time.perf_counter() - t,
                "target": None,
            }
        )
    _demo_status(f"{comp} done in {time.perf_counter() - t:.1f} s")
    return True


def cmd_run(args, rest: list[str]) -> int:
    from .examples import load

    mod = load(args.example)
    argv = list(rest)
    if args.smoke:
        argv.append("--smoke")
    if args.device:
        argv += ["--device", args.device]
    if args.out:
        argv += ["--out", args.out]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    from ._checks import MissingPackage
    from .examples._args import ExampleFailed

    try:
        result = mod.main(argv)
    except (ExampleFailed, MissingPackage) as err:  # the user can act on it (the message says
        # how: an option, the extra to install): no traceback
        print(f"run {args.example}: {err}", file=sys.stderr)
        return 1
    if isinstance(result, dict):
        for k, v in result.items():
            if isinstance(v, dict):  # tables (e.g. an ArviZ summary) are printed by the
                continue  # example itself, or written to its output files
            print(f"{k}: {_fmt_result(v)}")
        if result.get("failed"):  # e.g. the cohort's problems that raised (as demo does)
            return 1
    return 0


def _bench_script(component: str, must_exist: bool = True) -> Path | None:
    from ._bench import repo_root

    try:
        path = repo_root() / "benchmarks" / f"{component}.py"
    except FileNotFoundError:
        if must_exist:
            raise
        return None
    if not path.exists():
        if must_exist:
            raise FileNotFoundError(f"COMPONENT: no benchmark script at {path} (not landed yet)")
        return None
    return path


def cmd_bench(args, rest: list[str]) -> int:
    path = getattr(args, "bench_path", None) or _bench_script(args.component)
    spec = importlib.util.spec_from_file_location(f"_bayesphys_bench_{args.component}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = list(rest)
    if args.quick:
        argv.append("--quick")
    if args.out:
        argv += ["--out", args.out]
    if args.device:
        argv += ["--device", args.device]
    from ._checks import MissingPackage

    try:
        res = mod.main(argv)
    except MissingPackage as err:  # an optional package not installed: the message names it
        print(f"bench {args.component}: {err}", file=sys.stderr)
        return 1
    if res is not None:  # a mode that only prints (odil --b4-ties) writes no results file
        print(f"results: {res}")  # once: the scripts print it only when run as scripts
    return 0


def cmd_calibrate(args) -> int:
    from ._checks import MissingPackage
    from .diagnostics.suite import CalibrationFailed, run_calibration

    try:
        path = run_calibration(
            args.component, quick=args.quick, out=args.out, seed=args.seed, verbose=True
        )
    except (CalibrationFailed, MissingPackage) as err:  # the traceback is above (a failed
        # case), or an optional package is not installed (the message names it)
        print(f"calibrate: {err}", file=sys.stderr)
        return 1
    print(f"results: {path}")
    return 0


def _example_arg(text: str) -> str:
    """An argparse ``type`` for ``run EXAMPLE``: an example name (dashes or underscores)."""
    import pkgutil

    from . import examples

    names = {i.name for i in pkgutil.iter_modules(examples.__path__) if not i.name.startswith("_")}
    if text.replace("-", "_") not in names:
        choices = ", ".join(sorted(n.replace("_", "-") for n in names))
        raise argparse.ArgumentTypeError(f"unknown example {text!r}; available: {choices}")
    return text


def _component_arg(choices: tuple[str, ...]):
    """An argparse ``type`` for a component name (``demo --only``, ``bench``, ``calibrate``):
    dashes read as underscores, as ``run EXAMPLE`` reads them (``gp-pde`` is ``gp_pde``); a
    name that is no choice either way is left as given, for argparse to refuse by choices."""

    def component(text: str) -> str:
        name = text.replace("-", "_")
        return name if name in choices else text

    return component


def build_parser() -> argparse.ArgumentParser:
    from ._bench import positive_int

    # the module docstring's first line, without its reST markup (``bayesphys`` -> bayesphys)
    p = argparse.ArgumentParser(
        prog="bayesphys", description=__doc__.splitlines()[0].replace("``", "")
    )
    p.add_argument("--version", action="version", version=f"bayesphys {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="list examples and components")
    d = sub.add_parser("demo", help="run every component on a small embedded problem")
    d.add_argument(
        "--out", type=_out_arg, default="bayesphys-out", help="output folder (default %(default)s)"
    )
    d.add_argument(
        "--device", type=_device_arg, default="cpu", help="cpu, cuda or auto (default cpu)"
    )
    d.add_argument(
        "--seed", type=_seed_arg, default=0, help="seed of every component's run (default 0)"
    )
    d.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads, at most the current number (default: the current number)",
    )
    d.add_argument(
        "--only",
        nargs="*",
        type=_component_arg(COMPONENTS),
        choices=COMPONENTS,
        help="only these components, each run once in the order named (none named: the "
        "shared-core demo alone)",
    )
    r = sub.add_parser("run", help="run one example / inverse problem")
    r.add_argument(
        "example",
        type=_example_arg,
        help="the example's name (`bayesphys list` lists them; `bayesphys run NAME --help` its "
        "own options)",
    )
    r.add_argument(
        "--smoke", action="store_true", help="a quick run at small settings (seconds to a minute)"
    )
    r.add_argument(
        "--device",
        type=_device_arg,
        default=None,
        help="cpu, cuda or auto (default cpu)",
    )
    r.add_argument(
        "--out",
        type=_out_arg,
        default=None,
        help="output folder (default: bayesphys-out/EXAMPLE, dashes as underscores)",
    )
    r.add_argument(
        "--seed", type=_seed_arg, default=None, help="seed of the run (default: the example's, 0)"
    )
    b = sub.add_parser("bench", help="run a component's paper-table benchmark")
    b.add_argument(
        "component",
        type=_component_arg(COMPONENTS + ("scale_out",)),
        choices=COMPONENTS + ("scale_out",),
        help="the component whose benchmark runs (scale_out: the fit_many / DDP speed-ups)",
    )
    b.add_argument(
        "--quick",
        action="store_true",
        help="the reduced settings (results go to a temporary folder unless --out is given)",
    )
    b.add_argument(
        "--out",
        type=_out_arg,
        default=None,
        help="folder for the results (default: the checkout's benchmarks/results and docs table; "
        "with --quick a temporary folder)",
    )
    b.add_argument("--device", type=_device_arg, default=None, help="cpu, cuda or auto")
    c = sub.add_parser("calibrate", help="calibration suite (SBC, coverage, TARP) on a component")
    c.add_argument(
        "component",
        type=_component_arg(COMPONENTS + ("core",)),
        choices=COMPONENTS + ("core",),
        help="the component whose posterior is calibrated (core: the shared core's "
        "conjugate problem)",
    )
    c.add_argument(
        "--quick",
        action="store_true",
        help="fewer simulations; results go to a temporary folder unless --out is given",
    )
    c.add_argument(
        "--out",
        type=_out_arg,
        default=None,
        help="folder for the results JSON and figures (default: without --quick, the "
        "checkout's benchmarks/results, replacing the committed rows, the figure in docs/img "
        "and the SBC ranks under bayesphys-out/calibration; outside a source checkout, all "
        "of it under bayesphys-out/calibration)",
    )
    c.add_argument(
        "--seed",
        type=_seed_arg,
        default=0,
        help="base seed of the simulations and, for a component that trains a model in its "
        "hook (neural_process, probconserv, meta_fm), of that training (default 0)",
    )
    # each subcommand's parser: an unknown option is reported against its own usage
    p.subcommand_parsers = {"list": lst, "demo": d, "run": r, "bench": b, "calibrate": c}
    return p


# options of `run` / `bench` that take a value (the value is not the example / component name)
_VALUED = ("--device", "--out", "--seed")


def _target(argv: list[str]) -> str | None:
    """The first positional argument after the subcommand ``argv[0]`` (``run --smoke cohort``:
    ``cohort``), skipping the values of the options in ``_VALUED``; ``None`` when none."""
    skip = False
    for tok in argv[1:]:
        if skip:
            skip = False
            continue
        if tok in _VALUED:
            skip = True
            continue
        if not tok.startswith("-"):
            return tok
    return None


def main(argv: list[str] | None = None) -> int:
    """The ``bayesphys`` command (``argv`` defaults to ``sys.argv[1:]``); returns its exit
    status. A reader that closes standard output early (``bayesphys list | head -1``) ends the
    command quietly with status 141, as a process killed by SIGPIPE (a traceback and status 1
    before)."""
    if argv is None:
        # the tables' dashes and plus-minus signs (and the names given) print on a console
        # whose encoding lacks them, as ASCII (they raised UnicodeEncodeError)
        tolerant_stdout()
    try:
        if argv is None:  # the console command: the process ends with it
            return _main(argv)
        with _callers_state_kept():  # main([...]) from Python: the caller's seeds and threads
            return _main(argv)
    except OSError as err:
        if not closed_stdout(err):  # another pipe broke: a real error
            raise
        discard_stdout()  # what is still buffered for the closed pipe goes nowhere
        return 141


@contextmanager
def _callers_state_kept() -> Iterator[None]:
    """Give a caller of ``main([...])`` its python / numpy / torch random streams and torch
    thread count back: ``demo`` and ``run`` seed the global streams and set the thread count
    for the command (right for the console command, whose process ends with it; a notebook
    calling ``main`` kept them). The CUDA generators come back too when CUDA was initialised
    before the call (a command that first initialises CUDA leaves them as it seeded them)."""
    import random

    import numpy as np
    import torch

    from ._process_state import new_thread_count, set_thread_counts

    threads, fresh = torch.get_num_threads(), new_thread_count()
    py, npy = random.getstate(), np.random.get_state()
    try:
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        set_thread_counts(threads, fresh)


def _main(argv: list[str] | None) -> int:
    if argv is None:
        try:
            import matplotlib
        except ImportError:  # `list` / `--help` need no plotting; commands that draw say so
            matplotlib = None
        if matplotlib is not None:
            # the console command draws to files only; main([...]) called from Python, and the
            # examples and demos, keep the caller's backend (they used to switch it)
            matplotlib.use("Agg")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    target = _target(argv) if argv else None
    wants_help = target is not None and bool({"-h", "--help"} & set(argv[1:]))
    if wants_help and argv[0] == "run":
        # `bayesphys run [--smoke] EXAMPLE --help`: the example's own options (--executor, ...)
        from .examples import load

        try:
            name = _example_arg(target)
        except argparse.ArgumentTypeError:
            name = None  # the parser below refuses it by name
        if name is not None:
            load(name).main(["--help"])  # argparse prints them and exits
    if wants_help and argv[0] == "bench":
        target = _component_arg(COMPONENTS + ("scale_out",))(target)
    if wants_help and argv[0] == "bench" and target in COMPONENTS + ("scale_out",):
        # `bayesphys bench [--quick] COMPONENT --help`: the script's own options (--only, ...)
        try:
            path = _bench_script(target)
        except FileNotFoundError as err:
            parser.error(str(err))
        cmd_bench(
            argparse.Namespace(
                component=target, bench_path=path, quick=False, out=None, device=None
            ),
            ["--help"],
        )
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        try:  # no benchmark script (an installed package, a component not landed): a usage error
            args.bench_path = _bench_script(args.component)
        except FileNotFoundError as err:
            parser.error(str(err))
        if not args.quick and args.out is None:  # the committed results, in a read-only checkout
            from ._bench import repo_root
            from ._bench.paths import checkout_write_problem

            problem = checkout_write_problem(repo_root())
            if problem:
                parser.subcommand_parsers["bench"].error(problem)
    if args.command == "calibrate" and not args.quick and args.out is None:
        from .diagnostics.suite import default_out_problem

        problem = default_out_problem()  # outside a checkout, an unwritable ./bayesphys-out
        if problem:
            parser.subcommand_parsers["calibrate"].error(problem)
    if args.command in ("run", "bench"):
        return (cmd_run if args.command == "run" else cmd_bench)(args, rest)
    if rest:
        parser.subcommand_parsers[args.command].error(f"unrecognized arguments: {' '.join(rest)}")
    return {"list": cmd_list, "demo": cmd_demo, "calibrate": cmd_calibrate}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
