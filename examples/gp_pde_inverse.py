"""Diffusivity of a Poisson problem from noisy data with the GP-HM solver (see
bayesphys/examples/gp_pde_inverse.py)."""

import runpy

if __name__ == "__main__":  # the module's own entry point: runs main() and prints its result
    runpy.run_module("bayesphys.examples.gp_pde_inverse", run_name="__main__", alter_sys=True)
