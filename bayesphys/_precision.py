"""Computing in the dtype the package chose, inside a caller's ``torch.autocast`` block.

Under ``torch.autocast`` torch runs matrix products (``matmul``, ``linear``, ``conv``) in
bfloat16 or float16 while Cholesky factors and solves stay in float32: a posterior's draws came
back in bfloat16 or 3e-3 off, a Kronecker solve failed with "both inputs should have same
dtype", and a network trained or evaluated by a package fit came out in a precision its
settings did not name. :func:`own_precision` turns autocast off for a block (or a decorated
function) and back on afterwards, so a caller's autocast keeps applying to the caller's own
code only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch

#: the device types whose autocast is turned off (the package runs on CPU and CUDA only)
_DEVICE_TYPES = ("cpu", "cuda")


@contextmanager
def own_precision() -> Iterator[None]:
    """Autocast off on every device type where the caller turned it on, the caller's autocast
    back in force afterwards: a context manager, or a decorator (``@own_precision()``) of a
    public method whose arithmetic runs in the dtype of its tensors and weights."""
    with ExitStack() as stack:
        for device_type in _DEVICE_TYPES:
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield
