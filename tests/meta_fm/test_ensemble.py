import pytest
import torch

from bayesphys import SamplePosterior
from bayesphys.meta_fm import w2_inference_data


def test_w2_inference_data_refuses_a_name_that_collides_with_w2():
    g = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 2, 3, 10, 2, generator=g))
    truth = torch.randn(3, 10, 2, generator=g)
    with pytest.raises(ValueError, match="^name: "):
        w2_inference_data(post, truth, name="w2")
    idata = w2_inference_data(post, truth, name="cells")
    assert set(idata.posterior.data_vars) == {"cells", "w2"}
