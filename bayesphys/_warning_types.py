"""The categories of the package's warnings: each is a :class:`BayesphysWarning` and also the
standard category it always was (:class:`UserWarning`, :class:`RuntimeWarning`,
:class:`DeprecationWarning`, :class:`FutureWarning`), so filters and ``except`` clauses on the
standard ones still see it, while a filter on :class:`BayesphysWarning` acts on the package's
warnings alone:

>>> import warnings
>>> import bayesphys
>>> issubclass(bayesphys.BayesphysUserWarning, UserWarning)
True
>>> with warnings.catch_warnings():
...     warnings.simplefilter("error", bayesphys.BayesphysWarning)  # the package's only
...     try:
...         warnings.warn("from bayesphys", bayesphys.BayesphysRuntimeWarning)
...     except RuntimeWarning as err:
...         print(type(err).__name__, err)
BayesphysRuntimeWarning from bayesphys
"""

from __future__ import annotations

__all__ = [
    "BayesphysWarning",
    "BayesphysUserWarning",
    "BayesphysRuntimeWarning",
    "BayesphysDeprecationWarning",
    "BayesphysFutureWarning",
]


class BayesphysWarning(Warning):
    """Base class of every warning bayesphys issues (never issued itself).

    ``warnings.filterwarnings("ignore", category=bayesphys.BayesphysWarning)`` silences the
    package's warnings and no other library's; ``"error"`` in its place raises them (the test
    suite does, so that a warning no test expects fails it).
    """


class BayesphysUserWarning(BayesphysWarning, UserWarning):
    """A :class:`UserWarning` of bayesphys: a call whose result is valid but likely not what
    was meant (an untrained model, an extrapolation, an ignored argument)."""


class BayesphysRuntimeWarning(BayesphysWarning, RuntimeWarning):
    """A :class:`RuntimeWarning` of bayesphys: a numerical step that fell short (a solve that
    did not converge, a jitter added, an unstable step) and a result that may be off."""


class BayesphysDeprecationWarning(BayesphysWarning, DeprecationWarning):
    """A :class:`DeprecationWarning` of bayesphys: an argument or name that will be removed."""


class BayesphysFutureWarning(BayesphysWarning, FutureWarning):
    """A :class:`FutureWarning` of bayesphys: a renamed argument still accepted under its old
    name (shown by default, as a change users of the package should act on)."""
