"""Review 74 (ProbConserv and the GPME data sets): fresh-eyes defects, each test failing on the
code before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys.probconserv import (
    add_discrepancy,
    discrepancy_roots,
    fit_local_scale,
    trapezoid_weights,
)
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


# -- add_discrepancy: the result has cov's own batch dims -----------------------------------
def _dense(c):
    return c.to_dense() if hasattr(c, "to_dense") else c


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("kind", ["dense", "diag", "lowrank"])
def test_add_discrepancy_keeps_the_covariance_shape(batch, kind):
    # a fixed [None, None] on the root gave a covariance [nt, N, N] the result [1, nt, N, N]
    # and one [N, N] the result [1, 1, N, N] (sd2's check accepted any batch dims)
    n = 5
    x = torch.linspace(0, 1, n, dtype=F64)
    root, _, _ = discrepancy_roots(x, trapezoid_weights(x), 0.2)
    d = torch.rand(*batch, n, dtype=F64) + 0.5
    if kind == "dense":
        cov = torch.diag_embed(d)
    elif kind == "diag":
        cov = DiagLinearOperator(d)
    else:
        r = torch.randn(*batch, n, 2, dtype=F64)
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        )
    sd2 = torch.rand(batch, dtype=F64) + 0.1
    out = add_discrepancy(cov, sd2, root)
    assert tuple(out.shape) == (*batch, n, n)
    want = _dense(cov) + sd2[..., None, None] * (root @ root.T)
    torch.testing.assert_close(_dense(out), want)


# -- fit_local_scale: each argument checked under the caller's name -------------------------
def _local_args(v=12, m=12, nt=1, n=7):
    g = torch.Generator().manual_seed(0)
    return dict(
        val_mean=torch.randn(v, nt, n, dtype=F64, generator=g),
        val_mass=torch.randn(v, nt, dtype=F64, generator=g),
        val_theta=torch.rand(v, dtype=F64, generator=g) * 2 - 1,
        cal_mean=torch.randn(m, nt, n, dtype=F64, generator=g),
        cal_mass=torch.randn(m, nt, dtype=F64, generator=g),
        cal_theta=torch.rand(m, dtype=F64, generator=g) * 2 - 1,
        z={"post": torch.randn(m, nt, n, dtype=F64, generator=g)},
        train_range=(-1.0, 1.0),
    )


def test_fit_local_scale_refuses_a_nan_calibration_parameter():
    # a NaN cal_theta was binned into the last parameter bin and the bandwidth chosen on it
    args = _local_args()
    args["cal_theta"] = args["cal_theta"].clone()
    args["cal_theta"][3] = float("nan")
    with pytest.raises(ValueError, match=r"^cal_theta: expected finite values"):
        fit_local_scale(**args)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        # an array failed with "'numpy.ndarray' object has no attribute 'detach'"
        (lambda a: {"val_mean": a["val_mean"].numpy()}, TypeError, r"^val_mean: expected a Tensor"),
        (
            lambda a: {"z": {"post": a["z"]["post"].tolist()}},
            TypeError,
            r"^z\['post'\]: expected a Tensor",
        ),
        # a number failed with "'float' object is not subscriptable"
        (lambda a: {"train_range": 1.0}, ValueError, r"^train_range: expected \(lo, hi\)"),
        # named by the helpers' arguments (theta, mass, mean, absz), not the caller's
        (lambda a: {"cal_theta": a["cal_theta"][:5]}, ValueError, r"^cal_theta: expected shape"),
        (lambda a: {"cal_mass": a["cal_mass"][:5]}, ValueError, r"^cal_mass: expected shape"),
        (
            lambda a: {"cal_mean": a["cal_mean"] * float("nan")},
            ValueError,
            r"^cal_mean: expected finite",
        ),
        (
            lambda a: {"z": {"post": a["z"]["post"] * float("nan")}},
            ValueError,
            r"^z\['post'\]: expected finite",
        ),
    ],
)
def test_fit_local_scale_names_the_argument(change, error, match):
    args = _local_args()
    args.update(change(args))
    with pytest.raises(error, match=match):
        fit_local_scale(**args)


def test_fit_local_scale_still_fits():
    local = fit_local_scale(**_local_args())
    assert set(local.bandwidth) == {"post"}
    s = local.scale(torch.zeros(2, 1, 7, dtype=F64), torch.zeros(2, 1, dtype=F64), "post")
    assert s.shape == (2, 1) and bool(torch.isfinite(s).all())


# -- GPMEData.subset: no silent misreading of an index --------------------------------------
@pytest.fixture(scope="module")
def data():
    return make_dataset("pme", 3, n_t_context=2, n_x_context=2, n_t_target=2, n_x_target=2)


@pytest.mark.parametrize("idx", [np.array(1), np.array(1.0), torch.tensor(1.0), 1.0])
def test_subset_of_a_0d_index_keeps_the_function_axis(data, idx):
    # a 0-d array dropped the function axis (params [], x_context [4, 2]); a float tensor and
    # a float failed inside torch
    one = data.subset(idx)
    assert one.params.shape == (1,) and one.x_context.shape == (1, 4, 2)
    assert float(one.params[0]) == float(data.params[1])


@pytest.mark.parametrize("idx", [torch.tensor(True), torch.tensor(False), np.array(True)])
def test_subset_refuses_a_0d_bool_tensor(data, idx):
    # torch.tensor(True) was read as the index 1, torch.tensor(False) as 0
    with pytest.raises(TypeError, match=r"^idx: expected a slice, an int or a sequence"):
        data.subset(idx)


@pytest.mark.parametrize("idx", [[0.7], [1.5, 2.0], np.array([0.5]), torch.tensor([0.5])])
def test_subset_refuses_fractional_indices(data, idx):
    # [0.7] gave function 0 and [1.5, 2.0] the functions 1 and 2, truncated without a word
    with pytest.raises(ValueError, match=r"^idx: expected whole numbers"):
        data.subset(idx)


def test_subset_names_bad_index_shapes_and_ranges(data):
    with pytest.raises(ValueError, match=r"^idx: expected indices in \[-3, 3\)"):
        data.subset([5])  # an IndexError from torch before
    with pytest.raises(ValueError, match=r"^idx: expected a bool mask of shape \(3,\)"):
        data.subset(np.array([True]))
    with pytest.raises(ValueError, match=r"^idx: expected an int or a 1-D sequence"):
        data.subset([[0, 1]])


@pytest.mark.parametrize(
    ("idx", "rows"),
    [
        ([2, 0], [2, 0]),
        ((0, 2), [0, 2]),
        (np.array([True, False, True]), [0, 2]),
        (torch.tensor([False, True, True]), [1, 2]),
        (slice(1, None), [1, 2]),
        (-1, [2]),
        ([], []),
        (torch.tensor([], dtype=torch.long), []),
    ],
)
def test_subset_reads_every_index_kind(data, idx, rows):
    sub = data.subset(idx)
    assert torch.equal(sub.params, data.params[rows])
    assert torch.equal(sub.y_target, data.y_target[rows])
