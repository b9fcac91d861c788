"""ArviZ export and netCDF round trips (mirrors bayesphys/inference_data.py)."""

from __future__ import annotations

import os

import arviz as az
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.inference_data import (
    ARVIZ_V1,
    build_inference_data,
    group_dataset,
    group_names,
    hdi_bounds,
    load_netcdf,
    save_netcdf,
)
from bayesphys.problems.linear_gaussian import linear_gaussian_problem, posterior_for
from tests.arviz_compat import plot_posterior, plot_ppc


def _full_idata(seed=0):
    prob = linear_gaussian_problem(n=41, m=12, seed=seed)
    post = posterior_for(prob["x"], prob["idx"], prob["y"], 0.1)
    gen = torch.Generator().manual_seed(seed)
    draws = post.sample((2, 200), generator=gen)
    at = draws[..., prob["idx"]]
    y_rep = at + 0.1 * torch.randn(at.shape, generator=gen, dtype=at.dtype)
    ll = torch.distributions.Normal(at, 0.1).log_prob(prob["y"])
    return build_inference_data(
        posterior={"u": draws, "amp": draws.abs().amax(-1)},
        posterior_predictive={"y": y_rep},
        log_likelihood={"y": ll},
        observed_data={"y": prob["y"]},
        coords={"x": prob["x"], "sensor": prob["x"][prob["idx"]]},
        dims={"u": ["x"], "y": ["sensor"]},
    )


# ArviZ's loo warns that the toy export's draws give a Pareto k above its threshold: the test checks
# that loo runs on the export, not the quality of the toy's importance weights
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto distribution:UserWarning")
def test_arviz_functions_work_on_export(tmp_path):
    import matplotlib.pyplot as plt

    idata = _full_idata()
    summ = az.summary(idata, var_names=["amp"])
    assert "mean" in summ.columns and summ.shape[0] == 1
    lo, hi = hdi_bounds(idata, "u", 0.9)
    assert lo.shape == (41,) and bool((lo <= hi).all())
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd if ARVIZ_V1 else loo.elpd_loo)  # renamed in ArviZ 1
    plot_posterior(idata, var_names=["amp"])
    plot_ppc(idata, num_pp_samples=20)
    plt.close("all")
    ds = group_dataset(idata, "posterior")
    assert ds["u"].dims == ("chain", "draw", "x")
    np.testing.assert_allclose(ds["x"].values, np.linspace(0, 1, 41))


def test_netcdf_roundtrip_exact(tmp_path):
    idata = _full_idata(seed=3)
    path = save_netcdf(idata, tmp_path / "sub" / "a.nc")
    back = load_netcdf(path)
    for g in ("posterior", "posterior_predictive", "log_likelihood", "observed_data"):
        xr.testing.assert_identical(group_dataset(idata, g), group_dataset(back, g))


@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), chains=st.integers(1, 3))
def test_sample_posterior_roundtrip_any_shape(tmp_path_factory, shape, chains):
    draws = torch.randn(chains, 5, *shape, dtype=torch.float64)
    post = SamplePosterior(draws)
    idata = post.to_inference_data(name="field")
    path = save_netcdf(idata, tmp_path_factory.mktemp("nc") / "s.nc")
    back = group_dataset(load_netcdf(path), "posterior")["field"].values
    np.testing.assert_array_equal(back, draws.numpy())


def test_gaussian_export_dims_coords_params():
    post = GaussianPosterior(
        torch.zeros(3, 4, dtype=torch.float64), torch.eye(12, dtype=torch.float64)
    )
    idata = post.to_inference_data(
        dims=["x", "y"],
        coords={"x": [0.0, 0.5, 1.0]},
        num_samples=50,
        num_chains=2,
        seed=1,
        params={"D": torch.rand(2, 50)},
        observed={"obs": torch.ones(3)},
    )
    ds = group_dataset(idata, "posterior")
    assert ds["u"].shape == (2, 50, 3, 4) and ds["D"].dims == ("chain", "draw")
    assert group_dataset(idata, "observed_data")["obs"].shape == (3,)
    again = post.to_inference_data(dims=["x", "y"], num_samples=50, num_chains=2, seed=1)
    np.testing.assert_array_equal(group_dataset(again, "posterior")["u"].values, ds["u"].values)


def test_export_bad_input():
    post = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="dims"):
        post.to_inference_data(dims=["x", "y"])
    with pytest.raises(ValueError, match="coords"):
        post.to_inference_data(dims=["x"], coords={"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="params"):
        post.to_inference_data(num_samples=10, params={"D": torch.rand(1, 11)})
    with pytest.raises(ValueError, match="no variables"):
        build_inference_data()
    with pytest.raises(FileNotFoundError):
        load_netcdf("/nonexistent/file.nc")


def test_export_name_is_the_default_variable_name_of_every_export_path():
    """A posterior built with ``export_name`` exports under that name by method, by the free
    function, after ``to`` and after pickling; ``name=`` still wins; a bad name is refused."""
    import pickle

    from bayesphys.inference_data import to_inference_data

    gauss = GaussianPosterior(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), export_name="z"
    )
    draws = SamplePosterior(torch.randn(1, 5, 2, dtype=torch.float64), export_name="theta")
    for post, want in ((gauss, "z"), (draws, "theta")):
        for export in (
            post.to_inference_data,
            lambda **kw: to_inference_data(post, **kw),  # noqa: B023
            post.to("cpu").to_inference_data,
            pickle.loads(pickle.dumps(post)).to_inference_data,
        ):
            assert list(group_dataset(export(num_samples=4, seed=0), "posterior").data_vars) == [
                want
            ]
        named = post.to_inference_data(num_samples=4, seed=0, name="v")
        assert list(group_dataset(named, "posterior").data_vars) == ["v"]
    plain = GaussianPosterior(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    )
    assert list(group_dataset(plain.to_inference_data(num_samples=2), "posterior").data_vars) == [
        "u"
    ]
    for bad in ("", 3):
        with pytest.raises(TypeError, match="export_name: expected a non-empty string"):
            GaussianPosterior(torch.zeros(2), torch.eye(2), export_name=bad)
        with pytest.raises(TypeError, match="export_name: expected a non-empty string"):
            SamplePosterior(torch.randn(1, 5, 2), export_name=bad)


def test_a_parameter_named_like_the_export_name_is_refused_naming_export_name():
    # the error said "(name=)" to a caller who passed no name: the clash was with the name
    # the posterior was built with
    post = GaussianPosterior(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), export_name="z"
    )
    z = np.zeros((1, 4))
    with pytest.raises(ValueError, match=r"params: 'z' is .*export_name; pass another name="):
        post.to_inference_data(num_samples=4, params={"z": z})
    with pytest.raises(
        ValueError, match=r"params: 'w' is the name of the exported field \(name=\)"
    ):
        post.to_inference_data(num_samples=4, params={"w": z}, name="w")
    # another name for the field frees "z" for the parameter; "u" is free by default
    idata = post.to_inference_data(num_samples=4, seed=0, params={"z": z}, name="w")
    assert sorted(group_dataset(idata, "posterior").data_vars) == ["w", "z"]
    idata = post.to_inference_data(num_samples=4, seed=0, params={"u": z})
    assert sorted(group_dataset(idata, "posterior").data_vars) == ["u", "z"]


def test_unknown_coordinate_names_are_refused_on_every_export_path():
    # a misspelt coordinate ("xx" for dim "x") was dropped by every group without a word
    post = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    draws = SamplePosterior(torch.randn(1, 5, 3, dtype=torch.float64))
    grid = [0.0, 0.5, 1.0]
    message = r"coords: expected names of dimensions \['chain', 'draw', 'x'\], received .*'xx'"
    for export in (post.to_inference_data, draws.to_inference_data):
        with pytest.raises(ValueError, match=message):
            export(dims=["x"], coords={"xx": grid}, num_samples=5, seed=0)
        ds = group_dataset(export(dims=["x"], coords={"x": grid}, num_samples=5), "posterior")
        np.testing.assert_array_equal(ds["x"].values, grid)
    # parameter draws: their dims are coordinates too, a stray name is not
    idata = post.to_inference_data(
        dims=["x"], num_samples=5, params={"D": torch.rand(1, 5, 2)}, coords={"D_dim_0": [1, 2]}
    )
    assert list(group_dataset(idata, "posterior")["D_dim_0"].values) == [1, 2]
    with pytest.raises(ValueError, match=r"\['Dx'\]"):
        post.to_inference_data(num_samples=5, params={"D": torch.rand(1, 5)}, coords={"Dx": [1]})
    # a coordinate of one group only (observed_data here) is known: coords are shared
    idata = build_inference_data(
        posterior={"u": torch.zeros(1, 5, 3)},
        observed_data={"y": torch.zeros(2)},
        dims={"u": ["x"], "y": ["sensor"]},
        coords={"x": grid, "sensor": [0.1, 0.9]},
    )
    assert "sensor" not in group_dataset(idata, "posterior").coords
    assert list(group_dataset(idata, "observed_data")["sensor"].values) == [0.1, 0.9]
    with pytest.raises(ValueError, match=r"'sensor', 'x'\], received .*\['sensr'\]"):
        build_inference_data(
            posterior={"u": torch.zeros(1, 5, 3)},
            observed_data={"y": torch.zeros(2)},
            dims={"u": ["x"], "y": ["sensor"]},
            coords={"x": grid, "sensr": [0.1, 0.9]},
        )


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"num_samples": 2.5}, TypeError),  # was torch.Size's "takes an iterable of 'int'"
        ({"num_samples": "10"}, TypeError),  # was "'<' not supported between 'str' and 'int'"
        ({"num_chains": True}, TypeError),  # was accepted as one chain
        ({"num_samples": 0}, ValueError),
        ({"num_chains": -1}, ValueError),
    ],
)
def test_export_counts_are_checked(kwargs, error):
    post = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        post.to_inference_data(**kwargs)
    # an integral float is a count, as everywhere else (check_int)
    idata = post.to_inference_data(num_samples=7.0, num_chains=2.0, seed=0)
    assert group_dataset(idata, "posterior")["u"].shape == (2, 7, 3)


def test_export_detaches_grad_tensors():
    x = torch.randn(1, 10, 2, requires_grad=True)
    idata = build_inference_data(posterior={"x": x * 2})
    assert group_dataset(idata, "posterior")["x"].shape == (1, 10, 2)


# ------------------------------------------------------ netCDF files and names (review, 2026-12-02)
def _small():
    return build_inference_data(
        posterior={"D": np.random.default_rng(0).random((2, 50))}, observed_data={"y": np.ones(3)}
    )


def test_a_failed_save_leaves_the_previous_file_whole(tmp_path):
    path = save_netcdf(_small(), tmp_path / "run.nc")
    bad = build_inference_data(posterior={"D": np.zeros((2, 50))})
    objects = np.array([{"a": 1}, None], dtype=object)  # h5netcdf cannot write these
    constant = xr.Dataset({"z": ("k", objects)})
    if ARVIZ_V1:  # a DataTree
        bad["constant_data"] = xr.DataTree(constant)
    else:
        bad.add_groups({"constant_data": constant})
    with pytest.raises(ValueError):
        save_netcdf(bad, path)
    back = load_netcdf(path)
    assert "observed_data" in group_names(back)
    np.testing.assert_array_equal(back.observed_data["y"].values, np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]  # no temporary file left


def test_save_netcdf_writes_the_given_attrs_and_leaves_the_export_alone(tmp_path):
    idata = _small()
    path = save_netcdf(idata, tmp_path / "run.nc", attrs={"seed": 7, "note": "x", "s": 0.5})
    back = load_netcdf(path)
    assert {k: back.attrs[k] for k in ("seed", "note", "s")} == {"seed": 7, "note": "x", "s": 0.5}
    assert "seed" not in (idata.attrs or {})  # the caller's export is not changed
    np.testing.assert_array_equal(back.posterior["D"].values, idata.posterior["D"].values)
    # written back: the file's attributes are kept, given ones replace them by name
    save_netcdf(back, path, attrs={"seed": 8})
    again = load_netcdf(path)
    assert (again.attrs["seed"], again.attrs["note"]) == (8, "x")


@pytest.mark.parametrize(
    "attrs, error, match",
    [
        ([("seed", 1)], TypeError, "attrs: expected a mapping"),
        ({1: 2}, TypeError, "non-empty string names"),
        ({"seed": True}, TypeError, r"attrs\['seed'\]: expected a string, an int or a float"),
        ({"seed": None}, TypeError, r"attrs\['seed'\]"),
    ],
)
def test_save_netcdf_refuses_attrs_netcdf_cannot_hold_by_name(tmp_path, attrs, error, match):
    with pytest.raises(error, match=match):
        save_netcdf(_small(), tmp_path / "run.nc", attrs=attrs)
    assert not (tmp_path / "run.nc").exists()


def test_save_netcdf_writes_an_int_past_int64_as_its_string(tmp_path):
    # a seed up to 2**64 - 1 is valid: the examples' final write refused it after the run
    path = save_netcdf(_small(), tmp_path / "run.nc", attrs={"seed": 2**64 - 1, "low": -(2**63)})
    back = load_netcdf(path)
    assert back.attrs["seed"] == str(2**64 - 1) and back.attrs["low"] == -(2**63)


def test_a_loaded_file_can_be_written_back_to_its_own_path(tmp_path):
    path = save_netcdf(_small(), tmp_path / "run.nc")
    back = load_netcdf(path)
    save_netcdf(back, path)  # the open HDF5 handle made this an OSError
    np.testing.assert_array_equal(
        load_netcdf(path).posterior["D"].values, back.posterior["D"].values
    )


def test_a_netcdf_file_without_groups_is_refused(tmp_path):
    path = tmp_path / "flat.nc"
    xr.Dataset({"a": ("k", np.arange(3.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match="without InferenceData groups"):
        load_netcdf(path)


def _outside_storage_file(tmp_path, how):
    """An InferenceData-shaped netCDF file whose variable reads another file's bytes."""
    import h5netcdf
    import h5py

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-TOKEN")
    n = secret.stat().st_size
    path = tmp_path / f"shared_{how}.nc"
    with h5netcdf.File(path, "w") as f:
        g = f.create_group("posterior")
        g.dimensions = {"chain": 1, "draw": n}
        g.create_variable("chain", ("chain",), data=np.arange(1))
        g.create_variable("draw", ("draw",), data=np.arange(n))
        if how == "external":
            g.create_variable(
                "theta", ("chain", "draw"), dtype="u1", external=[(str(secret), 0, n)]
            )
        else:
            g.create_variable("theta", ("chain", "draw"), data=np.zeros((1, n), "u1"))
    if how == "link":
        other = tmp_path / "other.h5"
        with h5py.File(other, "w") as o:
            o["x"] = np.frombuffer(b"SECRET-TOKEN", "u1")
        with h5py.File(path, "a") as f:
            f["posterior"]["elsewhere"] = h5py.ExternalLink(str(other), "/x")
    return path


@pytest.mark.parametrize("how", ["external", "link"])
def test_a_file_whose_data_live_in_other_files_is_refused(tmp_path, how):
    """A shared results file could name any local file as a variable's storage (HDF5 external
    storage) or link to one: loading read that file's bytes into the posterior."""
    path = _outside_storage_file(tmp_path, how)
    what = "external storage" if how == "external" else "links '/posterior/elsewhere'"
    with pytest.raises(ValueError, match=f"path: .*shared_{how}.nc.*{what}"):
        load_netcdf(path)
    # the same layout with the data inside the file loads
    inside = load_netcdf(_outside_storage_file(tmp_path, "inside"))
    assert inside.posterior["theta"].shape == (1, 12)


@pytest.mark.parametrize(
    ("kwargs", "clash"),
    [
        ({"dims": ["t"], "params": {"t": torch.randn(1, 50)}}, "'t'"),
        ({"params": {"chain": torch.randn(1, 50)}}, "'chain'"),
        ({"name": "x", "dims": ["x"]}, "'x'"),
    ],
)
def test_a_variable_named_like_a_dimension_is_refused(kwargs, clash):
    # xarray made it a coordinate: gone from data_vars and az.summary, or the chain index
    p = GaussianPosterior(torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"variable name.*{clash}.*equal a dimension name"):
        p.to_inference_data(num_samples=50, seed=0, **kwargs)


@pytest.mark.skipif(os.name == "nt", reason="symlinks and POSIX permission bits")
def test_saving_through_a_symlink_keeps_the_link_and_the_files_mode(tmp_path):
    import os

    real = save_netcdf(_small(), tmp_path / "real.nc")
    link = tmp_path / "link.nc"
    link.symlink_to(real)
    other = build_inference_data(posterior={"D": np.full((2, 50), 3.0)})
    save_netcdf(other, link)  # the link was replaced by a plain file; real.nc kept old data
    assert link.is_symlink()
    np.testing.assert_array_equal(load_netcdf(real).posterior["D"].values, np.full((2, 50), 3.0))
    os.chmod(real, 0o640)
    save_netcdf(_small(), real)
    assert real.stat().st_mode & 0o777 == 0o640  # was reset to the umask's 0o644


def test_an_edit_of_the_export_leaves_the_posterior_and_the_callers_arrays_alone():
    """The export holds copies: its arrays viewed the CPU tensors and numpy arrays it was
    given, so zeroing ``idata.posterior`` zeroed a SamplePosterior's stored draws."""
    draws = torch.randn(2, 5, 3, dtype=torch.float64)
    post = SamplePosterior(draws.clone())
    idata = post.to_inference_data()
    group_dataset(idata, "posterior")["u"].values[...] = 0.0
    assert torch.equal(post.draws, draws)
    arr, t = np.ones((1, 2, 3)), torch.ones(1, 2, 3)
    idata = build_inference_data(posterior={"a": arr, "t": t}, observed_data={"y": t[0, 0]})
    group_dataset(idata, "posterior")["a"].values[...] = 5.0
    t.add_(1.0)  # an edit of the caller's tensor after the export
    assert np.array_equal(arr, np.ones((1, 2, 3)))
    assert np.array_equal(group_dataset(idata, "posterior")["t"].values, np.ones((1, 2, 3)))
    assert np.array_equal(group_dataset(idata, "observed_data")["y"].values, np.ones(3))


def test_every_group_names_the_library_and_its_version():
    import bayesphys

    idata = build_inference_data(
        posterior={"D": np.zeros((1, 3))}, observed_data={"y": np.zeros(2)}
    )
    for group in ("posterior", "observed_data"):
        attrs = group_dataset(idata, group).attrs
        assert attrs["inference_library"] == "bayesphys"
        assert attrs["inference_library_version"] == bayesphys.__version__
        assert "created_at" not in attrs  # the same inputs give the same file


def test_given_chain_and_draw_coordinates_are_kept(tmp_path):
    """``coords`` for ``chain`` / ``draw`` (iteration numbers after burn-in) are kept, as
    ``az.from_dict`` keeps them; they were checked for length and then replaced by 0.."""
    draws = torch.randn(2, 5, 3, dtype=torch.float64)
    coords = {"chain": [7, 9], "draw": np.arange(100, 105)}
    idata = SamplePosterior(draws).to_inference_data(coords=coords)
    ds = group_dataset(idata, "posterior")
    np.testing.assert_array_equal(ds["chain"].values, [7, 9])
    np.testing.assert_array_equal(ds["draw"].values, np.arange(100, 105))
    back = group_dataset(load_netcdf(save_netcdf(idata, tmp_path / "c.nc")), "posterior")
    np.testing.assert_array_equal(back["draw"].values, np.arange(100, 105))
    # one of them given: the other is still 0..
    idata = build_inference_data(posterior={"a": np.zeros((2, 4))}, coords={"draw": [5, 6, 7, 8]})
    np.testing.assert_array_equal(group_dataset(idata, "posterior")["chain"].values, [0, 1])


def test_prior_predictive_and_other_arviz_sample_groups_carry_chain_and_draw():
    """Every ArviZ group that holds draws gets ``(chain, draw)``, as in ``az.from_dict``:
    ``prior_predictive`` (and ``log_prior``, ``predictions``, ...) given in ``extra_groups``
    had its chain and draw named ``y_dim_0, y_dim_1``, so ``az.summary`` of it failed and
    ``dims`` naming its data dims was refused."""
    rng = np.random.default_rng(0)
    prior, pp = rng.normal(size=(2, 50)), rng.normal(size=(2, 50, 4))
    idata = build_inference_data(
        extra_groups={"prior": {"th": prior}, "prior_predictive": {"y": pp}},
        observed_data={"y": rng.normal(size=4)},
        dims={"y": ["obs"]},
    )
    assert group_dataset(idata, "prior")["th"].dims == ("chain", "draw")
    ds = group_dataset(idata, "prior_predictive")
    assert ds["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(ds["y"].values, pp)
    np.testing.assert_array_equal(ds["draw"].values, np.arange(50))
    summary = az.summary(idata, group="prior_predictive", kind="stats")
    np.testing.assert_allclose(summary["mean"].values, pp.mean(axis=(0, 1)), atol=0.006)
    with pytest.raises(ValueError, match="chain"):
        build_inference_data(extra_groups={"log_prior": {"lp": np.zeros(5)}})


def test_hdi_of_probability_one_is_the_range_of_the_draws():
    """``prob = 1`` is in the documented ``(0, 1]``: the narrowest interval holding every
    draw, their minimum and maximum (ArviZ 0.x's hdi raised "Too few elements")."""
    draws = torch.randn(2, 50, 3, dtype=torch.float64)
    idata = SamplePosterior(draws).to_inference_data()
    lo, hi = hdi_bounds(idata, "u", 1.0)
    flat = draws.reshape(100, 3).numpy()
    np.testing.assert_array_equal(lo, flat.min(0))
    np.testing.assert_array_equal(hi, flat.max(0))
    scalar = build_inference_data(posterior={"a": draws[..., 0]})
    lo, hi = hdi_bounds(scalar, "a", 1)
    assert lo.shape == () and float(lo) == flat[:, 0].min() and float(hi) == flat[:, 0].max()


def test_wrong_dims_are_refused_before_any_draw(monkeypatch):
    """A ``dims`` list of the wrong length was refused only after the draws were made (for a
    large field, seconds of sampling before the error)."""
    post = GaussianPosterior(
        torch.zeros(3, 4, dtype=torch.float64), torch.eye(12, dtype=torch.float64)
    )

    def no_draws(*args, **kwargs):
        raise AssertionError("drew before checking dims")

    monkeypatch.setattr(post, "_draws_for_export", no_draws)
    with pytest.raises(ValueError, match="dims: expected 2 names"):
        post.to_inference_data(dims=["a", "b", "c"])


def _stored_rows(draws: torch.Tensor) -> list[tuple[float, ...]]:
    return [tuple(r) for r in draws.reshape(-1, draws.shape[-1]).tolist()]


def test_sample_posterior_export_honours_num_samples_num_chains_and_seed():
    """``num_samples``, ``num_chains`` and ``seed`` were ignored by a SamplePosterior (its
    stored chains always came out, whatever was asked); given, they pick that many stored
    draws without replacement, seeded, in that many chains. Given neither, the stored
    chains come out as they are."""
    draws = torch.randn(2, 6, 3, dtype=torch.float64)
    post = SamplePosterior(draws)
    stored = _stored_rows(draws)

    def exported(**kw):
        return group_dataset(post.to_inference_data(**kw), "posterior")["u"].values

    np.testing.assert_array_equal(exported(), draws.numpy())  # the stored chains
    np.testing.assert_array_equal(exported(seed=4), draws.numpy())  # nothing to draw
    picked = exported(num_samples=4, seed=1)
    assert picked.shape == (1, 4, 3)
    rows = [tuple(r) for r in picked.reshape(-1, 3).tolist()]
    assert len(set(rows)) == 4 and set(rows) <= set(stored)  # stored draws, none twice
    np.testing.assert_array_equal(exported(num_samples=4, seed=1), picked)  # seeded
    assert not np.array_equal(exported(num_samples=4, seed=2), picked)
    split = exported(num_chains=3, seed=0)  # all 12 stored draws in 3 chains of 4
    assert split.shape == (3, 4, 3)
    assert sorted(tuple(r) for r in split.reshape(-1, 3).tolist()) == sorted(stored)
    assert exported(num_chains=2, num_samples=5, seed=0).shape == (2, 5, 3)
    assert exported(num_chains=5, seed=0).shape == (5, 2, 3)  # 12 // 5 each, 2 left out


def test_sample_posterior_export_refuses_more_draws_than_stored():
    post = SamplePosterior(torch.randn(2, 6, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"num_samples: 7 draws .* stores 12 .* <= 6"):
        post.to_inference_data(num_samples=7, num_chains=2)
    with pytest.raises(ValueError, match=r"num_samples: 13 draws .* stores 12"):
        post.to_inference_data(num_samples=13)
    with pytest.raises(ValueError, match=r"num_chains: 13 chains of the 12 stored draws"):
        post.to_inference_data(num_chains=13)
    with pytest.raises(ValueError, match="num_samples"):
        post.to_inference_data(num_samples=0)


def test_observed_named_like_the_field_gets_dims_for_its_shape():
    # observed data named like the exported field were given the field's dims whatever their
    # shape: an array on the event grid, or at a few sensors, was refused with an error
    # about dims never passed
    draws = torch.randn(2, 10, 3, 4, dtype=torch.float64)
    post = SamplePosterior(draws, event_ndim=1)
    on_grid = post.to_inference_data(dims=["x"], observed={"u": torch.ones(4)})
    obs = group_dataset(on_grid, "observed_data")["u"]
    assert obs.dims == ("x",)
    assert group_dataset(on_grid, "posterior")["u"].dims == ("chain", "draw", "batch_0", "x")
    sensors = post.to_inference_data(dims=["x"], observed={"u": np.arange(5.0)})
    obs = group_dataset(sensors, "observed_data")["u"]
    assert obs.dims == ("u_obs_dim_0",)
    np.testing.assert_array_equal(obs.values, np.arange(5.0))
    full = post.to_inference_data(dims=["x"], observed={"u": torch.zeros(3, 4)})
    assert group_dataset(full, "observed_data")["u"].dims == ("batch_0", "x")


@pytest.mark.parametrize(
    "values, shown",
    [([1.0, 1.0, 2.0], r"\[1\.0\]"), (["a", "b", "a"], r"\['a'\]"), ([np.nan, 0.5, np.nan], "nan")],
)
def test_repeated_coordinate_values_are_refused(values, shown):
    # a repeated label was accepted: .sel returned several points for one label and
    # az.summary failed with "setting an array element with a sequence"
    post = {"u": np.zeros((2, 5, 3))}
    with pytest.raises(ValueError, match=rf"coords\['x'\]: expected distinct values.*{shown}"):
        build_inference_data(posterior=post, dims={"u": ["x"]}, coords={"x": values})
    with pytest.raises(ValueError, match=r"coords\['draw'\]: expected distinct values"):
        build_inference_data(posterior=post, coords={"draw": [0, 1, 2, 3, 3]})
    # distinct values in any order (and one NaN) are labels as before; summary works on them
    for ok in ([3.0, 1.0, 2.0], [0.5, np.nan, 0.1], torch.tensor([2, 0, 1])):
        idata = build_inference_data(posterior=post, dims={"u": ["x"]}, coords={"x": ok})
        np.testing.assert_array_equal(group_dataset(idata, "posterior")["x"].values, np.asarray(ok))


def test_hdi_bounds_of_draws_with_a_nan_are_nan_at_every_prob():
    # az.hdi sorted a NaN draw last and returned a finite lower bound with a NaN upper one,
    # and prob = 1 skipped the NaN: the elements without NaN keep ArviZ's interval
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 100, 3))
    x_nan = x.copy()
    x_nan[1, 7, 0] = np.nan
    idata = build_inference_data(posterior={"a": x, "n": x_nan})
    for prob in (0.5, 0.94, 1.0):
        lo, hi = hdi_bounds(idata, "n", prob)
        ref_lo, ref_hi = hdi_bounds(idata, "a", prob)
        assert np.isnan(lo[0]) and np.isnan(hi[0])
        np.testing.assert_array_equal(lo[1:], ref_lo[1:])
        np.testing.assert_array_equal(hi[1:], ref_hi[1:])
    flat = np.sort(x.reshape(-1, 3), 0)  # the shortest run of floor(prob n) + 1 sorted draws
    m = int(np.floor(0.5 * 200))
    j = (flat[m:] - flat[: 200 - m]).argmin(0)
    np.testing.assert_array_equal(hdi_bounds(idata, "a", 0.5)[0], flat[j, range(3)])
    ints = build_inference_data(posterior={"k": rng.integers(0, 5, (2, 50))})
    assert hdi_bounds(ints, "k", 1.0)[0].dtype.kind == "i"  # no NaN: the dtype kept


def test_sample_groups_refuse_chain_or_draw_as_a_dim_name_and_unequal_draw_counts():
    draws = np.zeros((2, 5, 3))
    for name in ("chain", "draw"):
        with pytest.raises(ValueError, match=r"'chain' and 'draw' are the leading sample dims"):
            build_inference_data(posterior={"x": draws}, dims={"x": [name]})
    # a non-sample group may name a dim "draw" (its variables have no leading sample dims)
    ok = build_inference_data(observed_data={"y": np.zeros(3)}, dims={"y": ["draw"]})
    assert group_dataset(ok, "observed_data")["y"].dims == ("draw",)
    with pytest.raises(
        ValueError,
        match=r"posterior\.b: expected leading \(chain, draw\) = \(2, 5\) like posterior\.a, "
        r"received shape \(2, 4, 3\)",
    ):
        build_inference_data(posterior={"a": draws, "b": np.zeros((2, 4, 3))})


def test_a_dims_entry_naming_no_variable_is_refused():
    with pytest.raises(ValueError, match=r"dims: expected names of variables \['x'\], .*\['X'\]"):
        build_inference_data(posterior={"x": np.zeros((1, 4, 3))}, dims={"X": ["space"]})


def test_save_netcdf_keeps_ints_up_to_int64_and_writes_the_next_one_as_a_string(tmp_path):
    path = save_netcdf(
        _small(), tmp_path / "run.nc", attrs={"top": 2**63 - 1, "past": 2**63, "low": -(2**63)}
    )
    back = load_netcdf(path)
    assert back.attrs["top"] == 2**63 - 1 and back.attrs["low"] == -(2**63)
    assert back.attrs["past"] == str(2**63)


def test_extra_groups_may_not_take_a_standard_groups_name():
    with pytest.raises(ValueError, match=r"extra_groups: 'posterior' is a standard group; pass"):
        build_inference_data(
            posterior={"x": np.zeros((1, 4))}, extra_groups={"posterior": {"y": np.ones((1, 4))}}
        )
    extra = build_inference_data(extra_groups={"prior": {"y": np.ones((1, 4, 2))}})
    assert group_dataset(extra, "prior")["y"].dims == ("chain", "draw", "y_dim_0")


def test_dims_and_group_names_of_the_wrong_kind_are_refused_by_name():
    x = np.zeros((1, 4, 3))
    with pytest.raises(
        TypeError, match=r"^dims\['x'\]: expected a list of dimension names, received int 3$"
    ):
        build_inference_data(posterior={"x": x}, dims={"x": 3})
    post = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^dims: expected a list of dimension names, received"):
        post.to_inference_data(dims={"space"})
    for bad in ("", 3):
        with pytest.raises(
            TypeError, match=rf"^extra_groups: expected non-empty group names, received {bad!r}$"
        ):
            build_inference_data(posterior={"x": x}, extra_groups={bad: {"y": x}})
    with pytest.raises(KeyError, match=r"group: 'prior' not in \['posterior'\]"):
        group_dataset(build_inference_data(posterior={"x": x}), "prior")


def test_load_netcdf_refuses_a_folder_by_name(tmp_path):
    with pytest.raises(
        IsADirectoryError, match=r"^path: expected an InferenceData file, received the folder"
    ):
        load_netcdf(tmp_path)


def test_a_file_whose_groups_link_within_it_is_checked_once_per_object_and_loads(tmp_path):
    """The check for data stored outside the file follows the file's own links: a soft link
    and a second hard link to a group are objects of the file, not refused, and the walk
    visits each object once (it ends)."""
    import h5py

    path = save_netcdf(_small(), tmp_path / "linked.nc")
    with h5py.File(path, "a") as f:
        f["extra/alias"] = h5py.SoftLink("/posterior")
        f["extra/again"] = f["/posterior"]
    back = load_netcdf(path)
    np.testing.assert_array_equal(
        group_dataset(back, "posterior")["D"].values, _small().posterior["D"].values
    )


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_a_file_whose_group_links_back_above_itself_is_refused(tmp_path, kind):
    # a hard link from /extra/up to the root: xarray's DataTree reader (ArviZ 1.x) walked the
    # cycle without end (the test hung until its timeout); ArviZ 0.x read only its groups
    import h5py

    path = save_netcdf(_small(), tmp_path / f"cycle_{kind}.nc")
    with h5py.File(path, "a") as f:
        f["extra/up"] = f["/"] if kind == "hard" else h5py.SoftLink("/")
    msg = r"links '/extra/up' back to the group '/' above it \(a cycle\); refused"
    with pytest.raises(ValueError, match=msg):
        load_netcdf(path)
