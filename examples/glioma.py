"""Glioma inverse problem (see bayesphys/examples/glioma.py);
``python examples/glioma.py --smoke``."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.glioma", run_name="__main__", alter_sys=True)
