"""Environment variables the tests clear, and the way they clear them."""

from __future__ import annotations

import pytest

#: what torchrun sets for a rank, and the gloo interface our process group picks
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DDP_ENV = (*TORCHRUN_ENV, "GLOO_SOCKET_IFNAME")


def clear_env(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Remove ``names`` from the environment; monkeypatch puts each back as it was. Set, then
    deleted: ``delenv`` alone records nothing for a variable that is absent, so one the code
    under test sets afterwards (``os.environ.setdefault``) would outlive the test."""
    for var in names:
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
