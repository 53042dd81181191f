"""Any OpenAI-compatible HTTP endpoint (OpenAI, a vLLM server, llama.cpp's server), chat or completions.

Standard library only. Base URL and key come from the arguments or from ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``; where the arguments leave them out, the cache's directory comes from
``CODELOOP_OPENAI_CACHE``, the number of requests in flight from ``CODELOOP_OPENAI_CONCURRENCY`` (default
8) and the prices from ``CODELOOP_OPENAI_PRICES`` ("PROMPT,COMPLETION", US dollars per 1,000 tokens;
default none, so no cost is counted), which is how the command line and the loops' configs set them;
``CODELOOP_OPENAI_EXTRA`` adds fields to every request (:func:`env_extra`). Requests
time out, are retried with exponential backoff on 429, 5xx, network errors and malformed answers, run
at most ``concurrency`` at a time, and, given a cache directory, are cached on disk by their exact body
(the seed included), so a rerun costs nothing. Token usage and cost are recorded on every Completion.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from codeloop.models.base import GeneratorError, truncate_at_stop
from codeloop.types import Completion, SamplingParams

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_ONE_CHOICE = re.compile(r"only one (completion )?choice|\bn\b['\"]? *(:|must|should)|['\"]n['\"] .*(at most|must be) 1",
                         re.IGNORECASE)
"""How servers that take one answer per request refuse ``n`` > 1 without naming it as ``param``."""


class _Retryable(Exception):
    pass


CONCURRENCY = 8
"""Requests in flight at once unless ``concurrency`` or ``CODELOOP_OPENAI_CONCURRENCY`` says otherwise."""


def env_concurrency() -> int:
    """``CODELOOP_OPENAI_CONCURRENCY`` (a whole number, 1 or more), or :data:`CONCURRENCY` when unset."""
    text = os.environ.get("CODELOOP_OPENAI_CONCURRENCY", "").strip()
    if not text:
        return CONCURRENCY
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise GeneratorError(f"CODELOOP_OPENAI_CONCURRENCY={text!r}: expected a whole number of requests, 1 or more")
    return value


SET_HERE = frozenset("model n temperature top_p max_tokens max_completion_tokens seed stop messages prompt".split())
"""The request fields codeloop sets itself; extra fields (``CODELOOP_OPENAI_EXTRA``) may not hold them."""


def env_extra() -> dict[str, Any]:
    """``CODELOOP_OPENAI_EXTRA``: a JSON object of fields added to every request, for what a server takes
    beyond the common ones (``{"reasoning_effort": "low"}`` for OpenAI's reasoning models, ``{"top_k": 50}``
    or ``{"min_p": 0.05}`` for vLLM or llama.cpp); {} when unset. They are part of what the cache keys."""
    text = os.environ.get("CODELOOP_OPENAI_EXTRA", "").strip()
    if not text:
        return {}
    try:
        extra = json.loads(text)
    except ValueError as exc:
        raise GeneratorError(f"CODELOOP_OPENAI_EXTRA={text!r}: not JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise GeneratorError(f"CODELOOP_OPENAI_EXTRA={text!r}: expected a JSON object of request fields")
    taken = sorted(SET_HERE & set(extra))
    if taken:
        raise GeneratorError(f"CODELOOP_OPENAI_EXTRA={text!r}: {', '.join(taken)} "
                             f"{'is' if len(taken) == 1 else 'are'} set by codeloop (from its own options), not here")
    return extra


def env_prices() -> tuple[float, float]:
    """``CODELOOP_OPENAI_PRICES`` ("PROMPT,COMPLETION": US dollars per 1,000 prompt and completion tokens, e.g.
    "0.0025,0.01"), or (0, 0) when unset."""
    text = os.environ.get("CODELOOP_OPENAI_PRICES", "").strip()
    if not text:
        return 0.0, 0.0
    parts = text.split(",")
    try:
        prices = tuple(float(part) for part in parts)
    except ValueError:
        prices = ()
    if len(prices) != 2 or not all(0 <= price < float("inf") for price in prices):
        raise GeneratorError(f"CODELOOP_OPENAI_PRICES={text!r}: expected 'PROMPT,COMPLETION', two prices in US dollars "
                             "per 1,000 tokens, e.g. '0.0025,0.01'")
    return prices[0], prices[1]


class OpenAIGenerator:
    """``OpenAIGenerator("gpt-4o-mini", mode="chat")``; ``generate(prompts, SamplingParams(n=4))``."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 mode: str = "completions", system_prompt: str | None = None, timeout_s: float = 60.0,
                 max_retries: int = 4, backoff_s: float = 1.0, concurrency: int | None = None,
                 cache_dir: str | Path | None = None, prompt_usd_per_1k: float | None = None,
                 completion_usd_per_1k: float | None = None) -> None:
        if mode not in ("chat", "completions"):
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        self.name = model
        self.model, self.mode, self.system_prompt = model, mode, system_prompt
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency = max(1, concurrency if concurrency is not None else env_concurrency())
        cache_dir = cache_dir if cache_dir is not None else os.environ.get("CODELOOP_OPENAI_CACHE")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.extra = env_extra()
        prompt_usd, completion_usd = prompt_usd_per_1k, completion_usd_per_1k
        if prompt_usd is None or completion_usd is None:  # the environment only for what the arguments leave out
            from_env = env_prices()
            prompt_usd = from_env[0] if prompt_usd is None else prompt_usd
            completion_usd = from_env[1] if completion_usd is None else completion_usd
        self.prices = (prompt_usd / 1000, completion_usd / 1000)
        self._lock = threading.Lock()
        self.tokens_field = "max_tokens"
        """The name the token limit is sent under: ``max_tokens``, which every server takes, until a chat model
        refuses it (OpenAI's reasoning and newer models take only ``max_completion_tokens``, and say so with
        HTTP 400): from then on ``max_completion_tokens``. Servers that predate that name ignore it and
        generate without a limit, which is why it is not the first one tried."""
        self.omitted: set[str] = set()
        """Fields no longer sent because the server refused them: ``n`` (one answer per request: see
        :meth:`_adapted`), or, on a chat model, ``top_p`` or ``temperature`` while it held the API's default 1
        (GPT-5 takes neither); either way the sampling stays as asked."""
        self.usage = {"requests": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0,
                      "cost_usd": 0.0}

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.mode == 'chat' else 'completions'}"

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._complete(p, params), prompts))

    def _complete(self, prompt: str, params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        while len(out) < params.n:  # some servers ignore `n`: ask again for the rest, with another seed
            got = self._call(self._body(prompt, params, params.n - len(out), params.seed + len(out)), params.stop)
            if not got:
                raise GeneratorError(f"{self.endpoint}: answer held no choices")
            out += got
        return out[: params.n]

    def _body(self, prompt: str, params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {**self.extra, "model": self.model, "n": n, "temperature": params.temperature,
                                "top_p": params.top_p, "max_tokens": params.max_new_tokens, "seed": seed}
        if params.stop:
            body["stop"] = list(params.stop)[:4]  # the API takes at most four; the rest are cut client-side
        if self.mode == "chat":
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            body["messages"] = messages + [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _call(self, body: dict[str, Any], stop: Sequence[str]) -> list[Completion]:
        key = hashlib.sha256(json.dumps({"url": self.endpoint, "body": body}, sort_keys=True).encode()).hexdigest()
        cached = self._cache_get(key)
        if cached is not None:
            completions = self._parse(cached, stop, from_cache=True)
            self._account(completions, cached=True)
            return completions
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, last))
            try:
                data = self._post(body)
                completions = self._parse(data, stop, from_cache=False)
            except _Retryable as exc:
                last = str(exc)
                continue
            self._cache_put(key, data)
            self._account(completions, cached=False, reasoning=_reasoning_tokens(data))
            return completions
        raise GeneratorError(f"{self.endpoint}: gave up after {self.max_retries + 1} attempts; last error: {last}")

    def _delay(self, attempt: int, last_error: str) -> float:
        if last_error.startswith("retry-after="):
            return min(float(last_error.split("=", 1)[1].split()[0]), 60.0)
        return self.backoff_s * 2 ** (attempt - 1) * (1 + 0.1 * random.random())

    def _post(self, body: dict[str, Any]) -> Any:
        """The server's answer to ``body``, sent as this server takes it (:attr:`tokens_field`, :attr:`omitted`)."""
        field, omitted = self.tokens_field, set(self.omitted)
        wire = {(field if key == "max_tokens" else key): value for key, value in body.items() if key not in omitted}
        request = urllib.request.Request(self.endpoint, data=json.dumps(wire).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode("utf-8", "replace")
            if exc.code == 400 and self._adapted(wire, detail):
                return self._post(body)
            if exc.code == 400 and _refused_param(detail) == "temperature":
                detail = f"{detail[:300]} (this model takes only its default temperature: ask with temperature 1)"
            detail = detail[:400]
            if exc.code in RETRY_STATUS:
                after = _seconds(exc.headers.get("Retry-After") if exc.headers else None)
                raise _Retryable(f"retry-after={after} (HTTP {exc.code})" if after is not None
                                 else f"HTTP {exc.code}: {detail}") from None
            raise GeneratorError(f"{self.endpoint}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Retryable(f"malformed JSON: {raw[:120]!r}") from None

    def _adapted(self, wire: dict[str, Any], detail: str) -> bool:
        """Whether the server's refusal of ``wire`` (HTTP 400, ``detail``) is one a changed request meets
        without changing what was asked; if so, it is changed for this request and every later one. A
        server that takes one answer per request (llama.cpp's: "Only one completion choice is allowed") is
        asked without ``n``, and :meth:`_complete` asks again for the rest, each time with the next seed."""
        param = _refused_param(detail)
        with self._lock:
            if wire.get("n", 1) > 1 and (param == "n" or _ONE_CHOICE.search(detail)):
                self.omitted.add("n")
                return True
            if self.mode != "chat":
                return False
            if "max_tokens" in wire and (param == "max_tokens" or "max_completion_tokens" in detail):
                self.tokens_field = "max_completion_tokens"
                return True
            if param in ("top_p", "temperature") and param in wire and wire[param] == 1:
                self.omitted.add(param)
                return True
        return False

    def _parse(self, data: Any, stop: Sequence[str], from_cache: bool) -> list[Completion]:
        try:
            choices = data["choices"]
            texts = [_chat_text(c) if self.mode == "chat" else (c["text"], c.get("finish_reason") or "") for c in choices]
            usage = data.get("usage") or {}
            prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Retryable(f"answer lacks {exc}: {str(data)[:120]}") from None
        if any(not isinstance(t, str) for t, _ in texts):
            raise _Retryable(f"answer holds a non-text choice: {str(data)[:120]}")
        out = []
        for i, (text, reason) in enumerate(texts):
            text, hit = truncate_at_stop(text, stop)
            p_tok = prompt_tokens if i == 0 else 0  # the prompt is paid once per request
            c_tok = completion_tokens // len(texts) + (1 if i < completion_tokens % len(texts) else 0)
            cost = 0.0 if from_cache else p_tok * self.prices[0] + c_tok * self.prices[1]
            out.append(Completion(text, "stop" if hit else reason, p_tok, c_tok, cost, from_cache))
        return out

    def _account(self, completions: list[Completion], cached: bool, reasoning: int = 0) -> None:
        with self._lock:
            self.usage["cached" if cached else "requests"] += 1
            self.usage["reasoning_tokens"] += reasoning  # part of the completion tokens (a reasoning model's)
            for c in completions if not cached else ():  # tokens the server counted (and billed) now
                self.usage["prompt_tokens"] += c.prompt_tokens
                self.usage["completion_tokens"] += c.completion_tokens
                self.usage["cost_usd"] += c.cost_usd

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cache_get(self, key: str) -> Any:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None  # a torn write: ask again

    def _cache_put(self, key: str, data: Any) -> None:
        path = self._cache_path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)


def _chat_text(choice: dict[str, Any]) -> tuple[Any, str]:
    """A chat choice's text and finish reason. A model that declines answers with no content: OpenAI's put
    the reason in ``message.refusal``, and a filtered answer ends with finish reason ``content_filter``.
    Either is an empty answer, finish reason "refusal" or the server's, not an error: asking again with
    the same seed would get the same, and one declined task must not stop a run."""
    message, reason = choice["message"], choice.get("finish_reason") or ""
    if message.get("content") is None:
        return "", "refusal" if message.get("refusal") else reason
    return message["content"], reason


def _reasoning_tokens(data: Any) -> int:
    """The completion tokens a reasoning model spent thinking (``usage.completion_tokens_details``), 0 if
    the answer does not say."""
    try:
        return max(0, int(data["usage"]["completion_tokens_details"]["reasoning_tokens"] or 0))
    except (KeyError, TypeError, ValueError):
        return 0


def _refused_param(detail: str) -> str | None:
    """The request field an OpenAI-style error names (``{"error": {"param": ...}}``), if any."""
    try:
        error = json.loads(detail).get("error")
        param = error.get("param") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        return None
    return param if isinstance(param, str) else None


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header's delay in seconds (its delta-seconds form), or None: absent, an HTTP date, or
    anything else a server may send ("1.2.3", "nan", "\u00b2", which ``str.isdigit`` calls a digit)."""
    if not retry_after or not retry_after.isascii():
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None
