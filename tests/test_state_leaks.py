"""tests/conftest.py fails a test that leaves process-wide state changed (torch's thread count,
an environment variable the package reads, the working directory, an open pyplot figure):
benchmark mains called in-process left one thread set, and a later test's comparison of a
one-thread with a two-thread result passed only in the full suite. A test that changes the
state and gives it back passes, and so does one marked ``leaks_state(reason)``. A change the
test's body leaves (undone by the autouse ``_few_threads``) is reported where the test asks
for it (``usefixtures("_threads_kept")``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = """
import os

import matplotlib.pyplot as plt
import pytest
import torch


def other_count():
    return torch.get_num_threads() % 2 + 1


@pytest.mark.usefixtures("_threads_kept")
def test_threads_left():
    torch.set_num_threads(other_count())


@pytest.fixture
def one_thread_kept():
    torch.set_num_threads(other_count())


@pytest.mark.usefixtures("_threads_kept")
def test_threads_left_by_a_fixture(one_thread_kept):
    pass


def test_threads_given_back(restore_threads):
    torch.set_num_threads(other_count())


def test_environment_left():
    os.environ["BAYESPHYS_LEAK_CHECK"] = "1"


def test_environment_through_monkeypatch(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.chdir(os.sep)


def test_working_directory_left():
    os.chdir(os.sep)


def test_figure_left():
    plt.figure()


def test_figure_closed(new_figures_closed):
    plt.figure()


@pytest.mark.leaks_state("the case of a test allowed to")
def test_marked():
    torch.set_num_threads(other_count())
    os.environ["TQDM_MININTERVAL"] = "5"
"""


def test_a_test_that_leaves_process_state_changed_fails_naming_it(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_cases.py").write_text(CASES)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    leaks_state(reason): allowed to\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("OMP_NUM_THREADS", None)
    # pytest prints each error's whole message again in the summary where $CI or
    # $BUILD_NUMBER is set (as on a CI machine); the counts below read the report alone.
    env.pop("CI", None)
    env.pop("BUILD_NUMBER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rE", "test_cases.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    errors = {
        line.split("::")[1].split()[0]: line
        for line in out.splitlines()
        if line.startswith("ERROR test_cases.py::")
    }
    assert set(errors) == {
        "test_threads_left",
        "test_threads_left_by_a_fixture",
        "test_environment_left",
        "test_working_directory_left",
        "test_figure_left",
    }, out
    report = out.split("short test summary info")[0]
    assert report.count("torch threads (in the test): ") == 2, out
    assert "$BAYESPHYS_LEAK_CHECK: None -> '1'" in out
    assert f"working directory: {str(tmp_path)!r} -> {os.sep!r}" in out
    assert "open pyplot figures: () -> (1,)" in out
    assert "9 passed, 5 errors" in out, out
