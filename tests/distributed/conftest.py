"""Fixtures of the distributed tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def dask_client():
    """An in-process Dask client (one worker, one thread, no dashboard) that is not the
    process default, closed with its cluster after the test; skipped without Dask."""
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


# set in the driver's environment by ray.init (thread counts for its workers, a hash seed),
# and left there after ray.shutdown: Ray's side effect, not the package's
_RAY_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")


@pytest.fixture(autouse=True)
def _ray_environment_given_back():
    """Give back the environment variables ray.init sets in this process (the state-leak check
    of tests/conftest.py reports them otherwise); tests that start no Ray instance are
    unaffected."""
    import os
    import sys

    before = {k: os.environ.get(k) for k in _RAY_ENV}
    yield
    if "ray" not in sys.modules:
        return
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
