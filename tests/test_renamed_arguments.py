"""One name for the number of posterior draws: ``num_samples`` (as ``to_inference_data``,
``fit_many`` and the glioma posterior, like pyro). The entry points that called it ``num_draws``
or ``n_samples`` take ``num_samples``; the old keyword still works, with a ``FutureWarning``,
through :func:`bayesphys._renamed.renamed_kwargs`."""

from __future__ import annotations

import inspect
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from linear_operator.operators import DiagLinearOperator  # noqa: E402

from bayesphys import GaussianPosterior, plot_populations  # noqa: E402
from bayesphys._renamed import renamed_kwargs  # noqa: E402
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble  # noqa: E402
from bayesphys.odil import DiscreteProblem, field_posterior  # noqa: E402
from bayesphys.probconserv import (  # noqa: E402
    monotone_posterior,
    nonnegative_posterior,
    shock_posterior,
)
from bayesphys.problems.populations import linear_map  # noqa: E402
from tests.tiny_models import TINY_MFM  # noqa: E402

F64 = torch.float64


def _message(old: str, new: str) -> str:
    return f"`{old}` is renamed `{new}`; the old name will be removed in a future release"


def _call(fn, *args, **kwargs):
    """``(result, [FutureWarning])`` of one call, every warning recorded."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [w for w in got if issubclass(w.category, FutureWarning)]


# ------------------------------------------------------------------------------ the decorator
@renamed_kwargs(num_draws="num_samples")
def _draws(mean: float, num_samples: int = 3, *, seed: int = 0) -> torch.Tensor:
    """Doc of ``_draws``."""
    g = torch.Generator().manual_seed(seed)
    return mean + torch.randn(num_samples, generator=g)


@renamed_kwargs(num_draws="num_samples")
def _keyword_only(*, num_samples: int = 2) -> int:
    return num_samples


def test_the_old_name_warns_once_at_the_callers_line_and_gives_the_new_names_result():
    out, got = _call(_draws, 1.0, num_draws=4, seed=7)
    assert len(got) == 1
    assert str(got[0].message) == f"_draws: {_message('num_draws', 'num_samples')}"
    assert got[0].filename == __file__  # the user's line, not the wrapper's
    new, none = _call(_draws, 1.0, num_samples=4, seed=7)
    assert none == []
    assert torch.equal(out, new) and out.shape == (4,)
    assert _call(_keyword_only, num_draws=5)[0] == 5


def test_positional_calls_are_untouched():
    out, got = _call(_draws, 1.0, 4, seed=7)
    assert got == [] and torch.equal(out, _draws(1.0, num_samples=4, seed=7))


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (_draws, (1.0,), {"num_draws": 2, "num_samples": 3}),
        (_draws, (1.0, 3), {"num_draws": 2}),  # the new name by position
        (_keyword_only, (), {"num_draws": 2, "num_samples": 3}),
    ],
)
def test_both_names_are_a_type_error_naming_both(fn, args, kwargs):
    with pytest.raises(TypeError, match=r"both `num_draws` \(its old name\) and `num_samples`"):
        fn(*args, **kwargs)


def test_the_signature_and_docs_show_the_new_name_only():
    params = inspect.signature(_draws).parameters
    assert "num_samples" in params and "num_draws" not in params
    assert _draws.__name__ == "_draws" and _draws.__doc__ == "Doc of ``_draws``."


def test_the_decorator_refuses_names_that_do_not_fit_the_function():
    with pytest.raises(TypeError, match="has no parameter 'num_samples'"):
        renamed_kwargs(num_draws="num_samples")(lambda n: n)
    with pytest.raises(TypeError, match="still has a parameter 'num_draws'"):
        renamed_kwargs(num_draws="num_samples")(lambda num_draws, num_samples: 0)
    with pytest.raises(TypeError, match="at least one"):
        renamed_kwargs()


# ------------------------------------------------------------------------- the entry points
@pytest.fixture(scope="module")
def mfm():
    # populations of more points than the embedding sees (16): the draws differ by seed
    data = linear_map(dim=2, n_train=4, n_cal=0, n_test=1, n_points=20, seed=0)
    ens = MFMEnsemble(data, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=2, progress=False)
    return data.subset("test").source, ens


def _field_problem():
    y = torch.linspace(-1.0, 1.0, 6, dtype=F64)
    prob = DiscreteProblem(
        {"u": (6,)}, {}, lambda f, p: {"data": f["u"] - y, "smooth": f["u"][1:] - f["u"][:-1]}
    )
    return prob, prob.initial()


def _line_posterior():
    x = torch.linspace(0.0, 1.0, 5, dtype=F64)
    mean = torch.linspace(1.0, -1.0, 5, dtype=F64)
    return GaussianPosterior(mean, DiagLinearOperator(torch.full((5,), 0.1, dtype=F64))), x


def _offsets(ax) -> np.ndarray:
    return np.concatenate([np.asarray(c.get_offsets()) for c in ax.collections])


def _entry(name, mfm):
    """``(callable, old keyword, draws of a result)`` of one renamed entry point."""
    pops, ens = mfm
    post, x = _line_posterior()
    if name == "MetaFlowMatching.posterior":
        model: MetaFlowMatching = ens.models[0]
        return lambda **kw: model.posterior(pops, seed=3, **kw), "num_draws", lambda p: p.draws
    if name == "MFMEnsemble.posterior":
        return lambda **kw: ens.posterior(pops, seed=3, **kw), "num_draws", lambda p: p.draws
    if name == "plot_populations":
        cloud = GaussianPosterior(torch.zeros(12, dtype=F64), torch.eye(12, dtype=F64))
        cloud = _Cloud(cloud)
        return lambda **kw: plot_populations(cloud, seed=3, **kw), "num_draws", _offsets
    if name == "field_posterior":
        prob, x0 = _field_problem()
        return (
            lambda **kw: field_posterior(prob, x0, "u", dense_max=0, seed=3, **kw),
            "num_draws",
            lambda p: p.covariance.to_dense(),
        )
    if name == "nonnegative_posterior":
        return (
            lambda **kw: nonnegative_posterior(post, x, 0.2, seed=3, **kw),
            "n_samples",
            lambda p: p.draws,
        )
    if name == "monotone_posterior":
        return (
            lambda **kw: monotone_posterior(post, x, 0.2, seed=3, **kw),
            "n_samples",
            lambda p: p.draws,
        )
    assert name == "shock_posterior"
    return lambda **kw: shock_posterior(post, x, seed=3, **kw), "n_samples", lambda t: t


class _Cloud:
    """A posterior over a population of 6 points in 2-D (event ``[6, 2]``) that is not a
    ``SamplePosterior``: ``plot_populations`` takes ``num_samples`` fresh draws of it."""

    def __init__(self, inner):
        self.inner = inner
        self.event_shape = torch.Size([6, 2])
        self.batch_shape = torch.Size([])
        self.device = torch.device("cpu")
        self.mean = inner.mean.reshape(6, 2)
        self.variance = inner.variance.reshape(6, 2)

    def sample(self, shape=(), generator=None):
        return self.inner.sample(shape, generator).reshape(*shape, 6, 2)

    def __getattr__(self, name):
        return getattr(self.inner, name)


ENTRIES = [
    ("MetaFlowMatching.posterior", MetaFlowMatching.posterior),
    ("MFMEnsemble.posterior", MFMEnsemble.posterior),
    ("plot_populations", plot_populations),
    ("field_posterior", field_posterior),
    ("nonnegative_posterior", nonnegative_posterior),
    ("monotone_posterior", monotone_posterior),
    ("shock_posterior", shock_posterior),
]


@pytest.mark.usefixtures("new_figures_closed")
@pytest.mark.parametrize(("name", "fn"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_each_entry_point_takes_num_samples_and_the_old_name_with_a_warning(name, fn, mfm):
    params = inspect.signature(fn).parameters
    assert "num_samples" in params and not {"num_draws", "n_samples"} & set(params)
    call, old, draws = _entry(name, mfm)
    new, none = _call(call, num_samples=3)
    assert none == []
    was, got = _call(call, **{old: 3})
    assert [str(w.message) for w in got] == [f"{name}: {_message(old, 'num_samples')}"]
    assert got[0].filename == __file__
    assert torch.equal(torch.as_tensor(draws(was)), torch.as_tensor(draws(new)))
    # the count is read: two draws are not the three
    fewer, _ = _call(call, num_samples=2)
    assert not torch.equal(torch.as_tensor(draws(fewer)), torch.as_tensor(draws(new)))
    with pytest.raises(TypeError, match=f"both `{old}`"):
        call(**{old: 3, "num_samples": 3})


@pytest.mark.parametrize("fn", [nonnegative_posterior, monotone_posterior, shock_posterior])
def test_the_count_is_still_taken_by_position(fn):
    post, x = _line_posterior()
    args = (post, x) if fn is shock_posterior else (post, x, 0.2)
    by_position, got = _call(fn, *args, 4, seed=1)
    by_name = fn(*args, num_samples=4, seed=1)
    if fn is not shock_posterior:
        by_position, by_name = by_position.draws, by_name.draws
    assert got == [] and by_position.shape[fn is not shock_posterior] == 4
    assert torch.equal(by_position, by_name)
