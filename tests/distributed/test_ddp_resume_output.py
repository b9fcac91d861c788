"""train_ddp after a resume: the progress bar counts the run's epochs, and an old checkpoint's
"no recorded settings" warning comes once per call, from rank 0 only."""

from __future__ import annotations

import io
import warnings

import torch

from bayesphys.distributed import ddp

KW = dict(batch_size=8, lr=1e-2, seed=5, progress=False)


def _data(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, x.sum(-1, keepdim=True)


def _model() -> torch.nn.Module:
    return torch.nn.Linear(3, 1).double()


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _single_process(monkeypatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _old_checkpoint(path) -> None:
    """A 1-epoch checkpoint with its settings removed (as written before they were saved)."""
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=path, **KW)
    old = torch.load(path, weights_only=False)
    del old["state"]["settings"]
    torch.save(old, path)


def _no_settings(rec) -> list:
    return [w for w in rec if "records no training settings" in str(w.message)]


def test_old_checkpoint_warns_once_per_call_at_user_line(monkeypatch, tmp_path):
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    _old_checkpoint(ckpt)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = ddp.train_ddp(_model, _loss, _data(), epochs=2, checkpoint=ckpt, **KW)
    assert res.extra["start_epoch"] == 1
    got = _no_settings(rec)
    assert len(got) == 1, [str(w.message) for w in rec]
    assert issubclass(got[0].category, RuntimeWarning) and got[0].filename == __file__


def test_old_checkpoint_warns_on_rank_zero_only(monkeypatch, tmp_path):
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    _old_checkpoint(ckpt)
    monkeypatch.setattr(ddp, "planned_world", lambda: (1, 1))  # this process as rank 1
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ddp.train_ddp(_model, _loss, _data(), epochs=2, checkpoint=ckpt, **KW)
    assert _no_settings(rec) == []


def test_progress_after_resume_counts_all_epochs(monkeypatch, tmp_path):
    from bayesphys import _progress

    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=3, checkpoint=ckpt, **KW)
    out = io.StringIO()
    real = _progress.tqdm

    def to_buffer(*a, **kw):
        return real(*a, **{**kw, "file": out, "mininterval": 0})

    monkeypatch.setattr(_progress, "tqdm", to_buffer)
    res = ddp.train_ddp(
        _model, _loss, _data(), epochs=6, checkpoint=ckpt, **{**KW, "progress": True}
    )
    assert res.extra["start_epoch"] == 3
    text = out.getvalue()
    assert "3/6" in text and "6/6" in text, text
    assert "0/3" not in text
