"""fit_many with a user's own build function: what build, fit and posterior return is checked
where it arrives, and named, instead of failing on a missing attribute or filling the table with
blanks in silence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import FitResult, SamplePosterior
from bayesphys.distributed import fit_many

KW = dict(executor="sequential", seed=0, progress=False)
PROBLEMS = {"a": np.zeros(3), 7: np.ones(3)}


class _Model:
    def __init__(self, problem, seed=0):
        self.mu, self.seed = torch.as_tensor(problem), seed

    def fit(self, steps=3):
        return FitResult(loss_history=[2.0, 1.0], seconds=0.5, converged=True, steps=2)

    def posterior(self):
        g = torch.Generator().manual_seed(self.seed % 2**63)
        return SamplePosterior(self.mu + torch.randn(1, 5, *self.mu.shape, generator=g))


class _FitReturnsSelf(_Model):  # scikit-learn's habit
    def fit(self, steps=3):
        return self


class _PosteriorReturnsDraws(_Model):
    def posterior(self):
        return super().posterior().draws


def _build_nothing(problem, seed=0):  # a forgotten return
    _Model(problem, seed)


def test_build_returning_no_model_fails_its_problems_naming_build():
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"):
        res = fit_many(PROBLEMS, _build_nothing, **KW)
    assert res.failed == ["a", 7] and res.idata is None
    for err in res.table["error"]:
        # was: AttributeError: 'NoneType' object has no attribute 'fit'
        assert err.startswith("TypeError: build: expected build(problem) to return a model")
        assert "_build_nothing returned NoneType, which has no fit() or posterior()" in err


def test_posterior_returning_raw_draws_fails_naming_posterior():
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"):
        res = fit_many(PROBLEMS, _PosteriorReturnsDraws, **KW)
    assert res.failed == ["a", 7]
    for err in res.table["error"]:
        # was: AttributeError: 'Tensor' object has no attribute 'to_inference_data'
        assert err.startswith(
            "TypeError: posterior: expected _PosteriorReturnsDraws.posterior() to return a "
            "bayesphys Posterior"
        )
        assert "received Tensor" in err and "export=" in err


def test_fit_returning_no_fit_result_warns_that_the_table_is_blank():
    """converged read False, steps 0 and fit_seconds NaN for every problem, without a word."""
    with pytest.warns(UserWarning, match=r"fit_many: 2 of 2 problems warned") as rec:
        res = fit_many(PROBLEMS, _FitReturnsSelf, **KW)
    assert "_FitReturnsSelf.fit returned _FitReturnsSelf, not a FitResult" in str(rec[0].message)
    assert res.ok == ["a", 7]  # the draws are kept
    for row in res.table["warnings"]:
        assert any("not a FitResult" in w for w in row)
    good = fit_many(PROBLEMS, _Model, **KW)
    assert good.table["converged"].tolist() == [True, True]
    assert all(not row for row in good.table["warnings"])
    same = res.idata.posterior["u"].values == good.idata.posterior["u"].values
    assert same.all()


class _RowModel(_Model):
    def __init__(self, row, seed=0):
        super().__init__(np.asarray(row["mu"], dtype=float), seed)


def test_a_dataframe_of_problems_is_refused_and_its_rows_work():
    """A DataFrame iterates over its column labels: the column name 'mu' became problem 0 and
    its build failed with "string indices must be integers"."""
    import pandas as pd

    frame = pd.DataFrame({"mu": [np.zeros(3), np.ones(3)]}, index=["p1", "p2"])
    with pytest.raises(TypeError, match=r"problems: .*DataFrame.*column labels \['mu'\]"):
        fit_many(frame, _RowModel, **KW)
    res = fit_many(dict(frame.iterrows()), _RowModel, **KW)
    assert res.ok == ["p1", "p2"]
    assert res.idata.posterior["u"].sel(problem="p2").mean() > 0.5


def _build_failing(problem, seed=0):
    if float(problem.sum()) > 0:
        raise ValueError("this problem's data are " + "far too long to print whole " * 10)
    return _Model(problem, seed=seed)


def test_failed_problems_are_summarised_in_one_warning():
    # the failures were only in result.failed and the table: a run whose every problem failed
    # returned idata=None without a word
    with pytest.warns(
        RuntimeWarning, match=r"1 of 2 problems failed \(first, 7: ValueError"
    ) as rec:
        res = fit_many(PROBLEMS, _build_failing, **KW)
    assert res.failed == [7] and res.ok == ["a"]
    (w,) = [r for r in rec if "problems failed" in str(r.message)]
    assert w.filename == __file__  # at the user's call
    assert "..." in str(w.message) and "result.failed" in str(w.message)
    with pytest.warns(RuntimeWarning, match=r"2 of 2 problems failed"):
        res = fit_many(PROBLEMS, _build_nothing, **KW)
    assert res.idata is None


def test_no_failure_no_failure_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_many(PROBLEMS, _Model, **KW)
    assert res.failed == []
