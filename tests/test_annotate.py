"""The annotation app (codeloop.annotate): storage, the page's JSON API over real HTTP, and scores."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import serving
from typer.testing import CliRunner

from codeloop.annotate.server import Limits, RateLimiter
from codeloop.annotate.store import Added, Store, item_id, scores
from codeloop.cli import app
from codeloop.data import DataError
from codeloop.types import Task

TASKS = {f"t{i}": Task(f"t{i}", f"def f{i}(xs):\n    \"\"\"Task {i}.\"\"\"\n", f"f{i}", "def check(c): pass") for i in range(6)}
DATA = Path(__file__).parent / "data"
PROGRAM = "    total = 0\n\n    for x in xs:\n        total += x\n    return total\n"  # 4 non-blank lines


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def store(tmp_path):
    programs = write(tmp_path / "programs.jsonl", [{"task_id": f"t{i}", "completion": PROGRAM + f"    # {i}\n", "model": "m"}
                                                   for i in range(4)])
    pots = write(tmp_path / "pots.jsonl", [{"task_id": f"t{i}", "completion": PROGRAM, "answers": [1, -1, 1, 1]} for i in (4, 5)])
    s = Store(tmp_path / "labels.sqlite")
    assert s.add(pots, TASKS, honeypots=True).new == 2 and s.add(programs, TASKS).new == 4
    yield s
    s.close()


def test_adding_the_same_files_again_adds_nothing_and_bad_lines_are_named(store, tmp_path):
    assert store.add(write(tmp_path / "again.jsonl", [{"task_id": "t0", "completion": PROGRAM + "    # 0\n"}]), TASKS).new == 0
    cases = [({"task_id": "t9", "completion": "    return 1\n"}, "bad.jsonl:1: field 'task_id': unknown task 't9'"),
             ({"task_id": "t0"}, "bad.jsonl:1: field 'completion': missing"),
             ({"task_id": "t0", "completion": "\n  \n"}, "bad.jsonl: no samples with a non-blank line")]
    for row, message in cases:
        with pytest.raises(DataError, match=message):
            store.add(write(tmp_path / "bad.jsonl", [row]), TASKS)
    # a program the model left blank has nothing to label: left out and counted; a blank honeypot is a mistake
    mixed = write(tmp_path / "mixed.jsonl", [{"task_id": "t1", "completion": "\n"}, {"task_id": "t1", "completion": "    return 1\n"}])
    assert store.add(mixed, TASKS) == Added(1, 1)
    with pytest.raises(DataError, match="mixed.jsonl:1: field 'completion': no non-blank line"):
        store.add(write(tmp_path / "mixed.jsonl", [{"task_id": "t1", "completion": "\n", "answers": []}]), TASKS, honeypots=True)
    with pytest.raises(DataError, match="bad.jsonl:2: field 'answers': 2 labels for 4 non-blank lines"):
        store.add(write(tmp_path / "bad.jsonl", [{"task_id": "t0", "completion": PROGRAM, "answers": [1, 1, 1, 1]},
                                                 {"task_id": "t1", "completion": PROGRAM, "answers": [1, 1]}]), TASKS, honeypots=True)
    assert len(store.items()) == 7  # a refused file adds nothing, not even its good lines
    # a program sampled more than once is one item to label, counted; a sample's own count adds up
    twice = write(tmp_path / "twice.jsonl", [{"task_id": "t2", "completion": "    return 2\n"},
                                              {"task_id": "t2", "completion": "    return 2\n", "copies": 2},
                                              {"task_id": "t3", "completion": "    return 2\n"}])
    assert store.add(twice, TASKS) == Added(2, 0)
    assert [it.extra["copies"] for it in store.items()[-2:]] == [3, 1]
    with pytest.raises(DataError, match="bad.jsonl:1: field 'copies': a count of samples"):
        store.add(write(tmp_path / "bad.jsonl", [{"task_id": "t2", "completion": "    return 5\n", "copies": 0}]), TASKS)


def test_copies_count_samples_across_files_and_the_same_file_again_counts_nothing(store, tmp_path):
    def copies():
        return {it.completion: it.extra["copies"] for it in store.items() if it.completion.startswith("    return")}

    one, two = "    return 1\n", "    return 2\n"
    first = [{"task_id": "t2", "completion": one, "seed": 0}, {"task_id": "t2", "completion": one, "seed": 0},
             {"task_id": "t2", "completion": two, "seed": 0, "copies": 3}]
    assert store.add(write(tmp_path / "a.jsonl", first), TASKS) == Added(2, 0, 0) and copies() == {one: 2, two: 3}
    assert store.add(write(tmp_path / "a-again.jsonl", first), TASKS) == Added(0, 0, 0) and copies() == {one: 2, two: 3}
    grown = first + [{"task_id": "t2", "completion": one, "seed": 0}]  # the same file with one sample more
    assert store.add(write(tmp_path / "a.jsonl", grown), TASKS) == Added(0, 0, 1) and copies() == {one: 3, two: 3}
    batch = [{"task_id": "t2", "completion": one, "seed": 1}, {"task_id": "t2", "completion": "    return 3\n", "seed": 1}]
    assert store.add(write(tmp_path / "b.jsonl", batch), TASKS) == Added(1, 0, 1)  # another seed: other samples
    assert copies() == {one: 4, two: 3, "    return 3\n": 1}
    labelled = next(it for it in store.items() if it.completion == two)  # the count reaches the scores
    for it in store.items():
        store.label("ann", it.id, it.answers or [1] * len(it.lines))
    assert next(r for r in scores(store)[0] if r["completion"] == two)["copies"] == 3 and labelled.extra["copies"] == 3


def test_a_store_made_before_samples_were_kept_keeps_its_counts(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "old.sqlite")  # the schema and rows an earlier codeloop wrote
    db.executescript("""CREATE TABLE items (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, task_id TEXT NOT NULL, prompt TEXT NOT NULL,
        completion TEXT NOT NULL, honeypot INTEGER NOT NULL, answers TEXT, extra TEXT NOT NULL);
        CREATE TABLE labels (annotator TEXT NOT NULL, item TEXT NOT NULL REFERENCES items(id), labels TEXT NOT NULL,
        at REAL NOT NULL, PRIMARY KEY (annotator, item));""")
    db.execute("INSERT INTO items VALUES (?, 0, 't1', 'p', ?, 0, NULL, ?)", (item_id(False, "t1", PROGRAM), PROGRAM, '{"copies": 5}'))
    db.execute("INSERT INTO items VALUES ('x', 1, 't1', 'p', '    return 0\n', 0, NULL, '{}')")
    db.execute("INSERT INTO labels VALUES ('ann', 'x', '[-1]', 0)")  # before verdicts on whole programs
    db.commit()
    db.close()
    for _ in range(2):  # opened twice: counted once
        old = Store(tmp_path / "old.sqlite")
        assert [it.extra["copies"] for it in old.items()] == [5, 1]
        old.close()
    old = Store(tmp_path / "old.sqlite")  # which lines made its 5 is unknown: adding its file again must not count them twice
    assert old.add(write(tmp_path / "more.jsonl", [{"task_id": "t1", "completion": PROGRAM}] * 5), TASKS) == Added(0, 0, 0)
    assert old.add(write(tmp_path / "new.jsonl", [{"task_id": "t1", "completion": PROGRAM + "    # new\n"}] * 2), TASKS) == Added(1, 0, 0)
    assert [it.extra["copies"] for it in old.items()] == [5, 1, 2]
    assert old.labels() == {"x": {"ann": [-1]}} and old.verdicts() == {}
    old.label("bob", "x", [-1], -1)
    assert old.verdicts() == {"x": {"bob": -1}}
    old.close()


def test_each_annotator_starts_on_a_honeypot_and_meets_every_item_once(store):
    for name in ("ann", "bob", "carol"):
        queue = store.queue(name)
        assert queue[0].honeypot and sorted(it.id for it in queue) == sorted(it.id for it in store.items())
        assert [it.honeypot for it in queue].index(True, 1) >= 2  # the second honeypot comes later, not straight after
    assert [it.id for it in store.queue("ann")] == [it.id for it in store.queue("ann")]
    assert len({tuple(it.id for it in store.queue(n)) for n in ("ann", "bob", "carol", "dave")}) > 1
    with pytest.raises(ValueError, match="annotator name"):
        store.queue("<script>")


@pytest.fixture
def served(store):  # names typed in and trusted (--typed-names)
    with serving(store, keys=False) as base:
        yield base, store


@pytest.fixture
def keyed(store):  # the default: each person's key
    with serving(store) as base:
        yield base, store


def call(url, body=None, raw=None, key=None, headers=None, context=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def label_all(base, key=None, annotator=None, context=None):
    """Label every item the server hands out (all lines correct); the ids in the order they came."""
    seen = []
    while True:
        status, body = call(base + "/api/next" + (f"?annotator={annotator}" if annotator else ""), key=key, context=context)
        shown = json.loads(body)
        assert status == 200 and shown["done"] == len(seen) and shown["total"] == 6
        if shown["item"] is None:
            return seen
        assert set(shown) == {"item", "prompt", "lines", "done", "total", "annotator"}  # no answers, nothing marks a honeypot
        assert shown["lines"] == ["    total = 0", "    for x in xs:", "        total += x", "    return total"] + shown["lines"][4:]
        sent = {"item": shown["item"], "labels": [1] * len(shown["lines"]), **({"annotator": annotator} if annotator else {})}
        status, body = call(base + "/api/labels", sent, key=key, context=context)
        assert status == 200 and json.loads(body) == {"ok": True}
        seen.append(shown["item"])


def test_a_person_labels_every_item_through_the_api_with_their_key(keyed):
    base, store = keyed
    status, page = call(base + "/")
    assert status == 200 and b"click every line" in page and b"innerHTML" not in page  # text is set as text, never as HTML
    assert b'data-login="key"' in page
    seen = label_all(base, key=store.invite("ann"))
    assert len(set(seen)) == 6 and len(store.labels()) == 6 and all(set(v) == {"ann"} for v in store.labels().values())


def test_without_a_key_nobody_reads_or_labels_and_nobody_labels_as_someone_else(keyed, tmp_path):
    base, store = keyed
    ann, bob = store.invite("ann"), store.invite("bob")
    item = json.loads(call(base + "/api/next", key=ann)[1])["item"]
    body = {"annotator": "bob", "item": item, "labels": [1, -1, 1, 1]}
    for key, headers in ((None, None), ("not-a-key", None), (ann + "x", None), (None, {"Authorization": f"Basic {ann}"})):
        for url, sent in ((base + "/api/next?annotator=ann", None), (base + "/api/labels", body)):
            status, reply = call(url, sent, key=key, headers=headers)
            assert status == 401 and "personal link" in json.loads(reply)["error"], (key, headers, url)
    assert store.labels() == {}
    assert call(base + "/api/labels", body, key=ann)[0] == 200  # the body names bob: stored under the key's name
    assert store.labels() == {item: {"ann": [1, -1, 1, 1]}}
    assert json.loads(call(base + "/api/next", key=bob)[1])["done"] == 0
    # a new key ends the old one; revoking ends the new one; labels stay
    again = store.invite("ann")
    assert call(base + "/api/next", key=ann)[0] == 401 and call(base + "/api/next", key=again)[0] == 200
    assert store.revoke("ann") and not store.revoke("ann") and call(base + "/api/next", key=again)[0] == 401
    assert store.invited() == ["bob"] and store.labels() == {item: {"ann": [1, -1, 1, 1]}}
    raw = store.path.read_bytes()  # only hashes are kept: the file alone lets nobody in
    assert all(k.encode() not in raw for k in (ann, bob, again))
    with pytest.raises(ValueError, match="annotator name"):
        store.invite("a b")


def test_a_person_labels_every_item_by_a_typed_name(served):
    base, store = served
    assert b'data-login="typed"' in call(base + "/")[1]
    assert len(set(label_all(base, annotator="ann"))) == 6 and len(store.labels()) == 6


def test_https_serves_the_page_and_a_silent_client_stalls_nobody(store):
    context = ssl.create_default_context(cafile=str(DATA / "tls-test-cert.pem"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(DATA / "tls-test-cert.pem", DATA / "tls-test-key.pem")
    with serving(store, tls=tls) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as silent:  # connects, never starts its handshake
            start = time.monotonic()
            assert len(label_all(base, key=store.invite("ann"), context=context)) == 6
            assert time.monotonic() - start < 8 and silent.fileno() >= 0
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to it gets nothing, and it keeps serving
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert call(base + "/", context=context)[0] == 200


def test_the_rate_limiter_allows_a_burst_then_the_rate_per_address():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait("a") for _ in range(3)] == [0.0] * 3 and limiter.wait("a") == pytest.approx(0.5)
    assert limiter.wait("b") == 0.0  # another address has its own bucket
    now[0] = 0.5
    assert limiter.wait("a") == 0.0 and limiter.wait("a") == pytest.approx(0.5)
    now[0] = 100.0  # a long pause refills to the burst, no more
    assert [limiter.wait("a") for _ in range(4)][-1] > 0
    assert RateLimiter(rate=0, burst=0).wait("a") == 0.0  # off
    with pytest.raises(ValueError, match="rate must be 0"):
        Limits(rate=-1)


def connect(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def closed_by_server(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_address_past_its_rate_gets_429_before_its_key_or_body_is_looked_at(store):
    key = store.invite("ann")
    with serving(store, limits=Limits(rate=0.01, burst=3)) as base:
        item = json.loads(call(base + "/api/next", key=key)[1])["item"]
        assert call(base + "/")[0] == 200 and call(base + "/api/next", key=key)[0] == 200
        status, reply = call(base + "/api/labels", {"item": item, "labels": [1, 1, 1, 1]}, key=key)
        assert status == 429 and "too many requests" in json.loads(reply)["error"]
        assert store.labels() == {}
        request = urllib.request.Request(base + "/")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 429 and 1 <= int(refused.value.headers["Retry-After"]) <= 100
        port = int(base.rsplit(":", 1)[1])
        with connect(port, "127.0.0.2") as other:  # another address is served
            other.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert other.recv(64).startswith(b"HTTP/1.0 200")


def test_idle_connections_past_the_caps_are_closed_and_others_still_served(store):
    with serving(store, limits=Limits(connections=2, total_connections=3)) as base:
        port = int(base.rsplit(":", 1)[1])
        idle = [connect(port), connect(port)]  # accepted and counted one after another, in order
        third = connect(port)
        assert closed_by_server(third)  # a third from the same address: closed unread
        other = connect(port, "127.0.0.2")
        assert closed_by_server(connect(port, "127.0.0.3"))  # everyone's total reached
        other.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert other.recv(64).startswith(b"HTTP/1.0 200")
        for sock in idle + [third, other]:
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # freed as the server sees them close
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                if call(base + "/")[0] == 200:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("connections closed by their clients were not given back")
        with connect(port) as again:
            again.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert again.recv(64).startswith(b"HTTP/1.0 200")


@pytest.mark.parametrize("body, message", [
    ({"annotator": "ann", "item": "nope", "labels": [1]}, "unknown item 'nope'"),
    ({"annotator": "ann", "labels": [1]}, "unknown item None"),
    ({"annotator": "a b", "item": "x", "labels": [1]}, "annotator name"),
    ({"annotator": "ann", "item": "x"}, "expected"),
    (["not", "an", "object"], "expected"),
])
def test_bad_requests_get_a_400_that_says_why(served, body, message):
    base, store = served
    status, reply = call(base + "/api/labels", body)
    assert status == 400 and message in json.loads(reply)["error"]
    assert store.labels() == {}


def test_wrong_label_counts_oversized_and_malformed_bodies_are_refused(served):
    base, store = served
    item = json.loads(call(base + "/api/next?annotator=ann")[1])["item"]
    for labels, message in (([1, 1], "2 labels for 4"), ([1, 1, 0, 1], "a label is 1")):
        status, reply = call(base + "/api/labels", {"annotator": "ann", "item": item, "labels": labels})
        assert status == 400 and message in json.loads(reply)["error"]
    assert call(base + "/api/labels", raw=b"x" * (64 * 1024 + 1))[0] == 400
    assert call(base + "/api/labels", raw=b"{not json")[0] == 400
    assert call(base + "/api/next")[0] == 400 and call(base + "/nothing")[0] == 404
    assert store.labels() == {}


def test_scores_believe_whoever_the_honeypots_show_reliable(store):
    pots = [it for it in store.items() if it.honeypot]
    for it in pots:  # "good" gets the honeypots right, "bad" gets them all wrong
        store.label("good", it.id, it.answers)
        store.label("bad", it.id, [-x for x in it.answers])
    programs = [it for it in store.items() if not it.honeypot]
    for it in programs:
        store.label("good", it.id, [1, -1, 1, 1, 1])
        store.label("bad", it.id, [-1, 1, -1, -1, -1])
    rows, state = scores(store, "em")
    assert len(rows) == 4 and state["reliability"]["good"] > 0.7 > 0.3 > state["reliability"]["bad"]
    assert all(r["verdicts"] == [1, -1, 1, 1, 1] and r["score"] == 0.8 and r["annotators"] == 2 and r["model"] == "m" for r in rows)
    vote = scores(store, "majority")[0]  # a tie everywhere: the vote cannot tell, so no line counts as correct
    assert all(r["score"] == 0.0 for r in vote)


def test_verdicts_on_whole_programs_are_stored_checked_and_scored(served, tmp_path):
    base, store = served
    pots = [it for it in store.items() if it.honeypot]
    programs = [it for it in store.items() if not it.honeypot]
    for it in pots:
        store.label("good", it.id, it.answers)
        store.label("bad", it.id, [-x for x in it.answers])
    for bad in (2, 0, True, "yes", [1]):
        status, reply = call(base + "/api/labels", {"annotator": "good", "item": programs[0].id, "labels": [1] * 5, "verdict": bad})
        assert status == 400 and "verdict: 1 (the program does what the task asks), -1 (it does not) or null" in json.loads(reply)["error"]
    assert store.labels().keys() == {it.id for it in pots}
    for it in programs:  # through the API: good says the program is wrong, bad says right
        for name, verdict in (("good", -1), ("bad", 1)):
            sent = {"annotator": name, "item": it.id, "labels": [1] * 5, "verdict": verdict}
            assert call(base + "/api/labels", sent)[0] == 200
    assert store.verdicts() == {it.id: {"good": -1, "bad": 1} for it in programs}
    lines, _ = scores(store, "em")
    judged, state = scores(store, "em", crowd="verdict")
    both, _ = scores(store, "em", crowd="lines+verdict")
    for a, v, m in zip(lines, judged, both):  # the honeypots showed good right and bad wrong: the program is wrong
        assert a["score"] == a["verdicts"].count(1) / 5 and a["program_probability"] == v["program_probability"]
        assert v["verdict_votes"] == {"good": -1, "bad": 1}
        assert v["score"] == v["program_probability"] < 0.2 and m["score"] == pytest.approx((a["score"] + v["program_probability"]) / 2)
    assert state["reliability"]["good"] > state["reliability"]["bad"]  # the verdicts weigh by what the lines earned
    estimated, est_state = scores(store, "em", crowd="verdict", prior="em")
    assert est_state["verdict_prior"] == 0.01 and state["verdict_prior"] == 0.5  # every program judged wrong: the bound
    assert all(e["score"] < v["score"] for e, v in zip(estimated, judged))  # a prior below 1/2 lowers each P
    with pytest.raises(ValueError, match="verdict_prior: expected one of half, em, got 'x'"):
        scores(store, "em", crowd="verdict", prior="x")
    store.label("good", programs[0].id, [1] * 5)  # labels again without a verdict: that program has only bad's now
    assert store.verdicts()[programs[0].id] == {"bad": 1}
    store.label("bad", programs[0].id, [1] * 5)
    with pytest.raises(ValueError, match="crowd_score 'verdict' needs verdicts on whole programs: 1 of 4 labelled programs have none"):
        scores(store, "em", crowd="verdict")
    assert scores(store, "em")[0][0]["score"] == 1.0  # by lines it still scores
    result = CliRunner().invoke(app, ["annotate", "scores", str(store.path), "--out", str(tmp_path / "s.jsonl"), "--crowd-score", "verdict"])
    assert result.exit_code == 2 and "--crowd-score 'verdict' needs verdicts" in result.output
    result = CliRunner().invoke(app, ["annotate", "scores", str(store.path), "--out", str(tmp_path / "s.jsonl"), "--crowd-score", "votes"])
    assert result.exit_code == 2 and "--crowd-score: expected one of lines, verdict, lines+verdict" in result.output
    result = CliRunner().invoke(app, ["annotate", "scores", str(store.path), "--out", str(tmp_path / "s.jsonl"), "--verdict-prior", "x"])
    assert result.exit_code == 2 and "--verdict-prior: expected one of half, em" in result.output


def test_cli_scores_writes_rows_and_names_bad_input(store, tmp_path):
    runner = CliRunner()
    for it in store.items():
        store.label("ann", it.id, it.answers or [1] * len(it.lines))
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["annotate", "scores", str(store.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 scored programs" in result.output and "ann" in result.output
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == [1.0] * 4
    result = runner.invoke(app, ["annotate", "scores", str(tmp_path / "none.sqlite"), "--out", str(out)])
    assert result.exit_code == 2 and "none.sqlite: no such file" in result.output
    bad = write(tmp_path / "p.jsonl", [{"task_id": "HumanEval/0", "completion": "    return 1\n"}, {"task_id": "x", "completion": "1"}])
    result = runner.invoke(app, ["annotate", "serve", str(tmp_path / "new.sqlite"), "--tasks", "humaneval", "--programs", str(bad)])
    assert result.exit_code == 2 and "p.jsonl:2: field 'task_id': unknown task 'x'" in result.output


def test_statement_scores_count_only_the_lines_that_compute_and_need_the_tasks(tmp_path):
    st = {"s0": Task("s0", "(* Sum xs. *)\n", "solve", "", language="st")}
    program = "FUNCTION solve : INT\nVAR_INPUT\n    a : INT;\nEND_VAR\nsolve := a;\nsolve := solve * 2;\nEND_FUNCTION\n"
    db = tmp_path / "st.sqlite"
    with contextlib.closing(Store(db)) as s:
        s.add(write(tmp_path / "p.jsonl", [{"task_id": "s0", "completion": program}]), st)
        (item,) = s.items()
        s.label("ann", item.id, [1, 1, 1, 1, 1, -1, 1])  # one of the two statements is wrong
        assert scores(s, "majority")[0][0]["score"] == pytest.approx(6 / 7)
        (row,), _ = scores(s, "majority", score_lines="statements", languages={"s0": "st"})
        assert row["score"] == 0.5 and row["counted"] == [False] * 4 + [True, True, False]
        with pytest.raises(ValueError, match="needs the tasks"):
            scores(s, "majority", score_lines="statements")
        with pytest.raises(ValueError, match="tasks the task set lacks: s0"):
            scores(s, "majority", score_lines="statements", languages={})
    runner, out = CliRunner(), tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["annotate", "scores", str(db), "--out", str(out), "--reliabilities", "majority",
                                 "--score-lines", "statements"])
    assert result.exit_code == 2 and "needs --tasks" in result.output
    tasks = write(tmp_path / "tasks.jsonl", [{"task_id": "s0", "prompt": "(* Sum xs. *)\n", "entry_point": "solve", "inputs": [[1]],
                                              "outputs": [2], "language": "st"}])
    result = runner.invoke(app, ["annotate", "scores", str(db), "--out", str(out), "--reliabilities", "majority",
                                 "--score-lines", "statements", "--tasks", str(tasks)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["score"] == 0.5


def test_label_many_checks_every_row_before_writing_any(store):
    pot, program = store.items()[0], store.items()[2]
    with pytest.raises(ValueError, match="4 labels"):
        store.label_many([("ann", pot.id, [1, 1, 1, 1]), ("ann", program.id, [1, 1, 1, 1])])  # the program has 5 lines
    assert store.labels() == {}


def test_a_perfect_simulated_crowd_labels_honeypots_with_their_answers_and_skips_what_has_no_truth(store):
    from codeloop.annotate.simulate import simulate

    class NoSandbox:  # TASKS have no reference solution, so nothing needs running
        pass

    done = simulate(store, TASKS, {"a": 1.0, "b": 1.0}, per_program=1, seed=0, sandbox=NoSandbox())  # type: ignore[arg-type]
    assert (done.labels, done.honeypots, done.programs, done.skipped) == (4, 2, 4, 4)
    labels = store.labels()
    assert all(labels[it.id] == {"sim-a": it.answers, "sim-b": it.answers} for it in store.items() if it.honeypot)
    with pytest.raises(ValueError, match="tasks the task set lacks: t0"):
        simulate(store, {k: v for k, v in TASKS.items() if k != "t0"}, {"a": 1.0}, 1, 0, NoSandbox())  # type: ignore[arg-type]


def test_cli_add_needs_something_to_add(tmp_path):
    result = CliRunner().invoke(app, ["annotate", "add", str(tmp_path / "x.sqlite"), "--tasks", "humaneval"])
    assert result.exit_code == 2 and "nothing to add" in result.output


def test_cli_invites_people_and_serves_only_them(store, tmp_path):
    runner = CliRunner()
    db = str(store.path)
    result = runner.invoke(app, ["annotate", "serve", db])  # nobody invited: refused, with the way out
    assert result.exit_code == 2 and "nobody is invited yet" in result.output and "--typed-names" in result.output
    result = runner.invoke(app, ["annotate", "invite", db, "ann", "bob", "--url", "https://labels.example/"])
    assert result.exit_code == 0, result.output
    links = dict(line.split("\t") for line in result.output.splitlines())
    assert set(links) == {"ann", "bob"} and all(v.startswith("https://labels.example/#key=") for v in links.values())
    assert store.login(links["ann"].split("#key=")[1]) == "ann"
    result = runner.invoke(app, ["annotate", "invite", db, "carol", "no way"])  # the good name before it is kept
    assert result.exit_code == 2 and "'no way': an annotator name" in result.output and store.invited() == ["ann", "bob", "carol"]
    result = runner.invoke(app, ["annotate", "invite", db, "bob", "dave", "--revoke"])
    assert result.exit_code == 0 and "bob: key ended" in result.output and "dave: had no key" in result.output
    result = runner.invoke(app, ["annotate", "invite", str(tmp_path / "none.sqlite"), "ann"])
    assert result.exit_code == 2 and "none.sqlite: no such file" in result.output
    for args, message in ((["--keyfile", str(DATA / "tls-test-key.pem")], "--keyfile needs --certfile"),
                          (["--certfile", str(tmp_path / "missing.pem")], "missing.pem: cannot load the certificate"),
                          (["--rate", "-1"], "--rate must be 0 (no limit) or more, got -1"),
                          (["--burst", "0"], "--burst must be at least 1 when rate is set")):
        result = runner.invoke(app, ["annotate", "serve", db, *args])
        assert result.exit_code == 2 and message in result.output, result.output
    # the real command, in a process of its own, over HTTPS: the invited key gets in, no key does not
    serve = subprocess.Popen([sys.executable, "-c", "from codeloop.cli import app; app()", "annotate", "serve", db, "--port", "0",
                              "--certfile", str(DATA / "tls-test-cert.pem"), "--keyfile", str(DATA / "tls-test-key.pem")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = serve.stdout.readline()
        assert "for 2 invited people" in first, (first, serve.stderr.read() if serve.poll() is not None else "")
        base = first.split("labelling page at ")[1].split("/ ")[0]
        context = ssl.create_default_context(cafile=str(DATA / "tls-test-cert.pem"))
        key = links["ann"].split("#key=")[1]
        assert base.startswith("https://127.0.0.1:") and call(base + "/api/next", key=key, context=context)[0] == 200
        assert call(base + "/api/next", context=context)[0] == 401
    finally:
        serve.terminate()
        serve.wait(timeout=10)


def test_mark_gaps_makes_honeypot_answers_charge_a_left_out_line(tmp_path):
    from codeloop.annotate.simulate import honeypot_rows
    from codeloop.sandbox import Sandbox
    from codeloop.types import Sample

    reference = "    total = 0\n    for x in xs:\n        x = abs(x)\n        total += x\n    return total\n"
    task = Task("a", "def f(xs):\n", "f", "def check(c):\n    assert c([-1, 2]) == 3\n", canonical_solution=reference)
    short = Sample("a", "    total = 0\n    for x in xs:\n        total += x\n    return total\n")  # abs() left out: fails
    with Sandbox(workers=1) as sandbox:
        (plain,), _ = honeypot_rows({"a": task}, [short], sandbox)
        (gaps,), _ = honeypot_rows({"a": task}, [short], sandbox, gaps=True)
    assert plain["answers"] == [1, 1, 1, 1] and gaps["answers"] == [1, 1, -1, 1]
    tasks = write(tmp_path / "tasks.jsonl", [{"task_id": "a", "prompt": task.prompt, "entry_point": "f", "test": task.test,
                                             "canonical_solution": reference}])
    samples = write(tmp_path / "s.jsonl", [{"task_id": "a", "completion": short.completion}])
    result = CliRunner().invoke(app, ["annotate", "honeypots", "--tasks", str(tasks), "--samples", str(samples),
                                      "--out", str(tmp_path / "pots.jsonl"), "--mark-gaps"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "pots.jsonl").read_text())["answers"] == [1, 1, -1, 1]
