"""The command a results file records, and the thread settings recorded beside it.

:func:`recorded_command` is ``python benchmarks/<script> <argv>`` prefixed with the
thread-count variables the user's shell set (:func:`thread_env_prefix`, from
``_USER_OMP_THREADS`` and ``_USER_OTHER_THREADS``, read once when this module is imported,
before a script's own ``setdefault``); :func:`threading_info` is a results file's
``"threading"`` entry (torch's thread count and the variables set now)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

# OMP_NUM_THREADS as the user's shell set it (read before a script's own setdefault)
_USER_OMP_THREADS = os.environ.get("OMP_NUM_THREADS")
#: the other thread-count variables of the BLAS libraries torch and numpy may use
_OTHER_THREAD_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# ... as the user's shell set them (only those set)
_USER_OTHER_THREADS = {k: os.environ[k] for k in _OTHER_THREAD_VARS if os.environ.get(k)}
#: variables that choose the code path of MKL or of ATen's vectorised kernels: a run's
#: round-off, and with it a sensitive trajectory, depends on them (docs/gp_pde_notes.md, the
#: Allen-Cahn 200 x 200 row moved 5x under MKL_CBWR=COMPATIBLE on one machine)
_NUMERICS_VARS = (
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ATEN_CPU_CAPABILITY",
)
# ... as the user's shell set them (only those set)
_USER_NUMERICS = {k: os.environ[k] for k in _NUMERICS_VARS if os.environ.get(k)}


def recorded_command(
    script: str | Path, argv: Iterable[str] | None = None, *, device: str | None = None
) -> str:
    """``python benchmarks/<script> <argv>`` as a results file records it: ``argv`` (default:
    this process's ``sys.argv[1:]``; a script's ``main(argv)`` passes the ``argv`` it parsed,
    not its caller's) shell-quoted, so an empty argument (``--model-errors ""``) or one with
    spaces reruns as given; prefixed with the thread-count variables the shell set
    (:func:`thread_env_prefix`: scripts take their thread count from them, and float32
    training depends on it). ``device``: the device the run resolved ``--device auto`` to
    (``"cpu"``, ``"cuda"``), recorded in its place, so that the command reruns on that device
    on another machine too."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if device is not None:
        argv = _pinned_device(argv, str(device))
    env = thread_env_prefix()
    return (f"{env}python benchmarks/{Path(script).name} " + shlex.join(argv)).strip()


def _pinned_device(argv: list[str], device: str) -> list[str]:
    """``argv`` with ``--device auto`` (or ``--device=auto``) as ``--device <device>``."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--device=auto":
            out[i] = f"--device={device}"
        elif a == "auto" and i > 0 and out[i - 1] == "--device":
            out[i] = device
    return out


def thread_env_prefix() -> str:
    """``"OMP_NUM_THREADS=N "`` (then ``MKL_NUM_THREADS=N``, ``OPENBLAS_NUM_THREADS=N``) for
    each of these the shell set for this process (a recorded command reruns with them:
    scripts take their thread count from them, and float32 training depends on it), then
    each of the variables that choose MKL's or ATen's code path (``MKL_CBWR``,
    ``MKL_ENABLE_INSTRUCTIONS``, ``MKL_DEBUG_CPU_TYPE``, ``ATEN_CPU_CAPABILITY``) the shell
    set (they change the round-off); ``""`` when none is set."""
    user = {"OMP_NUM_THREADS": _USER_OMP_THREADS, **_USER_OTHER_THREADS, **_USER_NUMERICS}
    return "".join(f"{k}={shlex.quote(v)} " for k, v in user.items() if v)


def machine_info() -> str:
    """A results file's ``"machine"``: the architecture, the core count, the CPU's model name
    (Linux ``/proc/cpuinfo``; else :func:`platform.processor`, left out when empty) and the
    instruction set torch's CPU kernels use (:func:`torch.backends.cpu.get_cpu_capability`),
    e.g. ``"x86_64, 2 cores, Intel(R) Xeon(R) Processor, torch CPU capability AVX512"``: the
    same code can round differently on another CPU."""
    parts = [platform.machine(), f"{os.cpu_count()} cores"]
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((ln.split(":", 1)[1] for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    model = " ".join((model or platform.processor()).split())
    if model:
        parts.append(model)
    try:
        parts.append(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without the query
        pass
    return ", ".join(parts)


def threading_info() -> dict[str, Any]:
    """What sets this process's thread counts, for a results file's ``"threading"``:
    ``torch_num_threads`` (:func:`torch.get_num_threads`, now) and each of
    ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` that is set in the
    environment now (the value worker processes inherit; a variable not set is left out), and
    of the code-path variables of :func:`thread_env_prefix` (``MKL_CBWR``, ...) set now."""
    info: dict[str, Any] = {"torch_num_threads": torch.get_num_threads()}
    for k in ("OMP_NUM_THREADS", *_OTHER_THREAD_VARS, *_NUMERICS_VARS):
        if os.environ.get(k):
            info[k] = os.environ[k]
    return info
