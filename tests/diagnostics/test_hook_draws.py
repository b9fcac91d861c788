"""The component calibration hooks draw fresh posterior noise for every simulated problem.

Re-seeding one generator with the same seed inside ``infer`` gave every problem the same
standard-normal draws; SBC then rejects even an exact posterior (the ranks of all problems come
from one fixed set of draws). These tests run each hook's ``infer`` on a stand-in model whose
posterior is the same N(0, I) for every problem: the draws must differ between problems. The
meta_fm hook's randomness is its ensemble's embedding subsample seeds: each problem must get its
own, and the same run seed must give the same record.
"""

import types

import torch

import bayesphys.diagnostics.calibrate as calibrate_mod
from bayesphys import GaussianPosterior
from bayesphys.diagnostics import CoreFamily
from bayesphys.diagnostics.result import analyse
from bayesphys.diagnostics.simulate import simulate_and_infer


def _capture(monkeypatch) -> dict:
    seen = {}

    def fake_rows(simulate, infer, summaries, **kw):
        seen.setdefault("infer", []).append(infer)
        return []

    monkeypatch.setattr(calibrate_mod, "calibration_rows", fake_rows)
    return seen


def _standard(n: int) -> GaussianPosterior:
    mean = torch.zeros(1, n, dtype=torch.float64)
    return GaussianPosterior(mean, torch.eye(n).double()[None], event_shape=(n,))


def test_neural_process_hook_draws_fresh_noise_per_problem(monkeypatch):
    import bayesphys.neural_process._calibration as hook
    import bayesphys.neural_process.model as np_model

    class Stand:
        device = torch.device("cpu")

        def __init__(self, *a, **k):
            pass

        def fit(self, *a, **k):
            return None

        def parameter_posterior(self, x, y, w):
            return _standard(5)

    monkeypatch.setattr(np_model, "RandomGridNP", Stand)
    monkeypatch.setattr(hook, "poisson_sensor_data", lambda *a, **k: None)
    seen = _capture(monkeypatch)
    hook.calibrate_rows(True, 0)
    infer = seen["infer"][0]
    d = {"x": None, "y": None, "w": None}
    a, b = infer(d), infer(d)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_probconserv_hook_draws_fresh_noise_per_problem(monkeypatch):
    import bayesphys.probconserv._calibration as hook
    import bayesphys.probconserv.model as pc_model

    class Stand:
        device = torch.device("cpu")
        var_scale = 1.0

        def __init__(self, problem, **k):
            self.problem = types.SimpleNamespace(grid=lambda n: torch.linspace(0, 1, n).double())

        def fit(self, *a, **k):
            return None

        def calibrate(self, *a, **k):
            return None

        def posterior(self, d, method):
            return _standard(201)

    monkeypatch.setattr(pc_model, "ProbConserv", Stand)
    seen = _capture(monkeypatch)
    hook.calibrate_rows(True, 0)
    assert len(seen["infer"]) == 2  # GP and ProbConserv-GP
    for infer in seen["infer"]:
        a, b = infer(None), infer(None)
        assert a.shape == b.shape and not torch.equal(a, b)


class _StandEnsemble:
    """Stands in for the meta_fm hook's trained ensemble: draw ``k`` is the source plus noise
    seeded with ``seed + k`` (as the real ensemble's embedding subsamples are), the same for
    every member; the seeds asked for are recorded."""

    def __init__(self, members: int):
        self.members, self.seeds = members, []

    def posterior(self, x, *, num_samples: int, seed: int):
        from bayesphys import SamplePosterior

        self.seeds.append(seed)
        src = x[0]
        draws = torch.stack(
            [
                src + torch.randn(src.shape, generator=torch.Generator().manual_seed(seed + k))
                for k in range(num_samples)
            ]
        )  # [num_samples, n, d]
        return SamplePosterior(draws[None, :, None].expand(self.members, -1, -1, -1, -1))


def _meta_fm_hook(monkeypatch, members: int = 2):
    import bayesphys.meta_fm._calibration as hook

    stand = _StandEnsemble(members)
    monkeypatch.setattr(hook, "_ensemble", lambda *a, **k: stand)
    return hook, stand


def test_meta_fm_hook_draws_fresh_subsamples_per_problem(monkeypatch):
    hook, stand = _meta_fm_hook(monkeypatch)
    seen = _capture(monkeypatch)
    hook.calibrate_rows(True, 0, n_draws=5, members=2)
    infer = seen["infer"][0]
    src = hook.simulate(1, seed=0)[1][0]
    a, b = infer(src), infer(src)  # the same data as two problems
    assert a.shape == b.shape == (5, 3) and not torch.equal(a, b)
    assert stand.seeds[0] != stand.seeds[1]


def test_meta_fm_hook_record_is_reproducible_and_seeds_differ_between_problems(monkeypatch):
    hook, stand = _meta_fm_hook(monkeypatch)
    kw = dict(n_sims=8, n_draws=5, members=2)

    def record(seed):
        stand.seeds.clear()
        res = hook.calibrate_rows(True, seed, **kw)[0]["result"]
        return res.record.draws, list(stand.seeds)

    first, seeds = record(0)
    again, seeds_again = record(0)
    other, _ = record(1)
    assert len(set(seeds[:8])) == 8  # the 8 problems of the run: no two share their subsamples
    assert seeds == seeds_again and torch.equal(first, again)
    assert not torch.equal(first, other)


def test_shared_draw_noise_fails_sbc_on_an_exact_posterior():
    # why the hooks must not re-seed: the same exact posterior passes with fresh noise per
    # problem and is rejected when every problem reuses one set of standard-normal draws
    fam = CoreFamily()

    def shared(y):
        return fam.infer(y).sample((99,), generator=torch.Generator().manual_seed(0))

    kw = dict(n_sims=300, n_draws=99, seed=1, field_levels=None)
    fresh = analyse(simulate_and_infer(fam.simulate, fam.infer, fam.summaries(), **kw))
    reused = analyse(simulate_and_infer(fam.simulate, shared, fam.summaries(), **kw))
    assert fresh.metrics()["sbc_pvalue"] > 0.01
    assert reused.metrics()["sbc_pvalue"] < 1e-6
