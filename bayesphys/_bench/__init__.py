"""Benchmark infrastructure: results files, their ``docs/benchmarks.md`` tables, and the
helpers the ``benchmarks/*.py`` scripts share.

* :mod:`.paths` — the source checkout holding ``benchmarks/`` (:func:`repo_root`);
* :mod:`.commands` — the command a results file records and the thread settings beside it
  (:func:`recorded_command`, :func:`thread_env_prefix`, :func:`threading_info`);
* :mod:`.tables` — result rows and their Markdown tables (:func:`bench_row`,
  :func:`render_table`, :func:`rows_table`, :func:`seed_summary_rows`, :func:`metric_values`);
* :mod:`.results` — results files as strict JSON, written without losing them, partial files,
  and the ``docs/benchmarks.md`` block regenerated from a results file (:func:`write_results`,
  :func:`write_results_json`, :func:`write_partial`, :func:`update_benchmarks_md`);
* :mod:`.tasks` — a script's tasks run in order, here or on worker processes
  (:func:`run_script_tasks`, :func:`call_script`, :func:`script_module`);
* :mod:`.ablation` — an ablation script's options, results file and ``main()``
  (:func:`ablation_parser`, :func:`write_rows`, :func:`smoke_ablation_main`);
* :mod:`.argtypes` — argparse types of the scripts' comma lists (:func:`comma_ids`,
  :func:`comma_list`): an unknown id is refused by the parse.

Every name is re-exported here, so ``from bayesphys._bench import write_results`` keeps
working. A test that replaces a module global patches the module that reads it (the shell's
thread counts: :mod:`.commands`; ``repo_root`` as :func:`write_results` and
:func:`update_benchmarks_md` see it: :mod:`.results`), not this package.
"""

from .ablation import ablation_parser, positive_int, results_name_arg, write_rows
from .ablation import smoke_ablation_main as smoke_ablation_main
from .argtypes import comma_ids, comma_list
from .commands import recorded_command as recorded_command
from .commands import thread_env_prefix as thread_env_prefix
from .commands import threading_info as threading_info
from .paths import _is_checkout as _is_checkout
from .paths import repo_root
from .results import (
    partial_path,
    read_previous_results,
    remove_partial,
    results_json,
    update_benchmarks_md,
    write_partial,
    write_results,
    write_results_json,
)
from .tables import bench_row, metric_values, print_rows_table, render_table, rows_table
from .tables import seed_summary_rows as seed_summary_rows
from .tasks import call_script, run_script_tasks, script_module

__all__ = [
    "repo_root",
    "write_results",
    "results_json",
    "write_results_json",
    "metric_values",
    "write_partial",
    "partial_path",
    "read_previous_results",
    "remove_partial",
    "render_table",
    "update_benchmarks_md",
    "bench_row",
    "call_script",
    "run_script_tasks",
    "rows_table",
    "write_rows",
    "print_rows_table",
    "ablation_parser",
    "positive_int",
    "results_name_arg",
    "comma_ids",
    "comma_list",
    "script_module",
]
