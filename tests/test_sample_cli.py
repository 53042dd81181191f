"""``codeloop sample`` end to end, then ``codeloop eval`` on what it wrote."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from codeloop.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")
    from codeloop.models.tiny import tiny_causal_lm

    path = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_sample_writes_n_rows_per_task_with_metadata(tmp_path, tiny_dir):
    out = tmp_path / "s.jsonl"
    result = runner.invoke(app, ["sample", "--model", str(tiny_dir), "--tasks", "synthetic-python:test", "--limit", "3",
                                 "--n", "2", "--max-new-tokens", "8", "--seed", "5", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.exit_code == 0 and len(rows) == 6
    assert {(r["temperature"], r["seed"], r["backend"]) for r in rows} == {(0.8, 5, "hf")}
    cut = sum(r["finish_reason"] == "length" for r in rows)  # a random tiny model rarely ends in 8 tokens
    assert cut and f"{cut} of the 6 completions made now stopped at --max-new-tokens 8" in result.stderr


def test_the_same_seed_writes_the_same_samples(tmp_path, tiny_dir):
    args = ["sample", "--model", str(tiny_dir), "--tasks", "synthetic-python:test", "--limit", "2", "--n", "2",
            "--max-new-tokens", "8", "--seed", "3", "--out"]
    runner.invoke(app, args + [str(tmp_path / "a.jsonl")])
    runner.invoke(app, args + [str(tmp_path / "b.jsonl")])
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_samples_from_the_openai_backend_can_be_evaluated(tmp_path, monkeypatch):
    with FakeOpenAI(reply=lambda body: "    return sum(xs)\n") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        out = tmp_path / "s.jsonl"
        sampled = runner.invoke(app, ["sample", "--backend", "openai", "--model", "m", "--tasks", "synthetic-python:test",
                                      "--limit", "4", "--n", "2", "--out", str(out)])
    evaluated = runner.invoke(app, ["eval", "--tasks", "synthetic-python:test:4", "--samples", str(out), "--k", "1,2"])
    assert sampled.exit_code == 0 and evaluated.exit_code == 0 and "8 samples over 4 tasks" in evaluated.output


def test_a_chat_models_code_is_sampled_evaluated_and_its_usage_said(tmp_path, monkeypatch):
    """--backend openai-chat: the chat route, no stop sequences (a whole function starts with what ends
    a body), the fenced code as the completion; eval passes it; stderr says what the run used."""
    from codeloop.data import load_tasks

    tasks = load_tasks("synthetic-python:test:2")

    def reply(body):
        task = next(t for t in tasks.values() if body["messages"][-1]["content"].endswith(t.prompt))
        demo = f"print({task.entry_point}.__name__)\n" if task.task_id == next(iter(tasks)) else ""
        return f"Here:\n```python\n{task.prompt}{task.canonical_solution}{demo}```"

    with FakeOpenAI(reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        out = tmp_path / "s.jsonl"
        sampled = runner.invoke(app, ["sample", "--backend", "openai-chat", "--model", "m", "--tasks",
                                      "synthetic-python:test", "--limit", "2", "--out", str(out)])
    assert sampled.exit_code == 0, sampled.output
    assert all("messages" in body and "stop" not in body for body in server.requests)
    assert "m: 2 requests (20 prompt + 8 completion tokens), 0 answered from the cache" in sampled.stderr
    assert "--max-new-tokens" not in sampled.stderr  # every answer ended by itself
    assert "1 of the 2 answers showed their code at work" in sampled.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["answer"].startswith("Here:\n```python\n") and r["completion"] in "\n" + r["answer"] for r in rows)
    evaluated = runner.invoke(app, ["eval", "--tasks", "synthetic-python:test:2", "--samples", str(out), "--k", "1"])
    assert evaluated.exit_code == 0 and "pass@1: 1.0000" in evaluated.output, evaluated.output


def test_prices_in_the_environment_put_the_cost_in_the_usage_line_and_a_bad_one_stops_before_any_request(
        tmp_path, monkeypatch):
    with FakeOpenAI(reply=lambda body: "    return sum(xs)\n") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        args = ["sample", "--backend", "openai", "--model", "m", "--tasks", "synthetic-python:test", "--limit", "2"]
        monkeypatch.setenv("CODELOOP_OPENAI_PRICES", "1,2")
        priced = runner.invoke(app, [*args, "--out", str(tmp_path / "a.jsonl")])
        monkeypatch.setenv("CODELOOP_OPENAI_PRICES", "1;2")
        refused = runner.invoke(app, [*args, "--out", str(tmp_path / "b.jsonl")])
    # 2 requests of 10 prompt and 4 completion tokens: 2 * (10 * $0.001 + 4 * $0.002)
    assert priced.exit_code == 0 and "m: 2 requests (20 prompt + 8 completion tokens, $0.0360)" in priced.stderr
    assert refused.exit_code == 2 and "CODELOOP_OPENAI_PRICES='1;2': expected 'PROMPT,COMPLETION'" in refused.output
    assert len(server.requests) == 2 and not (tmp_path / "b.jsonl").exists()


@pytest.mark.parametrize("tasks,reply,kept", [
    # Python: a body ends where module-level code starts
    ("synthetic-python:test", "    return sum(xs)\n\n\ndef helper():\n    pass\n", "    return sum(xs)"),
    # ST: the whole unit, blank lines and all (Python's stop sequences would cut it at the first "\n\n\n")
    ("synthetic-st:test", "FUNCTION solve : DINT\n\n\n\nsolve := 1;\nEND_FUNCTION\n", None),
])
def test_samples_stop_where_the_tasks_language_ends_a_completion(tasks, reply, kept, tmp_path, monkeypatch):
    bodies = []
    with FakeOpenAI(reply=lambda body: bodies.append(body) or reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        out = tmp_path / "s.jsonl"
        result = runner.invoke(app, ["sample", "--backend", "openai", "--model", "m", "--tasks", tasks, "--limit", "1",
                                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["completion"] == (kept if kept is not None else reply)
    assert ("stop" in bodies[0]) == (kept is not None)


def test_an_unknown_backend_is_refused(tmp_path):
    result = runner.invoke(app, ["sample", "--backend", "tgi", "--tasks", "humaneval", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--backend must be one of" in result.output


def test_a_missing_model_path_is_refused_cleanly(tmp_path):
    pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")
    result = runner.invoke(app, ["sample", "--model", str(tmp_path / "nope"), "--tasks", "synthetic-python:test",
                                 "--limit", "1", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2 and "no such directory, and not a hub name" in result.output


# ---- an interrupted run resumes -------------------------------------------------------------------

SAMPLING = ["sample", "--tasks", "synthetic-python:test", "--limit", "5", "--n", "2", "--batch", "2",
            "--max-new-tokens", "8", "--seed", "7"]


def generator_calls(monkeypatch, stop_at: int | None = None) -> list[int]:
    """Spy on the generators `codeloop sample` loads: the list gets the number of prompts of each call; with
    ``stop_at``, that call (0-based) raises KeyboardInterrupt, as Ctrl-C would."""
    import codeloop.models

    real, calls = codeloop.models.load_generator, []

    def load(backend, model):
        generator = real(backend, model)
        generate = generator.generate

        def spy(prompts, params):
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            calls.append(len(prompts))
            return generate(prompts, params)

        generator.generate = spy
        return generator

    monkeypatch.setattr(codeloop.models, "load_generator", load)
    return calls


@pytest.fixture()
def uninterrupted(tmp_path, tiny_dir):
    out = tmp_path / "whole.jsonl"
    assert runner.invoke(app, [*SAMPLING, "--model", str(tiny_dir), "--out", str(out)]).exit_code == 0
    return out.read_text()


@pytest.mark.parametrize("killed_mid_batch", [False, True])
def test_an_interrupted_sampling_resumes_and_writes_what_an_uninterrupted_one_does(tmp_path, tiny_dir, monkeypatch,
                                                                                   uninterrupted, killed_mid_batch):
    out = tmp_path / "s.jsonl"
    command = [*SAMPLING, "--model", str(tiny_dir), "--out", str(out)]
    with monkeypatch.context() as m:
        generator_calls(m, stop_at=1)  # Ctrl-C while the second batch is made
        result = runner.invoke(app, command)
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    partial = tmp_path / "s.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 4  # the first batch: 2 tasks x 2 samples
    if killed_mid_batch:  # the second batch's first task on disk, the rest lost: that batch is made again
        with open(partial, "a") as f:
            f.write("".join(line + "\n" for line in uninterrupted.splitlines()[4:6]) + uninterrupted.splitlines()[6][:20])
    calls = generator_calls(monkeypatch)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of 5 tasks were sampled before" in result.output and calls == [2, 1]
    assert out.read_text() == uninterrupted and not partial.exists()


def test_sampling_does_not_resume_with_other_settings_and_fresh_starts_over(tmp_path, tiny_dir, monkeypatch):
    out = tmp_path / "s.jsonl"
    command = [*SAMPLING, "--model", str(tiny_dir), "--out", str(out)]
    with monkeypatch.context() as m:
        generator_calls(m, stop_at=1)
        assert runner.invoke(app, command).exit_code == 130
    calls = generator_calls(monkeypatch)
    result = runner.invoke(app, [*command, "--temperature", "0.5"])
    assert result.exit_code == 2 and "the earlier run had temperature 0.8, this one has 0.5" in result.output
    assert calls == [] and "--fresh" in result.output
    assert runner.invoke(app, [*command, "--temperature", "0.5", "--fresh"]).exit_code == 0 and calls == [2, 2, 1]


def test_a_vllm_engine_is_given_its_share_of_the_gpu(tmp_path, monkeypatch):
    """--vllm-memory reaches the engine as vLLM's gpu_memory_utilization; other backends get nothing of it."""
    import codeloop.models
    from codeloop.types import Completion

    seen = []

    class Engine:
        def generate(self, prompts, params):
            return [[Completion("    return 0\n")] * params.n for _ in prompts]

    monkeypatch.setattr(codeloop.models, "load_generator", lambda backend, model, **kw: (seen.append((backend, kw)), Engine())[1])
    for backend in ("vllm", "hf"):
        result = runner.invoke(app, ["sample", "--backend", backend, "--tasks", "synthetic-python:test", "--limit", "2",
                                     "--vllm-memory", "0.85", "--out", str(tmp_path / f"{backend}.jsonl")])
        assert result.exit_code == 0, result.output
    assert seen == [("vllm", {"gpu_memory_utilization": 0.85}), ("hf", {})]
    result = runner.invoke(app, ["sample", "--backend", "vllm", "--tasks", "synthetic-python:test", "--vllm-memory", "1",
                                 "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "0 < --vllm-memory < 1" in result.output and len(seen) == 2
