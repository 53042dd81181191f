"""CodeRL (DESIGN.md 1.3): AST and data-flow matches, the critic, the policy-gradient update and the loop."""

from __future__ import annotations

import json

import pytest

from codeloop.feedback.match import ast_match, dataflow_graph, dataflow_match

REFERENCE = "def f(xs):\n    ys = [x * x for x in xs]\n    total = 0\n    for y in ys:\n        total += y\n    return total\n"
RENAMED = "def f(xs):\n    zs = [v * v for v in xs]\n    acc = 0\n    for w in zs:\n        acc += w\n    return acc\n"


# --- the match expert -------------------------------------------------------------------------------

def test_a_program_matches_itself_fully():
    assert ast_match(REFERENCE, REFERENCE) == 1.0 and dataflow_match(REFERENCE, REFERENCE) == 1.0


def test_consistent_renaming_keeps_both_matches():
    assert ast_match(RENAMED, REFERENCE) == 1.0 and dataflow_match(RENAMED, REFERENCE) == 1.0


def test_ast_match_counts_reference_subtrees_found_in_the_candidate():
    # Reference "def f(a):\n    return a + 1": subtrees (nodes with child nodes) are Module, FunctionDef,
    # arguments, Return, BinOp(Name,Add,Constant) = 5. The candidate "return a - 1" shares Module? no (its
    # body differs), FunctionDef? no, arguments yes, Return? no (BinOp differs), BinOp? no: 1 of 5.
    assert ast_match("def f(a):\n    return a - 1\n", "def f(a):\n    return a + 1\n") == pytest.approx(1 / 5)


def test_dataflow_edges_are_definitions_and_uses_with_normalised_names():
    graph = dataflow_graph("def f(a):\n    b = a\n    c = b + a\n    return c\n")
    # a is read (var_0 comesFrom itself), b comesFrom a, then b and a are read, c computedFrom (b, a), c is read.
    assert graph == [("var_0", "comesFrom", ("var_0",)), ("var_1", "comesFrom", ("var_0",)),
                     ("var_1", "comesFrom", ("var_1",)), ("var_0", "comesFrom", ("var_0",)),
                     ("var_2", "computedFrom", ("var_1", "var_0")), ("var_2", "comesFrom", ("var_2",))]


def test_dataflow_match_is_the_share_of_reference_edges_each_matched_once():
    reference = "def f(a):\n    b = a\n    c = b + a\n    return c\n"  # 6 edges (previous test)
    candidate = "def f(a):\n    b = a\n    return b\n"  # a read, b from a, b read: 3 edges, all in the reference
    assert dataflow_match(candidate, reference) == pytest.approx(3 / 6)


def test_code_that_does_not_parse_matches_nothing():
    assert ast_match("def f(:\n", REFERENCE) == 0.0 and dataflow_match("def f(:\n", REFERENCE) == 0.0


# --- the REINFORCE weights ---------------------------------------------------------------------------

def test_leave_one_out_baseline_is_the_mean_of_the_other_samples_of_the_task():
    from codeloop.recipes.coderl import leave_one_out

    # two tasks of k=2: (1, -0.3) and (-1, -1): each sample's baseline is its partner's return
    assert leave_one_out([1.0, -0.3, -1.0, -1.0], 2) == pytest.approx([-0.3, 1.0, -1.0, -1.0])


def test_coderl_weights_scale_each_token_by_the_critic_value_of_the_actual_outcome():
    from codeloop.recipes.coderl import reinforce_weights

    q = [[0.5, 1.0], [0.2, 0.4]]
    # returns 1 and -0.3; leave-one-out baselines -0.3 and 1: advantages 1.3 and -1.3
    w = reinforce_weights([1.0, -0.3], q, k=2, baseline="mean", critic="coderl")
    assert w == [pytest.approx([0.65, 1.3]), pytest.approx([-0.26, -0.52])]


def test_the_additive_form_adds_the_critic_sum_to_the_return_before_the_baseline():
    from codeloop.recipes.coderl import reinforce_weights

    # R = r + 2·Σq: 1 + 2·1.5 = 4 and -0.3 + 2·0.6 = 0.9; greedy baselines 0.5 and 0.5
    w = reinforce_weights([1.0, -0.3], [[0.5, 1.0], [0.2, 0.4]], k=2, baseline="greedy", critic="additive",
                          critic_weight=2.0, greedy=[0.5, 0.5])
    assert w == [pytest.approx(3.5), pytest.approx(0.4)]


def test_plain_reinforce_without_a_baseline_weights_every_token_by_the_return():
    from codeloop.recipes.coderl import reinforce_weights

    assert reinforce_weights([1.0, -0.6], [[0.9], [0.9]], k=2, baseline="none", critic="none") == [1.0, -0.6]


def test_a_greedy_baseline_without_greedy_returns_is_refused():
    from codeloop.recipes.coderl import reinforce_weights

    with pytest.raises(ValueError, match="baseline 'greedy': 0 values for 2 samples"):
        reinforce_weights([1.0, -0.3], [[0.5], [0.5]], k=2, baseline="greedy", critic="none")


def test_the_critic_ranks_held_out_samples_and_is_scored_on_their_outcomes(monkeypatch):
    torch = pytest.importorskip("torch")
    from codeloop.recipes import coderl
    from codeloop.recipes.common import Rollout
    from codeloop.types import Completion, Outcome, Sample, Status, Task

    tasks = [Task("a", "def f():\n"), Task("b", "def g():\n")]
    statuses = [Status.FAILED, Status.PASSED, Status.PASSED, Status.COMPILE_ERROR]
    run_ = Rollout(tasks, [[Completion("x"), Completion("y")]] * 2, [Sample(t.task_id, c) for t in tasks for c in "xy"],
                   [Outcome(s) for s in statuses])
    # classes (compile, runtime, failed, passed): the critic prefers sample 2 of task a (passes) and sample 2 of
    # task b (a compile error); its most likely classes: failed, passed, failed, compile error: 3 of 4 right.
    probs = torch.tensor([[0.1, 0.1, 0.6, 0.2], [0.1, 0.1, 0.2, 0.6], [0.1, 0.1, 0.5, 0.3], [0.5, 0.1, 0.0, 0.4]])
    monkeypatch.setattr(coderl, "class_probabilities", lambda critic, tokenizer, items: probs)
    # both tasks have a passing sample: a perfect ranker would reach 1.0; the commonest class (passed) is 2 of 4
    assert coderl.critic_on_held_out(None, None, run_) == {"critic_accuracy": 0.75, "majority_accuracy": 0.5,
                                                           "ranked_pass_at_1": 0.5, "pass_at_n": 1.0}


def test_the_best_samples_per_task_are_kept_in_input_order_ties_to_the_earlier():
    from codeloop.recipes.coderl import best_per_task
    from codeloop.types import Sample

    samples = [Sample(t, c) for t, c in [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")]]
    p = [0.2, 0.5, 0.9, 0.2, 0.5]
    assert best_per_task(samples, p, 1) == [1, 2]  # b: a tie at 0.5 goes to the earlier sample
    assert best_per_task(samples, p, 2) == [0, 1, 2, 4]  # a: 0.9, then the earlier 0.2
    assert best_per_task(samples, p, 9) == [0, 1, 2, 3, 4]


def test_the_ranking_report_pairs_the_critics_pick_with_a_random_pick():
    from codeloop.recipes.coderl import ranked_row, ranking_report
    from codeloop.types import Sample

    def row(task, passed):
        return Sample(task, "x", {"passed": passed, "status": "passed" if passed else "failed"})

    # a: 1 of 4 pass, the critic picks it (+0.75); b: 2 of 2 pass (0); c: none passes (0)
    samples = [row("a", False), row("a", True), row("a", False), row("a", False), row("b", True), row("b", True),
               row("c", False), row("c", False)]
    p = [0.1, 0.8, 0.3, 0.2, 0.5, 0.4, 0.9, 0.1]
    report = ranking_report(samples, p)
    comparison = report.comparison
    assert comparison.tasks == 3 and comparison.before == pytest.approx((0.25 + 1 + 0) / 3)
    assert comparison.after == pytest.approx(2 / 3) and comparison.difference == pytest.approx(0.75 / 3)
    assert (comparison.better, comparison.worse) == (1, 0) and report.perfect == pytest.approx(2 / 3)
    assert report.compiling == pytest.approx(report.comparison.before)  # nothing here fails to compile
    samples[0].extra["status"] = samples[2].extra["status"] = "compile_error"  # task a: 1 of the 2 that compile passes
    assert ranking_report(samples, p).compiling == pytest.approx((0.5 + 1 + 0) / 3)
    assert ranking_report([Sample("a", "x", {"passed": True})], [0.5]).compiling is None  # no status: not known
    assert ranking_report([Sample("a", "x")], [0.5]) is None  # samples without verdicts: nothing to score
    assert ranking_report([Sample("a", "x", {"passed": "yes"})], [0.5]) is None
    ranked = ranked_row(samples[1], [0.1, 0.1, 0.0, 0.8])
    assert ranked == {"task_id": "a", "completion": "x", "passed": True, "status": "passed",
                      "critic_p_passed": 0.8, "critic_class": "passed"}


# --- critic and policy gradient on a tiny model ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    from codeloop.models.tiny import causal_lm, train_tokenizer

    tok = train_tokenizer(["Q: yes no maybe A: return 1 return 2 raise"] * 20, vocab_size=300)
    return causal_lm(len(tok), d_model=32, n_layer=2, n_head=2, seed=0, tokenizer=tok), tok


def test_the_critic_learns_to_tell_outcome_classes_apart(tiny):
    from codeloop.train.critic import PASSED, Critic, class_probabilities, train_critic

    model, tok = tiny
    items = [("Q:", " return 1")] * 8 + [("Q:", " raise")] * 8
    labels = [PASSED] * 8 + [0] * 8
    critic = Critic.from_model(model, seed=0)
    before = class_probabilities(critic, tok, items[:1] + items[-1:])[:, PASSED]
    stats = train_critic(critic, tok, items, labels, lr=1e-2, epochs=10, batch_size=8)
    after = class_probabilities(critic, tok, items[:1] + items[-1:])[:, PASSED]
    assert stats.accuracy == 1.0 and after[0] > 0.9 > 0.1 > after[1] and abs(float(before[0] - before[1])) < 0.2


def test_token_values_come_one_per_program_token_and_are_probabilities(tiny):
    from codeloop.train.common import tokenize
    from codeloop.train.critic import Critic, token_rewards

    model, tok = tiny
    q = token_rewards(Critic.from_model(model), tok, [("Q:", " return 1"), ("Q:", " raise")], [3, 0])
    assert [len(v) for v in q] == [len(tokenize(tok, "Q:", c)[1]) for c in (" return 1", " raise")]
    assert all(0.0 < x < 1.0 for v in q for x in v)


def test_the_critic_saves_and_loads_with_the_same_predictions(tiny, tmp_path):
    from codeloop.train.critic import Critic, class_probabilities

    model, tok = tiny
    critic = Critic.from_model(model, seed=3)
    critic.save(tmp_path)
    again = Critic.load(tmp_path)
    items = [("Q:", " return 2")]
    assert class_probabilities(again, tok, items)[0].tolist() == pytest.approx(class_probabilities(critic, tok, items)[0].tolist())


def test_a_folder_that_is_no_critic_is_named_with_what_it_lacks(tiny, tmp_path):
    from codeloop.train.critic import Critic

    model, _ = tiny
    model.save_pretrained(tmp_path)  # a model, not a critic
    with pytest.raises(ValueError, match="not a critic saved by `codeloop loop coderl`.*no critic.json, critic_head.pt"):
        Critic.load(tmp_path)


def test_the_critics_tokenizer_comes_from_its_folder_else_from_the_runs_starting_model(tiny, tmp_path):
    from codeloop.recipes.coderl import critic_tokenizer
    from codeloop.train.critic import Critic

    model, tok = tiny
    critic = Critic.from_model(model)
    critic.save(tmp_path / "own", tok)
    reader, source = critic_tokenizer(tmp_path / "own")
    assert source == str(tmp_path / "own") and reader("Q: yes")["input_ids"] == tok("Q: yes")["input_ids"]
    folder = tmp_path / "run" / "iter_3" / "critic"
    critic.save(folder)  # as the loop saved critics before it kept the tokenizer with them
    with pytest.raises(ValueError, match="holds no tokenizer.*names no starting model: give the model the run started from"):
        critic_tokenizer(folder)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model": "seed-python"}))
    assert critic_tokenizer(folder)[1] == "seed-python"
    assert critic_tokenizer(folder, str(tmp_path / "own"))[1] == str(tmp_path / "own")


def test_a_positive_weight_makes_a_program_likelier_and_a_negative_one_less(tiny):
    import copy

    import torch

    from codeloop.train.common import join, logprobs, tokenize
    from codeloop.train.pg import policy_gradient

    base, tok = tiny

    def lp(m, completion):
        with torch.no_grad():
            return float(logprobs(m, [join(*tokenize(tok, "Q:", completion))], tok.pad_token_id)[0][0])

    model = copy.deepcopy(base)
    stats = policy_gradient(model, tok, [("Q:", " yes"), ("Q:", " no")], [1.0, -1.0], lr=1e-2, epochs=5, batch_size=2)
    assert stats.steps == 5 and lp(model, " yes") > lp(base, " yes") and lp(model, " no") < lp(base, " no")


def test_a_zero_weight_on_every_token_leaves_the_policy_as_it_was(tiny):
    import copy

    import torch

    from codeloop.train.common import tokenize
    from codeloop.train.pg import policy_gradient

    base, tok = tiny
    model = copy.deepcopy(base)
    n = len(tokenize(tok, "Q:", " yes")[1])
    policy_gradient(model, tok, [("Q:", " yes")], [[0.0] * n], lr=1e-2, epochs=2, batch_size=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), base.parameters()))


def test_the_loss_sums_each_programs_weighted_log_probs_or_with_length_normalise_averages_them(tiny):
    import torch

    from codeloop.train.common import join, logprobs, tokenize
    from codeloop.train.pg import policy_gradient

    model, tok = tiny
    items = [("Q:", " yes"), ("Q:", " maybe no yes")]
    with torch.no_grad():
        lp, n = logprobs(model, [join(*tokenize(tok, p, c)) for p, c in items], tok.pad_token_id)
    assert n[0] < n[1]
    # one step at lr 0: the reported loss is the loss at the starting weights, -(1/B) Σ_i w_i Σ_t log p (/ T_i)
    plain = policy_gradient(model, tok, items, [1.0, -1.0], lr=0.0, epochs=1, batch_size=2)
    mean = policy_gradient(model, tok, items, [1.0, -1.0], lr=0.0, epochs=1, batch_size=2, length_normalise=True)
    assert plain.final_loss == pytest.approx(float(-(lp[0] - lp[1]) / 2), rel=1e-5)
    assert mean.final_loss == pytest.approx(float(-(lp[0] / n[0] - lp[1] / n[1]) / 2), rel=1e-5)


def test_the_kl_penalty_alone_pulls_a_drifted_policy_back_towards_the_reference(tiny):
    import copy

    import torch

    from codeloop.train.common import join, logprobs, tokenize
    from codeloop.train.pg import policy_gradient

    base, tok = tiny

    def lp(m):
        with torch.no_grad():
            return float(logprobs(m, [join(*tokenize(tok, "Q:", " yes"))], tok.pad_token_id)[0][0])

    model = copy.deepcopy(base)
    policy_gradient(model, tok, [("Q:", " yes")], [1.0], lr=1e-2, epochs=5, batch_size=1)
    drifted = lp(model)
    stats = policy_gradient(model, tok, [("Q:", " yes")], [0.0], lr=1e-2, epochs=5, batch_size=1, reference=base, kl_weight=1.0)
    assert drifted > lp(model) > lp(base) - 1e-3 and stats.kl > 0.0


def test_the_clipped_surrogate_takes_reinforces_first_step(tiny):
    import copy

    import torch

    from codeloop.train.pg import policy_gradient

    base, tok = tiny
    items, weights = [("Q:", " yes"), ("Q:", " no")], [1.0, -1.0]
    plain, clipped = copy.deepcopy(base), copy.deepcopy(base)
    policy_gradient(plain, tok, items, weights, lr=1e-3, epochs=1, batch_size=2)
    stats = policy_gradient(clipped, tok, items, weights, lr=1e-3, epochs=1, batch_size=2, clip=0.2)
    # ratio 1 at the start: the same gradient, so the same first step; nothing clipped yet
    assert stats.clipped == 0.0 and any(not torch.equal(a, b) for a, b in zip(clipped.parameters(), base.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(clipped.parameters(), plain.parameters()))


def test_clipping_keeps_many_epochs_near_the_policy_that_wrote_the_programs(tiny):
    import copy

    import torch

    from codeloop.train.common import join, token_logprobs, tokenize
    from codeloop.train.pg import behaviour_logprobs, policy_gradient

    base, tok = tiny
    items, weights = [("Q:", " yes"), ("Q:", " no")], [1.0, -1.0]

    def ratio(m):  # the largest per-token p_m / p_base on the rewarded program
        with torch.no_grad():
            rows = [join(*tokenize(tok, "Q:", " yes"))]
            lp, keep = token_logprobs(m, rows, tok.pad_token_id)
            old, _ = token_logprobs(base, rows, tok.pad_token_id)
        return float(torch.exp(lp - old)[keep].max())

    free, clipped = copy.deepcopy(base), copy.deepcopy(base)
    policy_gradient(free, tok, items, weights, lr=3e-3, epochs=30, batch_size=2)
    stats = policy_gradient(clipped, tok, items, weights, lr=3e-3, epochs=30, batch_size=2, clip=0.2)
    assert ratio(free) > 20 and 1.2 < ratio(clipped) < 4 and stats.clipped > 0.5
    # measured against an explicit behaviour policy, the far-drifted model is clipped on every token and
    # stands still; measured against itself (the default), the same update moves it again
    still, again = copy.deepcopy(free), copy.deepcopy(free)
    held = policy_gradient(still, tok, items, weights, lr=3e-3, epochs=2, batch_size=2, clip=0.2,
                           old_logprobs=behaviour_logprobs(base, tok, items))
    policy_gradient(again, tok, items, weights, lr=3e-3, epochs=2, batch_size=2, clip=0.2)
    assert held.clipped == 1.0 and all(torch.equal(a, b) for a, b in zip(still.parameters(), free.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(again.parameters(), free.parameters()))


def test_a_clip_outside_zero_to_one_is_refused(tiny):
    from codeloop.train.pg import policy_gradient

    model, tok = tiny
    with pytest.raises(ValueError, match="clip must be in"):
        policy_gradient(model, tok, [("Q:", " yes")], [1.0], clip=1.5)
    with pytest.raises(ValueError, match="2 rows of old log-probabilities for 1 programs"):
        policy_gradient(model, tok, [("Q:", " yes")], [1.0], clip=0.2, old_logprobs=[[0.0], [0.0]])


def test_a_kl_weight_without_a_reference_is_refused(tiny):
    from codeloop.train.pg import policy_gradient

    model, tok = tiny
    with pytest.raises(ValueError, match="kl_weight 0.1 needs a reference model"):
        policy_gradient(model, tok, [("Q:", " yes")], [1.0], kl_weight=0.1)


def test_token_weights_must_match_the_programs_tokens(tiny):
    from codeloop.train.common import tokenize
    from codeloop.train.pg import policy_gradient

    model, tok = tiny
    n = len(tokenize(tok, "Q:", " yes")[1])  # the program's tokens and EOS
    with pytest.raises(ValueError, match=f"{n + 1} token weights for a program of {n} tokens"):
        policy_gradient(model, tok, [("Q:", " yes")], [[1.0] * (n + 1)])


# --- the recipe -------------------------------------------------------------------------------------

def coderl_cfg(out, iterations, **kw):
    from codeloop.recipes.coderl import CodeRLConfig

    settings = dict(n_instructions=12, fraction=0.5, iterations=iterations, k=3, val_limit=4, val_n=2, batch_size=4,
                    max_new_tokens=96, val_plus_tasks="synthetic-python+:test", out_dir=str(out))
    return CodeRLConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def coderl_run(tmp_path_factory):
    pytest.importorskip("torch")
    from codeloop.recipes.coderl import run

    out = tmp_path_factory.mktemp("coderl")
    return out, run(coderl_cfg(out, 2))


def test_the_python_only_match_rewards_are_refused_for_st_tasks(tmp_path):
    from codeloop.recipes.coderl import run

    for name, value in (("ast_weight", 0.5), ("dfg_weight", 0.2)):
        with pytest.raises(ValueError, match=f"{name} {value} works on Python only, and 'synthetic-st:train' holds st tasks: set it to 0"):
            run(coderl_cfg(tmp_path / "x", 1, tasks="synthetic-st:train", **{name: value}))
    assert not (tmp_path / "x").exists()


def test_coderl_writes_a_row_per_iteration_samples_with_returns_and_a_critic(coderl_run):
    from codeloop.feedback.tests import REWARDS
    from codeloop.types import Status

    out, metrics = coderl_run
    assert [m["iteration"] for m in metrics] == [0, 1, 2] and "ranked_pass_at_1" not in metrics[0]
    assert {"ranked_pass_at_1", "critic_accuracy", "critic_train_accuracy", "mean_return", "critic_s", "train_s"} <= set(metrics[1])
    assert all(0.0 <= m[key] <= 1.0 for m in metrics[1:] for key in ("ranked_pass_at_1", "critic_accuracy"))
    samples = [json.loads(line) for line in (out / "iter_1" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 * 3 and all(s["return"] == REWARDS[Status(s["status"])] for s in samples)
    assert (out / "iter_2" / "critic" / "critic_head.pt").exists() and (out / "metrics.png").exists()
    assert (out / "iter_2" / "critic" / "tokenizer_config.json").exists()  # the folder alone can rank programs


def test_codeloop_rank_scores_keeps_the_best_per_task_and_reports_on_results_rows(coderl_run, tmp_path):
    from typer.testing import CliRunner

    from codeloop.cli import app

    out, _ = coderl_run
    # the training samples of iteration 1, as results rows (passed from their status), for the loop's tasks
    rows = [json.loads(line) for line in (out / "iter_1" / "samples.jsonl").read_text().splitlines()]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps({**r, "passed": r["status"] == "passed"}) + "\n" for r in rows))
    runner = CliRunner()
    result = runner.invoke(app, ["rank", "--critic", str(out / "iter_2" / "critic"), "--tasks", "synthetic-python:train",
                                 "--samples", str(results), "--keep", "1"])
    assert result.exit_code == 0, result.output
    ranked = [json.loads(line) for line in (tmp_path / "results_ranked.jsonl").read_text().splitlines()]
    assert len(ranked) == len({r["task_id"] for r in rows}) == 6
    assert all(0.0 <= r["critic_p_passed"] <= 1.0 and r["critic_class"] and "return" in r for r in ranked)
    assert "kept 6" in result.output and "the critic's pick per task passes" in result.output
    assert "pick - random:" in result.output and "tasks up / down" in result.output
    plain = runner.invoke(app, ["rank", "--critic", str(out / "iter_2" / "critic"), "--tasks", "synthetic-python:train",
                                "--samples", str(out / "iter_1" / "samples.jsonl"), "--out", str(tmp_path / "all.jsonl")])
    assert plain.exit_code == 0 and "kept 18" in plain.output and "pick - random" not in plain.output  # no verdicts
    bad = runner.invoke(app, ["rank", "--critic", str(tmp_path), "--tasks", "synthetic-python:train", "--samples", str(results)])
    assert bad.exit_code == 2 and "not a critic saved by `codeloop loop coderl`" in bad.output
    no_model = runner.invoke(app, ["rank", "--critic", str(out / "iter_2" / "critic"), "--tasks", "synthetic-python:train",
                                   "--samples", str(results), "--tokenizer", str(tmp_path / "nope")])
    assert no_model.exit_code == 2 and "no such directory, and not a hub name" in no_model.output


def test_coderl_resumes_after_a_kill_with_the_same_samples(coderl_run, tmp_path):
    from codeloop.recipes.coderl import run

    out, metrics = coderl_run
    run(coderl_cfg(tmp_path, 1))
    (tmp_path / "iter_2").mkdir()
    (tmp_path / "iter_2" / "junk").write_text("half-written")
    resumed = run(coderl_cfg(tmp_path, 2))
    assert (tmp_path / "iter_2" / "samples.jsonl").read_text() == (out / "iter_2" / "samples.jsonl").read_text()
    assert [m["pass_at_1"] for m in resumed] == [m["pass_at_1"] for m in metrics]


def test_replay_reads_back_the_classed_programs_of_the_earlier_iterations(tmp_path):
    from codeloop.recipes.coderl import replay
    from codeloop.types import Task

    tasks = {"a": Task("a", "def a():\n"), "b": Task("b", "def b():\n")}
    rows = {1: [("a", "x1", "passed"), ("b", "y1", "infra_error")], 2: [("b", "y2", "timeout")], 3: [("a", "x3", "failed")]}
    for i, samples in rows.items():
        (tmp_path / f"iter_{i}").mkdir()
        (tmp_path / f"iter_{i}" / "samples.jsonl").write_text(
            "".join(json.dumps({"task_id": t, "completion": c, "status": st, "return": 0}) + "\n" for t, c, st in samples))
    assert replay(tmp_path, 4, 0, tasks) == [] and replay(tmp_path, 1, 3, tasks) == []
    assert replay(tmp_path, 4, 2, tasks) == [(("def b():\n", "y2"), 1), (("def a():\n", "x3"), 2)]  # iterations 2 and 3
    assert replay(tmp_path, 3, 9, tasks) == [(("def a():\n", "x1"), 3), (("def b():\n", "y2"), 1)]  # infra errors: no class


def test_coderl_trains_the_critic_on_earlier_programs_too_with_critic_replay(tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.coderl import run

    metrics = run(coderl_cfg(tmp_path, 2, val_limit=2, critic_replay=1))
    own = [sum(json.loads(line)["status"] != "infra_error" for line in (tmp_path / f"iter_{i}" / "samples.jsonl").open())
           for i in (1, 2)]
    assert [m["critic_examples"] for m in metrics[1:]] == [own[0], own[0] + own[1]]
    with pytest.raises(ValueError, match="critic_replay must be >= 0"):
        coderl_cfg(tmp_path, 1, critic_replay=-1)


@pytest.mark.parametrize("settings", [{"critic": "additive", "baseline": "greedy", "kl_weight": 0.1}, {"critic": "none", "ast_weight": 0.5,
                                                                                    "dfg_weight": 0.5, "clip": 0.2}])
def test_coderl_runs_with_the_other_critic_forms_baselines_and_matches(settings, tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.coderl import run

    metrics = run(coderl_cfg(tmp_path, 1, val_limit=2, **settings))
    samples = [json.loads(line) for line in (tmp_path / "iter_1" / "samples.jsonl").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 1 and len(samples) == 18
    if "ast_weight" in settings:  # the matches add up to 0.5 + 0.5 on top of the test reward
        from codeloop.feedback.tests import REWARDS
        from codeloop.types import Status

        extra = [s["return"] - REWARDS[Status(s["status"])] for s in samples]
        assert all(0.0 <= e <= 1.0 for e in extra) and any(e > 0 for e in extra)


def test_coderl_refuses_an_unknown_critic_form_and_the_trl_trainer():
    from codeloop.recipes.coderl import CodeRLConfig

    with pytest.raises(ValueError, match="critic must be one of coderl, additive, none"):
        CodeRLConfig(critic="ppo")
    with pytest.raises(ValueError, match="trainer 'trl'"):
        CodeRLConfig(trainer="trl")
