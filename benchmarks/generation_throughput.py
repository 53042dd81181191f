"""Generation throughput of the hf backend: its own decoding loop against transformers' ``generate``.

    .venv/bin/python benchmarks/generation_throughput.py [--model seed-python] [--prompts 64] [--n 4]
                                                         [--batch 32] [--rounds 3]

Same model, same prompts (synthetic-python:train), same sampling (T=0.8, max 160 new tokens, the
task stop sequences: the demo's settings) in one run. The peer is ``model.generate`` as the backend
called it before it had its own loop (still its fallback); both produce the same tokens, which is
checked here, so the comparison is tokens per second for identical output (on a GPU in bf16 a
last-bit difference between batch shapes can change a draw: the rows that differ are then counted and
the rates compare the two paths' own texts). Rounds alternate the two (the VM's speed drifts) and the
ratio printed is the median of the per-round ratios. A last line shows what batching itself is worth:
one prompt at a time through the same loop. Every timing follows an untimed pass over the same
prompts: with cuDNN attention (which the backend now keeps out of sampling, see
``benchmarks/cudnn_attention.py``) a cold pass on a GPU measured mostly its per-shape plans (one
prompt at a time on an H100: 51 tokens/s cold, 180-240 warm).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from codeloop.data import synthetic
from codeloop.data.prompts import STOP
from codeloop.models.hf import HFGenerator
from codeloop.types import SamplingParams


def timed(gen: HFGenerator, prompts: list[str], params: SamplingParams, own_loop: bool) -> tuple[float, list]:
    gen.decoder = "auto" if own_loop else "generate"
    assert gen.own_loop == own_loop
    start = time.perf_counter()
    rows = gen.generate(prompts, params)
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="seed-python")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--batch", type=int, default=32, help="rows in flight (prompts x n)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    prompts = [t.prompt for t in synthetic.generate("train", args.prompts).values()]
    params = SamplingParams(n=args.n, temperature=0.8, max_new_tokens=160, stop=STOP, seed=0)
    gen = HFGenerator(args.model, batch_size=args.batch)
    for own_loop in (True, False):  # warm-up: the stop criterion's vocabulary scan, and a GPU's per-shape plans
        timed(gen, prompts, params, own_loop)
    ratios, own_s, peer_s = [], [], []
    for _ in range(args.rounds):
        peer_t, peer_rows = timed(gen, prompts, params, False)
        own_t, own_rows = timed(gen, prompts, params, True)
        peer_tokens, own_tokens = _tokens(peer_rows), _tokens(own_rows)
        ratios.append((own_tokens / own_t) / (peer_tokens / peer_t))
        own_s.append(own_t)
        peer_s.append(peer_t)
    differ = sum(a != b for own, peer in zip(own_rows, peer_rows) for a, b in zip(own, peer))
    if differ and gen.device == "cpu":
        raise SystemExit(f"the two paths disagree on the CPU ({differ} rows): the own loop is broken")
    one = HFGenerator(args.model, batch_size=1)
    some = prompts[: max(1, args.prompts // 4)]
    timed(one, some, replace(params, n=1), True)
    one_t, one_rows = timed(one, some, replace(params, n=1), True)
    same = "identical output on both paths" if not differ else \
        f"{differ} of {len(prompts) * args.n} rows differ between the paths (GPU arithmetic), so each rate is of its own texts"
    print(f"model {args.model}, {len(prompts)} prompts x {args.n} samples, {args.batch} rows in flight, "
          f"device {gen.device}, {own_tokens} tokens, {same}")
    print(f"transformers generate: {peer_tokens / statistics.median(peer_s):8.1f} tokens/s "
          f"(median of {args.rounds} rounds)")
    print(f"codeloop's own loop:   {own_tokens / statistics.median(own_s):8.1f} tokens/s")
    print(f"ratio own loop / generate: {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"one prompt at a time (own loop, n=1): {_tokens(one_rows) / one_t:8.1f} tokens/s")


def _tokens(rows: list) -> int:
    return sum(c.completion_tokens for row in rows for c in row)


if __name__ == "__main__":
    main()
