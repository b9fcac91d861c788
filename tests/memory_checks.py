"""Peak memory of a snippet run in a fresh process, for the tests of large inputs.

The peak is the kernel's high-water mark of the resident set (``VmHWM`` of
``/proc/self/status``), reset to the current resident size just before the snippet
(``/proc/self/clear_refs``), with glibc's mmap threshold fixed, so that a freed block goes back
to the system at once and the peak is that of live memory, not of the allocator's cache.
(``ru_maxrss`` was read before: a child started by ``subprocess`` inherits the parent's peak
through ``execve``, so under a pytest process whose own peak was larger than the snippet's every
rise read 0 and a memory test could not fail.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bayesphys

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="VmHWM, /proc/self/clear_refs and glibc's malloc: Linux",
)


_MEASURE = """
def _hwm_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
def _reset_peak():  # the peak back to the current resident size; returns it (KiB)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _hwm_kib()
"""


def peak_rise_after(setup: str, body: str) -> float:
    """Rise (MB) of the peak resident memory of a fresh process (this checkout's bayesphys and
    tests importable, one thread, glibc's mmap threshold fixed, warnings ignored) over the
    statements ``body``, run after ``setup`` (imports and inputs, not measured; ``torch`` is
    imported). A body that
    sets up more before the part to measure ends that part with ``before = _reset_peak()``."""
    code = (
        "import warnings\nwarnings.simplefilter('ignore')\nimport torch\n"
        + _MEASURE
        + textwrap.dedent(setup)
        + "\nbefore = _reset_peak()\n"
        + textwrap.dedent(body)
        + "\nprint((_hwm_kib() - before) / 1024)\n"
    )
    root = str(Path(bayesphys.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def peak_rise_mb(body: str) -> float:
    """:func:`peak_rise_after` of ``body`` after a setup that gives it ``x`` (float32
    ``[200, 100000]``, 80 MB), ``y`` (``[100000]``), ``check_finite`` and ``crps_samples``."""
    setup = """
        import torch
        from bayesphys._device import check_finite
        from bayesphys.metrics import crps_samples
        x = torch.randn(200, 100_000, generator=torch.Generator().manual_seed(0))
        y = torch.zeros(100_000)
        crps_samples(x[:, :10], y[:10])  # first-call allocations out of the measurement
        """
    return peak_rise_after(setup, body)
