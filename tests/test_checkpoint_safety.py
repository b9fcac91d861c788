"""Checkpoints that could not load back are refused before anything is written; a file from
elsewhere cannot expand without bound in memory; a checkpoint carries no machine name."""

from __future__ import annotations

import collections
import datetime
import pathlib
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch

from bayesphys import load_checkpoint, save_checkpoint
from bayesphys._checkpoint import _suspects

NT = collections.namedtuple("NT", "a b")

UNLOADABLE = [
    pathlib.Path("/data/run1"),
    datetime.datetime(2026, 1, 1),
    NT(1, 2),
    range(3),
    slice(1),
    frozenset([1]),
    collections.defaultdict(int),
    np.datetime64("2020-01-01"),
    np.zeros(2, dtype=[("a", "f8")]),
    np.array([None, 1], dtype=object),
]
LOADABLE = [
    None,
    True,
    3,
    2.5,
    1 + 2j,
    "s",
    b"b",
    [1, (2, 3)],
    {1, 2},
    collections.OrderedDict(a=1),
    torch.float64,
    torch.device("cpu"),
    torch.Size([2, 3]),
    torch.ones(2),
    np.arange(3),
    np.float32(1.5),
    np.dtype("int16"),
]


@pytest.mark.parametrize("value", UNLOADABLE, ids=lambda v: type(v).__name__)
def test_a_value_the_loader_refuses_is_refused_at_save(tmp_path, value):
    """It saved, and every later load failed (a training run's resume at its first try)."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, kind="toy", config={"ok": 1}, state={})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"config: config\['deep'\]\[1\]\['v'\] is of type"):
        save_checkpoint(path, kind="toy", config={"deep": [0, {"v": value}]}, state={})
    assert path.read_bytes() == before  # the previous checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    # the walk that names the value agrees with torch's restricted unpickler
    raw = tmp_path / "raw.pt"
    torch.save({"v": value}, raw)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(raw, weights_only=True)


@pytest.mark.parametrize("value", LOADABLE, ids=lambda v: type(v).__name__)
def test_plain_values_save_and_load(tmp_path, value):
    assert list(_suspects(value, "v")) == []  # not even a suspect: no check needed
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={"v": value}, state={})
    back = load_checkpoint(path, kind="toy")["config"]["v"]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        assert type(back) is type(value) and (back == value).all()
    else:
        assert back == value and type(back) is type(value)


def test_train_ddp_refuses_an_unloadable_config_before_training(tmp_path):
    from bayesphys.distributed.ddp import train_ddp

    x = torch.randn(16, 2)
    with pytest.raises(TypeError, match=r"config: config\['data'\] is of type pathlib"):
        train_ddp(
            lambda: torch.nn.Linear(2, 1),
            lambda m, b: m(b[0]).square().mean(),
            (x, x[:, :1]),
            epochs=1,
            batch_size=4,
            seed=0,
            progress=False,
            checkpoint=tmp_path / "run.pt",
            config={"data": pathlib.Path("/data")},
        )
    assert not (tmp_path / "run.pt").exists()


def test_a_checkpoint_names_no_machine_or_process(tmp_path):
    """torch.save named the archive after the temporary file (host and pid)."""
    path = save_checkpoint(tmp_path / "model.pt", kind="toy", config={}, state={"w": torch.ones(2)})
    names = zipfile.ZipFile(path).namelist()
    assert {n.split("/", 1)[0] for n in names} == {"archive"}, names


def test_a_compressed_member_is_refused(tmp_path):
    """torch.save stores members as they are; a deflated one expanded ~1000x on load."""
    good = save_checkpoint(tmp_path / "g.pt", kind="toy", config={}, state={})
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(packed, "w") as dst:
        for info in src.infolist():
            kind = (
                zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else info.compress_type
            )
            dst.writestr(info.filename, src.read(info), compress_type=kind)
    assert load_checkpoint(good, kind="toy")["state"] == {}
    with pytest.raises(ValueError, match=r"path: .*packed\.pt.*'archive/data\.pkl' is compressed"):
        load_checkpoint(packed, kind="toy")


@pytest.mark.parametrize(
    "value",
    [collections.Counter(a=3), bytearray(b"ab"), torch.strided, torch.per_tensor_affine],
    ids=lambda v: type(v).__name__,
)
def test_values_the_loader_takes_beyond_plain_ones_save_and_load(tmp_path, value):
    """The refusal is judged by the loader itself, not by a list of types (a list refused a
    Counter in a training config that saves and loads)."""
    from bayesphys._checkpoint import check_checkpointable

    check_checkpointable({"v": value}, "config")
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={"v": value}, state={})
    assert load_checkpoint(path, kind="toy")["config"]["v"] == value


def test_the_refusal_names_the_value_that_fails_not_a_suspect_that_loads(tmp_path):
    with pytest.raises(TypeError, match=r"^state: state\['out'\] is of type pathlib\."):
        save_checkpoint(
            tmp_path / "c.pt",
            kind="toy",
            config={"c": collections.Counter(a=1)},
            state={"out": pathlib.Path("/x")},
        )
    with warnings.catch_warnings():  # numpy's own note that np.matrix is not recommended
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.matrix([[1.0]])
    with pytest.raises(TypeError, match=r"^config: config\['m'\] is of type numpy\.matrix"):
        save_checkpoint(tmp_path / "c.pt", kind="toy", config={"m": matrix}, state={})
    assert not (tmp_path / "c.pt").exists() and list(tmp_path.iterdir()) == []


def test_a_value_that_does_not_pickle_and_one_inside_a_container_are_named():
    from bayesphys._checkpoint import check_checkpointable

    with pytest.raises(TypeError, match=r"^config: config\['f'\] is of type builtins\.function"):
        check_checkpointable({"f": lambda x: x}, "config")
    with pytest.raises(TypeError, match=r"^config: config\['c'\]\[key PosixPath\('/x'\)\] is of"):
        check_checkpointable({"c": collections.Counter({pathlib.Path("/x"): 1})}, "config")


def test_a_failed_write_reports_the_disk_error_not_torch_s_position_check(tmp_path, monkeypatch):
    """torch's writer turned the file object's OSError into 'unexpected pos' (errno lost)."""
    import errno

    from bayesphys import _checkpoint

    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config={}, state={})
    before = path.read_bytes()
    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 200:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(
        _checkpoint, "open", lambda p, mode: Full(real_open(p, mode)), raising=False
    )
    with pytest.raises(OSError, match="No space left on device") as info:
        save_checkpoint(path, kind="toy", config={}, state={"w": torch.ones(1000)})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


@pytest.mark.skipif(not pathlib.Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_a_refused_save_releases_the_files_memory_map_before_removing_it(tmp_path, monkeypatch):
    """The read-back's error kept the file mapped while it was removed (Windows refuses to
    delete a mapped file: the refusal became a PermissionError and a full-size leftover)."""
    from bayesphys import _files

    mapped_at_unlink = []
    real_unlink = _files.Path.unlink

    def unlink(self, *args, **kwargs):
        maps = pathlib.Path("/proc/self/maps").read_text()
        mapped_at_unlink.append(self.name in maps)
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(_files.Path, "unlink", unlink)
    with pytest.raises(TypeError, match="pathlib"):
        save_checkpoint(tmp_path / "c.pt", kind="toy", config={"p": pathlib.Path("/x")}, state={})
    assert mapped_at_unlink == [False]
