"""values_as_tensor (the point clouds of the metrics, a GP-PDE source or boundary given as
values) copies a read-only numpy array, as the package's other array conversion does: torch
shared the read-only memory (a pandas DataFrame's values under copy-on-write, np.broadcast_to,
a read-only memmap) and warned that writing to the tensor "will result in undefined
behavior". torch gives that warning once per process, so the memory itself is checked."""

from __future__ import annotations

import numpy as np
import torch

from bayesphys._device import as_tensor, values_as_tensor
from bayesphys.metrics import mmd


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def test_a_read_only_array_is_copied_not_shared():
    a = _read_only(np.arange(6.0).reshape(3, 2))
    t = values_as_tensor(a)
    assert t.dtype == torch.float64 and t.shape == (3, 2)
    assert not np.shares_memory(t.numpy(), a)
    t.add_(1.0)  # the tensor is the caller's own: the array is left as it was
    assert np.array_equal(a, np.arange(6.0).reshape(3, 2))
    b = np.broadcast_to(np.arange(2.0), (4, 2))  # read-only by construction
    tb = values_as_tensor(b)
    assert not np.shares_memory(tb.numpy(), b)
    assert torch.equal(tb, torch.arange(2.0, dtype=torch.float64).expand(4, 2))


def test_a_writable_array_and_lists_convert_as_before():
    w = np.arange(4.0).reshape(2, 2)
    assert torch.equal(values_as_tensor(w), torch.as_tensor(w))
    assert values_as_tensor([[1.0, 2.0]]).dtype == torch.float64


def test_the_metrics_read_read_only_clouds_as_their_values():
    g = np.random.default_rng(0)
    x, y = g.normal(size=(20, 2)), g.normal(size=(15, 2)) + 0.5
    ref = mmd(torch.as_tensor(x), torch.as_tensor(y))
    got = mmd(_read_only(x), _read_only(y))
    torch.testing.assert_close(got, ref)


def test_as_tensor_copies_a_read_only_array_in_every_test_order():
    """The memory, not torch's once-per-process warning: a test that only turned warnings
    into errors passes whenever an earlier test in the run had triggered that warning."""
    a = _read_only(np.linspace(0.0, 1.0, 5))
    t = as_tensor("x", a, dtype=torch.float64)  # same dtype: no copy by the cast
    assert not np.shares_memory(t.numpy(), a)
    torch.testing.assert_close(t, torch.linspace(0.0, 1.0, 5, dtype=torch.float64))
