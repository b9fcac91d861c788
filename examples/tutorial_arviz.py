"""Fit, inspect and export with ArviZ (see bayesphys/examples/tutorial_arviz.py);
``python examples/tutorial_arviz.py --smoke``."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.tutorial_arviz", run_name="__main__", alter_sys=True)
