"""plot_bands' hint for a posterior over a 2-D event, followed as written, gives a posterior
over a 1-D event that it draws: the hint built SamplePosterior(draws [S, N]) with the default
chains=True, read as S chains of a scalar (and refused by plot_bands once more)."""

from __future__ import annotations

import re
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from bayesphys import GaussianPosterior, SamplePosterior  # noqa: E402
from bayesphys.plots import plot_bands  # noqa: E402


def test_the_hint_for_a_2d_event_gives_a_posterior_plot_bands_draws():
    import matplotlib.pyplot as plt

    post = GaussianPosterior(torch.zeros(4, 10, dtype=torch.float64), torch.eye(40))
    with pytest.raises(ValueError, match="index the posterior's mean and draws") as info:
        plot_bands(post)
    hint = re.search(r"\((SamplePosterior\(.*\))\)$", str(info.value))
    assert hint is not None, str(info.value)
    # the hint's call, with S = 200 draws and member i = 1
    code = hint.group(1).replace("[..., i, :]", "[..., 1, :]")
    code = code.replace("sample((S,))", "sample((200,))").replace("sample(...)", "sample((200,))")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the SamplePosterior [C, S] warning included
        one = eval(code, {"SamplePosterior": SamplePosterior, "post": post})
    assert tuple(one.event_shape) == (10,)
    fig, ax = plt.subplots()
    try:
        assert plot_bands(one, ax=ax) is ax
    finally:
        plt.close(fig)
