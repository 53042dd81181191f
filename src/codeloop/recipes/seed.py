"""Train a seed policy: a small causal LM, from scratch, on a synthetic task family.

Setup (corpus: task -> answer, a Python body or a whole Structured Text FUNCTION, plus repair examples in
the self-refinement prompt format of the language; a tokenizer trained on it), SFT under a time budget, save
in Hugging Face format, then measure it the way the README reports it: pass@1 and compile-error rate
on held-out ``synthetic-python:test`` (or ``synthetic-st:test``) tasks.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codeloop.data import synthetic
from codeloop.eval import preload_for, summarize
from codeloop.languages import st
from codeloop.models.hf import BUILTIN, HFGenerator
from codeloop.models.tiny import causal_lm, train_tokenizer
from codeloop.recipes.common import check_ranges, held_out_metrics, rollout
from codeloop.sandbox import Sandbox, cpu_budget
from codeloop.train.sft import sft


LANGUAGES = ("python", "st")
MAX_NEW_TOKENS = {"python": 192, "st": 320}
"""Longest sample when measuring: a Python body, or a whole ST FUNCTION with its declarations."""


@dataclass
class SeedConfig:
    language: str = "python"
    """"python" (seed-python, on synthetic-python) or "st" (seed-st, on synthetic-st)."""
    out_dir: str = ""
    """Where the model and tokenizer are saved (empty: the built-in seed-LANGUAGE the package ships)."""
    n_train: int = 6000
    """Training tasks from the family's train split."""
    n_repair: int = 2000
    """Repair examples (wrong attempt + execution feedback -> correct answer)."""
    vocab_size: int = 512
    """Byte-level BPE vocabulary, trained on the corpus."""
    d_model: int = 128
    """Hidden size."""
    n_layer: int = 4
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads."""
    max_len: int = 512
    """Longest example in tokens (longer ones are dropped)."""
    epochs: float = 1.0
    """Passes over the corpus. One pass leaves the seed weak on purpose (measured: 2 passes already
    reach pass@1 0.38 with 2% compile errors, 3 passes 0.87: too strong for feedback to show)."""
    lr: float = 2e-3
    """Peak learning rate (cosine decay, 50 warm-up steps)."""
    batch_size: int = 32
    """Examples per step."""
    minutes: float = 20.0
    """A guard, not the schedule: training stops here (with a warning: results then differ from the README)."""
    seed: int = 0
    """Seeds the corpus, the initialisation and the batch order."""
    eval_limit: int = 100
    """Held-out test tasks to measure the result on."""
    eval_n: int = 4
    """Samples per test task."""
    eval_temperature: float = 0.8
    """Sampling temperature for the measurement."""

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language: expected one of {', '.join(LANGUAGES)}, got {self.language!r}")
        check_ranges(self, n_train=">= 1", n_repair=">= 0", vocab_size=">= 1", d_model=">= 1", n_layer=">= 1", n_head=">= 1",
                     max_len=">= 1", epochs="> 0", lr="> 0", batch_size=">= 1", minutes="> 0", eval_limit=">= 1",
                     eval_n=">= 1", eval_temperature=">= 0")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_head {self.n_head}")

    @property
    def target(self) -> Path:
        """Where the model goes: out_dir, or the built-in seed's folder (kept out of the recorded config,
        which then says "" rather than one machine's install path)."""
        return Path(self.out_dir) if self.out_dir else BUILTIN[f"seed-{self.language}"]


def weight_difference(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """How two state dicts (name -> tensor) differ: identical (same names, shapes and bytes), how many
    tensors differ, and the largest absolute difference among those of the same shape."""
    import torch

    names = sorted(set(new) | set(old))
    differ = [n for n in names if n not in new or n not in old or new[n].shape != old[n].shape
              or new[n].dtype != old[n].dtype or not torch.equal(new[n], old[n])]
    comparable = [n for n in differ if n in new and n in old and new[n].shape == old[n].shape]
    largest = max(((new[n].double() - old[n].double()).abs().max().item() for n in comparable), default=0.0)
    return {"identical": not differ, "tensors": len(names), "tensors_differing": len(differ),
            "max_abs_difference": largest}


def shipped_weights(cfg: SeedConfig) -> dict[str, Any] | None:
    """The shipped seed's tensors, where ``cfg`` is the config it was trained with (then a retrain on a
    machine that rounds as that one did gives the same bytes); None otherwise or if it is missing."""
    from safetensors.torch import load_file

    path = BUILTIN[f"seed-{cfg.language}"] / "model.safetensors"
    if not path.exists() or dataclasses.replace(cfg, out_dir="", minutes=SeedConfig.minutes) != SeedConfig(language=cfg.language):
        return None
    return load_file(str(path))


def run(cfg: SeedConfig) -> dict:
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(cpu_budget())  # not os.cpu_count(): a CPU quota or affinity may allow fewer
    started = time.monotonic()
    shipped = shipped_weights(cfg)  # read first: the default target is the shipped folder itself
    tasks = synthetic.generate("train", cfg.n_train, seed=cfg.seed, language=cfg.language)
    pairs = [(t.prompt, t.canonical_solution or "") for t in tasks.values()]
    pairs += synthetic.repair_examples(cfg.n_repair, "train", seed=cfg.seed, language=cfg.language,
                                       compile_error=st.compile_message if cfg.language == "st" else None)
    tokenizer = train_tokenizer((p + c for p, c in pairs), cfg.vocab_size)
    model = causal_lm(len(tokenizer), cfg.d_model, cfg.n_layer, cfg.n_head, cfg.max_len, cfg.seed, tokenizer)
    stats = sft(model, tokenizer, pairs, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                max_len=cfg.max_len, seed=cfg.seed, time_budget_s=cfg.minutes * 60)
    if stats.steps < int(len(pairs) / cfg.batch_size * cfg.epochs) - 1:
        print(f"warning: the {cfg.minutes}-minute guard stopped training at step {stats.steps}; "
              "the model will not match the README's numbers", file=sys.stderr)
    out = cfg.target
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics = {"config": asdict(cfg), "train": asdict(stats), "parameters": sum(p.numel() for p in model.parameters()),
               "train_minutes": round((time.monotonic() - started) / 60, 2)}
    if shipped is not None:
        metrics["against_shipped"] = weight_difference(load_file(str(out / "model.safetensors")), shipped)
    metrics["test"] = measure(HFGenerator(str(out)), cfg.eval_limit, cfg.eval_n, cfg.eval_temperature, cfg.seed,
                              cfg.language)
    (out / "seed_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def measure(generator: HFGenerator, limit: int, n: int, temperature: float, seed: int, language: str = "python") -> dict:
    """pass@1 and the compile-error rate on the first ``limit`` test tasks of the language's family."""
    tasks = list(synthetic.generate("test", limit, language=language).values())
    with Sandbox(preload=preload_for(tasks)) as sandbox:
        run_ = rollout(generator, tasks, sandbox, n, temperature, MAX_NEW_TOKENS[language], seed)
    metrics = held_out_metrics(run_)
    return {"tasks": limit, "n": n, "temperature": temperature, "pass_at_1": metrics["pass_at_1"],
            "compile_error_rate": metrics["compile_error_rate"],
            "status_counts": summarize(run_.samples, run_.outcomes, ks=(1,)).status_counts}
