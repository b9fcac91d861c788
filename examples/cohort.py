"""Cohort of inverse problems with fit_many: ``python examples/cohort.py --smoke``.

Exits with status 1 when some problems failed (their errors are recorded in the output), as
``bayesphys run cohort`` does."""

from bayesphys.examples.cohort import main

if __name__ == "__main__":
    raise SystemExit(1 if main().get("failed") else 0)
