"""PLUM: the test generator's format and self-consistency filter, the chosen/rejected split, balanced
pairs, KTO, the static checks, and the recipe end to end with resume."""

from __future__ import annotations

import json
import math
import sys

import pytest
from fake_openai import FakeOpenAI

from codeloop.data.preferences import KTO_SCHEMA, balanced_pairs, plum_split, save_pairs, save_rows
from codeloop.feedback.compiler import command_check, mypy_check
from codeloop.feedback.testgen import PROMPT, TestGenerator, consistent_tasks, parse_answer
from codeloop.models.openai import OpenAIGenerator
from codeloop.types import Completion, Status, Task

GOOD = """[Analysis]
Add the two numbers.
[Solution]
```python
def add(a, b):
    return a + b
```
[Start Code]
def add(a, b):
[Test Code]
```python
assert add(1, 2) == 3
assert add(-1, 1) == 0
```
"""
LYING = GOOD.replace("return a + b", "return a - b")  # its own tests refute this solution
TASK = Task("t/add", 'def add(a, b):\n    """Return a + b."""\n', entry_point="add",
            test="def check(candidate):\n    assert candidate(2, 2) == 4\n", description="Add two numbers.")


def test_a_well_formed_answer_parses_into_its_four_sections():
    suite = parse_answer(GOOD)
    assert suite is not None and suite.entry_point == "add" and suite.solution.startswith("def add")
    assert suite.test_code.splitlines() == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


@pytest.mark.parametrize("broken", [
    GOOD.replace("[Start Code]\n", ""),                                   # a header missing
    GOOD + "[Test Code]\nassert add(0, 0) == 0\n",                         # a header twice
    GOOD.replace("[Analysis]", "[Tmp]").replace("[Solution]", "[Analysis]").replace("[Tmp]", "[Solution]"),  # out of order
    GOOD.replace("return a + b", "return a +"),                           # solution does not compile
    GOOD.replace("assert add(1, 2) == 3\nassert add(-1, 1) == 0", "print('no call of the function')"),  # tests never call it
])
def test_answers_off_the_format_are_refused(broken):
    assert parse_answer(broken) is None


def test_the_prompt_is_the_papers_with_the_question_in_place():
    text = PROMPT.format(question="Reverse a list.")
    assert "Programming Question:\nReverse a list.\nFollow the format below. [Analysis]" in text
    assert text.index("[Solution]") < text.index("[Start Code]") < text.index("[Test Code]")


def test_only_self_consistent_suites_survive(sandbox):
    other = Task("t/other", "def sub(a, b):\n", entry_point="sub", test="")
    kept, stats = consistent_tasks([TASK, other], [[GOOD, LYING, "no headers"], [GOOD]], sandbox)
    # TASK: GOOD passes its own tests, LYING does not, the third does not parse; other: GOOD tests add, not sub
    assert [t.task_id for t in kept] == ["t/add"] and (stats.answers, stats.parsed, stats.consistent, stats.tasks_kept) == (4, 2, 1, 1)
    assert "assert add(1, 2) == 3" in kept[0].test and "candidate(2, 2)" not in kept[0].test


def test_generated_tests_judge_completions_in_the_sandbox(sandbox):
    from codeloop.eval import evaluate
    from codeloop.types import Sample

    kept, _ = consistent_tasks([TASK], [[GOOD]], sandbox)
    good, bad = Sample("t/add", "    return a + b\n"), Sample("t/add", "    return 3\n")
    assert [o.status for o in evaluate({"t/add": kept[0]}, [good, bad], sandbox)] == [Status.PASSED, Status.FAILED]


def test_the_generator_is_asked_n_times_per_instruction_through_any_backend(sandbox):
    with FakeOpenAI(reply=lambda body: GOOD) as server:
        gen = TestGenerator(OpenAIGenerator("g", base_url=server.url, api_key="k", backoff_s=0.01), n=2)
        kept, stats = gen.tasks_with_tests([TASK], sandbox)
    assert stats.answers == 2 and stats.consistent == 2 and "Add two numbers." in server.requests[0]["prompt"]
    # one request for both answers; its tokens as the stand-in server reports them (PLUM's metrics rows
    # carry these as testgen_requests, testgen_prompt_tokens, testgen_completion_tokens, testgen_reasoning_tokens)
    assert (stats.requests, stats.prompt_tokens, stats.completion_tokens, stats.reasoning_tokens) == (1, 10, 8, 0)


def test_a_reasoning_models_thinking_tokens_are_counted_for_the_test_generator(sandbox):
    from codeloop.models import load_generator

    with FakeOpenAI(reply=lambda body: GOOD, strict=True) as server:  # as GPT-5 answers: reasoning tokens in usage
        chat = load_generator("openai-chat", "g", base_url=server.url, api_key="k", backoff_s=0.01)
        _, stats = TestGenerator(chat, n=2, temperature=1.0).tasks_with_tests([TASK], sandbox)
    assert stats.consistent == 2
    assert stats.reasoning_tokens == 3 * 2 and stats.reasoning_tokens < stats.completion_tokens


def test_chosen_pass_rejected_fail_and_unrunnable_code_is_filtered():
    texts = ["pass", "fail", "crash", "syntax", "mypy"]
    statuses = [Status.PASSED, Status.FAILED, Status.RUNTIME_ERROR, Status.COMPILE_ERROR, Status.PASSED]
    static = [True, True, True, False, False]
    assert plum_split(texts, statuses, static) == (["pass"], ["fail"])
    assert plum_split(texts, statuses, static, negatives="unrunnable") == (["pass"], ["crash", "syntax", "mypy"])


def test_balanced_pairs_use_as_many_chosen_as_rejected_and_are_seeded():
    pairs = balanced_pairs("p", ["c1", "c2"], ["r1", "r2", "r3", "r4"], seed=3)
    assert len(pairs) == 2 and {p.chosen for p in pairs} == {"c1", "c2"} and len({p.rejected for p in pairs}) == 2
    assert pairs == balanced_pairs("p", ["c1", "c2"], ["r1", "r2", "r3", "r4"], seed=3)


def test_kto_rows_save_in_trls_format(tmp_path):
    from datasets import load_from_disk

    save_rows([{"prompt": "p", "completion": "c", "label": True}], tmp_path / "kto", KTO_SCHEMA)
    assert load_from_disk(str(tmp_path / "kto")).to_list() == [{"prompt": "p", "completion": "c", "label": True}]


def test_an_iteration_without_rows_saves_an_empty_dataset_that_loads(tmp_path):
    from datasets import load_from_disk

    save_pairs([], tmp_path / "pairs")  # an iteration where no instruction had both a pass and a fail
    save_rows([], tmp_path / "kto", KTO_SCHEMA)
    assert load_from_disk(str(tmp_path / "pairs")).column_names == ["prompt", "chosen", "rejected"]
    data = load_from_disk(str(tmp_path / "kto"))
    assert (len(data), data.column_names, data.features["label"].dtype) == (0, ["prompt", "completion", "label"], "bool")


def test_mypy_flags_a_type_error_and_passes_clean_code():
    verdicts = mypy_check(["def f(x: int) -> int:\n    return x + 'a'\n", "def g(x: int) -> int:\n    return x\n",
                           "def h(:\n"])
    assert [v.score for v in verdicts] == [0.0, 1.0, 0.0] and "line 2" in verdicts[0].reason and verdicts[2].source == "compiler"


def test_an_external_compiler_decides_by_exit_status_and_its_diagnostics_are_kept():
    fails = [sys.executable, "-c", "import sys; print('{file}:3:7: error: missing semicolon'); sys.exit(1)"]
    ok = [sys.executable, "-c", "import sys; sys.exit(0)"]
    verdict = command_check("PROGRAM x", fails, suffix=".st")
    assert verdict.score == 0.0 and verdict.reason == "line 3: error: missing semicolon"
    assert command_check("PROGRAM x", ok).score == 1.0


def test_an_external_compiler_gets_the_program_and_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    probe = [sys.executable, "-c", "import os, sys; src = open(sys.argv[1]).read(); "
             "sys.exit(0 if src == 'END' and 'OPENAI_API_KEY' not in os.environ else 1)", "{file}"]
    assert command_check("END", probe).score == 1.0


def test_a_hanging_compiler_is_killed_at_its_deadline():
    verdict = command_check("x", [sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert verdict.score == 0.0 and "0.5s" in verdict.reason


def test_a_missing_compiler_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no-such-compiler"):
        command_check("x", ["no-such-compiler", "{file}"])


# --- KTO ---------------------------------------------------------------------------------------------

def test_kto_loss_worked_example():
    torch = pytest.importorskip("torch")
    from codeloop.train.kto import kto_loss

    # z0 = mean(−1 − −3, −2 − −2) = 1; desirable r = 2 → 1 − σ(0.5·1); undesirable r = 0 → 1 − σ(0.5·1)
    loss, z0 = kto_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -4.0]), torch.tensor([-1.0, -2.0]),
                        torch.tensor([-3.0, -2.0]), torch.tensor([True, False]), beta=0.5)
    expected = 1 - 1 / (1 + math.exp(-0.5))
    assert float(z0) == pytest.approx(1.0) and float(loss) == pytest.approx(expected)


def test_kto_clamps_a_negative_kl_estimate_at_zero():
    torch = pytest.importorskip("torch")
    from codeloop.train.kto import kto_loss

    _, z0 = kto_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([-5.0]), torch.tensor([0.0]),
                     torch.tensor([True]), beta=1.0)
    assert float(z0) == 0.0


def test_kto_makes_desirable_completions_likelier_and_undesirable_ones_less():
    pytest.importorskip("torch")
    import copy

    import torch

    from codeloop.models.tiny import tiny_causal_lm
    from codeloop.train.common import join, logprobs, tokenize
    from codeloop.train.kto import kto

    model, tok = tiny_causal_lm(seed=5)
    reference = copy.deepcopy(model)
    rows = [{"prompt": "Q:", "completion": " yes", "label": True}, {"prompt": "Q:", "completion": " no", "label": False}] * 8

    def lp(m, completion):
        with torch.no_grad():
            return float(logprobs(m, [join(*tokenize(tok, "Q:", completion))], tok.pad_token_id)[0][0])

    stats = kto(model, reference, tok, rows, beta=0.5, lr=1e-2, epochs=4, batch_size=8, progress=False)
    assert stats.steps == 8 and stats.desirable == 8 and stats.undesirable == 8
    assert lp(model, " yes") > lp(reference, " yes") and lp(model, " no") < lp(reference, " no")


# --- the recipe -------------------------------------------------------------------------------------

def plum_cfg(out, iterations, **kw):
    from codeloop.recipes.plum import PLUMConfig

    settings = dict(n_instructions=12, fraction=0.5, iterations=iterations, k=3, val_limit=4, val_n=2, batch_size=4,
                    max_new_tokens=96, val_plus_tasks="synthetic-python+:test", out_dir=str(out))
    return PLUMConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def plum_run(tmp_path_factory):
    pytest.importorskip("torch")
    from codeloop.recipes.plum import run

    out = tmp_path_factory.mktemp("plum")
    return out, run(plum_cfg(out, 2))


def test_plum_writes_a_metrics_row_per_iteration_and_kto_data(plum_run):
    from datasets import load_from_disk

    out, _ = plum_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in rows] == [0, 1, 2] and {"pass_at_1", "compile_rate", "chosen", "rejected"} <= set(rows[1])
    assert {"tests_s", "sample_s", "sandbox_s", "train_s", "validate_s"} <= set(rows[1])
    assert all(0 <= m["pass_at_1_plus"] <= m["pass_at_1"] for m in rows)
    data = load_from_disk(str(out / "iter_1" / "kto")).to_list()
    assert sum(r["label"] for r in data) == rows[1]["chosen"] and len(data) == rows[1]["chosen"] + rows[1]["rejected"]


def test_plum_resumes_after_a_kill_with_the_same_data(plum_run, tmp_path, capsys):
    from datasets import load_from_disk

    from codeloop.recipes.plum import run

    out, metrics = plum_run
    run(plum_cfg(tmp_path, 1))
    assert "no test generator (and no LLM judge) configured, so each task's own tests judge" in capsys.readouterr().out
    (tmp_path / "iter_2").mkdir()
    (tmp_path / "iter_2" / "junk").write_text("half-written")
    resumed = run(plum_cfg(tmp_path, 2))
    assert load_from_disk(str(tmp_path / "iter_2" / "kto")).to_list() == load_from_disk(str(out / "iter_2" / "kto")).to_list()
    assert [m["pass_at_1"] for m in resumed] == [m["pass_at_1"] for m in metrics]


@pytest.mark.parametrize("objective,data", [("dpo", "pairs"), ("sft", "sft.jsonl")])
def test_plum_trains_with_balanced_dpo_or_rejection_sampling(objective, data, tmp_path):
    pytest.importorskip("torch")
    from codeloop.recipes.plum import run

    metrics = run(plum_cfg(tmp_path, 1, objective=objective, val_limit=2))
    assert (tmp_path / "iter_1" / data).exists() and metrics[-1]["iteration"] == 1
    if objective == "dpo":
        assert metrics[-1]["examples"] <= min(metrics[-1]["chosen"], metrics[-1]["rejected"])


def test_plum_on_structured_text_judges_its_solutions_with_the_st_checker(tmp_path):
    pytest.importorskip("torch")
    from datasets import load_from_disk

    from codeloop.feedback.compiler import compiles
    from codeloop.recipes.plum import run

    metrics = run(plum_cfg(tmp_path, 1, model="seed-st", tasks="synthetic-st:train", max_new_tokens=320, val_limit=2,
                           val_tasks="synthetic-st:test", val_plus_tasks="synthetic-st+:test"))
    rows = load_from_disk(str(tmp_path / "iter_1" / "kto")).to_list()
    assert metrics[1]["chosen"] > 0 and sum(r["label"] for r in rows) == metrics[1]["chosen"]
    # judged by ST's checker, not Python's (under which no ST program compiles and nothing would be kept)
    assert all(compiles(r["prompt"] + r["completion"], "st").score == 1.0 for r in rows)
    assert all(r["completion"].rstrip().endswith("END_FUNCTION") for r in rows if r["label"])


@pytest.mark.parametrize("setting,message", [({"static_check": "mypy"}, "static_check mypy"),
                                             ({"test_generator": "some-model"}, "test_generator")])
def test_plum_refuses_its_python_only_parts_for_st_tasks(setting, message, tmp_path):
    from codeloop.recipes.plum import run

    with pytest.raises(ValueError, match=message + r" works on Python only, and 'synthetic-st:train' holds st tasks: "):
        run(plum_cfg(tmp_path / "x", 1, tasks="synthetic-st:train", **setting))
    assert not (tmp_path / "x").exists()


def test_plum_refuses_an_unknown_objective():
    from codeloop.recipes.plum import PLUMConfig

    with pytest.raises(ValueError, match="objective must be one of kto, dpo, sft"):
        PLUMConfig(objective="ppo")


def test_the_compiler_expert_keeps_a_samples_syntax_warnings_quiet():
    import warnings

    from codeloop.feedback.compiler import compiles

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert compiles("x = 'a'(1)\n").score == 1.0
    assert not [w for w in seen if issubclass(w.category, SyntaxWarning)]


def test_the_vllm_engine_is_dropped_before_each_update_and_loaded_once_per_policy(tmp_path, monkeypatch):
    """With backend vllm the engine serves one saved checkpoint; the update changes the policy, so the
    engine is dropped before it (its GPU memory goes to the update, in process or launched) and the
    next policy's engine is loaded once, for its validation and the next iteration's samples. An
    in-process sampler stands in for vLLM here."""
    pytest.importorskip("torch")
    from pathlib import Path

    import codeloop.models
    from codeloop.models.hf import HFGenerator
    from codeloop.recipes import common, plum

    events: list[str] = []

    def engine(backend, checkpoint, **kw):
        assert kw == {"gpu_memory_utilization": 0.5}  # vllm_memory
        events.append(f"load {Path(checkpoint).parent.name if 'iter_' in checkpoint else checkpoint}")
        return HFGenerator(checkpoint)

    release, train = common.PolicySampler.release, plum._train
    monkeypatch.setattr(common, "installed", lambda module: True)
    monkeypatch.setattr(codeloop.models, "load_generator", engine)
    monkeypatch.setattr(common.PolicySampler, "release",
                        lambda self: (events.append("release" if self._engine else "release nothing"), release(self))[1])
    monkeypatch.setattr(plum, "_train", lambda *a, **kw: (events.append("train"), train(*a, **kw))[1])
    plum.run(plum.PLUMConfig(n_instructions=12, fraction=0.5, iterations=2, k=2, val_limit=2, val_n=1, batch_size=4,
                             max_new_tokens=48, backend="vllm", vllm_memory=0.5, out_dir=str(tmp_path)))
    assert [e for e in events if e != "release nothing"] == ["load seed-python", "release", "train", "load iter_1", "release",
                                                             "train", "load iter_2"]


def test_a_test_generator_is_loaded_once_per_run_and_a_batch_it_keeps_nothing_of_trains_nothing(tmp_path, monkeypatch):
    """The test generator (here on backend vllm, beside the policy's engine: each at vllm_memory) serves
    every iteration: a vLLM engine is loaded once, not once an iteration. An iteration whose instructions
    all lose their tests (no self-consistent suite) samples and trains nothing, and the run goes on."""
    pytest.importorskip("torch")
    from codeloop.recipes import common, plum

    loads, asked = [], []

    class Answers:  # a test generator whose answers are never self-consistent
        def generate(self, prompts, params):
            asked.append((len(prompts), params.temperature, params.max_new_tokens))
            return [[Completion("no headers")] * params.n for _ in prompts]

    monkeypatch.setattr(common, "installed", lambda module: True)
    monkeypatch.setattr(plum, "load_generator", lambda backend, model, **kw: (loads.append((backend, model, kw)), Answers())[1])
    rows = plum.run(plum_cfg(tmp_path, 2, val_plus_tasks="", val_limit=2, test_generator="writer", test_generator_backend="vllm",
                             vllm_memory=0.45, test_generator_temperature=1.0, test_generator_max_new_tokens=999))
    assert loads == [("vllm", "writer", {"gpu_memory_utilization": 0.45})] and asked == [(6, 1.0, 999)] * 2
    assert [(r["iteration"], r.get("testgen_tasks_kept"), r.get("examples")) for r in rows[1:]] == [(1, 0, 0), (2, 0, 0)]
    assert rows[1]["train_pass_rate"] is None


@pytest.mark.parametrize(("settings", "message"), [
    ({"backend": "vllm", "test_generator": "w", "test_generator_backend": "vllm"},
     r"vllm_memory 0.6 for each of the 2 vLLM engines this run keeps at once \(backend vllm, test_generator_backend vllm\) "
     r"is more of the GPU than there is: set vllm_memory to 0.47 or less"),
    ({"vllm_memory": 1.0}, r"vllm_memory must be in \(0, 1\), got 1.0"),
])
def test_vllm_engines_that_cannot_share_the_gpu_are_refused_before_any_work(settings, message, monkeypatch):
    from codeloop.recipes import common
    from codeloop.recipes.plum import PLUMConfig

    monkeypatch.setattr(common, "installed", lambda module: True)
    with pytest.raises(ValueError, match=message):
        PLUMConfig(**settings)
