"""The annotation page and its JSON API, on the standard library's threaded HTTP server.

    GET  /                      the page (``page.html``)
    GET  /api/next?annotator=N  the next item for N: {"item", "prompt", "lines", "done", "total"}, item null when done
    POST /api/labels            {"annotator", "item", "labels": [1 or -1 per line]} -> {"ok": true}, or 400 with an error

A honeypot's answers never leave the server, and nothing in a response tells a honeypot from a program.
What it does not do: authenticate people (the name typed in is trusted; run it on a trusted network or
behind your own login), or use TLS. It binds to 127.0.0.1 unless told otherwise; request bodies over
64 KiB are refused.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from codeloop.annotate.store import Store

MAX_BODY = 64 * 1024


def make_server(store: Store, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    page = resources.files("codeloop.annotate").joinpath("page.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "codeloop-annotate"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise here
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode())

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            url = urlparse(self.path)
            if url.path == "/":
                return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            if url.path == "/api/next":
                name = parse_qs(url.query).get("annotator", [""])[0]
                try:
                    item, done, total = store.next_item(name)
                except ValueError as exc:
                    return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                shown = {"item": item.id, "prompt": item.prompt, "lines": item.lines} if item else {"item": None}
                return self._json(HTTPStatus.OK, {**shown, "done": done, "total": total})
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/api/labels":
                return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"a body of 1 to {MAX_BODY} bytes is expected"})
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict) or not isinstance(body.get("labels"), list):
                    raise ValueError("expected {\"annotator\", \"item\", \"labels\": [...]}")
                store.label(body.get("annotator"), body.get("item"), body["labels"])  # type: ignore[arg-type]
            except (ValueError, TypeError) as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            self._json(HTTPStatus.OK, {"ok": True})

    return ThreadingHTTPServer((host, port), Handler)
