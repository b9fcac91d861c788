"""Coverage review 78 (core modules): paths of the top-level modules that no test of the
default suite executed, each driven here and checked against the documented rule.

- ``wasserstein`` / ``mmd`` given something that is not a point cloud (a ragged list, a
  string): the ``TypeError`` naming the argument (``_cloud_distances._as_cloud``);
- the console's codec handler on a decoding error, a stream whose encoding Python does not
  know, and one that cannot be reconfigured (``_console``);
- ``TQDM_MININTERVAL`` set to something that is not a number (``_progress._env_interval``);
- ``missing_module`` for a module whose parent package is missing, and for a module imported
  without a spec (``_checks``);
- ``requires_grad`` of a dict, and a ``no_grad_detached`` method called with a wrong
  argument (``_detached``);
- ``bayesphys bench`` whose script raises ``MissingPackage`` (``cli.cmd_bench``);
- a shapes-only metric with both tensors on the ``meta`` device (``metrics._not_meta``);
- ``save_netcdf`` of object coordinates holding only strings or numbers (``_netcdf``);
- ``plot_populations`` with ``alpha`` given, on axes that have a y label (``_population_plot``).
"""

from __future__ import annotations

import argparse
import io
import sys
import types
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayesphys import SamplePosterior, plot_populations  # noqa: E402
from bayesphys._checks import missing_module  # noqa: E402
from bayesphys._console import ERRORS, closed_stdout, tolerant_stdout  # noqa: E402
from bayesphys._detached import no_grad_detached, requires_grad  # noqa: E402
from bayesphys._progress import progress_bar  # noqa: E402
from bayesphys.metrics import conservation_error, mmd, mse, wasserstein  # noqa: E402

# -- _cloud_distances._as_cloud: input that is not a point cloud -----------------------------


@pytest.mark.parametrize("metric", [wasserstein, mmd])
@pytest.mark.parametrize(
    "bad, kind",
    [([[0.0, 1.0], [2.0]], "list"), ("ab", "str"), ([[object(), 1.0]], "list")],
)
def test_a_cloud_that_is_not_an_array_of_real_numbers_is_a_type_error_naming_it(metric, bad, kind):
    good = np.zeros((3, 2))
    with pytest.raises(
        TypeError, match=rf"^y: expected a point cloud \[n, d\] of real numbers, received {kind} "
    ) as err:
        metric(good, bad)
    assert err.value.__cause__ is not None  # the conversion's own error is kept as the cause
    with pytest.raises(TypeError, match=r"^x: expected a point cloud"):
        metric(bad, good)


def test_the_repr_of_a_long_bad_cloud_is_cut_to_60_characters():
    bad = [[float(i), float(i)] for i in range(100)] + [[1.0]]  # ragged at the end
    with pytest.raises(TypeError) as err:
        wasserstein(bad, np.zeros((2, 2)))
    shown = str(err.value).split("received list ", 1)[1]
    assert shown == repr(bad)[:60]


# -- _console -----------------------------------------------------------------------------


def test_the_console_error_handler_leaves_decoding_errors_as_they_are():
    """The handler is for encoding (it maps characters to ASCII); a decoder given it raises
    its own UnicodeDecodeError unchanged, instead of a TypeError from the handler."""
    with pytest.raises(UnicodeDecodeError, match="0xff"):
        b"ok \xff".decode("ascii", errors=ERRORS)
    assert "± é".encode("ascii", errors=ERRORS) == b"+- e"  # and encodes as documented


class _Stream:
    """A text stream with an encoding name and handler, recording ``reconfigure``."""

    def __init__(self, encoding: str, errors: str = "strict") -> None:
        self.encoding, self.errors, self.calls = encoding, errors, []

    def reconfigure(self, **kw) -> None:
        self.calls.append(kw)


def test_a_stream_with_an_encoding_python_does_not_know_gets_the_tolerant_handler():
    """Only UTF-8, -16 and -32 are left alone; an encoding name that codecs cannot look up is
    not one of them (it is not known to hold every character)."""
    unknown = _Stream("x-no-such-codec")
    tolerant_stdout(unknown)
    assert unknown.calls == [{"errors": ERRORS}]
    for name in ("UTF8", "utf_16", "utf-32-le"):  # aliases of the universal ones: untouched
        universal = _Stream(name)
        tolerant_stdout(universal)
        assert universal.calls == []


def test_a_closed_stream_that_cannot_be_reconfigured_is_left_as_it_is():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    stream.close()
    with pytest.raises(ValueError):  # what tolerant_stdout catches
        stream.reconfigure(errors=ERRORS)
    tolerant_stdout(stream)  # no error
    assert stream.errors == "strict"


def test_only_an_os_error_can_be_a_closed_stdout():
    assert closed_stdout(ValueError("I/O operation on closed file")) is False
    assert closed_stdout(RuntimeError("broken pipe")) is False


# -- _progress._env_interval ----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["abc", "1s", "nan"])
def test_a_tqdm_mininterval_that_is_not_a_number_warns_and_keeps_the_default(monkeypatch, raw):
    monkeypatch.setenv("TQDM_MININTERVAL", raw)
    with pytest.warns(RuntimeWarning, match=rf"^TQDM_MININTERVAL: expected .*received '{raw}'"):
        with progress_bar(total=1, progress=True, file=io.StringIO()) as bar:
            # a StringIO is a log: the log's interval, 30 s, as with the variable unset
            assert bar.mininterval == pytest.approx(30.0)
            assert bar.maxinterval > bar.mininterval


# -- _checks.missing_module ---------------------------------------------------------------


def test_missing_module_names_a_module_whose_parent_package_is_missing():
    name = "bayesphys_no_such_package_78.sub"
    assert missing_module("numpy", name) == name
    assert missing_module("numpy", "torch.nn") is None


def test_missing_module_counts_a_module_imported_without_a_spec_as_there(monkeypatch):
    """A stub put in ``sys.modules`` (as a test does) has ``__spec__ = None``: find_spec
    raised ``ValueError``; it is there, so the next module is the one reported."""
    stub = types.ModuleType("bayesphys_stub_78")
    stub.__spec__ = None
    monkeypatch.setitem(sys.modules, "bayesphys_stub_78", stub)
    assert missing_module("bayesphys_stub_78") is None
    assert missing_module("bayesphys_stub_78", "bayesphys_absent_78") == "bayesphys_absent_78"


# -- _detached ----------------------------------------------------------------------------


def test_requires_grad_looks_one_level_into_a_dict():
    leaf = torch.zeros(2, requires_grad=True)
    assert requires_grad({"a": torch.zeros(2), "b": leaf}) is True
    assert requires_grad({"a": torch.zeros(2), "b": 1.0}) is False
    assert requires_grad({"a": {"b": leaf}}) is False  # one level deep only, as documented


class _Toy:
    @no_grad_detached("x")
    def scaled(self, x, *, scale=1.0):
        return x * scale


def test_a_detached_method_called_wrongly_raises_its_own_type_error_without_a_warning():
    x, toy = torch.ones(2, requires_grad=True), _Toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="unexpected keyword argument 'sclae'"):
            toy.scaled(x, sclae=2.0)
        with pytest.raises(TypeError, match="takes 2 positional arguments but 3"):
            toy.scaled(x, 2.0)
    # called rightly: the warning names x, and the result is computed without gradient
    with pytest.warns(UserWarning, match=r"^_Toy\.scaled: x requires grad"):
        out = toy.scaled(x, scale=2.0)
    assert not out.requires_grad and torch.equal(out, torch.full((2,), 2.0))


# -- cli.cmd_bench: a script that needs a package that is not installed ---------------------


def test_bench_of_a_script_missing_an_optional_package_says_so_with_status_1(tmp_path, capsys):
    from bayesphys import cli

    script = tmp_path / "toy.py"
    script.write_text(
        "from bayesphys._checks import MissingPackage\n"
        "def main(argv):\n"
        "    raise MissingPackage('the atlas needs nibabel: pip install nibabel')\n"
    )
    args = argparse.Namespace(component="toy", bench_path=script, quick=True, out=None, device=None)
    assert cli.cmd_bench(args, []) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "bench toy: the atlas needs nibabel: pip install nibabel\n"


# -- metrics._not_meta: both tensors on meta ----------------------------------------------


def test_shapes_only_metrics_run_with_both_tensors_on_meta():
    """``_not_meta``: beside a ``meta`` reference a ``meta`` tensor passes (mse and
    conservation_error need no value)."""
    pred = torch.zeros(3, 5, device="meta")
    out = mse(pred, torch.zeros(3, 5, device="meta"), dim=-1)
    assert out.device.type == "meta" and out.shape == (3,)
    w, target = torch.ones(5, device="meta"), torch.zeros(3, device="meta")
    err = conservation_error(pred, w, target)
    assert err.device.type == "meta" and err.shape == (3,)
    # a real-valued reference beside a meta one is still refused by name
    with pytest.raises(ValueError, match=r"^target: expected values, received a tensor on"):
        conservation_error(torch.zeros(3, 5), torch.ones(5), target)


# -- _netcdf._check_coordinates: object coordinates netCDF can store ------------------------


@pytest.mark.parametrize(
    "ids", [np.array(["a", "bb"], dtype=object), np.array([3, 1], dtype=object)]
)
def test_object_coordinates_of_strings_or_numbers_are_written_and_read_back(tmp_path, ids):
    from bayesphys import load_netcdf, save_netcdf
    from bayesphys.inference_data import build_inference_data, group_dataset

    values = np.arange(6.0).reshape(1, 3, 2)
    # the package's builder (az.from_dict's keywords differ in ArviZ 1.x); it keeps object ids
    idata = build_inference_data(
        posterior={"x": values}, coords={"problem": ids}, dims={"x": ["problem"]}
    )
    assert group_dataset(idata, "posterior")["problem"].dtype == object
    save_netcdf(idata, tmp_path / "a.nc")
    post = group_dataset(load_netcdf(tmp_path / "a.nc"), "posterior")
    assert list(post["problem"].values) == list(ids)
    np.testing.assert_array_equal(post["x"].values, values)


# -- _population_plot: alpha given, a y label kept ------------------------------------------


def _post(chains: int, draws: int) -> SamplePosterior:
    g = torch.Generator().manual_seed(0)
    return SamplePosterior(
        torch.randn(chains, draws, 10, 3, generator=g, dtype=torch.float64), event_ndim=2
    )


@pytest.mark.usefixtures("new_figures_closed")
def test_a_given_alpha_is_used_for_every_chain_and_the_default_falls_with_the_draws():
    ax = plot_populations(_post(3, 4), alpha=0.2)
    assert [c.get_alpha() for c in ax.collections] == [0.2] * 3
    # default: 0.45 for one draw per chain, 0.45 / sqrt(S) for S, at least 0.08
    for draws, want in ((1, 0.45), (4, 0.225), (100, 0.08)):
        ax = plot_populations(_post(2, draws))
        assert [c.get_alpha() for c in ax.collections] == pytest.approx([want] * 2)


@pytest.mark.usefixtures("new_figures_closed")
def test_the_y_label_of_given_axes_is_kept_and_a_missing_x_label_filled_in():
    _, ax = plt.subplots()
    ax.set_ylabel("depth [mm]")
    plot_populations(_post(2, 1), ax=ax, dims=(2, 0))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x3", "depth [mm]")
