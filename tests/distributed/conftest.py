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
