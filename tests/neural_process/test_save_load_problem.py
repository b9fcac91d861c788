"""RandomGridNP.save/load keeps a customised problem instance."""

from bayesphys.neural_process import RandomGridNP
from bayesphys.problems.rgnp import PoissonProblem
from tests.tiny_models import tiny_rgnp as tiny


def test_save_load_keeps_a_customised_problem(tmp_path):
    # a problem instance with its own prior box and noise level must survive save/load:
    # the prior drives every training batch after loading, sigma_y the default data noise
    prob = PoissonProblem(z_low=(-2.0,) * 5, z_high=(2.0,) * 5, sigma_y=0.2)
    a = tiny(prob)
    a.fit(steps=1, progress=False)
    back = RandomGridNP.load(a.save(tmp_path / "custom.pt"))
    assert back.problem == prob
    assert (
        a.fit(steps=2, progress=False).loss_history
        == back.fit(steps=2, progress=False).loss_history
    )


def test_save_refuses_a_problem_subclass_that_load_would_lose(tmp_path):
    import dataclasses

    import pytest

    @dataclasses.dataclass(frozen=True)
    class ShiftedPoisson(PoissonProblem):
        def residual(self, x, derivs, z, w):
            return super().residual(x, derivs, z, w) - 5.0

    m = tiny(ShiftedPoisson())
    # it came back as a PoissonProblem, its residual silently the base class's
    with pytest.raises(ValueError, match=r"^problem: a ShiftedPoisson cannot be saved"):
        m.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_an_unknown_problem_names_the_instances_too():
    import pytest

    with pytest.raises(ValueError, match=r"or a PoissonProblem / BurgersProblem instance"):
        RandomGridNP(object())
