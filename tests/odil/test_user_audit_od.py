"""bayesphys.odil inputs found by a user-side audit (each test failed before its fix)."""

import math

import pytest
import torch

from bayesphys.odil import multifocal_initial_condition


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool])
def test_multifocal_initial_condition_names_complex_or_bool_foci(dtype):
    # failed inside torch.arange: '"arange_cpu" not implemented for ...'
    with pytest.raises(TypeError, match=r"^foci: expected real coordinates \(mm\)"):
        multifocal_initial_condition((4, 4), torch.ones(1, 2, dtype=dtype), 1.0)


def test_multifocal_initial_condition_refuses_nan_foci_given_as_numbers():
    # a NaN focus in a list gave a NaN initial state without a word
    with pytest.raises(ValueError, match=r"^foci: expected finite values"):
        multifocal_initial_condition((4, 4), [[math.nan, 1.0]], 1.0)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.bool])
def test_glioma_theta_names_a_complex_or_bool_tensor(model, dtype):
    # forward / loss failed inside torch.arange ('"arange_cpu" not implemented for ...'),
    # then named the foci, not the argument given
    theta = torch.ones(len(model.theta), dtype=dtype)
    with pytest.raises(TypeError, match=r"^theta: expected real values, received torch\."):
        model.forward(theta)


def test_glioma_theta_integer_tensor_reads_as_its_values(model):
    # an int64 theta built the initial state in torch's default dtype (float32 cell centres
    # from int coordinates): another map than the same values in the model's float64
    th = model._theta0().round()
    c_int = model.forward(th.long())
    assert c_int.dtype == model.dtype
    assert torch.equal(c_int, model.forward(th))


def test_glioma_full_takes_a_list(model):
    c = torch.rand(model.shape, dtype=model.dtype)
    out = model.full(c.tolist())  # AttributeError: 'list' object has no attribute 'shape'
    assert torch.equal(out, model.full(c))


def test_cg_refuses_a_non_finite_right_hand_side():
    from bayesphys.odil import cg

    a = 2.0 * torch.eye(3, dtype=torch.float64)
    b = torch.tensor([1.0, math.nan, 1.0], dtype=torch.float64)
    # ran all 500 iterations and returned (nan, nan, nan) with a NaN residual, silently
    with pytest.raises(ValueError, match=r"^b: expected finite values"):
        cg(lambda v: a @ v, b)
    with pytest.raises(ValueError, match=r"^x0: expected finite values"):
        cg(lambda v: a @ v, torch.ones(3, dtype=torch.float64), x0=b)
    x, _, rel = cg(lambda v: a @ v, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(x, torch.full((3,), 0.5, dtype=torch.float64)) and rel == 0.0


def test_complex_residuals_are_refused_by_name():
    from bayesphys.odil import DiscreteProblem, minimize

    y = torch.arange(4.0, dtype=torch.float64)

    def residuals(f, p):
        return {"d": (f["u"] - y).to(torch.complex128), "q": (p["a"] - 1).reshape(1)}

    prob = DiscreteProblem({"u": (4,)}, {"a": 0.5}, residuals)
    # LM with CG returned x0 unchanged ("max steps"), with a complex, negative "loss"
    with pytest.raises(TypeError, match=r"^residuals: expected real residuals, .* for 'd'"):
        minimize(prob, steps=3)
    with pytest.raises(TypeError, match=r"^residuals: expected real residuals"):
        prob.loss(prob.initial())


def test_sparse_schur_covariance_names_a_singular_complement_and_a_dense_jacobian():
    import numpy as np
    import scipy.sparse as sp

    from bayesphys.odil import sparse_normal_solve, sparse_schur_covariance

    jac = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))  # column 2 untouched
    # numpy's bare LinAlgError: Singular matrix
    with pytest.raises(ValueError, match=r"^t_idx: the Schur complement .* \[2\] is singular"):
        sparse_schur_covariance(jac, torch.tensor([2]))
    assert sparse_schur_covariance(jac, torch.tensor([1])).item() == 1.0
    # AttributeError: 'numpy.ndarray' object has no attribute 'tocsr'
    with pytest.raises(TypeError, match=r"^jac: expected a 2-D SciPy sparse matrix"):
        sparse_normal_solve(jac.toarray(), torch.ones(2, dtype=torch.float64), 0.1)
    with pytest.raises(TypeError, match=r"^jac: expected a 2-D SciPy sparse matrix"):
        sparse_schur_covariance(jac.toarray(), torch.tensor([1]))


def test_gn_matvec_names_a_vector_of_another_length():
    from bayesphys.odil import DiscreteProblem, gn_matvec

    y = torch.arange(4.0, dtype=torch.float64)
    prob = DiscreteProblem({"u": (4,)}, {"a": 0.5}, lambda f, p: {"d": f["u"] - p["a"] * y})
    mv = gn_matvec(prob, prob.initial())
    # autograd's "Mismatch in shape: grad_output[0] has a shape of ..."
    with pytest.raises(ValueError, match=r"^v: expected \[5\] or \[k, 5\], received \(3,\)"):
        mv(torch.ones(3, dtype=torch.float64))
    v = torch.ones(5, dtype=torch.float64)
    assert torch.equal(mv(v.tolist()), mv(v))  # a list: AttributeError before
    assert torch.equal(mv(torch.stack([v, v]))[1], mv(v))


def test_kmeans_foci_refuses_complex_points():
    from bayesphys.odil import kmeans_foci

    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], dtype=torch.complex128)
    # the imaginary part was dropped with only a ComplexWarning
    with pytest.raises(TypeError, match=r"^points: expected real values"):
        kmeans_foci(pts + 1j, 2)


def test_unpack_and_to_plain_take_a_list():
    from bayesphys.odil import DiscreteProblem

    prob = DiscreteProblem(
        {"u": (4,)}, {"a": 0.5}, lambda f, p: {"d": f["u"] - p["a"]}, multigrid={"u": 2}
    )
    x = torch.linspace(0.0, 1.0, prob.n, dtype=torch.float64)
    fields, params = prob.unpack(x.tolist())  # AttributeError: 'list' has no 'shape'
    assert torch.equal(fields["u"], prob.unpack(x)[0]["u"])
    assert torch.equal(params["a"], prob.unpack(x)[1]["a"])
    assert torch.equal(prob.to_plain(x.tolist()), prob.to_plain(x))
