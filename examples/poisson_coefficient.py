"""Poisson coefficient field from noisy sensors:
``python examples/poisson_coefficient.py --smoke``."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.poisson_coefficient", run_name="__main__", alter_sys=True)
