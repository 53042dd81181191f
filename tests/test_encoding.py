"""One prompt encoding for sampling and training (``codeloop.models.encoding``), TRL's path included."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("torch")

from tokenizers import processors  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from codeloop.models.encoding import completion_ids, leading_specials, prompt_ids  # noqa: E402
from codeloop.models.hf import SEED_DIR, HFGenerator  # noqa: E402
from codeloop.models.tiny import train_tokenizer  # noqa: E402
from codeloop.train.common import tokenize  # noqa: E402
from codeloop.types import SamplingParams  # noqa: E402

# A docstring's closing newline and the body's indentation merge into one token when encoded together.
PROMPT = 'def total(xs):\n    """Return the sum of xs."""\n'
BODY = "    return sum(xs)\n"


@pytest.fixture(scope="module")
def seed_tokenizer():
    return AutoTokenizer.from_pretrained(SEED_DIR)


def test_the_seed_tokenizer_puts_bos_first_as_the_seed_was_trained(seed_tokenizer):
    assert leading_specials(seed_tokenizer) == [seed_tokenizer.bos_token_id]
    assert prompt_ids(seed_tokenizer, "def f")[0] == seed_tokenizer.bos_token_id
    assert tokenize(seed_tokenizer, "def f", " x")[0] == prompt_ids(seed_tokenizer, "def f")


@pytest.mark.parametrize(("template", "lead"), [
    (None, []),  # no specials at all (GPT-2 style, Qwen style)
    ("<|bos|> $A", ["<|bos|>"]),  # Llama style
    ("$A <|eos|>", []),  # specials after the text are never part of a prompt
    ("<|bos|> $A <|eos|>", ["<|bos|>"]),
])
def test_a_prompt_keeps_only_the_specials_its_tokenizer_puts_before_a_text(template, lead):
    tok = train_tokenizer(["def f(x):\n    return x\n"] * 4, 300)
    core = tok.backend_tokenizer
    if template is None:
        core.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    else:
        core.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, core.token_to_id(t)) for t in ("<|bos|>", "<|eos|>") if t in template])
    assert leading_specials(tok) == [core.token_to_id(t) for t in lead]
    ids = prompt_ids(tok, "def f(x):")
    assert ids == leading_specials(tok) + tok("def f(x):", add_special_tokens=False)["input_ids"]
    assert completion_ids(tok, " x")[-1] == tok.eos_token_id


def test_the_hf_generator_samples_on_the_ids_the_trainers_train_on(seed_tokenizer):
    gen = HFGenerator("seed-python", device="cpu")
    seen = []

    def capture(enc, params, per_prompt):
        seen.extend([int(t) for t, m in zip(row, mask) if m] for row, mask in zip(enc["input_ids"], enc["attention_mask"]))
        return [[gen.tokenizer.eos_token_id]] * (len(enc["input_ids"]) * per_prompt)

    gen._decode = capture  # type: ignore[method-assign]
    gen.generate([PROMPT, "def f():\n"], SamplingParams(n=1, temperature=0.0, max_new_tokens=4))
    assert seen == [tokenize(seed_tokenizer, PROMPT, BODY)[0], tokenize(seed_tokenizer, "def f():\n", "")[0]]


def test_trl_trains_on_the_prompt_as_sampled_not_merged_with_the_completion(seed_tokenizer, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    from codeloop.train.trl_backend import _common, _trainer, quiet

    joint = seed_tokenizer(PROMPT + BODY)["input_ids"]
    alone = prompt_ids(seed_tokenizer, PROMPT)
    assert joint[:len(alone)] != alone  # the case TRL's own tokenisation gets wrong
    model = AutoModelForCausalLM.from_pretrained(SEED_DIR)
    expected = {"prompt_ids": alone, "chosen_ids": completion_ids(seed_tokenizer, BODY),
                "rejected_ids": completion_ids(seed_tokenizer, "    return 0\n")}
    pairs = Dataset.from_list([{"prompt": PROMPT, "chosen": BODY, "rejected": "    return 0\n"}] * 2)
    with quiet():  # TRL's own use of transformers' renamed gradient_checkpointing API
        dpo = _trainer(DPOTrainer)(model=model, ref_model=copy.deepcopy(model), processing_class=seed_tokenizer,
                                   train_dataset=pairs, args=DPOConfig(**_common(1e-5, 1, 2, 1024, 0, False, str(tmp_path))))
    row = dpo.train_dataset[0]
    assert {k: row[k] for k in expected} == expected

    rows = Dataset.from_list([{"prompt": PROMPT, "completion": BODY, "label": True},
                              {"prompt": "def g():\n", "completion": "    pass\n", "label": False}])
    with quiet():
        kto = _trainer(KTOTrainer)(model=model, ref_model=copy.deepcopy(model), processing_class=seed_tokenizer,
                                   train_dataset=rows, args=KTOConfig(**_common(1e-5, 1, 2, 1024, 0, False, str(tmp_path))))
    data = kto.train_dataset
    assert data[0]["prompt_ids"] == alone and data[0]["completion_ids"] == expected["chosen_ids"]
    assert data[0]["KL_completion_ids"] == data[1]["completion_ids"]  # TRL's rotation within a batch
