"""The ``python`` code blocks of README.md and docs/ run as printed (keeps the pages true).

Each block runs in a fresh interpreter in a temporary folder (a block may set torch's default
dtype or write files). Sizes are cut by the listed substitutions only (step counts, numbers of
simulations): the names, arguments and call sequence are the page's. Blocks that are
templates, fragments or need a cluster are listed in ``_NOT_RUN`` with the reason; a new block
must be added to one list or the other (``test_every_block_is_run_or_excused``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _blocks() -> dict[str, str]:
    """``{"docs/page.md:line": code}`` for every fenced python block (line of the fence)."""
    out = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            out[f"{page.relative_to(ROOT).as_posix()}:{line}"] = m.group(1)
    return out


_BLOCKS = _blocks()


def _key(page: str, first_line: str) -> str:
    """The block of ``page`` whose code starts with ``first_line`` (line numbers move)."""
    hits = [
        k for k, code in _BLOCKS.items() if k.startswith(page + ":") and code.startswith(first_line)
    ]
    assert len(hits) == 1, f"{page}: {len(hits)} blocks start with {first_line!r}"
    return hits[0]


# blocks not run, with the reason
_NOT_RUN = {
    _key("docs/calibration.md", "import arviz as az"): "reads a file `bayesphys calibrate` wrote",
    _key("docs/calibration.md", "from typing import Any"): "signatures of a hook (a template)",
    _key("docs/calibration.md", "from bayesphys.diagnostics import calibration_rows"): "template",
    _key("docs/concepts.md", "model = Component("): "the shared API in outline (a template)",
    _key("docs/probconserv.md", "fields = monotone_posterior("): "one line of the page's text",
    _key("docs/scale_out.md", "import ray"): "needs a running Ray cluster",
    _key("docs/scale_out.md", "from bayesphys.distributed import RayRunner"): "a cluster option",
    _key("docs/scale_out.md", "from dask.distributed import Client"): "needs a Dask scheduler",
}

# blocks that continue an earlier one: run after it, in the same interpreter
_CONTINUES = {
    _key("docs/odil.md", "plain = DiscreteProblem("): _key("docs/odil.md", "import math"),
}

# (pattern, replacement) per block: sizes only
_SMALLER: dict[str, list[tuple[str, str]]] = {
    _key("docs/calibration.md", "from bayesphys.diagnostics import CoreFamily"): [
        (r"n_sims=200", "n_sims=20"),
        (r"n_fit=100, n_eval=100", "n_fit=20, n_eval=20"),
    ],
    _key("docs/gp_pde.md", "from bayesphys.gp_pde import"): [(r"steps=150", "steps=2")],
    _key("docs/meta_fm.md", "from bayesphys.problems.populations import"): [
        (r"n_train=100, n_cal=30, n_test=30", "n_train=6, n_cal=4, n_test=4"),
        (r"width=128", "width=16"),
        (r"steps=1000", "steps=2"),
        (r"members=3", "members=2"),
    ],
    _key("docs/meta_fm.md", "import numpy as np\nimport pandas as pd"): [(r"steps=300", "steps=2")],
    _key("docs/neural_process.md", "from bayesphys.neural_process import"): [
        (r"poisson_sensor_data\(1000, seed=1\)", "poisson_sensor_data(8, seed=1)"),
        (r"steps=3000", "steps=2"),
    ],
    # the matrix-free LM spends 500 CG iterations on every step, rejected ones too (seven of
    # the first eight here); after 20 steps D_hat is within 1e-5 of its 30-step value (0.1002583)
    _key("docs/odil.md", "import math"): [(r"method=\"lm\", steps=30\)", 'method="lm", steps=20)')],
    _key("docs/odil.md", "from bayesphys.odil import GliomaModel"): [
        (r"brain_phantom\(64, 2\.0\)", "brain_phantom(32, 4.0)"),
        (r"spacing=2\.0", "spacing=4.0"),
        (r"model\.fit\(\)", "model.fit(steps=2, progress=False)"),
        (r"num_samples=200", "num_samples=10"),
    ],
    _key("docs/odil.md", "import numpy as np\nimport torch\n\nfrom bayesphys.odil import"): [
        (r"num_samples=50", "num_samples=10"),
    ],
    _key("docs/probconserv.md", "import torch\n\nfrom bayesphys.probconserv import"): [
        (r"steps=2000", "steps=2"),
    ],
    _key("docs/probconserv.md", "from bayesphys.probconserv import"): [
        (r"seed=0\)", "seed=0, gp_width=8)"),
        (r"steps=1200", "steps=2"),
        (r"500\)", "20)"),
    ],
    _key("docs/scale_out.md", "from bayesphys.distributed import fit_many"): [
        (r"make_cohort\(16", "make_cohort(3"),
        (r"steps\": 150", 'steps": 3'),
    ],
}

# what a block's comments state, checked after it (at full size, or as cut above where the cut
# block already reaches the stated value)
_CLAIMS = {
    # the limit update meets the user's own b(t) on the user's non-uniform grid
    _key("docs/probconserv.md", "import torch\n\nfrom bayesphys.probconserv import"): (
        "assert float(gap.abs().max()) < 1e-12, gap\n"
    ),
    _key("docs/odil.md", "import numpy as np\nimport torch\n\nfrom bayesphys.odil import"): (
        "assert plan.sum() == margin.sum() and score.shape == labels.shape\n"
        "assert abs(est['x0'] - p['truth']['x0']) < spacing, est\n"
    ),
    _key("docs/odil.md", "import math"): "assert abs(float(D_hat) - 0.1) < 0.01, float(D_hat)\n",
    # Step 2 on a user's own field: every draw of the exact update meets G u = b
    _key("docs/probconserv.md", "import torch\n\nfrom bayesphys import GaussianPosterior"): (
        "assert float((exact.sample((100,), seed=0) @ G.T - b).abs().max()) < 1e-10\n"
    ),
    # a user's own model: the exact posterior passes, the overconfident one is flagged
    _key("docs/calibration.md", "import numpy as np\nimport torch\n\nfrom bayesphys import"): (
        "assert is_calibrated(exact.metrics()) and not is_calibrated(over.metrics())\n"
    ),
    # a user's own problem, at full size (about 6 s): 3.8e-6, every point inside 2 sd
    _key("docs/gp_pde.md", "import torch\n\nfrom bayesphys.gp_pde import GPPDESolver"): (
        "assert err < 1e-5 and inside == 1.0, (err, inside)\n"
    ),
    # the last figure (the populations): every panel's labels inside it, none over a neighbour
    _key("docs/concepts.md", "import torch\n\nfrom bayesphys import GaussianPosterior"): (
        "fig.canvas.draw()\n"
        "boxes = [a.get_tightbbox(fig.canvas.get_renderer()) for a in fig.axes]\n"
        "w, h = fig.bbox.width, fig.bbox.height\n"
        "assert all(0 <= b.x0 and 0 <= b.y0 and b.x1 <= w and b.y1 <= h for b in boxes), boxes\n"
        "assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])\n"
    ),
}

# blocks that include a file (pymdownx.snippets, ``--8<-- "path"``): the tutorials show the
# example scripts whole, which tests/examples run with --smoke; here the file must exist
_INCLUDES = {k: code for k, code in _BLOCKS.items() if code.lstrip().startswith("--8<--")}

_RUN = [k for k in _BLOCKS if k not in _NOT_RUN and k not in _CONTINUES and k not in _INCLUDES]


def _source(key: str) -> str:
    code = _BLOCKS[key]
    for pattern, new in _SMALLER.get(key, []):
        code, n = re.subn(pattern, new, code)
        assert n >= 1, f"{key}: the substitution {pattern!r} no longer matches the page"
    code += "\n" + _CLAIMS.get(key, "")
    follow = [k for k, first in _CONTINUES.items() if first == key]
    return code + "".join("\n" + _source(k) for k in follow)


def test_every_block_is_run_or_excused():
    assert len(_BLOCKS) >= 26 and len(_INCLUDES) >= 8  # an empty scan would pass silently
    assert set(_RUN) | set(_NOT_RUN) | set(_CONTINUES) | set(_INCLUDES) == set(_BLOCKS)
    assert not set(_RUN) & set(_NOT_RUN)


@pytest.mark.parametrize("key", sorted(_INCLUDES))
def test_an_included_file_exists(key):
    paths = re.findall(r'--8<--\s+"([^"]+)"', _INCLUDES[key])
    assert paths, f"{key}: no file named in {_INCLUDES[key]!r}"
    for path in paths:
        assert (ROOT / path).is_file(), f"{key} includes {path}, which does not exist"


@pytest.mark.parametrize("key", _RUN)
def test_the_block_runs(key, tmp_path):
    # the checkout first, then the caller's path (where the dependencies may live)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path, "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _source(key)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{key} failed:\n{proc.stderr[-3000:]}"
