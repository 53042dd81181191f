"""The online DPO loop end to end on the shipped seed (tiny settings), and resuming after a kill."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")

from codeloop.recipes.online_dpo import OnlineDPOConfig, intent_pairs, run  # noqa: E402


def cfg(out, iterations):
    return OnlineDPOConfig(n_intents=12, fraction=0.5, iterations=iterations, k=3, val_limit=4, val_n=2,
                           batch_size=4, max_new_tokens=96, val_plus_tasks="synthetic-python+:test", out_dir=str(out))


def pairs(path):
    from datasets import load_from_disk

    return load_from_disk(str(path)).to_list()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, run(cfg(out, 2))


def test_one_metrics_row_per_iteration_with_the_baseline_first(straight):
    out, metrics = straight
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in rows] == [0, 1, 2] and {"pass_at_1", "compile_rate", "semantic_rate", "joint_rate"} <= set(rows[1])
    assert all(0 <= m["pass_at_1_plus"] <= m["pass_at_1"] for m in rows)  # the plus tests include the base ones


def test_stricter_validation_tests_must_be_for_the_same_tasks(tmp_path):
    with pytest.raises(ValueError, match=r"val_plus_tasks 'synthetic-python\+:dev' lacks synthetic-python/test/0"):
        run(OnlineDPOConfig(val_plus_tasks="synthetic-python+:dev", out_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_plus_metrics_count_a_sample_that_fools_the_base_tests_as_a_failure(sandbox):
    from conftest import DROPS_ONES, SQUARE_SORTED

    from codeloop.data import load_tasks
    from codeloop.eval import evaluate
    from codeloop.recipes.common import Rollout, held_out_metrics, plus_metrics
    from codeloop.types import Completion, Sample

    tasks, plus = load_tasks("synthetic-python:test"), load_tasks("synthetic-python+:test")
    task = next(t for t in tasks.values() if SQUARE_SORTED in t.prompt)
    texts = [task.canonical_solution, DROPS_ONES]
    samples = [Sample(task.task_id, t) for t in texts]
    run_ = Rollout([task], [[Completion(t) for t in texts]], samples, evaluate(tasks, samples, sandbox))
    assert held_out_metrics(run_)["pass_at_1"] == 1.0
    assert plus_metrics(run_, {task.task_id: plus[task.task_id]}, sandbox) == {"pass_at_1_plus": 0.5}
    assert plus_metrics(run_, {}, sandbox) == {}


def test_each_iteration_row_says_where_its_time_went(straight):
    _, metrics = straight
    phases = {"sample_s", "sandbox_s", "judge_s", "train_s", "validate_s"}
    assert all(phases <= set(m) and all(m[p] >= 0 for p in phases) for m in metrics[1:])
    assert all(m["sample_s"] > 0 and m["train_s"] > 0 for m in metrics[1:])


def test_each_iteration_saves_its_model_and_pairs_in_trl_format(straight):
    out, _ = straight
    rows = pairs(out / "iter_1" / "pairs")
    assert (out / "iter_2" / "model" / "model.safetensors").exists() and (not rows or set(rows[0]) == {"prompt", "chosen", "rejected"})


def test_a_run_killed_mid_iteration_finishes_with_the_same_data(straight, tmp_path):
    out, metrics = straight
    run(cfg(tmp_path, 1))
    (tmp_path / "iter_2" / "pairs").mkdir(parents=True)  # what a kill during iteration 2 leaves behind
    (tmp_path / "iter_2" / "pairs" / "junk").write_text("half-written")
    resumed = run(cfg(tmp_path, 2))
    assert pairs(tmp_path / "iter_2" / "pairs") == pairs(out / "iter_2" / "pairs")
    assert [m["pass_at_1"] for m in resumed] == [m["pass_at_1"] for m in metrics]


def test_resuming_under_other_settings_is_refused_and_names_them(straight):
    import dataclasses

    out, _ = straight
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=r"config.json: .*lr: 0.0001 -> 0.001"):
        run(dataclasses.replace(cfg(out, 3), lr=1e-3))
    assert (out / "metrics.jsonl").read_text() == before and json.loads((out / "config.json").read_text())["lr"] == 1e-4


def test_a_run_left_by_an_earlier_codeloop_is_refused_not_mixed(straight, tmp_path):
    import shutil

    out, _ = straight
    old = tmp_path / "old"
    shutil.copytree(out, old)
    saved = json.loads((old / "config.json").read_text())
    assert saved.pop("run_format") == 2
    (old / "config.json").write_text(json.dumps(saved))  # as written before the run format existed
    before = (old / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=r"made by another codeloop \(run format 1, this one writes 2"):
        run(cfg(old, 3))
    assert (old / "metrics.jsonl").read_text() == before


def test_a_run_written_before_the_bf16_setting_resumes_under_its_default_only(straight):
    from codeloop.recipes.common import _same_settings

    out, _ = straight
    saved = json.loads((out / "config.json").read_text())
    assert saved.pop("bf16") is True  # as written before the setting existed
    _same_settings(out, saved, {**saved, "bf16": True})
    with pytest.raises(ValueError, match=r"bf16: True -> False"):
        _same_settings(out, saved, {**saved, "bf16": False})
    # clip came later and only to the policy-gradient loops: a loop without it is not asked for it,
    # and one with it resumes a run from before it under 0 (the plain REINFORCE that run trained with)
    _same_settings(out, {**saved, "bf16": True}, {**saved, "bf16": True})
    _same_settings(out, saved, {**saved, "bf16": True, "clip": 0.0})
    with pytest.raises(ValueError, match=r"clip: 0.0 -> 0.2"):
        _same_settings(out, saved, {**saved, "bf16": True, "clip": 0.2})


def test_a_run_written_before_the_judges_temperature_and_limit_could_be_set_resumes_under_what_it_asked(straight):
    from codeloop.recipes.common import _same_settings

    out, _ = straight
    saved = json.loads((out / "config.json").read_text())
    assert (saved.pop("judge_temperature"), saved.pop("judge_max_new_tokens")) == (0.0, 64)  # as written before them
    _same_settings(out, saved, {**saved, "judge_temperature": 0.0, "judge_max_new_tokens": 64})
    with pytest.raises(ValueError, match=r"judge_temperature: 0.0 -> 1.0"):
        _same_settings(out, saved, {**saved, "judge_temperature": 1.0, "judge_max_new_tokens": 64})


def test_resuming_over_retrained_weights_under_the_same_name_is_refused(tmp_path):
    import shutil

    from codeloop.models.hf import SEED_DIR
    from codeloop.recipes.common import Loop

    model = tmp_path / "model"
    shutil.copytree(SEED_DIR, model)
    out = tmp_path / "run"
    Loop.open(str(out), 2, {"model": str(model)})
    (out / "iter_1").mkdir()
    (out / "iter_1" / "done").write_text("")  # one finished iteration from these weights
    (model / "seed_metrics.json").write_text("{}")  # a training record is not the model
    assert Loop.open(str(out), 2, {"model": str(model)}).start == 1
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # the last byte of the last tensor: the same name, other weights
    (model / "model.safetensors").write_bytes(bytes(weights))
    saved = (out / "config.json").read_text()
    with pytest.raises(ValueError, match=r"run/config.json: the model '.*model' is not the one the finished iterations"):
        Loop.open(str(out), 2, {"model": str(model)})
    assert (out / "config.json").read_text() == saved
    # a run written before the digest was recorded resumes as before
    config = json.loads(saved)
    del config["model_sha256"]
    (out / "config.json").write_text(json.dumps(config))
    assert Loop.open(str(out), 2, {"model": str(model)}).start == 1


def test_the_weights_digest_follows_content_not_place(tmp_path, monkeypatch):
    import shutil

    from codeloop.models import hf

    a, b = tmp_path / "a", tmp_path / "deeper" / "b"
    shutil.copytree(hf.SEED_DIR, a)
    shutil.copytree(hf.SEED_DIR, b)
    assert hf.weights_digest(str(a)) == hf.weights_digest("seed-python")
    assert hf.weights_digest("seed-st") != hf.weights_digest("seed-python")
    assert hf.weights_digest("someone/some-model") is None  # a hub name: nothing local to read
    (b / "checkpoint-10").mkdir()  # a trainer's intermediate checkpoint is not the model loaded
    (b / "checkpoint-10" / "model.safetensors").write_bytes(b"other")
    assert hf.weights_digest(str(b)) == hf.weights_digest(str(a))
    (b / "tokenizer.json").write_text((b / "tokenizer.json").read_text().replace('"<', '"<x', 1))
    assert hf.weights_digest(str(b)) != hf.weights_digest(str(a))
    monkeypatch.setattr(hf, "FULL_HASH_BYTES", 0)  # too big to read whole: sizes and each file's ends
    shutil.copy(a / "tokenizer.json", b / "tokenizer.json")
    assert hf.weights_digest(str(a)) == hf.weights_digest(str(b))
    weights = bytearray((b / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 1  # the middle of a large file is not read then
    (b / "model.safetensors").write_bytes(bytes(weights))
    assert hf.weights_digest(str(a)) == hf.weights_digest(str(b))
    weights[-1] ^= 1
    (b / "model.safetensors").write_bytes(bytes(weights))
    assert hf.weights_digest(str(a)) != hf.weights_digest(str(b))


TEXTS = ["pass_a", "fail", "pass_b", "broken"]  # one intent's candidates: kappa and phi below
KAPPA, PHI = [1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]


def last(tied):
    return tied[-1]


def never(tied):
    raise AssertionError("the tie-breaker must not be asked")


def judged(texts=TEXTS, kappa=KAPPA, phi=PHI, tie_break=last, **settings):
    new, good = intent_pairs(OnlineDPOConfig(**settings), "p", texts, kappa, phi, tie_break)
    return [(x.chosen, x.rejected) for x in new], good


def test_the_papers_rule_pairs_the_tie_breakers_pick_against_every_other_candidate():
    assert judged() == ([("pass_b", "pass_a"), ("pass_b", "fail"), ("pass_b", "broken")], True)


def test_dropping_tied_negatives_keeps_the_other_passing_candidate_out():
    assert judged(drop_tied_negatives=True) == ([("pass_b", "fail"), ("pass_b", "broken")], True)


def test_all_positives_pairs_every_passing_candidate_with_every_lower_rated_one():
    assert judged(positives="all", tie_break=never) == (
        [("pass_a", "fail"), ("pass_a", "broken"), ("pass_b", "fail"), ("pass_b", "broken")], True)
    # identical passing texts are one positive, not two
    assert judged(["same", "same", "fail"], [1.0] * 3, [1.0, 1.0, 0.0], positives="all")[0] == [("same", "fail")]


def test_without_a_pass_only_compiling_beats_not_compiling_and_gets_no_nll():
    texts, kappa, phi = ["fail_a", "broken", "fail_b"], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]
    for positives in ("one", "all"):
        assert judged(texts, kappa, phi, tie_break=lambda tied: tied[0], positives=positives) == ([("fail_a", "broken")], False)
    assert judged(texts, [0.0] * 3, phi) == ([], False)  # nothing compiles: nothing to prefer
    # the paper's rule without the guard: the arbitrary "best" failing candidate against all others
    assert judged(texts, kappa, phi, tie_break=lambda tied: tied[0], positive_must_pass=False) == (
        [("fail_a", "broken"), ("fail_a", "fail_b")], False)


def test_an_unknown_positives_rule_is_refused():
    with pytest.raises(ValueError, match="positives must be one of one, all"):
        OnlineDPOConfig(positives="best")


@pytest.mark.parametrize(("val_temperature", "used"), [(None, 0.6), (0.8, 0.8)])
def test_validation_samples_at_its_own_temperature_when_given(val_temperature, used):
    from codeloop.data.tasks import load_tasks
    from codeloop.recipes.online_dpo import validate
    from codeloop.sandbox import Sandbox
    from codeloop.types import Completion

    class Recorder:
        def __init__(self):
            self.temperatures = []

        def generate(self, prompts, params):
            self.temperatures.append(params.temperature)
            return [[Completion("    return None\n", "stop", 1, 1)] * params.n for _ in prompts]

    recorder = Recorder()
    tasks = list(load_tasks("synthetic-python:test:2").values())
    with Sandbox(workers=1) as sandbox:
        validate(recorder, tasks, sandbox, OnlineDPOConfig(temperature=0.6, val_temperature=val_temperature, val_n=1),
                 None)
    assert recorder.temperatures == [used]


def test_the_loop_runs_in_structured_text_with_the_st_checker_as_kappa(tmp_path):
    """seed-st on synthetic-st: pairs come out, every chosen program is a function that passes κ (the ST
    checker), and κ's compile rate and the sandbox's compile errors add up to one."""
    from codeloop.feedback.compiler import compiles

    out = tmp_path / "st"
    rows = run(OnlineDPOConfig(model="seed-st", tasks="synthetic-st:train", n_intents=8, fraction=1.0, iterations=1,
                               k=4, val_tasks="synthetic-st:test", val_limit=4, val_n=2, batch_size=4,
                               max_new_tokens=320, val_plus_tasks="synthetic-st+:test", lr=2e-5, out_dir=str(out)))
    made = pairs(out / "iter_1" / "pairs")
    assert rows[1]["pairs"] == len(made) > 0
    assert all(compiles(p["prompt"] + p["chosen"], "st").score == 1.0 for p in made)
    assert all(p["chosen"].startswith("FUNCTION") for p in made)
    assert all(abs(r["compile_rate"] + r["compile_error_rate"] - 1) < 1e-9 for r in rows)


def test_the_llm_expert_judges_every_intent_of_a_rollout_in_one_batch():
    """φ for a rollout: one judge_all over its intents, each verdict back on its own candidates; an
    intent the judge never answered in format scores 0 for each of its candidates."""
    from codeloop.feedback.judge import JudgeResult
    from codeloop.recipes.common import Rollout
    from codeloop.recipes.online_dpo import _semantic
    from codeloop.types import Completion, Task

    class Expert:
        def __init__(self):
            self.asked = []

        def judge_all(self, items):
            self.asked.append(items)
            return [JudgeResult([1, 0], ("[1] [0]",), 0.0, 0.0), JudgeResult(None, ("?",), 0.0, 0.0),
                    JudgeResult([1], ("[1]",), 0.0, 0.0)]

    tasks = [Task(f"t/{i}", "def f():\n", description=f"intent {i}") for i in range(3)]
    rows = [[Completion("a"), Completion("b")], [Completion("c"), Completion("d")], [Completion("e")]]
    expert = Expert()
    assert _semantic(Rollout(tasks, rows, [], []), expert) == ([1.0, 0.0, 0.0, 0.0, 1.0], 1)  # one intent off the format
    assert expert.asked == [[("intent 0", ["a", "b"]), ("intent 1", ["c", "d"]), ("intent 2", ["e"])]]


def test_the_judges_tie_breaks_are_asked_for_in_one_batch_of_the_tied_intents_only():
    """Intents whose candidates tie at the top of (κ, φ) go to the judge's pick together, with only the
    tied candidates; its pick comes back as the candidate's own index. With positives=all no pick is
    asked for (every tied one is kept)."""
    from codeloop.recipes.online_dpo import _judges_picks
    from codeloop.types import Task

    class Expert:
        def __init__(self):
            self.asked = []

        def pick_best_all(self, items):
            self.asked.append(items)
            return [1, None]

    groups = [(Task(f"t/{i}", "def f():\n", description=f"intent {i}"), ["a", "b", "c"]) for i in range(3)]
    kappa = [[1, 1, 1], [1, 0, 0], [0, 1, 1]]
    phi = [1, 0, 1, 1, 1, 1, 0, 0, 0]  # intent 0: a and c tie; 1: a alone; 2: b and c tie
    expert = Expert()
    cfg = OnlineDPOConfig(k=3)
    assert _judges_picks(expert, cfg, groups, kappa, phi) == {0: 2, 2: None}
    assert expert.asked == [[("intent 0", ["a", "c"]), ("intent 2", ["b", "c"])]]
    assert _judges_picks(expert, OnlineDPOConfig(k=3, positives="all"), groups, kappa, phi) == {} and len(expert.asked) == 1


@pytest.mark.parametrize("backend", ["openai", "openai-chat"])
def test_an_llm_expert_on_the_openai_backend_scores_the_candidates_and_its_spending_is_in_each_row(tmp_path, monkeypatch,
                                                                                                backend):
    """A judge (an OpenAI-compatible server here) rates every candidate; each iteration's row says how many
    intents it never answered in format and what its requests were (training's and validation's). On the
    chat route the server answers as GPT-5 does (temperature 1 only, max_completion_tokens, no top_p),
    which the config's judge_temperature and judge_max_new_tokens meet."""
    from fake_openai import FakeOpenAI

    def expert(body):  # "[1] [0] [1]" for the k=3 candidates of an intent, off the format for intents about lists
        prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        if "Answer with the number" in prompt:
            return "1"
        return "no idea" if "list" in prompt.split("Problem:")[1].split("\n")[0] else "[1] [0] [1]"

    chat = backend == "openai-chat"
    judge = {"judge_model": "j", "judge_backend": backend} | ({"judge_temperature": 1.0, "judge_max_new_tokens": 500}
                                                              if chat else {})
    with FakeOpenAI(reply=expert, strict=chat) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        rows = run(OnlineDPOConfig(**{**cfg(tmp_path, 1).__dict__, **judge, "val_plus_tasks": ""}))
    if chat:  # the first requests were refused (as many as were in flight), the rest taken
        taken = [r for r in server.requests if FakeOpenAI.refusal(r) is None]
        assert {(r["temperature"], r["max_completion_tokens"]) for r in taken} == {(1.0, 500)}
        server.requests = taken
    from codeloop.data import load_tasks

    intents = list(load_tasks("synthetic-python:train").values())[:6]
    off = sum("list" in t.intent for t in intents)
    assert 0 < off < 6 and rows[1]["judge_off_format"] == off
    assert {"val_judge_off_format", "semantic_rate"} <= set(rows[0]) and "judge_off_format" not in rows[0]
    # iteration 0 asked for its 4 validation intents, again for those off the format; iteration 1 the rest
    assert rows[1]["judge_requests"] == len(server.requests) - 4 - rows[0]["val_judge_off_format"] >= 6 + off + 4
    assert rows[1]["judge_prompt_tokens"] == 10 * rows[1]["judge_requests"]  # the stand-in reports 10 a request
    # and, answering as a reasoning model, 3 reasoning tokens an answer (none on the completions route)
    assert rows[1]["judge_reasoning_tokens"] == (3 * rows[1]["judge_requests"] if chat else 0)


@pytest.mark.parametrize("key", ["judge_backend", "backend"])
def test_a_backend_the_loop_cannot_load_is_refused_before_anything_runs(tmp_path, key):
    with pytest.raises(ValueError, match=f"^{key} must be one of"):
        OnlineDPOConfig(out_dir=str(tmp_path), **{key: "gpt"})


def test_a_bad_openai_setting_in_the_environment_is_refused_before_anything_runs_where_a_judge_is_named(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CODELOOP_OPENAI_CONCURRENCY", "many")
    with pytest.raises(ValueError, match="^CODELOOP_OPENAI_CONCURRENCY='many': expected a whole number"):
        OnlineDPOConfig(out_dir=str(tmp_path), judge_model="gpt-4o", judge_backend="openai-chat")
    assert OnlineDPOConfig(out_dir=str(tmp_path))  # no judge named: the setting is never read
    assert OnlineDPOConfig(out_dir=str(tmp_path), judge_model="j", judge_backend="hf")


def test_plums_test_generator_may_be_a_chat_model(tmp_path):
    from codeloop.recipes.plum import PLUMConfig

    assert PLUMConfig(out_dir=str(tmp_path), test_generator="m", test_generator_backend="openai-chat")
    with pytest.raises(ValueError, match="^test_generator_backend must be one of hf, vllm, openai, openai-chat"):
        PLUMConfig(out_dir=str(tmp_path), test_generator_backend="chat")
