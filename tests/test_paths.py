"""Paths a user types: ``~`` is expanded (a literal ``~`` folder was made in the working
folder, while readers that expand it looked in the home folder), a folder name or a file in
the way is refused by name, and a failed write names the user's path, not a temporary one."""

from __future__ import annotations

import argparse
import errno
import os

import pytest
import torch

from bayesphys import _files, fit_many, load_checkpoint, load_netcdf, save_checkpoint, save_netcdf
from bayesphys._bench import ablation_parser
from bayesphys.inference_data import build_inference_data, group_names
from tests.distributed import _toy


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))  # Windows expands ~ from it
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_a_leading_tilde_is_the_home_folder_everywhere(home, tmp_path):
    save_checkpoint("~/c.pt", kind="toy", config={}, state={})
    assert (home / "c.pt").exists() and load_checkpoint("~/c.pt", kind="toy")["state"] == {}

    idata = build_inference_data(posterior={"a": torch.zeros(1, 4).numpy()})
    save_netcdf(idata, "~/x.nc")
    assert (home / "x.nc").exists() and "posterior" in group_names(load_netcdf("~/x.nc"))
    res = fit_many(
        _toy.problems(1),
        _toy.build,
        executor="sequential",
        out="~/fm",
        seed=0,
        fit_kwargs={"steps": 2},
        progress=False,
    )
    assert list(res.table["status"]) == ["ok"] and not res.failed
    assert [p.name for p in (home / "fm").iterdir() if p.suffix == ".nc"] == ["p000.nc"]
    assert _files.out_folder_arg("~/out") == str(home / "out")
    assert not (tmp_path / "~").exists()  # no literal "~" folder


def test_a_folder_name_or_a_file_in_the_way_is_refused_by_name(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    for bad, what in ((tmp_path / "a.txt" / "c.pt", "is a file"), (f"{tmp_path}/d/", "separator")):
        with pytest.raises(ValueError, match=what):
            save_checkpoint(bad, kind="toy", config={}, state={})

    idata = build_inference_data(posterior={"a": torch.zeros(1, 4).numpy()})
    with pytest.raises(ValueError, match="is a file"):
        save_netcdf(idata, tmp_path / "a.txt" / "x.nc")
    with pytest.raises(SystemExit):  # usage error at parse time, not after the work
        ablation_parser("doc").parse_args(["--out", ""])
    with pytest.raises(argparse.ArgumentTypeError, match="file"):
        _files.out_folder_arg(str(tmp_path / "a.txt"))


def test_run_calibration_refuses_a_file_as_out_before_the_work(tmp_path, monkeypatch):
    import bayesphys.diagnostics.suite as suite

    monkeypatch.setattr(suite, "_component_rows", lambda *a: pytest.fail("ran the work"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="expected a folder"):
        suite.run_calibration("core", quick=True, out=tmp_path / "f")


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1110"),
    ],
)
def test_a_failed_write_names_the_users_path(tmp_path, failure):
    target = tmp_path / "model.pt"

    def write(tmp):
        tmp.write_bytes(b"half")
        raise failure

    with pytest.raises(OSError, match=f"could not write {target}") as info:
        _files.atomic_write(target, write)
    assert info.value.errno in (errno.ENOSPC, errno.EIO)
    assert os.listdir(tmp_path) == []  # the temporary file is gone


def test_train_ddp_resumes_a_checkpoint_under_tilde(home, monkeypatch):
    """The checkpoint written to ~/ck.pt is the one looked for on resume (the lookup used the
    literal path: every run trained afresh and overwrote it)."""
    from bayesphys.distributed import ddp
    from tests.distributed.test_ddp import RESUME_KW, _data, _loss, _model, _single_process

    _single_process(monkeypatch)
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint="~/ck.pt", **RESUME_KW)
    assert (home / "ck.pt").exists()
    res = ddp.train_ddp(_model, _loss, _data(), epochs=2, checkpoint="~/ck.pt", **RESUME_KW)
    assert res.extra["start_epoch"] == 1


def test_readers_keep_their_missing_file_errors(tmp_path):
    """Only writers refuse folder names; readers say the file is missing, as before."""
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(f"{tmp_path}/missing/", kind="toy")
    with pytest.raises(IsADirectoryError):
        load_checkpoint(f"{tmp_path}/d/", kind="toy")
    with pytest.raises(FileNotFoundError):
        load_netcdf(tmp_path / "missing.nc")


def test_a_folder_written_with_the_former_stems_still_resumes(tmp_path):
    """Ids outside plain names had their stems changed (a hash added): their earlier files
    are found under the former stem and resumed, not fitted again."""
    from bayesphys.distributed._records import _stem

    probs = dict(zip(["a b", "p1"], _toy.problems(2).values()))
    kw = dict(executor="sequential", out=tmp_path, seed=0, fit_kwargs={"steps": 2}, progress=False)
    fit_many(probs, _toy.build, **kw)
    for ext in ("json", "nc"):  # as a release before the hashed stems wrote them
        (tmp_path / f"{_stem('a b')}.{ext}").rename(tmp_path / f"a_b.{ext}")
    again = fit_many(probs, _toy.build, **kw)
    assert again.table["resumed"].all()


def test_ids_equal_but_for_case_are_fine_without_files(tmp_path):
    probs = dict(zip(["A", "a"], _toy.problems(2).values()))
    res = fit_many(
        probs, _toy.build, executor="sequential", seed=0, fit_kwargs={"steps": 2}, progress=False
    )
    assert sorted(res.table.index) == ["A", "a"]
    with pytest.raises(ValueError, match="collide"):  # two labels "1"
        fit_many({1: probs["A"], "1": probs["a"]}, _toy.build, executor="sequential")
    with pytest.raises(ValueError, match="without case"):  # one file on macOS / Windows
        fit_many(probs, _toy.build, executor="sequential", out=tmp_path)


def test_out_folder_and_path_checks_name_each_problem(tmp_path, monkeypatch):
    """Branches no test reached: an empty path, unwritable folders, a figure without a format."""
    import argparse

    import matplotlib.figure

    from bayesphys._files import out_folder_arg, save_figure, user_path

    with pytest.raises(TypeError, match=r"^path: expected a file path \(str or Path\)"):
        user_path("")
    existing, new = tmp_path / "out", tmp_path / "new" / "deeper"
    existing.mkdir()
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match=r"a.txt is a file"):
        out_folder_arg(str(tmp_path / "a.txt" / "sub"))
    assert out_folder_arg(str(existing)) == str(existing)
    assert out_folder_arg(str(new)) == str(new) and not new.exists()  # created by the writer
    monkeypatch.setattr("os.access", lambda path, mode: False)  # read-only (we may be root)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^folder .*out' is not writable"):
        out_folder_arg(str(existing))
    with pytest.raises(argparse.ArgumentTypeError, match=r"^cannot create folder .* not writable"):
        out_folder_arg(str(new))
    with pytest.raises(ValueError, match=r"^path: give a suffix \(.png, .pdf, .svg\) or format="):
        save_figure(matplotlib.figure.Figure(), tmp_path / "figure")


def test_an_out_file_named_like_a_folder_is_refused(tmp_path):
    """``out_file_arg`` (the results-file ``--out`` of odil_joint.py and odil_timestep.py)
    refused an existing folder but took ``results/`` of a folder not made yet and wrote the
    results to a file ``results``: a name ending in a separator is a folder's, refused as
    :func:`~bayesphys._files.user_path` refuses it."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"ends with a separator"):
        _files.out_file_arg(str(tmp_path / "results") + os.sep)
    with pytest.raises(argparse.ArgumentTypeError, match=r"received the folder"):
        _files.out_file_arg(str(tmp_path))
    assert _files.out_file_arg(str(tmp_path / "new" / "rows.json")) == str(
        tmp_path / "new" / "rows.json"
    )
    assert not (tmp_path / "results").exists() and not (tmp_path / "new").exists()
