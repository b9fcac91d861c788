r"""The discrete loss: unknown grid fields and parameters, user-stated weighted residuals.

A :class:`DiscreteProblem` packs the unknowns -- fields ``u_f`` on grids of any shape and named
parameters :math:`\theta` -- into one flat vector :math:`x` (fields first, C order, then
parameters). The user's ``residuals(fields, params)`` returns a dict of residual tensors
:math:`r_k` **already divided by their noise scale** :math:`\sigma_k` (weight = 1/sigma), e.g.

.. code-block:: python

    def residuals(f, p):
        u = f["u"]
        return {"pde": (u_t - p["D"] * u_xx) / sigma_pde,   # FD/FV stencil at every cell
                "data": (u[obs] - y) / sigma_y,              # observations
                "bc": ..., "reg": ...}

The loss is :math:`L(x) = \tfrac12 \sum_k \lVert r_k(x) \rVert^2`, i.e. the negative log
posterior :math:`-\log p(u, \theta \mid y)` up to a constant when every residual is a Gaussian
term (Karnakov et al. 2024 use :math:`\sum_k \mathrm{mean}(r_k^2)` over terms of
:math:`N_k` entries: scale weights by :math:`\sqrt{2/N_k}` to get theirs exactly; by
:math:`1/\sqrt{N_k}`, half of it, the same minimiser but, read as :math:`e^{-L}`, twice the
posterior variance). Fields can be held in the multigrid decomposition
(:class:`~bayesphys.odil.multigrid.Multigrid`); :meth:`DiscreteProblem.unpack` always returns
fine-grid fields, so residual code never changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .._checks import check_callback, check_int, check_int_sequence
from .._device import ArrayLike, as_tensor, model_device, single_or_double
from .multigrid import Multigrid

__all__ = ["DiscreteProblem"]

ResidualFn = Callable[[dict[str, Tensor], dict[str, Tensor]], Mapping[str, Tensor]]


class DiscreteProblem:
    r"""Unknown fields + parameters and a residual function (see the module docstring).

    Parameters
    ----------
    fields
        name -> fine grid shape (ints >= 1), e.g. ``{"u": (nt, nx, ny)}``; the field is
        then a tensor ``[nt, nx, ny]``.
    params
        name -> initial value (a number, ``[]``, or a tensor of any shape ``[*]``), e.g.
        ``{"D": 0.1}``.
    residuals
        ``residuals(fields, params) -> {name: tensor}`` (weighted residuals, each of
        any shape ``[*]``; the loss is :math:`\tfrac12\sum_k \lVert r_k\rVert^2`).
    multigrid
        name -> number of levels (an int >= 1) for fields held in the multigrid
        decomposition (``None`` / 1 = plain grid values); fields of 1 to 4 axes.
    device, dtype
        where the unknowns live (``None``: the CPU; ``"auto"``: CUDA when
        present) and their dtype (float64 default, or float32; half precision is
        refused: the solvers' linear algebra has none).

    Attributes
    ----------
    n, slices, field_names, param_names
        ``n``: total number of unknowns, ``x [n]``; ``slices[name]``: the slice of each block
        in ``x``; ``field_names`` / ``param_names``: the names of the fields / parameters.

    Notes
    -----
    Checked at construction (``TypeError`` / ``ValueError`` naming the argument): ``fields``,
    ``params`` and ``multigrid`` are dicts, a field and a parameter never share a name,
    parameter values are finite reals, and ``residuals`` can be called with two positional
    arguments, and there is at least one unknown. Each residual term must be a real tensor
    (checked when it is evaluated), and where the unknowns are recorded for reverse mode
    (the solvers and the Laplace posterior) at least one term must depend on them: a
    ``ValueError`` naming ``residuals`` otherwise.
    """

    def __init__(
        self,
        fields: Mapping[str, Sequence[int]],
        params: Mapping[str, float | Tensor],
        residuals: ResidualFn,
        *,
        multigrid: Mapping[str, int] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> None:
        if not callable(residuals):
            raise TypeError(f"residuals: expected a callable, received {type(residuals).__name__}")
        # positional (fields, params): a mismatch used to surface at the first solver step
        check_callback("residuals", residuals, ({}, {}), ("fields", "params"))
        for arg, value in (("fields", fields), ("params", params), ("multigrid", multigrid)):
            if not isinstance(value, Mapping) and not (arg == "multigrid" and value is None):
                raise TypeError(
                    f"{arg}: expected a dict {{name: ...}}, received {type(value).__name__}"
                )
        shared = sorted(set(fields) & set(params))
        if shared:
            raise ValueError(
                f"params: names {shared} are also fields; a field and a parameter need "
                "different names (they share one vector of unknowns)"
            )
        self.device = model_device(device)
        # the solvers' Cholesky, lstsq and sparse solves have no half-precision kernels
        self.dtype = single_or_double(dtype, "the solvers' linear algebra has no half precision")
        self.residual_fn = residuals
        self.field_shapes: dict[str, tuple[int, ...]] = {}
        for k, v in fields.items():
            s = check_int_sequence(f"fields[{k!r}]", v, minimum=1)
            self.field_shapes[k] = s
        self.multigrid: dict[str, Multigrid] = {}
        for k, lv in (multigrid or {}).items():
            if k not in self.field_shapes:
                raise ValueError(f"multigrid: unknown field {k!r}; fields are {list(fields)}")
            if lv is not None:
                lv = check_int(f"multigrid[{k!r}]", lv, minimum=1)
            if lv is not None and lv > 1:
                if len(self.field_shapes[k]) > 4:  # Multigrid's own error named "shape"
                    raise ValueError(
                        f"multigrid[{k!r}]: the multigrid decomposition takes fields of 1 to 4 "
                        f"axes; field {k!r} has shape {self.field_shapes[k]}"
                    )
                self.multigrid[k] = Multigrid(self.field_shapes[k], lv)
        self.param_init = {
            k: as_tensor(f"params[{k!r}]", v, dtype=self.dtype, device=self.device).detach().clone()
            for k, v in params.items()
        }
        self.slices: dict[str, slice] = {}
        off = 0
        for k, s in self.field_shapes.items():
            m = self.multigrid[k].size if k in self.multigrid else math.prod(s)
            self.slices[k] = slice(off, off + m)
            off += m
        self.n_field = off
        for k, v in self.param_init.items():
            self.slices[k] = slice(off, off + v.numel())
            off += v.numel()
        self.n = off
        if self.n == 0:  # every solver failed inside torch (no graph, max() of nothing)
            raise ValueError(
                "fields, params: expected at least one unknown (a field cell or a parameter "
                f"entry), received fields {dict(self.field_shapes)} and parameters of sizes "
                f"{ {k: v.numel() for k, v in self.param_init.items()} }"
            )
        self.field_names = list(self.field_shapes)
        self.param_names = list(self.param_init)

    # -- packing -----------------------------------------------------------------------------
    def pack(
        self, fields: Mapping[str, Tensor] | None = None, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Flat unknown vector ``x [n]`` from fine fields (zeros if missing) and parameters
        (initial values if missing); unknown names or a parameter of another shape than its
        initial value (a plain number for a one-element parameter is fine) raise ``ValueError``,
        complex or non-numeric values ``TypeError`` naming the entry."""
        for arg, given, known in (
            ("fields", fields, self.field_shapes),
            ("params", params, self.param_init),
        ):
            unknown = sorted(set(given or {}) - set(known))
            if unknown:
                raise ValueError(f"{arg}: unknown names {unknown}; expected some of {list(known)}")
        x = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for k, s in self.field_shapes.items():
            if fields is not None and k in fields:
                # named checks: a complex field lost its imaginary part with only a warning
                u = as_tensor(
                    f"fields[{k!r}]", fields[k], dtype=self.dtype, device=self.device, finite=False
                )
                if tuple(u.shape) != s:
                    raise ValueError(
                        f"fields[{k!r}]: expected shape {s}, received {tuple(u.shape)}"
                    )
                x[self.slices[k]] = (
                    self.multigrid[k].from_fine(u) if k in self.multigrid else u.reshape(-1)
                )
        for k, v in self.param_init.items():
            val = v if params is None or k not in params else params[k]
            val = as_tensor(
                f"params[{k!r}]", val, dtype=self.dtype, device=self.device, finite=False
            )
            if val.shape != v.shape and not (val.dim() == 0 and v.numel() == 1):
                raise ValueError(
                    f"params[{k!r}]: expected shape {tuple(v.shape)}, received {tuple(val.shape)}"
                )
            x[self.slices[k]] = val.reshape(-1)
        return x

    def unpack(self, x: ArrayLike) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``x [n]`` -> (fine fields ``{name: [*shape]}``, params ``{name: [*shape]}``); ``x`` a
        tensor (passed unchanged) or an array / list (in the problem's dtype and device)."""
        if not isinstance(x, Tensor):  # a list failed with AttributeError ('shape')
            x = as_tensor("x", x, dtype=self.dtype, device=self.device, finite=False, real=True)
        if x.shape != (self.n,):
            raise ValueError(f"x: expected shape ({self.n},), received {tuple(x.shape)}")
        fields = {}
        for k, s in self.field_shapes.items():
            c = x[self.slices[k]]
            fields[k] = self.multigrid[k].to_fine(c) if k in self.multigrid else c.reshape(s)
        params = {k: x[self.slices[k]].reshape(v.shape) for k, v in self.param_init.items()}
        return fields, params

    def initial(self) -> Tensor:
        """Initial unknowns ``x [n]``: zero fields, the given parameter values."""
        return self.pack()

    # -- residuals ---------------------------------------------------------------------------
    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Weighted residual terms ``{name: tensor}`` (each of the shape the residual function
        gives) at the unknowns ``x [n]``."""
        fields, params = self.unpack(x)
        out = self.residual_fn(fields, params)
        if not isinstance(out, Mapping) or not out:
            raise TypeError("residuals: expected a non-empty dict {name: tensor}")
        for k, v in out.items():
            if not isinstance(v, Tensor):
                raise TypeError(
                    f"residuals: expected a tensor for every term, received "
                    f"{type(v).__name__} for {k!r}"
                )
            # a complex term gave a complex "loss" (1/2 sum r^2, not |r|^2): LM with CG kept
            # x0 without a word, the other solvers failed inside torch
            if v.is_complex():
                raise TypeError(
                    f"residuals: expected real residuals, received {v.dtype} for {k!r} (split "
                    "a complex residual into its real and imaginary parts, two real terms)"
                )
        # unknowns recorded for reverse mode (the GN/LM, Laplace and Adam/L-BFGS paths) and
        # no term on their graph: every solver failed inside torch with "element 0 of
        # tensors does not require grad and does not have a grad_fn"
        if (
            torch.is_grad_enabled()
            and x.requires_grad
            and not any(v.requires_grad for v in out.values())
        ):
            raise ValueError(
                f"residuals: no term depends on the unknowns (terms {list(out)}); each was "
                "computed without the fields and parameters it was given, or cut from them "
                "(.detach(), .item(), float(), .numpy(), a new torch.tensor(...)): build "
                "the residuals from f[name] and p[name] with torch operations"
            )
        return dict(out)

    def residual(self, x: Tensor) -> Tensor:
        """All weighted residuals flattened and concatenated, ``r(x) [m]``, at ``x [n]``."""
        return torch.cat([t.reshape(-1) for t in self.terms(x).values()])

    def loss(self, x: Tensor) -> Tensor:
        r""":math:`\tfrac12\lVert r(x)\rVert^2` ``[]`` at ``x [n]`` (negative log posterior up
        to a constant)."""
        r = self.residual(x)
        return 0.5 * (r * r).sum()

    def loss_terms(self, x: Tensor) -> dict[str, float]:
        r"""Per-term :math:`\tfrac12\lVert r_k\rVert^2` at the unknowns ``x [n]``, as floats
        (for reports)."""
        with torch.no_grad():
            return {k: 0.5 * float((v * v).sum()) for k, v in self.terms(x).items()}

    def plain(self) -> DiscreteProblem:
        """The same problem with every field on its plain grid (no multigrid): the
        parameterisation in which the Laplace posterior is defined (multigrid is redundant)."""
        return DiscreteProblem(
            self.field_shapes,
            self.param_init,
            self.residual_fn,
            device=self.device,
            dtype=self.dtype,
        )

    def to_plain(self, x: Tensor) -> Tensor:
        """Map ``x [n]`` of this problem to the unknowns ``[n']`` of :meth:`plain` (each
        multigrid field's coefficients replaced by its fine grid values)."""
        fields, params = self.unpack(x)
        return self.plain().pack(fields, params)
