"""Scalar argument checks (bayesphys._checks)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bayesphys import check_int, check_real


@given(v=st.integers(-1000, 1000), lo=st.integers(-10, 10))
def test_check_int_accepts_exactly_the_ints_at_or_above_the_minimum(v, lo):
    if v >= lo:
        assert check_int("n", v, minimum=lo) == v
        assert check_int("n", float(v), minimum=lo) == v  # integral floats are converted
    else:
        with pytest.raises(ValueError, match=f"n: expected an int >= {lo}"):
            check_int("n", v, minimum=lo)


def test_check_int_refuses_what_is_not_an_int():
    assert check_int("n", np.int64(3)) == 3
    for bad in (2.5, float("nan"), float("inf"), "3", None, True, [1]):
        with pytest.raises(TypeError, match="n: expected an int"):
            check_int("n", bad)


@given(v=st.floats(-1e6, 1e6), lo=st.floats(-10, 10), strict=st.booleans())
def test_check_real_bounds(v, lo, strict):
    ok = v > lo if strict else v >= lo
    if ok:
        assert check_real("x", v, minimum=lo, strict=strict) == v
    else:
        with pytest.raises(ValueError, match="x: expected a number"):
            check_real("x", v, minimum=lo, strict=strict)


def test_check_real_refuses_non_finite_and_non_numbers():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            check_real("lr", bad)
    for bad in ("0.1", None, True):
        with pytest.raises(TypeError, match="lr: expected a real number"):
            check_real("lr", bad)
    with pytest.raises(ValueError, match="<= 1"):
        check_real("p", 1.5, maximum=1.0)
    assert check_real("p", 1, maximum=1.0) == 1.0


def test_check_scalar_tensor_and_number():
    import torch

    from bayesphys._checks import check_scalar

    assert check_scalar("tau2", torch.tensor(2.0), minimum=0.0) == 2.0
    assert check_scalar("tau2", 3, minimum=0.0, strict=True) == 3.0
    with pytest.raises(ValueError, match="tau2: expected a scalar"):
        check_scalar("tau2", torch.ones(1))
    assert check_scalar("p", torch.ones(1), one_element=True) == 1.0
    with pytest.raises(TypeError, match="tau2: expected a real number"):
        check_scalar("tau2", torch.tensor(True))
    with pytest.raises(ValueError, match=r"tau2: expected a number > 0"):
        check_scalar("tau2", torch.tensor(0.0), minimum=0.0, strict=True)


def test_check_broadcasts():
    from bayesphys._checks import check_broadcasts

    check_broadcasts("m", (1, 3), (2, 3), "x")
    with pytest.raises(ValueError, match=r"m: expected x, received \(2, 4\)"):
        check_broadcasts("m", (2, 4), (2, 3), "x")
    with pytest.raises(ValueError, match=r"m: expected x, received \(3, 2, 3\)"):
        check_broadcasts("m", (3, 2, 3), (2, 3), "x")  # broadcasts, but beyond the target


def test_check_keys_names_missing_and_unknown_keys():
    from collections import OrderedDict

    from bayesphys._checks import check_keys

    d = {"x": 1, "y": 2}
    assert check_keys("data", d, ("x", "y")) is d
    od = OrderedDict(x=1, y=2, s=3)
    assert check_keys("data", od, ["x", "y"], ["s", "t"]) is od  # any Mapping
    assert check_keys("data", {"x": 1, "other": 2}, ("x",), None)["other"] == 2
    assert check_keys("prior", {}, (), ("a", "b")) == {}
    with pytest.raises(
        TypeError, match=r"^data: expected a dict with keys \['x', 'y'\], received list"
    ):
        check_keys("data", [1, 2], ("x", "y"))
    with pytest.raises(TypeError, match=r"^test: expected a dict .*\(from maker\), received tuple"):
        check_keys("test", (), ("x",), None, hint="from maker")
    with pytest.raises(ValueError, match=r"^data: expected keys \['x', 'y'\], missing \['y'\]"):
        check_keys("data", {"x": 1}, ("x", "y"))
    with pytest.raises(
        ValueError,
        match=r"^data: expected keys \['x'\] \(\+ optional \['s'\]\), "
        r"missing \['x'\]; unknown key\(s\) \['q'\] \(received keys \['q', 's'\]\)",
    ):
        check_keys("data", {"s": 1, "q": 2}, ("x",), ("s",))
    with pytest.raises(ValueError, match=r"^prior: expected keys among \['a'\], unknown key"):
        check_keys("prior", {"b": 1}, (), ("a",))
    with pytest.raises(ValueError, match=r"\(\+ any others\), missing \['y'\]"):
        check_keys("p", {"x": 1, "z": 0}, ("x", "y"), None)


def test_check_seed_is_torch_seed_range_everywhere():
    import torch

    from bayesphys._checks import check_seed
    from bayesphys.diagnostics import sbc_ranks
    from bayesphys.problems.populations import linear_map

    assert check_seed("seed", 2**64 - 1) == 2**64 - 1 and check_seed("seed", -(2**63)) == -(2**63)
    assert check_seed("seed", np.int64(3)) == 3 and check_seed("seed", 3.0) == 3
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match=r"seed: expected an int in \[-2\*\*63, 2\*\*64 - 1\]"):
            check_seed("seed", bad)
    with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*64 - 1\]"):
        check_seed("seed", -1, minimum=0)
    with pytest.raises(TypeError, match="seed: expected an int"):
        check_seed("seed", True)
    # component seeds went straight to torch, whose overflow error did not name the argument
    t, d = torch.zeros(4, 1), torch.zeros(4, 9, 1)
    with pytest.raises(ValueError, match="seed: expected an int in"):
        sbc_ranks(t, d, seed=2**64)
    with pytest.raises(ValueError, match="seed: expected an int in"):
        linear_map(n_train=2, n_cal=0, n_test=1, n_points=8, seed=2**64)


def test_check_optional_seed_passes_none_and_checks_the_rest():
    from bayesphys._checks import check_optional_seed
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.rgnp import poisson_test_set

    assert check_optional_seed("seed", None) is None and check_optional_seed("seed", 3.0) == 3
    with pytest.raises(ValueError, match=r"local_seed: expected an int in \[0, 2\*\*64 - 1\]"):
        check_optional_seed("local_seed", -1, minimum=0)
    with pytest.raises(TypeError, match="seed: expected an int"):
        check_optional_seed("seed", "1")
    # the components that take an optional seed use it (one check, one message)
    with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*64 - 1\]"):
        poisson_test_set(2, seed=-1)
    with pytest.raises(ValueError, match=r"seed: expected an int in \[-2\*\*63"):
        MetaFlowMatching(dim=2, seed=2**64)


def test_derived_seeds_at_the_top_of_the_range():
    # the diagnostics derive generators from seed + k: at seed 2**64 - 1 that overflowed
    # inside torch; wrapped modulo 2**64 it is torch's own reading of seed - 2**64 + k
    import torch

    from bayesphys._checks import offset_seed
    from bayesphys.diagnostics import hdi_pit, sbc_pit, tarp

    assert offset_seed(2**64 - 1, 1) == 0 and offset_seed(-1, 1) == 0 and offset_seed(5, 2) == 7
    t, d = torch.zeros(6, 2), torch.randn(6, 9, 2, generator=torch.Generator().manual_seed(0))
    ranks = torch.randint(0, 10, (6, 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(sbc_pit(ranks, 9, seed=2**64 - 1), sbc_pit(ranks, 9, seed=-1))
    assert torch.equal(hdi_pit(t, d, seed=2**64 - 1), hdi_pit(t, d, seed=-1))
    tarp(t, d, seed=2**64 - 1)  # raised "Overflow when unpacking long long"


def test_check_range_accepts_ordered_pairs_and_names_the_argument():
    from bayesphys._checks import check_range

    assert check_range("r", (0, 1.5)) == (0.0, 1.5)
    assert check_range("r", np.array([-2.0, 3.0])) == (-2.0, 3.0)
    for bad, err, msg in [
        ((1, 1), ValueError, "r: expected lo < hi"),
        ((2, 1), ValueError, "r: expected lo < hi"),
        ((0, 1, 2), ValueError, r"r: expected \(lo, hi\)"),
        (3.0, ValueError, r"r: expected \(lo, hi\)"),
        ((0, float("nan")), ValueError, r"r\[1\]"),
        (("a", 1), TypeError, r"r\[0\]"),
    ]:
        with pytest.raises(err, match=msg):
            check_range("r", bad)


def test_check_int_sequence_names_the_entry_and_refuses_strings_and_empties():
    import torch

    from bayesphys._checks import check_int_sequence

    assert check_int_sequence("s", [3, 4]) == (3, 4)
    assert check_int_sequence("s", torch.tensor([1, 2])) == (1, 2)
    assert check_int_sequence("s", np.array([5])) == (5,)
    assert check_int_sequence("s", (), nonempty=False) == ()
    for bad, err, msg in [
        ("12", TypeError, "s: expected a sequence of ints, received str"),
        (3, TypeError, "s: expected a sequence of ints, received int"),
        ([], ValueError, "s: expected at least one entry"),
        ([2, 0], ValueError, r"s\[1\]: expected an int >= 1"),
        ([2, 1.5], TypeError, r"s\[1\]"),
    ]:
        with pytest.raises(err, match=msg):
            check_int_sequence("s", bad, minimum=1)


def test_stream_seed_separates_tags_and_keys():
    from bayesphys import stream_seed

    seeds = {
        stream_seed(s, t, *k) for s in (0, 1, -1) for t in ("a", "b") for k in ((), (0,), (1, 0))
    }
    assert len(seeds) == 18 and all(0 <= x < 2**64 for x in seeds)
    assert stream_seed(5, "a", 2) == stream_seed(5, "a", 2)
    assert stream_seed(-1, "a") == stream_seed(2**64 - 1, "a")  # torch's reading of -1
    with pytest.raises(ValueError, match="keys: expected an int >= 0"):
        stream_seed(0, "a", -1)
    # numpy would split 2**32 into the words (0, 1): refused rather than colliding
    with pytest.raises(ValueError, match=r"keys: expected ints in \[0, 2\*\*32\)"):
        stream_seed(0, "a", 2**32)
    with pytest.raises(TypeError, match="seed: expected an int"):
        stream_seed(1.5, "a")
    with pytest.raises(ValueError, match="seed: expected an int in"):
        stream_seed(2**64, "a")
    with pytest.raises(TypeError, match="tag: expected a str"):
        stream_seed(0, 3)


def test_check_increasing_names_the_first_pair_out_of_order():
    """The one order check of grids, meshes and positions (ProbConserv's trapezoid weights
    and shock positions, the neural-process test meshes, GP-PDE axes, the diagnostics grid)."""
    from bayesphys._checks import check_increasing

    check_increasing("x", torch.tensor([0.0, 1.0, 2.0]))
    check_increasing("x", np.array([0.0, 1.0, 1.0]), strict=False)  # repeats allowed
    with pytest.raises(
        ValueError,
        match=r"^x: expected strictly increasing grid, received "
        r"x\[1\] = 1 then x\[2\] = 1$",
    ):
        check_increasing("x", [0.0, 1.0, 1.0], what="grid")
    with pytest.raises(
        ValueError,
        match=r"x: expected non-decreasing values, received "
        r"x\[1, 0\] = 2 then x\[1, 1\] = 1; sort$",
    ):
        check_increasing("x", torch.tensor([[0.0, 1.0], [2.0, 1.0]]), strict=False, hint="; sort")
    with pytest.raises(ValueError, match=r"^test\['t'\]: .* received t\[0\] = 3"):
        check_increasing("test['t']", [3.0, 2.0], label="t")


def test_check_dense_memory_refuses_warns_or_passes_by_the_device_memory(memory_limit):
    """The shared size guard: a refusal naming the argument, the bytes and the alternative
    above the device's memory, a warning above half of it, silence below."""
    import warnings

    from bayesphys._checks import check_dense_memory, dense_memory_limit, format_bytes

    real = dense_memory_limit("cpu")
    assert real is None or real > 2**20
    assert dense_memory_limit("meta") is None  # unknown: nothing is refused
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**30) == "3.0 GiB"
    memory_limit(4096)
    kw = {"what": "a dense [32, 32] matrix", "alternative": "use a diagonal one"}
    with pytest.raises(
        MemoryError,
        match=r"^n: a dense \[32, 32\] matrix would need about 8\.0 KiB of memory, more than "
        r"the 4\.0 KiB of the CPU; use a diagonal one$",
    ):
        check_dense_memory("n", 8192, **kw)
    with pytest.warns(UserWarning, match=r"^n: .* 3\.0 KiB of memory, over half of the 4\.0 KiB"):
        check_dense_memory("n", 3072, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_dense_memory("n", 2048, **kw)
    memory_limit(None)
    check_dense_memory("n", 10**30, **kw)  # no known limit: no refusal


def test_check_dense_memory_at_exactly_the_device_memory_warns_and_does_not_refuse(
    memory_limit,
):
    # "more than the device has" is refused; exactly as much may still fit: the warning
    from bayesphys._checks import check_dense_memory

    memory_limit(4096)
    kw = {"what": "a dense [32, 16] matrix", "alternative": "use a diagonal one"}
    with pytest.warns(UserWarning, match=r"^n: .* 4\.0 KiB of memory, over half of the 4\.0 KiB"):
        check_dense_memory("n", 4096, **kw)
    with pytest.raises(MemoryError, match="more than the 4.0 KiB"):
        check_dense_memory("n", 4097, **kw)


def test_dense_memory_checked_keeps_the_refusal_and_drops_the_repeated_warning(memory_limit):
    """Within dense_memory_checked (a caller that checked the sizes and warned, naming its
    user's argument) the guard refuses as always and warns no second time; after the block,
    and in another thread meanwhile, it warns again."""
    import threading
    import warnings

    from bayesphys._checks import check_dense_memory, dense_memory_checked

    memory_limit(4096)
    kw = {"what": "a dense [32, 32] matrix", "alternative": "use a diagonal one"}
    other: list[list[warnings.WarningMessage]] = []

    def elsewhere() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            check_dense_memory("n", 3072, **kw)
        other.append(seen)

    with dense_memory_checked():
        with pytest.raises(MemoryError, match="^x: .* more than the 4.0 KiB"):
            check_dense_memory("x", 8192, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_dense_memory("x", 3072, **kw)  # was a second warning, naming x
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert len(other[0]) == 1  # not the caller's block
    with pytest.warns(UserWarning, match=r"^n: .* over half of the 4\.0 KiB"):
        check_dense_memory("n", 3072, **kw)


def test_host_memory_is_the_lower_of_the_machine_and_the_cgroup_limit(monkeypatch):
    import bayesphys._checks as checks

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        for cgroup, want in ((None, total), (total // 4, total // 4), (total * 4, total)):
            monkeypatch.setattr(checks, "_cgroup_limit", lambda cg=cgroup: cg)
            checks._host_memory.cache_clear()
            assert checks._host_memory() == want
    finally:
        monkeypatch.undo()
        checks._host_memory.cache_clear()


def test_format_bytes_switches_unit_at_1024():
    from bayesphys._checks import format_bytes

    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.0 KiB"
    assert format_bytes(1536 * 2**20) == "1.5 GiB"
    assert format_bytes(2**50) == "1024.0 TiB"  # no unit past TiB


def test_check_bool_takes_numpy_bools_and_as_scalar_takes_one_element_arrays():
    from bayesphys._checks import as_scalar, check_bool

    assert check_bool("flag", np.bool_(True)) is True and check_bool("flag", np.False_) is False
    with pytest.raises(TypeError, match="flag: expected True or False, received int 1"):
        check_bool("flag", 1)
    # a one-element array of any shape, as a one-element tensor, is its number
    assert as_scalar(np.array([2.5])) == 2.5 and isinstance(as_scalar(np.array([[3]])), int)
    assert as_scalar(torch.ones(1, 1)) == 1.0
    two = np.zeros(2)
    assert as_scalar(two) is two  # anything else as it is


def test_offset_seed_wraps_modulo_two_to_the_64_and_stream_seed_follows_its_formula():
    from bayesphys import stream_seed
    from bayesphys._checks import offset_seed

    assert offset_seed(2**63, 0) == 2**63 and offset_seed(-2, 0) == 2**64 - 2
    assert offset_seed(2**63 - 1, 2**63) == 2**64 - 1
    # numpy's SeedSequence of seed mod 2**64 with spawn key (crc32(tag), *keys)
    import zlib

    for seed, tag, keys in ((0, "a", ()), (-3, "train", (4, 1)), (2**64 - 1, "x/y", (7,))):
        seq = np.random.SeedSequence(seed % 2**64, spawn_key=(zlib.crc32(tag.encode()), *keys))
        assert stream_seed(seed, tag, *keys) == int(seq.generate_state(1, np.uint64)[0])


def test_check_callback_passes_a_callable_without_a_signature_and_refuses_a_wrong_one():
    """A callable Python cannot introspect (a builtin such as ``max``, a C extension's
    function) cannot be checked beforehand: it passes, and a wrong call fails when made."""
    from bayesphys._checks import check_callback

    check_callback("callback", max, (1, 0), ("model", "step"))
    check_callback("callback", lambda model, step: None, (1, 0), ("model", "step"))
    with pytest.raises(TypeError, match=r"^callback: expected a callable callback\(model, step\)"):
        check_callback("callback", lambda model: None, (1, 0), ("model", "step"))


def test_check_increasing_takes_a_single_point_or_a_scalar_as_ordered():
    from bayesphys._checks import check_increasing

    for x in ([0.0], np.array(2.0), torch.zeros(3, 1), torch.zeros(0)):
        check_increasing("x", x)  # no pair to be out of order
    with pytest.raises(ValueError, match=r"x\[1, 0\] = 1 then x\[1, 1\] = 0"):
        check_increasing("x", torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_cgroup_limit_reads_the_v2_then_the_v1_memory_limit(monkeypatch):
    """In a container the memory guards use its cgroup limit: the bytes in cgroup v2's
    ``/sys/fs/cgroup/memory.max``, or, where that file is absent, in cgroup v1's
    ``/sys/fs/cgroup/memory/memory.limit_in_bytes`` (only v2 was read: a v1 container's limit
    was missed); none where the file reads ``max`` or both are absent."""
    import io

    import bayesphys._checks as checks

    v2, v1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    read: list[str] = []

    def fake_open(files):
        def opener(path, *args, **kwargs):
            read.append(path)
            if path not in files:
                raise FileNotFoundError(path)
            return io.StringIO(files[path])

        return opener

    cases = [
        ({v2: "8589934592\n", v1: "4096\n"}, 8589934592, [v2]),  # v2 preferred
        ({v2: "max\n", v1: "4096\n"}, None, [v2]),
        ({v1: "2147483648\n"}, 2147483648, [v2, v1]),  # a v1 container
        ({v1: "9223372036854771712\n"}, None, [v2, v1]),  # v1's "no limit"
        ({}, None, [v2, v1]),
    ]
    for files, want, opened in cases:
        read.clear()
        monkeypatch.setattr(checks, "open", fake_open(files), raising=False)
        assert checks._cgroup_limit() == want, files
        assert read == opened


@pytest.mark.parametrize(
    ("v2", "v1", "want"),
    [
        ("1073741824\n", None, 1073741824),
        ("max\n", None, None),
        (None, "1073741824\n", 1073741824),
        (None, "9223372036854771712\n", None),  # 2**63 less a 4 KiB page: no limit
        (None, "9223372036854710272\n", None),  # the same with 64 KiB pages
        (None, None, None),
        ("", "1073741824\n", None),  # the v2 file decides, even empty or garbled
        ("12 GB\n", None, None),
        ("-1\n", None, None),
        (None, "0x400\n", None),
        (None, "\u00b2\n", None),  # a digit to str.isdigit, not to int()
        (None, b"\xff\xfe", None),  # not ASCII
        ("0\n", None, None),
    ],
)
def test_cgroup_limit_from_files(tmp_path, v2, v1, want):
    import bayesphys._checks as checks

    files = (str(tmp_path / "memory.max"), str(tmp_path / "memory.limit_in_bytes"))
    for path, content in zip(files, (v2, v1)):
        if isinstance(content, bytes):
            Path(path).write_bytes(content)
        elif content is not None:
            Path(path).write_text(content, encoding="utf-8")
    assert checks._cgroup_limit(files) == want


def test_dense_memory_limit_is_unknown_where_the_host_cannot_tell(monkeypatch):
    """No ``os.sysconf`` page counts (not POSIX) and a CUDA device without CUDA: no limit,
    so nothing is refused."""
    import bayesphys._checks as checks

    def no_sysconf(name):
        raise ValueError(f"unrecognized configuration name {name!r}")

    try:
        monkeypatch.setattr(checks.os, "sysconf", no_sysconf)
        checks._host_memory.cache_clear()
        assert checks._host_memory() is None
        assert checks.dense_memory_limit("cpu") is None
        checks.check_dense_memory("n", 10**30, what="a dense matrix", alternative="none")
    finally:
        monkeypatch.undo()
        checks._host_memory.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert checks.dense_memory_limit("cuda") is None
    assert checks.dense_memory_limit(torch.device("cuda", 0)) is None


def test_as_real_array_names_the_argument_for_what_is_no_real_array():
    from bayesphys._checks import as_real_array

    got = as_real_array("v", torch.tensor([[1, 2], [3, 4]]))
    assert got.dtype == np.float64 and got.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert as_real_array("v", [np.nan]).shape == (1,)  # finiteness is the caller's check
    with pytest.raises(TypeError, match=r"^v: expected an array of real numbers, received list$"):
        as_real_array("v", [[1.0, 2.0], [3.0]])  # ragged: numpy's unnamed ValueError before
    with pytest.raises(TypeError, match=r"^v: expected an array of real numbers, received str$"):
        as_real_array("v", "abc")
    with pytest.raises(TypeError, match=r"^v: expected real values, received complex$"):
        as_real_array("v", np.ones(2) + 1j)
