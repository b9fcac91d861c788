"""Population response to treatment with Meta Flow Matching (see
bayesphys/examples/population_response.py): ``python examples/population_response.py --smoke``."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.population_response", run_name="__main__", alter_sys=True)
