r"""B4 of the Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8): a
synthetic patient x treatment screen.

8 patients, 2 cell types in :math:`d = 10`, 5 treatments whose effect depends on the patient's
tumour fraction (:func:`patient_screen`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._checks import check_int, check_seed, did_you_mean
from ._common import _check_dtype
from .pairs import PopulationPairs

__all__ = ["patient_screen"]


def _screen_draw(prm: dict, p: int, t: int | None, off: Tensor, n_cells: int, gen: torch.Generator):
    """One population of patient ``p`` (control when ``t`` is None) -> (cells, cell types)."""
    f64 = torch.float64
    pi = float(prm["pi"][p])
    dim = prm["m_a"].shape[1]
    shift = torch.zeros(dim, dtype=f64)
    frac = pi
    if t is not None:
        surv = pi * (1 - float(prm["kappa"][t]) * pi)
        frac = surv / (surv + 1 - pi)
        shift = float(prm["delta"][t]) * (1 - pi) * prm["w"][t]
    n_a = int(
        torch.binomial(
            torch.tensor(float(n_cells), dtype=f64), torch.tensor(frac, dtype=f64), generator=gen
        )
    )
    xa = (
        prm["m_a"][p]
        + off
        + shift
        + float(prm["sd_a"][p]) * torch.randn(n_a, dim, generator=gen, dtype=f64)
    )
    xb = prm["m_b"] + off + 0.6 * torch.randn(n_cells - n_a, dim, generator=gen, dtype=f64)
    lab = torch.cat(
        [torch.zeros(n_a, dtype=torch.long), torch.ones(n_cells - n_a, dtype=torch.long)]
    )
    return torch.cat([xa, xb]), lab


def patient_screen(
    *,
    n_patients: int = 8,
    n_treatments: int = 5,
    n_replicates: int = 3,
    n_cells: int = 1000,
    dim: int = 10,
    fold: int = 0,
    seed: int = 0,
    dtype: torch.dtype | str | None = torch.float32,
    split: str = "patient",
) -> PopulationPairs:
    r"""B4: synthetic patient x treatment screen with a microenvironment effect.

    Patient :math:`p` has tumour fraction :math:`\pi_p \sim U[0.3, 0.9]`, tumour (type A) mean
    :math:`m_p \sim \mathcal N(0, I_d)` and a shared fibroblast (type B) mean; each replicate
    adds a small offset. Treatment :math:`t` shifts type-A cells by
    :math:`\delta_t(1-\pi_p) w_t` and kills a fraction :math:`\kappa_t \pi_p` of them (the
    treated population is redrawn with the surviving proportion). Source = control population
    of (patient, replicate) ``[n_cells, dim]``; target = treated population (independent draw,
    so not index-paired). Pair order: patient, then replicate, then treatment;
    ``source_id = patient * n_replicates + replicate``.

    Splits (anchor section 8, B4), chosen by ``split``:

    * ``"patient"`` (default): ``fold`` k in ``0..n_patients // 2 - 1`` holds out patients
      ``2k, 2k+1`` (``test``) and uses patient ``(2k+2) % n_patients`` for calibration
      (``cal``); the rest train (name ``B4-screen-fold{k}``).
    * ``"replica"``: ``fold`` k in ``0..n_replicates - 1``; ``test`` is replicate ``k`` of every
      (patient, treatment), ``cal`` replicate ``(k+1) % n_replicates``, and the other replicates
      train (name ``B4-screen-replica{k}``); needs ``n_replicates >= 3``. With the default 3
      replicates one replicate of each (patient, treatment) trains: ``n_patients *
      n_treatments`` training pairs (40), against 75 for the patient split, but every test
      patient has been seen in training.

    The split changes only ``splits`` and ``name``: for one ``seed`` the populations (and every
    other field) are the same under both splits and every fold. ``extra["patient"]`` and
    ``extra["replicate"]`` give each pair's patient and replicate ``[num_pairs]``,
    ``extra["cell_type"]`` the type of every source/target cell, and ``source_features`` the one-hot
    type ``[n, 2]`` of each source cell (the reference feeds the cell-type one-hot to the GNN).
    ``dtype`` a floating dtype or its name; ``None`` keeps the generator's float64 values.
    """
    # fewer than 4 patients left no training patient (3) or put the calibration patient into
    # the test split ((2k + 2) % 2 = 0 for 2 patients)
    n_patients = check_int("n_patients", n_patients, minimum=4)
    n_treatments = check_int("n_treatments", n_treatments, minimum=1)
    n_replicates = check_int("n_replicates", n_replicates, minimum=1)
    n_cells = check_int("n_cells", n_cells, minimum=2)
    dim = check_int("dim", dim, minimum=1)
    fold = check_int("fold", fold)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    if not isinstance(split, str):
        raise TypeError(f"split: expected 'patient' or 'replica', received {type(split).__name__}")
    if split == "patient":
        n_folds = n_patients // 2
    elif split == "replica":
        # one replicate each for test and cal leaves at least one to train on
        if n_replicates < 3:
            raise ValueError(
                f"n_replicates: the replica split holds out one replicate for test and one for "
                f"cal, so it needs n_replicates >= 3, received {n_replicates}"
            )
        n_folds = n_replicates
    else:
        raise ValueError(
            f"split: expected 'patient' or 'replica', received {split!r}"
            f"{did_you_mean(split, ('patient', 'replica'))}"
        )
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold: expected 0..{n_folds - 1} ({split} split), received {fold}")
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    m_b = torch.zeros(dim, dtype=f64)
    m_b[0] = 3.0
    prm = {
        "pi": 0.3 + 0.6 * torch.rand(n_patients, generator=gen, dtype=f64),
        "m_a": torch.randn(n_patients, dim, generator=gen, dtype=f64),
        "m_b": m_b,
        "sd_a": 0.5 + 0.3 * torch.rand(n_patients, generator=gen, dtype=f64),
    }
    w = torch.randn(n_treatments, dim, generator=gen, dtype=f64)
    prm["w"] = w / w.norm(dim=-1, keepdim=True)
    prm["delta"] = 1.0 + 2.0 * torch.rand(n_treatments, generator=gen, dtype=f64)
    prm["kappa"] = 0.2 + 0.6 * torch.rand(n_treatments, generator=gen, dtype=f64)
    prm["n_cells"] = n_cells

    src, tgt, sid, trt, pat, rep, offs, ctype = [], [], [], [], [], [], [], []
    for p in range(n_patients):
        for r in range(n_replicates):
            off = 0.1 * torch.randn(dim, generator=gen, dtype=f64)
            x0, l0 = _screen_draw(prm, p, None, off, n_cells, gen)
            for t in range(n_treatments):
                x1, l1 = _screen_draw(prm, p, t, off, n_cells, gen)
                src.append(x0.to(dtype))
                tgt.append(x1.to(dtype))
                sid.append(p * n_replicates + r)
                trt.append(t)
                pat.append(p)
                rep.append(r)
                offs.append(off)
                ctype.append((l0, l1))
    if split == "patient":
        held, test_k, cal_k = pat, {2 * fold, 2 * fold + 1}, {(2 * fold + 2) % n_patients}
        name = f"B4-screen-fold{fold}"
    else:
        held, test_k, cal_k = rep, {fold}, {(fold + 1) % n_replicates}
        name = f"B4-screen-replica{fold}"
    splits = {
        "test": [i for i, q in enumerate(held) if q in test_k],
        "cal": [i for i, q in enumerate(held) if q in cal_k],
        "train": [i for i, q in enumerate(held) if q not in test_k | cal_k],
    }
    return PopulationPairs(
        name=name,
        source=src,
        target=tgt,
        source_id=torch.tensor(sid),
        splits=splits,
        paired=False,
        treatment=torch.tensor(trt),
        num_treatments=n_treatments,
        extra={
            "patient": torch.tensor(pat),
            "replicate": torch.tensor(sid) % n_replicates,
            "offset": offs,
            "cell_type": ctype,
            "params": prm,
        },
        source_features=[torch.nn.functional.one_hot(l0, 2).to(src[0].dtype) for l0, _ in ctype],
    )
