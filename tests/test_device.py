"""Device, dtype and seed resolution."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bayesphys import (
    as_tensor,
    check_finite,
    resolve_device,
    resolve_dtype,
    seed_everything,
    seeded,
)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype(None) is torch.float64
    assert resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="floating"):
        resolve_dtype(torch.int64)
    with pytest.raises(ValueError, match="unknown"):
        resolve_dtype("float7")


def test_seed_everything_reproduces():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(TypeError, match="seed"):
        seed_everything("3")


def _states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def test_seeded_block_matches_seed_everything_and_restores_the_caller_state():
    seed_everything(3)
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    before = _states()
    with seeded(3):
        got = (torch.rand(3), np.random.rand(3), random.random())
    after = _states()
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert got[2] == want[2]
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert before[2] == after[2]


def test_seeded_restores_on_error_and_none_uses_the_global_stream():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"), seeded(1):
        torch.rand(4)
        raise RuntimeError("boom")
    assert torch.equal(before, torch.get_rng_state())
    with seeded(None):  # unseeded: the global stream, advanced
        a = torch.rand(2)
    torch.set_rng_state(before)
    assert torch.equal(a, torch.rand(2))
    with pytest.raises(ValueError, match="seed"), seeded(2**64):
        pass


def test_device_none_is_the_cpu_for_the_seeded_streams():
    # None, every model's default device, failed: seeded / streams_kept with an
    # AttributeError on None.type, make_generator with torch's argument list
    from bayesphys._process_state import make_generator, streams_kept

    with seeded(4, "cpu"):
        want = torch.rand(3)
    before = torch.get_rng_state()
    with seeded(4, None):
        got = torch.rand(3)
    assert torch.equal(got, want)
    assert torch.equal(before, torch.get_rng_state())
    with streams_kept(None):
        torch.rand(2)
    assert torch.equal(before, torch.get_rng_state())
    gen = make_generator(4, None)
    assert gen.device == torch.device("cpu")
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=make_generator(4)))
    with pytest.raises(TypeError, match="device"), seeded(4, 3):
        pass


def test_stream_device_is_not_model_device_for_other_device_objects():
    """The seeded streams take a torch.device of any type (only CUDA has its own stream:
    a model held on 'meta' to stand in for one is seeded on the CPU streams), where a model
    refuses to be placed: the two helpers differ, and merging them would refuse seeding."""
    from bayesphys._device import _stream_device, model_device
    from bayesphys._process_state import streams_kept

    meta = torch.device("meta")
    assert _stream_device(meta) == meta
    with pytest.raises(ValueError, match="'meta' tensors hold no values"):
        model_device(meta)
    before = torch.get_rng_state()
    with seeded(4, meta):
        got = torch.rand(3)
    with streams_kept(meta):
        torch.rand(2)
    assert torch.equal(before, torch.get_rng_state())
    with seeded(4, "cpu"):
        assert torch.equal(got, torch.rand(3))
    for d in (None, "auto", "cpu", torch.device("cpu")):  # where both read a device
        assert _stream_device(d) == model_device(d)


def test_as_tensor_checks():
    t = as_tensor("y", [1.0, 2.0], dtype=torch.float64, ndim=1)
    assert t.dtype is torch.float64
    with pytest.raises(ValueError, match="y: expected 2 dimensions"):
        as_tensor("y", [1.0], ndim=2)
    with pytest.raises(ValueError, match="y: expected finite"):
        as_tensor("y", [float("inf")])
    with pytest.raises(TypeError, match=r"^y: expected a tensor or array"):
        as_tensor("y", object())
    check_finite("ok", torch.ones(2))


def test_as_tensor_refuses_complex_values_a_real_cast_would_truncate():
    z = torch.tensor([1 + 2j, 3 - 1j])
    for kw in ({"dtype": torch.float64}, {"dtype": torch.float32}, {"real": True}):
        with pytest.raises(TypeError, match=r"^z: expected real values, received complex"):
            as_tensor("z", z, **kw)
    with pytest.raises(TypeError, match=r"^z: expected real values"):
        as_tensor("z", np.array([1j]), dtype=torch.float64)
    # complex wanted, or no dtype asked for: passed through unchanged
    assert torch.equal(as_tensor("z", z, dtype=torch.complex128), z.to(torch.complex128))
    assert as_tensor("z", z).is_complex()
    assert as_tensor("x", [1.0], real=True).dtype == torch.float64


def test_mps_and_meta_are_refused_where_they_cannot_run():
    """'mps' passed the check on a machine without MPS and 'meta' always: both failed later,
    inside a fit, with a traceback."""
    import torch

    from bayesphys._device import resolve_device

    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps")
    with pytest.raises(ValueError, match="'meta' tensors hold no values"):
        resolve_device("meta")
    with pytest.raises(ValueError, match="'meta'"):
        resolve_device(torch.device("meta"))


def test_torch_threads_sets_the_count_for_the_block_and_restores_it_after_an_error():
    from bayesphys._process_state import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n"):
        with torch_threads(0):
            pass


def test_check_on_device_names_the_argument_both_devices_and_the_hint():
    """The one device check of module inputs (kernels, noise, grid tensors, network inputs,
    face maps): a tensor elsewhere is named with both devices; other values pass."""
    from bayesphys._device import check_on_device

    cpu = torch.device("cpu")
    check_on_device("x", torch.zeros(2), cpu, "the kernel's")  # same device: nothing
    check_on_device("x", None, cpu, "the kernel's")  # not a tensor: left to other checks
    meta = torch.zeros(2, device="meta")
    with pytest.raises(ValueError) as err:
        check_on_device("x1", meta, cpu, "the kernel's", what="points", hint=" (.to('{device}'))")
    assert str(err.value) == (
        "x1: expected points on the kernel's device cpu, received one on meta (.to('cpu'))"
    )


def test_check_on_device_reads_an_unindexed_device_as_the_current_one():
    """A module whose device is named without an index ("cpu", or "cuda" for the current GPU)
    holds tensors whose device carries one ("cpu" stays "cpu"; "cuda" reads "cuda:0"): the
    check compares devices as torch places tensors, not their names."""
    from bayesphys._device import check_on_device

    check_on_device("x", torch.zeros(1), torch.device("cpu:0"), "the model's")
    check_on_device("x", torch.zeros(1, device="cpu"), torch.device("cpu"), "the model's")
    with pytest.raises(ValueError, match="x: expected a tensor on the model's device cpu"):
        check_on_device("x", torch.zeros(1, device="meta"), torch.device("cpu"), "the model's")


def test_check_module_dtype_and_inputs_name_the_argument():
    """One check for every network's inputs (GICNet, ForwardNet, Meta FM's field and GCN):
    the argument and both dtypes named; autocast, which casts inputs itself, is let through."""
    from bayesphys._device import check_module_dtype, check_module_inputs

    w = torch.zeros(2, dtype=torch.float32)
    check_module_inputs("net", w, x=torch.zeros(3), v=torch.ones(1))
    with pytest.raises(TypeError, match=r"^v: expected the net's dtype torch.float32, received"):
        check_module_inputs("net", w, x=torch.zeros(3), v=torch.ones(1, dtype=torch.float64))
    with pytest.raises(TypeError, match="^x: expected a torch.Tensor, received list"):
        check_module_inputs("net", w, x=[0.0])
    with pytest.raises(ValueError, match="^x: expected a tensor on the net's device cpu"):
        check_module_inputs("net", w, x=torch.zeros(3, device="meta"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_module_dtype("x", torch.zeros(3, dtype=torch.float64), torch.float32, "net")


def test_resolve_device_refuses_a_device_type_bayesphys_does_not_run_on():
    with pytest.raises(ValueError, match=r"^device: unsupported device type 'xpu' \(use 'cpu' or"):
        resolve_device("xpu")
    with pytest.raises(ValueError, match="unsupported device type 'hpu'"):
        resolve_device(torch.device("hpu"))


def test_seed_everything_none_leaves_every_stream_as_it_was():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    seed_everything(None)
    got = (torch.rand(2), np.random.rand(2), random.random())
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    want = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert got[2] == want[2]


def test_own_memory_copies_only_what_shares_the_callers_memory():
    """A model keeps no view of its caller's array or tensor (their later in-place edits
    would change it); a converted copy, also one of a dtype numpy lacks, is kept as it is."""
    from bayesphys._device import own_memory

    arr = np.arange(4.0)
    view = torch.from_numpy(arr)
    kept = own_memory(view, arr)
    arr[0] = 99.0
    assert kept is not view and float(kept[0]) == 0.0
    src = torch.arange(4.0)
    part, whole = own_memory(src[1:], src), own_memory(src, src)
    src.mul_(0)
    assert part.tolist() == [1.0, 2.0, 3.0] and whole.tolist() == [0.0, 1.0, 2.0, 3.0]
    bf16 = torch.as_tensor(arr, dtype=torch.bfloat16)  # numpy has no bfloat16: a copy already
    assert own_memory(bf16, arr) is bf16
    fresh = torch.as_tensor(arr, dtype=torch.float32)
    assert own_memory(fresh, arr) is fresh


def test_as_tensor_names_an_overflowing_cast_and_a_meta_tensor():
    """Finite float64 values past float32's range were reported as "NaN/Inf entries" (the
    check ran after the cast), and a 'meta' tensor failed inside torch's isfinite."""
    with pytest.raises(
        ValueError, match=r"^u: values up to 1e\+300 in magnitude overflow torch.float32"
    ):
        as_tensor("u", torch.tensor([1.0, -1e300], dtype=torch.float64), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^u: expected finite values, received 1 NaN/Inf"):
        as_tensor("u", torch.tensor([1.0, float("nan")]), dtype=torch.float32)
    ok = as_tensor("u", torch.tensor([1.0, -1e30], dtype=torch.float64), dtype=torch.float32)
    assert ok.dtype == torch.float32 and torch.isfinite(ok).all()
    assert torch.isinf(as_tensor("u", [1e300], dtype=torch.float32, finite=False)).all()
    meta = torch.empty(3, device="meta")
    with pytest.raises(ValueError, match=r"^x: expected values, received a tensor on the 'meta'"):
        as_tensor("x", meta)
    with pytest.raises(ValueError, match=r"^x: expected values, received a tensor on the 'meta'"):
        check_finite("x", meta)
    assert as_tensor("x", meta, finite=False).device.type == "meta"
