"""Peak memory of a snippet run in a fresh process, for the tests of large inputs.

The peak is read from ``ru_maxrss`` with glibc's mmap threshold fixed, so that a freed block goes
back to the system at once and the peak is that of live memory, not of the allocator's cache.
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
    and ``crps_samples`` (this checkout's bayesphys)."""
    code = textwrap.dedent(
        """
        import resource, torch
        from bayesphys._device import check_finite
        from bayesphys.metrics import crps_samples
        x = torch.randn(200, 100_000, generator=torch.Generator().manual_seed(0))
        y = torch.zeros(100_000)
        crps_samples(x[:, :10], y[:10])  # first-call allocations out of the measurement
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        {body}
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
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
