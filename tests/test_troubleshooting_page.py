"""docs/troubleshooting.md quotes the package's messages: every ``**Message:** `...` `` line of
the page is produced by the code (the triggers below), and every trigger's message is on the
page, so an entry cannot outlive the message it explains."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import bayesphys as bp
from bayesphys.distributed import fit_many
from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.neural_process import RandomGridNP
from bayesphys.probconserv import conservation_update
from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM

PAGE = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
F64 = torch.float64


def _message(fn) -> str:
    """The text of what ``fn()`` raises or warns, or the ``message`` of what it returns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn()
        except Exception as err:  # the message is what is tested
            return str(err)
    if caught:
        return " | ".join(str(w.message) for w in caught)
    return str(getattr(out, "message", out))


def _cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return _message(lambda: bp.resolve_device("cuda"))


def _diverged(monkeypatch, tmp_path):
    x = torch.nn.Parameter(torch.tensor(1.0))
    opt = torch.optim.SGD([x], lr=0.1)

    def step():
        opt.zero_grad()
        loss = (x * float("nan")) ** 2
        loss.backward()
        opt.step()
        return loss

    return _message(lambda: bp.optimize(step, steps=3, params=[x], progress=False))


def _untrained(monkeypatch, tmp_path):
    data = linear_map(n_train=2, n_cal=0, n_test=1, n_points=20, seed=0)
    model = MetaFlowMatching(data, **TINY_MFM, seed=0)
    return _message(lambda: model.posterior(data.subset("test").source))


def _not_finite(monkeypatch, tmp_path):
    return _message(lambda: bp.GaussianPosterior(torch.tensor([0.0, float("nan")]), torch.eye(2)))


def _jitter(monkeypatch, tmp_path):
    post = bp.GaussianPosterior(torch.zeros(3, dtype=F64), torch.ones(3, 3, dtype=F64))
    return _message(lambda: post.log_prob(torch.zeros(3, dtype=F64)))


def _singular_limit(monkeypatch, tmp_path):
    cov = torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    post = bp.GaussianPosterior(torch.zeros(3, dtype=F64), cov)
    g = torch.tensor([[0.0, 1.0, 1.0]], dtype=F64)
    return _message(lambda: conservation_update(post, g, torch.tensor([1.0], dtype=F64)))


def _not_a_checkpoint(monkeypatch, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"hello")
    return _message(lambda: bp.load_checkpoint(path, kind="gp"))


def _truncated(monkeypatch, tmp_path):
    good = bp.save_checkpoint(tmp_path / "a.pt", kind="gp", config={}, state={"w": torch.ones(2)})
    raw = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    return _message(lambda: bp.load_checkpoint(tmp_path / "cut.pt", kind="gp"))


def _other_kind(monkeypatch, tmp_path):
    prob = linear_gaussian_problem(seed=0)
    model = ConjugateGaussianField(prob["x"], prob["idx"], prob["y"], noise=0.1)
    model.save(tmp_path / "m.pt")
    return _message(lambda: RandomGridNP.load(tmp_path / "m.pt"))


def _too_large(monkeypatch, tmp_path):
    from bayesphys import _checks

    monkeypatch.setattr(_checks, "_host_memory", lambda: 1_000_000)  # a 1 MB machine
    x = torch.zeros(200, 1)
    return _message(lambda: bp.metrics.wasserstein(x, x))


def _executor(monkeypatch, tmp_path):
    prob = linear_gaussian_problem(seed=0)
    return _message(lambda: fit_many([prob], lambda p: None, executor="spark"))


def _engine_missing(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    prob = linear_gaussian_problem(seed=0)
    return _message(lambda: fit_many([prob], lambda p: None, executor="ray"))


def _untrained_treatment(monkeypatch, tmp_path):
    from bayesphys.problems.populations import PopulationPairs

    g = torch.Generator().manual_seed(0)
    src = [torch.randn(20, 2, generator=g) for _ in range(2)]
    data = PopulationPairs(
        name="screen",
        source=src * 2,
        target=[s + 1.0 for s in src] * 2,
        source_id=torch.tensor([0, 1, 0, 1]),
        splits={"train": [0, 1], "test": [2, 3]},  # treatment 1 held out of training
        paired=False,
        treatment=torch.tensor([0, 0, 1, 1]),
        num_treatments=2,
    )
    model = MetaFlowMatching(data, **TINY_MFM, seed=0)
    model.fit(steps=1, progress=False)
    return _message(lambda: model.predict(src, [1, 1]))


def _lesion_at_edge(monkeypatch, tmp_path):
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    cut = slice(0, int(torch.nonzero(p["labels"] > 0)[:, 0].min()) + 1)  # through the lesion
    return _message(
        lambda: GliomaModel(
            p["wm"][cut], p["gm"][cut], p["labels"][cut], spacing=8.0, th_up=0.6, th_down=0.3
        )
    )


def _problems_failed(monkeypatch, tmp_path):
    def build(problem):
        raise ValueError("this problem is broken")

    prob = linear_gaussian_problem(seed=0)
    return _message(lambda: fit_many([prob], build, executor="sequential", progress=False))


TRIGGERS = {
    "device: cuda was requested but CUDA is not available here": _cuda,
    "diverged at step": _diverged,
    "the model has not been trained (0 steps)": _untrained,
    "expected finite values": _not_finite,
    "of memory, more than the": _too_large,
    "singular to working precision": _jitter,
    "singular in the limit sigma_g = 0": _singular_limit,
    "is not a bayesphys checkpoint": _not_a_checkpoint,
    "the file may be corrupt, truncated": _truncated,
    "checkpoint, received": _other_kind,
    "executor: expected one of": _executor,
    "executor='ray' needs 'ray', which is not installed": _engine_missing,
    "never occurred in the training pairs": _untrained_treatment,
    "the lesion reaches the edge of the scan": _lesion_at_edge,
    "problems failed": _problems_failed,
}


def _quoted() -> list[str]:
    return re.findall(r"^\*\*Message:\*\* `([^`]+)`", PAGE.read_text(encoding="utf-8"), re.M)


def test_every_quoted_message_has_a_trigger_and_back():
    assert sorted(_quoted()) == sorted(TRIGGERS)


@pytest.mark.parametrize("fragment", sorted(TRIGGERS))
def test_the_code_gives_the_quoted_message(fragment, monkeypatch, tmp_path):
    assert fragment in TRIGGERS[fragment](monkeypatch, tmp_path)


def test_the_page_parser_sees_every_entry():
    assert len(_quoted()) == PAGE.read_text(encoding="utf-8").count("**Message:**") >= 10
