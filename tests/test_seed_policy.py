"""The shipped seed policies load by name: seed-python writes Python bodies, seed-st whole Structured
Text functions (smoke tests: their quality numbers come from `codeloop sample` + `codeloop eval`,
recorded in the README)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")

from codeloop.data import synthetic  # noqa: E402
from codeloop.data.prompts import STOP  # noqa: E402
from codeloop.models.hf import BUILTIN, HFGenerator  # noqa: E402
from codeloop.types import SamplingParams  # noqa: E402


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_seed_ships_in_hugging_face_format_under_20_mb(name):
    files = {p.name: p.stat().st_size for p in BUILTIN[name].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files) and sum(files.values()) < 20 << 20


def test_seed_loads_by_name_and_completes_a_task_body():
    task = next(iter(synthetic.generate("test", 1).values()))
    text = HFGenerator("seed-python", device="cpu").generate(
        [task.prompt], SamplingParams(temperature=0, max_new_tokens=96, stop=STOP))[0][0].text
    assert text.startswith("    ") and ("return" in text)


def test_seed_st_writes_a_function_the_st_checker_accepts():
    from codeloop.languages import st

    task = next(iter(synthetic.generate("test", 1, language="st").values()))
    text = HFGenerator("seed-st", device="cpu").generate(
        [task.prompt], SamplingParams(temperature=0, max_new_tokens=320))[0][0].text
    assert text.startswith("FUNCTION solve : DINT") and text.rstrip().endswith("END_FUNCTION")
    assert st.errors(task.prompt + text) == []


def test_an_unknown_seed_language_is_refused_by_name():
    from typer.testing import CliRunner

    from codeloop.cli import app

    result = CliRunner().invoke(app, ["seed", "train", "--language", "go"])
    assert result.exit_code == 2 and "--language" in result.output and "'go'" in result.output
