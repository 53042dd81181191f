"""The Self-Refine loop, driven by a scripted OpenAI-compatible server (no model needed)."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI

from codeloop.data import load_tasks
from codeloop.data.prompts import outcome_feedback
from codeloop.recipes.self_refine import RefineConfig, run
from codeloop.types import Outcome, Status, TestResult


def fixer(body):
    """A 'model' that writes the right answer only once it has seen execution feedback."""
    prompt = body.get("prompt", "")
    if "# Feedback:" in prompt and "failed:" in prompt:
        task = next(t for t in load_tasks("synthetic-python:test:3").values() if prompt.endswith(t.prompt))
        return task.canonical_solution
    return "    return None\n"


@pytest.fixture()
def refine(tmp_path, monkeypatch):
    def go(**kw):
        with FakeOpenAI(reply=fixer) as server:
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            cfg = RefineConfig(backend="openai", model="m", tasks="synthetic-python:test:3", limit=3,
                               out_dir=str(tmp_path / "run"), **kw)
            return run(cfg), server, tmp_path / "run"
    return go


def test_execution_feedback_lets_the_second_attempt_pass(refine):
    metrics, _, _ = refine(attempts=3)
    assert [m["pass_rate"] for m in metrics] == [0.0, 1.0]  # stops early once every task passes


def test_the_refine_prompt_carries_the_previous_attempt_and_the_failing_case(refine):
    _, server, _ = refine(attempts=2)
    second = server.requests[3]["prompt"]
    assert "# Previous attempt:" in second and "#     return None" in second and "expected" in second


def test_hidden_tests_never_reach_the_prompt(refine):
    _, server, _ = refine(attempts=2, reveal_tests=False)
    second = server.requests[3]["prompt"]
    assert "hidden tests failed" in second and "expected" not in second


def test_the_none_control_retries_the_plain_task(refine):
    metrics, server, _ = refine(attempts=2, feedback="none")
    assert "# Feedback:" not in server.requests[3]["prompt"] and metrics[-1]["pass_rate"] == 0.0


def test_traces_metrics_and_plot_are_written(refine):
    _, _, out = refine(attempts=2)
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [len(t["attempts"]) for t in traces] == [2, 2, 2] and [m["attempt"] for m in metrics] == [0, 1]
    assert (out / "metrics.png").stat().st_size > 1000


def test_unknown_feedback_source_is_refused(refine):
    with pytest.raises(ValueError, match="feedback sources"):
        refine(feedback="oracle")


def test_hidden_feedback_counts_failed_tests():
    outcome = Outcome(Status.FAILED, tests=(TestResult("case 1", False, "input [1] expected 2 got 3"),
                                            TestResult("case 2", True)), reason="1/2 cases failed; first: input [1] expected 2 got 3")
    assert outcome_feedback(outcome, reveal_tests=False) == "failed: 1/2 hidden tests failed"


ST_WRONG = ("FUNCTION solve : DINT\nVAR_INPUT\n    xs : ARRAY[1..12] OF DINT;\n    n : INT;\nEND_VAR\n"
            "solve := 0; (* a comment of its own *)\nEND_FUNCTION\n")


def st_fixer(body):
    """The ST counterpart of ``fixer``: a compiling wrong function until it sees execution feedback."""
    prompt = body.get("prompt", "")
    if "Feedback:\nfailed:" in prompt:
        task = next(t for t in load_tasks("synthetic-st:test:3").values() if prompt.endswith(t.prompt))
        return task.canonical_solution
    return ST_WRONG


def test_structured_text_tasks_get_st_comments_and_no_python_stops(tmp_path, monkeypatch):
    from codeloop.languages import st

    with FakeOpenAI(reply=st_fixer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        metrics = run(RefineConfig(backend="openai", model="m", tasks="synthetic-st:test:3", limit=3, attempts=2,
                                   max_new_tokens=320, out_dir=str(tmp_path / "run")))
    assert [m["pass_rate"] for m in metrics] == [0.0, 1.0]
    assert all(not r.get("stop") for r in server.requests)  # a Python stop like "\n\n\n" must not cut ST
    second = server.requests[3]["prompt"]
    task = next(t for t in load_tasks("synthetic-st:test:3").values() if second.endswith(t.prompt))
    assert second.startswith("(* Previous attempt:") and "# " not in second
    assert "( * a comment of its own * )" in second  # defused: the attempt's own comment cannot close the block
    assert st.check(second + (task.canonical_solution or "")) == []  # the whole repair prompt is one ST comment


def test_a_model_and_a_judge_on_vllm_must_fit_on_the_gpu_together():
    with pytest.raises(ValueError, match=r"vllm_memory 0.6 for each of the 2 vLLM engines .*set vllm_memory to 0.47 or less"):
        RefineConfig(backend="vllm", judge_model="j", judge_backend="vllm", feedback="execution,judge")
    assert RefineConfig(backend="vllm", judge_model="j", judge_backend="vllm", feedback="judge", vllm_memory=0.45)
    assert RefineConfig(backend="vllm", judge_model="j", judge_backend="vllm", feedback="execution")  # no judge runs


def test_critiques_and_reviews_come_in_one_batch_per_attempt_and_reach_each_tasks_next_prompt(tmp_path, monkeypatch):
    """--feedback self,judge: each attempt asks the model for the critiques of all its failed tasks in one
    call, and the judge for its reviews in one call; each task's feedback holds its own."""
    from codeloop.recipes import self_refine
    from codeloop.types import Completion

    tasks = list(load_tasks("synthetic-python:test:3").values())
    calls = []

    def which(prompt):  # the task a prompt is about: its docstring is in every prompt made of it
        return next(t for t in tasks if t.prompt.splitlines()[1].strip() in prompt)

    class Writer:  # solves a task once a reviewer's note for that task is in its prompt
        def generate(self, prompts, params):
            calls.append(("writer", len(prompts)))
            out = []
            for p in prompts:
                if p.endswith("# Critique:\n# "):
                    text = "it returns None for " + which(p).task_id
                else:
                    fix = [t for t in tasks if p.endswith(t.prompt) and f"look at {t.task_id}" in p]
                    text = fix[0].canonical_solution if fix else "    return None\n"
                out.append([Completion(text)])
            return out

    class Reviewer:
        def generate(self, prompts, params):
            calls.append(("judge", len(prompts), params.temperature, params.max_new_tokens))
            return [[Completion("look at " + which(p).task_id)] for p in prompts]

    monkeypatch.setattr(self_refine, "load_code_writer", lambda backend, model, **kw: Writer())
    monkeypatch.setattr(self_refine, "load_generator", lambda backend, model, **kw: Reviewer())
    metrics = run(RefineConfig(backend="openai", model="w", judge_model="j", tasks="synthetic-python:test:3", limit=3,
                               feedback="self,judge", attempts=3, out_dir=str(tmp_path), judge_temperature=1.0,
                               judge_max_new_tokens=900))
    assert calls == [("writer", 3), ("writer", 3), ("judge", 3, 1.0, 900), ("writer", 3)]  # y0, critiques, reviews, y1
    assert [m["pass_rate"] for m in metrics] == [0.0, 1.0]
    traces = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    for trace in traces:
        assert trace["attempts"][0]["feedback"] == (f"critique: it returns None for {trace['task_id']}\n"
                                                    f"reviewer: look at {trace['task_id']}")


def test_a_chat_model_refines_its_code_and_critiques_itself_in_words(tmp_path, monkeypatch, capsys):
    """backend openai-chat: code comes back in fences, the self-critique is asked as a question (no
    stop sequences, no critique comment to continue), and the run says what it used."""
    from codeloop.recipes.self_refine import SELF_CRITIQUE_ASK

    tasks = list(load_tasks("synthetic-python:test:3").values())

    def chat(body):
        asked = body["messages"][-1]["content"]
        if asked.endswith(SELF_CRITIQUE_ASK):
            return "It returns None."
        task = next(t for t in tasks if asked.endswith(t.prompt))
        body_ = task.canonical_solution if "critique: It returns None." in asked else "    return None\n"
        return f"```python\n{task.prompt}{body_}```"

    with FakeOpenAI(reply=chat) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        metrics = run(RefineConfig(backend="openai-chat", model="m", tasks="synthetic-python:test:3", limit=3,
                                   feedback="execution,self", attempts=3, out_dir=str(tmp_path)))
    assert [m["pass_rate"] for m in metrics] == [0.0, 1.0]
    critiques = [b for b in server.requests if b["messages"][-1]["content"].endswith(SELF_CRITIQUE_ASK)]
    assert len(critiques) == 3 and not any("stop" in b for b in critiques)
    assert "m: 9 requests" in capsys.readouterr().err


def test_an_unknown_backend_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="judge_backend must be one of hf, vllm, openai, openai-chat, got 'gpt'"):
        RefineConfig(judge_backend="gpt", out_dir=str(tmp_path))
