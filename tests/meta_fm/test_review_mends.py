"""Defects the meta_fm review found (each test fails on the code before).

- a float ``source_id`` was truncated by ``int(i)``: CGFM merged populations 0.0 .. 0.5 into
  one one-hot; a 2-D ``treatment`` passed the check and failed later with a wrong message;
- ``letters(dtype=None)`` crashed (float64 glyphs against a float32 angle) and
  ``patient_screen(dtype=None)`` gave int64 cell-type features;
- ``conformal_coverage`` reported coverage 1 with an infinite radius and no word of it;
- ``sample_plan_partners`` listed int8 / uint8 rows as accepted but could not index with them;
- ``integrate`` returned NaN points from a diverged field;
- a step that raised still counted in ``steps_done``.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.meta_fm.coupling import full_ot_plans, sample_plan_partners
from bayesphys.meta_fm.evaluation import conformal_coverage
from bayesphys.meta_fm.sampling import integrate
from bayesphys.problems.populations import letters, linear_map, patient_screen
from tests.tiny_models import TINY_MFM

KW = TINY_MFM  # the shared tiny settings (fits in ms)


def _data():
    return linear_map(n_train=6, n_cal=4, n_test=4, n_points=24)


def test_source_ids_must_be_integers_and_treatments_one_per_pair():
    d = _data()
    fl = dataclasses.replace(d, source_id=torch.arange(len(d.source)).double() / 10)
    with pytest.raises(ValueError, match="source_id: expected integer ids, received dtype"):
        MetaFlowMatching(fl, method="CGFM", **KW)
    s = patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3)
    two = dataclasses.replace(s, treatment=torch.as_tensor(s.treatment)[:, None].repeat(1, 2))
    with pytest.raises(ValueError, match=r"treatment: expected one index per pair, shape"):
        MetaFlowMatching(two, method="FM", **KW)


def test_population_generators_keep_float64_with_dtype_none():
    b1 = letters(rotations=1, dtype=None)
    assert b1.source[0].dtype == torch.float64 and b1.target[0].dtype == torch.float64
    s = patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dtype=None)
    assert s.source[0].dtype == s.source_features[0].dtype == torch.float64
    s32 = patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24)
    assert s32.source_features[0].dtype == torch.float32


def test_conformal_coverage_warns_when_the_radius_is_infinite():
    with pytest.warns(UserWarning, match="radius is infinite and the coverage 1 is vacuous"):
        r, c = conformal_coverage([0.1, 0.2], [0.5, 5.0], alpha=0.1)
    assert r == float("inf") and c == 1.0
    r, c = conformal_coverage(torch.arange(1.0, 10.0).tolist(), [0.5, 50.0], alpha=0.1)
    assert r == 9.0 and c == 0.5


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8, torch.int32])
def test_plan_partners_accept_every_listed_index_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    plan = full_ot_plans([a], [b])[0]
    rows = torch.tensor([0, 3, 4, 1])
    want = sample_plan_partners(plan, rows, torch.Generator().manual_seed(1))
    got = sample_plan_partners(plan, rows.to(dtype), torch.Generator().manual_seed(1))
    assert torch.equal(got, want)


def test_integrate_refuses_a_non_finite_result():
    x0 = torch.ones(3, 2)

    def blows_up(t, x):
        return torch.where(t > 0.5, torch.full_like(x, float("inf")), x)

    with pytest.raises(ValueError, match=r"3 points became NaN/Inf \(rk4 with 4 steps\)"):
        integrate(blows_up, x0, method="rk4", steps=4)
    out = integrate(lambda t, x: -x, x0, method="rk4", steps=20)
    torch.testing.assert_close(out, x0 * torch.exp(torch.tensor(-1.0)), rtol=1e-5, atol=0)


def test_a_step_that_raises_is_not_counted():
    m = MetaFlowMatching(_data(), method="MFM", seed=0, **KW)
    m.fit(steps=2, progress=False)
    assert m.steps_done == 2
    calls = {"n": 0}
    orig = m._loss

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a bug")
        return orig(*a, **k)

    m._loss = failing
    with pytest.raises(RuntimeError, match="a bug"):
        m.fit(steps=3, progress=False)
    assert m.steps_done == 3  # two before, one completed step, not the one that raised


def test_a_step_with_a_non_finite_loss_is_not_counted():
    m = MetaFlowMatching(_data(), method="MFM", seed=0, **KW)
    calls = {"n": 0}
    orig = m._loss

    def nan_third(*a, **k):
        calls["n"] += 1
        loss = orig(*a, **k)
        return loss * float("nan") if calls["n"] == 3 else loss

    m._loss = nan_third
    res = m.fit(steps=5, progress=False)
    assert res.message.startswith("diverged") and res.steps == 2
    # the restored weights carry one update (those whose loss was last seen finite): counted
    # so (3 before: the diverged step too; then 2: the last finite step's update, undone)
    assert m.steps_done == 1
    one = MetaFlowMatching(_data(), method="MFM", seed=0, **KW)
    one.fit(steps=1, progress=False)
    for a, b in zip(m.net.parameters(), one.net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_interrupted_ensemble_fit_names_the_member_and_its_posterior_warns():
    from bayesphys.meta_fm import MFMEnsemble

    data = _data()
    ens = MFMEnsemble(data, members=3, seed=0, method="MFM", **KW)
    orig = ens.models[1]._loss

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    ens.models[1]._loss = interrupt
    with pytest.raises(KeyboardInterrupt) as info:
        ens.fit(steps=2, progress=False)
    notes = getattr(info.value, "__notes__", [])
    assert any("member 1 of 3 failed; members 0..0 were fitted" in n for n in notes)
    assert [m.steps_done for m in ens.models] == [2, 0, 0]
    with pytest.warns(RuntimeWarning, match=r"different numbers of steps \[2, 0, 0\]"):
        ens.posterior(data.source[:1])
    ens.models[1]._loss = orig
    ens.fit(steps=2, progress=False)  # members 1 and 2 first catch up with member 0
    assert [m.steps_done for m in ens.models] == [4, 4, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ens.posterior(data.source[:1])
