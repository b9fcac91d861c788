"""The peak-memory helper of the memory tests reads the snippet's own peak, whatever the peak of
the pytest process that starts it."""

from __future__ import annotations

import mmap

import numpy as np

from .memory_checks import linux_only, peak_rise_mb


@linux_only
def test_rise_is_read_under_a_parent_whose_peak_is_larger():
    """``ru_maxrss`` of a child started by ``subprocess`` starts at the parent's peak (it is
    kept through ``execve``): with this process's peak 600 MB above the child's, a 300 MB
    snippet read 0 MB, so every memory test late in a suite run passed whatever it measured."""
    buf = mmap.mmap(-1, 600 * 2**20)  # fresh pages: the parent's peak now >= 600 MB
    pages = np.frombuffer(buf, dtype=np.uint8)
    pages[:] = 1
    try:
        rise = peak_rise_mb("z = torch.ones(300 * 2**20 // 4)")
    finally:
        del pages
        buf.close()
    assert 280 < rise < 360


@linux_only
def test_nothing_allocated_reads_near_zero():
    assert peak_rise_mb("pass") < 20
