"""A population's prediction does not depend on the other populations of the predict call.

dopri5 integrated the populations of one size in one ``odeint`` call, whose one adaptive
step size follows the error norm of the whole batch: a population alone and the same
population beside two others of its size differed by 2e-4. rk4 moved by the round-off of
the batch's matrix products where the BLAS rounds a row by its place in the batch (here
3e-8 on MKL's AVX-512 kernels, 2.4e-7 on its AVX2 ones; 9.5e-7 on the B2 benchmark's
populations). Each population is now
integrated on its own by default; ``batch=True`` keeps the batched solve.
"""

from __future__ import annotations

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, _predict
from bayesphys.meta_fm._predict import integration_batches
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def fitted():
    # three test populations of 23 points: one size, so they shared one batch; subsampled
    # to 16 by the embedding (each through its own generator). Of the sizes tried (16 to
    # 100 points), 23 and 20 made MKL round a batch's rows differently from a lone one
    d = linear_map(n_train=4, n_cal=0, n_test=3, n_points=23, seed=0)
    m = MetaFlowMatching(d, **TINY_MFM, seed=0)
    m.fit(steps=3, progress=False)
    return m, list(d.subset("test").source)


@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_a_population_predicts_the_same_alone_beside_others_and_in_any_order(fitted, solver):
    if solver == "dopri5":
        pytest.importorskip("torchdiffeq")
    m, pops = fitted
    pops = [*pops, *(q[:20] for q in pops)]  # two sizes, three populations each
    alone = [m.predict([q], solver=solver, seed=0)[0] for q in pops]
    together = m.predict(pops, solver=solver, seed=0)
    reversed_ = m.predict(pops[::-1], solver=solver, seed=0)[::-1]
    pair = m.predict([pops[2], pops[0]], solver=solver, seed=0)
    for i, a in enumerate(alone):
        assert torch.equal(together[i], a), (solver, i, (together[i] - a).abs().max())
        assert torch.equal(reversed_[i], a), (solver, i, (reversed_[i] - a).abs().max())
    assert torch.equal(pair[0], alone[2]) and torch.equal(pair[1], alone[0])
    # the populations differ, and so do their predictions (no copy of one result)
    assert not torch.equal(alone[0], alone[1])


def test_batch_true_integrates_each_size_group_in_one_solve(fitted, monkeypatch):
    """Counted by the solves' leading sizes: one per population by default, one per size
    group (cut by chunk) with ``batch=True``; the batched rk4 result stays within round-off
    of the lone ones."""
    m, pops = fitted
    pops = [*pops, pops[1][:20]]  # three of 23 points and one of 20
    seen = _solve_sizes(monkeypatch)
    alone = m.predict(pops, solver="rk4")
    assert seen == [1, 1, 1, 1]
    seen.clear()
    batched = m.predict(pops, solver="rk4", batch=True)
    assert seen == [3, 1]
    seen.clear()
    m.predict(pops, solver="rk4", batch=True, chunk=50)  # two of 23 points per solve
    assert seen == [2, 1, 1]
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_integration_batches():
    sizes = (10, 7, 10, 10, 7)
    assert integration_batches(sizes, 65536, False) == [[0], [1], [2], [3], [4]]
    assert integration_batches(sizes, 65536, True) == [[0, 2, 3], [1, 4]]
    assert integration_batches(sizes, 20, True) == [[0, 2], [3], [1, 4]]
    assert integration_batches(sizes, 5, True) == [[0], [2], [3], [1], [4]]


def test_batch_must_be_a_bool(fitted):
    m, pops = fitted
    with pytest.raises(TypeError, match="^batch: expected True or False, received str 'yes'"):
        m.predict(pops, batch="yes")


def _solve_sizes(monkeypatch) -> list[int]:
    """The leading size of every ODE solve from now on (one per population alone, one per
    batch with ``batch=True``)."""
    seen: list[int] = []
    real = _predict.integrate

    def counting(f, x0, **kw):
        seen.append(x0.shape[0])
        return real(f, x0, **kw)

    monkeypatch.setattr(_predict, "integrate", counting)
    return seen


def test_posterior_passes_batch_to_its_predictions(fitted, monkeypatch):
    """``posterior`` integrated each population on its own whatever the caller needed;
    ``batch=True`` now gives the draws of ``predict(batch=True)``, one solve a draw, and the
    default stays the lone-population draws."""
    m, pops = fitted
    seen = _solve_sizes(monkeypatch)
    default = m.posterior(pops, num_samples=2, seed=3).draws  # [1, K, P, n, d]
    assert seen == [1] * 6
    seen.clear()
    batched = m.posterior(pops, num_samples=2, seed=3, batch=True).draws
    assert seen == [3, 3] and batched.shape == default.shape == (1, 2, 3, 23, 2)
    for k in range(2):
        lone = torch.stack(m.predict(pops, seed=3 + k))
        together = torch.stack(m.predict(pops, seed=3 + k, batch=True))
        assert torch.equal(default[0, k], lone) and torch.equal(batched[0, k], together)
    with pytest.raises(TypeError, match="^batch: expected True or False, received str 'yes'"):
        m.posterior(pops, batch="yes")


def test_ensemble_posterior_passes_batch_to_its_members(fitted, monkeypatch):
    from bayesphys.meta_fm import MFMEnsemble

    m, pops = fitted
    other = MetaFlowMatching(m.data, **TINY_MFM, seed=1)
    other.fit(steps=3, progress=False)
    ens = MFMEnsemble(models=[m, other])
    seen = _solve_sizes(monkeypatch)
    default = ens.posterior(pops, num_samples=2, seed=3).draws  # [M, K, P, n, d]
    assert seen == [1] * 12
    seen.clear()
    batched = ens.posterior(pops, num_samples=2, seed=3, batch=True).draws
    assert seen == [3] * 4 and batched.shape == default.shape == (2, 2, 3, 23, 2)
    for j, member in enumerate(ens.models):
        for k in range(2):
            s = 3 + 2 * j + k  # member j's draw k
            lone = torch.stack(member.predict(pops, seed=s))
            together = torch.stack(member.predict(pops, seed=s, batch=True))
            assert torch.equal(default[j, k], lone) and torch.equal(batched[j, k], together)
    with pytest.raises(TypeError, match="^batch: expected True or False, received str 'yes'"):
        ens.posterior(pops, batch="yes")
