"""``free_port``: a rendezvous port outside the range the OS hands out by itself, checked free."""

from __future__ import annotations

import socket

import pytest

from bayesphys.distributed import _process_group as pg


def test_the_port_lies_outside_the_ephemeral_range_and_can_be_bound():
    low, high = pg._ephemeral_range()
    for _ in range(20):
        port = pg.free_port()
        assert not low <= port <= high
        assert port >= pg._PORT_FLOOR
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # free when returned


def test_a_taken_port_is_skipped(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        spare = pg.free_port()
        draws = iter([taken, taken, spare])
        monkeypatch.setattr(pg, "_draw_port", lambda low, high: next(draws))
        assert pg.free_port() == spare  # the held port fails the bind check twice


def test_it_falls_back_to_an_os_port_when_every_draw_is_taken(monkeypatch):
    monkeypatch.setattr(pg, "_bindable", lambda p: False)
    low, high = pg._ephemeral_range()
    assert low <= pg.free_port(tries=3) <= high


def test_without_room_below_the_ephemeral_range_it_draws_above_it(monkeypatch):
    monkeypatch.setattr(pg, "_ephemeral_range", lambda: (1024, 60000))
    ports = {pg.free_port() for _ in range(10)}
    assert all(60001 <= p <= 65535 for p in ports)


def test_tries_is_checked():
    with pytest.raises(ValueError, match="tries"):
        pg.free_port(tries=0)
