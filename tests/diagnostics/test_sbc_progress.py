"""run_sbc / simulate_and_infer show a progress bar over the user's inferences (stderr), and
none with progress=False."""

from __future__ import annotations

import pytest

from bayesphys.diagnostics import CoreFamily, run_sbc
from bayesphys.diagnostics.simulate import simulate_and_infer


def test_run_sbc_shows_progress_on_stderr(capsys):
    fam = CoreFamily()
    res = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=4, seed=0)
    cap = capsys.readouterr()
    assert "SBC infer" in cap.err and "/3" in cap.err
    assert "SBC infer" not in cap.out
    assert tuple(res.ranks.shape)[0] == 3


def test_progress_false_is_silent(capsys):
    fam = CoreFamily()
    a = run_sbc(
        fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=4, seed=0, progress=False
    )
    assert capsys.readouterr().err == ""
    b = simulate_and_infer(
        fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=4, seed=0, progress=False
    )
    assert capsys.readouterr().err == ""
    # the bar draws nothing from the streams: the same ranks and draws with it on
    shown = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=4, seed=0)
    assert a.ranks.equal(shown.ranks)
    c = simulate_and_infer(fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=4, seed=0)
    assert b.truth.equal(c.truth) and b.draws.equal(c.draws)


def test_progress_must_be_a_bool():
    fam = CoreFamily()
    with pytest.raises(TypeError, match="progress"):
        simulate_and_infer(fam.simulate, fam.infer, n_sims=3, n_draws=4, progress="no")


def test_fit_recalibration_shows_progress_over_its_inferences(capsys):
    # its n_fit + n_eval inferences ran without a bar, though run_sbc's show one
    from bayesphys.diagnostics import fit_recalibration

    fam = CoreFamily(inflate=0.5)
    shown = fit_recalibration(fam.simulate, fam.infer, n_fit=4, n_eval=3, seed=0)
    cap = capsys.readouterr()
    assert "recalibration infer" in cap.err and "7/7" in cap.err
    assert "recalibration infer" not in cap.out
    silent = fit_recalibration(fam.simulate, fam.infer, n_fit=4, n_eval=3, seed=0, progress=False)
    assert capsys.readouterr().err == ""
    # the bar draws nothing from the streams: the same fit with it on
    assert silent.scale == shown.scale and silent.heldout == shown.heldout


def test_fit_recalibration_progress_must_be_a_bool():
    from bayesphys.diagnostics import fit_recalibration

    fam = CoreFamily()
    with pytest.raises(TypeError, match=r"^progress: expected True or False, received str"):
        fit_recalibration(fam.simulate, fam.infer, n_fit=2, n_eval=2, progress="no")
