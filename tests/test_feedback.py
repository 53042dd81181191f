"""Experts and preference data: compiler, graded tests, the LLM judge protocol, eq. 6, DPO loss."""

from __future__ import annotations

import math

import pytest
from fake_openai import FakeOpenAI

from codeloop.data.preferences import kto_rows, preference_pairs, rank_positive
from codeloop.feedback.compiler import compiles
from codeloop.feedback.judge import Judge, parse_verdicts
from codeloop.feedback.tests import graded, passes
from codeloop.models.openai import OpenAIGenerator
from codeloop.types import Outcome, Status


def test_compiler_accepts_valid_code():
    assert compiles("def f():\n    return 1\n").score == 1.0


def test_compiler_rejects_a_syntax_error_with_its_line():
    fb = compiles("def f(:\n    return 1\n")
    assert fb.score == 0.0 and "line 1" in fb.reason


@pytest.mark.parametrize("status,reward", [(Status.PASSED, 1.0), (Status.FAILED, -0.3),
                                           (Status.RUNTIME_ERROR, -0.6), (Status.COMPILE_ERROR, -1.0)])
def test_graded_reward_follows_coderl(status, reward):
    assert graded(Outcome(status)).score == reward


def test_the_binary_test_expert_passes_only_a_passing_outcome():
    assert [passes(Outcome(s)).score for s in (Status.PASSED, Status.FAILED, Status.TIMEOUT)] == [1.0, 0.0, 0.0]


def test_kto_rows_label_each_completion():
    assert kto_rows("p", ["a", "b"], [True, False]) == [{"prompt": "p", "completion": "a", "label": True},
                                                       {"prompt": "p", "completion": "b", "label": False}]


def test_verdicts_parse_exactly():
    assert parse_verdicts("[0] [1] [1]", 3) == [0, 1, 1]


@pytest.mark.parametrize("text", ["[0] [1]", "[0] [1] [1] [0]", "Answer: [0] [1] [1]", "[0][2][1]", "0 1 1"])
def test_anything_else_is_refused(text):
    assert parse_verdicts(text, 3) is None


def judge_with(replies, mode="completions"):
    queue = list(replies)
    server = FakeOpenAI(reply=lambda body: queue.pop(0) if queue else "[1]")
    return server, lambda: Judge(OpenAIGenerator("j", base_url=server.url, api_key="k", mode=mode, backoff_s=0.01))


def test_judge_sends_candidates_separated_and_parses_the_answer():
    server, make = judge_with(["[0] [1]"])
    with server:
        result = make().judge("add one", ["    return x", "    return x + 1"])
    assert result.verdicts == [0, 1] and "    return x\n=====\n    return x + 1" in server.requests[0]["prompt"]


def test_a_wrong_count_is_retried_once():
    server, make = judge_with(["[1]", "[1] [0]"])
    with server:
        result = make().judge("t", ["a", "b"])
    assert result.verdicts == [1, 0] and len(result.answers) == 2


def test_a_persistently_malformed_judge_is_recorded_not_guessed():
    server, make = judge_with(["looks good", "[1] [1] [1]"])
    with server:
        result = make().judge("t", ["a", "b"])
    assert result.verdicts is None and result.answers == ("looks good", "[1] [1] [1]") and result.feedback() == []


def test_many_intents_are_judged_in_one_call_a_round_and_only_the_malformed_asked_again():
    """judge_all sends every item's prompt in one generate call (a backend batches them), then asks
    again, with the retry's seed, only for the items that answered off the format; each item's result is
    what judging it alone gives."""
    from codeloop.types import Completion

    replies = {("one", 0): "[1] [0]", ("two", 0): "[1]", ("two", 1): "[0] [0]", ("three", 0): "no", ("three", 1): "no"}
    calls = []

    class Scripted:
        def generate(self, prompts, params):
            calls.append((len(prompts), params.seed))
            return [[Completion(replies[(p.split("Problem: ")[1].split("\n")[0], params.seed)], cost_usd=0.5)]
                    for p in prompts]

    judge = Judge(Scripted())
    items = [("one", ["a", "b"]), ("two", ["a", "b"]), ("three", ["a"])]
    results = judge.judge_all(items)
    assert calls == [(3, 0), (2, 1)]
    assert [(r.verdicts, r.answers, r.cost_usd) for r in results] == [
        ([1, 0], ("[1] [0]",), 0.5), ([0, 0], ("[1]", "[0] [0]"), 1.0), (None, ("no", "no"), 1.0)]
    calls.clear()
    alone = [judge.judge(intent, candidates) for intent, candidates in items]
    assert [(r.verdicts, r.answers) for r in alone] == [(r.verdicts, r.answers) for r in results] and len(calls) == 5


def test_chat_judges_get_the_system_prompt_in_the_system_role():
    server, make = judge_with(["[1]"], mode="chat")
    with server:
        make().judge("t", ["a"])
    messages = server.requests[0]["messages"]
    assert messages[0]["role"] == "system" and "[0] [1] [1]" in messages[0]["content"]


def test_picks_for_many_intents_come_in_one_call_a_round():
    from codeloop.types import Completion

    replies = {("one", 0): "2", ("two", 0): "best: 1", ("two", 1): "1", ("three", 0): "4", ("three", 1): "²"}
    calls = []

    class Scripted:
        def generate(self, prompts, params):
            calls.append(len(prompts))
            return [[Completion(replies[(p.split("Problem: ")[1].split("\n")[0], params.seed)])] for p in prompts]

    assert Judge(Scripted()).pick_best_all([("one", ["a", "b"]), ("two", ["a", "b"]), ("three", ["a", "b", "c"])]) == [1, 0, None]
    assert calls == [3, 2]  # the retry asks only for the two answers off the format (a word; a number past k)
    # and "²", a digit to str.isdigit that int() refuses, is off the format too, not a crash


def test_pick_best_returns_the_index_of_the_answered_number():
    server, make = judge_with(["2"])
    with server:
        assert make().pick_best("t", ["a", "b", "c"]) == 1


def test_rank_prefers_compiling_over_semantic_only():
    assert rank_positive(kappa=[0, 1, 1], phi=[1, 0, 1]) == 2


def test_rank_ties_go_to_the_tie_breaker():
    assert rank_positive(kappa=[1, 1, 1], phi=[1, 1, 0], tie_break=lambda tied: tied[-1]) == 1


def test_one_positive_against_every_distinct_negative():
    pairs = preference_pairs("p", ["good", "bad", "good", "worse"], positive=0)
    assert [(x.chosen, x.rejected) for x in pairs] == [("good", "bad"), ("good", "worse")]


def test_dpo_loss_worked_example():
    torch = pytest.importorskip("torch")
    from codeloop.train.dpo import dpo_loss

    # margin = (−1 − −2) − (−3 − −2) = 2; β = 0.5 → −log σ(1) = log(1 + e^−1) = 0.313262
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)))


def test_dpo_raises_the_chosen_margin():
    pytest.importorskip("torch")
    import copy

    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.train.dpo import dpo
    from codeloop.types import PreferencePair

    model, tok = tiny_causal_lm(seed=4)
    reference = copy.deepcopy(model)
    pairs = [PreferencePair("Q:", " yes", " no")] * 16
    stats = dpo(model, reference, tok, pairs, beta=0.5, lr=1e-2, epochs=6, batch_size=8, nll_weight=0.0, progress=False)
    assert stats.reward_accuracy > 0.9 and stats.steps == 12
