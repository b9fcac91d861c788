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
