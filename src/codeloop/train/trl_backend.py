"""DPO and KTO through TRL (pinned: trl==1.16.0) with optional LoRA through PEFT (peft==0.21.2).

For models too large for the plain loops of ``codeloop.train.dpo``/``kto``: TRL's trainers handle
devices, bf16, gradient checkpointing and adapters. Data goes in TRL's own formats
(``prompt/chosen/rejected``, ``prompt/completion/label``). With LoRA the reference is the base model
with the adapter switched off (TRL's behaviour: no second copy in memory) and the adapter is merged
back afterwards, so the caller gets a plain model to sample from and save. The NLL term on chosen
completions is, for DPO, TRL's multi-loss ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1,
nll_weight]``; TRL 1.16's KTOTrainer has none, so codeloop's adds it as the plain KTO loop does
(``nll_weight`` times each desirable completion's mean per-token NLL, averaged over the batch), from the
per-token log-probabilities of the policy's own forward pass: no extra forward.

Tokenisation is codeloop's, not TRL's: TRL 1.16 encodes ``prompt + completion`` as one text and takes
the completion to start where that diverges from the encoded prompt, so when the prompt's last token
merges with the completion's first (a docstring's closing ``\n`` and the body's indentation do, with
byte-level BPE) it trains on a prompt cut short, one the model never sees when it samples. Here the
trainers' ``_prepare_dataset`` encodes prompt and completion apart, as ``codeloop.models.encoding``
does for sampling and for the plain loops; KTO's mismatched-pair KL completions are then built as
TRL builds them (each batch's completions rotated by one).

Both train in the caller's process, or, with ``launch``, in the processes a launcher (torchrun,
accelerate launch) starts: ``codeloop.train.launch`` builds the same trainer there (``build_trainer``).

Install: ``pip install 'codeloop[trl]'``.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from codeloop.models.encoding import completion_ids, leading_specials, prompt_ids
from codeloop.types import PreferencePair


@dataclass(frozen=True)
class LoRA:
    """LoRA adapter settings (PEFT): rank, scaling alpha, dropout; targets every linear layer."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05

    def peft_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules="all-linear",
                          task_type="CAUSAL_LM")


def _common(lr: float, epochs: float, batch_size: int, max_length: int, seed: int, bf16: bool, out: str) -> dict:
    import torch

    return {"output_dir": out, "learning_rate": lr, "num_train_epochs": epochs, "per_device_train_batch_size": batch_size,
            "max_length": max_length, "seed": seed, "bf16": bf16, "report_to": "none", "save_strategy": "no",
            "logging_steps": 1, "disable_tqdm": True, "use_cpu": not torch.cuda.is_available(), "lr_scheduler_type": "constant",
            "warmup_steps": 0}


def encode_dataset(data: Any, tokenizer: Any, completions: Sequence[str], max_length: int | None) -> Any:
    """``prompt`` and each column of ``completions`` as token ids (``prompt_ids``, ``chosen_ids``, ...),
    encoded apart; rows whose prompt alone fills ``max_length`` are dropped, as TRL drops them."""
    lead = leading_specials(tokenizer)

    def encode(row: dict) -> dict:
        return {"prompt_ids": prompt_ids(tokenizer, row["prompt"], lead),
                **{f"{name}_ids": completion_ids(tokenizer, row[name]) for name in completions}}

    data = data.map(encode)
    return data if max_length is None else data.filter(lambda row: len(row["prompt_ids"]) < max_length)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the FutureWarnings transformers 5 raises at TRL 1.16's own use of its renamed
    ``gradient_checkpointing*`` API (four per update, nothing a codeloop user can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
        yield


_TRAINERS: dict[type, type] = {}


def _trainer(base: type) -> type:
    """``base`` (TRL's DPOTrainer or KTOTrainer) with codeloop's tokenisation (see the module docstring)."""
    if base not in _TRAINERS:
        def _prepare_dataset(self: Any, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "chosen" in dataset.column_names:
                return encode_dataset(dataset, processing_class, ("chosen", "rejected"), args.max_length)
            data = encode_dataset(dataset, processing_class, ("completion",), args.max_length)
            if self.calculate_KL:
                data = data.map(lambda b: {"KL_completion_ids": [b["completion_ids"][-1]] + b["completion_ids"][:-1]},
                                batched=True, batch_size=args.per_device_train_batch_size)
            return data

        _TRAINERS[base] = type(f"Codeloop{base.__name__}", (base,), {"_prepare_dataset": _prepare_dataset,
                                                                      "compute_loss": _with_nll(base)})
    return _TRAINERS[base]


def _with_nll(base: Any) -> Any:
    """``base.compute_loss`` plus ``self.nll_weight`` x the desirable completions' NLL, for KTO (see
    the module docstring). The policy's forward pass is the only one run with gradients (TRL runs the
    KL and reference passes under ``no_grad``); a forward hook keeps its output, whose ``log_probs``
    are the completion tokens'."""
    def compute_loss(self: Any, model: Any, inputs: dict, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        import torch

        weight = getattr(self, "nll_weight", 0.0)
        if not weight or "label" not in inputs or not torch.is_grad_enabled():
            return base.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        seen: list[Any] = []
        handle = model.register_forward_hook(lambda _m, _a, out: seen.append(out) if torch.is_grad_enabled() else None)
        try:
            result = base.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()
        if len(seen) != 1:
            raise RuntimeError(f"expected one forward pass with gradients per KTO batch, saw {len(seen)} (TRL changed?)")
        mask = inputs["completion_mask"][:, 1:].to(seen[0].log_probs.device)
        logps = seen[0].log_probs[:, -mask.size(1):]
        good = torch.as_tensor(inputs["label"], dtype=logps.dtype, device=logps.device)
        nll = (-(logps * mask).sum(-1) / mask.sum(-1).clamp(min=1) * good).sum() / len(good)
        return (result[0] + weight * nll, result[1]) if return_outputs else result + weight * nll

    return compute_loss


def build_trainer(method: str, model: Any, reference: Any, tokenizer: Any, rows: Sequence[dict], settings: dict,
                  lora: LoRA | None, out: str, processes: int = 1) -> Any:
    """TRL's DPOTrainer (``method`` "dpo": prompt/chosen/rejected rows) or KTOTrainer ("kto":
    prompt/completion/label rows), with codeloop's tokenisation and NLL term, writing to ``out``.
    ``settings`` are ``trl_dpo``'s or ``trl_kto``'s keyword arguments; ``batch_size`` is the batch of one
    update, split evenly over ``processes`` (each process of a launcher takes its share)."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    s = dict(settings)
    nll_weight = s.pop("nll_weight")
    common = _common(s.pop("lr"), s.pop("epochs"), s.pop("batch_size") // processes, s.pop("max_length"), s.pop("seed"),
                     s.pop("bf16"), out)
    base: type
    args: Any
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, nll_weight]} if nll_weight else {"loss_type": ["sigmoid"]}
        base, args = DPOTrainer, DPOConfig(**s, **losses, **common)
    else:
        from trl import KTOConfig, KTOTrainer

        base, args = KTOTrainer, KTOConfig(**s, **common)
    trainer = _trainer(base)(model=model, ref_model=None if lora else reference, args=args,
                             train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer,
                             peft_config=lora.peft_config() if lora else None)
    if method == "kto":
        trainer.nll_weight = nll_weight
    return trainer


def train(trainer: Any) -> dict:
    """Run ``trainer``; its statistics: optimiser steps, the last logged loss, and every logged row."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # statistics come back in the result, not on stdout
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "final_loss": logs[-1]["loss"] if logs else float("nan"), "history": logs}


def _update(method: str, model: Any, reference: Any, tokenizer: Any, rows: list[dict], settings: dict,
            lora: LoRA | None, launch: str) -> tuple[Any, dict]:
    if launch:
        from codeloop.train.launch import launched_update

        return launched_update(launch, method, model, reference, tokenizer, rows, settings, lora)
    with tempfile.TemporaryDirectory(prefix="codeloop-trl-") as out, quiet():
        trainer = build_trainer(method, model, reference, tokenizer, rows, settings, lora, out)
        stats = train(trainer)
        # bf16: accelerate wrapped the model's forward in autocast for training; without unwrapping, the
        # loop's sampling would run under it too, and the next update would wrap it again
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        model = model.merge_and_unload() if lora is not None else model
    model.eval()
    return model, stats


def trl_dpo(model: Any, reference: Any, tokenizer: Any, pairs: Sequence[PreferencePair], beta: float = 0.1,
            lr: float = 5e-5, epochs: float = 1.0, batch_size: int = 16, nll_weight: float = 0.0, max_length: int = 1024,
            seed: int = 0, lora: LoRA | None = None, bf16: bool = False, launch: str = "") -> tuple[Any, dict]:
    """DPO (+ NLL on chosen) with TRL's DPOTrainer; returns the trained model and its statistics. With
    ``launch`` (a launcher command, e.g. "torchrun --standalone --nproc_per_node 8"), training runs in
    the processes it starts (``codeloop.train.launch``) and the trained weights come back into ``model``."""
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    settings = {"beta": beta, "lr": lr, "epochs": epochs, "batch_size": batch_size, "nll_weight": nll_weight,
                "max_length": max_length, "seed": seed, "bf16": bf16}
    return _update("dpo", model, reference, tokenizer, rows, settings, lora, launch)


def trl_kto(model: Any, reference: Any, tokenizer: Any, rows: Sequence[dict], beta: float = 0.1, lr: float = 5e-5,
            epochs: float = 1.0, batch_size: int = 16, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
            nll_weight: float = 0.0, max_length: int = 1024, seed: int = 0, lora: LoRA | None = None,
            bf16: bool = False, launch: str = "") -> tuple[Any, dict]:
    """KTO (+ NLL on the desirable completions) with TRL's KTOTrainer on ``prompt/completion/label`` rows;
    returns the trained model and statistics. ``launch`` as for ``trl_dpo``."""
    data = [{"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])} for r in rows]
    settings = {"beta": beta, "desirable_weight": desirable_weight, "undesirable_weight": undesirable_weight, "lr": lr,
                "epochs": epochs, "batch_size": batch_size, "nll_weight": nll_weight, "max_length": max_length,
                "seed": seed, "bf16": bf16}
    return _update("kto", model, reference, tokenizer, data, settings, lora, launch)
