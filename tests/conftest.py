"""Shared fixtures: a ``device`` fixture (CPU, plus CUDA when present) and test markers.

Set ``BAYESPHYS_TEST_DEVICE=cuda`` to run device-parametrised tests on CUDA only.

Hypothesis profiles: ``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) draws the same examples on
every run (``derandomize=True``), so a landing is never decided by a newly drawn example; the
default profile draws fresh examples each run, which is how new failing cases are found locally.
"""

from __future__ import annotations

import os
import random
import sys

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import settings

from tests.env_vars import DDP_ENV

matplotlib.use("Agg")

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _devices() -> list[str]:
    forced = os.environ.get("BAYESPHYS_TEST_DEVICE")
    if forced:
        return [forced]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_devices())
def device(request) -> torch.device:
    """Each available device in turn."""
    return torch.device(request.param)


@pytest.fixture
def cuda_device() -> torch.device:
    """A CUDA device; the test is skipped where none exists."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


@pytest.fixture
def host_reads(monkeypatch) -> list:
    """A list that grows by one at every read of a tensor's value back to the host
    (``float(t)``, ``t.item()``, ``t.tolist()``): on a GPU each one waits for the device."""
    reads: list = []
    for attr in ("__float__", "item", "tolist"):
        real = getattr(torch.Tensor, attr)
        monkeypatch.setattr(
            torch.Tensor, attr, lambda t, *a, _real=real, **k: reads.append(1) or _real(t, *a, **k)
        )
    return reads


@pytest.fixture
def memory_limit(monkeypatch):
    """``memory_limit(nbytes)``: the memory the dense-allocation guards take the device to
    have (``bayesphys._checks.dense_memory_limit``), so that a test refuses a small problem
    without allocating a big one."""

    def set_limit(nbytes: int) -> None:
        monkeypatch.setattr(
            "bayesphys._checks.dense_memory_limit", lambda device=None: nbytes, raising=False
        )

    return set_limit


@pytest.fixture
def no_dense_allocation(monkeypatch):
    """``no_dense_allocation(target)``: replace the function at ``target`` (a dotted path) by
    one that fails the test when called: a guard must refuse before it is reached."""

    def forbid(target: str) -> None:
        def called(*args, **kwargs):
            raise AssertionError(f"{target} was called: the refusal came after the work began")

        monkeypatch.setattr(target, called)

    return forbid


@pytest.fixture
def new_figures_closed():
    """Close the pyplot figures a test opened (those open before it are left)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    for num in set(plt.get_fignums()) - before:
        plt.close(num)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep BLAS/torch to the 2 cores CI has, and restore torch's, numpy's and python's global
    random streams after each test (tests that seed numpy or python no longer carry over)."""
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    state = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
    yield
    torch.random.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    torch.set_num_threads(n)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (fits whose step counts or timings are compared), the
    count set back after it; a module takes it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def _module_threads_kept():
    """Each module ends with torch's thread count as it found it: a module-scoped fixture set
    one thread for its fit and never set it back, and since ``_few_threads`` restores the
    count each test started with, every later module ran on one thread (in file order the rest
    of the suite after tests/gp_pde/test_model.py, in another order other tests). The count is
    set back here rather than the module failed: under pytest 8.0.0 (the floor
    ``.ci/min-versions`` installs) this conftest fixture is torn down *before* a module's own
    module-scoped fixtures (pytest 9 tears them down in reverse order of setup), so a module
    fixture that restores the count in its ``finally`` (tests/gp_pde/test_model.py's
    ``low_fit``) has not yet done so when this one looks; the count is set back either way."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_shell_thread_count(monkeypatch):
    """Recorded benchmark commands as if the shell set no OMP_NUM_THREADS, MKL_NUM_THREADS,
    OPENBLAS_NUM_THREADS or code-path variable (MKL_CBWR, ...: they name them when it does;
    a test that needs them sets ``bayesphys._bench.commands._USER_OMP_THREADS`` /
    ``_USER_OTHER_THREADS`` / ``_USER_NUMERICS``, where
    :func:`~bayesphys._bench.commands.thread_env_prefix` reads them)."""
    monkeypatch.setattr("bayesphys._bench.commands._USER_OMP_THREADS", None)
    monkeypatch.setattr("bayesphys._bench.commands._USER_OTHER_THREADS", {})
    monkeypatch.setattr("bayesphys._bench.commands._USER_NUMERICS", {})
    from bayesphys._bench.commands import _NUMERICS_VARS

    for k in _NUMERICS_VARS:
        monkeypatch.delenv(k, raising=False)  # threading_info reads them from the environment


@pytest.fixture(autouse=True)
def _tqdm_defaults(monkeypatch):
    """Progress bars as the package draws them by default: a shell's TQDM_DISABLE or
    TQDM_MININTERVAL (read by every bar) would change what the progress tests see."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)


def _torch_globals() -> dict:
    """torch's process-wide modes that a test could leave changed for the tests after it."""
    return {
        "grad mode": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "default dtype": torch.get_default_dtype(),
        "default device": torch.get_default_device(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "anomaly detection": torch.is_anomaly_enabled(),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
    }


@pytest.fixture(autouse=True)
def _torch_globals_kept():
    """A test must leave torch's global modes as it found them: a leaked ``no_grad`` or default
    dtype made whichever test ran next in the same process fail (order-dependent under xdist)."""
    before = _torch_globals()
    yield
    after = _torch_globals()
    if after != before:
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        torch.set_grad_enabled(before["grad mode"])
        torch.set_default_dtype(before["default dtype"])
        torch.set_default_device(before["default device"])
        torch.use_deterministic_algorithms(before["deterministic algorithms"])
        torch.autograd.set_detect_anomaly(before["anomaly detection"])
        torch.set_float32_matmul_precision(before["float32 matmul precision"])
        pytest.fail(f"the test left torch's global state changed (before, after): {changed}")


# --- process-wide state a test must leave as it found it -------------------------------------
# A test that leaves the process changed makes the tests after it order-dependent: benchmark
# mains called in-process set one torch thread and never set it back, and a later test that
# compared a one-thread result with a two-thread one passed only in the full suite. Checked by
# hooks rather than a fixture so that the comparison brackets every fixture (``monkeypatch``'s
# undo included), whatever order pytest sets fixtures up in. A test marked
# ``@pytest.mark.leaks_state("why")`` is not checked.

_WATCHED_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ATEN_CPU_CAPABILITY",
    "MALLOC_TRIM_THRESHOLD_",
    "XDG_CACHE_HOME",
    "TQDM_DISABLE",
    "TQDM_MININTERVAL",
    "MPLBACKEND",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "HOME",
    "USERPROFILE",
    "COLUMNS",
    "HYPOTHESIS_PROFILE",
    *DDP_ENV,
)

_THREADS_LEFT = pytest.StashKey[tuple]()


_RAY_SETS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")


def _process_state() -> dict:
    """The process-wide settings a test could leave changed (torch's global modes are
    ``_torch_globals``, checked by ``_torch_globals_kept``; torch's thread count is given back
    by ``_few_threads`` after each test and by ``_module_threads_kept`` after each module, since
    module-scoped fixtures hold one thread for their module's fits, and checked where a test
    asks, ``usefixtures("_threads_kept")``)."""
    import sys

    env = os.environ
    state = {f"${k}": env.get(k) for k in _WATCHED_ENV}
    state.update({f"${k}": v for k, v in env.items() if k.startswith("BAYESPHYS_")})
    state["working directory"] = os.getcwd()
    plt = sys.modules.get("matplotlib.pyplot")
    state["open pyplot figures"] = tuple(plt.get_fignums()) if plt is not None else ()
    return state


def _state_changes(before: dict, after: dict) -> dict:
    # ray.init sets these in the driver's environment (Ray's side effect, left after
    # ray.shutdown): not compared once Ray is imported
    skip = {f"${k}" for k in _RAY_SETS} if "ray" in sys.modules else set()
    return {
        k: (before.get(k), after.get(k))
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k) and k not in skip
    }


def _state_checked(item) -> bool:
    marker = item.get_closest_marker("leaks_state")
    if marker is None:
        return True
    if not (marker.args or marker.kwargs.get("reason")):
        raise pytest.UsageError(f"{item.nodeid}: leaks_state needs a reason")
    return False


@pytest.fixture
def restore_threads():
    """Give the test's torch thread count back after it: for tests that call a script's
    ``main()`` in-process (a script's main sets the count for its process, and may)."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def _threads_kept(_few_threads, request):
    """The thread count the test's body and its function fixtures leave, compared with the one
    they were given. Opt-in (``pytest.mark.usefixtures("_threads_kept")``): the autouse
    ``_few_threads`` sets the count for each test and back after it, so a count a test's body
    leaves does not reach later tests (many bodies set one thread for a fit on purpose); the
    leaks that do reach them (module- and session-scoped fixtures, in-process script mains
    called from those) are reported by the hooks below whatever the test asks."""
    n = torch.get_num_threads()
    yield
    left = torch.get_num_threads()
    if left != n:
        request.node.stash[_THREADS_LEFT] = (n, left)


# the state each node (session, package, module, class, test) was entered with, with the
# number of the setup that entered it: a node entered with its parent (a module's first test)
# is not compared on its own, since the parent's fixtures (a module-scoped fit on one thread,
# set back at the module's end) were set up by that same setup
_ENTERED: dict = {}
_SETUPS = [0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    _SETUPS[0] += 1
    state = _process_state()
    for node in item.listchain():
        _ENTERED.setdefault(node, (state, _SETUPS[0]))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # every fixture torn down here is gone, monkeypatch's undo included
    chain = item.listchain()
    kept = set(nextitem.listchain()) if nextitem is not None else set()
    left = [n for n in chain if n not in kept]  # the nodes whose fixtures were torn down
    alive = [n for n in chain if n in kept]
    entered = {n: _ENTERED.pop(n, None) for n in left}
    if not left or entered[left[0]] is None:
        return result
    before, setup = entered[left[0]]
    after = _process_state()
    changed = _state_changes(before, after)
    if alive and _ENTERED.get(alive[-1], (None, None))[1] == setup:
        changed = {}  # entered with its parent, whose fixtures may hold a change till its end
    if _THREADS_LEFT in item.stash:
        changed["torch threads (in the test)"] = item.stash[_THREADS_LEFT]
    if not changed:
        return result
    for node in alive:  # a change is reported once (or, under leaks_state, accepted)
        _ENTERED[node] = (
            {**_ENTERED[node][0], **{k: after.get(k) for k in changed}},
            _ENTERED[node][1],
        )
    if not _state_checked(item):
        return result
    where = (
        "the test"
        if left[0] is item
        else f"the tests or fixtures of {left[0].nodeid or 'the session'}"
    )
    lines = "\n".join(f"  {k}: {b!r} -> {a!r}" for k, (b, a) in sorted(changed.items()))
    raise AssertionError(
        f"{where} left process-wide state changed (before -> after); restore it, or mark "
        f"the test @pytest.mark.leaks_state(reason):\n{lines}"
    )
