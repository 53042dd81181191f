"""Task and sample files: validation errors name the file, the line and the field."""

from __future__ import annotations

import json

import pytest

from codeloop.data import DataError, load_tasks, read_samples, write_jsonl


def write(path, *rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


TASK = {"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f", "test": "def check(c):\n    assert c(1) == 2\n"}


def test_humaneval_ships_164_tasks():
    assert len(load_tasks("humaneval")) == 164


def test_a_task_file_loads(tmp_path):
    assert list(load_tasks(str(write(tmp_path / "t.jsonl", TASK)))) == ["t/0"]


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "t.jsonl", TASK, "{oops")
    with pytest.raises(DataError, match=r"t\.jsonl:2: malformed JSON"):
        load_tasks(str(path))


def test_missing_field_names_file_line_and_field(tmp_path):
    path = write(tmp_path / "t.jsonl", {k: v for k, v in TASK.items() if k != "prompt"})
    with pytest.raises(DataError, match=r"t\.jsonl:1: field 'prompt': missing"):
        load_tasks(str(path))


def test_wrong_type_names_the_field(tmp_path):
    path = write(tmp_path / "t.jsonl", {**TASK, "test": 3})
    with pytest.raises(DataError, match=r"field 'test': expected str, got int"):
        load_tasks(str(path))


def test_inputs_without_outputs_is_an_error(tmp_path):
    path = write(tmp_path / "t.jsonl", {"task_id": "a", "prompt": "", "inputs": ["1"]})
    with pytest.raises(DataError, match="'inputs' and 'outputs' go together"):
        load_tasks(str(path))


def test_unknown_task_set_is_an_error():
    with pytest.raises(DataError, match="not a known task set"):
        load_tasks("no-such-set")


def test_unknown_task_id_in_samples_names_the_line(tmp_path):
    tasks = load_tasks(str(write(tmp_path / "t.jsonl", TASK)))
    path = write(tmp_path / "s.jsonl", {"task_id": "t/0", "completion": "x"}, {"task_id": "t/9", "completion": "x"})
    with pytest.raises(DataError, match=r"s\.jsonl:2: field 'task_id': unknown task 't/9'"):
        read_samples(path, tasks)


def test_non_string_completion_is_an_error(tmp_path):
    path = write(tmp_path / "s.jsonl", {"task_id": "t/0", "completion": ["assert f(1) == 2"]})
    with pytest.raises(DataError, match=r"s\.jsonl:1: field 'completion': expected str, got list"):
        read_samples(path)


def test_sample_extra_fields_are_kept(tmp_path):
    path = write(tmp_path / "s.jsonl", {"task_id": "t/0", "completion": "x", "model": "m", "seed": 3})
    assert read_samples(path)[0].extra == {"model": "m", "seed": 3}


def test_write_jsonl_round_trips(tmp_path):
    write_jsonl(tmp_path / "o.jsonl", [{"a": "é"}, {"b": [1]}])
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines() == ['{"a": "é"}', '{"b": [1]}']
