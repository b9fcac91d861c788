"""Poisson coefficient field from noisy sensors: ``python examples/poisson_coefficient.py --smoke``."""

from bayesphys.examples.poisson_coefficient import main

main()
