"""Any Hugging Face causal LM through transformers: local path, hub name, or ``seed-python``.

Prompts are encoded as the trainers encode them (``codeloop.models.encoding``: a BOS where the tokenizer
puts one) and batched (left padding, KV cache), ``n`` samples per prompt come from one call, stop
sequences end a row early and are cut from the text, and a fixed seed gives the same completions for
the same prompts and batch size. CPU or GPU (``device="cuda"``); bf16 on GPU by default.

Decoding runs in this module's own loop rather than ``model.generate``: the same forward passes,
logits warpers (transformers' temperature, top-k and top-p classes, in ``generate``'s order and with
its top-k default of 50), stop criterion (transformers' ``StopStringCriteria``) and random draws, so
the completions are token for token those of ``generate`` (tested), with two savings: a row that has
finished is dropped from the batch and its KV cache instead of being carried to the end as padding,
and each prompt is encoded once, its cache copied to its ``n`` rows, rather than once per row. On
the seed policy that is 1.63x the tokens per second of ``generate`` on a CPU and 1.08-1.15x on an H100
(``benchmarks/generation_throughput.py``).
The equality rests on a row's numbers not depending on how many rows share a matrix product, which
holds for float32 on CPU here (the tests check it); on other hardware a last-bit difference may now
and then change a draw (measured on an H100 in bf16: 1 row of 1,024 with 256 rows in flight, none of
256 with 32), and the samples are then equally valid but not generate's.
Draws stay aligned because every step samples a full-width probability table (finished rows hold a
placeholder), and ``torch.multinomial`` consumes the same random numbers whatever the values. A model
whose generation config asks for anything else (a repetition penalty, min-p, banned words, a static
cache, ...) goes through ``generate`` unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeloop.models.base import GeneratorError, truncate_at_stop
from codeloop.models.encoding import leading_specials, prompt_ids
from codeloop.types import Completion, SamplingParams

SEED_DIR = Path(__file__).resolve().parent / "seed_python"
"""Where the project's seed policy ships (Hugging Face format, with its tokenizer)."""
BUILTIN = {"seed-python": SEED_DIR, "seed-st": SEED_DIR.with_name("seed_st")}
"""Seed policies the package ships: Python bodies, and whole Structured Text functions."""
DECODERS = ("auto", "generate")


def resolve(name_or_path: str) -> str:
    """A built-in model name, a local directory, or a hub name (returned unchanged). Anything else (a
    path that does not exist and cannot be a hub name, a file) is a :class:`GeneratorError` saying so,
    rather than the hub's complaint about the form of repo ids. Reads no network."""
    if name_or_path in BUILTIN:
        path = BUILTIN[name_or_path]
        if not (path / "config.json").exists():
            language = name_or_path.removeprefix("seed-")
            raise GeneratorError(f"built-in model {name_or_path!r} is missing at {path}: "
                                 f"run `codeloop seed train --language {language}`")
        return str(path)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise GeneratorError(f"model {name_or_path!r}: the directory has no config.json, so it holds no saved "
                                 "model (what save_pretrained writes, or a run's iter_N/model)")
        return str(local)
    if local.exists():
        raise GeneratorError(f"model {name_or_path!r} is a file: expected a model directory (config.json, weights, "
                             "tokenizer), a hub name or a built-in model")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        raise GeneratorError(f"model {name_or_path!r}: no such directory, and not a hub name either (NAME or "
                             f"OWNER/NAME); built-in: {', '.join(BUILTIN)}") from None
    return name_or_path


def locate(name_or_path: str) -> str:
    """:func:`resolve`, then, for a hub name that is not in the local Hugging Face cache, one quick look
    at whether the hub answers at all: without it, transformers retries for most of a minute before it
    says the hub cannot be reached (``HF_HUB_OFFLINE=1`` skips the look, and the download)."""
    path = resolve(name_or_path)
    if Path(path).is_dir():
        return path
    from huggingface_hub import constants, get_session, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(path, "config.json"), str):
        return path
    try:
        get_session().head(constants.ENDPOINT, timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure to get an answer at all
        raise GeneratorError(f"cannot load model {name_or_path!r}: it is not a local directory, not a built-in model "
                             f"({', '.join(BUILTIN)}) and not in the Hugging Face cache, and {constants.ENDPOINT} does "
                             f"not answer ({type(exc).__name__}: {exc})") from None
    return path


MODEL_FILES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt", ".tiktoken")
"""What defines a local model: weights, configs and tokenizer files (``seed_metrics.json``, a record of
how the seed was trained, is left out)."""
FULL_HASH_BYTES = 4 << 30
"""Up to this size a local model is hashed in full; above it, each file's size and first and last MiB."""


def weights_digest(name_or_path: str) -> str | None:
    """A sha256 of what a local model (or built-in seed) is: the weights, config and tokenizer files at
    the top of its folder, which is all ``from_pretrained`` reads there (a trainer's ``checkpoint-N``
    subfolders are left out), by name and content (see ``FULL_HASH_BYTES``), so copying or moving it
    keeps the digest and retraining it changes it. None for a hub name, whose files are not read here."""
    import hashlib

    path = Path(resolve(name_or_path))
    if not path.is_dir():
        return None
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix in MODEL_FILES
                   and f.name != "seed_metrics.json" and not f.name.startswith("."))
    full = sum(f.stat().st_size for f in files) <= FULL_HASH_BYTES
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as handle:
            if full:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(max(size - (1 << 20), 0))
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def attention_without_cudnn(device: str) -> contextlib.AbstractContextManager[Any]:
    """On CUDA, scaled-dot-product attention may use any backend but cuDNN's, which builds a plan for
    every new shape on first sight, and sampling meets new shapes all the time (prompt lengths, rows
    dropped as they finish). Measured on an H100 (torch 2.11+cu130, bf16, the seed policy, 32 rows in
    flight) with the same switch set for the whole process: 400 prompts x 4 took 20.6-24.0 s with cuDNN
    attention off and had not finished after 95 s with it on; 100 x 4, 6.4 s against more than 50 s.
    Elsewhere nothing changes."""
    if not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class HFGenerator:
    """``HFGenerator("seed-python")`` or ``HFGenerator(model=..., tokenizer=...)`` for objects in memory.

    ``decoder``: "auto" (this module's loop wherever it reproduces ``generate``, see :attr:`own_loop`)
    or "generate" (always ``model.generate``)."""

    def __init__(self, name_or_path: str = "seed-python", device: str | None = None, batch_size: int = 32,
                 model: Any = None, tokenizer: Any = None, dtype: str = "auto", decoder: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.name, self.decoder = name_or_path, decoder
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = max(1, batch_size)
        if model is None:
            path = locate(name_or_path)
            torch_dtype = (torch.bfloat16 if self.device.startswith("cuda") else torch.float32) if dtype == "auto" \
                else getattr(torch, dtype)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            except (OSError, ValueError) as exc:  # ValueError: e.g. a tokenizer that cannot be built from the files
                raise GeneratorError(f"cannot load model {name_or_path!r}: {exc}") from None
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self._takes = set(inspect.signature(self.model.forward).parameters)
        # the prompt's last position is the only one whose logits are used
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in self._takes else {}
        self._stop_criteria: dict[tuple[str, ...], Any] = {}
        self.tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._lead = leading_specials(self.tokenizer)  # what a prompt starts with (a BOS, or nothing)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        per_call = max(1, self.batch_size // max(1, params.n))  # rows in flight = prompts x n
        for start in range(0, len(prompts), per_call):
            out += self._batch(list(prompts[start:start + per_call]), params, params.seed + start)
        return out

    def _batch(self, prompts: list[str], params: SamplingParams, seed: int) -> list[list[Completion]]:
        import torch

        window = getattr(self.model.config, "max_position_embeddings", None)
        room = max(1, window - params.max_new_tokens) if window else None
        # encoded as the trainers encode a prompt; one longer than the window keeps its end (the part
        # the completion continues)
        encoded = [prompt_ids(self.tokenizer, p, self._lead)[-room if room else 0:] for p in prompts]
        enc = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt").to(self.device)
        per_prompt = params.n if params.temperature > 0 else 1  # greedy: one decode, repeated n times
        torch.manual_seed(seed)
        with torch.no_grad(), attention_without_cudnn(self.device):
            new = self._decode(enc, params, per_prompt) if self.own_loop else self._generate(enc, params, per_prompt)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        rows = []
        for i, ids in enumerate(new):
            ended = self.tokenizer.eos_token_id in ids
            ids = ids[: ids.index(self.tokenizer.eos_token_id)] if ended else ids
            ids = [t for t in ids if t != self.tokenizer.pad_token_id]
            text, hit = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
            reason = "stop" if ended or hit else "length"
            rows.append(Completion(text, reason, int(prompt_lens[i // per_prompt]), len(ids)))
        return [rows[i * per_prompt:(i + 1) * per_prompt] * (params.n // per_prompt) for i in range(len(prompts))]

    @property
    def own_loop(self) -> bool:
        """Whether :meth:`generate` decodes in :meth:`_decode`: ``decoder`` is "auto" and the loop reproduces
        ``generate`` for this model and its current generation config (see the module docstring)."""
        config = self.model.generation_config
        return (self.decoder == "auto" and not self.model.config.is_encoder_decoder and "position_ids" in self._takes
                and all(getattr(config, key, None) in neutral for key, neutral in _NEUTRAL.items()))

    def _generate(self, enc: Any, params: SamplingParams, per_prompt: int) -> list[list[int]]:
        """The new tokens of each row through ``model.generate`` (finished rows padded to the end)."""
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "num_return_sequences": per_prompt,
                                  "do_sample": params.temperature > 0, "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        tokens = self.model.generate(**enc, **kwargs)
        return tokens[:, enc["input_ids"].shape[1]:].tolist()

    def _decode(self, enc: Any, params: SamplingParams, per_prompt: int) -> list[list[int]]:
        """The new tokens of each row, decoding only the rows still running (see the module docstring)."""
        import torch
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
        from transformers.generation.stopping_criteria import StopStringCriteria

        ids = enc["input_ids"].repeat_interleave(per_prompt, dim=0)
        mask = enc["attention_mask"].repeat_interleave(per_prompt, dim=0)
        rows, width = ids.shape
        if params.max_new_tokens < 1:
            return [[] for _ in range(rows)]
        warpers: list[Any] = []
        if params.temperature > 0:  # generate's order: temperature, top-k (0 turns it off), top-p
            top_k = self.model.generation_config.top_k
            warpers = [TemperatureLogitsWarper(params.temperature)]
            if top_k != 0:
                warpers.append(TopKLogitsWarper(top_k=50 if top_k is None else top_k, min_tokens_to_keep=1))
            if params.top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1))
        stops = tuple(s for s in params.stop if s)
        if stops and stops not in self._stop_criteria:  # building one scans the vocabulary: once per set
            self._stop_criteria[stops] = StopStringCriteria(self.tokenizer, list(stops))
        stop_at = self._stop_criteria.get(stops)
        eos = self.tokenizer.eos_token_id
        prompt_positions = enc["attention_mask"].long().cumsum(-1) - 1
        prompt_positions.masked_fill_(enc["attention_mask"] == 0, 1)
        positions = prompt_positions.repeat_interleave(per_prompt, dim=0)
        # each prompt is encoded once and its cache copied to its n rows (generate encodes every copy)
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=prompt_positions,
                         use_cache=True, **self._last_logits_only)
        cache, seqs = out.past_key_values, ids
        if per_prompt > 1:
            cache.batch_repeat_interleave(per_prompt)
        logits = out.logits[:, -1].repeat_interleave(per_prompt, dim=0)
        live = torch.arange(rows, device=ids.device)  # the original row of each row still decoding
        finished: dict[int, list[int]] = {}
        probs = None
        for step in range(params.max_new_tokens):
            scores = logits.to(dtype=torch.float32)
            if warpers:
                for warper in warpers:
                    scores = warper(seqs, scores)
                if probs is None:
                    probs = torch.ones(rows, scores.shape[-1], device=scores.device)
                probs[live] = scores.softmax(dim=-1)
                nxt = torch.multinomial(probs, num_samples=1).squeeze(1)[live]
            else:
                nxt = scores.argmax(dim=-1)
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            done = nxt == eos
            if stop_at is not None:
                done |= stop_at(seqs, scores)
            if step == params.max_new_tokens - 1:
                done[:] = True
            if done.any():
                for j in done.nonzero().flatten().tolist():
                    finished[int(live[j])] = seqs[j, width:].tolist()
                keep = (~done).nonzero().flatten()
                if len(keep) == 0:
                    break
                cache.batch_select_indices(keep)
                live, seqs, nxt, mask, positions = live[keep], seqs[keep], nxt[keep], mask[keep], positions[keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
        return [finished[r] for r in range(rows)]


_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0), "min_p": (None,),
    "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "top_h": (None,),
    "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
    "sequence_bias": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "min_length": (None, 0),
    "min_new_tokens": (None, 0), "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False),
    "guidance_scale": (None, 1.0), "watermarking_config": (None,), "num_beams": (None, 1),
    "cache_implementation": (None, "dynamic"),
}
"""Generation-config fields that would add a logits processor (or a search) :meth:`HFGenerator._decode`
does not reproduce, with their neutral values; any other value sends the model through ``generate``."""
