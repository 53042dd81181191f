"""The cRLHF loop (codeloop.recipes.crlhf): simulated crowd -> Bayes aggregate -> reward -> policy gradient."""

from __future__ import annotations

import json

import pytest

from codeloop.feedback.human import CORRECT


def crlhf_cfg(out, iterations, **kw):
    from codeloop.recipes.crlhf import CRLHFConfig

    settings = dict(n_instructions=12, fraction=0.5, iterations=iterations, k=3, val_limit=4, val_n=2, batch_size=4,
                    max_new_tokens=96, honeypots=6, out_dir=str(out))
    return CRLHFConfig(**{**settings, **kw})


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_bad_settings_are_refused_with_the_key_named():
    from codeloop.recipes.crlhf import CRLHFConfig

    with pytest.raises(ValueError, match="reliabilities must be one of em, online, oneshot, majority"):
        CRLHFConfig(reliabilities="dawid-skene")
    with pytest.raises(ValueError, match="reward must be one of crowd, truth, tests"):
        CRLHFConfig(reward="ppo")
    with pytest.raises(ValueError, match="crowd must be comma-separated reliabilities"):
        CRLHFConfig(crowd="0.9,high")
    with pytest.raises(ValueError, match="each in \\[0, 1\\]"):
        CRLHFConfig(crowd="0.9,1.2")
    with pytest.raises(ValueError, match="honeypots must be at least 1"):
        CRLHFConfig(honeypots=0)
    CRLHFConfig(honeypots=0, reliabilities="majority")  # the vote needs no honeypots
    with pytest.raises(ValueError, match="trainer 'trl'"):
        CRLHFConfig(trainer="trl")


@pytest.fixture(scope="module")
def crlhf_run(tmp_path_factory):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    out = tmp_path_factory.mktemp("crlhf")
    return out, run(crlhf_cfg(out, 2))


def test_each_iteration_saves_every_programs_labels_verdicts_and_scores(crlhf_run):
    out, metrics = crlhf_run
    assert [m["iteration"] for m in metrics] == [0, 1, 2] and "line_accuracy" not in metrics[0]
    assert {"line_accuracy", "score_error", "reliability_error", "mean_score", "aggregate_s"} <= set(metrics[1])
    rows = read(out / "iter_1" / "annotations.jsonl")
    assert len(rows) == 6 * 3
    for r in rows:
        assert len(r["labels"]) == 3 and all(len(v) == len(r["lines"]) for v in r["labels"].values())
        assert len(r["verdicts"]) == len(r["true_labels"]) == len(r["lines"])
        if r["lines"]:
            assert r["score"] == pytest.approx(r["verdicts"].count(CORRECT) / len(r["lines"]))
            assert r["true_score"] == pytest.approx(r["true_labels"].count(CORRECT) / len(r["lines"]))
        if r["status"] == "passed":
            assert r["true_score"] == 1.0
    honeypots = read(out / "honeypots.jsonl")
    assert len(honeypots) == 6 and all(len(h["labels"]) == 10 for h in honeypots)  # every annotator labels them
    state = json.loads((out / "iter_2" / "reliabilities.json").read_text())
    assert set(state["reliability"]) == {f"a{i}" for i in range(1, 11)} and 0 < state["prior"] < 1
    assert (out / "iter_2" / "model").exists() and (out / "metrics.png").exists()


def test_a_resumed_run_labels_the_same_programs_the_same_way(crlhf_run, tmp_path):
    from codeloop.recipes.crlhf import run

    out, metrics = crlhf_run
    run(crlhf_cfg(tmp_path, 1))
    resumed = run(crlhf_cfg(tmp_path, 2))
    assert (tmp_path / "iter_2" / "annotations.jsonl").read_text() == (out / "iter_2" / "annotations.jsonl").read_text()
    assert [m["pass_at_1"] for m in resumed] == [m["pass_at_1"] for m in metrics]


def test_a_perfect_crowd_reads_every_line_right(tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    metrics = run(crlhf_cfg(tmp_path, 1, crowd="1,1,1", val_limit=2))
    assert metrics[1]["line_accuracy"] == 1.0 and metrics[1]["score_error"] == 0.0
    rows = read(tmp_path / "iter_1" / "annotations.jsonl")
    assert all(r["verdicts"] == r["true_labels"] for r in rows)


@pytest.mark.parametrize("settings", [{"reliabilities": "online", "step": 1.0}, {"reliabilities": "oneshot"},
                                      {"reliabilities": "majority", "reward": "tests"}, {"reward": "truth", "kl_weight": 0.1}])
def test_the_other_estimates_and_rewards_run(settings, tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    metrics = run(crlhf_cfg(tmp_path, 1, val_limit=2, **settings))
    rows = read(tmp_path / "iter_1" / "annotations.jsonl")
    want = {"tests": [float(r["status"] == "passed") for r in rows], "truth": [r["true_score"] for r in rows]}.get(
        settings.get("reward", ""), [r["score"] for r in rows])
    assert metrics[1]["mean_score"] == pytest.approx(sum(want) / len(want))
    assert 0.0 <= metrics[1]["line_accuracy"] <= 1.0


def test_the_online_estimate_follows_eq8_from_the_honeypots():
    from codeloop.feedback.human import Aggregator, Reliabilities, score_program

    honeypots = [([1, 1, -1], {"good": [1, 1, -1], "bad": [-1, -1, 1]})]
    agg = Aggregator("online", honeypots, step=0.5, nu=0.6)
    by_hand = Reliabilities(nu=0.6, step=0.5, learn_prior=False)
    score_program(honeypots[0][1], by_hand, gold=[1, 1, -1])
    assert agg.online.p == pytest.approx(by_hand.p) and agg.online["good"] > 0.6 > agg.online["bad"]
    # after the honeypots the good annotator outweighs the bad one where they disagree
    assert agg([{"good": [1, -1], "bad": [-1, 1]}])[0].correct == [True, False]
    vote = Aggregator("majority")
    assert vote([{"a": [1, -1], "b": [1, -1], "c": [-1, 1]}])[0].correct == [True, False]
    with pytest.raises(ValueError, match="reliabilities must be one of"):
        Aggregator("glad")
