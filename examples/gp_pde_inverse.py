"""Diffusivity of a Poisson problem from noisy data with the GP-HM solver (see bayesphys/examples/gp_pde_inverse.py)."""

from bayesphys.examples.gp_pde_inverse import main

main()
