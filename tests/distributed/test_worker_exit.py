"""Process-pool workers end when their main process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="reads child processes from /proc (Linux)"
)

SCRIPT = textwrap.dedent(
    """
    import time
    from bayesphys.distributed import resolve_runner

    def task(x):
        print("started", flush=True)
        time.sleep(120)
        return x

    if __name__ == "__main__":
        with resolve_runner("local", max_workers=1, threads_per_worker=1) as runner:
            list(runner.run(task, [1]))
    """
)


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out |= {int(c) for c in text}
    return out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    script = tmp_path / "pool_main.py"
    script.write_text(SCRIPT)
    main = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert main.stdout.readline().strip() == "started"  # a worker is inside its task
        workers = {c for c in _children(main.pid) if _alive(c)}
        assert workers, "expected the pool's worker processes"
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        for w in left:  # do not leave them behind if the check fails
            os.kill(w, signal.SIGKILL)
        assert not left, f"workers {left} outlived their killed main process"
    finally:
        if main.poll() is None:
            main.kill()
        main.stdout.close()  # the pipe left open was a ResourceWarning at garbage collection
