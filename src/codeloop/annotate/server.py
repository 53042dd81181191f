"""The annotation page and its JSON API, on the standard library's threaded HTTP server.

    GET  /                  the page (``page.html``)
    GET  /api/next          the next item for the caller: {"item", "prompt", "lines", "done", "total", "annotator"},
                            item null when done
    POST /api/labels        {"item", "labels": [1 or -1 per line], "verdict": 1, -1 or null (the whole program does
                            what the task asks, or not; optional)} -> {"ok": true}, or 400 with an error

Who calls: by default each person's key (``Store.invite``; ``codeloop annotate invite`` prints their
link, which carries the key in its #fragment, so it never reaches a server log), sent as
``Authorization: Bearer KEY``; a missing or unknown key gets 401, and labels are stored under the
key's name whatever the body says. With ``keys=False`` the name is typed in and trusted
(``?annotator=NAME`` and the body's ``"annotator"``): for one machine or a network you trust.

A honeypot's answers never leave the server, and nothing in a response tells a honeypot from a
program. With ``tls`` (an ``ssl.SSLContext``) it serves HTTPS; without it keys cross the network in
clear text, so serve beyond localhost only with TLS, here or in a proxy in front. It binds to
127.0.0.1 unless told otherwise; request bodies over 64 KiB are refused, and a connection idle for
``TIMEOUT`` seconds (or slow to finish its TLS handshake) is closed.

Flooding (``Limits``): each client address may hold a few connections open at once (more are closed
unread, as are all past a total cap, so idle sockets cannot use up the server's threads) and make
requests at a sustained rate with some burst (past it: 429 with ``Retry-After``, before the key is
looked at or anything is read or stored). Behind a proxy every request comes from the proxy's address:
limit there and turn these off (0). What it does not do: stop an invited person from labelling
carelessly (that is what the honeypots measure).
"""

from __future__ import annotations

import json
import math
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from codeloop.annotate.store import Store

MAX_BODY = 64 * 1024
TIMEOUT = 60.0
NEEDS_KEY = "this page needs your personal link: open the one you were given (a key that was replaced or revoked no longer works)"


@dataclass(frozen=True)
class Limits:
    """How much one client address may ask of the server (0 turns a limit off)."""

    rate: float = 10.0
    """Requests per second, sustained, per address."""
    burst: int = 60
    """Requests an address may make at once before ``rate`` applies (a page load is two)."""
    connections: int = 16
    """Connections one address may hold open at once."""
    total_connections: int = 256
    """Connections open at once from everyone (each holds a thread for up to ``TIMEOUT`` seconds)."""

    def __post_init__(self) -> None:
        for name in ("rate", "burst", "connections", "total_connections"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more, got {getattr(self, name)}")
        if self.rate and self.burst < 1:
            raise ValueError(f"burst must be at least 1 when rate is set, got {self.burst}")


class RateLimiter:
    """A token bucket per address: ``burst`` tokens, refilled at ``rate`` per second, one per request."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)

    def wait(self, address: str) -> float:
        """0 and one token spent when the address may make a request now; else the seconds until it may."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if len(self._buckets) > 10_000:  # forget addresses whose buckets have refilled: they start full anyway
                full = self.burst / self.rate
                self._buckets = {a: b for a, b in self._buckets.items() if now - b[1] < full}
            if tokens < 1:
                self._buckets[address] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[address] = (tokens - 1, now)
            return 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, limits: Limits) -> None:
        self.limits = limits
        self.limiter = RateLimiter(limits.rate, limits.burst)
        self._open: Counter[str] = Counter()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Close a connection unread when its address, or everyone, already holds as many as allowed."""
        host, limits = client_address[0], self.limits
        with self._open_lock:
            full = ((limits.connections and self._open[host] >= limits.connections)
                    or (limits.total_connections and self._open.total() >= limits.total_connections))
            if not full:
                self._open[host] += 1
        if full:
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed(host)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed(client_address[0])

    def _closed(self, host: str) -> None:
        with self._open_lock:
            self._open[host] -= 1
            if self._open[host] <= 0:
                del self._open[host]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return  # a client that hung up, or spoke no TLS: its business, not a server fault
        super().handle_error(request, client_address)


class _NoKey(Exception):
    """The request carries no key, or one nobody holds."""


def make_server(store: Store, host: str = "127.0.0.1", port: int = 8765, keys: bool = True,
                tls: ssl.SSLContext | None = None, limits: Limits = Limits()) -> ThreadingHTTPServer:
    page = resources.files("codeloop.annotate").joinpath("page.html").read_bytes()
    if keys:
        page = page.replace(b'data-login="typed"', b'data-login="key"')

    class Handler(BaseHTTPRequestHandler):
        server_version = "codeloop-annotate"
        timeout = TIMEOUT

        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(TIMEOUT)
                self.request.do_handshake()  # here, in this connection's thread, not in the accepting one
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise here
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode())

        def _who(self, typed: Any) -> str:
            """The caller's name: their key's, or (keys off) the name they typed."""
            if not keys:
                return typed  # type: ignore[no-any-return]  # checked by the store
            scheme, _, key = self.headers.get("Authorization", "").partition(" ")
            name = store.login(key.strip()) if scheme.lower() == "bearer" else None
            if name is None:
                raise _NoKey(NEEDS_KEY)
            return name

        def _throttled(self) -> bool:
            """Answer 429 (and True) when the caller's address is past its request rate."""
            wait = self.server.limiter.wait(self.client_address[0])  # type: ignore[attr-defined]
            if wait:
                self._send(HTTPStatus.TOO_MANY_REQUESTS, json.dumps({"error": f"too many requests from your address: "
                                                                                f"try again in {math.ceil(wait)} s"}).encode(),
                           headers={"Retry-After": str(math.ceil(wait))})
            return bool(wait)

        def _refuse(self) -> None:
            self._send(HTTPStatus.UNAUTHORIZED, json.dumps({"error": NEEDS_KEY}).encode(),
                       headers={"WWW-Authenticate": 'Bearer realm="codeloop-annotate"'})

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if self._throttled():
                return
            url = urlparse(self.path)
            if url.path == "/":
                return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            if url.path == "/api/next":
                try:
                    name = self._who(parse_qs(url.query).get("annotator", [""])[0])
                    item, done, total = store.next_item(name)
                except _NoKey:
                    return self._refuse()
                except ValueError as exc:
                    return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                shown = {"item": item.id, "prompt": item.prompt, "lines": item.lines} if item else {"item": None}
                return self._json(HTTPStatus.OK, {**shown, "done": done, "total": total, "annotator": name})
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self._throttled():
                self.close_connection = True  # its body is left unread
                return
            if urlparse(self.path).path != "/api/labels":
                return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            try:
                name = self._who(None)  # keys: known before the body is read; typed: from the body, below
            except _NoKey:
                return self._refuse()
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"a body of 1 to {MAX_BODY} bytes is expected"})
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict) or not isinstance(body.get("labels"), list):
                    raise ValueError("expected {\"item\", \"labels\": [...]}" + ("" if keys else " and \"annotator\""))
                store.label(name if keys else body.get("annotator"), body.get("item"), body["labels"],  # type: ignore[arg-type]
                            body.get("verdict"))
            except (ValueError, TypeError) as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            self._json(HTTPStatus.OK, {"ok": True})

    server = _Server((host, port), Handler, limits)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server
