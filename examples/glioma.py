"""Glioma inverse problem (see bayesphys/examples/glioma.py); ``python examples/glioma.py --smoke``."""

from bayesphys.examples.glioma import main

main()
