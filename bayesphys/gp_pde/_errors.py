"""Errors of the GP-HM solvers that signal a numerical failure (not a bug or a bad input), and
the tuple of those that a fit reports as a divergence."""

from __future__ import annotations

import torch

__all__ = ["NumericalFailure", "NUMERICAL"]


class NumericalFailure(ValueError):
    """A solve failed numerically: a non-finite iterate, field or hyperparameter, a Gram factor
    that is not positive definite in the working precision, or a nonlinear iteration that
    diverged or did not converge.

    :meth:`~.model.GPPDESolver.fit` reports these (and ``torch.linalg.LinAlgError``) as a
    divergence and restores the last good state; any other error propagates. A subclass of
    ``ValueError``, so code that catches ``ValueError`` from the solvers keeps working.
    """


# failures of a solve that fit() reports as a divergence (restoring the last good state); any
# other error inside a solve (a bug, a bad input) propagates with its own traceback
NUMERICAL = (NumericalFailure, torch.linalg.LinAlgError)
