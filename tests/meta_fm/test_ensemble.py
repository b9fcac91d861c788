import numpy as np
import pytest
import torch

from bayesphys import SamplePosterior
from bayesphys.inference_data import group_dataset, group_names
from bayesphys.meta_fm import w2_inference_data
from tests.arviz_compat import plot_ppc

PP_DIMS = ("population_id", "cell", "feature")


def test_w2_inference_data_refuses_a_name_that_collides_with_w2():
    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 2, 3, 10, 2, generator=g))
    truth = torch.randn(3, 10, 2, generator=g)
    with pytest.raises(ValueError, match="^name: "):
        w2_inference_data(post, truth, name="w2")
    idata = w2_inference_data(post, truth, name="cells")
    assert set(idata.posterior.data_vars) == {"cells", "w2"}


@pytest.mark.parametrize("name", ["population_id", "cell", "feature", "chain", "draw"])
def test_w2_inference_data_refuses_a_name_that_is_a_dim_before_the_distances(name, monkeypatch):
    import bayesphys.meta_fm.idata as idata_mod

    def no_w2(*args, **kwargs):
        raise AssertionError("the W2 distances were computed before the name was checked")

    monkeypatch.setattr(idata_mod, "_population_w2", no_w2)
    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 2, 3, 10, 2, generator=g))
    with pytest.raises(ValueError, match="^name: "):
        w2_inference_data(post, torch.randn(3, 10, 2, generator=g), name=name)


def _post_and_truth(m: int):
    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 3, 4, 10, 2, generator=g))  # [member, draw, P, n, d]
    return post, torch.randn(4, m, 2, generator=g)


def test_w2_inference_data_posterior_predictive_replicates_the_observed_populations():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    post, truth = _post_and_truth(10)  # n = m: the predictions are the replicates
    idata = w2_inference_data(post, truth, name="cells")
    obs = group_dataset(idata, "observed_data")["cells"]
    ppc = group_dataset(idata, "posterior_predictive")["cells"]
    assert set(group_dataset(idata, "posterior_predictive").data_vars) == {"cells"}
    assert ppc.dims == ("chain", "draw", *obs.dims) == ("chain", "draw", *PP_DIMS)
    assert ppc.shape == (2, 3, 4, 10, 2) and obs.shape == (4, 10, 2)
    np.testing.assert_array_equal(ppc.values, post.draws.numpy())
    plot_ppc(idata, num_pp_samples=4)
    plt.close("all")


def test_w2_inference_data_subsamples_predictions_to_the_observed_size():
    post, truth = _post_and_truth(6)  # n = 10 > m = 6: seeded subsets without replacement
    ppc = group_dataset(w2_inference_data(post, truth, seed=1), "posterior_predictive")
    rep = torch.from_numpy(ppc["population"].values)
    assert rep.shape == (2, 3, 4, 6, 2)
    assert ppc["population"].dims == ("chain", "draw", *PP_DIMS)
    obs = group_dataset(w2_inference_data(post, truth), "observed_data")["population"]
    assert obs.shape == (4, 6, 2)
    # each replicate is 6 distinct points of its own predicted population (chain, draw, P)
    hit = (rep[..., :, None, :] == post.draws[..., None, :, :]).all(-1)  # [2, 3, 4, 6, 10]
    assert bool((hit.sum(-1) == 1).all()) and bool((hit.any(-2).sum(-1) == 6).all())
    # a fresh subset per chain/draw/population, not one index set for all
    kept = {
        tuple(hit[a, b, i].any(0).tolist()) for a in range(2) for b in range(3) for i in range(4)
    }
    assert len(kept) > 1
    again = group_dataset(w2_inference_data(post, truth, seed=1), "posterior_predictive")
    other = group_dataset(w2_inference_data(post, truth, seed=2), "posterior_predictive")
    np.testing.assert_array_equal(again["population"].values, rep.numpy())
    assert not np.array_equal(other["population"].values, rep.numpy())
    with pytest.raises(ValueError, match="^seed: "):  # out of torch's seed range
        w2_inference_data(post, truth, seed=2**64)


@pytest.mark.parametrize(
    ("truth", "why", "observed"),
    [
        (
            [torch.randn(6, 2), torch.randn(7, 2), torch.randn(6, 2), torch.randn(6, 2)],
            "observed_data and posterior_predictive left out .*sizes",
            False,
        ),
        (
            torch.randn(4, 12, 2),
            "posterior_predictive left out .*m=12 points, more than the n=10",
            True,
        ),
    ],
    ids=["ragged truth", "truth larger than predictions"],
)
def test_w2_inference_data_without_a_replicate_warns_and_keeps_the_posterior(truth, why, observed):
    post, _ = _post_and_truth(10)
    with pytest.warns(UserWarning, match=why):
        idata = w2_inference_data(post, truth)
    groups = set(group_names(idata))
    assert "posterior_predictive" not in groups
    assert ("observed_data" in groups) == observed
    if observed:
        np.testing.assert_array_equal(
            group_dataset(idata, "observed_data")["population"].values, truth.numpy()
        )
    assert group_dataset(idata, "posterior")["w2"].shape == (2, 3, 4)
