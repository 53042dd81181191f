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


def test_weight_difference_names_identical_and_differing_state_dicts():
    import torch

    from codeloop.recipes.seed import weight_difference

    old = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    assert weight_difference({k: v.clone() for k, v in old.items()}, old) == {
        "identical": True, "tensors": 2, "tensors_differing": 0, "max_abs_difference": 0.0}
    new = {"a": torch.zeros(2, 3), "b": torch.tensor([1.0, 1.0, 1.0 + 2**-20, 0.5])}
    diff = weight_difference(new, old)
    assert (diff["identical"], diff["tensors_differing"], diff["max_abs_difference"]) == (False, 1, 0.5)
    assert weight_difference({"a": old["a"]}, old)["tensors_differing"] == 1  # a tensor missing is a difference


def test_only_the_shipped_config_is_compared_with_the_shipped_weights():
    from codeloop.recipes.seed import SeedConfig, shipped_weights

    weights = shipped_weights(SeedConfig(language="python", out_dir="/tmp/elsewhere", minutes=3.0))
    assert weights is not None and len(weights) > 0
    assert shipped_weights(SeedConfig(language="python", seed=1)) is None
