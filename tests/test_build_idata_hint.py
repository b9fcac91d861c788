"""build_inference_data given a bayesphys posterior where it takes a mapping of draws names the
posterior's own export (the message said only "expected a mapping")."""

from __future__ import annotations

import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior, build_inference_data


@pytest.mark.parametrize(
    "post",
    [
        GaussianPosterior(torch.zeros(3), torch.eye(3)),
        SamplePosterior(torch.randn(1, 10, 3)),
    ],
)
def test_a_posterior_in_place_of_a_mapping_names_its_export(post):
    name = type(post).__name__
    with pytest.raises(TypeError, match=rf"^posterior: .*{name}\.to_inference_data\(\)"):
        build_inference_data(posterior=post)


def test_other_values_keep_the_plain_message():
    with pytest.raises(
        TypeError, match=r"expected a mapping \(dict\) of name -> values, received list$"
    ):
        build_inference_data(posterior=[1, 2])
