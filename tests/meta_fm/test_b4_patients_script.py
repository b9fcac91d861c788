"""`benchmarks/meta_fm_b4_patients.py`: B4's training patients and the embedding, studied on
data seeds the benchmark does not test on (a ``--quick`` run, its pieces, its refusals)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bayesphys._bench import repo_root, script_module

SCRIPT = str(repo_root() / "benchmarks" / "meta_fm_b4_patients.py")


@pytest.fixture(scope="module")
def mod():
    return script_module(SCRIPT)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mod):
    out = tmp_path_factory.mktemp("b4_patients")
    n = torch.get_num_threads()  # the script sets one thread for its fits
    try:
        path = mod.main(["--quick", "--seeds", "3,4", "--folds", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(n)
    return out, path, json.loads(path.read_text())


def test_quick_run_writes_every_case_the_means_and_the_verdict(quick_run, mod):
    out, path, payload = quick_run
    assert path == out / "meta_fm_b4_patients.json"
    assert payload["quick"] is True and payload["rule"] == mod.RULE
    assert payload["command"].endswith(f"--quick --seeds 3,4 --folds 1 --out {out}")
    rows = payload["rows"]
    fits = [r for r in rows if r["split"] == "patient" and r["fold"] != "mean"]
    assert sorted((r["data_seed"], r["method"]) for r in fits) == sorted(
        (s, m) for s in (3, 4) for m in mod.METHODS
    )
    n_trt, n_rep = 5, 3
    for r in fits:
        if r["method"] == "identity":
            continue
        six = r["method"].endswith("-6")
        # the six-patient recipe trains on the train and cal splits: one patient more
        assert r["train_patients"] == (6 if six else 5)
        assert r["train_pairs"] == r["train_patients"] * n_trt * n_rep
    # the per-seed and overall means are the means of the per-fold rows
    means = {(r["method"], r["data_seed"]): r for r in rows if r["fold"] == "mean"}
    for m in mod.METHODS:
        per = {
            s: [r["w2"] for r in fits if r["method"] == m and r["data_seed"] == s] for s in (3, 4)
        }
        for s in (3, 4):
            assert means[(m, s)]["w2"] == pytest.approx(np.mean(per[s]))
        assert means[(m, "all")]["w2"] == pytest.approx(np.mean(per[3] + per[4]))
        assert means[(m, "all")]["cases"] == 2
    # the verdict applies the rule to those means; --quick runs every candidate's replica check
    verdict = payload["verdict"]
    assert set(verdict) == set(mod.CANDIDATES)
    rep = {r["method"]: r["w2"] for r in rows if r["split"] == "replica"}
    assert set(rep) == {"MFM", *mod.CANDIDATES}
    for cand, against in mod.CANDIDATES.items():
        v = verdict[cand]
        for key in ("3", "4", "all"):
            k = key if key == "all" else int(key)
            for b in against:
                assert v["w2_margin_below"][key][b] == pytest.approx(
                    means[(b, k)]["w2"] - means[(cand, k)]["w2"]
                )
        beats = all(x > 0 for m in v["w2_margin_below"].values() for x in m.values())
        assert v["beats_baselines"] is beats
        assert v["replica_w2_minus_mfm"] == pytest.approx(rep[cand] - rep["MFM"])
        assert v["replica_ok"] is (rep[cand] - rep["MFM"] <= mod.REPLICA_SD)
        assert v["adopted"] is (beats and v["replica_ok"])


def test_quick_rows_reproduce_and_use_the_benchmark_w2(quick_run, mod):
    from bayesphys.meta_fm import identity_prediction, population_metrics

    _, _, payload = quick_run
    by = {(r["split"], r["data_seed"], r["fold"], r["method"]): r for r in payload["rows"]}
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's fits (results differ at round-off by threads)
    try:
        again = mod.run_task(("patient", 4, 1, "MFM-noise"), steps=mod.QUICK["steps"], quick=True)
    finally:
        torch.set_num_threads(n)
    assert again["w2"] == by[("patient", 4, 1, "MFM-noise")]["w2"]  # seeded
    # identity's W2 is the benchmark's population_metrics W2, averaged over test populations
    test = mod.screen("patient", 3, 1, quick=True).subset("test")
    pred = identity_prediction(test)
    mp = mod.QUICK["max_points"]
    expected = np.mean(
        [
            population_metrics(p, t, max_points=mp, seed=i)["w2"]
            for i, (p, t) in enumerate(zip(pred, test.target))
        ]
    )
    assert by[("patient", 3, 1, "identity")]["w2"] == pytest.approx(expected, rel=1e-12)


def test_six_patients_trains_on_every_patient_but_the_test_ones(mod):
    data = mod.screen("patient", 3, 2, quick=True)
    six = mod.six_patients(data)
    pat = data.extra["patient"]
    train = {int(p) for p in pat[six.splits["train"]]}
    test = {int(p) for p in pat[six.splits["test"]]}
    assert test == {4, 5} and train == set(range(8)) - test
    assert six.splits["test"] == data.splits["test"] and six.same_populations(data)
    assert data.splits["train"] != six.splits["train"]  # the original is left as it was


def test_noisy_embedding_adds_seeded_noise_in_training_only(mod):
    from bayesphys.meta_fm.embedding import PopulationEmbedding

    torch.manual_seed(0)
    inner = PopulationEmbedding(3, hidden=64, layers=2, k=4).requires_grad_(False)
    x = torch.randn(5, 20, 3)
    noisy = mod.NoisyEmbedding(inner, 0.1, seed=7)
    noisy.eval()
    torch.testing.assert_close(noisy(x), inner(x), rtol=0, atol=0)
    noisy.train()
    z1 = noisy(x) - inner(x)
    assert 0.07 < float(z1.std()) < 0.13  # 320 draws of sd 0.1
    z2 = mod.NoisyEmbedding(inner, 0.1, seed=7).train()(x) - inner(x)
    torch.testing.assert_close(z1, z2)  # its own seeded stream
    noisy.k = 3  # the model sets the kNN size through the wrapper
    assert inner.k == 3 and noisy.k == 3


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--seeds", "0,3"], "--seeds"),  # the benchmark's own test data
        (["--seeds", "-3"], "--seeds"),
        (["--seeds", "3,3"], "--seeds"),
        (["--seeds", "x"], "--seeds"),
        (["--folds", "4"], "--folds"),
        (["--folds", ""], "--folds"),
        (["--steps", "0"], "--steps"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    tmp_path, capsys, monkeypatch, mod, argv, option
):
    def boom(*args, **kwargs):
        raise AssertionError("the study would run")

    monkeypatch.setattr(mod, "run_script_tasks", boom)
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and f"{option}: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
