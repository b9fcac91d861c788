"""Sending tasks to standard-library process pools without shared memory.

multiprocessing's pickler (where torch registers its reductions) moves every tensor it sends
into shared memory: the caller's own problem tensors, each then holding a file descriptor for
as long as the caller keeps it (a cohort of a few hundred problems ran out of descriptors).
:class:`PlainPickled` sends a value as bytes of the standard pickler instead, made when the
pool sends the task, and a tensor that views part of a larger storage as a copy of its part.

Whatever goes wrong on the way (the value cannot be pickled here, or cannot be unpickled in
the worker: a class defined under ``if __name__ == "__main__":`` that a spawned worker never
defines) arrives as a :class:`LoadFailure` that the task raises as its own error: an error
raised while the worker was still receiving the call killed the worker (a broken
``ProcessPoolExecutor``, a ``multiprocessing.Pool`` waiting forever).
"""

from __future__ import annotations

import io
import pickle
from typing import Any


class LoadFailure:
    """Stands for a value that could not be sent or loaded: its ``error``. It lives in the
    worker only; the error travels back as any task error does (``_task_errors._Failure`` or
    the pool's own mechanism, both of which turn an unpicklable exception into text)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _loaded(blob: bytes) -> Any:
    """Worker side: the value, or a :class:`LoadFailure` saying why it could not be loaded."""
    try:
        return pickle.loads(blob)
    except Exception as err:  # noqa: BLE001 - reported by the task that needed the value
        return LoadFailure(err)


def _failed_to_send(message: str) -> LoadFailure:
    return LoadFailure(pickle.PicklingError(message))


class _CompactPickler(pickle.Pickler):
    """The standard pickler, sending a plain dense tensor that views part of a larger storage
    (a row of a stacked cohort) as a copy of that part: pickle writes a view's whole storage.
    Subclasses (``nn.Parameter``), tensors with attributes of their own, sparse tensors and
    tensors that require grad are pickled as they are."""

    def reducer_override(self, obj: Any) -> Any:
        import torch

        if type(obj) is not torch.Tensor or obj.layout is not torch.strided:
            return NotImplemented
        if obj.requires_grad or obj.device.type == "meta" or getattr(obj, "__dict__", None):
            return NotImplemented
        try:
            larger = obj.untyped_storage().nbytes() > obj.numel() * obj.element_size()
        except (RuntimeError, NotImplementedError):  # a tensor without a plain storage
            return NotImplemented
        if larger:
            return obj.clone().__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        return NotImplemented


def plain_dumps(value: Any) -> bytes:
    """``value`` pickled by :class:`_CompactPickler` (the standard pickler)."""
    buf = io.BytesIO()
    _CompactPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buf.getvalue()


class PlainPickled:
    """A value that a process pool's pickler sends as :func:`plain_dumps` bytes; it unpickles
    in the worker as the value itself, or as a :class:`LoadFailure`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self):
        try:
            blob = plain_dumps(self.value)
        except Exception as err:  # noqa: BLE001 - the task reports it, with its index
            return (_failed_to_send, (f"could not be sent: {type(err).__name__}: {err}",))
        return (_loaded, (blob,))


def apply(fn: Any, task: Any) -> Any:
    """Pool-side ``fn(task)`` of two :class:`PlainPickled` values."""
    for value in (fn, task):
        if isinstance(value, LoadFailure):
            raise value.error
    return fn(task)
