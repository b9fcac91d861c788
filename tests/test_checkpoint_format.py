"""Checkpoint files name their format; a file a newer release wrote is refused by name (an
older loader ignored a setting it did not know, e.g. a glioma model's time scheme, and gave
another model silently: posterior means off by 0.46)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import __version__, _model, load_checkpoint, save_checkpoint
from bayesphys._model import CHECKPOINT_FORMAT
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

    from bayesphys._model import _numpy_globals

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
    not _model._named_globals_supported(), reason="this torch takes no named allow-list entries"
)
def test_numpy_values_load_across_numpy_majors(tmp_path):
    config = {"scale": np.float64(2.5), "arr": np.arange(3), "dt": np.dtype("float32")}
    path = save_checkpoint(tmp_path / "c.pt", kind="toy", config=config, state={})
    other = _respell_numpy(path, tmp_path / "other.pt")
    back = load_checkpoint(other, kind="toy")["config"]
    assert back["scale"] == 2.5 and type(back["scale"]) is np.float64
    assert back["arr"].tolist() == [0, 1, 2] and back["dt"] == np.dtype("float32")
