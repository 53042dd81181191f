"""Small causal LMs and tokenizers built in code: the seed policy's architecture, and test models.

Nothing here downloads anything. A tokenizer is trained locally (byte-level BPE, so any text encodes)
and wrapped as a ``PreTrainedTokenizerFast``; a model is a ``LlamaForCausalLM`` from a config, so both
save and load with the standard ``from_pretrained`` machinery (and vLLM can serve them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with BOS/EOS/PAD specials; it puts BOS before a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    # Like Llama's: encoding a text puts BOS first (``codeloop.models.encoding`` relies on it).
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                        special_tokens=[(BOS, core.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left")


def causal_lm(vocab_size: int, d_model: int = 128, n_layer: int = 4, n_head: int = 4, max_len: int = 512,
              seed: int = 0, tokenizer: Any = None) -> Any:
    """A randomly initialised Llama-style causal LM (tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=3 * d_model,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
                         max_position_embeddings=max_len, tie_word_embeddings=True)
    if tokenizer is not None:
        config.bos_token_id, config.eos_token_id, config.pad_token_id = (
            tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_causal_lm(vocab_size: int = 64, n_layer: int = 2, d_model: int = 16, seed: int = 0) -> tuple[Any, Any]:
    """A test-sized (model, tokenizer) pair: random weights, tokenizer trained on a few code lines."""
    corpus = ["def solve(xs):\n    return sum(xs)\n", "    xs = [x * 2 for x in xs]\n", "print('hello world')\n"] * 4
    tokenizer = train_tokenizer(corpus, vocab_size=max(vocab_size, 260))
    model = causal_lm(len(tokenizer), d_model=d_model, n_layer=n_layer, n_head=2, max_len=256, seed=seed,
                      tokenizer=tokenizer)
    return model, tokenizer
