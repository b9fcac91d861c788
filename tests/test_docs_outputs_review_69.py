"""What the pages say a python block prints, returns or writes, checked against a run of it.

``tests/test_docs_snippets.py`` runs every block; here a block runs (with that file's size cuts,
so only claims that do not depend on the sizes are checked, unless the block runs uncut) and
the shapes, keys, types, file names, warnings and printed lines its comments and the prose next
to it state are asserted after it, in the same interpreter. Floating-point values are checked
only with tolerances, and only where the page states a number the run reproduces on any
platform. The runs over about 3 s on two cores are ``slow`` (``pytest -m slow``), so the
default suite keeps its time; their blocks still run by default in test_docs_snippets.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import calibration_rows
from bayesphys.inference_data import ARVIZ_V1
from tests.test_docs_snippets import _BLOCKS, ROOT, _key, _source


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path, "TQDM_DISABLE": "1"}


def _run(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in ``cwd`` (warnings shown once per place)."""
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"the block failed:\n{proc.stderr[-3000:]}"
    return proc


def _block_then(page: str, first: str, claims: str, cwd: Path) -> subprocess.CompletedProcess:
    """The block (as test_docs_snippets runs it: its size cuts and claims), then ``claims``."""
    return _run(_source(_key(page, first)) + "\n" + textwrap.dedent(claims), cwd)


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_readme_tour_prints_the_shapes_and_writes_its_files(tmp_path):
    proc = _block_then(
        "README.md",
        "import arviz as az, torch",
        """
        assert draws.shape == (4, 500, 101), draws.shape  # [chain, draw, 101]
        assert lo.shape == hi.shape == (101,)
        """,
        tmp_path,
    )
    # print(post.mean.shape, post.variance.shape)  # [101], [101]
    assert proc.stdout.splitlines()[0] == "torch.Size([101]) torch.Size([101])", proc.stdout
    assert re.search(r"^rel L2 \S+ coverage \S+$", proc.stdout, re.M), proc.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"field.nc", "bands.png"}


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_concepts_own_posterior_shapes(tmp_path):
    _block_then(
        "docs/concepts.md",
        "import numpy as np",
        """
        assert ens.event_shape == (40,) and (ens.num_chains, ens.num_draws) == (1, 500)
        assert ab.shape == (4, 250, 2)
        assert mcmc.event_shape == (2,) and mcmc.num_chains == 4
        assert group_dataset(mcmc.to_inference_data(), "posterior")["theta"].shape == (4, 250, 2)
        assert lo.shape == hi.shape == (40,)
        assert u.shape == (100, 40) and torch.equal(u, gp.sample((100,), seed=0))
        assert lp.shape == (100,)
        saved = group_dataset(back, "posterior")["u"].values
        made = group_dataset(ens.to_inference_data(coords={"u_dim_0": x}), "posterior")["u"]
        assert saved.shape == (1, 500, 40) and np.array_equal(saved, made.values)
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"ens.nc"}


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_concepts_plots_return_what_the_page_says(tmp_path):
    _block_then(
        "docs/concepts.md",
        "import torch\n\nfrom bayesphys import GaussianPosterior",
        """
        from matplotlib.axes import Axes
        from matplotlib.figure import Figure

        assert isinstance(ax, Axes) and isinstance(fig, Figure)  # plot_bands: axes
        assert isinstance(plot_field(SamplePosterior(draws, event_ndim=2)), Figure)
        assert clouds.batch_shape == (3,) and clouds.event_shape == (64, 2)
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"bands.png", "field.png", "populations.png"}


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_gp_pde_usage_block(tmp_path):
    _block_then(
        "docs/gp_pde.md",
        "from bayesphys.gp_pde import GPPDESolver",
        """
        from bayesphys import FitResult, GaussianPosterior
        from bayesphys.inference_data import group_names

        assert isinstance(res, FitResult)
        assert isinstance(post, GaussianPosterior) and post.event_shape == (300,)  # 300 points
        assert "posterior" in group_names(idata)
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"m.pt"}


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_calibration_usage_block(tmp_path):
    _block_then(
        "docs/calibration.md",
        "from bayesphys.diagnostics import CoreFamily",
        """
        import bayesphys
        from bayesphys.diagnostics import RecalibratedPosterior
        from bayesphys.inference_data import group_dataset, group_names

        listed = {"coverage50", "coverage90", "coverage95", "hdi90", "field_coverage90",
                  "sbc_pvalue", "tarp_atc", "crps", "nll"}
        assert listed <= set(res.metrics()), sorted(res.metrics())
        ranks = res.to_inference_data()
        assert "prior_sbc" in group_names(ranks)
        assert "sbc_simulation" in group_dataset(ranks, "prior_sbc").dims
        assert {"coverage_before", "coverage_after"} <= set(rec.heldout)
        assert u.shape == (1, 101) and y.shape == (1, 30)
        assert isinstance(post, RecalibratedPosterior) and isinstance(post, bayesphys.Posterior)
        """,
        tmp_path,
    )


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_calibration_own_model_prints_true_false(tmp_path):
    proc = _block_then(
        "docs/calibration.md",
        "import numpy as np\nimport torch\n\nfrom bayesphys import",
        "",
        tmp_path,
    )
    assert proc.stdout.splitlines()[0] == "True False", proc.stdout  # the comment's output


def _simulate(n, *, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return theta, theta + 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def _infer(y):  # N(0, I) prior, one observation of sd 0.5 per coordinate: N(0.8 y, 0.2 I)
    return GaussianPosterior(0.8 * y, 0.2 * torch.eye(2, dtype=torch.float64))


def test_calibration_rows_row_has_the_keys_its_module_docstring_lists():
    # bayesphys/diagnostics/calibrate.py: {"problem", "method", "setting", "anchor": None,
    # "metrics": {...16 keys...}, "result": CalibrationResult}
    (row,) = calibration_rows(
        _simulate, _infer, n_sims=20, n_draws=19, problem="toy", method="exact"
    )
    assert set(row) == {"problem", "method", "setting", "anchor", "metrics", "result"}
    assert row["anchor"] is None
    assert set(row["metrics"]) == {
        "coverage50", "coverage90", "coverage95", "hdi90", "field_coverage90",
        "sbc_pvalue", "sbc_pvalue_ks", "sbc_pvalue_joint", "sbc_pvalue_joint_ks",
        "sbc_pvalue_crossfit", "sbc_pvalue_crossfit_ks",
        "tarp_atc", "tarp_pvalue", "crps", "nll", "seconds",
    }  # fmt: skip


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_probconserv_usage_block_shapes(tmp_path):
    _block_then(
        "docs/probconserv.md",
        "from bayesphys.probconserv import",
        """
        from bayesphys import FitResult, GaussianPosterior

        assert isinstance(post, GaussianPosterior)
        assert post.batch_shape == (8, 1) and post.event_shape == (201,)
        assert fronts.shape[1:] == (8, 1), fronts.shape  # [500, 8, 1] at the page's size
        assert isinstance(model.fit(steps=1, progress=False), FitResult)  # what fit returns
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"stefan.pt"}


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_probconserv_own_field_prints_round_off(tmp_path):
    proc = _block_then(
        "docs/probconserv.md",
        "import torch\n\nfrom bayesphys import GaussianPosterior",
        """
        from bayesphys import SamplePosterior

        assert post.batch_shape == (3,) and post.event_shape == (60,)
        assert isinstance(fields, SamplePosterior)
        assert fields.batch_shape == (3,) and fields.event_shape == (60,)
        """,
        tmp_path,
    )
    printed = re.match(r"tensor\(([^,]+), dtype=torch.float64\)", proc.stdout)
    assert printed and float(printed.group(1)) < 1e-13, proc.stdout  # round-off, ~1e-14


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_probconserv_own_data_shapes(tmp_path):
    _block_then(
        "docs/probconserv.md",
        "import torch\n\nfrom bayesphys.probconserv import",
        """
        assert b.shape == (1, 3)
        assert post.batch_shape == (1, 3) and post.event_shape == (31,)
        """,
        tmp_path,
    )


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_neural_process_usage_block(tmp_path):
    _block_then(
        "docs/neural_process.md",
        "from bayesphys.neural_process import",
        """
        from bayesphys import GaussianPosterior
        from bayesphys.inference_data import group_dataset

        assert isinstance(field, GaussianPosterior)
        assert field.batch_shape == (1,) and field.event_shape == (201,)
        assert x_obs.shape == y.shape == (54,)  # 54 noisy sensors
        assert isinstance(params, GaussianPosterior)
        assert params.batch_shape == (1,) and params.event_shape == (5,)  # over z
        z = group_dataset(idata, "posterior")["z"]  # variable "z"
        assert z.dims == ("chain", "draw", "case", "param") and z.sizes["case"] == 1
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"rgnp.pt"}


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_odil_sparse_engine_gives_the_stated_estimate(tmp_path):
    # "Both give D_hat = 0.1002583 and sd 6.5406e-4": the sparse block after the first block's
    # set-up (the matrix-free fit of the first block takes minutes; its cut run is checked by
    # test_docs_snippets)
    first = _BLOCKS[_key("docs/odil.md", "import math")]
    setup = first[: first.index("prob = DiscreteProblem(")]
    sparse = _BLOCKS[_key("docs/odil.md", "plain = DiscreteProblem(")]
    _run(
        setup
        + sparse
        + textwrap.dedent(
            """
            D_hat = float(plain.unpack(x)[1]["D"])
            sd = float(cov_D.sqrt())
            assert abs(D_hat - 0.1002583) < 1e-6 and abs(sd - 6.5406e-4) < 1e-7, (D_hat, sd)
            assert fit.converged, fit
            """
        ),
        tmp_path,
    )


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_odil_own_patient_block(tmp_path):
    _block_then(
        "docs/odil.md",
        "import numpy as np\nimport torch\n\nfrom bayesphys.odil import",
        """
        from bayesphys import SamplePosterior

        assert {"dw", "rho", "x0", "y0"} <= set(est)
        assert any(k.startswith("sd_") for k in est)
        assert isinstance(later, SamplePosterior) and later.event_shape == (32, 32)
        assert later.num_chains == 1  # [1, 50, 32, 32] (50 draws, 10 as cut)
        assert later.num_draws == 10
        assert score.shape == (32, 32)
        assert int(plan.sum()) == int(margin.sum())  # as many voxels
        """,
        tmp_path,
    )


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_odil_glioma_usage_block(tmp_path):
    _block_then(
        "docs/odil.md",
        "from bayesphys.odil import GliomaModel",
        """
        from bayesphys import SamplePosterior
        from bayesphys.inference_data import group_dataset

        assert isinstance(post, SamplePosterior) and post.num_chains == 1  # [1, 200, 64, 64]
        assert post.num_draws == 10 and post.event_shape == (32, 32)  # the cut sizes
        names = set(group_dataset(idata, "posterior").data_vars)
        assert names == {"D_w", "rho", "x0", "y0", "ell", "v", "c"}, names
        assert "labels" in group_dataset(idata, "observed_data").data_vars
        """,
        tmp_path,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"g.pt"}


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_scale_out_fit_many_prints_the_stated_dims(tmp_path):
    proc = _block_then(
        "docs/scale_out.md",
        "from bayesphys.distributed import fit_many",
        """
        import os

        files = sorted(os.listdir("fits"))  # one record per problem
        assert files == [f"p00{i}.{e}" for i in range(3) for e in ("json", "nc")], files
        assert list(table.index) == ["p000", "p001", "p002"] and table.index.name == "patient"
        assert res.seed == 0 and list(res.failed) == []
        """,
        tmp_path,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "('chain', 'draw', 'patient', 'u_dim_0')", proc.stdout
    assert lines[1].split() == ["status", "seconds", "converged", "error"], proc.stdout


@pytest.mark.slow  # > 10 s: tests/test_docs_snippets.py runs the block by default
def test_meta_fm_own_populations_block(tmp_path):
    proc = _block_then(
        "docs/meta_fm.md",
        "import numpy as np\nimport pandas as pd",
        """
        assert len(drugs) == 2 and len(source) == 12
        assert [tuple(p.shape) for p in pred] == [(200, 2), (200, 2)]  # [n_i, d]
        """,
        tmp_path,
    )
    # print(result.message, [tuple(p.shape) for p in pred])
    assert proc.stdout.splitlines()[0].endswith("[(200, 2), (200, 2)]"), proc.stdout


@pytest.mark.slow
def test_meta_fm_api_block(tmp_path):
    proc = _block_then(
        "docs/meta_fm.md",
        "from bayesphys.problems.populations import",
        """
        import torch
        from matplotlib.axes import Axes

        from bayesphys import SamplePosterior
        from bayesphys.inference_data import group_names

        n, d = test.source[0].shape
        assert "seconds_per_1k_steps" in result.extra
        assert isinstance(pred, list) and all(tuple(p.shape) == (n, d) for p in pred)
        assert len(pred5) == len(pred)
        assert isinstance(post, SamplePosterior) and (post.num_chains, post.num_draws) == (1, 8)
        assert post.batch_shape == (4,) and post.event_shape == (n, d)
        draws = post.sample((8,), seed=0)
        assert n <= model.config.points and bool((draws == draws[:1]).all())  # identical
        assert all(torch.equal(a, b) for a, b in zip(model.predict(test.source),
                                                     same.predict(test.source)))
        assert {"spearman", "coverage", "radius", "test_error"} <= set(unc), sorted(unc)
        assert "posterior" in group_names(idata) and isinstance(ax, Axes)
        """,
        tmp_path,
    )
    assert "every draw is identical" in proc.stderr  # "a warning says so"


@pytest.mark.slow
@pytest.mark.skipif(ARVIZ_V1, reason="the block is ArviZ 0.x's spelling, as the page says")
def test_calibration_reads_the_file_calibrate_quick_writes(tmp_path):
    # "calibration_core.nc is written by bayesphys calibrate core --quick --out DIR into DIR"
    cmd = [sys.executable, "-m", "bayesphys", "calibrate", "core", "--quick", "--out", "DIR"]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"calibration.json", "calibration_core.nc", "calibration_core.png"} <= {
        p.name for p in (tmp_path / "DIR").iterdir()
    }
    block = _BLOCKS[_key("docs/calibration.md", "import arviz as az")]
    _run(
        block
        + textwrap.dedent(
            """
            assert ranks.shape == (100,) and L == 49  # quick: N = 100, L = 49
            assert {"problem", "method"} <= set(idata.prior_sbc.attrs)
            """
        ),
        tmp_path,
    )


def test_cohort_tutorial_lists_the_files_the_example_writes(tmp_path):
    # docs/tutorials/cohort.md: cohort.nc (one patient dimension), one record per patient
    # under fits/, summary.json and cohort_table.csv; no figure
    from bayesphys.examples import cohort
    from bayesphys.inference_data import group_dataset, load_netcdf

    out = tmp_path / "cohort"
    argv = ["--smoke", "--patients", "2", "--executor", "sequential", "--out", str(out)]
    cohort.main(argv)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    records = {f"fits/p00{i}.{e}" for i in range(2) for e in ("json", "nc")}
    assert files == {"cohort.nc", "summary.json", "cohort_table.csv"} | records, files
    u = group_dataset(load_netcdf(out / "cohort.nc"), "posterior")["u"]
    assert u.sizes["patient"] == 2


@pytest.mark.slow  # > 3 s: tests/test_docs_snippets.py runs the block by default
def test_ddp_tutorial_lists_the_files_the_example_writes(tmp_path):
    # docs/tutorials/ddp-training.md: checkpoint.pt, run_<model>.json and summary.json; no
    # InferenceData and no figure
    from bayesphys.examples import ddp_training

    out = tmp_path / "ddp"
    ddp_training.main(["--smoke", "--nproc", "1", "--out", str(out)])
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "run_mlp.json", "summary.json"}
