import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import patient_screen

SMALL = dict(
    width=32, layers=2, time_dim=8, fourier=8, gnn_hidden=8, gnn_layers=2, knn_k=5, points=32
)


@pytest.mark.gpu
def test_fit_predict_on_cuda(cuda_device, tmp_path):
    d = patient_screen(n_cells=64, dim=3)
    m = MetaFlowMatching(d, device=cuda_device, seed=0, **SMALL)
    res = m.fit(steps=10, progress=False)
    assert res.steps == 10
    te = d.subset("test")
    f = te.source_features[:2]
    pred = m.predict(te.source[:2], te.treatment[:2], features=f, solver="dopri5")
    assert pred[0].device.type == "cuda" and torch.isfinite(pred[0]).all()
    m2 = MetaFlowMatching.load(m.save(tmp_path / "m.pt"), device=cuda_device)
    again = m2.predict(te.source[:2], te.treatment[:2], features=f, solver="dopri5")
    assert torch.equal(pred[0], again[0])
