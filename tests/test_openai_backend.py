"""The OpenAI-compatible backend against a local scripted server (no network)."""

from __future__ import annotations

import re

import pytest
from fake_openai import FakeOpenAI

from codeloop.models.base import GeneratorError
from codeloop.models.openai import OpenAIGenerator
from codeloop.types import SamplingParams


@pytest.fixture()
def server():
    with FakeOpenAI() as srv:
        yield srv


def gen(server, **kw):
    return OpenAIGenerator("m", base_url=server.url, api_key="k", backoff_s=0.01, timeout_s=kw.pop("timeout_s", 5), **kw)


def test_completions_mode_returns_n_texts_per_prompt(server):
    out = gen(server).generate(["a", "b"], SamplingParams(n=3))
    assert [[c.text for c in row] for row in out] == [["    return 1\n"] * 3] * 2


def test_chat_mode_sends_messages_with_the_system_prompt(server):
    gen(server, mode="chat", system_prompt="be brief").generate(["hi"], SamplingParams())
    assert server.requests[0]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_server_errors_are_retried(server):
    server.script(["500", "429", "ok"])
    assert gen(server).generate(["a"], SamplingParams())[0][0].text == "    return 1\n"
    assert len(server.requests) == 3


@pytest.mark.parametrize("header", ["1.2.3", "\u00b2", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_that_is_not_a_number_of_seconds_falls_back_to_the_backoff(server, header):
    server.script([f"429:{header}", "ok"])
    assert gen(server).generate(["a"], SamplingParams())[0][0].text == "    return 1\n" and len(server.requests) == 2


def test_malformed_json_is_retried_then_succeeds(server):
    server.script(["bad-json", "ok"])
    assert len(gen(server).generate(["a"], SamplingParams())[0]) == 1


def test_persistent_malformed_answers_raise_a_clear_error(server):
    server.script(["no-choices"] * 3)
    with pytest.raises(GeneratorError, match=r"/v1/completions: gave up after 3 attempts.*lacks 'choices'"):
        gen(server, max_retries=2).generate(["a"], SamplingParams())


@pytest.mark.parametrize("behaviour,reason", [("refusal", "refusal"), ("filtered", "content_filter")])
def test_a_chat_model_that_declines_gives_an_empty_answer_once_not_an_error(server, behaviour, reason):
    # OpenAI answers a refusal, or a filtered answer, with no content; the same seed would get it again
    server.script([behaviour, "ok"])
    out = gen(server, mode="chat").generate(["a", "b"], SamplingParams(n=2))
    declined = next(row for row in out if row[0].text == "")
    assert [(c.text, c.finish_reason) for c in declined] == [("", reason)] * 2
    assert len(server.requests) == 2 and sum(row[0].text == "    return 1\n" for row in out) == 1


def test_a_chat_model_like_gpt5_is_asked_as_it_takes_it_from_its_first_refusals_on(tmp_path):
    """GPT-5 refuses max_tokens (max_completion_tokens instead), top_p, and any temperature but 1."""
    with FakeOpenAI(strict=True) as strict:
        g = gen(strict, mode="chat", cache_dir=tmp_path, max_retries=0)
        out = g.generate(["a"], SamplingParams(temperature=1.0, max_new_tokens=77))
        g.generate(["b", "c"], SamplingParams(temperature=1.0, max_new_tokens=77))
        again = gen(strict, mode="chat", cache_dir=tmp_path).generate(["a"], SamplingParams(temperature=1.0,
                                                                                            max_new_tokens=77))
    assert out[0][0].text == "    return 1\n" and again[0][0].cached  # the cache's key is the request as asked
    sent = [(r.get("max_tokens"), r.get("max_completion_tokens"), "top_p" in r, r["temperature"]) for r in strict.requests]
    # one refusal each (no attempt of max_retries spent), then the request as the model takes it
    assert sent == [(77, None, True, 1.0), (None, 77, True, 1.0), (None, 77, False, 1.0), (None, 77, False, 1.0),
                    (None, 77, False, 1.0)]
    assert (g.tokens_field, g.omitted) == ("max_completion_tokens", {"top_p"})
    from codeloop.models import usage_line

    # 3 answered requests of 10 prompt and 4 completion tokens, 3 of them reasoning; the refused ones cost nothing
    assert usage_line(g) == "m: 3 requests (30 prompt + 12 completion tokens, 9 of them reasoning), 0 answered from the cache"


def test_a_refused_setting_that_changes_the_sampling_is_an_error_that_says_what_to_do():
    with FakeOpenAI(strict=True) as strict, pytest.raises(GeneratorError, match=r"HTTP 400.*'temperature' does not "
                                                                                 r"support 0.8.*ask with temperature 1"):
        gen(strict, mode="chat").generate(["a"], SamplingParams(temperature=0.8))
    with FakeOpenAI(strict=True) as strict, pytest.raises(GeneratorError, match="HTTP 400"):
        gen(strict, mode="chat").generate(["a"], SamplingParams(temperature=1.0, top_p=0.95))  # top_p 0.95 not dropped
    with FakeOpenAI(strict=True) as strict, pytest.raises(GeneratorError, match="HTTP 400"):
        gen(strict).generate(["a"], SamplingParams())  # /completions: the legacy route has no other name
    assert [("max_tokens" in r) for r in strict.requests] == [True]


@pytest.mark.parametrize("mode", ["completions", "chat"])
def test_a_server_that_takes_one_answer_per_request_is_asked_once_per_answer_with_the_next_seed(mode):
    with FakeOpenAI(one_choice=True) as single:
        g = gen(single, mode=mode, max_retries=0)
        out = g.generate(["a"], SamplingParams(n=3, seed=5))
        g.generate(["b"], SamplingParams(n=2, seed=5))
    assert len(out[0]) == 3 and g.omitted == {"n"}
    # one refusal, then one request per answer (no n: the server's 1), each with its own seed
    assert [(r.get("n"), r["seed"]) for r in single.requests] == [(3, 5), (None, 5), (None, 6), (None, 7), (None, 5),
                                                                   (None, 6)]


def test_a_slow_server_times_out_and_is_retried(server):
    server.script(["slow", "ok"])
    assert len(gen(server, timeout_s=0.5).generate(["a"], SamplingParams())[0]) == 1


def test_a_server_that_ignores_n_is_asked_again(server):
    server.script(["one-choice", "one-choice"])
    out = gen(server).generate(["a"], SamplingParams(n=3))
    assert len(out[0]) == 3 and [r["n"] for r in server.requests] == [3, 2, 1]


def test_client_errors_are_not_retried(server):
    with pytest.raises(GeneratorError, match="HTTP 404"):
        OpenAIGenerator("m", base_url=server.url.replace("/v1", "/nowhere"), backoff_s=0.01).generate(["a"], SamplingParams())
    assert server.requests == []  # the one request was refused before the body was read


def test_stop_sequences_are_applied_client_side(server):
    server.reply = lambda body: "    return 1\ndef other():\n"
    out = gen(server).generate(["a"], SamplingParams(stop=("\ndef ",)))
    assert (out[0][0].text, out[0][0].finish_reason) == ("    return 1", "stop")


def test_cache_answers_repeated_requests_without_the_server(server, tmp_path):
    first = gen(server, cache_dir=tmp_path).generate(["a"], SamplingParams(n=2))
    again = gen(server, cache_dir=tmp_path).generate(["a"], SamplingParams(n=2))
    assert len(server.requests) == 1 and [c.text for c in again[0]] == [c.text for c in first[0]]
    assert all(c.cached and c.cost_usd == 0 for c in again[0])


def test_concurrency_is_limited():
    with FakeOpenAI(delay_s=0.1) as slow:
        gen(slow, concurrency=2).generate([str(i) for i in range(8)], SamplingParams())
    assert slow.max_active == 2


def test_usage_and_cost_are_recorded(server):
    g = gen(server, prompt_usd_per_1k=1.0, completion_usd_per_1k=2.0)
    out = g.generate(["a"], SamplingParams(n=2))  # the server reports 10 prompt and 8 completion tokens
    assert sum(c.cost_usd for c in out[0]) == pytest.approx(10 * 0.001 + 8 * 0.002)
    assert (g.usage["prompt_tokens"], g.usage["completion_tokens"]) == (10, 8)


def test_concurrency_and_prices_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CODELOOP_OPENAI_CONCURRENCY", "3")
    monkeypatch.setenv("CODELOOP_OPENAI_PRICES", " 1.0,2.0 ")
    with FakeOpenAI(delay_s=0.1) as slow:
        g = gen(slow)
        out = g.generate([str(i) for i in range(9)], SamplingParams(n=2))
    assert slow.max_active == 3
    assert g.usage["cost_usd"] == pytest.approx(9 * (10 * 0.001 + 8 * 0.002))
    assert sum(c.cost_usd for c in out[0]) == pytest.approx(10 * 0.001 + 8 * 0.002)
    monkeypatch.setenv("CODELOOP_OPENAI_PRICES", "not prices")  # not read: the arguments give both
    assert gen(slow, prompt_usd_per_1k=1.0, completion_usd_per_1k=3.0).prices == (0.001, 0.003)
    monkeypatch.setenv("CODELOOP_OPENAI_PRICES", "")
    assert gen(slow, concurrency=5).concurrency == 5 and gen(slow).prices == (0.0, 0.0)  # arguments win; unset: free


@pytest.mark.parametrize("name,value", [
    ("CODELOOP_OPENAI_CONCURRENCY", "0"), ("CODELOOP_OPENAI_CONCURRENCY", "eight"), ("CODELOOP_OPENAI_CONCURRENCY", "2.5"),
    ("CODELOOP_OPENAI_PRICES", "0.01"), ("CODELOOP_OPENAI_PRICES", "0.01,x"), ("CODELOOP_OPENAI_PRICES", "-1,1"),
    ("CODELOOP_OPENAI_PRICES", "nan,1"), ("CODELOOP_OPENAI_PRICES", "1,2,3"),
])
def test_a_bad_concurrency_or_price_in_the_environment_is_refused_by_name(name, value, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(GeneratorError, match=f"{name}='{re.escape(value)}': expected"):
        OpenAIGenerator("m", base_url="http://127.0.0.1:9")


def test_extra_request_fields_from_the_environment_are_sent_and_keyed_by_the_cache(tmp_path, monkeypatch):
    with FakeOpenAI() as server:
        monkeypatch.setenv("CODELOOP_OPENAI_EXTRA", '{"reasoning_effort": "low", "top_k": 50}')
        gen(server, mode="chat", cache_dir=tmp_path).generate(["a"], SamplingParams())
        gen(server, mode="chat", cache_dir=tmp_path).generate(["a"], SamplingParams())  # the same request: cached
        monkeypatch.setenv("CODELOOP_OPENAI_EXTRA", '{"reasoning_effort": "high"}')
        gen(server, mode="chat", cache_dir=tmp_path).generate(["a"], SamplingParams())  # another request
    assert [(r.get("reasoning_effort"), r.get("top_k")) for r in server.requests] == [("low", 50), ("high", None)]
    assert server.requests[0]["messages"][-1]["content"] == "a" and server.requests[0]["n"] == 1


@pytest.mark.parametrize("value,says", [
    ("{reasoning_effort: low}", "not JSON"), ("[1]", "expected a JSON object"),
    ('{"temperature": 0, "n": 2}', "n, temperature are set by codeloop"),
    ('{"max_completion_tokens": 9}', "max_completion_tokens is set by codeloop"),
])
def test_extra_fields_that_are_not_an_object_or_hold_what_codeloop_sets_are_refused(value, says, monkeypatch):
    monkeypatch.setenv("CODELOOP_OPENAI_EXTRA", value)
    with pytest.raises(GeneratorError, match=f"^CODELOOP_OPENAI_EXTRA=.*: {says}"):
        OpenAIGenerator("m", base_url="http://127.0.0.1:9")


def test_base_url_and_key_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    g = OpenAIGenerator("m")
    assert (g.base_url, g.api_key) == (server.url, "from-env")


@pytest.mark.parametrize("answer,code", [
    ("Here it is:\n```python\ndef f(x):\n    return x\n```\nIt returns x.", "def f(x):\n    return x\n"),
    ("```\nA\n```\n\n```python\nB\n```", "A\n"),  # the first block
    ("```python\ndef f(x):\n    return x", "def f(x):\n    return x\n"),  # cut by the token limit: to the end
    ("\n    return x\n", "    return x\n"),  # no fence: the answer itself
])
def test_the_code_of_a_chat_answer_is_its_first_fenced_block(answer, code):
    from codeloop.models.chat import code_of

    assert code_of(answer) == code


DEMO_ANSWER = '''import sys
from functools import lru_cache
sys.setrecursionlimit(int(1e4))
LIMIT = 10
TABLE = [0] * LIMIT
for i in range(LIMIT):
    TABLE[i] = i * i
UNUSED = 3
calls = 0
try:
    from math import comb
except ImportError:
    comb = None

@lru_cache(None)
def f(x):
    global calls
    calls += 1
    return TABLE[x] + comb(4, 2)

# Example usage:
print(f(3))
assert f(2) == 5, "a demo with a wrong expected value"
result = f(1)
for case in [1, 2]:
    print(f(case))
if __name__ == "__main__":
    import unittest
    unittest.main()
n = int(input())
'''


def test_a_chat_answers_demo_code_is_dropped_and_what_its_function_uses_is_kept():
    from codeloop.models.chat import without_script

    kept = without_script(DEMO_ANSWER, "f")
    assert kept == DEMO_ANSWER[:DEMO_ANSWER.index("UNUSED")] + DEMO_ANSWER[DEMO_ANSWER.index("calls = 0"):DEMO_ANSWER.index("\n\n# Example") + 1]
    ns: dict = {}
    exec(kept, ns)  # noqa: S102 - our own text: no demo left to print, assert or read stdin
    assert ns["f"](3) == 15 and ns["calls"] == 1  # a global the function only declares and adds to is kept


@pytest.mark.parametrize("code", [
    "    return sorted(x)\n",  # only the body, indented: it continues the stub
    "def g(x):\n    return x\nprint(g(1))\n",  # the stub's function is not defined: not ours to cut
    "def f(x:\n    return x\nprint(f(1))\n",  # not Python: the sandbox reports the syntax error
    "def f(x):\n    return x\n",  # nothing to drop
])
def test_an_answer_that_does_not_define_the_stubs_function_whole_is_left_as_it_is(code):
    from codeloop.models.chat import without_script

    assert without_script(code, "f") == code


def test_only_a_python_functions_stub_is_completed_without_demo_code(server):
    from codeloop.models import load_code_writer

    server.reply = lambda body: "```python\ndef f(x):\n    return x\nprint(f(input()))\n```"
    writer = load_code_writer("openai-chat", "m", base_url=server.url, api_key="k")
    stub, program = writer.generate(['def f(x):\n    """x"""\n', "# Read a line; print it.\n"], SamplingParams())
    assert stub[0].text == "\ndef f(x):\n    return x\n"
    assert program[0].text == "\ndef f(x):\n    return x\nprint(f(input()))\n"  # an I/O program's prints are its answer


def test_the_chat_backend_asks_the_chat_route(server):
    from codeloop.models import load_generator

    load_generator("openai-chat", "m", base_url=server.url, api_key="k").generate(["hi"], SamplingParams())
    assert server.requests[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_a_chat_model_writes_code_that_replaces_the_prompts_stub_and_passes(server):
    """The answer is a whole function in a fence, with words around it; prompt + continuation runs the
    answer's definition, which passes the task's tests in the sandbox (and the stub alone fails them)."""
    from codeloop.data import load_tasks
    from codeloop.eval import evaluate
    from codeloop.models import load_code_writer, usage_line
    from codeloop.sandbox import Sandbox
    from codeloop.types import Sample

    tasks = load_tasks("humaneval")
    task = tasks["HumanEval/0"]
    server.reply = lambda body: f"Sure:\n```python\n{task.prompt}{task.canonical_solution}```\nDone."
    writer = load_code_writer("openai-chat", "m", base_url=server.url, api_key="k")
    completion = writer.generate([task.prompt], SamplingParams(stop=("\ndef ",)))[0][0].text
    asked = server.requests[0]
    assert "stop" not in asked and asked["messages"][0]["content"].endswith(task.prompt)
    with Sandbox(workers=1) as sandbox:
        verdicts = evaluate(tasks, [Sample(task.task_id, completion), Sample(task.task_id, "")], sandbox)
    assert [o.passed for o in verdicts] == [True, False]
    assert usage_line(writer) == "m: 1 request (10 prompt + 4 completion tokens), 0 answered from the cache"


def test_a_correct_chat_answer_passes_though_its_demo_asserts_wrongly_and_reads_stdin(server):
    from codeloop.data import load_tasks
    from codeloop.eval import evaluate
    from codeloop.models import load_code_writer
    from codeloop.models.chat import code_of
    from codeloop.sandbox import Sandbox
    from codeloop.types import Sample

    tasks = load_tasks("humaneval")
    task = tasks["HumanEval/0"]
    answer = (f"```python\n{task.prompt}{task.canonical_solution}\n"
              "assert has_close_elements([1.0, 2.0], 0.5) is True  # the model's wrong idea of its own example\n"
              "print(has_close_elements([1.0, 1.1], 0.5))\nthreshold = float(input())\n```")
    server.reply = lambda body: answer
    completion = load_code_writer("openai-chat", "m", base_url=server.url, api_key="k").generate(
        [task.prompt], SamplingParams())[0][0].text
    with Sandbox(workers=1) as sandbox:
        verdicts = evaluate(tasks, [Sample(task.task_id, completion), Sample(task.task_id, "\n" + code_of(answer))], sandbox)
    assert [o.passed for o in verdicts] == [True, False]  # the answer as it came fails at its demo
    assert "assert" not in completion and "input" not in completion


def test_usage_is_one_line_and_a_cache_set_in_the_environment_answers_reruns(server, tmp_path, monkeypatch):
    from codeloop.models import load_code_writer, load_generator, usage_line

    monkeypatch.setenv("CODELOOP_OPENAI_CACHE", str(tmp_path))
    first = load_generator("openai", "m", base_url=server.url, api_key="k")
    first.generate(["a", "b"], SamplingParams(n=2))
    assert usage_line(first) == "m: 2 requests (20 prompt + 16 completion tokens), 0 answered from the cache"
    again = load_code_writer("openai", "m", base_url=server.url, api_key="k")
    again.generate(["a"], SamplingParams(n=2))
    assert len(server.requests) == 2
    assert usage_line(again) == "m: 0 requests (0 prompt + 0 completion tokens), 1 answered from the cache"
    assert usage_line(load_generator("openai", "m", base_url=server.url)) == ""  # nothing asked yet
