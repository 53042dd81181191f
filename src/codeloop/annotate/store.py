"""Annotation storage: one SQLite file holds the programs to label, the honeypots' answers and every label.

Items are programs (a task's prompt plus the completion to label) or honeypots (the same, with one
known answer per non-blank line). An item's id is a hash of its kind, task and text, so loading the same
files again adds nothing, and the id says nothing of the kind. The samples behind each program are kept
as well, so its ``copies`` counts how often it was sampled, across files (``Store.add``). Each annotator
meets the items in an order of their own: the programs shuffled by a seed drawn from their name, with
the honeypots spread evenly through it and the first item a honeypot, so reliabilities are measured
from the start. A label is one +1 (correct) or -1 (wrong) per non-blank line; labelling an item again
replaces the earlier labels. With the line labels may come a verdict on the whole program, 1 (it does
what the task asks) or -1 (it does not): what a line label cannot say about a program that leaves a step
out. Writes are committed at once: a stopped server loses nothing.

People log in with a key of their own (``Store.invite``): a random 192-bit token, handed out once in a
link and stored only as its SHA-256, so the file alone lets nobody in. A name with a key is the only
name its labels can be stored under through the server; reinviting a name replaces its key, and
``revoke`` ends it (the labels stay).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeloop.data import DataError, read_jsonl
from codeloop.data.jsonl import require, where
from codeloop.feedback.human import (CORRECT, CROWD_SCORES, SCORE_LINES, WRONG, Aggregator, Labelled, check_labels, check_verdict,
                                     code_lines, counted_lines, crowd_score, line_share, program_probabilities)
from codeloop.types import Task

NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, task_id TEXT NOT NULL, prompt TEXT NOT NULL,
    completion TEXT NOT NULL, honeypot INTEGER NOT NULL, answers TEXT, extra TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (annotator TEXT NOT NULL, item TEXT NOT NULL REFERENCES items(id), labels TEXT NOT NULL,
    at REAL NOT NULL, verdict INTEGER, PRIMARY KEY (annotator, item));
CREATE TABLE IF NOT EXISTS annotators (name TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS samples (id TEXT PRIMARY KEY, item TEXT NOT NULL REFERENCES items(id), copies INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS samples_item ON samples (item);
-- a store made before samples were kept: each program's count as its one file gave it
INSERT OR IGNORE INTO samples SELECT 'before:' || id, id, COALESCE(json_extract(extra, '$.copies'), 1) FROM items
    WHERE honeypot = 0 AND id NOT IN (SELECT item FROM samples);
"""


@dataclass(frozen=True)
class Item:
    id: str
    task_id: str
    prompt: str
    completion: str
    honeypot: bool
    answers: list[int] | None
    extra: dict[str, Any]

    @property
    def lines(self) -> list[str]:
        return code_lines(self.completion)


@dataclass(frozen=True)
class Added:
    """What ``Store.add`` did: items that were new, programs left out for having no non-blank line, and
    samples newly counted for programs the store already held (sampled again, in another batch)."""

    new: int
    blank: int = 0
    again: int = 0


def item_id(honeypot: bool, task_id: str, completion: str) -> str:
    """An item's id: a hash of its kind, task and text (the same program added again is the same item)."""
    return hashlib.sha256(f"{int(honeypot)}\0{task_id}\0{completion}".encode()).hexdigest()[:20]


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_name(annotator: str) -> str:
    if not isinstance(annotator, str) or not NAME.match(annotator):
        raise ValueError("an annotator name is 1-64 letters, digits or _ . @ + -")
    return annotator


class Store:
    """The SQLite file behind the app (safe to share between the server's threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SCHEMA)
            if "verdict" not in {r[1] for r in self._db.execute("PRAGMA table_info(labels)")}:  # a store made before verdicts
                self._db.execute("ALTER TABLE labels ADD COLUMN verdict INTEGER")

    def close(self) -> None:
        self._db.close()

    # --- loading ---------------------------------------------------------------------------------

    def add(self, path: str | Path, tasks: Mapping[str, Task], honeypots: bool = False) -> Added:
        """Add the samples of a JSONL file (``task_id``, ``completion``, any extra keys; honeypots also
        ``answers``: one 1 or -1 per non-blank line of the completion). Every line is checked before
        anything is written; an error names file, line and field. A program with no non-blank line (a
        model may write nothing) has nothing to label and is left out, counted; such a honeypot is an error.

        A program is one item however many samples hold it (the same task and text), so people label it
        once; its ``copies`` (in ``extra``) counts those samples, so training on the scores can weigh it
        as often as it was sampled. A sample is its whole line, and the n-th of identical lines in a file
        is the n-th sample; a line's own ``copies`` counts as that many. So adding a file again, or the
        same file grown by new lines, counts only the new samples, and another batch of samples (``codeloop
        sample`` writes each line's ``seed`` and ``sample_index``) adds its own. Lines that differ in
        nothing, in two files, are the same sample: give such batches a field that tells them apart. A
        program stored by a codeloop that kept no samples keeps the count it had (more would count its
        first file twice)."""
        rows, blank = [], 0
        samples: list[tuple[str, str, int]] = []  # (sample id, item id, copies)
        occurrences: dict[str, int] = {}
        for line, obj in read_jsonl(path):
            task_id = str(require(obj, "task_id", (str, int), path, line))
            completion = require(obj, "completion", str, path, line)
            if task_id not in tasks:
                raise DataError(f"{where(path, line, 'task_id')}: unknown task {task_id!r}")
            if not code_lines(completion):
                if not honeypots:
                    blank += 1
                    continue
                raise DataError(f"{where(path, line, 'completion')}: no non-blank line to label")
            answers = None
            if honeypots:
                answers = require(obj, "answers", list, path, line)
                try:
                    answers = check_labels(answers, len(code_lines(completion)), "answers")
                except ValueError as exc:
                    raise DataError(f"{where(path, line, 'answers')}: {str(exc).removeprefix('answers: ')}") from None
            else:  # how often the policy wrote it: the weight it needs in a policy gradient
                copies = require(obj, "copies", int, path, line, optional=True)
                if copies is not None and copies < 1:
                    raise DataError(f"{where(path, line, 'copies')}: a count of samples, at least 1, got {copies}")
                text = json.dumps(obj, sort_keys=True)
                occurrences[text] = n = occurrences.get(text, 0) + 1
                sample = hashlib.sha256(f"{text}\0{n}".encode()).hexdigest()[:24]
                samples.append((sample, item_id(False, task_id, completion), copies or 1))
            extra = {k: v for k, v in obj.items() if k not in ("task_id", "completion", "answers", "copies")}
            rows.append((task_id, tasks[task_id].prompt, completion, answers, extra))
        if not rows:
            raise DataError(f"{path}: no samples" + (" with a non-blank line" if blank else ""))
        added = again = 0
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM items").fetchone()[0]
            self._db.execute("BEGIN")
            fresh = set()
            for task_id, prompt, completion, answers, extra in rows:
                key = item_id(honeypots, task_id, completion)
                cur = self._db.execute("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       (key, seq + added, task_id, prompt, completion, int(honeypots),
                                        json.dumps(answers) if answers is not None else None, json.dumps(extra)))
                if cur.rowcount:
                    added += 1
                    fresh.add(key)
            before = {r[0] for r in self._db.execute("SELECT item FROM samples WHERE id LIKE 'before:%'")}
            for sample, key, copies in samples:
                if key in before:  # counted by a codeloop that kept no samples: which lines it counted is unknown
                    continue
                if self._db.execute("INSERT OR IGNORE INTO samples VALUES (?, ?, ?)", (sample, key, copies)).rowcount and key not in fresh:
                    again += copies
            self._db.execute("COMMIT")
        return Added(added, blank, again)

    # --- reading ---------------------------------------------------------------------------------

    def items(self) -> list[Item]:
        return self._select("ORDER BY seq")

    def item(self, item_id: str) -> Item | None:
        found = self._select("WHERE id = ?", (item_id,))
        return found[0] if found else None

    def _select(self, clause: str, args: tuple = ()) -> list[Item]:
        """Items, a program's extra ``copies`` its samples' count."""
        with self._lock:
            rows = self._db.execute("SELECT id, task_id, prompt, completion, honeypot, answers, extra, "
                                    f"(SELECT SUM(copies) FROM samples WHERE item = items.id) FROM items {clause}", args).fetchall()
        return [Item(r[0], r[1], r[2], r[3], bool(r[4]), json.loads(r[5]) if r[5] else None,
                     {**json.loads(r[6]), **({"copies": r[7]} if r[7] is not None else {})}) for r in rows]

    def labels(self) -> dict[str, dict[str, list[int]]]:
        """item id -> annotator -> labels."""
        out: dict[str, dict[str, list[int]]] = {}
        with self._lock:
            for annotator, item, labels in self._db.execute("SELECT annotator, item, labels FROM labels ORDER BY at"):
                out.setdefault(item, {})[annotator] = json.loads(labels)
        return out

    def verdicts(self) -> dict[str, dict[str, int]]:
        """item id -> annotator -> verdict on the whole program (only those given)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for annotator, item, verdict in self._db.execute("SELECT annotator, item, verdict FROM labels WHERE verdict IS NOT NULL"):
                out.setdefault(item, {})[annotator] = verdict
        return out

    def queue(self, annotator: str) -> list[Item]:
        """This annotator's order over every item (see the module docstring)."""
        items = self.items()
        rng = random.Random(hashlib.sha256(check_name(annotator).encode()).hexdigest())
        programs = [it for it in items if not it.honeypot]
        pots = [it for it in items if it.honeypot]
        rng.shuffle(programs)
        rng.shuffle(pots)
        order: list[Item] = []
        every = (len(programs) + len(pots)) / max(1, len(pots))
        for j, pot in enumerate(pots):
            while len(order) < round(j * every) and programs:
                order.append(programs.pop(0))
            order.append(pot)
        return order + programs

    def next_item(self, annotator: str) -> tuple[Item | None, int, int]:
        """(the first item this annotator has not labelled, or None; how many they have; how many in all)."""
        queue = self.queue(annotator)
        with self._lock:
            done = {r[0] for r in self._db.execute("SELECT item FROM labels WHERE annotator = ?", (annotator,))}
        todo = [it for it in queue if it.id not in done]
        return (todo[0] if todo else None), len(queue) - len(todo), len(queue)

    # --- writing ---------------------------------------------------------------------------------

    def label(self, annotator: str, item_id: str, labels: Iterable[Any], verdict: Any = None) -> None:
        """Store (or replace) one annotator's labels for one item, with their verdict on the whole program
        (1, -1, or None: not given); a ValueError says what is wrong."""
        self.label_many([(annotator, item_id, labels, verdict)])

    def label_many(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """``label`` for many (annotator, item id, labels[, verdict]) at once, in one transaction: all are
        checked before any is written."""
        rows = list(rows)
        wanted = sorted({row[1] for row in rows if isinstance(row[1], str)})
        items = {it.id: it for it in self._select("WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))}
        checked = []
        for annotator, key, labels, *verdict in rows:
            check_name(annotator)
            item = items.get(key) if isinstance(key, str) else None
            if item is None:
                raise ValueError(f"unknown item {key!r}")
            checked.append((annotator, item.id, json.dumps(check_labels(list(labels), len(item.lines))), time.time(),
                            check_verdict(verdict[0] if verdict else None)))
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO labels (annotator, item, labels, at, verdict) VALUES (?, ?, ?, ?, ?)", checked)
            self._db.execute("COMMIT")

    # --- people ----------------------------------------------------------------------------------

    def invite(self, name: str) -> str:
        """A new key for ``name``, returned this once (only its hash is kept); an earlier key of theirs stops working."""
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO annotators VALUES (?, ?, ?)", (check_name(name), _key_hash(key), time.time()))
        return key

    def revoke(self, name: str) -> bool:
        """End ``name``'s key (their labels stay); False if they had none."""
        with self._lock:
            return self._db.execute("DELETE FROM annotators WHERE name = ?", (name,)).rowcount > 0

    def login(self, key: str) -> str | None:
        """The name whose key this is, or None."""
        if not isinstance(key, str) or not key:
            return None
        with self._lock:
            row = self._db.execute("SELECT name FROM annotators WHERE key_hash = ?", (_key_hash(key),)).fetchone()
        return row[0] if row else None

    def invited(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM annotators ORDER BY name")]

    # --- scores ----------------------------------------------------------------------------------

    def honeypots(self) -> list[Labelled]:
        """Each honeypot's answers with the labels it received (those without labels are left out)."""
        labels = self.labels()
        return [(it.answers or [], labels[it.id]) for it in self.items() if it.honeypot and it.id in labels]


def scores(store: Store, method: str = "em", tau: float = 0.5, step: float = 0.1, nu: float = 0.7,
           gamma: float = 0.01, score_lines: str = "all",
           languages: Mapping[str, str] | None = None, crowd: str = "lines",
           prior: str = "half") -> tuple[list[dict[str, Any]], dict]:
    """Every labelled program's aggregate (``codeloop.feedback.human.Aggregator``): a row with the sample's
    own fields, its lines, each annotator's labels, P(correct) and the verdict per line, and the score
    s = correct lines / lines, the reward of the (task, program, s) dataset; and the reliabilities used.
    ``score_lines`` "statements" counts only the lines that compute (``counted_lines``, listed in the row's
    ``counted``), which needs ``languages``: task_id -> the task's language. Where annotators gave verdicts
    on the whole program, the row has them (``verdict_votes``) and their aggregate by eq. 7 with the same
    reliabilities (``program_probability``), with ``prior`` "half" (1/2) or "em" (the share of correct
    programs estimated from the verdicts, ``verdict_prior``; in the returned state); ``crowd``
    (``crowd_score``) says whether the score is the line share, that probability, or their mean."""
    if score_lines not in SCORE_LINES:
        raise ValueError(f"score_lines: expected one of {', '.join(SCORE_LINES)}, got {score_lines!r}")
    if crowd not in CROWD_SCORES:
        raise ValueError(f"crowd_score: expected one of {', '.join(CROWD_SCORES)}, got {crowd!r}")
    aggregator = Aggregator(method, store.honeypots(), tau=tau, step=step, nu=nu, gamma=gamma)
    labels = store.labels()
    programs = [it for it in store.items() if not it.honeypot and it.id in labels]
    counted: list[list[bool] | None] = [None] * len(programs)
    if score_lines != "all":
        if languages is None:
            raise ValueError(f"score_lines {score_lines!r} needs the tasks, to know each program's language")
        missing = sorted({it.task_id for it in programs} - set(languages))
        if missing:
            raise ValueError(f"programs of tasks the task set lacks: {', '.join(missing[:5])}")
        counted = [counted_lines(it.lines, languages[it.task_id], score_lines) for it in programs]
    votes = store.verdicts()
    if crowd != "lines":
        lacking = [it for it in programs if it.id not in votes]
        if lacking:
            raise ValueError(f"crowd_score {crowd!r} needs verdicts on whole programs: {len(lacking)} of {len(programs)} "
                             f"labelled programs have none (task {lacking[0].task_id}); score them by lines, or collect verdicts")
    verdicts = aggregator([labels[it.id] for it in programs])
    rel = aggregator.state.get("reliability", {})
    judged, p0 = program_probabilities([votes[it.id] for it in programs if it.id in votes], rel, prior)
    in_order = iter(judged)
    program_p = [next(in_order) if it.id in votes else None for it in programs]
    rows = [{"task_id": it.task_id, "completion": it.completion, **it.extra, "lines": it.lines, "labels": labels[it.id],
             "probabilities": [round(p, 6) for p in v.probabilities], "verdicts": [CORRECT if c else WRONG for c in v.correct],
             **({"verdict_votes": votes[it.id], "program_probability": q} if q is not None else {}),
             "score": crowd_score(line_share(v.correct, c), q, crowd), "annotators": len(labels[it.id]),
             **({"counted": c} if c is not None else {})}
            for it, v, c, q in zip(programs, verdicts, counted, program_p)]
    return rows, {**aggregator.state, "verdict_prior": p0}
