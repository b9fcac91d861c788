"""The calibration tools on a user's own simulator and inference function.

What the "bring your own model" review found, each checked to fail before its mend:

- ``fit_recalibration`` did not check what ``simulate`` returned, as ``run_sbc`` does: a
  triple failed with "too many values to unpack", a ``theta`` with too few problems with an
  ``IndexError`` in the last problem;
- an ``infer`` returning a posterior or draws of another shape was blamed on ``truths[i]``
  by ``fit_recalibration``, and draws with the draws axis last (``[*event, L]``) were refused
  by ``run_sbc`` as too few draws ("n_draws: expected at most ...");
- a summary name that the result cannot export (not a non-empty string, holding ``/``, or
  ``sbc_n_draws``) was refused only by ``CalibrationResult.to_inference_data``, after the
  ``N`` inferences;
- ``is_calibrated(row)`` (a calibration row in place of ``row["metrics"]``) said ``False``
  for every row, a calibrated one too.

And the closed forms a user checks first: a conjugate normal model's exact posterior (a
``GaussianPosterior`` or numpy draws) passes, an overconfident one is flagged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import fit_recalibration, is_calibrated, run_sbc
from bayesphys.inference_data import group_dataset

F64 = torch.float64
P, N_OBS, NOISE = 3, 5, 0.5


def simulate(n: int, *, seed: int):
    """theta ~ N(0, I_P), y_j = theta + 0.5 eps_j (j < 5), as numpy arrays (a user's own)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, P))
    return theta, theta[:, None, :] + NOISE * rng.normal(size=(n, N_OBS, P))


def exact(y) -> tuple[torch.Tensor, float]:
    """The conjugate posterior's mean [P] and variance (the same for every element)."""
    prec = 1.0 + N_OBS / NOISE**2
    return torch.as_tensor(y).sum(0) / NOISE**2 / prec, 1.0 / prec


def infer(y, sd_factor: float = 1.0) -> GaussianPosterior:
    m, v = exact(y)
    return GaussianPosterior(m, torch.eye(P, dtype=F64) * v * sd_factor**2)


class Counting:
    """``infer`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, y) -> GaussianPosterior:
        self.calls += 1
        return infer(y)


def test_conjugate_normal_exact_passes_and_overconfident_is_flagged():
    kw = dict(n_sims=200, n_draws=49, seed=0, progress=False)
    assert is_calibrated(run_sbc(simulate, infer, **kw).metrics())
    rng = np.random.default_rng(1)

    def numpy_draws(y):  # the exact posterior's draws [L', P] as a numpy array
        m, v = exact(y)
        return m.numpy() + np.sqrt(v) * rng.normal(size=(100, P))

    assert is_calibrated(run_sbc(simulate, numpy_draws, **kw).metrics())
    over = run_sbc(simulate, lambda y: infer(y, 0.5), **kw).metrics()
    assert not is_calibrated(over)
    assert over["coverage90"] < 0.75 and over["sbc_pvalue"] < 1e-6


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (lambda n, seed: (1, 2, 3), TypeError, r"simulate: expected simulate\(n, seed=\) to "),
        (
            lambda n, seed: simulate(n - 1, seed=seed),
            ValueError,
            r"^simulate: expected theta with leading dim 5, received \(4, 3\)",
        ),
    ],
)
def test_fit_recalibration_checks_what_simulate_returns(bad, error, match):
    count = Counting()
    with pytest.raises(error, match=match):
        fit_recalibration(bad, count, n_fit=5, n_eval=5, progress=False)
    assert count.calls == 0  # before any inference


def test_fit_recalibration_names_infer_for_a_posterior_of_another_shape():
    def wide(y):
        return GaussianPosterior(torch.zeros(P + 1, dtype=F64), torch.eye(P + 1, dtype=F64))

    with pytest.raises(ValueError, match=r"^infer \(fit problem 0\): expected a posterior over"):
        fit_recalibration(simulate, wide, n_fit=5, n_eval=5, progress=False)

    def transposed(y):  # draws [P, L]: the draws axis last
        return torch.randn(P, 40, dtype=F64)

    with pytest.raises(
        ValueError, match=r"^infer \(fit problem 0\): expected draws \[L, \*event\]"
    ):
        fit_recalibration(simulate, transposed, n_fit=5, n_eval=5, progress=False)


def test_run_sbc_names_the_shape_of_draws_with_the_draws_axis_last():
    def transposed(y):  # [P, 100] instead of [100, P]
        m, v = exact(y)
        return (m[:, None] + v**0.5 * torch.randn(P, 100, dtype=F64)).numpy()

    with pytest.raises(
        ValueError,
        match=r"^infer: expected posterior draws of the simulated object's shape \(3,\), "
        r"received draws \(3, 100\)",
    ):
        run_sbc(simulate, transposed, n_sims=10, n_draws=9, progress=False)


@pytest.mark.parametrize(
    "name, error, match",
    [
        (1, TypeError, r"summaries: expected non-empty strings as names, received \[1\]"),
        ("", TypeError, r"summaries: expected non-empty strings as names"),
        ("m/s", ValueError, r"summaries: expected names without '/'"),
        ("sbc_n_draws", ValueError, r"summaries: 'sbc_n_draws' is the name"),
    ],
)
def test_summary_names_the_export_cannot_take_are_refused_before_the_run(name, error, match):
    count = Counting()
    with pytest.raises(error, match=match):
        run_sbc(simulate, count, {name: lambda u: u[..., 0]}, n_sims=5, n_draws=9, progress=False)
    assert count.calls == 0
    # any other string exports as it is
    res = run_sbc(
        simulate, count, {"u(0) [m s]": lambda u: u[..., 0]}, n_sims=5, n_draws=9, progress=False
    )
    ranks = group_dataset(res.to_inference_data(), "prior_sbc")
    assert list(ranks.data_vars) == ["u(0) [m s]", "sbc_n_draws"]


def test_is_calibrated_refuses_a_row_in_place_of_its_metrics():
    from bayesphys.diagnostics import calibration_rows

    rows = calibration_rows(
        simulate, infer, n_sims=50, n_draws=19, problem="normal", method="exact"
    )
    assert is_calibrated(rows[0]["metrics"])
    # the row itself read as metrics without the keys: "not calibrated", without a word
    with pytest.raises(TypeError, match=r"received a calibration row .*pass row\['metrics'\]"):
        is_calibrated(rows[0])
    assert not is_calibrated({"coverage90": 0.9})  # metrics without a key stay False


def test_theta_as_a_list_of_one_array_per_problem_is_stacked_for_both_entry_points():
    """fit_recalibration took ``theta`` as a list of tensors (it indexed it), run_sbc failed
    on it with torch's "only one element tensors can be converted to Python scalars"."""

    def listed(n: int, *, seed: int):
        theta, y = simulate(n, seed=seed)
        return [torch.as_tensor(t) for t in theta], y

    res = run_sbc(listed, infer, n_sims=20, n_draws=9, progress=False)
    ref = run_sbc(simulate, infer, n_sims=20, n_draws=9, progress=False)
    assert torch.equal(res.ranks, ref.ranks)
    rec = fit_recalibration(listed, infer, n_fit=5, n_eval=5, progress=False)
    assert rec.scale == fit_recalibration(simulate, infer, n_fit=5, n_eval=5, progress=False).scale

    def ragged(n: int, *, seed: int):
        return [torch.zeros(P)] * (n - 1) + [torch.zeros(P + 1)], simulate(n, seed=seed)[1]

    with pytest.raises(ValueError, match=r"^simulate: expected theta \[n, \*event\], or n arrays"):
        run_sbc(ragged, infer, n_sims=5, n_draws=9, progress=False)
