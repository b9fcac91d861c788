"""``import_arviz`` repeats a failed ArviZ import (an unwritable cache folder) with
``XDG_CACHE_HOME`` set to a temporary folder; threads that did so at once each restored the
value they had found, so the process was left pointing at another thread's deleted folder, and
one thread's repeat dropped the module another had just imported.

ArviZ is stood in for by a fake ``import arviz`` (``builtins.__import__``) that fails like ArviZ
0.x's on an unwritable cache folder: each thread's first attempt fails (all threads together),
a later one succeeds only with ``XDG_CACHE_HOME`` naming an existing ``bayesphys-arviz-``
folder."""

from __future__ import annotations

import builtins
import os
import sys
import threading
import time
import types

import pytest

from bayesphys import _arviz_version

from .thread_checks import in_threads

THREADS = 6


class _FakeArviz:
    def __init__(self, importer) -> None:
        self.importer = importer
        self.tried = threading.local()
        self.together = threading.Barrier(THREADS, timeout=30)
        self.seen: list[str | None] = []  # XDG_CACHE_HOME at each successful import
        self.lock = threading.Lock()

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):
        if name != "arviz" or level:
            return self.importer(name, globals, locals, fromlist, level)
        if "arviz" in sys.modules:
            return sys.modules["arviz"]
        cache = os.environ.get("XDG_CACHE_HOME")
        if not getattr(self.tried, "once", False):
            self.tried.once = True
            if threading.current_thread() is not threading.main_thread():
                self.together.wait()  # every thread's first import fails at once
            cache = None
        if cache is None or "bayesphys-arviz-" not in cache or not os.path.isdir(cache):
            raise PermissionError(13, "Permission denied", "/unwritable/home/.cache/arviz")
        time.sleep(0.05)  # the other threads go on meanwhile
        with self.lock:
            self.seen.append(cache)
        module = types.ModuleType("arviz")
        sys.modules["arviz"] = module
        return module


@pytest.fixture
def fake_arviz(monkeypatch):
    for key in [k for k in sys.modules if k == "arviz" or k.startswith("arviz.")]:
        monkeypatch.delitem(sys.modules, key)
    fake = _FakeArviz(builtins.__import__)
    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", "/the/users/cache")
    return fake


def test_threads_importing_arviz_at_once_share_one_module_and_restore_the_environment(
    fake_arviz,
):
    modules = in_threads(lambda _: _arviz_version.import_arviz(), list(range(THREADS)))
    assert os.environ["XDG_CACHE_HOME"] == "/the/users/cache"
    assert all(isinstance(m, types.ModuleType) for m in modules), modules
    assert len({id(m) for m in modules}) == 1  # one module, imported once
    assert len(fake_arviz.seen) == 1
    assert sys.modules["arviz"] is modules[0]


def test_a_failed_import_restores_an_unset_variable(fake_arviz, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    module = _arviz_version.import_arviz()
    assert module is sys.modules["arviz"] and len(fake_arviz.seen) == 1
    assert "XDG_CACHE_HOME" not in os.environ
