"""The less used functions of ``bayesphys.probconserv.__all__`` given what a user may pass.

Each case here used to give a silently wrong answer (a NaN, a scaled or negative variance,
an order-dependent choice) or fail deep inside torch with a message that named nothing.
"""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys.probconserv import (
    add_discrepancy,
    conserve_slices,
    cov_times_gt,
    discrepancy_roots,
    fit_hybrid,
    gated_discrepancy_variance,
    hybrid_covariance,
    mass_residual,
    select_candidate,
    trapezoid_weights,
)

F64 = torch.float64
NAN = float("nan")


@pytest.mark.parametrize("flags", [[0.5, 2.0], [-1.0, 1.0], [1, 3]])
def test_gate_flags_that_are_not_zero_or_one_are_refused(flags):
    # a weight scaled the variance (2 doubled it), -1 made it negative, without a word
    r, v = torch.ones(2, 1, dtype=F64) * 3, torch.ones(2, 1, dtype=F64)
    with pytest.raises(ValueError, match=r"^outside: expected flags \(True/False or 0/1"):
        gated_discrepancy_variance(r, v, 1.0, 1.0, torch.tensor(flags), 1.0)


def test_gate_flags_as_bools_or_zero_one_give_the_same_variance():
    r, v = torch.tensor([[3.0], [2.0]], dtype=F64), torch.ones(2, 1, dtype=F64)
    want = gated_discrepancy_variance(r, v, 1.0, 0.5, torch.tensor([True, False]), 1.0)
    for flags in ([1, 0], [1.0, 0.0], torch.tensor([1, 0])):
        got = gated_discrepancy_variance(r, v, 1.0, 0.5, flags, 1.0)
        assert torch.equal(got, want)
    assert want[0, 0] == pytest.approx((9.0 - 1.0) / 0.5) and want[1, 0] == 0.0


# -- select_candidate -----------------------------------------------------------------------
def _per(*values):
    return torch.tensor(values, dtype=F64)


@pytest.mark.parametrize("first_nan", [True, False])
def test_select_candidate_refuses_a_nan_mse_whatever_the_order(first_nan):
    # min() over a dict with a NaN value picked the NaN candidate when it came first
    items = [((0, 1.0), NAN), ((0, 0.5), 0.9)]
    cv = dict(items if first_nan else items[::-1])
    per = {(0, 1.0): _per(1.0, 1.0), (0, 0.5): _per(0.8, 1.0)}
    with pytest.raises(ValueError, match=r"^cv\[\(0, 1\.0\)\]: expected a finite number"):
        select_candidate(cv, per)


def test_select_candidate_checks_the_per_function_mses():
    cv = {(0, 1.0): 1.0, (0, 0.5): 0.9}
    # lengths that differ failed in torch's broadcast, a list had no numel
    with pytest.raises(ValueError, match=r"^per_function: expected one MSE per validation"):
        select_candidate(cv, {(0, 1.0): _per(1, 1, 1), (0, 0.5): _per(0.8, 1)}, "one_se")
    got = select_candidate(cv, {(0, 1.0): [1.0, 1.0], (0, 0.5): [0.8, 1.0]}, "one_se")
    assert got == select_candidate(cv, {(0, 1.0): _per(1, 1), (0, 0.5): _per(0.8, 1)}, "one_se")
    with pytest.raises(TypeError, match=r"^per_function: expected a dict"):
        select_candidate(cv, [1.0, 0.9])
    # a key that is no (K, beta) pair failed with an IndexError in the one-SE rule
    with pytest.raises(ValueError, match=r"^cv: expected \(K, beta\) pairs as keys"):
        select_candidate({"a": 1.0}, {"a": _per(1, 1)}, "one_se")
    with pytest.raises(TypeError, match=r"^cv\[\(0, 1\.0\)\]: expected a real number"):
        select_candidate({(0, 1.0): "a"}, {(0, 1.0): _per(1, 1)})


# -- discrepancy_roots ----------------------------------------------------------------------
@pytest.mark.parametrize("g", [torch.zeros(5, dtype=F64), -torch.ones(5, dtype=F64)])
def test_discrepancy_roots_refuse_weights_that_are_not_quadrature_weights(g):
    # zero weights gave g'Kg = 0 and a NaN root of K_perp
    x = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(ValueError, match=r"^g: expected quadrature weights >= 0, not all zero"):
        discrepancy_roots(x, g, 0.2)


def test_discrepancy_roots_refuse_an_empty_grid_and_keep_rhs_weights():
    with pytest.raises(ValueError, match=r"^x: expected at least one grid point"):
        discrepancy_roots(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=F64), 0.2)
    x = torch.linspace(0, 1, 5, dtype=F64)
    g = trapezoid_weights(x, "rhs")  # g_0 = 0: a valid rule
    root, perp, gkg = discrepancy_roots(x, g, 0.2)
    assert gkg > 0 and bool(torch.isfinite(perp).all())
    assert float((g @ perp).abs().max()) < 1e-12  # K_perp has no mass direction


# -- covariances given to the Step-2 building blocks ---------------------------------------
def _diag(*batch, n=5):
    gen = torch.Generator().manual_seed(0)
    return DiagLinearOperator(torch.rand(*batch, n, dtype=F64, generator=gen) + 0.1)


def test_cov_times_gt_refuses_a_covariance_that_is_not_square():
    # a [5, 4] "covariance" was multiplied as one: a [5, 1] result without a word
    with pytest.raises(ValueError, match=r"^cov: expected square matrices \[\*batch, N, N\]"):
        cov_times_gt(torch.ones(5, 4, dtype=F64), torch.ones(4, 1, dtype=F64))
    with pytest.raises(TypeError, match=r"^cov: expected a LinearOperator or a tensor"):
        cov_times_gt([[1.0, 0.0], [0.0, 1.0]], torch.ones(2, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"^gt: expected batch dims that broadcast"):
        cov_times_gt(_diag(3), torch.ones(2, 5, 1, dtype=F64))
    eye = torch.eye(3, dtype=F64)
    assert torch.equal(cov_times_gt(2 * eye, eye[:, :1]), 2 * eye[:, :1])


def test_mass_check_covariances_are_checked_by_name():
    mean = torch.zeros(2, 3, 5, dtype=F64)
    g, mass = trapezoid_weights(torch.linspace(0, 1, 5)), torch.ones(2, 3, dtype=F64)
    # another batch and a non-square covariance failed in torch's broadcast
    with pytest.raises(ValueError, match=r"^cov: expected batch dims broadcasting to mean's"):
        mass_residual(mean, _diag(4, 3), g, mass)
    with pytest.raises(ValueError, match=r"^cov: expected square matrices"):
        mass_residual(mean, torch.ones(2, 3, 4, 5, dtype=F64), g, mass)
    with pytest.raises(TypeError, match=r"^cov: expected a LinearOperator or a tensor"):
        mass_residual(mean, torch.ones(2, 3, 5).tolist(), g, mass)
    with pytest.raises(TypeError, match=r"^cov: expected a LinearOperator or a tensor"):
        add_discrepancy(torch.ones(2, 3, 5).tolist(), torch.ones(2, 3), torch.ones(5, 2))
    r, v = mass_residual(mean, _diag(2, 3), g, mass)  # the documented shapes still work
    assert r.shape == v.shape == (2, 3) and torch.equal(r, -mass)


def test_hybrid_covariance_checks_scale_and_err_root_against_the_covariance():
    cov, root = _diag(2, 3), torch.ones(3, 5, 4, dtype=F64)
    with pytest.raises(TypeError, match=r"^scale: expected real values"):  # failed in "lt"
        hybrid_covariance(cov, root, 0.5, 1.0, torch.ones(2, 3, dtype=torch.complex128))
    with pytest.raises(TypeError, match=r"^scale: expected real values"):  # read as 0/1
        hybrid_covariance(cov, root, 0.5, 1.0, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^scale: expected a number or a tensor \[\*, nt\]"):
        hybrid_covariance(cov, root, 0.5, 1.0, torch.ones(7, dtype=F64))
    with pytest.raises(ValueError, match=r"^err_root: expected shape \[nt, 5, V\]"):
        hybrid_covariance(cov, torch.ones(4, 5, 4, dtype=F64), 0.5, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"^cov: expected a LinearOperator or a tensor"):
        hybrid_covariance(torch.ones(2, 3, 5).tolist(), root, 0.5, 1.0, 1.0)
    got = hybrid_covariance(cov, root, 0.5, 2.0, torch.full((2, 3), 3.0, dtype=F64))
    want = 3.0 * (0.5 * 2.0 * cov.to_dense() + 0.5 * root @ root.mT)
    torch.testing.assert_close(got.to_dense(), want)


# -- fit_hybrid ------------------------------------------------------------------------------
def _validation(v=4, n=5):
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(v, 1, n, dtype=F64, generator=gen)
    truth = mean + 0.1 * torch.randn(v, 1, n, dtype=F64, generator=gen)
    x = torch.linspace(0, 1, n, dtype=F64)
    mass = truth @ trapezoid_weights(x)

    def update(prior, idx):
        return conserve_slices(prior, x, mass[idx])

    return mean, _diag(v, 1, n=n), truth, update, torch.tensor([0.5], dtype=F64), x


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"betas": 0.5}, r"^betas: expected a sequence of weights in \[0, 1\]"),
        ({"betas": "0.5"}, r"^betas: expected a sequence of weights"),  # read per character
        ({"neighbours": 2}, r"^neighbours: expected a sequence of analog sizes"),
    ],
)
def test_fit_hybrid_names_a_single_number_where_a_sequence_is_expected(kw, match):
    # "'float' object is not iterable", naming no argument
    with pytest.raises(TypeError, match=match):
        fit_hybrid(*_validation(), **kw)


def test_fit_hybrid_checks_the_covariance_by_name():
    mean, cov, truth, update, t, x = _validation()
    with pytest.raises(TypeError, match=r"^cov: expected a LinearOperator or a tensor"):
        fit_hybrid(mean, cov.diagonal().tolist(), truth, update, t, x)  # no attribute 'shape'
    cal = fit_hybrid(mean, cov, truth, update, t, x, betas=[0.5, 1.0], neighbours=[0])
    assert cal.beta in (0.5, 1.0) and set(cal.cv_mse) == {(0, 0.5), (0, 1.0)}
