"""Progress bars: throttled in logs, tqdm's environment switches honoured, progress checked."""

from __future__ import annotations

import io

import pytest
import torch

from bayesphys._model import optimize
from bayesphys._progress import progress_bar


def _quick_fit(steps: int) -> None:
    x = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.0)

    def step():
        opt.zero_grad()
        loss = (x - 1.0).pow(2).sum()
        loss.backward()
        opt.step()
        return loss.detach()

    optimize(step, steps=steps, params=[x])


def test_a_long_fit_writes_a_few_redraws_to_a_log(capsys):
    # stderr captured (not a terminal): a 3000-step fit redrew its bar every 10 steps (~300
    # redraws, growing with the step count)
    _quick_fit(3000)
    err = capsys.readouterr().err
    assert 0 < err.count("\r") <= 6, err.count("\r")


def test_terminal_streams_keep_a_short_interval():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    with progress_bar(total=1, progress=True, file=Tty()) as bar:
        assert bar.mininterval == pytest.approx(0.1)
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert bar.mininterval == pytest.approx(30.0) and bar.maxinterval >= 30.0


def test_tqdm_environment_switches_are_honoured(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    _quick_fit(20)
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setenv("TQDM_MININTERVAL", "0.5")
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert bar.mininterval == pytest.approx(0.5)


def test_progress_false_and_true_still_decide(capsys):
    with progress_bar(total=2, progress=False, desc="quiet") as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""
    with progress_bar(total=2, progress=True, desc="shown") as bar:
        bar.update(2)
    assert "shown" in capsys.readouterr().err


def test_progress_must_be_a_bool_everywhere(tmp_path):
    from bayesphys.distributed import fit_many
    from bayesphys.distributed.ddp import train_ddp

    with pytest.raises(TypeError, match="progress"):
        fit_many([0, 1], lambda p: None, progress="no")
    with pytest.raises(TypeError, match="progress"):
        train_ddp(
            lambda: torch.nn.Linear(1, 1),
            lambda m, b: m(b[0]).pow(2).mean(),
            torch.zeros(4, 1),
            epochs=1,
            batch_size=2,
            progress="no",
        )


def test_an_ipython_kernel_is_interactive(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    with progress_bar(total=1, progress=True, file=io.StringIO(), leave=False) as bar:
        assert bar.mininterval == pytest.approx(0.1) and bar.leave is False


def test_a_log_keeps_the_final_line_whatever_the_interval(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "30")
    with progress_bar(total=1, progress=True, file=io.StringIO(), leave=False) as bar:
        assert bar.leave is True and bar.mininterval == pytest.approx(30.0)


def test_nuts_reference_checks_progress():
    from bayesphys.odil import nuts_reference

    with pytest.raises(TypeError, match="progress"):
        nuts_reference(object(), progress="no")


@pytest.mark.parametrize("value", ["true", "Yes", " on "])
def test_tqdm_disable_takes_every_true_spelling(monkeypatch, capsys, value):
    monkeypatch.setenv("TQDM_DISABLE", value)
    with progress_bar(total=2, progress=True, desc="hidden") as bar:
        bar.update(2)
        assert bar.disable
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TQDM_DISABLE", "0")
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert not bar.disable


def test_a_zero_tqdm_mininterval_is_honoured_and_the_idle_redraw_stays_above_it(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert bar.mininterval == 0.0
    monkeypatch.setenv("TQDM_MININTERVAL", "-1")  # not a number >= 0: the stream's default
    with pytest.warns(RuntimeWarning, match=r"^TQDM_MININTERVAL: expected .*received '-1'"):
        with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
            assert bar.mininterval == pytest.approx(30.0)
    # tqdm's monitor redraws a bar idle for maxinterval: above the redraw interval
    monkeypatch.setenv("TQDM_MININTERVAL", "20")
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert bar.mininterval == pytest.approx(20.0) and bar.maxinterval > bar.mininterval
    monkeypatch.delenv("TQDM_MININTERVAL")
    with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
        assert bar.maxinterval > bar.mininterval == pytest.approx(30.0)


def test_a_stream_that_cannot_say_whether_it_is_a_terminal_is_a_log():
    """A stream without ``isatty`` (a logging adapter) or a closed one is written to as a log
    (long redraw interval, the final line kept), not refused."""

    class Writer:  # write and flush only
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    out = Writer()
    with progress_bar(total=2, progress=True, file=out, desc="adapter", leave=False) as bar:
        assert bar.mininterval == pytest.approx(30.0) and bar.leave is True
        bar.update(2)
    assert "adapter" in out.text and "2/2" in out.text
    closed = io.StringIO()
    closed.close()
    with progress_bar(total=1, progress=False, file=closed) as bar:  # shown nowhere: no write
        assert bar.disable
        bar.update(1)


def test_a_callers_own_mininterval_is_kept(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "5")
    with progress_bar(total=1, progress=True, file=io.StringIO(), mininterval=2.0) as bar:
        assert bar.mininterval == pytest.approx(2.0) and bar.maxinterval == pytest.approx(10.0)


def test_nested_bars_in_a_log_write_no_cursor_escapes_or_blank_lines():
    # a member's step bar inside MFMEnsemble's member bar (or a user's fit inside an SBC bar)
    # took tqdm's next position: a log got "\x1b[A" after each inner bar's first draw and a
    # blank line after its last
    log = io.StringIO()
    with progress_bar(total=2, progress=True, file=log, desc="outer", leave=False) as outer:
        for _ in range(2):
            with progress_bar(total=3, progress=True, file=log, desc="inner", leave=False) as b:
                b.update(3)
            outer.update(1)
    text = log.getvalue()
    assert "\x1b" not in text, repr(text)
    lines = text.split("\n")
    assert lines[-1] == "" and all(line.strip() for line in lines[:-1]), repr(text)
    # each bar's final state on a line of its own: two inner bars, then the outer one
    finals = [line.rsplit("\r", 1)[-1] for line in lines[:-1]]
    assert [f.split(":")[0] for f in finals] == ["inner", "inner", "outer"], finals
    assert "3/3" in finals[0] and "2/2" in finals[2], finals


def test_a_terminal_keeps_tqdm_nesting():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    with progress_bar(total=1, progress=True, file=Tty()) as outer:
        with progress_bar(total=1, progress=True, file=Tty()) as inner:
            assert inner.pos != outer.pos
