"""Checkpoint files name their format; a file a newer release wrote is refused by name (an
older loader ignored a setting it did not know, e.g. a glioma model's time scheme, and gave
another model silently: posterior means off by 0.46)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from bayesphys import __version__, _checkpoint, load_checkpoint, save_checkpoint
from bayesphys._checkpoint import CHECKPOINT_FORMAT
from bayesphys.gp_pde import GPPDESolver
from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from tests.tiny_models import tiny_rgnp


def _rewrite(path, edit):
    ck = torch.load(path, weights_only=False)
    edit(ck)
    torch.save(ck, path)


def test_a_checkpoint_records_its_format_and_a_newer_one_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={}, state={})
    ck = load_checkpoint(path, kind="toy")
    assert ck["format"] == CHECKPOINT_FORMAT and ck["version"] == __version__
    _rewrite(path, lambda c: c.pop("format"))  # files written before it was recorded
    assert load_checkpoint(path, kind="toy")["state"] == {}
    _rewrite(path, lambda c: c.update(format=CHECKPOINT_FORMAT + 1, version="9.0"))
    with pytest.raises(ValueError, match=r"bayesphys 9\.0 in checkpoint format 2.*upgrade"):
        load_checkpoint(path, kind="toy")


def test_loaders_refuse_settings_and_state_they_do_not_know(tmp_path):
    gp = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=0)
    p = synthetic_patient(0, phantom=brain_phantom(24, 4.0))
    glioma = GliomaModel.from_patient(p)
    rgnp = tiny_rgnp()
    for name, model, where in (
        ("gp", gp, "config"),
        ("gp_state", gp, "state"),
        ("glioma", glioma, "config"),
        ("glioma_state", glioma, "state"),
    ):
        path = model.save(tmp_path / f"{name}.pt")
        type(model).load(path)  # as written: loads
        _rewrite(path, lambda c, w=where: c[w].update(new_in_a_later_release=1))
        with pytest.raises(ValueError, match=r"\['new_in_a_later_release'\].*upgrade"):
            type(model).load(path)
    path = rgnp.save(tmp_path / "rgnp.pt")
    _rewrite(path, lambda c: c["config"]["config"].update(new_in_a_later_release=1))
    with pytest.raises(ValueError, match=r"settings \['new_in_a_later_release'\]"):
        type(rgnp).load(path)


def test_loading_leaves_the_callers_torch_allow_list_as_it_was(tmp_path):
    """torch's ``safe_globals`` context removed the numpy globals on leaving, also when the
    caller had allowed them before: every load_checkpoint undid a user's add_safe_globals,
    and a load in another thread failed under it (review of 2026-12-03)."""
    import numpy as np

    from bayesphys._checkpoint import _numpy_globals

    ckpt = save_checkpoint(
        tmp_path / "c.pt", kind="toy", config={"scale": np.float64(2.0)}, state={"w": torch.ones(2)}
    )
    mine = tmp_path / "mine.pt"
    torch.save({"a": np.arange(3)}, mine)
    before = set(torch.serialization.get_safe_globals())
    try:
        torch.serialization.add_safe_globals(_numpy_globals())
        assert load_checkpoint(ckpt, kind="toy")["config"]["scale"] == 2.0
        assert list(torch.load(mine, weights_only=True)["a"]) == [0, 1, 2]
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(list(before))
    # and a load with nothing allowed before leaves nothing behind
    assert load_checkpoint(ckpt, kind="toy")["config"]["scale"] == 2.0
    assert set(torch.serialization.get_safe_globals()) == before


def _respell_numpy(path, new_path):
    """The checkpoint as the other numpy major writes it: numpy 2 pickles name
    ``numpy._core.multiarray``, 1.x ``numpy.core.multiarray`` (torch matches the text)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    mine, other = (
        (b"numpy._core.multiarray", b"numpy.core.multiarray")
        if int(np.__version__.split(".")[0]) >= 2
        else (b"numpy.core.multiarray", b"numpy._core.multiarray")
    )
    pkl = next(n for n in members if n.endswith("/data.pkl"))
    assert mine in members[pkl]
    members[pkl] = members[pkl].replace(mine, other)
    with zipfile.ZipFile(new_path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return new_path


@pytest.mark.skipif(
    not _checkpoint._named_globals_supported(),
    reason="this torch takes no named allow-list entries",
)
def test_numpy_values_load_across_numpy_majors(tmp_path):
    config = {"scale": np.float64(2.5), "arr": np.arange(3), "dt": np.dtype("float32")}
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config=config, state={})
    other = _respell_numpy(path, tmp_path / "other.pt")
    back = load_checkpoint(other, kind="toy")["config"]
    assert back["scale"] == 2.5 and type(back["scale"]) is np.float64
    assert back["arr"].tolist() == [0, 1, 2] and back["dt"] == np.dtype("float32")


def _copy_edited(path, name, edit):
    """A copy of the checkpoint at ``path``, as ``name`` beside it, edited by ``edit``."""
    ck = torch.load(path, weights_only=False)
    edit(ck)
    new = path.parent / name
    torch.save(ck, new)
    return new


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved checkpoint of every loader, by name: (class, path)."""
    from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
    from tests.meta_fm.test_centered import _contractions
    from tests.tiny_models import TINY_MFM

    d = tmp_path_factory.mktemp("saved")
    data = _contractions(12, 0)
    lg = linear_gaussian_problem(seed=0)
    models = {
        "gp": GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=0),
        "glioma": GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(24, 4.0))),
        # an adaptive grid saves its state too
        "rgnp": tiny_rgnp(grid="adaptive"),
        "mfm": MetaFlowMatching(data, seed=0, **TINY_MFM),
        "ensemble": MFMEnsemble(data, members=3, seed=0, **TINY_MFM),
        "field": ConjugateGaussianField(lg["x"], lg["idx"], lg["y"], noise=0.1),
        "probconserv": ProbConserv("stefan", hidden=8, n_samples=4, seed=0),
    }
    return {k: (type(m), m.save(d / f"{k}.pt")) for k, m in models.items()}


def _set(where, key, value):
    """An edit that sets ``ck[*where][key] = value``."""

    def edit(ck):
        part = ck
        for w in where:
            part = part[w]
        part[key] = value

    return edit


@pytest.mark.parametrize(
    "name, where, what",
    [
        ("rgnp", ("config",), "settings"),
        ("rgnp", ("state",), "state entries"),
        ("rgnp", ("state", "variance_scale"), "variance scales"),
        ("mfm", ("config",), "settings"),
        ("ensemble", ("config",), "settings"),
        ("ensemble", ("config", "members", 1), "member 1 settings"),
        ("field", ("config",), "settings"),
        ("field", ("state",), "state entries"),
        ("probconserv", ("state",), "state entries"),
    ],
)
def test_every_loader_refuses_entries_it_does_not_know(saved, name, where, what):
    """These loaders read what they knew and dropped the rest: a newer release's entry (a
    setting, a state entry, a variance scale) loaded silently into another model."""
    cls, path = saved[name]
    cls.load(path)  # as written: loads
    bad = _copy_edited(path, f"{name}_new.pt", _set(where, "new_in_a_later_release", 1))
    with pytest.raises(ValueError, match=rf"{what} \['new_in_a_later_release'\].*upgrade"):
        cls.load(bad)


def test_the_entries_each_loader_knows_are_those_save_writes(saved):
    """A known list that misses an entry save() writes refuses every checkpoint; one that
    lists an entry save() no longer writes lets a stale one through: the lists are the saved
    keys (and a loader requires none that save() does not write)."""
    from bayesphys.gp_pde import _persist as gp_io
    from bayesphys.meta_fm import _persist as mfm_io
    from bayesphys.neural_process import _persist as rgnp_io
    from bayesphys.odil import glioma_io
    from bayesphys.probconserv import _persist as pc_io
    from bayesphys.problems import linear_gaussian as field_io

    def keys(name, part):
        return set(torch.load(saved[name][1], weights_only=False)[part])

    assert keys("gp", "state") == gp_io._STATE_KEYS
    assert set(gp_io._REQUIRED_SETTINGS) <= keys("gp", "config")
    assert keys("glioma", "state") == glioma_io._STATE_KEYS
    assert set(glioma_io._REQUIRED_SETTINGS) <= keys("glioma", "config")
    assert keys("rgnp", "config") == rgnp_io._CONFIG_KEYS
    # ``calibrated_at``: written only for a calibration made for earlier weights
    assert keys("rgnp", "state") | {"calibrated_at"} == rgnp_io._STATE_KEYS
    assert keys("mfm", "config") == mfm_io._CONFIG_KEYS >= set(mfm_io._REQUIRED_CONFIG)
    assert keys("ensemble", "config") == set(mfm_io._ENSEMBLE_CONFIG_KEYS)
    members = torch.load(saved["ensemble"][1], weights_only=False)["config"]["members"]
    assert all(set(m) == mfm_io._CONFIG_KEYS for m in members)
    assert keys("field", "config") == field_io._CONFIG_KEYS
    assert keys("field", "state") == field_io._STATE_KEYS
    assert keys("probconserv", "state") | {"calibrated_at"} == pc_io._STATE_KEYS


def _pop(where, key):
    def edit(ck):
        part = ck
        for w in where:
            part = part[w]
        part.pop(key)

    return edit


@pytest.mark.parametrize(
    "name, edit, match",
    [
        # each raised a bare error that named neither the file nor, often, the entry
        ("gp", _pop(("state",), "u"), r"lacks the state entries \['u'\]"),  # KeyError: 'u'
        ("gp", _set(("state",), "axes", 3), r"state\['axes'\].*not iterable"),  # TypeError
        ("gp", _pop(("config",), "beta"), r"lacks the settings \['beta'\]"),
        ("glioma", _pop(("config",), "prior"), r"lacks the settings \['prior'\]"),
        ("glioma", _set(("state",), "dtype", 3), r"dtype: expected torch.dtype"),  # removeprefix
        ("rgnp", _pop(("state",), "modules"), r"lacks the state entries \['modules'\]"),
        ("rgnp", _set(("config",), "config", 3), r"RGNPConfig settings as a int"),
        ("mfm", _pop(("config",), "dim"), r"lacks the settings \['dim'\]"),
        # a raw RuntimeError of the generator's state size
        ("mfm", _set(("config",), "train_rng", torch.zeros(5, dtype=torch.uint8)), r"RNG state"),
        ("ensemble", _pop(("config",), "seed"), r"lacks the settings \['seed'\]"),
        ("field", _pop(("config",), "noise"), r"lacks the settings \['noise'\]"),
        ("field", _set(("state",), "log_lengthscale", "x"), r"log_lengthscale: expected"),
        # AttributeError: module 'torch' has no attribute 'float65'
        ("probconserv", _set(("state",), "dtype", "float65"), r"dtype: unknown dtype 'float65'"),
        ("probconserv", _set(("state",), "dtype", 3), r"dtype: expected torch.dtype"),
        # HybridCalibration.__init__() got an unexpected keyword argument
        ("probconserv", _set(("state",), "calibration", {"zzz": 1}), r"unknown key\(s\) \['zzz'\]"),
        ("probconserv", _set(("state",), "problem_class", "Mine"), r"problem_class.*a Mine"),
        ("probconserv", _set(("state",), "net", 3), r"rebuild a 'probconserv' model"),
    ],
)
def test_loaders_name_the_file_of_a_damaged_checkpoint(saved, name, edit, match):
    cls, path = saved[name]
    bad = _copy_edited(path, f"{name}_bad.pt", edit)
    with pytest.raises(ValueError, match=rf"^path: {re.escape(str(bad))}\b") as info:
        cls.load(bad)
    assert re.search(match, str(info.value)), str(info.value)
    assert str(info.value).count(str(bad)) == 1  # named once, not by every layer


def test_rebuilding_names_the_file_and_passes_other_errors(tmp_path):
    from bayesphys._checkpoint_rebuild import rebuilding, require_entries

    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=r"lacks the settings \['b'\] that save\(\) writes"):
        require_entries({"a": 1}, path, "settings", ["a", "b"])
    with pytest.raises(ValueError, match=r"holds its settings as a list, expected a dict"):
        require_entries([1], path, "settings", [])
    for err in (TypeError("t"), KeyError("k"), IndexError("i"), RuntimeError("r")):
        with pytest.raises(
            ValueError, match=rf"^path: {re.escape(str(path))}: its entries"
        ) as info:
            with rebuilding(path, "toy"):
                raise err
        assert info.value.__cause__ is err
    with pytest.raises(ValueError, match=rf"^path: {re.escape(str(path))}: x: bad$"):
        with rebuilding(path, "toy"):
            raise ValueError("x: bad")
    with pytest.raises(ValueError, match=r"entry: x: bad"):
        with rebuilding(path, "toy", "entry"):
            raise ValueError("x: bad")
    # a short file name inside a check's message is not "already naming the file"
    short = type(tmp_path)("e")  # a relative name, as a user may pass it
    with pytest.raises(ValueError, match=rf"^path: {re.escape(str(short))}: its entries"):
        with rebuilding(short, "toy"):
            raise TypeError("num_mixtures: expected an int, received str 'two'")
    # a machine short of memory is not a damaged file
    oom = RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried")
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        with rebuilding(path, "toy"):
            raise oom
    if hasattr(torch, "OutOfMemoryError"):
        with pytest.raises(torch.OutOfMemoryError):
            with rebuilding(path, "toy"):
                raise torch.OutOfMemoryError("CUDA out of memory")
    # a programming error is not taken for a damaged file
    with pytest.raises(AttributeError, match="nothing"):
        with rebuilding(path, "toy"):
            raise AttributeError("nothing")
    # nor is the caller's own argument: the device is checked before the file
    gp = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=0)
    with pytest.raises(ValueError, match=r"^device: "):
        GPPDESolver.load(gp.save(path), device="tpu")


def test_rebuilding_passes_the_text_of_a_plain_valueerror_only(tmp_path):
    """A plain ValueError is a check's own message naming the value, kept as it is; a library's
    ValueError subclass (a decode or JSON error of a damaged entry) names no argument, so it
    is reported as an entry that does not rebuild the model, with its type."""
    import json

    from bayesphys._checkpoint_rebuild import rebuilding

    path = tmp_path / "m.pt"
    for raise_it, kind in (
        (lambda: b"\xff".decode("utf-8"), "UnicodeDecodeError"),
        (lambda: json.loads("{"), "JSONDecodeError"),
    ):
        with pytest.raises(
            ValueError,
            match=rf"^path: {re.escape(str(path))}: its entries do not rebuild a 'toy' model "
            rf"\({kind}: .*\); the file is damaged",
        ) as info:
            with rebuilding(path, "toy"):
                raise_it()
        assert type(info.value.__cause__).__name__ == kind


def test_a_refused_save_removes_the_folders_it_made(tmp_path):
    """A save refused after the folders for the file were made (a value the loader could
    not read back) left them behind, empty; a folder that existed before stays."""
    from pathlib import Path

    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "new" / "deeper" / "m.pt"
    with pytest.raises(TypeError):
        save_checkpoint(target, kind="test", config={}, state={"where": Path("x")})
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "new").exists()
    assert save_checkpoint(target, kind="test", config={}, state={"a": 1}).exists()


@pytest.mark.parametrize("fmt", [0, -1, 1.0, "1", None, True])
def test_a_format_no_release_writes_is_refused_as_damaged(tmp_path, fmt):
    # formats count from 1: a file claiming format 0 loaded as if it were format 1, and a
    # non-integer one was refused with advice to upgrade, which no release would help with
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={}, state={})
    _rewrite(path, lambda c: c.update(format=fmt))
    with pytest.raises(ValueError, match=r"format .*which no bayesphys release writes") as err:
        load_checkpoint(path, kind="toy")
    assert "upgrade" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("key", ["kind", "config", "state"])
def test_a_file_without_one_of_the_three_entries_is_refused_by_name(tmp_path, key):
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={"a": 1}, state={"w": 1})
    if key == "kind":  # without its kind it is no checkpoint (it said "received None")
        _rewrite(path, lambda ck: ck.pop(key))
        with pytest.raises(ValueError, match=r"is not a bayesphys checkpoint .*holds a dict "):
            load_checkpoint(path, kind="toy")
        return
    _rewrite(path, lambda ck: ck.pop(key))
    with pytest.raises(ValueError, match=rf"checkpoint at .* lacks \['{key}'\]"):
        load_checkpoint(path, kind="toy")


def test_loading_with_an_empty_allow_list_leaves_it_empty(tmp_path):
    # whatever earlier loads in this process did: the numpy globals a load allows are removed
    # again when it ends (a caller's allow-list is not grown by a load)
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={"s": np.float64(2.0)}, state={})
    before = list(torch.serialization.get_safe_globals())
    torch.serialization.clear_safe_globals()
    try:
        assert load_checkpoint(path, kind="toy")["config"]["s"] == 2.0
        assert torch.serialization.get_safe_globals() == []
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_settings_assigned_after_construction_are_refused_whichever_changed():
    from dataclasses import dataclass

    from bayesphys._built_settings import check_built_settings, check_shape_settings, shape_settings

    @dataclass
    class Cfg:
        grid: int = 8
        dt: float = 0.1

    cfg = Cfg()
    built = shape_settings(cfg, ("grid", "dt"))
    assert built == {"grid": 8, "dt": 0.1} and shape_settings({"grid": 3}, ["grid"]) == {"grid": 3}
    check_built_settings(cfg, built, "Toy", "fit")  # unchanged: passes
    for name, value in (("grid", 16), ("dt", 0.2)):
        changed = Cfg(**{**built, name: value})
        with pytest.raises(
            ValueError,
            match=rf"^fit: config {name}={value!r} was assigned after the Toy was built with "
            rf"{name}={built[name]!r}, which it read at construction only",
        ):
            check_built_settings(changed, built, "Toy", "fit")
        with pytest.raises(ValueError, match=rf"^save: config {name}={value!r} was assigned"):
            check_shape_settings(changed, built, "Toy")
    # a mapping config, both settings changed: both named
    with pytest.raises(ValueError, match=r"config grid=1, dt=0\.5 was assigned .* grid=8, dt=0\.1"):
        check_built_settings({"grid": 1, "dt": 0.5}, built, "Toy", "posterior")


def test_cpu_copy_is_a_snapshot_of_its_own_keeping_the_containers():
    from bayesphys._checkpoint import cpu_copy

    net = torch.nn.Linear(2, 1)
    state = net.state_dict()
    opt_like = {"state": {0: {"step": torch.tensor(3.0)}}, "groups": ({"lr": 0.1}, [1, 2])}
    snap, snap_opt = cpu_copy(state), cpu_copy(opt_like)
    with torch.no_grad():
        net.weight.add_(1.0)
        opt_like["state"][0]["step"].add_(1.0)
    opt_like["groups"][0]["lr"] = 5.0
    # later training leaves the snapshot as it was
    torch.testing.assert_close(snap["weight"], net.weight.detach() - 1.0)
    assert float(snap_opt["state"][0]["step"]) == 3.0 and snap_opt["groups"][0]["lr"] == 0.1
    # the containers keep their types, and a state dict its metadata (load_state_dict reads it)
    assert type(snap) is type(state) and snap._metadata == state._metadata
    assert type(snap_opt["groups"]) is tuple and type(snap_opt["groups"][1]) is list
    net.load_state_dict(snap)
    torch.testing.assert_close(net.weight.detach(), snap["weight"])


def test_a_refused_save_keeps_a_made_folder_something_else_wrote_into(tmp_path):
    """Only empty folders are removed: one that a file appeared in meanwhile stays, with that
    file, and so do the folders above it; the save's own error is the one raised."""
    target = tmp_path / "new" / "deeper" / "m.pt"

    class WritesBeside:  # another writer puts a file into the new folder during the save
        def __reduce__(self):
            (target.parent / "other.txt").write_text("kept")
            raise RuntimeError("state does not pickle")

    with pytest.raises(RuntimeError, match="^state does not pickle$"):
        save_checkpoint(target, kind="test", config={}, state={"w": WritesBeside()})
    assert (target.parent / "other.txt").read_text() == "kept"
    assert sorted(p.name for p in target.parent.iterdir()) == ["other.txt"]


def test_a_value_no_single_entry_explains_is_refused_naming_its_type(tmp_path):
    """An object the loader refuses that no entry holds in plain sight (an attribute set on a
    tensor) is named by its type, and nothing is written."""
    import pathlib

    t = torch.zeros(2)
    t.source = pathlib.PurePosixPath("/data/run1")
    with pytest.raises(
        TypeError,
        match=r"^config or state: holds a value a checkpoint cannot hold \(an object of type "
        r"pathlib\.PurePosixPath, e\.g\. an attribute set on a tensor\); load_checkpoint",
    ):
        save_checkpoint(tmp_path / "m.pt", kind="test", config={}, state={"w": t})
    assert list(tmp_path.iterdir()) == []


def test_only_a_file_that_does_not_start_as_torch_s_is_called_not_a_checkpoint(tmp_path):
    """The 'not a bayesphys checkpoint' verdict needs the file's first bytes: a zip header
    (torch's format, also cut short) or the legacy magic number is a damaged checkpoint, and
    a file that cannot be read is left to the load's own message."""
    from bayesphys._checkpoint import _LEGACY_TORCH_MAGIC, _torch_file

    for name, head, want in (
        ("zip", b"PK\x03\x04", True),
        ("legacy", _LEGACY_TORCH_MAGIC + b"rest", True),
        ("text", b"hello world, not torch", False),
        ("empty", b"", False),
    ):
        (tmp_path / name).write_bytes(head)
        assert _torch_file(tmp_path / name) is want, name
    assert _torch_file(tmp_path / "gone") is True
    assert _torch_file(tmp_path) is True  # a folder cannot be read as a file either


def test_a_legacy_format_file_cut_short_is_refused_as_damaged(tmp_path):
    """torch's pre-zip format read from a truncated file raised ``struct.error`` ("unpack
    requires a buffer of 4 bytes"), which named neither the file nor what was expected."""
    full = tmp_path / "legacy.pt"
    torch.save({"kind": "toy", "w": torch.arange(10.0)}, full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    cut = tmp_path / "cut.pt"
    for n in range(1, len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match=re.escape(str(cut))):
            load_checkpoint(cut, kind="toy")


@pytest.mark.parametrize(
    ("content", "held"),
    [({"weight": torch.ones(2)}, "a dict"), (torch.ones(3), "a Tensor"), ([1, 2], "a list")],
)
def test_a_torch_file_no_model_wrote_is_named_as_such(tmp_path, content, held):
    # a state dict or bare tensor saved with torch.save said "expected a 'toy' checkpoint,
    # received None" / "received 'Tensor'", as if it were another model's checkpoint
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "w.pt", kind="toy")
    msg = str(err.value)
    assert "is not a bayesphys checkpoint" in msg and f"holds {held} " in msg
    assert "'toy'" in msg and "received" not in msg
