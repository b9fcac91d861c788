"""Cohort of inverse problems with fit_many: ``python examples/cohort.py --smoke``."""

from bayesphys.examples.cohort import main

if __name__ == "__main__":
    main()
