"""Export to ArviZ: posteriors and draws to the ArviZ schema, on whichever ArviZ is installed.

bayesphys builds plain :class:`xarray.Dataset` groups with the ArviZ schema
(``posterior``, ``posterior_predictive``, ``observed_data``, ``log_likelihood``,
``sample_stats``, ``constant_data`` and any extra group such as ``prior_sbc``); draws carry
``(chain, draw, *dims)``. On ArviZ 0.x (Python 3.10/3.11) the groups become an
:class:`arviz.InferenceData`; on ArviZ >= 1 (Python >= 3.12) an :class:`xarray.DataTree`.
netCDF files written by either are read by both.

Example
-------
>>> import numpy as np
>>> from bayesphys.inference_data import build_inference_data
>>> idata = build_inference_data(posterior={"D": np.random.rand(2, 50)})
>>> group_dataset(idata, "posterior")["D"].dims
('chain', 'draw')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arviz_version import ARVIZ_V1, group_names
from ._netcdf import load_netcdf, save_netcdf

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

    from ._posterior_base import Posterior

__all__ = [
    "ARVIZ_V1",
    "build_inference_data",
    "to_inference_data",
    "group_dataset",
    "group_names",
    "assemble_groups",
    "hdi_bounds",
    "save_netcdf",
    "load_netcdf",
    "SAMPLE_GROUPS",
]

SAMPLE_GROUPS = (
    "posterior",
    "posterior_predictive",
    "predictions",
    "log_likelihood",
    "log_prior",
    "sample_stats",
    "prior",
    "prior_predictive",
    "sample_stats_prior",
    "warmup_posterior",
    "warmup_posterior_predictive",
    "warmup_predictions",
    "warmup_log_likelihood",
    "warmup_sample_stats",
)
"""Groups whose variables carry leading ``(chain, draw)`` dims: those of the ArviZ schema
(passed to :func:`build_inference_data` by name or in ``extra_groups``)."""


class _Fresh:
    """Draws made for one export and held nowhere else (a GaussianPosterior's, a pick of a
    SamplePosterior's): :func:`_np` takes their memory on the CPU instead of copying it (the copy
    was the export's peak, a second array of all the draws)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor


def _np(value: Any, *, copy: bool = True, name: str = "value") -> np.ndarray:
    """``value`` as a numpy array of its own (``copy=False``: a view where one is possible,
    for a look at its shape). A view of a CPU tensor or of an array shared its storage: an edit
    of the returned InferenceData rewrote the caller's tensor (a SamplePosterior's draws). A
    ``meta`` tensor (no values) or a ragged list is refused with a ``ValueError`` naming
    ``name`` (torch's "Cannot copy out of meta tensor", numpy's "inhomogeneous shape"). The
    tensor of a :class:`_Fresh` is taken as it is on the CPU (no copy)."""
    if isinstance(value, _Fresh):
        value, copy = value.tensor, False
    try:
        import torch

        if isinstance(value, torch.Tensor):
            if value.device.type == "meta":
                raise ValueError(f"{name}: expected values, received a tensor on the 'meta' device")
            if value.dtype == torch.bfloat16:  # numpy has no bfloat16: exactly as float32
                value = value.float()
            return value.detach().to("cpu", copy=copy).numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        return np.array(value, copy=True) if copy else np.asarray(value)
    except ValueError as err:  # a ragged nesting of lists
        raise ValueError(
            f"{name}: expected an array (nested lists of equal lengths), received a ragged "
            f"{type(value).__name__} ({err})"
        ) from None


def _mapping(name: str, value: Any) -> dict:
    """``value`` (``None`` or a mapping) as a dict; anything else is refused naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        # a bayesphys posterior exports itself (its draws, coordinates and batch names)
        hint = (
            f"; export a posterior with its own {type(value).__name__}.to_inference_data(), or "
            f"pass {{'u': post.sample((chains, draws))}}"
            if callable(getattr(value, "to_inference_data", None))
            else ""
        )
        raise TypeError(
            f"{name}: expected a mapping (dict) of name -> values, received "
            f"{type(value).__name__}{hint}"
        )
    return dict(value)


def _dim_names(where: str, names: Any, *, sample: bool) -> tuple[str, ...]:
    """Dimension names as a tuple of distinct strings (a single string is one name)."""
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, (list, tuple, np.ndarray)):
        raise TypeError(
            f"{where}: expected a list of dimension names, received {type(names).__name__} "
            f"{names!r}"
        )
    names = tuple(names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"{where}: expected non-empty strings as names, received {bad!r}")
    for n in names:
        _no_slash(where, n)
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: expected distinct names, received {list(names)}")
    reserved = [n for n in names if n in ("chain", "draw")] if sample else []
    if reserved:
        raise ValueError(
            f"{where}: 'chain' and 'draw' are the leading sample dims, received {list(names)}"
        )
    return names


def _no_slash(where: str, name: str) -> None:
    """Refuse a ``/`` in a variable or dimension name: netCDF (HDF5) and ArviZ 1.x's
    DataTree read it as a group path, so such a name failed only at ``save_netcdf``."""
    if "/" in name:
        raise ValueError(
            f"{where}: expected names without '/' (netCDF and DataTree read it as a group "
            f"path), received {name!r}"
        )


def _check_distinct(name: str, values: np.ndarray) -> None:
    """Refuse repeated values in ``coords[name]`` (two NaNs count as a repeat): a coordinate
    labels each point once; a repeated label made ``.sel`` return several points and
    ``az.summary`` fail ("setting an array element with a sequence" on ArviZ 0.x, "The truth
    value of a Series is ambiguous" on 1.x)."""
    import pandas as pd  # imported by xarray anyway

    index = pd.Index(values)
    if index.has_duplicates:
        repeated = list(dict.fromkeys(index[index.duplicated()].tolist()))
        raise ValueError(
            f"coords[{name!r}]: expected distinct values (one label per point), received "
            f"repeated value(s) {repeated[:5]}{' ...' if len(repeated) > 5 else ''}"
        )


def _dataset(
    group: str,
    variables: Mapping[str, Any],
    coords: Mapping[str, Any],
    dims: Mapping[str, list[str] | tuple[str, ...]],
) -> xr.Dataset:
    sample = group in SAMPLE_GROUPS
    data_vars = {}
    lead_shape = None
    for name, value in variables.items():
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{group}: expected non-empty strings as variable names, received {name!r}"
            )
        _no_slash(group, name)
        arr = _np(value, name=f"{group}.{name}")
        if arr.dtype.kind in "OSUV":  # a string was read as a 0-dim array: "shape ()"
            raise TypeError(
                f"{group}.{name}: expected numbers (a tensor, an array or nested lists of "
                f"numbers), received {type(value).__name__} of dtype {arr.dtype}"
            )
        lead = ("chain", "draw") if sample else ()
        if arr.ndim < len(lead):
            raise ValueError(
                f"{group}.{name}: expected leading (chain, draw) dims, received shape {arr.shape}"
            )
        if sample:
            if lead_shape is not None and arr.shape[:2] != lead_shape[1]:
                raise ValueError(
                    f"{group}.{name}: expected leading (chain, draw) = {lead_shape[1]} like "
                    f"{group}.{lead_shape[0]}, received shape {arr.shape}"
                )
            lead_shape = lead_shape or (name, arr.shape[:2])
        rest = arr.ndim - len(lead)
        if name in dims:
            vdims = _dim_names(f"dims[{name!r}]", dims[name], sample=sample)
        else:
            vdims = tuple(f"{name}_dim_{i}" for i in range(rest))
        if len(vdims) != rest:
            raise ValueError(
                f"dims[{name!r}]: expected {rest} names for shape {arr.shape} in group "
                f"{group!r}, received {list(vdims)}"
            )
        data_vars[name] = (lead + vdims, arr)
    all_dims = {d for vd, _ in data_vars.values() for d in vd}
    clash = sorted(n for n in data_vars if n in all_dims)
    if clash:
        # xarray would turn such a variable into a coordinate (gone from data_vars and
        # az.summary), or overwrite it with the chain / draw index
        raise ValueError(
            f"{group}: variable name(s) {clash} equal a dimension name of group {group!r} "
            f"(dimensions {sorted(all_dims)}); rename the variable or pass other dims"
        )
    sizes: dict[str, int] = {}
    for name, (vd, arr) in data_vars.items():
        for d, n in zip(vd, arr.shape):
            if sizes.setdefault(d, n) != n:
                raise ValueError(
                    f"dims: dimension {d!r} of {group}.{name} has length {n}, but another "
                    f"variable of group {group!r} gives it length {sizes[d]}"
                )
    ds_coords = {}
    for c, v in coords.items():
        if c in sizes:
            cv = _np(v, name=f"coords[{c!r}]")
            if cv.ndim != 1 or len(cv) != sizes[c]:
                raise ValueError(
                    f"coords[{c!r}]: expected a 1-D array of length {sizes[c]}, received shape "
                    f"{cv.shape}"
                )
            _check_distinct(c, cv)
            ds_coords[c] = cv
    # here, not at import: xarray (and pandas) took ~0.6 s of `import bayesphys`
    import xarray as xr

    ds = xr.Dataset(data_vars, coords=ds_coords)
    if sample:
        # the index 0.. for chain / draw unless ``coords`` gives them (as ``az.from_dict``: a
        # given ``draw`` such as the iteration numbers after burn-in was replaced by 0..)
        ds = ds.assign_coords(
            {d: np.arange(ds.sizes[d]) for d in ("chain", "draw") if d not in ds_coords}
        )
    ds.attrs["created_by"] = "bayesphys"
    # ArviZ's provenance attributes (``az.from_dict`` sets them; no time stamp here: the same
    # seed gives the same file)
    from ._version import __version__

    ds.attrs["inference_library"] = "bayesphys"
    ds.attrs["inference_library_version"] = __version__
    return ds


def _assemble(groups: dict[str, xr.Dataset]):
    from ._arviz_version import import_arviz

    az = import_arviz()

    if ARVIZ_V1:  # pragma: no cover - exercised on Python >= 3.12 only
        import xarray as xr

        return xr.DataTree.from_dict(groups)
    return az.InferenceData(**groups)


def build_inference_data(
    *,
    posterior: Mapping[str, Any] | None = None,
    posterior_predictive: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    sample_stats: Mapping[str, Any] | None = None,
    constant_data: Mapping[str, Any] | None = None,
    extra_groups: Mapping[str, Mapping[str, Any]] | None = None,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str] | tuple[str, ...]] | None = None,
) -> arviz.InferenceData | xr.DataTree:
    """Assemble ArviZ groups from tensors or arrays.

    Variables in ``posterior``, ``posterior_predictive``, ``log_likelihood`` and
    ``sample_stats`` are ``[chain, draw, *shape]``, and so are those of an ``extra_groups``
    entry that ArviZ draws (``prior``, ``prior_predictive``, ``log_prior``, ...; see
    ``SAMPLE_GROUPS``); ``observed_data``, ``constant_data`` and other extra groups are
    ``[*shape]``. ``dims[name]`` names the non-sample dims of ``name`` (the same names in
    ``posterior_predictive``/``log_likelihood`` and ``observed_data`` link them for
    ``az.plot_ppc`` and ``az.loo``): distinct strings (a single string is one name), never
    ``chain``/``draw`` in a sample group; a ``dims`` key that is no variable raises a
    ``ValueError``. ``coords[dim]`` is a 1-D array ``[size of dim]`` of distinct values shared by
    every group that has ``dim`` (``chain`` and ``draw`` default to ``0..``); a name that is a
    dim of no group (e.g. a typo) raises a ``ValueError``. ``extra_groups`` may not reuse a standard
    group's name. Every group's ``attrs`` name ``inference_library`` (``"bayesphys"``) and
    ``inference_library_version``, as ArviZ's converters do (no creation time: the same inputs give
    the same file). Tensors are detached and copied to the CPU here, and only here; arrays are
    copied too, so the result shares no memory with its inputs (an edit of either leaves the other
    alone).
    """
    coords = _mapping("coords", coords)
    dims = _mapping("dims", dims)
    standard = (
        ("posterior", posterior),
        ("posterior_predictive", posterior_predictive),
        ("log_likelihood", log_likelihood),
        ("sample_stats", sample_stats),
        ("observed_data", observed_data),
        ("constant_data", constant_data),
    )
    extra = _mapping("extra_groups", extra_groups)
    for gname in extra:
        if not isinstance(gname, str) or not gname:
            raise TypeError(f"extra_groups: expected non-empty group names, received {gname!r}")
        if gname in dict(standard):
            raise ValueError(
                f"extra_groups: {gname!r} is a standard group; pass it as {gname}=, not in "
                "extra_groups"
            )
    inputs = {}
    for gname, gvars in (*standard, *extra.items()):
        where = gname if gname in dict(standard) else f"extra_groups[{gname!r}]"
        inputs[gname] = _mapping(where, gvars)
    return _build_groups(inputs, coords, dims)


def _build_groups(
    inputs: Mapping[str, Mapping[str, Any]],
    coords: Mapping[str, Any],
    dims: Mapping[str, Any],
    group_dims: Mapping[str, Mapping[str, Any]] | None = None,
) -> arviz.InferenceData | xr.DataTree:
    """:func:`build_inference_data` from checked ``{group: {name: values}}``; ``group_dims``
    gives a group dims of its own for some of its variables, in place of ``dims`` (a variable
    of one name may lie on other dims in another group)."""
    group_dims = group_dims or {}
    groups: dict[str, xr.Dataset] = {}
    for gname, gvars in inputs.items():
        if gvars:
            gdims = {**dims, **group_dims.get(gname, {})}
            groups[gname] = _dataset(gname, gvars, coords, gdims)
    if not groups:
        raise ValueError("build_inference_data: received no variables in any group")
    variables = {str(v) for ds in groups.values() for v in ds.data_vars}
    stray = [name for name in dims if name not in variables]
    if stray:
        # a misspelt variable name would silently keep the default dim names
        raise ValueError(
            f"dims: expected names of variables {sorted(variables)}, received unknown "
            f"variable name(s) {stray}"
        )
    known = {str(d) for ds in groups.values() for d in ds.sizes}
    unknown = [c for c in coords if c not in known]
    if unknown:
        # each group keeps only the coords of its own dims: a misspelt name was lost silently
        raise ValueError(
            f"coords: expected names of dimensions {sorted(known)}, received unknown "
            f"coordinate name(s) {unknown}"
        )
    return _assemble(groups)


def to_inference_data(
    posterior: Posterior,
    *,
    dims: Sequence[str] | str | None = None,
    coords: Mapping[str, Any] | None = None,
    observed: Mapping[str, Any] | None = None,
    num_samples: int | None = None,
    num_chains: int | None = None,
    name: str | None = None,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> arviz.InferenceData | xr.DataTree:
    """Export a :class:`~bayesphys.Posterior` (see ``Posterior.to_inference_data``): any object
    with the protocol's members, the package's own classes or a user's. ``name`` defaults to
    the posterior's ``export_name`` (``"u"`` for an object without one). ``num_samples`` draws
    in each of ``num_chains`` chains (default 1000 and 1; a
    :class:`~bayesphys.SamplePosterior` given neither exports its stored chains as they are)."""
    import torch

    from ._checks import check_int, check_seed
    from ._process_state import make_generator

    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, minimum=1)
    if num_chains is not None:
        num_chains = check_int("num_chains", num_chains, minimum=1)
    named = name is not None
    if name is None:
        name = getattr(posterior, "export_name", "u")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty string, received {name!r}")
    if seed is not None:
        seed = check_seed("seed", seed)
    params = _mapping("params", params)
    observed = _mapping("observed", observed)
    if name in params:
        where = "name=" if named else "the posterior's export_name; pass another name="
        raise ValueError(
            f"params: {name!r} is the name of the exported field ({where}); rename the parameter"
        )
    nb, ne = len(posterior.batch_shape), len(posterior.event_shape)
    if dims is None:
        dims = [f"batch_{i}" for i in range(nb)] + [f"{name}_dim_{i}" for i in range(ne)]
    dims = list(_dim_names("dims", dims, sample=True))
    if len(dims) == ne and nb:
        dims = [f"batch_{i}" for i in range(nb)] + dims
    if len(dims) != nb + ne:  # before the draws (a large field's took seconds, then this)
        raise ValueError(
            f"dims: expected {nb + ne} names (batch {tuple(posterior.batch_shape)} + event "
            f"{tuple(posterior.event_shape)}), received {dims}"
        )
    export = getattr(posterior, "_draws_for_export", None)
    if export is not None:  # the package's posteriors (a SamplePosterior may keep its chains)
        draws = export(num_chains, num_samples, seed)
    else:  # any other object with the Posterior protocol: fresh draws
        gen = make_generator(seed, posterior.device)
        shape = [
            1 if num_chains is None else num_chains,
            1000 if num_samples is None else num_samples,
        ]
        draws = posterior.sample(torch.Size(shape), generator=gen)
    # an observed field on the field's grid shares its dims (dims of its own made
    # posterior.u - observed_data.y an outer product of the two grids); one named like the
    # field gets dims for its own shape in its group (the field's dims, given to it whatever
    # its shape, refused every other shape with an error about dims never passed)
    obs_dims: dict[str, list[str]] = {}
    shape = (*posterior.batch_shape, *posterior.event_shape)
    for oname, value in observed.items():
        # a tensor's or array's own shape (no copy off an accelerator); a ragged list named
        oshape = tuple(
            value.shape
            if hasattr(value, "shape")
            else _np(value, copy=False, name=f"observed[{oname!r}]").shape
        )
        if oshape == shape:
            obs_dims[oname] = dims
        elif nb and oshape == tuple(posterior.event_shape):
            obs_dims[oname] = dims[nb:]
        elif oname == name:
            obs_dims[oname] = [f"{name}_obs_dim_{i}" for i in range(len(oshape))]
    # draws made here for this export alone are not copied again: those of a GaussianPosterior
    # (mean + L z, new memory) and a SamplePosterior's pick (its stored chains are copied); the
    # posterior says so itself (importing the two classes here closed an import cycle)
    fresh_of = getattr(posterior, "_export_draws_fresh", None)
    fresh = fresh_of is not None and bool(fresh_of(num_chains, num_samples))
    post_vars = {name: _Fresh(draws) if fresh else draws}
    for pname, pdraws in params.items():
        # a look at its shape: build_inference_data copies it
        arr = _np(pdraws, copy=False, name=f"params[{pname!r}]")
        if arr.shape[:2] != tuple(draws.shape[:2]):
            raise ValueError(
                f"params[{pname!r}]: expected leading (chain, draw) = {tuple(draws.shape[:2])}, "
                f"received {arr.shape}"
            )
        post_vars[pname] = arr
    return _build_groups(
        {"posterior": post_vars, "observed_data": observed},
        _mapping("coords", coords),
        {name: dims},
        {"observed_data": obs_dims},
    )


def assemble_groups(groups: Mapping[str, xr.Dataset]) -> arviz.InferenceData | xr.DataTree:
    """Combine ready-made ArviZ-schema datasets into InferenceData (0.x) or a DataTree (1.x)."""
    return _assemble(dict(groups))


def group_dataset(idata: arviz.InferenceData | xr.DataTree, group: str) -> xr.Dataset:
    """The :class:`xarray.Dataset` of ``group`` on either ArviZ; ``KeyError`` naming the
    groups there are when ``idata`` has no such group (ArviZ 1.x's DataTree said only "Could
    not find node at ...")."""
    names = group_names(idata)
    if group not in names:
        raise KeyError(f"group: {group!r} not in {names}")
    if ARVIZ_V1:  # pragma: no cover
        return idata[group].to_dataset()
    return getattr(idata, group)


def hdi_bounds(
    idata: arviz.InferenceData | xr.DataTree, var_name: str, prob: float = 0.94
) -> tuple[np.ndarray, np.ndarray]:
    r"""Highest-density interval ``(lower, upper)`` of posterior variable ``var_name``, each
    ``[*shape]`` (the variable's dims after ``chain, draw``), for ``prob`` in ``(0, 1]``:
    ArviZ's sample HDI, the narrowest interval between two of the ``n`` sorted draws that lie
    :math:`\lfloor \text{prob}\, n \rfloor` places apart, so it holds
    :math:`\lfloor \text{prob}\, n \rfloor + 1` draws, at least a fraction ``prob`` (one
    more than needed when :math:`\text{prob}\, n` is whole: 10 draws ``0..9`` at
    ``prob = 0.5`` give ``(0, 5)``); ``prob = 1``: their minimum and maximum. An element whose
    draws hold a NaN gets NaN bounds, whatever ``prob``. A variable that is not real (complex
    draws) is a ``TypeError``."""
    from ._arviz_version import import_arviz

    az = import_arviz()

    from ._checks import check_real

    prob = check_real("prob", prob)
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob: expected a probability in (0, 1], received {prob}")
    ds = group_dataset(idata, "posterior")
    if var_name not in ds.data_vars:
        raise KeyError(
            f"var_name: {var_name!r} is not a posterior variable; available: "
            f"{sorted(map(str, ds.data_vars))}"
        )
    da = ds[var_name]
    if da.dtype.kind not in "biuf":  # complex draws: numpy's casting error from inside az.hdi
        raise TypeError(
            f"var_name: the HDI needs real draws, received {var_name!r} of dtype {da.dtype}; "
            "export their real part, imaginary part or modulus as variables of their own"
        )
    if prob == 1.0:
        # every draw: ArviZ 0.x's hdi refused it ("Too few elements for interval calculation")
        lo = da.min(("chain", "draw"), skipna=False).values
        hi = da.max(("chain", "draw"), skipna=False).values
    elif ARVIZ_V1:  # pragma: no cover
        res = az.hdi(ds[[var_name]], prob=prob, dim=["chain", "draw"])[var_name]
        lo, hi = res.sel(ci_bound="lower").values, res.sel(ci_bound="upper").values
    else:
        res = az.hdi(ds[[var_name]], hdi_prob=prob)[var_name]
        lo, hi = res.sel(hdi="lower").values, res.sel(hdi="higher").values
    # a NaN draw: az.hdi sorted it last and gave a finite lower bound with a NaN upper one
    # (and min / max skipped it): no bound of either
    nan = da.isnull().any(("chain", "draw")).values
    if nan.any():
        lo, hi = np.where(nan, np.nan, lo), np.where(nan, np.nan, hi)
    return lo, hi
