"""Coverage review (round 78): meta_fm paths that no test of the default suite executed.

Each test drives one such path (named in its docstring) and checks it against an independent
oracle: a naive loop of the documented loss, the same call with an equivalent argument, or the
documented refusal (error type and the part of the message that names the argument)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from bayesphys import BayesphysWarning
from bayesphys.meta_fm import MetaFlowMatching, VectorField, cfm_loss
from bayesphys.meta_fm._train import batch_loss
from bayesphys.meta_fm._type_frame import type_centres
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import TINY_MFM

F64 = torch.float64


def _screen(dtype=torch.float32):
    return patient_screen(
        n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3, dtype=dtype
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny FM model of 2 treatments, fitted one step, and its checkpoint."""
    scr = _screen()
    m = MetaFlowMatching(scr, method="FM", seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    return scr, m, m.save(tmp_path_factory.mktemp("ck") / "m.pt")


# ---------------------------------------------------------------- _type_frame.py:77


class _Field(torch.nn.Module):
    """A fixed field that reads every input: v = x A + t a + types B + cond C."""

    def __init__(self, d: int, f: int, c: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.A = torch.randn(d, d, generator=g, dtype=F64)
        self.a = torch.randn(d, generator=g, dtype=F64)
        self.B = torch.randn(f, d, generator=g, dtype=F64)
        self.C = torch.randn(c, d, generator=g, dtype=F64)

    def forward(self, t, x, cond=None, features=None):
        return x @ self.A + t[..., None] * self.a + features @ self.B + cond @ self.C


@pytest.mark.parametrize("coupling", ["index", "ot_full"])
def test_type_frame_loss_of_row_paired_batches_is_the_naive_loop(coupling):
    """``index`` and ``ot_full`` batches in the type frame (only minibatch ``ot`` was run):
    pairs row by row, both ends shifted by the source point's type centre, the field reading
    its one-hot type; checked against a per-point loop of that rule (same time draws: one
    float32 uniform per point from ``gen``, as the plain loss draws them)."""
    p, n, d, f, c = 2, 7, 2, 3, 2
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(p, n, d, generator=g, dtype=F64)
    x1 = torch.randn(p, n, d, generator=g, dtype=F64) + 2.0
    k = torch.tensor([0, 1, 2, 0, 1, 0, 0])
    types = torch.nn.functional.one_hot(k, f).to(F64).expand(p, n, f)
    ctr = torch.stack([type_centres(a, types[0]) for a in x0])
    cond = torch.randn(p, c, generator=g, dtype=F64)
    field = _Field(d, f, c)
    kw = dict(device=torch.device("cpu"), dtype=F64)
    got = batch_loss(
        field, x0, x1, cond, torch.Generator().manual_seed(5), coupling, ctr, types, **kw
    )
    t = torch.rand(p, n, generator=torch.Generator().manual_seed(5), dtype=torch.float32).to(F64)
    total = 0.0
    for i in range(p):
        for j in range(n):
            a, b = x0[i, j] - ctr[i, j], x1[i, j] - ctr[i, j]
            xt = (1 - t[i, j]) * a + t[i, j] * b
            v = xt @ field.A + t[i, j] * field.a + types[i, j] @ field.B + cond[i] @ field.C
            total += float(((v - (x1[i, j] - x0[i, j])) ** 2).sum())
    assert got.item() == pytest.approx(total / (p * n), rel=1e-12)
    # a constant shift of every point (one type) leaves the plain centred loss unchanged
    one = torch.ones(p, n, 1, dtype=F64)
    mean = x0.mean(1, keepdim=True)

    def plain(t, x, cond=None, features=None):
        return x @ field.A + t[..., None] * field.a + cond @ field.C

    typed = batch_loss(
        plain,
        x0,
        x1,
        cond,
        torch.Generator().manual_seed(5),
        coupling,
        mean.expand(p, n, d),
        one,
        **kw,
    )
    centred = batch_loss(
        plain, x0, x1, cond, torch.Generator().manual_seed(5), coupling, mean, **kw
    )
    torch.testing.assert_close(typed, centred, rtol=1e-13, atol=0)


def test_type_frame_model_fits_with_whole_population_ot_pairs():
    """The same path through the public API: a type-frame model with ``coupling="ot_full"``
    trains (finite losses, every step taken) and predicts points of the sources' shapes."""
    d = _screen(F64)
    m = MetaFlowMatching(
        d, method="FM", type_frame=True, coupling="ot_full", seed=0, dtype=F64, **TINY_MFM
    )
    res = m.fit(steps=3, progress=False)  # no warning expected (the package's are errors here)
    assert res.steps == 3 and np.isfinite(res.loss_history).all()
    test = d.subset("test")
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    assert [q.shape for q in pred] == [s.shape for s in test.source]


# ---------------------------------------------------------------- _fit.py:38


def test_model_built_from_dim_fits_featureless_data_without_a_warning():
    """``warn_features_ignored`` warns only when the data bring point features: an MFM model
    built from ``dim`` alone, fitted on pairs without ``source_features``, trains silently."""
    bare = dataclasses.replace(_screen(), source_features=None)
    m = MetaFlowMatching(dim=3, num_treatments=2, method="MFM", coupling="ot", **TINY_MFM)
    with warnings.catch_warnings():  # the package's warnings (not other libraries')
        warnings.simplefilter("error", BayesphysWarning)
        res = m.fit(bare, steps=1, progress=False)
    assert res.steps == 1 and m.steps_done == 1


# ---------------------------------------------------------------- _treatments.py:62-65


@pytest.mark.parametrize(
    "bad,err,msg",
    [
        ("ab", TypeError, r"one per population, received str 'ab'"),
        ([[0], [1, 2]], TypeError, r"one per population, received list"),
        ([0.5], ValueError, r"received torch\.float\d+ values \[0\.5\]"),
        ([True], ValueError, r"received torch\.bool values \[True\]"),
    ],
)
def test_untrained_treatment_warning_leaves_malformed_treatments_to_the_refusal(
    fitted, bad, err, msg
):
    """A treatment argument that is not integer indices (ragged, a string: not a tensor;
    floats, booleans) is not read by the untrained-treatment warning, which ``posterior``
    runs before its predictions check the argument: no warning (nor a crash in it), the
    prediction's own refusal names ``treatment``."""
    scr, m, _ = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(err, match=r"^treatment: expected integer indices in \[0, 2\).*" + msg):
            m.posterior([scr.source[0]], bad, num_samples=2)


# ------------------------------------------------------- _treatments.py:44, _sources.py:111


@pytest.mark.parametrize(
    "edit,msg",
    [
        (
            {"trained_treatments": [0, 2, 3]},
            r"trained_treatments: expected indices in \[0, 2\), "
            r"received \[2, 3\]",
        ),
        ({"trained_sources": "dims"}, r"trained_sources: expected boxes of 3 values"),
        ({"trained_sources": "spread"}, r"trained_sources: expected boxes of 3 values, spreads"),
        ({"trained_sources": "unit"}, r"and unit > 0"),
    ],
)
def test_load_refuses_out_of_range_training_records(fitted, tmp_path, edit, msg):
    """A checkpoint whose recorded trained treatments lie outside the model's treatments, or
    whose source record has boxes of another dimension, a reversed spread range or a unit
    <= 0 (well-typed, wrong values), is refused at load, naming the entry."""
    _, m, path = fitted
    ck = torch.load(path, weights_only=False)
    cfg = ck["config"]
    if "trained_treatments" in edit:
        cfg["trained_treatments"] = edit["trained_treatments"]
    else:
        rec = dict(cfg["trained_sources"])
        assert set(rec) == {"mean_lo", "mean_hi", "spread", "unit"}  # the record's layout
        what = edit["trained_sources"]
        if what == "dims":
            rec["mean_lo"] = rec["mean_lo"][:2]
        elif what == "spread":
            rec["spread"] = [rec["spread"][1] + 1.0, rec["spread"][0]]
        else:
            rec["unit"] = 0.0
        cfg["trained_sources"] = rec
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=msg):
        MetaFlowMatching.load(tmp_path / "bad.pt")
    MetaFlowMatching.load(path)  # the untouched file loads


# ---------------------------------------------------------------- _validate.py:308


def test_cgfm_reads_source_ids_given_as_a_tensor_as_the_list():
    """``source_ids`` as a tensor is read as the list of its ids: the same draws as the list,
    other draws for other ids (so the ids are read), and a tensor of the wrong length or a
    0-d one is refused naming ``source_ids``."""
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=16, seed=0)
    m = MetaFlowMatching(data, method="CGFM", seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    tr = data.subset("train")
    ids = [int(i) for i in tr.source_id]
    assert len(set(ids)) == 4  # four training ids: four distinct one-hot conditions
    want = m.predict(tr.source, source_ids=ids, seed=2)
    got = m.predict(tr.source, source_ids=torch.tensor(ids), seed=2)
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    other = m.predict(tr.source, source_ids=torch.tensor(ids[::-1]), seed=2)
    assert any(not torch.equal(a, b) for a, b in zip(want, other))
    with pytest.raises(
        ValueError, match=r"^source_ids: expected one id per population \(4\), received 1"
    ):
        m.predict(tr.source, source_ids=torch.tensor(ids[:1]))
    with pytest.raises(ValueError, match=r"^source_ids: .* received Tensor"):
        m.predict(tr.source, source_ids=torch.tensor(5))


# ---------------------------------------------------------------- coupling.py:287


@pytest.mark.parametrize("which", ["v", "u"])
@pytest.mark.parametrize("bad", [[[1.0, 2.0]], np.zeros((1, 2))])
def test_cfm_loss_refuses_velocities_that_are_not_tensors(which, bad):
    ok = torch.zeros(1, 2)
    args = (bad, ok) if which == "v" else (ok, bad)
    with pytest.raises(TypeError, match=rf"^{which}: expected a torch\.Tensor, received "):
        cfm_loss(*args)


# ---------------------------------------------------------------- field.py:239-240


@pytest.mark.parametrize(
    "bad,shown",
    [(None, "None"), (torch.zeros(4, 1), r"\(4, 1\)"), (torch.zeros(2, 2), r"\(2, 2\)")],
)
def test_vector_field_with_features_refuses_missing_or_misshaped_ones(bad, shown):
    """A field built with ``features=2`` needs one row of 2 features per point: a missing
    one, a wrong width or a wrong number of rows is refused naming ``features`` and the
    expected shape ``(*lead, 2)``."""
    vf = VectorField(3, features=2, width=8, layers=2, time_dim=4, fourier=4)
    x = torch.zeros(4, 3)
    assert vf(0.0, x, features=torch.zeros(4, 2)).shape == (4, 3)
    with pytest.raises(
        ValueError,
        match=rf"^features: expected one row of 2 features per point, shape \(4, 2\), "
        rf"received {shown}$",
    ):
        vf(0.0, x, features=bad)
