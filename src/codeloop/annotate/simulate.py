"""A simulated crowd for the annotation store: the people's part of cRLHF, for a dry run of the whole
path (add -> label -> scores -> train) before anyone is recruited, and for the tests.

The truth a simulated annotator starts from is ``codeloop.feedback.human.reference_line_labels``: every
line of a program that passes its task's tests is correct; in one that fails, the lines a diff matches
to the task's reference solution are correct and the rest wrong (``gaps``: and the line after each place
where the program left out lines of the reference). So programs (and honeypots made here)
need tasks with a reference solution and tests; the programs are run through the sandbox once to learn
which pass. Honeypots keep the answers they were given. Each simulated annotator (``sim-a1``, ...) then
labels a line right with its reliability, independently (``SimulatedCrowd``), and gives the same odds
of the right verdict on a program as a whole (it does what the task asks when it passes its tests); the
labels and verdicts go into the store exactly as the web page's would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codeloop.eval import evaluate
from codeloop.feedback.human import SimulatedCrowd, reference_line_labels
from codeloop.sandbox import Runner
from codeloop.types import Sample, Task

from codeloop.annotate.store import Store

PREFIX = "sim-"


def true_lines(tasks: Mapping[str, Task], samples: Sequence[Sample], sandbox: Runner,
               gaps: bool = False) -> list[tuple[list[int], bool] | None]:
    """Each sample's true line labels and whether it passes its tests (see the module docstring); None
    where its task has no reference solution."""
    known = [s for s in samples if tasks[s.task_id].canonical_solution]
    outcomes = iter(evaluate({s.task_id: tasks[s.task_id] for s in known}, known, sandbox) if known else [])
    out: list[tuple[list[int], bool] | None] = []
    for s in samples:
        reference = tasks[s.task_id].canonical_solution
        passed = next(outcomes).passed if reference else False
        out.append((reference_line_labels(s.completion, reference, passed, gaps), passed) if reference else None)
    return out


def honeypot_rows(tasks: Mapping[str, Task], samples: Sequence[Sample], sandbox: Runner,
                  gaps: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Honeypot rows: each sample's fields with ``answers`` added, its true line labels. Returns the rows
    and how many samples were left out (no reference solution, or no non-blank line)."""
    out = [{"task_id": s.task_id, "completion": s.completion, **s.extra, "answers": known[0]}
           for s, known in zip(samples, true_lines(tasks, samples, sandbox, gaps)) if known and known[0]]
    return out, len(samples) - len(out)


@dataclass(frozen=True)
class Simulated:
    """What ``simulate`` did: labels written, and items it could not label (no reference solution)."""

    labels: int
    honeypots: int
    programs: int
    skipped: int


def simulate(store: Store, tasks: Mapping[str, Task], reliability: Mapping[str, float], per_program: int, seed: int,
             sandbox: Runner, gaps: bool = False) -> Simulated:
    """Every honeypot labelled by every simulated annotator, every program by ``per_program`` of them
    (0: all), each name prefixed ``sim-``; on programs, each with a verdict on the whole program. Items the simulated crowd labelled before keep their labels
    (a second call adds labels only to items added since)."""
    crowd = SimulatedCrowd({PREFIX + a: p for a, p in reliability.items()}, seed=seed)
    done = store.labels()
    items = [it for it in store.items() if not any(a.startswith(PREFIX) for a in done.get(it.id, {}))]
    programs = [it for it in items if not it.honeypot]
    missing = sorted({it.task_id for it in programs if it.task_id not in tasks})
    if missing:
        raise ValueError(f"the store holds programs of tasks the task set lacks: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")
    truths = dict(zip((it.id for it in programs),
                      true_lines(tasks, [Sample(it.task_id, it.completion) for it in programs], sandbox, gaps)))
    rows, skipped = [], 0
    for it in items:
        known = truths[it.id] if not it.honeypot else None
        truth = it.answers if it.honeypot else known[0] if known else None
        if not truth:  # a program of a task without a reference solution
            skipped += 1
            continue
        labels = crowd.annotate(truth, 0 if it.honeypot else per_program)
        votes = crowd.judge(known[1], list(labels)) if known else {}  # honeypots: lines only
        rows += [(annotator, it.id, lab, votes.get(annotator)) for annotator, lab in labels.items()]
    store.label_many(rows)
    return Simulated(len(rows), sum(it.honeypot for it in items), len(programs), skipped)
