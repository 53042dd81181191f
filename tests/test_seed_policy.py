"""The shipped seed policy loads by name and writes Python bodies (a smoke test: its quality numbers
come from `codeloop sample` + `codeloop eval`, recorded in the README)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is part of the dev install")

from codeloop.data import synthetic  # noqa: E402
from codeloop.data.prompts import STOP  # noqa: E402
from codeloop.models.hf import SEED_DIR, HFGenerator  # noqa: E402
from codeloop.types import SamplingParams  # noqa: E402


def test_seed_ships_in_hugging_face_format_under_20_mb():
    files = {p.name: p.stat().st_size for p in SEED_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files) and sum(files.values()) < 20 << 20


def test_seed_loads_by_name_and_completes_a_task_body():
    task = next(iter(synthetic.generate("test", 1).values()))
    text = HFGenerator("seed-python", device="cpu").generate(
        [task.prompt], SamplingParams(temperature=0, max_new_tokens=96, stop=STOP))[0][0].text
    assert text.startswith("    ") and ("return" in text)
