"""Stefan front position from sparse noisy sensors (see bayesphys/examples/stefan_front.py)."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.stefan_front", run_name="__main__", alter_sys=True)
