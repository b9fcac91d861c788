"""On-disk records of :func:`~bayesphys.distributed.fit_many`: one netCDF + JSON pair per problem,
written atomically (temporary name, fsync, rename), matched to the run by its settings and read
back when a run resumes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._files import fsync_file, host_token, sweep_stale_temporaries


def _groups(idata) -> dict[str, Any]:
    from ..inference_data import group_dataset, group_names

    names = group_names(idata)
    return {g: group_dataset(idata, g) for g in names}


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


def _stem(problem_id: Any) -> str:
    """The file stem of a problem id: the id itself when it is a plain name, else its safe
    characters plus a short hash of the id (ids differing only in characters outside
    ``A-Za-z0-9._-``, e.g. two Chinese names, collided as ``_``; Windows' reserved names and
    hidden ``.`` names are hashed too)."""
    text = str(problem_id)
    safe = _SAFE.sub("_", text) or "_"
    if safe == text and not text.startswith(".") and text.split(".")[0].lower() not in _RESERVED:
        return text
    return f"{safe}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def _stem_on_disk(out: Path, problem_id: Any) -> str:
    """The stem of ``problem_id``'s files in ``out``: :func:`_stem`, or the stem releases
    before it wrote (safe characters only, no hash) when only such files are there, so their
    folders still resume (the records' ids are compared on reading)."""
    stem = _stem(problem_id)
    legacy = _SAFE.sub("_", str(problem_id)) or "_"
    if legacy != stem and not any((out / f"{stem}.{e}").exists() for e in ("json", "nc")):
        if any((out / f"{legacy}.{e}").exists() for e in ("json", "nc")):
            return legacy
    return stem


def _fsync(path: Path) -> None:
    """Flush ``path`` to the disk, so that the rename that follows never publishes a file whose
    contents a power loss could still take back (:func:`~bayesphys._files.fsync_file`: a
    read-only handle, which Windows refuses to flush, left every record unwritten there)."""
    fsync_file(path)


def _temporary(out: Path, stem: str, ext: str) -> Path:
    """A temporary name in ``out`` no other writer uses (host, process id and random suffix):
    two calls sharing ``out`` used to write the same ``.<id>.<ext>.tmp`` and could rename each
    other's half-written file into place."""
    return out / f".{stem}.{ext}.{host_token()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


_TEMPORARY = re.compile(
    r"^\..+\.(nc|json)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$"
)


def _sweep_stale_temporaries(out: Path) -> list[str]:
    """Remove the temporary files that writers on this machine left in ``out`` when they were
    killed before renaming them (their process is gone); returns the names removed. Files of
    live processes and of other machines (``out`` on a shared disk) are left alone (the rule
    :func:`~bayesphys._files.atomic_write` applies to its own temporary files)."""
    return sweep_stale_temporaries(out, _TEMPORARY)


def _write(out: Path, rec: dict[str, Any]) -> None:
    """Write ``<id>.nc`` (if ok) then ``<id>.json``; the JSON, written last, marks completion.

    Each file is written to a temporary file in ``out``, flushed to disk and renamed into
    place, so a crash never leaves a half-written file under its final name. The old
    ``<id>.json`` is removed before a new ``<id>.nc`` takes its place: a crash between the two
    renames then leaves no record (the problem is fitted again) instead of an old record
    paired with the new draws.
    """
    from .._netcdf import _write_netcdf
    from .._version import __version__
    from ..inference_data import assemble_groups

    stem = _stem(rec["id"])
    meta = {k: v for k, v in rec.items() if k != "groups"}
    meta["id"] = rec["id"] if isinstance(rec["id"], (int, str)) else str(rec["id"])
    meta["bayesphys_version"] = __version__
    if rec["status"] == "ok":
        # one token in both files: two runs writing the same id into a shared out/ could
        # leave one's draws beside the other's record (each file renamed whole, the pair not)
        meta["record_token"] = secrets.token_hex(8)
        tmp = _temporary(out, stem, "nc")
        try:
            _write_netcdf(assemble_groups(_with_token(rec["groups"], meta["record_token"])), tmp)
            _fsync(tmp)
            (out / f"{stem}.json").unlink(missing_ok=True)
            os.replace(tmp, out / f"{stem}.nc")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    tmp = _temporary(out, stem, "json")
    try:
        tmp.write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, out / f"{stem}.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stable(v: Any, depth: int = 0) -> Any:
    """A JSON-able description of ``v`` that is the same in every session and differs when
    the value differs: arrays and tensors by dtype, shape and a hash of their bytes (``repr``
    elides the middle of a large array), partials by function and arguments, functions by
    module, name, closure and defaults, other objects by class and attributes; memory
    addresses removed."""
    import functools

    import torch

    if depth > 8:  # deep or cyclic structures: the type is all that is compared there
        return f"<{type(v).__module__}.{type(v).__qualname__}>"
    d = depth + 1
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, Mapping):
        return {str(k): _stable(x, d) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_stable(x, d) for x in v]
    if isinstance(v, (set, frozenset)):  # iteration order varies between sessions
        return sorted((_stable(x, d) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        v = (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()
    if isinstance(v, np.ndarray):
        arr = np.ascontiguousarray(v)
        return {
            "array": str(arr.dtype),
            "shape": list(arr.shape),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest()[:16],
        }
    if isinstance(v, functools.partial):
        return {
            "partial": _stable(v.func, d),
            "args": _stable(v.args, d),
            "kw": _stable(v.keywords, d),
        }
    if isinstance(v, types.ModuleType):
        # a module a closure captured (a local import): its name (its namespace was walked
        # as an object's attributes, and torch's raised a TypeError: fit_many never started)
        return f"<module {v.__name__}>"
    if isinstance(v, types.FunctionType):  # a function or lambda: captured values, defaults
        cells = [c.cell_contents for c in (v.__closure__ or ()) if _cell_full(c)]
        return {
            "function": f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', '')}",
            "closure": _stable(cells, d),
            "defaults": _stable(v.__defaults__, d),
            "kwdefaults": _stable(v.__kwdefaults__, d),
        }
    if isinstance(v, types.MethodType):  # a bound method
        return {"method": _stable(v.__func__, d), "self": _stable(v.__self__, d)}
    if isinstance(v, type):
        return f"{v.__module__}.{v.__qualname__}"
    attrs = getattr(v, "__dict__", None)
    if isinstance(attrs, dict):
        return {
            "object": f"{type(v).__module__}.{type(v).__qualname__}",
            "attrs": _stable(attrs, d),
        }
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(v))


def _cell_full(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell (a name not yet bound)
        return False
    return True


def _build_name(build: Callable[..., Any]) -> str:
    """What the resume check compares: the builder's qualified name, followed for partials,
    callable objects and closures by a fingerprint of what they carry (their arguments,
    attributes, captured values), so ``partial(build, noise=0.1)`` and ``noise=5.0`` differ."""
    name = str(getattr(build, "__qualname__", type(build).__qualname__))
    plain = (
        isinstance(build, types.FunctionType)
        and not build.__closure__
        and not build.__defaults__
        and not build.__kwdefaults__
    )
    if plain:
        return name  # a plain function: its name, as records have always stored it
    text = json.dumps(_stable(build), sort_keys=True)
    return f"{name}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _settings_key(**settings: Any) -> str:
    """A fingerprint of what shapes a record (fit and posterior keywords, draws, chains, name,
    export, and the problem itself): see :func:`_stable`, so the same settings give the same
    key in every session and different array values, captured values or problem data differ."""
    text = json.dumps(_stable(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _same_run(
    meta: dict[str, Any],
    seed: int | None,
    build: str | None,
    settings: str | None = None,
) -> bool:
    """Whether a record on disk came from this call's settings: the same per-problem seed (when
    the caller fixed ``seed``), the same ``build`` and the same settings fingerprint
    (:func:`_settings_key`; records without a build or fingerprint are accepted)."""
    if seed is not None and meta.get("seed") != seed:
        return False
    if settings is not None and meta.get("settings") not in (None, settings):
        return False
    return build is None or meta.get("build") in (None, build)


# what a damaged file raises when read: h5py's OSError for a truncated or corrupt netCDF,
# ValueError (JSONDecodeError, UnicodeDecodeError, xarray decoding), KeyError for a missing
# group; a file that cannot be read is treated as absent, so its problem is fitted again
_UNREADABLE = (OSError, ValueError, KeyError, RuntimeError)


def _read_meta(path: Path) -> dict[str, Any] | None:
    """The record ``<id>.json`` as a dict; ``None`` when it is absent or cannot be read."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except _UNREADABLE:  # absent, cut short or damaged: fit the problem again
        return None
    return meta if isinstance(meta, dict) else None


_TOKEN_ATTR = "bayesphys_record_token"


def _token_group(groups: Mapping[str, Any]) -> str:
    """The group carrying the record's token: ``posterior`` where present."""
    return "posterior" if "posterior" in groups else sorted(groups)[0]


def _with_token(groups: Mapping[str, Any], token: str) -> dict[str, Any]:
    """``groups`` with ``token`` in one group's attributes (the caller's datasets unchanged)."""
    out = dict(groups)
    name = _token_group(out)
    out[name] = out[name].copy()
    out[name].attrs = {**out[name].attrs, _TOKEN_ATTR: token}
    return out


def _load_groups(path: Path) -> dict[str, Any]:
    """All groups of ``<id>.nc`` loaded into memory, the file handles released."""
    from ..inference_data import load_netcdf

    dsets = _groups(load_netcdf(path))
    try:
        return {g: ds.load() for g, ds in dsets.items()}
    finally:
        for ds in dsets.values():
            ds.close()  # release the file handle so the file can be rewritten later


def _read(
    out: Path,
    problem_id: Any,
    *,
    seed: int | None = None,
    build: str | None = None,
    settings: str | None = None,
) -> dict[str, Any] | None:
    """A finished (status ok) record from disk written with ``seed`` and ``build``, or ``None``
    (also when ``<id>.json`` or ``<id>.nc`` is missing or cannot be read)."""
    stem = _stem_on_disk(out, problem_id)
    meta_path, nc_path = out / f"{stem}.json", out / f"{stem}.nc"
    if not nc_path.exists():
        return None
    meta = _read_meta(meta_path)
    if meta is None:
        return None
    if meta.get("status") != "ok" or str(meta.get("id")) != str(problem_id):
        return None
    if not _same_run(meta, seed, build, settings):
        return None
    try:
        groups = _load_groups(nc_path)
    except _UNREADABLE:  # cut short or damaged, or no group: fit the problem again
        return None
    token = groups[_token_group(groups)].attrs.pop(_TOKEN_ATTR, None)
    if token != meta.get("record_token", token):  # records before the token: no check
        return None  # the draws of another run's record under this one's name: fit again
    rec = dict(meta, id=problem_id)
    rec["groups"] = groups
    return rec
