"""A user's wrong arguments to meta_fm and the population generators: refused with an error
that names them, where they were read silently (a wrong answer) or failed inside torch."""

import dataclasses

import pytest
import torch

from bayesphys.meta_fm import (
    MetaFlowMatching,
    cfm_loss,
    knn_adjacency,
    normalized_adjacency,
    shift_prediction,
)
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import TINY_MFM

# tiny (often untrained) models on toy populations drive these tests: the package's warnings
# about them are expected here, not asserted (tests elsewhere assert them)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*far from every training source:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*calibration scores are too few:UserWarning"),
]


def _pairs():
    return linear_map(n_train=4, n_cal=2, n_test=2, n_points=20)


def _screen():
    return patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3)


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_a_pairing_flag_that_is_not_a_bool_is_refused(flag):
    """``paired="no"`` is truthy: unpaired data were trained with the index coupling."""
    scr = dataclasses.replace(_screen(), paired=flag)
    msg = rf"^data\.paired: expected True or False, received {type(flag).__name__}"
    with pytest.raises(TypeError, match=msg):
        MetaFlowMatching(scr, **TINY_MFM)
    with pytest.raises(TypeError, match=msg):
        MetaFlowMatching(dim=3, num_treatments=2, coupling="ot", **TINY_MFM).fit(
            scr, steps=1, progress=False
        )
    with pytest.raises(TypeError, match=msg):
        shift_prediction(scr, _screen())
    assert MetaFlowMatching(_screen(), **TINY_MFM).coupling == "ot"


def _bad_treatments_and_ids():
    """(data, error, message) per case; what each did before is in its comment."""
    scr = _screen()
    r = dataclasses.replace
    meta = r"expected values, received a tensor on the 'meta' device"
    return [
        # a list failed in PopulationPairs.subset with "list indices must be integers"
        (
            r(scr, treatment=scr.treatment.tolist()),
            TypeError,
            r"^data\.treatment: expected a tensor \[8\] of integer treatment indices",
        ),
        # compared with the bounds as 0 and 1, then refused by the first training step
        (
            r(scr, treatment=scr.treatment.bool()),
            ValueError,
            r"^data\.treatment: expected integer indices in \[0, 2\), received torch\.bool",
        ),
        # '<' not supported between str and int
        (r(scr, num_treatments="2"), TypeError, r"^data\.num_treatments: expected an int"),
        # Tensor.item() cannot be called on meta tensors, inside torch
        (r(scr, treatment=scr.treatment.to("meta")), ValueError, rf"^data\.treatment: {meta}"),
        (r(scr, source_id=scr.source_id.to("meta")), ValueError, rf"^data\.source_id: {meta}"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_treatments_and_ids_that_are_not_integer_tensors_are_refused_by_name(case):
    data, error, msg = _bad_treatments_and_ids()[case]
    with pytest.raises(error, match=msg):
        MetaFlowMatching(data, **TINY_MFM)
    m = MetaFlowMatching(dim=3, num_treatments=2, coupling="ot", **TINY_MFM)
    with pytest.raises(error, match=msg):
        m.fit(data, steps=1, progress=False)
    assert m.steps_done == 0


def test_an_integral_number_of_treatments_is_still_accepted():
    scr = dataclasses.replace(_screen(), num_treatments=2.0)
    assert MetaFlowMatching(scr, **TINY_MFM).num_treatments == 2


def test_predict_names_treatments_torch_cannot_read():
    scr = _screen()
    m = MetaFlowMatching(scr, method="FM", **TINY_MFM)
    src = scr.subset("test").source[:2]
    for bad in ("01", [None, 1], [[0], [1, 1]]):  # torch's "too many dimensions 'str'", ...
        with pytest.raises(TypeError, match=r"^treatment: expected integer indices in \[0, 2\)"):
            m.predict(src, bad)
    with pytest.raises(ValueError, match=r"^treatment: expected values, received .* 'meta'"):
        m.predict(src, torch.tensor([0, 1], device="meta"))  # "Cannot copy out of meta tensor"
    assert len(m.predict(src, [0, 1])) == 2


def test_from_state_names_settings_and_weights_it_cannot_rebuild_from():
    m = MetaFlowMatching(_pairs(), seed=0, **TINY_MFM)
    cfg, state = m.checkpoint_config(), m.state()
    with pytest.raises(TypeError, match=r"^cfg: expected the dict checkpoint_config\(\) returns"):
        MetaFlowMatching.from_state(3, state)  # 'int' object is not subscriptable
    with pytest.raises(ValueError, match=r"^cfg: lacks the entries \['dim'\]"):
        MetaFlowMatching.from_state({k: v for k, v in cfg.items() if k != "dim"}, state)
    with pytest.raises(TypeError, match=r"^state: expected a dict of weight name -> tensor"):
        MetaFlowMatching.from_state(cfg, [1])  # torch's "Expected state_dict to be dict-like"
    with pytest.raises(ValueError, match=r"^state: expected the weights .*missing \['scale'\]"):
        MetaFlowMatching.from_state(cfg, {k: v for k, v in state.items() if k != "scale"})
    bad = dict(state, shift=torch.zeros(5))
    with pytest.raises(ValueError, match=r"^state\['shift'\]: expected a tensor of shape \(2,\)"):
        MetaFlowMatching.from_state(cfg, bad)  # torch's "size mismatch for shift"
    m2 = MetaFlowMatching.from_state(cfg, state)
    src = _pairs().subset("test").source
    assert all(torch.equal(a, b) for a, b in zip(m.predict(src), m2.predict(src)))


def test_knn_adjacency_of_half_precision_points_is_that_of_their_float32_values():
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0)).half()
    for dtype in (torch.float16, torch.bfloat16):  # "cdist" not implemented for 'Half'
        adj = knn_adjacency(x.to(dtype), 3)
        assert adj.dtype == dtype
        assert torch.equal(adj.float(), knn_adjacency(x.to(dtype).float(), 3))


def test_normalized_adjacency_refuses_negative_or_non_finite_weights():
    with pytest.raises(ValueError, match=r"^adj: expected non-negative edge weights, received 9"):
        normalized_adjacency(-torch.ones(3, 3))  # was NaN everywhere
    with pytest.raises(ValueError, match=r"^adj: expected finite values"):
        normalized_adjacency(torch.full((3, 3), float("nan")))
    assert bool(torch.isfinite(normalized_adjacency(torch.ones(3, 3))).all())


def test_cfm_loss_refuses_integer_and_empty_velocities():
    with pytest.raises(TypeError, match=r"^v: expected floating velocities, received torch\.int64"):
        cfm_loss(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2))  # torch's mean() error
    with pytest.raises(ValueError, match=r"^v/u: expected velocities \[\*, d\] of at least one"):
        cfm_loss(torch.zeros(0, 2), torch.zeros(0, 2))  # was NaN
    assert float(cfm_loss(torch.ones(4, 2), torch.zeros(4, 2))) == 2.0


def test_w2_inference_data_takes_a_negative_seed_as_every_other_meta_fm_seed():
    # it alone refused seed=-1 (check_seed with minimum=0), though the seed only keys a stream
    import numpy as np

    from bayesphys import SamplePosterior
    from bayesphys.meta_fm import w2_inference_data

    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 2, 3, 10, 2, generator=g))
    truth = torch.randn(3, 6, 2, generator=g)  # fewer points: replicates are subsampled
    a = w2_inference_data(post, truth, seed=-1)
    b = w2_inference_data(post, truth, seed=-1)
    c = w2_inference_data(post, truth, seed=0)
    pa, pb, pc = (np.asarray(x.posterior_predictive["population"].values) for x in (a, b, c))
    assert np.array_equal(pa, pb) and not np.array_equal(pa, pc)


@pytest.mark.parametrize("shape", [(1, 3), (3, 1)])
def test_treatments_given_as_a_matrix_are_refused_not_flattened(shape):
    from bayesphys.meta_fm._net import treatment_onehot

    tr = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^treatment: expected 3 indices .* flat sequence"):
        treatment_onehot(tr, 3, 2, device=torch.device("cpu"), dtype=torch.float32)
    assert treatment_onehot(
        tr.reshape(-1), 3, 2, device=torch.device("cpu"), dtype=torch.float32
    ).shape == (3, 2)


def test_a_setting_a_population_problem_does_not_take_is_named_with_the_ones_it_does():
    from bayesphys.problems.populations import make_population_problem

    with pytest.raises(
        TypeError,
        match=(
            r"^n_trian: not a setting of B2 \(linear_map\); expected one of .*did you mean "
            r"'n_train'"
        ),
    ):
        make_population_problem("B2", n_trian=3)
