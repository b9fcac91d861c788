"""A float64 fit does not depend on torch's default dtype (process-wide: a user's setting, or
another thread's seeded build, changes it). The Sobol engines behind ``grid="sobol"`` and
``qmc_prior`` computed their first point in the default dtype: the same seeded fit gave other
losses under a float64 default (9099.67238859 vs 9099.67238588 at the first step)."""

from __future__ import annotations

import pytest
import torch

from bayesphys._process_state import sobol_engine
from tests.tiny_models import tiny_rgnp


def _fit_under(default: torch.dtype, dtype: str):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        m = tiny_rgnp(grid="sobol", qmc_prior=True, dtype=dtype)
        res = m.fit(steps=3, progress=False)
        return [p.detach().clone() for p in m.net.parameters()], res.loss_history
    finally:
        torch.set_default_dtype(prev)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_sobol_fit_is_the_same_under_either_default_dtype(dtype):
    a, loss_a = _fit_under(torch.float32, dtype)
    b, loss_b = _fit_under(torch.float64, dtype)
    assert loss_a == loss_b
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_sobol_engine_draws_do_not_depend_on_the_default_dtype():
    prev = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        hi = sobol_engine(3, 7).draw(5, dtype=torch.float64)
        assert torch.get_default_dtype() == torch.float64  # the caller's default is back
        torch.set_default_dtype(torch.float32)
        lo = sobol_engine(3, 7).draw(5, dtype=torch.float64)
    finally:
        torch.set_default_dtype(prev)
    assert torch.equal(hi, lo)
    # and they are torch's own draws under its float32 default
    ref = torch.quasirandom.SobolEngine(3, scramble=True, seed=7).draw(5, dtype=torch.float64)
    assert torch.equal(lo, ref)


def test_sobol_engine_neither_switches_the_default_dtype_nor_waits_for_the_global_lock(
    monkeypatch,
):
    """It set float32 as the default under the package's process-wide lock: every Sobol grid
    of a fit waited behind a NUTS run holding that lock, and other threads' tensors were
    briefly float32."""
    import threading

    from bayesphys import _process_state

    switched = []
    monkeypatch.setattr(torch, "set_default_dtype", switched.append)
    held, release = threading.Event(), threading.Event()

    def hold():
        with _process_state._GLOBAL_STATE:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    held.wait(10)
    out = []
    worker = threading.Thread(target=lambda: out.append(sobol_engine(2, 3).draw(4)), daemon=True)
    worker.start()
    worker.join(10)
    release.set()
    t.join(10)
    assert out and out[0].shape == (4, 2), "sobol_engine waited for the global lock"
    assert switched == []
