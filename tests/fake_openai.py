"""A scripted OpenAI-compatible server on 127.0.0.1 for tests: each request takes the next behaviour."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class FakeOpenAI:
    """``with FakeOpenAI() as srv: srv.script(["ok", "500", ...]); srv.url``.

    Behaviours: "ok" (answers ``reply(body)``), "slow" (sleeps past the client timeout), "500", "429"
    (with Retry-After: 0), "bad-json", "no-choices", "one-choice" (ignores n), and for chat requests "refusal"
    (no content; the reason in ``refusal``) and "filtered" (no content; finish reason ``content_filter``).
    Unscripted requests are "ok".
    """

    def __init__(self, reply: Callable[[dict[str, Any]], str] | None = None, delay_s: float = 0.0,
                 strict: bool = False, one_choice: bool = False) -> None:
        self.reply = reply or (lambda body: "    return 1\n")
        self.one_choice = one_choice  # as llama.cpp's server does: n > 1 refused
        self.strict = strict  # as GPT-5 does: no max_tokens (max_completion_tokens), no top_p, temperature 1 only
        self.delay_s = delay_s
        self.queue: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if not self.path.endswith(("/v1/completions", "/v1/chat/completions")):
                    self.send_response(404)
                    self.end_headers()
                    self.wfile.write(b'{"error": "no such route"}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    behaviour = server.queue.popleft() if server.queue else "ok"
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    server.respond(self, body, behaviour)
                except BrokenPipeError:  # the client timed out first ("slow")
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def script(self, behaviours: list[str]) -> None:
        self.queue.extend(behaviours)

    def respond(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], behaviour: str) -> None:
        time.sleep(self.delay_s)
        refused = self.strict and self.refusal(body)
        if self.one_choice and body.get("n", 1) != 1:
            refused = {"code": 400, "message": "Only one completion choice is allowed"}
        if refused:
            handler.send_response(400)
            handler.end_headers()
            handler.wfile.write(json.dumps({"error": refused | {"type": "invalid_request_error"}}).encode())
            return
        if behaviour == "slow":
            time.sleep(2.0)
        if behaviour in ("500", "429") or behaviour.startswith("429:"):  # "429:VALUE": Retry-After VALUE
            handler.send_response(int(behaviour[:3]))
            if behaviour.startswith("429"):
                handler.send_header("Retry-After", behaviour[4:] or "0")
            handler.end_headers()
            handler.wfile.write(b'{"error": "try later"}')
            return
        n = 1 if behaviour == "one-choice" else int(body.get("n", 1))
        chat = "messages" in body
        choices = [({"message": {"role": "assistant", "content": self.reply(body)}} if chat else {"text": self.reply(body)})
                   | {"index": i, "finish_reason": "stop"} for i in range(n)]
        if behaviour == "refusal":
            choices = [{"message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                        "index": i, "finish_reason": "stop"} for i in range(n)]
        if behaviour == "filtered":
            choices = [{"message": {"role": "assistant", "content": None}, "index": i, "finish_reason": "content_filter"}
                       for i in range(n)]
        payload: Any = {"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": 4 * n}}
        if self.strict:  # a reasoning model says how many of its completion tokens it spent thinking
            payload["usage"]["completion_tokens_details"] = {"reasoning_tokens": 3 * n}
        if behaviour == "no-choices":
            payload = {"usage": {}}
        data = b"{not json" if behaviour == "bad-json" else json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def refusal(body: dict[str, Any]) -> dict[str, Any] | None:
        """GPT-5's answer to what it does not take, as OpenAI words it; None when it takes ``body``."""
        if "max_tokens" in body:
            return {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                               "'max_completion_tokens' instead.", "param": "max_tokens", "code": "unsupported_parameter"}
        if "top_p" in body:
            return {"message": "Unsupported parameter: 'top_p' is not supported with this model.", "param": "top_p",
                    "code": "unsupported_parameter"}
        if body.get("temperature", 1) != 1:
            return {"message": f"Unsupported value: 'temperature' does not support {body['temperature']} with this "
                               "model. Only the default (1) value is supported.", "param": "temperature",
                    "code": "unsupported_value"}
        return None

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
