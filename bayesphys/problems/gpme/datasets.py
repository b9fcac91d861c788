"""Data sets of ProbConserv's GPME problems (Hansen et al., ICML 2023, §4 and appendix).

:class:`GPMEData` (a set of functions with context and target points), the parameter draws
(:func:`sample_parameters`), the paper's context design (:func:`make_dataset`: 10 stratified
times x 10 sorted uniform sensors, 10 x 10 sorted uniform targets) and the evaluation slice
(:func:`eval_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_int, check_range, check_real, check_seed, stream_seed
from ..._device import as_tensor, own_memory
from ..._process_state import make_generator
from ..._repr import fields_repr
from ._common import _F64, _real
from .base import GPMEProblem
from .registry import get_problem

__all__ = ["GPMEData", "sample_parameters", "make_dataset", "eval_grid"]


@dataclass
class GPMEData:
    """A set of GPME functions (one PDE instance each).

    Shapes: ``params [B]``, ``x_context [B, Nc, 2]`` (columns ``t, x``), ``y_context [B, Nc]``,
    ``x_target [B, Nt, 2]``, ``y_target [B, Nt]`` (float64; exact solution values).
    """

    problem: GPMEProblem
    params: Tensor
    x_context: Tensor
    y_context: Tensor
    x_target: Tensor
    y_target: Tensor

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def __repr__(self) -> str:
        # shapes, not values (the default printed every context and target point)
        return fields_repr(
            self,
            (),
            problem=self.problem.name,
            functions=len(self),
            params=self.params.tolist() if len(self) <= 4 else self.params,
            x_context=self.x_context,
            x_target=self.x_target,
        )

    def subset(self, idx: slice | Tensor | Sequence[int]) -> GPMEData:
        """The functions ``idx`` (a slice, index tensor ``[B']``, array or list, or a bool mask
        ``[B]``; an int ``i``, also a 0-d tensor or array, is the one function ``[i]``; a bool,
        fractional or out-of-range index is refused, naming ``idx``): a set with ``params [B']``,
        ``x_context [B', Nc, 2]``, ... (the rows ``idx`` of each tensor, copied: the subset holds
        memory of its own, so it pickles at its own size and an in-place edit of it leaves this
        set as it was)."""
        if isinstance(idx, bool | np.bool_) or (
            isinstance(idx, Tensor | np.ndarray) and idx.ndim == 0 and _has_bool(idx)
        ):
            # True indexed as a new axis ([1, B] params); a 0-d bool tensor was read as the
            # index 1 (True) or 0 (False)
            raise TypeError(
                f"idx: expected a slice, an int or a sequence of indices, received {idx!r}"
            )
        if isinstance(idx, slice):
            # a slice gave views of this set's tensors: pickle (a process pool, Ray, Dask,
            # torch.save) wrote the whole set with each subset (20x the size of 2 functions
            # of 40), and an edit of one reached the other; an index list copies, as the other
            # index kinds always did
            idx = list(range(len(self))[idx])
        idx = _function_index(idx, len(self))
        return GPMEData(
            self.problem,
            self.params[idx],
            self.x_context[idx],
            self.y_context[idx],
            self.x_target[idx],
            self.y_target[idx],
        )


def _function_index(idx, n: int) -> Tensor:
    """``idx`` (an int, a sequence, array or tensor of ints, or a bool mask ``[n]``) as a long
    index tensor ``[B']`` into ``n`` functions, or an error naming ``idx``: a 0-d array dropped
    the function axis (params ``[]``), fractional values were truncated (``[1.5, 2.0]`` gave
    the functions 1 and 2), a float tensor and an index out of range failed inside torch."""
    t = as_tensor("idx", idx)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ValueError(
                f"idx: expected a bool mask of shape ({n},) (one flag per function), received "
                f"shape {tuple(t.shape)}"
            )
        return t.nonzero().flatten()
    t = as_tensor("idx", t, dtype=torch.long)  # fractional values refused, naming idx
    if t.ndim > 1:
        raise ValueError(
            f"idx: expected an int or a 1-D sequence of indices, received shape {tuple(t.shape)}"
        )
    t = t.reshape(-1)
    if t.numel() and not bool(((t >= -n) & (t < n)).all()):
        raise ValueError(
            f"idx: expected indices in [-{n}, {n}) (the set holds {n} functions), received "
            f"values in [{int(t.min())}, {int(t.max())}]"
        )
    return t


def sample_parameters(
    problem: GPMEProblem,
    n: int,
    *,
    seed: int | None = None,
    param_range: tuple[float, float] | None = None,
) -> Tensor:
    """``n`` parameters ``U(param_range)`` ``[n]`` (float64; default range: ``train_range``).

    The same ``seed`` gives the same uniform draws whatever the range (an affine image)."""
    problem = get_problem(problem)
    n = check_int("n", n, minimum=0)
    if seed is not None:
        seed = check_seed("seed", seed)
    g = make_generator(seed)
    lo, hi = problem.train_range if param_range is None else check_range("param_range", param_range)
    problem.check_params("param_range", lo, hi)
    return lo + (hi - lo) * torch.rand(n, dtype=_F64, generator=g)


def _sorted_uniform(b: int, n: int, lo: float, hi: float, g) -> Tensor:
    return (lo + (hi - lo) * torch.rand(b, n, dtype=_F64, generator=g)).sort(-1).values


def _has_bool(value: object) -> bool:
    """Whether ``value`` is a bool, a bool array/tensor or a sequence holding one."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, (Tensor, np.ndarray)):
        return value.dtype in (torch.bool, np.bool_)
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return False


def make_dataset(
    problem: str | GPMEProblem,
    n_functions: int | None = None,
    *,
    params: Tensor | list[float] | None = None,
    seed: int | None = 0,
    n_t_context: int = 10,
    n_x_context: int = 10,
    n_t_target: int = 10,
    n_x_target: int = 10,
    noise_std: float = 0.0,
    param_range: tuple[float, float] | None = None,
) -> GPMEData:
    """Seeded functions with the paper's context design (generated on the fly).

    Either ``n_functions`` functions with parameters drawn ``U(param_range)`` (default
    ``train_range``: training functions), or the given ``params`` (one function each). Contexts:
    ``n_t_context`` stratified times x the same ``n_x_context`` sorted uniform sensor positions;
    targets: sorted uniform ``n_t_target x n_x_target``. ``noise_std`` adds Gaussian sensor noise to
    the contexts only. ``params``: ``[B]`` (a tensor or a list); the set's tensors are
    ``params [B]``, ``x_context [B, Nc, 2]`` with ``Nc = n_t_context n_x_context``,
    ``y_context [B, Nc]``, ``x_target [B, Nt, 2]`` with ``Nt = n_t_target n_x_target``,
    ``y_target [B, Nt]`` (:class:`GPMEData`). The points of each set are time-major: point
    ``i * n_x + j`` is the ``i``-th time with the ``j``-th position (both ascending), so
    ``y_context.reshape(B, n_t_context, n_x_context)`` is ``[function, time, sensor]`` (and
    the targets likewise).

    ``seed`` names two independent streams (:func:`bayesphys.stream_seed`): the parameters'
    and the design's (times, sensors, targets, noise), so no two seeds share either draw.
    The design stream depends on ``seed`` alone, not on ``params`` or ``n_functions``: two
    sets made with the same ``seed`` -- e.g. a training set ``make_dataset(p, B, seed=s)``
    and a test set ``make_dataset(p, params=[...] * B, seed=s)`` -- have the same context
    times, sensor positions, target points and noise draws function by function (with
    different numbers of functions the first functions' context times still coincide). Give
    training, validation and test sets different seeds to keep their designs independent
    (``benchmarks/probconserv.py`` uses ``555 + seed``, ``777 + seed``, ``10_000 + seed``).
    """
    prob = get_problem(problem)
    if seed is not None:
        seed = check_seed("seed", seed)
    if params is None:
        if n_functions is None:
            raise ValueError("n_functions: expected a positive int (or params), received None")
        n_functions = check_int("n_functions", n_functions, minimum=1)
        p = sample_parameters(
            prob,
            n_functions,
            seed=None if seed is None else stream_seed(seed, "gpme-params"),
            param_range=param_range,
        )
    else:
        if param_range is not None:
            raise ValueError("param_range: give either params or param_range, not both")
        if n_functions is not None:
            raise ValueError(
                f"n_functions: give either params (one function each) or n_functions, not "
                f"both; received n_functions={n_functions!r}"
            )
        if _has_bool(params):
            raise TypeError(
                "params: expected real parameter values, received bool values (True/False "
                "would be taken as 1.0/0.0)"
            )
        p = as_tensor("params", params, dtype=_F64)
        if p.ndim > 1:
            raise ValueError(
                f"params: expected a 1-D sequence (one parameter per function), received "
                f"shape {tuple(p.shape)}"
            )
        # memory of its own: the set kept a view of the caller's params, so a later edit of
        # them relabelled functions whose values stayed those of the old parameters
        p = own_memory(p.reshape(-1), params)
        if not p.numel():
            raise ValueError("params: expected at least one parameter value, received none")
        prob.check_params("params", float(p.min()), float(p.max()))
    noise_std = check_real("noise_std", noise_std, minimum=0.0)
    n_t_context, n_x_context, n_t_target, n_x_target = (
        check_int(name, v, minimum=1)
        for name, v in (
            ("n_t_context", n_t_context),
            ("n_x_context", n_x_context),
            ("n_t_target", n_t_target),
            ("n_x_target", n_x_target),
        )
    )
    b = p.shape[0]
    g = make_generator(None if seed is None else stream_seed(seed, "gpme-design"))
    t0, t1 = prob.t_range
    x0, x1 = prob.x_range
    # stratified times: one uniform draw in each of n_t_context equal bins
    edges = torch.linspace(t0, t1, n_t_context + 1, dtype=_F64)
    tc = edges[:-1] + (edges[1:] - edges[:-1]) * torch.rand(b, n_t_context, dtype=_F64, generator=g)
    xc = _sorted_uniform(b, n_x_context, x0, x1, g)
    tt = _sorted_uniform(b, n_t_target, t0, t1, g)
    xt = _sorted_uniform(b, n_x_target, x0, x1, g)

    def mesh(tv, xv):
        tm = tv[:, :, None].expand(-1, -1, xv.shape[1])
        xm = xv[:, None, :].expand(-1, tv.shape[1], -1)
        return torch.stack([tm.reshape(b, -1), xm.reshape(b, -1)], -1)

    xin_c, xin_t = mesh(tc, xc), mesh(tt, xt)
    yc = prob.solution(xin_c[..., 0], xin_c[..., 1], p[:, None])
    yt = prob.solution(xin_t[..., 0], xin_t[..., 1], p[:, None])
    if noise_std > 0:
        yc = yc + noise_std * torch.randn(yc.shape, dtype=_F64, generator=g)
    return GPMEData(prob, p, xin_c, yc, xin_t, yt)


def eval_grid(problem: str | GPMEProblem, t: float | None = None, n_x: int = 201) -> Tensor:
    """Target inputs ``[n_x, 2]`` (``t, x``) on the uniform slice at time ``t`` (default table
    time)."""
    prob = get_problem(problem)
    tt = prob.table_time if t is None else _real("t", t, minimum=prob.t_range[0])
    x = prob.grid(n_x)
    return torch.stack([torch.full_like(x, tt), x], -1)
