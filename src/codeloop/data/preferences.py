"""Preference data from expert verdicts: the online-DPO ranking rule, PLUM's chosen/rejected split,
pairs (all negatives, or balanced per instruction), KTO rows, saving.

Saved as Hugging Face datasets in TRL's formats (``prompt/chosen/rejected`` for DPO,
``prompt/completion/label`` for KTO), loadable with ``datasets.load_from_disk``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from codeloop.types import PreferencePair, Status

NEGATIVES = ("failing", "unrunnable")


def rank_positive(kappa: Sequence[float], phi: Sequence[float],
                  tie_break: Callable[[list[int]], int | None] | None = None) -> int:
    """Index of the unique positive C_p among k candidates (online DPO, eq. 6).

    Candidates are ordered by (E_κ, E_φ): compiling beats not compiling, then semantically right beats
    wrong. Several candidates tied at the top go to ``tie_break`` (the semantic expert's pick of the
    best); without one, or if it declines, the first of them wins.
    """
    tied = top_tied(kappa, phi)
    if len(tied) > 1 and tie_break is not None:
        pick = tie_break(tied)
        if pick in tied:
            return pick
    return tied[0]


def top_tied(kappa: Sequence[float], phi: Sequence[float]) -> list[int]:
    """The candidates rated highest by (E_κ, E_φ), in order: eq. 6's positive is one of them."""
    if not kappa or len(kappa) != len(phi):
        raise ValueError("need one compiler and one semantic verdict per candidate")
    keys = list(zip(kappa, phi))
    best = max(keys)
    return [i for i, k in enumerate(keys) if k == best]


def preference_pairs(prompt: str, completions: Sequence[str], positive: int) -> list[PreferencePair]:
    """{C_p} x negatives: every other candidate is rejected (identical texts carry no preference)."""
    return cross_pairs(prompt, [completions[positive]], [c for i, c in enumerate(completions) if i != positive])


def cross_pairs(prompt: str, chosen: Sequence[str], rejected: Sequence[str]) -> list[PreferencePair]:
    """Every distinct chosen text against every rejected one, in order (identical texts carry no preference)."""
    return [PreferencePair(prompt, c, r) for c in dict.fromkeys(chosen) for r in rejected if r != c]


def plum_split(completions: Sequence[str], statuses: Sequence[Status], static_ok: Sequence[bool],
               negatives: str = "failing") -> tuple[list[str], list[str]]:
    """PLUM's chosen and rejected solutions of one instruction.

    Chosen: passes every test. ``negatives="failing"`` (the paper): rejected = ran and failed at least one
    test; code that does not even run (a static-check failure, a compile error, a crash, a timeout) is
    filtered out. ``negatives="unrunnable"`` (the paper's ablation): rejected = only that un-runnable code.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    chosen, failing, unrunnable = [], [], []
    for text, status, ok in zip(completions, statuses, static_ok, strict=True):
        if ok and status is Status.PASSED:
            chosen.append(text)
        elif ok and status is Status.FAILED:
            failing.append(text)
        else:
            unrunnable.append(text)
    return chosen, failing if negatives == "failing" else unrunnable


def balanced_pairs(prompt: str, chosen: Sequence[str], rejected: Sequence[str], seed: int = 0) -> list[PreferencePair]:
    """DPO pairs for one instruction with as many chosen as rejected (PLUM's DPO setting): both sides
    are shuffled (seeded) and cut to the shorter one, then zipped."""
    rng = random.Random(seed)
    c, r = list(chosen), list(rejected)
    rng.shuffle(c)
    rng.shuffle(r)
    return [PreferencePair(prompt, a, b) for a, b in zip(c, r)]


def kto_rows(prompt: str, completions: Sequence[str], good: Sequence[bool]) -> list[dict]:
    """Unpaired KTO examples: each completion labelled desirable or not."""
    return [{"prompt": prompt, "completion": c, "label": bool(g)} for c, g in zip(completions, good)]


def save_pairs(pairs: Sequence[PreferencePair], path: str | Path) -> Path:
    """Write a DPO dataset (prompt/chosen/rejected) with ``datasets.Dataset.save_to_disk``."""
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    return save_rows(rows, path, {"prompt": "string", "chosen": "string", "rejected": "string"})


def save_rows(rows: Sequence[dict], path: str | Path, schema: dict[str, str]) -> Path:
    """Write rows (e.g. KTO's prompt/completion/label) as a Hugging Face dataset with this schema."""
    from datasets import Dataset, Features, Value, disable_progress_bars

    disable_progress_bars()
    # Column by column, in one shard: an iteration can leave no rows, and datasets 5.2 neither builds an
    # empty dataset from an empty list (it loses the columns) nor loads one saved in zero shards.
    columns = {k: [r[k] for r in rows] for k in schema}
    data = Dataset.from_dict(columns, features=Features({k: Value(v) for k, v in schema.items()}))
    data.save_to_disk(str(path), num_shards=None if rows else 1)
    return Path(path)


KTO_SCHEMA = {"prompt": "string", "completion": "string", "label": "bool"}
