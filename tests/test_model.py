"""The shared fit loop and checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

from bayesphys import FitResult, load_checkpoint, optimize, save_checkpoint
from bayesphys._model import DivergenceError, DivergenceGuard


def test_optimize_converges_and_records():
    x = torch.nn.Parameter(torch.tensor(3.0))
    opt = torch.optim.SGD([x], lr=0.1)

    def step():
        opt.zero_grad()
        loss = (x - 1) ** 2
        loss.backward()
        opt.step()
        return loss

    res = optimize(step, steps=500, params=[x], progress=False, tol=1e-10)
    assert isinstance(res, FitResult) and res.converged
    assert res.steps == len(res.loss_history) < 500
    assert abs(float(x.detach()) - 1) < 1e-3 and res.seconds > 0


def test_optimize_restores_last_good_state_on_nan():
    m = torch.nn.Linear(2, 1)
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        with torch.no_grad():
            m.weight.add_(1.0)
        return torch.tensor(float("nan")) if calls["n"] == 5 else torch.tensor(1.0)

    w0 = m.weight.detach().clone()
    res = optimize(step, steps=10, params=m, progress=False)
    assert not res.converged and "diverged at step 4" in res.message
    # the loss of a step is that of the values before its update: step 4 (index 4) saw the
    # weight after 4 increments and returned NaN, so the good state is the one before them
    # that step 3 evaluated (3 increments)
    assert res.steps == 4
    torch.testing.assert_close(m.weight.detach(), w0 + 3.0)
    w_after_4 = m.weight.clone()
    with pytest.raises(DivergenceError):
        optimize(
            lambda: torch.tensor(float("inf")),
            steps=3,
            params=m,
            progress=False,
            raise_on_divergence=True,
        )
    torch.testing.assert_close(m.weight, w_after_4)


def test_optimize_restores_listed_tensors_and_refreshes_snapshot_in_place():
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.ones(2))
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        with torch.no_grad():
            a.add_(1.0)
            b.mul_(2.0)
        return torch.tensor(float("nan")) if calls["n"] == 3 else torch.tensor(0.5)

    res = optimize(step, steps=10, params=[a, b], progress=False)
    assert res.steps == 2 and "diverged at step 2" in res.message
    # the values step index 1 evaluated (after one update, not the initial ones): the snapshot
    # was refreshed in place; the values after two updates gave the NaN and are not kept
    torch.testing.assert_close(a.detach(), torch.full((3,), 1.0))
    torch.testing.assert_close(b.detach(), torch.full((2,), 2.0))


def test_optimize_restores_values_whose_loss_was_finite():
    # loss = log(x) with SGD lr=2: x goes 1 -> -1, where the loss is NaN; the last good state
    # is x = 1 (the values whose loss was finite), not x = -1 (the values after the update)
    x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=2.0)

    def step():
        opt.zero_grad()
        loss = torch.log(x)
        loss.backward()
        opt.step()
        return loss

    res = optimize(step, steps=5, params=[x], progress=False)
    assert "diverged at step 1" in res.message and res.loss_history == [0.0]
    assert float(x.detach()) == 1.0


def test_optimize_stop_iteration_ends_early_without_restore():
    x = torch.nn.Parameter(torch.tensor(0.0))
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        if calls["n"] == 3:
            raise StopIteration
        with torch.no_grad():
            x.add_(1.0)
        return torch.tensor(1.0)

    res = optimize(step, steps=10, params=[x], progress=False)
    assert res.steps == 2 and res.message.startswith("stopped") and not res.converged
    assert float(x.detach()) == 2.0


def test_checkpoint_roundtrip(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", kind="toy", config={"a": 1}, state={"w": torch.ones(2)})
    ck = load_checkpoint(p, kind="toy")
    assert ck["config"] == {"a": 1} and torch.equal(ck["state"]["w"], torch.ones(2))
    with pytest.raises(ValueError, match="expected a 'other' checkpoint"):
        load_checkpoint(p, kind="other")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt", kind="toy")
    with pytest.raises(ValueError, match="steps"):
        optimize(lambda: 0.0, steps=-1)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"steps": 2.5}, TypeError, "steps"),  # was range()'s "float object" TypeError
        ({"steps": True}, TypeError, "steps"),
        ({"steps": 3, "tol": float("nan")}, ValueError, "tol"),  # was accepted: never stops
        ({"steps": 3, "tol": -1.0}, ValueError, "tol"),
        ({"steps": 3, "patience": 0}, ValueError, "patience"),
        ({"steps": 3, "snapshot_every": -1}, ValueError, "snapshot_every"),
    ],
)
def test_optimize_settings_are_checked(kwargs, error, name):
    with pytest.raises(error, match=name):
        optimize(lambda: 0.0, progress=False, **kwargs)
    assert optimize(lambda: 0.0, steps=3.0, progress=False).steps == 3  # integral float is fine


def test_optimize_patience_without_tol_is_refused():
    """``patience`` counts calm steps below ``tol``: without ``tol`` it was accepted and the
    fit ran all its steps whatever it was."""
    with pytest.raises(ValueError, match="patience: only with tol"):
        optimize(lambda: 1.0, steps=5, patience=3, progress=False)
    res = optimize(lambda: 1.0, steps=5, patience=3, tol=1e-9, progress=False)
    assert res.converged and res.steps == 4  # with tol it applies: 3 calm changes after step 1


def _guarded_log_step(x, opt, guard):
    """loss = log(x) under Adam(lr=2): x goes 1 -> -1 after one update, where the loss is NaN."""

    def step():
        opt.zero_grad()
        loss = torch.log(x)
        if guard.admit(loss):
            loss.backward()
            opt.step()
        return loss

    return step


def test_guard_keeps_nonfinite_losses_from_the_optimizer():
    x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = torch.optim.Adam([x], lr=2.0)
    guard = DivergenceGuard([x])
    res = optimize(_guarded_log_step(x, opt, guard), steps=5, guard=guard, progress=False)
    assert res.loss_history == [0.0] and "diverged at step 1 (loss nan)" in res.message
    assert float(x.detach()) == 1.0 and guard.steps == 1
    # the NaN loss never reached backward()/step(): Adam took one (finite) step, no more
    st = opt.state[x]
    assert int(st["step"]) == 1
    assert all(bool(torch.isfinite(st[k]).all()) for k in ("exp_avg", "exp_avg_sq"))


def test_guard_keeps_the_verified_state_across_optimize_calls():
    # a fit run as several optimize() calls (chunks between callbacks): the values at the start
    # of a call come from an update whose loss was never evaluated, so they are not the good
    # state; the guard carries the last verified one across the calls
    m = torch.nn.Linear(2, 1)
    calls = {"n": 0}
    guard = DivergenceGuard(m)

    def step():
        calls["n"] += 1
        loss = torch.tensor(float("nan") if calls["n"] >= 4 else 1.0)
        if guard.admit(loss):
            with torch.no_grad():
                m.weight.add_(1.0)
        return loss

    w0 = m.weight.detach().clone()
    assert optimize(step, steps=3, guard=guard, progress=False).steps == 3
    res = optimize(step, steps=3, guard=guard, progress=False)
    # the third loss (values after 2 updates) was the last finite one; the steps are numbered
    # across the calls (the fourth step of the fit, index 3)
    assert res.steps == 0 and "diverged at step 3 " in res.message and guard.steps == 3
    torch.testing.assert_close(m.weight.detach(), w0 + 2.0)
    with pytest.raises(DivergenceError, match="diverged at step 3 "):
        optimize(step, steps=1, guard=guard, progress=False, raise_on_divergence=True)


def test_guard_refuses_gradients_whose_squares_overflow():
    # a finite loss with float32 gradients ~1e20: g^2 overflows, which would make Adam's second
    # moment inf; the update is refused and the state verified before these values is restored
    x = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.Adam([x], lr=0.1)
    guard = DivergenceGuard([x])
    scale = {"k": 1.0}

    def step():
        opt.zero_grad()
        loss = (scale["k"] * x).sum()
        if not guard.admit(loss):
            return loss
        loss.backward()
        if not guard.admit_gradients([x]):
            return torch.tensor(float("nan"))
        opt.step()
        with torch.no_grad():
            x.add_(1.0)  # the next values, not yet verified
        scale["k"] = 1e20
        return loss

    res = optimize(step, steps=5, guard=guard, progress=False)
    assert res.steps == 1 and "diverged at step 1 (gradients overflow" in res.message
    assert guard.steps == 1 and guard.reason.startswith("gradients overflow")
    # the values verified by the first step, before its update: not the overflowing ones
    assert float(x.detach()) == 1.0
    assert all(bool(torch.isfinite(v).all()) for v in opt.state[x].values())


def test_guard_settings_are_checked():
    x = torch.nn.Parameter(torch.tensor(0.0))
    guard = DivergenceGuard([x])
    with pytest.raises(ValueError, match="params/guard"):
        optimize(lambda: 0.0, steps=1, params=[x], guard=guard, progress=False)
    with pytest.raises(TypeError, match="guard"):
        optimize(lambda: 0.0, steps=1, guard=[x], progress=False)
    with pytest.raises(ValueError, match=r"guard\.admit"):  # the step must consult the guard
        optimize(lambda: 0.0, steps=1, guard=guard, progress=False)
    with pytest.raises(ValueError, match="params"):
        DivergenceGuard(None)


def test_guard_gradient_check_is_exact_and_takes_values_back_only_once():
    x = torch.nn.Parameter(torch.ones(10_000))  # float32
    guard = DivergenceGuard([x])
    # squares of 1e18 (1e36) fit float32 although the norm's square (1e40) does not: accepted
    x.grad = torch.full_like(x, 1e18)
    assert guard.admit(torch.tensor(1.0)) and guard.admit_gradients([x])
    with torch.no_grad():
        x.fill_(2.0)
    assert guard.admit(torch.tensor(1.0)) and guard.steps == 2
    x.grad = torch.full_like(x, 1e20)  # squares overflow: these values (2.0) are taken back
    assert not guard.admit_gradients([x]) and guard.steps == 1
    assert bool((x == 1.0).all())
    # a second refusal without a new admit() keeps the same verified state and count
    assert not guard.admit_gradients([x]) and guard.steps == 1 and bool((x == 1.0).all())


# ------------------------------------ an update that leaves the optimiser's state non-finite
def _adam_fit(dtype, bad_at=None, kind="huge"):
    """Adam on sum((w - 1)^2) for a 3-vector; at step ``bad_at`` the loss gains a term whose
    value is 0 but whose gradient is huge (``1e200 * (w - w.detach())``: its square overflows
    float64) or NaN (``sqrt(w - w)``, the derivative of sqrt at 0)."""
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=dtype))
    opt = torch.optim.Adam([w], lr=0.1)
    seen = []

    def step():
        k = len(seen)
        seen.append(w.detach().clone())
        opt.zero_grad()
        loss = ((w - 1) ** 2).sum()
        if k == bad_at:
            extra = 1e200 * (w - w.detach()) if kind == "huge" else torch.sqrt(w - w)
            loss = loss + extra.sum()
        loss.backward()
        opt.step()
        return loss

    return w, opt, step, seen


@pytest.mark.parametrize("kind", ["huge", "nan"])
def test_optimize_stops_when_an_update_leaves_the_optimizer_state_nonfinite(kind):
    # a finite loss whose gradient squares past float64 made Adam's second moment inf: every
    # later update of w was m / inf = 0, and the fit ran on "converged" with frozen weights; a
    # NaN gradient (sqrt at 0) made the moments and then the weights NaN
    w, opt, step, seen = _adam_fit(torch.float64, bad_at=3, kind=kind)
    res = optimize(step, steps=10, params=[w], optimizer=opt, progress=False)
    assert not res.converged and res.steps == 3 and len(res.loss_history) == 3
    assert res.message.startswith("diverged at step 3 (loss ")
    assert "optimizer state is not finite" in res.message
    # the values before the bad step's: the last good state, as after a non-finite loss
    assert torch.equal(w.detach(), seen[2])
    assert len(opt.state) == 0  # the non-finite moments are gone: a later step starts afresh
    res2 = optimize(step, steps=5, params=[w], optimizer=opt, progress=False)
    assert res2.steps == 5 and all(bool(torch.isfinite(v).all()) for v in opt.state[w].values())
    assert not torch.equal(w.detach(), seen[2])  # it trains again


def test_optimize_without_the_optimizer_leaves_the_frozen_fit_converged():
    # what the check above catches: the loss stays finite, the weights stop moving
    w, opt, step, seen = _adam_fit(torch.float64, bad_at=3)
    res = optimize(step, steps=8, params=[w], progress=False)
    assert res.converged and res.steps == 8
    assert torch.equal(seen[4], seen[7]) and torch.isinf(opt.state[w]["exp_avg_sq"]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_optimize_with_a_finite_optimizer_state_changes_nothing(dtype):
    w1, opt1, step1, _ = _adam_fit(dtype)
    w2, opt2, step2, _ = _adam_fit(dtype)
    r1 = optimize(step1, steps=20, params=[w1], progress=False, tol=1e-12)
    r2 = optimize(step2, steps=20, params=[w2], optimizer=[opt2], progress=False, tol=1e-12)
    assert r1.loss_history == r2.loss_history and r1.message == r2.message
    assert torch.equal(w1.detach(), w2.detach())
    assert all(torch.equal(opt1.state[w1][k], opt2.state[w2][k]) for k in opt1.state[w1])


def test_optimize_reads_the_loss_and_the_optimizer_state_back_once_per_step(host_reads):
    """On a GPU each read-back waits for the device: the state's check shares the loss's."""
    reads = host_reads
    counts = []
    for check in (False, True):
        w, opt, step, _ = _adam_fit(torch.float32)
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(4))]})
        reads.clear()
        res = optimize(step, steps=6, params=[w], optimizer=opt if check else None, progress=False)
        assert res.steps == 6
        counts.append(len(reads))
    # the loss's read once a step (and Adam's reads of its CPU step counter): no more with
    # the check
    assert 6 <= counts[1] == counts[0] <= 12  # one read a step at least: counted


def test_guard_takes_back_the_values_whose_update_poisoned_the_optimizer():
    # under a guard (no admit_gradients), the values admit() verified at the bad step are not
    # kept, as admit_gradients would have refused them: the state verified before them is back
    w, opt, _, seen = _adam_fit(torch.float64)
    guard = DivergenceGuard([w])

    def step():
        seen.append(w.detach().clone())
        opt.zero_grad()
        loss = ((w - 1) ** 2).sum()
        if not guard.admit(loss):
            return loss
        if len(seen) == 4:
            loss = loss + (1e200 * (w - w.detach())).sum()
        loss.backward()
        opt.step()
        return loss

    res = optimize(step, steps=10, guard=guard, optimizer=opt, progress=False)
    assert res.steps == 3 and "diverged at step 3 (loss " in res.message
    assert guard.steps == 3 and "optimizer state" in guard.reason
    assert torch.equal(w.detach(), seen[2]) and len(opt.state) == 0


class _HistoryOptimizer(torch.optim.Optimizer):
    """Plain gradient descent that keeps its past steps in a list in its state (as L-BFGS
    keeps its history): the state's tensors sit one level down."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                d = -group["lr"] * p.grad
                self.state[p].setdefault("history", []).append(d.clone())
                p.add_(d)


@pytest.mark.parametrize("kind", ["complex", "nested"])
def test_optimize_checks_complex_and_nested_optimizer_state(kind):
    """The state check read only real tensors at the top of each parameter's state: Adam's
    complex moments of a complex weight, or a history kept in a list, went unchecked, and a
    fit whose update left them non-finite ran on (the check ``train_ddp`` runs walked both)."""
    if kind == "complex":
        w = torch.nn.Parameter(torch.tensor([3.0 + 1j, -2.0, 0.5j], dtype=torch.complex128))
        opt = torch.optim.Adam([w], lr=0.1)
    else:
        w = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64))
        opt = _HistoryOptimizer([w])
    seen = []

    def step():
        k = len(seen)
        seen.append(w.detach().clone())
        opt.zero_grad()
        loss = ((w - 1).abs() ** 2).sum()
        if k == 3:  # a term of value 0 whose gradient squares (complex) or steps (nested) to inf
            loss = loss + (1e200 * (w - w.detach())).real.sum() * (
                1 if kind == "complex" else 1e200
            )
        loss.backward()
        opt.step()
        return loss

    res = optimize(step, steps=10, params=[w], optimizer=opt, progress=False)
    assert not res.converged and res.steps == 3, res.message
    assert "optimizer state is not finite" in res.message
    assert torch.equal(w.detach(), seen[2]) and len(opt.state) == 0


def test_optimize_optimizer_argument_is_checked():
    x = torch.nn.Parameter(torch.tensor(0.0))
    with pytest.raises(TypeError, match="optimizer"):
        optimize(lambda: 0.0, steps=1, params=[x], optimizer=[x], progress=False)
    with pytest.raises(TypeError, match="optimizer"):
        optimize(lambda: 0.0, steps=1, params=[x], optimizer="adam", progress=False)


# --------------------------------------------------- damaged checkpoints (review, 2026-12-02)
def _saved(tmp_path):
    return save_checkpoint(
        tmp_path / "m.pt", kind="k", config={}, state={"w": torch.arange(1000.0)}
    )


@pytest.mark.parametrize("cut", [100, 2000, 3000])
def test_a_truncated_checkpoint_is_named_not_a_raw_oserror(tmp_path, cut):
    # torch.load raised OSError (Errno 22) for most cut points, outside the documented ValueError
    data = _saved(tmp_path).read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) - cut])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        load_checkpoint(bad, kind="k")


def test_a_flipped_byte_in_the_weights_is_refused_not_loaded(tmp_path):
    # torch does not check the zip CRCs: the flipped tensor byte loaded as other weights
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(torch.arange(1000.0)[500:501].numpy().tobytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC-32"):
        load_checkpoint(path, kind="k")


def test_an_unreadable_checkpoint_keeps_its_permission_error(tmp_path, monkeypatch):
    path = _saved(tmp_path)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(PermissionError):
        load_checkpoint(path, kind="k")


@pytest.mark.skipif(os.name == "nt", reason="symlinks and POSIX permission bits")
def test_a_checkpoint_saved_through_a_symlink_keeps_the_link_and_mode(tmp_path):
    import os

    real = _saved(tmp_path)
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    save_checkpoint(link, kind="k", config={"v": 2}, state={})
    assert link.is_symlink() and load_checkpoint(real, kind="k")["config"] == {"v": 2}
    os.chmod(real, 0o600)
    save_checkpoint(real, kind="k", config={}, state={})
    assert real.stat().st_mode & 0o777 == 0o600


class _Payload:
    """An object whose unpickling would run code (here: it records that it ran)."""

    ran: list[int] = []

    def __reduce__(self):
        return (_Payload.ran.append, (1,))


def test_a_checkpoint_holding_arbitrary_objects_is_not_unpickled(tmp_path):
    """torch.load(weights_only=False) ran whatever a checkpoint's pickle named: a file from an
    untrusted source could run code on load."""
    path = tmp_path / "evil.pt"
    torch.save({"kind": "toy", "config": {}, "state": {"x": _Payload()}}, path)
    _Payload.ran.clear()
    with pytest.raises(ValueError, match="not unpickled"):
        load_checkpoint(path, kind="toy")
    assert _Payload.ran == []


def _scripted(losses):
    """A step returning ``losses`` one after the other (no parameters: the stop rule alone)."""
    it = iter(losses)
    return lambda: next(it)


def test_optimize_tol_compares_with_the_previous_loss_and_a_spent_budget_is_not_converged():
    # relative change |l_{k-1} - l_k| / |l_{k-1}|: 1 -> 2 -> 4 -> 8 changes by 1.0 each step
    # (divided by the new loss it would be 0.5, below tol = 0.75, and the fit would stop)
    res = optimize(_scripted([1.0, 2.0, 4.0, 8.0]), steps=4, tol=0.75, progress=False)
    assert res.steps == 4 and res.message == "max steps (4)"
    assert res.converged is False  # the tolerance was never met: not converged
    # the same losses in reverse fall by 0.5 each step: below 0.75, stopped at the 2nd step
    res = optimize(_scripted([8.0, 4.0, 2.0, 1.0]), steps=4, tol=0.75, progress=False)
    assert res.converged is True and res.steps == 2
    assert res.message == "converged after 2 steps"


def test_optimize_tol_zero_never_stops_a_fit_early():
    # "below tol" is strict: a loss that does not change at all is not below tol = 0
    res = optimize(lambda: 1.0, steps=6, tol=0.0, progress=False)
    assert res.steps == 6 and res.converged is False and res.message == "max steps (6)"


def test_optimize_zero_steps_and_the_argument_checks_at_their_bounds():
    res = optimize(lambda: 1.0, steps=0, progress=False)
    assert res.steps == 0 and res.loss_history == [] and res.message == "max steps (0)"
    assert res.converged is True  # a fixed budget, spent without divergence
    assert res.final_loss != res.final_loss  # NaN: no loss recorded
    with pytest.raises(ValueError, match=r"patience: expected an int >= 1, received 0"):
        optimize(lambda: 1.0, steps=3, tol=1e-3, patience=0, progress=False)
    with pytest.raises(TypeError, match="expected a scalar loss .* received bool True"):
        optimize(lambda: True, steps=3, progress=False)


def test_optimize_stop_iteration_message_counts_the_steps_taken():
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        if calls["n"] == 4:
            raise StopIteration
        return 1.0

    res = optimize(step, steps=10, progress=False)
    assert res.message == "stopped by step() after 3 steps" and res.steps == 3


def test_optimize_progress_bar_counts_every_recorded_step(capsys):
    # stderr is captured (not a terminal): the bar's final line stays with its count
    optimize(lambda: 1.0, steps=7, progress=True, desc="counted")
    err = capsys.readouterr().err
    assert "counted" in err and "7/7" in err


def test_optimize_progress_bar_ends_on_the_last_loss(capsys):
    """The bar's loss was set every 10th step only: a 3-step fit ended showing step 0's
    loss, and a slow fit (a minute per step) showed a loss up to nine steps old."""
    losses = iter([3.0, 2.0, 1.5])
    res = optimize(lambda: next(losses), steps=3, progress=True, desc="last")
    err = capsys.readouterr().err
    last_render = err.rstrip("\n").split("\r")[-1]  # the bar's final state
    assert res.final_loss == 1.5 and "3/3" in last_render and "loss=1.5" in last_render


def test_guard_restores_when_step_returns_a_non_finite_loss_after_an_admitted_one():
    # step() admits a finite loss, updates, and then returns another (non-finite) loss: the
    # values it updated from (the verified ones) come back
    x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    guard = DivergenceGuard([x])

    def step():
        assert guard.admit(torch.tensor(0.5))
        with torch.no_grad():
            x.add_(1.0)
        return torch.tensor(float("inf"))

    res = optimize(step, steps=3, guard=guard, progress=False)
    assert res.steps == 0 and "diverged at step 0 (loss inf)" in res.message
    assert float(x.detach()) == 1.0


def test_optimize_without_params_stops_at_a_divergence_with_nothing_to_restore():
    """``params=None``: the fit has no values to snapshot; a non-finite loss still ends it,
    records the finite losses before it, and leaves the caller's state as the steps left it."""
    w = torch.zeros(())
    losses = iter([1.0, 0.5, float("nan"), 0.1])

    def step():
        w.add_(1.0)
        return torch.tensor(next(losses))

    res = optimize(step, steps=4, params=None, progress=False)
    assert not res.converged and res.message.startswith("diverged at step 2 (loss nan)")
    assert res.loss_history == [1.0, 0.5] and res.steps == 2 and float(w) == 3.0


def test_optimizer_state_tensors_keeps_the_floating_and_complex_tensors_only():
    """Integer counters in an optimiser's state (a step count) are no values to check for
    non-finite entries; floating and complex tensors, also inside lists and dicts, are."""
    from bayesphys._fit_state import optimizer_state_tensors

    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.1)
    moment, history = torch.ones(2), torch.ones(2, dtype=torch.complex64)
    opt.state[w] = {"count": torch.tensor(3), "moment": moment, "past": [{"h": history}, 7]}
    got = optimizer_state_tensors([opt])
    assert [t.dtype for t in got] == [torch.float32, torch.complex64]
    assert torch.equal(got[0], moment) and torch.equal(got[1], history)


def test_guard_admits_a_step_that_left_no_gradients():
    """A step whose update has no gradient to check (frozen or unused tensors) is admitted,
    and the guard's state is unchanged."""
    w = torch.zeros(3, requires_grad=True)
    guard = DivergenceGuard([w])
    assert guard.admit_gradients([w]) and guard.admit_gradients(torch.nn.Linear(2, 1))
    assert guard.reason is None
