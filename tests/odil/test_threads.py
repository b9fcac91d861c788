"""Fits in several threads at once give the values of fits run one after the other.

PyTorch keeps forward-mode AD levels in one process-wide list: before the lock in
``bayesphys/odil/_forward_mode.py``, glioma fits in four threads failed in three
("no level exists", shape mismatches) and the fourth could come out different."""

from __future__ import annotations

import pytest
import torch

from bayesphys.odil import DiscreteProblem, GliomaModel, minimize
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from tests.thread_checks import in_threads


def _glioma_fit(patient) -> torch.Tensor:
    model = GliomaModel.from_patient(patient)
    model.fit(steps=6, grid=2, progress=False)
    return model.theta.clone()


# the fits are a few steps long, short of a minimum, where the Laplace covariance warns; the
# test compares threaded fits with sequential ones, not their quality
@pytest.mark.filterwarnings("ignore:laplace_covariance. the exact Hessian of the loss at the")
def test_glioma_fits_in_four_threads_match_fits_one_after_another():
    phantom = brain_phantom(32, 4.0)
    patients = [synthetic_patient(s, phantom=phantom) for s in (1, 2, 3, 4)]
    alone = [_glioma_fit(p) for p in patients]
    together = in_threads(_glioma_fit, patients)
    for a, t in zip(alone, together):
        assert isinstance(t, torch.Tensor), t
        assert torch.equal(a, t)


def _dense_gn(scale: float) -> torch.Tensor:
    # a 40-unknown nonlinear least-squares problem solved with dense forward-mode Jacobians
    target = torch.linspace(0.0, scale, 40, dtype=torch.float64)

    def res(fields, params):
        u = fields["u"]
        return {"data": u + 0.1 * u**3 - target, "smooth": 0.5 * torch.diff(u)}

    prob = DiscreteProblem({"u": (40,)}, {}, res)
    x, _ = minimize(prob, method="lm", steps=8, linear_solver="dense")
    return x


def test_dense_jacobian_solves_in_threads_match_solves_one_after_another():
    scales = [1.0, 2.0, 3.0, 4.0]
    alone = [_dense_gn(s) for s in scales]
    for _ in range(3):  # the race needs the threads' forward passes to overlap
        together = in_threads(_dense_gn, scales)
        for a, t in zip(alone, together):
            assert isinstance(t, torch.Tensor), t
            assert torch.equal(a, t)


def test_the_forward_mode_lock_is_reentrant():
    """A caller holding the lock (a nested fit) does not deadlock: run in a daemon thread, so
    that a lock that is not reentrant fails the test after 30 s instead of hanging it."""
    import threading

    from bayesphys.odil._forward_mode import FORWARD_MODE_LOCK, jacfwd

    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    out = []

    def nested() -> None:
        with FORWARD_MODE_LOCK:
            out.append(jacfwd(lambda v: v**2, x))

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    t.join(30)
    assert out, "jacfwd waited for the lock its own thread held"
    assert torch.equal(out[0], torch.diag(2 * x))


def test_nuts_runs_in_two_threads_match_runs_one_after_another():
    """pyro's effect-handler stack is process-wide: the second of two NUTS runs started together
    failed ("cannot install a Messenger instance twice")."""
    from bayesphys.odil.nuts import nuts_reference

    model = GliomaModel.from_patient(synthetic_patient(1, phantom=brain_phantom(32, 4.0)))
    model.fit(steps=4, grid=1, progress=False)

    def run(seed: int) -> torch.Tensor:
        return nuts_reference(model, num_samples=3, warmup_steps=3, seed=seed, progress=False)[0]

    alone = [run(s) for s in (0, 1)]
    together = in_threads(run, [0, 1])
    for a, t in zip(alone, together):
        assert isinstance(t, torch.Tensor), t
        assert torch.equal(a, t)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
