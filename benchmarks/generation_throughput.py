"""Generation throughput of the hf backend: batched prompts versus one prompt at a time.

    .venv/bin/python benchmarks/generation_throughput.py [--model seed-python] [--prompts 32] [--batch 32]

Same model, same prompts (synthetic-python:test), same sampling (T=0.8, max 96 new tokens, the task
stop sequences) in one run; prints generated tokens/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import time

from codeloop.data import synthetic
from codeloop.data.prompts import STOP
from codeloop.models.hf import HFGenerator
from codeloop.types import SamplingParams


def tokens_per_second(gen: HFGenerator, prompts: list[str], params: SamplingParams) -> tuple[float, int]:
    start = time.perf_counter()
    rows = gen.generate(prompts, params)
    tokens = sum(c.completion_tokens for row in rows for c in row)
    return tokens / (time.perf_counter() - start), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="seed-python")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    prompts = [t.prompt for t in synthetic.generate("test", args.prompts).values()]
    params = SamplingParams(n=1, temperature=0.8, max_new_tokens=96, stop=STOP, seed=0)
    one = HFGenerator(args.model, batch_size=1)
    batched = HFGenerator(args.model, batch_size=args.batch)
    tokens_per_second(batched, prompts[:2], params)  # warm-up
    single_tps, single_tokens = tokens_per_second(one, prompts, params)
    batch_tps, batch_tokens = tokens_per_second(batched, prompts, params)
    print(f"model {args.model}, {len(prompts)} prompts, device {batched.device}")
    print(f"one prompt at a time: {single_tps:8.1f} tokens/s ({single_tokens} tokens)")
    print(f"batched ({args.batch}):        {batch_tps:8.1f} tokens/s ({batch_tokens} tokens)")
    print(f"ratio batched / one at a time: {batch_tps / single_tps:.2f}x")


if __name__ == "__main__":
    main()
