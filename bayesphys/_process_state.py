"""Process-wide state: python's, numpy's and torch's random streams, torch's default dtype
and thread counts.

Seeded builds and fits change state every thread shares; the helpers here change it for the
length of a block and put back what they found, under locks that keep two threads' blocks
from interleaving (see each docstring for what is and is not locked).

Examples
--------
>>> import torch
>>> from bayesphys import seeded
>>> with seeded(0):
...     a = torch.rand(2)
>>> with seeded(0):
...     b = torch.rand(2)
>>> bool((a == b).all())
True
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ._checks import check_int, check_seed
from ._device import _stream_device

__all__ = [
    "seed_everything",
    "seeded",
    "torch_threads",
    "make_generator",
    "sobol_engine",
    "seeded_exclusive",
]

# The process-wide state a model's construction changes for its length (python's, numpy's and
# torch's global random streams, torch's default dtype): a re-entrant lock held by
# :func:`seeded_build` (whose block only builds networks, never waits on another thread) and,
# briefly, by :func:`seed_everything`; so two threads building seeded models at once each get
# the weights of a build on its own and each build puts back what it found (interleaved, a
# thread restored the other's values: the caller was left at float32 and other weights came
# out). The public :func:`seeded` / :func:`default_dtype` do not take it: held across a user's
# block (which may wait on a thread pool whose tasks seed or build), it deadlocked
_GLOBAL_STATE = threading.RLock()


def seed_everything(seed: int | None) -> None:
    """Seed python, numpy and torch (all devices). ``None`` leaves the state untouched.

    These generators are process-wide: a thread seeding them while another thread builds a
    seeded bayesphys model waits for that build to end."""
    if seed is None:
        return
    seed = check_seed("seed", seed)
    with _GLOBAL_STATE:
        random.seed(int(seed))
        np.random.seed(int(seed) % 2**32)
        torch.manual_seed(int(seed))


def in_new_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a short-lived thread: torch's thread count there is the one new threads
    start with (reading or setting it leaves every running thread's own count alone)."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)), name="bayesphys-threads")
    worker.start()
    worker.join()
    return out[0]


# held while a thread's count changes and the count new threads start with is put back
# (set_num_threads sets both): no other block reads or sets that count in between
_THREAD_COUNT = threading.RLock()


def new_thread_count() -> int:
    """The torch intra-op count that threads not yet using torch start with (process-wide)."""
    with _THREAD_COUNT:
        return in_new_thread(torch.get_num_threads)


def set_thread_counts(own: int, new: int | None = None) -> None:
    """Set this OS thread's torch count to ``own`` and the count new threads start with to
    ``new`` (``None``: the one it was). ``torch.set_num_threads`` sets both; this sets this
    thread's count first, so it is right even when the short-lived thread that reads or
    restores the other cannot start."""
    with _THREAD_COUNT:
        fresh = new
        try:
            if fresh is None:
                fresh = in_new_thread(torch.get_num_threads)
        finally:
            torch.set_num_threads(own)
        in_new_thread(torch.set_num_threads, fresh)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads and give the caller's count back after
    (small networks run fastest on one thread; a library call must not keep the change).

    torch keeps one count per OS thread (OpenMP's), and ``torch.set_num_threads`` also sets
    the count threads not yet using torch start with, for the whole process: that one is put
    back at once, so threads started while the block runs (another fit's thread pool) keep
    their usual count (before, they started with ``n``).

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    n = check_int("n", n, minimum=1)
    before = torch.get_num_threads()
    try:  # entering inside: a failed entry (a thread that cannot start) gives ``before`` back
        set_thread_counts(n)
        yield
    finally:
        set_thread_counts(before)


@contextmanager
def seeded(seed: int | None, device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Run a block as if after :func:`seed_everything` (``seed``), leaving the caller's random
    states as they were.

    Inside the block python's, numpy's and torch's CPU generators (and the generator of
    ``device`` when it is a CUDA device; ``None`` is the CPU, a model's default) start from
    ``seed``, so a model built there gets the
    same initial weights as after ``seed_everything(seed)``; on exit every one of those states is
    restored, so constructing a seeded model does not reseed the user's global streams.
    ``seed=None`` runs the block on the global streams unchanged (and advances them), as an
    unseeded construction always did.

    The streams are process-wide, so this is not thread-safe: another thread drawing from (or
    seeding) them while the block runs sees (or changes) the seeded state, and two overlapping
    blocks restore each other's states. Draw from a generator of your own in threads; the
    package's models build their networks under a lock (:func:`seeded_build`).

    >>> import torch
    >>> from bayesphys import seeded
    >>> before = torch.get_rng_state()
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> bool(torch.equal(before, torch.get_rng_state()))
    True
    >>> with seeded(0):
    ...     bool(torch.equal(a, torch.rand(2)))
    True
    """
    if seed is None:
        yield
        return
    seed = int(check_seed("seed", seed))
    dev = _stream_device(device)
    cuda: list[int] = []
    if dev.type == "cuda":
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)
            for idx in cuda:
                torch.cuda.default_generators[idx].manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextmanager
def streams_kept(device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Run a block that may draw from the global random streams (python's, numpy's, torch's CPU
    generator and that of ``device`` when it is a CUDA device) and put them back as they were
    after it, under the lock of :func:`seeded_build`: loading a model built unseeded rebuilds it
    (drawing initial weights that the file's then replace) without advancing the caller's
    streams. Process-wide, like :func:`seeded`.

    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with streams_kept():
    ...     _ = torch.rand(3)
    >>> bool(torch.equal(before, torch.get_rng_state()))
    True
    """
    dev = _stream_device(device)
    cuda: list[int] = []
    if dev.type == "cuda":
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with _GLOBAL_STATE:
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=cuda):
                yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Torch's default dtype set to ``dtype`` inside the block, the caller's back after (even
    on an error). Models build their networks under float32 and cast them after, so a seeded
    model's initial weights do not depend on the caller's default dtype (float64 draws other
    numbers: a spawned worker and the caller's process gave other models).

    The default dtype is process-wide, so this is not thread-safe: tensors other threads create
    without a ``dtype`` while the block runs get ``dtype``, and overlapping blocks restore each
    other's values (:func:`seeded_build` serialises the package's own builds)."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


@contextmanager
def seeded_exclusive(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """:func:`seeded` under the process-wide lock of :func:`seeded_build`, for a block that
    draws from the global streams throughout (pyro's NUTS, whose effect-handler stack is
    process-wide too: two NUTS runs in two threads failed with "cannot install a Messenger
    instance twice", and the other one drew the first one's numbers). Such blocks in several
    threads run one after the other; the block must not wait on another thread."""
    with _GLOBAL_STATE, seeded(seed, device):
        yield


@contextmanager
def seeded_build(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Build a model's networks: :func:`seeded` (``seed``, ``device``) and :func:`default_dtype`
    (float32) together, under a process-wide re-entrant lock, so that builds in several threads
    run one after the other, each with the weights it would get alone, and each restores what
    it found. The block must only build (never wait on another thread: one that needs the lock
    would wait for ever)."""
    with _GLOBAL_STATE, seeded(seed, device), default_dtype(torch.float32):
        yield


def sobol_engine(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    """A scrambled :class:`torch.quasirandom.SobolEngine` of dimension ``dim`` whose draws do
    not depend on torch's default dtype.

    The engine computes its first point when it is built, in the default dtype (``draw(n,
    dtype=torch.float64)`` casts that stored point): under a float64 default, or while another
    thread had set one, the first point of every net was rounded differently and a float64
    fit went elsewhere. Here that point is recomputed in float32 (torch's own default, under
    which every committed result was computed), without touching the process-wide default
    dtype or taking a lock (the scrambling uses the engine's own seeded generator)."""
    eng = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    if not all(hasattr(eng, a) for a in ("_first_point", "quasi", "MAXBIT")):  # pragma: no cover
        raise RuntimeError(
            "sobol_engine: this torch's SobolEngine lacks _first_point / quasi / MAXBIT, "
            "which the float32 first point is recomputed from"
        )
    eng._first_point = (eng.quasi.to(torch.float32) / 2**eng.MAXBIT).reshape(1, -1)
    return eng


def make_generator(
    seed: int | None, device: torch.device | str | None = "cpu"
) -> torch.Generator | None:
    """A :class:`torch.Generator` on ``device`` (``None``: the CPU) seeded with ``seed``
    (``None`` -> ``None``)."""
    if seed is None:
        return None
    seed = check_seed("seed", seed)
    gen = torch.Generator(device=_stream_device(device))
    gen.manual_seed(int(seed))
    return gen
