"""Bad scalar settings fail early with errors that name the argument (no training)."""

import math

import pytest
import torch

from bayesphys.meta_fm import (
    FourierFeatures,
    MetaFlowMatching,
    MFMConfig,
    MFMEnsemble,
    PopulationEmbedding,
    VectorField,
    conformal_radius,
    ensemble_spread,
    integrate,
    knn_adjacency,
    pooled_prediction,
    population_metrics,
    sampling_noise_w2,
    time_embedding,
    w2_inference_data,
)
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM

BAD_CONFIG = [
    # (field, value, error)
    ("width", 2.5, TypeError),
    ("width", True, TypeError),
    ("width", "64", TypeError),
    ("width", 0, ValueError),
    ("layers", 0, ValueError),
    ("layers", 1, ValueError),
    ("layers", 2.5, TypeError),
    ("time_dim", 0, ValueError),
    ("time_dim", 3, ValueError),
    ("time_dim", math.nan, TypeError),
    ("fourier", -1, ValueError),
    ("fourier", 2.5, TypeError),
    ("fourier_sigma", 0.0, ValueError),
    ("fourier_sigma", -1.0, ValueError),
    ("fourier_sigma", math.nan, ValueError),
    ("gnn_hidden", 0, ValueError),
    ("gnn_hidden", -1, ValueError),
    ("gnn_layers", 0, ValueError),
    ("gnn_layers", 2.5, TypeError),
    ("knn_k", 0, ValueError),
    ("knn_k", 2.5, TypeError),
    ("points", 1, ValueError),  # MFM: the embedding needs a graph of >= 2 points
    ("points", 2.5, TypeError),
    ("pops_per_step", 0, ValueError),
    ("pops_per_step", True, TypeError),
    ("solver_steps", 0, ValueError),
    ("solver_steps", 2.5, TypeError),
    ("lr", -1.0, ValueError),
    ("lr", 0.0, ValueError),
    ("lr", math.nan, ValueError),
    ("lr", math.inf, ValueError),
    ("lr", True, TypeError),
    ("gnn_lr", -1e-3, ValueError),
    ("gnn_lr", math.nan, ValueError),
    ("atol", -1.0, ValueError),
    ("atol", 0.0, ValueError),
    ("atol", math.nan, ValueError),
    ("rtol", -1.0, ValueError),
    ("rtol", "1e-5", TypeError),
    ("node_features", -1, ValueError),
    ("node_features", 2.5, TypeError),
    ("residual", 1, ValueError),
    ("normalize", "yes", ValueError),
    ("schedule", "both", ValueError),
    ("solver", "euler", ValueError),
]


@pytest.mark.parametrize("name,value,error", BAD_CONFIG)
def test_bad_config_value_is_refused(name, value, error):
    with pytest.raises(error, match=f"^{name}: "):
        MFMConfig(**{name: value})
    with pytest.raises(error, match=f"^{name}: "):
        MetaFlowMatching(dim=2, **{**TINY_MFM, name: value})


@pytest.mark.parametrize("name,value,error", BAD_CONFIG)
def test_bad_value_assigned_later_is_refused(name, value, error):
    """Assignment after construction passes the constructor's checks; a refused value leaves
    the config as it was."""
    cfg = MFMConfig()
    before = cfg.to_dict()
    with pytest.raises(error, match=f"^{name}: "):
        setattr(cfg, name, value)
    assert cfg.to_dict() == before


def test_assignment_later_is_normalised_and_cross_checked():
    cfg = MFMConfig(method="FM", points=1)
    cfg.width = 64.0
    assert cfg.width == 64 and type(cfg.width) is int
    with pytest.raises(ValueError, match="^points: "):
        cfg.method = "MFM"  # MFM's embedding needs >= 2 points
    assert cfg.method == "FM"
    cfg.points = 8
    cfg.method = "MFM"
    assert (cfg.method, cfg.points) == ("MFM", 8)


def test_defaults_and_integral_floats():
    cfg = MFMConfig()
    assert (cfg.width, cfg.layers, cfg.time_dim, cfg.fourier) == (256, 4, 128, 128)
    cfg = MFMConfig(width=64.0, layers=3.0, knn_k=5.0, fourier=0, lr=1, node_features=0.0)
    assert cfg.width == 64 and type(cfg.width) is int
    assert type(cfg.layers) is int and type(cfg.knn_k) is int and cfg.fourier == 0
    assert cfg.lr == 1.0 and type(cfg.lr) is float
    assert cfg.node_features == 0 and type(cfg.node_features) is int
    assert MFMConfig(method="FM", points=1).points == 1  # FM reads no graph
    m = MetaFlowMatching(dim=2.0, width=64.0, **{k: v for k, v in TINY_MFM.items() if k != "width"})
    assert m.dim == 2 and m.config.width == 64
    assert m.net["field"].net[0].out_features == 64
    # a saved config round-trips through the checks
    assert MFMConfig.from_dict(m.config.to_dict()) == m.config
    with pytest.raises(
        TypeError, match=r"^config: unknown keys \['widht'\] \(did you mean 'width'\?\)"
    ):
        MFMConfig.from_dict({**m.config.to_dict(), "widht": 8})


def test_model_arguments():
    with pytest.raises(TypeError, match="^dim: "):
        MetaFlowMatching(dim=2.5, **TINY_MFM)
    with pytest.raises(ValueError, match="^dim: "):
        MetaFlowMatching(dim=0, **TINY_MFM)
    with pytest.raises(ValueError, match="^num_treatments: "):
        MetaFlowMatching(dim=2, num_treatments=-1, **TINY_MFM)
    with pytest.raises(TypeError, match="^seed: "):
        MetaFlowMatching(dim=2, seed=2.5, **TINY_MFM)
    m = MetaFlowMatching(dim=2, **TINY_MFM)
    pops = [torch.randn(20, 2), torch.randn(20, 2)]
    with pytest.raises(ValueError, match="^steps: "):
        m.predict(pops, steps=0)  # used to fall back to solver_steps silently
    with pytest.raises(TypeError, match="^steps: "):
        m.predict(pops, steps=2.5)
    with pytest.raises(TypeError, match="^seed: "):
        m.predict(pops, seed=math.nan)
    for bad in (0, -1, 1):  # 0 / -1 used to be ignored or to drop one point
        with pytest.raises(ValueError, match="^points: "):
            m.embed(pops, points=bad)
    with pytest.raises(TypeError, match="^points: "):
        m.embed(pops, points=2.5)
    with pytest.raises(TypeError, match="^num_samples: "):
        m.posterior(pops, num_samples=2.5)
    with pytest.raises(ValueError, match="^num_samples: "):
        m.posterior(pops, num_samples=1)
    with pytest.raises(TypeError, match="^chunk: "):
        m.predict(pops, chunk=math.nan)
    with pytest.warns(UserWarning, match="MetaFlowMatching.predict: the model has not been"):
        assert [p.shape for p in m.predict(pops, steps=1, chunk=64.0)] == [(20, 2)] * 2


def test_fit_arguments():
    data = linear_map(n_train=4, n_cal=0, n_test=0, n_points=20)
    m = MetaFlowMatching(data, **TINY_MFM)
    with pytest.raises(TypeError, match="^steps: "):
        m.fit(steps=math.nan, progress=False)
    with pytest.raises(TypeError, match="^seed: "):
        m.fit(steps=1, seed=2.5, progress=False)
    assert m.fit(steps=2.0, progress=False).steps == 2


def test_ensemble_arguments():
    data = linear_map(n_train=4, n_cal=3, n_test=3, n_points=20)
    with pytest.raises(TypeError, match="^members: "):
        MFMEnsemble(data, members=2.5, **TINY_MFM)
    with pytest.raises(TypeError, match="^seed: "):
        MFMEnsemble(data, members=2, seed=0.5, **TINY_MFM)
    ens = MFMEnsemble(data, members=2, **TINY_MFM)
    src = data.subset("test").source
    with pytest.raises(ValueError, match="^num_samples: "):
        ens.posterior(src, num_samples=0)  # was torch's "stack expects a non-empty TensorList"
    with pytest.raises(ValueError, match="^steps: "):
        ens.fit(steps=-1, progress=False)
    cal, test = data.subset("cal"), data.subset("test")
    # refused before any prediction is made
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="^alpha: "):
            ens.uncertainty(cal, test, alpha=bad)
    with pytest.raises(ValueError, match="^max_points: "):
        ens.uncertainty(cal, test, max_points=0)
    with pytest.raises(TypeError, match="^noise_splits: "):
        ens.uncertainty(cal, test, noise_splits=math.nan)
    with pytest.warns(UserWarning, match="MFMEnsemble.posterior: the model has not been"):
        post = ens.posterior(src, num_samples=1)
    with pytest.raises(ValueError, match="^max_points: "):
        w2_inference_data(post, test.target, max_points=-1)


def test_evaluation_arguments():
    x = torch.randn(30, 2)
    with pytest.raises(ValueError, match="^n: "):
        pooled_prediction([x, x], 0)  # was an empty population
    with pytest.raises(TypeError, match="^n: "):
        pooled_prediction([x, x], 2.5)
    with pytest.raises(ValueError, match="^max_points: "):
        population_metrics(x, x, max_points=-1)  # was "all but one point"
    with pytest.raises(TypeError, match="^max_points: "):
        ensemble_spread([x, x + 1], max_points=2.5)
    with pytest.raises(ValueError, match="^max_points: "):
        sampling_noise_w2([x, x], 10, max_points=0)  # was read as "no limit"
    with pytest.raises(TypeError, match="^splits: "):
        sampling_noise_w2([x, x], 10, splits=2.5)  # was truncated to 2
    with pytest.raises(TypeError, match="^n: "):
        sampling_noise_w2([x, x], 10.5)
    with pytest.raises(TypeError, match="^seed: "):
        sampling_noise_w2([x, x], 10, seed=2.5)
    with pytest.raises(TypeError, match="^alpha: "):
        conformal_radius([1.0, 2.0, 3.0], alpha="0.1")
    with pytest.raises(ValueError, match="^alpha: "):
        conformal_radius([1.0, 2.0, 3.0], alpha=math.nan)


def test_building_block_arguments():
    x = torch.randn(20, 2)
    f = lambda t, z: -z  # noqa: E731
    with pytest.raises(TypeError, match="^steps: "):
        integrate(f, x, steps=2.5)
    with pytest.raises(TypeError, match="^steps: "):
        integrate(f, x, steps=True)
    for name in ("atol", "rtol"):
        for bad in (-1.0, 0.0, math.nan):
            with pytest.raises(ValueError, match=f"^{name}: "):
                integrate(f, x, method="dopri5", **{name: bad})
    with pytest.raises(ValueError, match="^k: "):
        knn_adjacency(x, 0)  # was an empty graph
    with pytest.raises(ValueError, match="^dim: "):
        time_embedding(torch.rand(3), 3)
    with pytest.raises(ValueError, match="^hidden: "):
        PopulationEmbedding(2, hidden=0)
    with pytest.raises(ValueError, match="^k: "):
        PopulationEmbedding(2, k=-1)
    with pytest.raises(ValueError, match="^features: "):
        PopulationEmbedding(2, features=-1)
    with pytest.raises(ValueError, match="^m: "):
        FourierFeatures(2, -1, 1.0)
    with pytest.raises(ValueError, match="^sigma: "):
        FourierFeatures(2, 3, math.nan)
    with pytest.raises(TypeError, match="^width: "):
        VectorField(2, width=2.5)
    with pytest.raises(ValueError, match="^layers: "):
        VectorField(2, layers=0)
    with pytest.raises(ValueError, match="^fourier: "):
        VectorField(2, fourier=-1)
    v = VectorField(2, width=8.0, layers=2, time_dim=4, fourier=0)
    assert v(torch.tensor(0.5), x).shape == (20, 2)
