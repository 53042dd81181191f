"""The cRLHF loop (codeloop.recipes.crlhf): simulated crowd -> Bayes aggregate -> reward -> policy gradient."""

from __future__ import annotations

import json

import pytest

from codeloop.feedback.human import CORRECT, code_lines, reference_line_labels


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
    with pytest.raises(ValueError, match="score_lines must be one of all, statements"):
        CRLHFConfig(score_lines="body")
    with pytest.raises(ValueError, match="crowd_score must be one of lines, verdict, lines\\+verdict"):
        CRLHFConfig(crowd_score="program")
    with pytest.raises(ValueError, match="crowd must be comma-separated reliabilities"):
        CRLHFConfig(crowd="0.9,high")
    with pytest.raises(ValueError, match="each in \\[0, 1\\]"):
        CRLHFConfig(crowd="0.9,1.2")
    with pytest.raises(ValueError, match="honeypots must be at least 1"):
        CRLHFConfig(honeypots=0)
    CRLHFConfig(honeypots=0, reliabilities="majority")  # the vote needs no honeypots
    with pytest.raises(ValueError, match="trainer 'trl'"):
        CRLHFConfig(trainer="trl")
    with pytest.raises(ValueError, match="clip must be in"):
        CRLHFConfig(clip=-0.1)


@pytest.fixture(scope="module")
def crlhf_run(tmp_path_factory):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    out = tmp_path_factory.mktemp("crlhf")
    return out, run(crlhf_cfg(out, 2))


def test_each_iteration_saves_every_programs_labels_verdicts_and_scores(crlhf_run):
    out, metrics = crlhf_run
    assert [m["iteration"] for m in metrics] == [0, 1, 2] and "line_accuracy" not in metrics[0]
    assert {"line_accuracy", "score_error", "reliability_error", "verdict_accuracy", "mean_score", "aggregate_s"} <= set(metrics[1])
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
        assert set(r["verdict_votes"]) == set(r["labels"]) and set(r["verdict_votes"].values()) <= {1, -1}
        assert 0 <= r["program_probability"] <= 1
    honeypots = read(out / "honeypots.jsonl")
    assert len(honeypots) == 6 and all(len(h["labels"]) == 10 for h in honeypots)  # every annotator labels them
    state = json.loads((out / "iter_2" / "reliabilities.json").read_text())
    assert set(state["reliability"]) == {f"a{i}" for i in range(1, 11)} and 0 < state["prior"] < 1
    assert (out / "iter_2" / "model").exists() and (out / "metrics.png").exists()


def test_statement_scores_on_st_count_only_the_lines_outside_declarations(tmp_path):
    pytest.importorskip("torch")
    from codeloop.data import load_tasks
    from codeloop.languages.st import declaration_lines
    from codeloop.recipes.crlhf import run

    run(crlhf_cfg(tmp_path, 1, model="seed-st", tasks="synthetic-st:train", val_tasks="synthetic-st:test", val_plus_tasks="",
                  n_instructions=8, k=2, val_limit=1, val_n=1, honeypots=2, max_new_tokens=200, score_lines="statements",
                  mark_gaps=True))
    rows = [r for r in read(tmp_path / "iter_1" / "annotations.jsonl") if r["lines"]]
    assert len(rows) == 8 and all(r["counted"] == [not d for d in declaration_lines(r["lines"])] for r in rows)
    assert sum(not all(r["counted"]) for r in rows) >= 6  # seed-st writes its FUNCTION header and VAR blocks
    tasks = load_tasks("synthetic-st:train")
    for r in rows:  # the truth is the gap-marking one (none of these 8 happens to leave a line out: see test_human)
        reference = tasks[r["task_id"]].canonical_solution
        assert r["true_labels"] == reference_line_labels(r["completion"], reference, r["status"] == "passed", gaps=True)
    for r in rows:
        counted = [v for v, c in zip(r["verdicts"], r["counted"]) if c]
        truth = [t for t, c in zip(r["true_labels"], r["counted"]) if c]
        assert r["score"] == pytest.approx(counted.count(CORRECT) / len(counted) if counted else 0.0)
        assert r["true_score"] == pytest.approx(truth.count(CORRECT) / len(truth) if truth else 0.0)


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


def test_a_crowd_verdict_on_whole_programs_can_be_the_reward(tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    metrics = run(crlhf_cfg(tmp_path, 1, crowd="1,1,1", val_limit=1, crowd_score="lines+verdict"))
    assert metrics[1]["verdict_accuracy"] == 1.0 and metrics[1]["score_error"] == 0.0  # the line share's error, whatever the reward
    rows = read(tmp_path / "iter_1" / "annotations.jsonl")
    assert {r["status"] == "passed" for r in rows} == {True, False}  # both kinds of program are judged here
    for r in rows:  # three perfect annotators agree on every program: passing ones are sure to be right
        assert all(v == (1 if r["status"] == "passed" else -1) for v in r["verdict_votes"].values())
        assert r["program_probability"] > 0.99 if r["status"] == "passed" else r["program_probability"] < 0.01
        share = r["verdicts"].count(CORRECT) / len(r["lines"]) if r["lines"] else 0.0
        assert r["score"] == pytest.approx((share + r["program_probability"]) / 2)


def test_the_verdict_prior_can_be_estimated_each_iteration(tmp_path):
    pytest.importorskip("torch")
    from codeloop.feedback.human import program_probability
    from codeloop.recipes.crlhf import run

    metrics = run(crlhf_cfg(tmp_path, 1, crowd="0.9,0.8,0.7", val_limit=1, crowd_score="verdict", verdict_prior="em"))
    rows = read(tmp_path / "iter_1" / "annotations.jsonl")
    prior = metrics[1]["verdict_prior"]
    assert 0.01 <= prior <= 0.99 and prior != 0.5
    assert sum(r["program_probability"] for r in rows) / len(rows) == pytest.approx(prior, abs=1e-6)  # EM's fixed point
    reliability = json.loads((tmp_path / "iter_1" / "reliabilities.json").read_text())["reliability"]
    for r in rows:
        assert r["score"] == pytest.approx(program_probability(r["verdict_votes"], reliability, prior))


@pytest.mark.parametrize("settings", [{"reliabilities": "online", "step": 1.0}, {"reliabilities": "oneshot"},
                                      {"reliabilities": "majority", "reward": "tests"}, {"reward": "truth", "kl_weight": 0.1, "clip": 0.2, "lr": 0.01}])
def test_the_other_estimates_and_rewards_run(settings, tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.crlhf import run

    metrics = run(crlhf_cfg(tmp_path, 1, val_limit=2, **settings))
    rows = read(tmp_path / "iter_1" / "annotations.jsonl")
    want = {"tests": [float(r["status"] == "passed") for r in rows], "truth": [r["true_score"] for r in rows]}.get(
        settings.get("reward", ""), [r["score"] for r in rows])
    assert metrics[1]["mean_score"] == pytest.approx(sum(want) / len(want))
    assert 0.0 <= metrics[1]["line_accuracy"] <= 1.0
    assert (metrics[1]["clipped"] > 0.0) == ("clip" in settings)  # lr 0.01: a few steps take ratios past 1 ± ε


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


# --- training on collected scores (codeloop loop crlhf-scores) ---------------------------------------


def test_advantages_subtract_the_tasks_other_programs_or_the_mean():
    from codeloop.recipes.crlhf import advantages

    ids, s = ["a", "a", "a", "b"], [1.0, 0.5, 0.0, 0.25]
    mean = sum(s) / 4  # 0.4375: the baseline of task b, which has no other program
    assert advantages(ids, s, "task") == pytest.approx([1.0 - 0.25, 0.5 - 0.5, 0.0 - 0.75, 0.25 - mean])
    assert advantages(ids, s, "mean") == pytest.approx([v - mean for v in s])
    assert advantages(ids, s, "none") == s


def test_a_scores_file_is_checked_line_by_line(tmp_path):
    from codeloop.data import DataError
    from codeloop.recipes.crlhf import read_scores

    tasks = {"t1": object()}
    path = tmp_path / "scores.jsonl"
    for rows, message in [([{"task_id": "t1", "completion": "x", "score": 0.5}, {"task_id": "t2", "completion": "x", "score": 1}],
                           "scores.jsonl:2: field 'task_id': unknown task 't2'"),
                          ([{"task_id": "t1", "completion": "x", "score": 1.5}], "scores.jsonl:1: field 'score': a score is a share"),
                          ([{"task_id": "t1", "score": 0.5}], "scores.jsonl:1: field 'completion': missing"),
                          ([{"task_id": "t1", "completion": "x", "score": "high"}], "scores.jsonl:1: field 'score': expected int or float"),
                          ([], "scores.jsonl: no scored programs")]:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(DataError, match=message):
            read_scores(path, tasks)
    path.write_text(json.dumps({"task_id": "t1", "completion": "x", "score": 1, "lines": ["x"]}) + "\n")
    assert read_scores(path, tasks) == [("t1", "x", 1.0)]
    path.write_text(json.dumps({"task_id": "t1", "completion": "x", "score": 0.5, "copies": 3}) + "\n")
    assert read_scores(path, tasks) == [("t1", "x", 0.5)] * 3  # a program sampled 3 times weighs 3 samples
    path.write_text(json.dumps({"task_id": "t1", "completion": "x", "score": 0.5, "copies": 0}) + "\n")
    with pytest.raises(DataError, match="scores.jsonl:1: field 'copies': a count of samples"):
        read_scores(path, tasks)


def test_bad_scores_settings_are_refused_with_the_key_named():
    from codeloop.recipes.crlhf import ScoresConfig

    with pytest.raises(ValueError, match="scores: give the JSONL"):
        ScoresConfig()
    with pytest.raises(ValueError, match="baseline must be one of task, mean, none"):
        ScoresConfig(scores="s.jsonl", baseline="critic")
    with pytest.raises(ValueError, match="clip must be in"):
        ScoresConfig(scores="s.jsonl", clip=1.0)


def test_people_labels_to_a_trained_policy_through_the_cli(tmp_path):
    """The whole path a team with annotators takes, with the simulated crowd standing in for the people:
    sample -> honeypots -> add -> simulate -> scores -> crlhf-scores."""
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from codeloop.cli import app

    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    tasks, db = "synthetic-python:train", tmp_path / "labels.sqlite"
    ok("sample", "--tasks", tasks, "--limit", 6, "--n", 3, "--max-new-tokens", 96, "--out", tmp_path / "programs.jsonl")
    ok("sample", "--tasks", tasks, "--offset", 6, "--limit", 5, "--max-new-tokens", 96, "--out", tmp_path / "raw.jsonl")
    assert "wrote 5 honeypots" in ok("annotate", "honeypots", "--tasks", tasks, "--samples", tmp_path / "raw.jsonl",
                                     "--out", tmp_path / "pots.jsonl")
    pots = read(tmp_path / "pots.jsonl")
    assert [p["task_id"] for p in pots] == [f"synthetic-python/train/{i}" for i in range(6, 11)]  # after --offset 6
    assert all(len(p["answers"]) == len(code_lines(p["completion"])) and set(p["answers"]) <= {1, -1} for p in pots)
    ok("annotate", "add", db, "--tasks", tasks, "--programs", tmp_path / "programs.jsonl", "--honeypots", tmp_path / "pots.jsonl")
    assert "from 10 simulated annotators on 5 honeypots and 18 programs" in ok("annotate", "simulate", db, "--tasks", tasks)
    assert "0 labels" in ok("annotate", "simulate", db, "--tasks", tasks)  # labelled already: nothing added
    ok("annotate", "scores", db, "--out", tmp_path / "verdicts.jsonl", "--crowd-score", "verdict")
    judged = read(tmp_path / "verdicts.jsonl")  # the simulated annotators judged every program as a whole too
    assert all(set(r["verdict_votes"]) == set(r["labels"]) and r["score"] == r["program_probability"] for r in judged)
    ok("annotate", "scores", db, "--out", tmp_path / "scores.jsonl")
    scored = read(tmp_path / "scores.jsonl")
    assert sum(r["copies"] for r in scored) == 18 and all(r["annotators"] == 3 and set(r["labels"]) <= {f"sim-a{i}" for i in range(1, 11)}
                                     for r in scored)
    out = tmp_path / "run"
    args = ["loop", "crlhf-scores", "configs/crlhf/scores.yaml", "--set", f"scores={tmp_path / 'scores.jsonl'}", f"out_dir={out}",
            "iterations=2", "val_limit=4", "val_n=2", "batch_size=4", "max_new_tokens=96", "lr=0.001"]
    printed = ok(*args)
    assert "iteration 2 against iteration 0" in printed
    metrics = read(out / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == [0, 1, 2] and metrics[0]["samples"] == 18
    assert metrics[0]["programs"] == len(scored) == sum(r["copies"] == 1 for r in scored) + sum(r["copies"] > 1 for r in scored)
    assert all(0.0 <= m["clipped"] <= 1.0 for m in metrics[1:])
    train = read(out / "train.jsonl")
    assert [r["score"] for r in train] == [r["score"] for r in scored for _ in range(r["copies"])]
    by_task: dict = {}
    for r in train:
        by_task.setdefault(r["task_id"], []).append(r["advantage"])
    assert all(abs(sum(a)) < 1e-9 for a in by_task.values())  # leave-one-out advantages sum to zero per task
    import torch
    from transformers import AutoModelForCausalLM

    from codeloop.models.hf import resolve

    start = AutoModelForCausalLM.from_pretrained(resolve("seed-python"))
    trained = AutoModelForCausalLM.from_pretrained(out / "iter_2" / "model")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
    # another scores file under the same out_dir is refused: the finished iterations came from the first
    (tmp_path / "other.jsonl").write_text(json.dumps({**scored[0], "score": 0.0}) + "\n")
    result = runner.invoke(app, [*args[:3], "--set", f"scores={tmp_path / 'other.jsonl'}", *args[5:], "iterations=3"])
    assert result.exit_code == 2 and "scores_sha256" in result.output
