"""The code-optimisation loop end to end against a scripted OpenAI-compatible 'model' on localhost.

    .venv/bin/python benchmarks/optimise_scripted.py [--rounds 8]

The script answers hand-written faster bodies (below) for all 32 slow programs: for the even-numbered
programs at once, for the odd-numbered ones only after it has seen feedback (before that it answers
the slow body again: correct, not faster). So y0 should find 16/32 optimised and y1 32/32, and the
speed-ups are what the timing harness measures for these bodies. This checks the measurement (the
correctness gate, interleaved timing, the one-sided test), not a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402

from codeloop.data import slow  # noqa: E402
from codeloop.recipes.optimise import OptimiseConfig, run  # noqa: E402

FAST = {
    "sum_to_n": "    return n * (n + 1) // 2\n",
    "fib": "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "count_primes": ("    if n < 3:\n        return 0\n    sieve = [True] * n\n    sieve[0] = sieve[1] = False\n"
                     "    for i in range(2, int(n ** 0.5) + 1):\n        if sieve[i]:\n"
                     "            sieve[i * i::i] = [False] * len(sieve[i * i::i])\n    return sum(sieve)\n"),
    "has_duplicates": "    return len(set(xs)) < len(xs)\n",
    "join_digits": "    return ''.join(map(str, range(n)))\n",
    "nth_prime": ("    limit = 100\n    while True:\n        sieve = [True] * limit\n        sieve[0] = sieve[1] = False\n"
                  "        for i in range(2, int(limit ** 0.5) + 1):\n            if sieve[i]:\n"
                  "                sieve[i * i::i] = [False] * len(sieve[i * i::i])\n"
                  "        primes = [i for i, p in enumerate(sieve) if p]\n        if len(primes) >= n:\n"
                  "            return primes[n - 1]\n        limit *= 2\n"),
    "two_sum": ("    first = {}\n    best = None\n    for j, x in enumerate(xs):\n        i = first.get(target - x)\n"
                "        if i is not None and (best is None or (i, j) < best):\n            best = (i, j)\n"
                "        first.setdefault(x, j)\n    return list(best) if best else []\n"),
    "max_subarray": ("    best = cur = xs[0]\n    for x in xs[1:]:\n        cur = max(x, cur + x)\n        best = max(best, cur)\n"
                     "    return best\n"),
    "distinct_count": "    return len(set(xs))\n",
    "bubble_sort": "    return sorted(xs)\n",
    "gcd": "    import math\n    return math.gcd(a, b)\n",
    "power_mod": "    return pow(base, exp, mod)\n",
    "is_palindrome": "    return s == s[::-1]\n",
    "range_sums": ("    prefix = [0]\n    for x in xs:\n        prefix.append(prefix[-1] + x)\n"
                   "    return [prefix[j] - prefix[i] if j > i else 0 for i, j in queries]\n"),
    "linear_search_many": "    import bisect\n    return [bisect.bisect_left(xs, q) for q in queries]\n",
    "word_counts": ("    counts = {}\n    for w in text.split():\n        counts[w] = counts.get(w, 0) + 1\n"
                    "    return [[w, c] for w, c in counts.items()]\n"),
    "dedupe": "    return list(dict.fromkeys(xs))\n",
    "divisor_sums": ("    sums = [0] * (n + 1)\n    for d in range(1, n // 2 + 1):\n        for m in range(2 * d, n + 1, d):\n"
                     "            sums[m] += d\n    return sums[1:]\n"),
    "pythagorean": ("    squares = {c * c for c in range(1, n + 1)}\n    count = 0\n    for a in range(1, n + 1):\n"
                    "        for b in range(a + 1, n + 1):\n            if a * a + b * b in squares:\n                count += 1\n"
                    "    return count\n"),
    "reverse_list": "    return xs[::-1]\n",
    "max_pair_product": "    s = sorted(xs)\n    return max(s[0] * s[1], s[-1] * s[-2])\n",
    "intersection": "    ys = set(ys)\n    return [x for x in xs if x in ys]\n",
    "collatz_longest": ("    cache = {1: 1}\n    best, best_len = 1, 1\n    for k in range(2, n + 1):\n        path, x = [], k\n"
                        "        while x not in cache:\n            path.append(x)\n            x = x // 2 if x % 2 == 0 else 3 * x + 1\n"
                        "        length = cache[x]\n        for y in reversed(path):\n            length += 1\n            cache[y] = length\n"
                        "        if cache[k] > best_len:\n            best, best_len = k, cache[k]\n    return best\n"),
    "triangular": "    return n * (n - 1) // 2 + n if n > 0 else 0\n",
    "inversions": ("    def sort(a):\n        if len(a) < 2:\n            return a, 0\n        left, x = sort(a[:len(a) // 2])\n"
                   "        right, y = sort(a[len(a) // 2:])\n        merged, i, j, inv = [], 0, 0, x + y\n"
                   "        while i < len(left) and j < len(right):\n            if right[j] < left[i]:\n"
                   "                merged.append(right[j])\n                inv += len(left) - i\n                j += 1\n"
                   "            else:\n                merged.append(left[i])\n                i += 1\n"
                   "        return merged + left[i:] + right[j:], inv\n    return sort(list(xs))[1]\n"),
    "char_frequency": ("    counts = {}\n    for ch in s:\n        counts[ch] = counts.get(ch, 0) + 1\n    top = max(counts.values())\n"
                       "    return next(ch for ch in s if counts[ch] == top)\n"),
    "squares_upto": "    import math\n    return [r * r for r in range(math.isqrt(n) + 1)]\n",
    "digit_sum_power": "    return sum(sum(map(int, str(1 << k))) for k in range(n))\n",
    "prefix_max": "    out, best = [], None\n    for x in xs:\n        best = x if best is None or x > best else best\n        out.append(best)\n    return out\n",
    "anagram_groups": ("    counts = {}\n    for w in words:\n        key = ''.join(sorted(w))\n        counts[key] = counts.get(key, 0) + 1\n"
                       "    return sum(c * (c - 1) // 2 for c in counts.values())\n"),
    "matrix_trace_power": ("    def mul(a, b):\n        return [[(a[0][0] * b[0][0] + a[0][1] * b[1][0]) % 1000000007, (a[0][0] * b[0][1] + a[0][1] * b[1][1]) % 1000000007],\n"
                           "                [(a[1][0] * b[0][0] + a[1][1] * b[1][0]) % 1000000007, (a[1][0] * b[0][1] + a[1][1] * b[1][1]) % 1000000007]]\n"
                           "    result, base = [[1, 0], [0, 1]], [[1, 1], [1, 0]]\n    while k:\n        if k & 1:\n"
                           "            result = mul(result, base)\n        base = mul(base, base)\n        k >>= 1\n"
                           "    return (result[0][0] + result[1][1]) % 1000000007\n"),
    "count_pairs_sum": ("    seen, count = {}, 0\n    for x in xs:\n        count += seen.get(target - x, 0)\n"
                        "        seen[x] = seen.get(x, 0) + 1\n    return count\n"),
}


def scripted_model(programs: list[slow.SlowProgram]):  # type: ignore[no-untyped-def]
    def reply(body: dict) -> str:
        prompt = body["prompt"]
        i, program = next((i, p) for i, p in enumerate(programs) if prompt.endswith(p.task.prompt))
        name = program.task.task_id.split("/", 1)[1]
        if i % 2 == 1 and "# Feedback:" not in prompt:
            return program.program.split(":\n", 1)[1]  # the slow body again
        return FAST[name]
    return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    programs = slow.load()
    with FakeOpenAI(reply=scripted_model(programs)) as server, tempfile.TemporaryDirectory() as tmp:
        cfg = OptimiseConfig(backend="openai", model="scripted", attempts=2, rounds=args.rounds, out_dir=tmp)
        import os

        os.environ["OPENAI_BASE_URL"] = server.url
        metrics = run(cfg)
        traces = [json.loads(line) for line in (Path(tmp) / "traces.jsonl").read_text().splitlines()]
    slow_again = {p.task.task_id for i, p in enumerate(programs) if i % 2 == 1}
    for t in traces:
        last = t["attempts"][-1]
        if "feedback" in last:
            print(f"not optimised: {t['task_id']}: {last['feedback'][:150]}")
        elif t["task_id"] in slow_again and last["attempt"] == 0:  # the slow body itself passed the test
            print(f"FALSE POSITIVE: {t['task_id']} (its own slow body): speed-up {last['speedup']:.2f}x, p = {last['p_value']:.3f}")
    for m in metrics:
        mean = m["mean_speedup_optimised"]
        print(f"y{m['attempt']}: optimised {m['optimised']}/{m['programs']} ({m['optimised_pct']:.1f}%), speed-up of "
              f"optimised programs: mean {mean:.1f}x, median {m['median_speedup_optimised']:.1f}x"
              if mean else f"y{m['attempt']}: none optimised")


if __name__ == "__main__":
    main()
