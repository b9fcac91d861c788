"""Bad input met at the public entry points (a table-driven sweep): clear errors, named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.metrics import mse, relative_l2


def test_relative_l2_of_a_zero_truth_is_inf_or_zero():
    assert torch.isinf(relative_l2(torch.ones(3), torch.zeros(3)))  # 1.5e38 before
    assert float(relative_l2(torch.zeros(3), torch.zeros(3))) == 0.0
    got = relative_l2(torch.ones(2, 3), torch.ones(2, 3) * 2, dim=1)
    assert torch.allclose(got, torch.full((2,), 0.5))


@pytest.mark.parametrize("fn", [relative_l2, mse])
def test_reductions_check_dims_and_emptiness(fn):
    with pytest.raises(ValueError, match=r"^dim: expected an int or a tuple of ints in \[-1, 0\]"):
        fn(torch.ones(3), torch.ones(3), dim=3)  # a raw IndexError before
    with pytest.raises(ValueError, match="at least one element"):
        fn(torch.zeros(0), torch.zeros(0))  # 0.0 / NaN before


def test_gaussian_posterior_needs_a_non_empty_mean():
    with pytest.raises(ValueError, match=r"mean: expected at least one dimension.*reshape\(1\)"):
        GaussianPosterior(torch.tensor(0.0), torch.eye(1))
    with pytest.raises(ValueError, match="at least one dimension and one element"):
        GaussianPosterior(torch.zeros(0), torch.zeros(0, 0))


def test_conservation_update_needs_constraint_rows():
    from bayesphys.probconserv import conservation_update

    prior = GaussianPosterior(
        torch.zeros(5, dtype=torch.float64), torch.eye(5, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match=r"^G: expected constraint rows"):
        conservation_update(prior, torch.tensor(1.0), 1.0)  # IndexError before
    with pytest.raises(ValueError, match=r"^G: expected constraint rows"):
        conservation_update(prior, torch.zeros(0, 5), 1.0)  # the prior back before


def test_misspelt_settings_suggest_the_name():
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.neural_process import RandomGridNP

    with pytest.raises(TypeError, match=r"^hiden: unknown setting \(did you mean 'hidden'\?\)"):
        RandomGridNP("poisson", hiden=3)
    with pytest.raises(ValueError, match=r"^problem: .*did you mean 'poisson1d-low'\?"):
        GPPDESolver("poisson1d_low")  # named "name:" before


def test_numpy_populations_are_a_type_error():
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map

    m = MetaFlowMatching(linear_map(n_train=2, n_cal=1, n_test=1, seed=0), seed=0)
    with pytest.raises(TypeError, match=r"received numpy.ndarray \(convert it with torch"):
        m.predict(np.zeros((20, 2)))


def test_not_a_checkpoint_file(tmp_path):
    from bayesphys.probconserv import ProbConserv

    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a bayesphys checkpoint") as info:
        ProbConserv.load(path)
    assert "weights_only=False" not in str(info.value)


def test_fit_many_out_is_a_folder(tmp_path):
    from bayesphys.distributed import fit_many

    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="^out: expected a folder"):
        fit_many([0], lambda p: None, out=a_file)


def test_probconserv_times_are_one_dimensional():
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    data = make_dataset("stefan", params=[0.6], seed=0)
    model = ProbConserv("stefan", step1="gp", seed=0, batch_size=1)
    model.steps_done = 1  # the times are checked whatever the training (no untrained warning)
    with pytest.raises(ValueError, match=r"^t: expected a number or a 1-D tensor"):
        model.posterior(data, t=torch.full((2, 2), 0.05))


class _Custom:  # an object a weights-only load refuses
    pass


def test_checkpoint_messages_tell_files_apart(tmp_path):
    from bayesphys.probconserv import ProbConserv

    text = tmp_path / "hello.pt"
    text.write_text("hello")  # a KeyError inside torch before
    with pytest.raises(ValueError, match="is not a bayesphys checkpoint"):
        ProbConserv.load(text)

    legacy = tmp_path / "legacy.pt"  # torch's pre-zip format is still a torch file
    torch.save(
        {"kind": "probconserv", "x": _Custom()}, legacy, _use_new_zipfile_serialization=False
    )
    with pytest.raises(ValueError, match="weights_only=False") as info:
        ProbConserv.load(legacy)
    assert "not a bayesphys checkpoint" not in str(info.value)


def test_dims_as_torch_takes_them():
    x = torch.ones(2, 3)
    assert torch.equal(relative_l2(x, 2 * x, dim=np.int64(1)), torch.full((2,), 0.5))
    assert torch.equal(mse(x, 2 * x, dim=(np.int64(0), -1)), torch.tensor(1.0))
    assert float(relative_l2(torch.tensor(1.0), torch.tensor(2.0), dim=-1)) == 0.5
    with pytest.raises(ValueError, match="^dim: expected an int or a tuple of ints"):
        mse(x, x, dim="rows")


def test_tensor_features_repr_and_user_problem_pickle():
    import dataclasses
    import pickle

    from bayesphys.problems.gp_pde import PROBLEMS, get_problem
    from bayesphys.problems.populations import linear_map

    d = linear_map(n_train=2, n_cal=1, n_test=1, seed=0)
    d.source_features = torch.zeros(len(d.source), 5, 3)  # a tensor is accepted as features
    assert "features=3" in repr(d)
    mine = dataclasses.replace(get_problem("poisson1d-low"), name="mine-test")
    PROBLEMS["mine-test"] = mine
    try:
        assert pickle.loads(pickle.dumps(mine)) is mine  # by name, as registered() saves it
    finally:
        del PROBLEMS["mine-test"]


def test_did_you_mean():
    from bayesphys._checks import did_you_mean

    assert did_you_mean("GP", ("anp", "gp")) == " (did you mean 'gp'?)"  # case
    assert did_you_mean("poisson1d_low", ["poisson1d-low"]) == " (did you mean 'poisson1d-low'?)"
    assert did_you_mean("lowrnak", ("diag", "lowrank")) == " (did you mean 'lowrank'?)"
    assert did_you_mean("zzz", ("diag", "lowrank")) == "" and did_you_mean(3, ("a",)) == ""


def test_choice_arguments_suggest_the_closest():
    from bayesphys.probconserv import ProbConserv

    with pytest.raises(ValueError, match=r"^step1: .*received 'GP' \(did you mean 'gp'\?\)$"):
        ProbConserv("stefan", step1="GP")
    with pytest.raises(ValueError, match=r"did you mean 'lowrank'\?"):
        ProbConserv("stefan", covariance="low-rank")
