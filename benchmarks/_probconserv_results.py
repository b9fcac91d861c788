"""The ProbConserv benchmark's existing results file (``benchmarks/probconserv.py``; Hansen
et al. 2023, anchor file): read it (``--merge``, the training seconds of ``--load-models``) and
rewrite it with the target notes recomputed (``--retarget``) or the reference test sets' rows
added (``--reference``)."""

from __future__ import annotations

import sys
from pathlib import Path

from bayesphys._bench import write_results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_rows import target_notes  # noqa: E402
from _probconserv_scoring import reference_rows  # noqa: E402


def _previous(out) -> dict:
    """The existing results file in ``out`` (default: benchmarks/results), or ``{}``."""
    import json

    from bayesphys._bench import repo_root

    path = (Path(out) if out else repo_root() / "benchmarks" / "results") / "probconserv.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _rewrite(args, new_rows, extra_update: dict) -> Path:
    """Rewrite the existing results file (``--out`` or benchmarks/results) with the rows
    ``new_rows(payload)``, target notes recomputed, its command and the description of the
    run that produced it (date, versions, threads, machine) kept."""
    import json

    from bayesphys._bench import repo_root

    out = Path(args.out) if args.out else repo_root() / "benchmarks" / "results"
    payload = json.loads((out / "probconserv.json").read_text(encoding="utf-8"))
    extra = {k: v for k, v in payload.items() if k not in _BASE_KEYS}
    # a file written before "threading" was recorded: not known (null), not this process's
    extra.setdefault("threading", None)
    extra.update(extra_update)
    return write_results(
        "probconserv",
        target_notes(new_rows(payload)),
        quick=payload["quick"],
        command=payload["command"],
        out=args.out,
        device=payload["device"],
        extra=extra,
    )


def _add_reference(args) -> Path:
    def rows(payload):
        kept = [r for r in payload["rows"] if r["setting"].get("test_set") != "reference"]
        return kept + reference_rows(Path(args.reference[0]), Path(args.reference[1]), args.seed)

    note = (
        "rows with test_set=reference: the same trained models scored on the reference "
        "repository's PME/Stefan test functions (50 per parameter)"
    )
    return _rewrite(args, rows, {"reference_test_sets": note})


# keys write_results sets from its arguments; every other key of the existing file (among
# them the run's date, torch, python, threads and machine) is carried over unchanged
_BASE_KEYS = {"component", "command", "quick", "device", "rows"}
