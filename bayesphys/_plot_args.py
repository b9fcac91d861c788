"""Argument checks shared by the public plots (:mod:`bayesphys.plots`): the posterior, and
which member of a batched one to draw."""

from __future__ import annotations

from typing import Any

from ._checks import check_int
from ._posterior_base import is_posterior, missing_members

__all__: list[str] = []


def _check_posterior(post: Any) -> None:
    """A ``TypeError`` naming ``post`` and its missing members unless it is a Posterior."""
    if not is_posterior(post):
        raise TypeError(
            f"post: expected a bayesphys Posterior (GaussianPosterior, SamplePosterior or a "
            f"class with the Posterior members), received {type(post).__name__}"
            f"{missing_members(post)}"
        )


def _member_index(post: Any, batch_index: Any) -> tuple[int, ...]:
    """The index of one batch member of ``post`` (``()`` for an unbatched posterior)."""
    batch_shape = tuple(post.batch_shape)
    if not batch_shape:
        if batch_index is not None and batch_index != ():
            raise ValueError(
                f"batch_index: the posterior is not batched (batch_shape ()), received "
                f"{batch_index!r}; leave batch_index out"
            )
        return ()
    if batch_index is None:
        raise ValueError(
            f"batch_index: the posterior is batched (batch_shape {batch_shape}); pass "
            f"batch_index, an int or a tuple of {len(batch_shape)} int(s), to pick one member"
        )
    if isinstance(batch_index, (tuple, list)):
        idx = tuple(check_int(f"batch_index[{i}]", b) for i, b in enumerate(batch_index))
    else:
        idx = (check_int("batch_index", batch_index),)
    if len(idx) != len(batch_shape):
        raise ValueError(
            f"batch_index: expected {len(batch_shape)} index(es) for batch_shape "
            f"{batch_shape}, received {batch_index!r}"
        )
    out = []
    for i, n in zip(idx, batch_shape):
        if not -n <= i < n:
            raise ValueError(
                f"batch_index: {batch_index!r} is out of range for batch_shape {batch_shape}"
            )
        out.append(i % n)
    return tuple(out)
