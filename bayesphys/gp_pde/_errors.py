"""Errors of the GP-HM solvers that signal a numerical failure (not a bug or a bad input)."""

from __future__ import annotations

__all__ = ["NumericalFailure"]


class NumericalFailure(ValueError):
    """A solve failed numerically: a non-finite iterate, field or hyperparameter, a Gram factor
    that is not positive definite in the working precision, or a nonlinear iteration that
    diverged or did not converge.

    :meth:`~.model.GPPDESolver.fit` reports these (and ``torch.linalg.LinAlgError``) as a
    divergence and restores the last good state; any other error propagates. A subclass of
    ``ValueError``, so code that catches ``ValueError`` from the solvers keeps working.
    """
