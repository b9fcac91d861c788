"""Stefan front position from sparse noisy sensors (see bayesphys/examples/stefan_front.py)."""

from bayesphys.examples.stefan_front import main

main()
