"""``codeloop`` end to end through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from codeloop.cli import app

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


def test_eval_prints_pass_at_k_and_status_counts(tmp_path):
    tasks = write(tmp_path / "t.jsonl", [TASK])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "t/0", "completion": "    return 2 * x\n"},
                                           {"task_id": "t/0", "completion": "    return x\n"}])
    result = runner.invoke(app, ["eval", "--tasks", tasks, "--samples", samples, "--k", "1,2", "--workers", "1"])
    assert "pass@1: 0.5000" in result.output and "pass@2: 1.0000" in result.output and "failed             1" in result.output


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
    assert result.exit_code == 2 and "c.yaml: unknown key 'learning_rate'" in result.output


def test_loop_config_with_a_wrong_type_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: many\n")
    result = runner.invoke(app, ["loop", "online-dpo", str(config), "--set", "k=3"])
    assert result.exit_code == 2 and "key 'iterations' expects int" in result.output


def test_plum_config_with_an_unknown_objective_names_file_and_choices(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("objective: ppo\n")
    result = runner.invoke(app, ["loop", "plum", str(config)])
    assert result.exit_code == 2 and "p.yaml: objective must be one of kto, dpo, sft, got 'ppo'" in result.output


def test_one_set_takes_several_overrides_and_each_is_checked(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 2\n")
    result = runner.invoke(app, ["loop", "online-dpo", str(config), "--set", "k=3", "iterations=many"])
    assert result.exit_code == 2 and "key 'iterations' expects int" in result.output
    result = runner.invoke(app, ["loop", "plum", str(config), "--set", "k=3", "oops"])
    assert result.exit_code == 2 and "'oops': expected key=value" in result.output
