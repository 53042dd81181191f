"""Preference data from expert verdicts: the online-DPO ranking rule, pairs, KTO rows, saving.

Saved as Hugging Face datasets in TRL's formats (``prompt/chosen/rejected`` for DPO,
``prompt/completion/label`` for KTO), loadable with ``datasets.load_from_disk``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from codeloop.types import PreferencePair


def rank_positive(kappa: Sequence[float], phi: Sequence[float],
                  tie_break: Callable[[list[int]], int | None] | None = None) -> int:
    """Index of the unique positive C_p among k candidates (online DPO, eq. 6).

    Candidates are ordered by (E_κ, E_φ): compiling beats not compiling, then semantically right beats
    wrong. Several candidates tied at the top go to ``tie_break`` (the semantic expert's pick of the
    best); without one, or if it declines, the first of them wins.
    """
    if not kappa or len(kappa) != len(phi):
        raise ValueError("need one compiler and one semantic verdict per candidate")
    keys = list(zip(kappa, phi))
    best = max(keys)
    tied = [i for i, k in enumerate(keys) if k == best]
    if len(tied) > 1 and tie_break is not None:
        pick = tie_break(tied)
        if pick in tied:
            return pick
    return tied[0]


def preference_pairs(prompt: str, completions: Sequence[str], positive: int) -> list[PreferencePair]:
    """{C_p} x negatives: every other candidate is rejected (identical texts carry no preference)."""
    chosen = completions[positive]
    return [PreferencePair(prompt, chosen, c) for i, c in enumerate(completions) if i != positive and c != chosen]


def kto_rows(prompt: str, completions: Sequence[str], good: Sequence[bool]) -> list[dict]:
    """Unpaired KTO examples: each completion labelled desirable or not."""
    return [{"prompt": prompt, "completion": c, "label": bool(g)} for c, g in zip(completions, good)]


def save_pairs(pairs: Sequence[PreferencePair], path: str | Path) -> Path:
    """Write a DPO dataset (prompt/chosen/rejected) with ``datasets.Dataset.save_to_disk``."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    Dataset.from_list(rows or [], features=None if rows else _empty_features()).save_to_disk(str(path))
    return Path(path)


def _empty_features():  # type: ignore[no-untyped-def]
    from datasets import Features, Value

    return Features({"prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string")})
