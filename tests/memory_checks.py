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
    not sys.platform.startswith("linux"), reason="ru_maxrss in KiB and glibc's malloc: Linux"
)


def peak_rise_mb(body: str) -> float:
    """Rise (MB) of the peak resident memory of a fresh process over the statements ``body``,
    which see ``x`` (float32 ``[200, 100000]``, 80 MB), ``y`` (``[100000]``), ``check_finite``
    and ``crps_samples`` (this checkout's bayesphys). A body that sets up before the part to
    measure ends its setup with ``before = _reset_peak()``."""
    code = textwrap.dedent(
        """
        import torch
        from bayesphys._device import check_finite
        from bayesphys.metrics import crps_samples
        def _hwm_kib():
            with open("/proc/self/status") as fh:
                return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
        x = torch.randn(200, 100_000, generator=torch.Generator().manual_seed(0))
        y = torch.zeros(100_000)
        def _reset_peak():  # the peak back to the current size; returns it (KiB)
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return _hwm_kib()
        crps_samples(x[:, :10], y[:10])  # first-call allocations out of the measurement
        before = _reset_peak()
        {body}
        print((_hwm_kib() - before) / 1024)
        """
    ).format(body=body)
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
