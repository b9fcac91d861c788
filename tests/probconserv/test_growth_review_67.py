"""What a ProbConserv model holds after its predictions (long sessions: a notebook, many
posteriors from one model)."""

from __future__ import annotations

import gc
import pickle

import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.probconserv.metagp import MetaGP
from bayesphys.problems.gpme import make_dataset


def test_meta_gp_posterior_leaves_no_conditioning_data_on_the_model():
    """The meta-GP (a gpytorch ExactGP) kept the contexts of its last prediction and the
    prediction caches computed from them on the module: after a posterior over 40 functions
    the model held (and pickled) 6.7 MB where it held 58 kB, until its next prediction."""
    m = ProbConserv("stefan", step1="gp", gp_width=8, device="cpu", seed=0)
    m.fit(steps=2, progress=False)
    before = len(pickle.dumps(m))
    test = make_dataset(m.problem, params=[0.6] * 40, seed=1)
    post = m.posterior(test)
    assert post.mean.shape[0] == 40
    del post
    gc.collect()
    assert len(pickle.dumps(m)) <= before + 4096
    # and the next prediction is unchanged: nothing it needs was dropped
    again = m.posterior(make_dataset(m.problem, params=[0.6] * 2, seed=1))
    first = m.posterior(make_dataset(m.problem, params=[0.6] * 2, seed=1))
    assert torch.equal(again.mean, first.mean)


def test_meta_gp_predict_is_the_same_after_the_conditioning_data_is_released():
    """Predictions do not depend on the contexts of an earlier prediction."""
    torch.manual_seed(0)
    net = MetaGP((0.0, 0.0), (1.0, 1.0), width=4)
    g = torch.Generator().manual_seed(0)
    xc = torch.rand(3, 6, 2, generator=g, dtype=torch.float64)
    yc = torch.rand(3, 6, generator=g, dtype=torch.float64)
    xt = torch.rand(3, 5, 2, generator=g, dtype=torch.float64)
    m1, c1 = net.predict(xc, yc, xt)
    size = len(pickle.dumps(net))
    big = torch.rand(30, 40, 2, generator=g, dtype=torch.float64)
    net.predict(big, big[..., 0], xt.repeat(10, 1, 1))
    assert len(pickle.dumps(net)) <= size + 1024
    m2, c2 = net.predict(xc, yc, xt)
    assert torch.equal(m1, m2) and torch.equal(c1, c2)
    net.loss(xc, yc).backward()  # training after a prediction still works
    assert net.lik.raw_noise.grad is not None
