"""Review 74 of fit_many: names that could only fail after every fit are refused before any."""

from __future__ import annotations

import pytest

from bayesphys.distributed import fit_many

from ._toy import problems

_BUILT: list = []


def _counting_build(problem, seed=None):
    from ._toy import build

    _BUILT.append(seed)
    return build(problem, seed=seed)


def _refused_before_fitting(match: str, **kwargs) -> None:
    """fit_many(**kwargs) on two problems raises ValueError(match) before any build."""
    _BUILT.clear()
    with pytest.raises(ValueError, match=match):
        fit_many(
            problems(2), _counting_build, executor="sequential", progress=False, seed=0, **kwargs
        )
    assert _BUILT == []


@pytest.mark.parametrize("name", ["a/b", "chain", "draw", "patient"])
def test_a_name_every_export_or_the_stacking_would_refuse_is_refused_before_fitting(name):
    # "a/b", "chain" and "draw" failed every problem in its export, "patient" (= problem_dim)
    # the stacking, each after all the fitting
    _refused_before_fitting("^name: ", problem_dim="patient", name=name)


def test_a_problem_dim_with_a_slash_is_refused_before_fitting():
    # the stacked result could not be saved (xarray refuses '/' in a netCDF dimension name)
    _refused_before_fitting("^problem_dim: .*'/'", problem_dim="cohort/patient")


def test_with_export_the_default_name_is_not_checked_against_problem_dim():
    # export= names its own variables: problem_dim "u" is no clash with an unused name
    from ._toy import build

    def export(model, post, seed):
        return post.to_inference_data(num_samples=2, seed=seed, name="v")

    res = fit_many(
        problems(2),
        build,
        executor="sequential",
        progress=False,
        seed=0,
        problem_dim="u",
        export=export,
        fit_kwargs={"steps": 1},
    )
    assert res.idata.posterior["v"].dims[:3] == ("chain", "draw", "u")


def test_the_scale_out_page_names_the_files_of_an_id_that_is_no_plain_name():
    # the page said every problem is written as "<id>.nc"; "patient 1" is written under its
    # safe characters and a hash of the id
    import re
    from pathlib import Path

    from bayesphys.distributed._records import _stem

    page = Path(__file__).resolve().parents[2] / "docs" / "scale_out.md"
    if not page.exists():
        pytest.skip("no docs folder (installed package)")
    text = " ".join(page.read_text(encoding="utf-8").split())
    found = re.search(r"e\.g\. `([^`]+)\.nc` for `\"([^`]+)\"`", text)
    assert found is not None
    stem, pid = found.groups()
    assert stem == _stem(pid) != pid


def test_the_table_has_exactly_the_documented_columns():
    """FitManyResult's docstring lists the table's columns (it left out ``warnings``)."""
    import re

    from bayesphys.distributed import FitManyResult

    from ._toy import build

    doc = FitManyResult.__doc__
    listed = re.search(r"indexed by problem id: ``([^`]+)``", doc).group(1)
    documented = [c.strip() for c in listed.split(",")]
    res = fit_many(problems(2), build, executor="sequential", progress=False, seed=0)
    assert sorted(res.table.columns) == sorted(documented)


def test_save_netcdf_names_tuple_problem_ids_and_writes_nothing(tmp_path):
    """fit_many takes tuple ids; netCDF cannot store them: save_netcdf named nothing (xarray's
    "setting an array element with a sequence" from deep in its encoder)."""
    from bayesphys import save_netcdf

    from ._toy import build

    probs = {(key, 1): p for key, p in problems(2).items()}
    res = fit_many(probs, build, executor="sequential", progress=False, seed=0)
    path = tmp_path / "cohort.nc"
    with pytest.raises(
        ValueError, match=r"coordinate 'problem' of group 'posterior' holds a tuple"
    ):
        save_netcdf(res.idata, path)
    assert list(tmp_path.iterdir()) == []
