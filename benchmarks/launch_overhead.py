"""What a launched TRL update (``launch``, codeloop.train.launch) costs over the same update in the loop's
own process: one DPO update of the shipped seed policy on the same pairs, in process, launched as one
process (``python``), and over ``--processes`` torchrun processes (gloo on the CPU; NCCL on GPUs).
Prints each one's seconds (the best of ``--repeat``), its ratio to in-process, and how far its weights
are from the in-process update's (one batch holds every pair, so all three draw the same batches). Over
several processes the largest gap can reach 2 x lr: Adam's first step moves each weight by about
lr x the sign of its gradient, and a gradient near zero may round to the other sign.

    .venv/bin/python benchmarks/launch_overhead.py [--pairs 64] [--processes 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    from codeloop.data import load_tasks
    from codeloop.recipes.common import load_model
    from codeloop.train.trl_backend import trl_dpo
    from codeloop.types import PreferencePair

    tasks = [t for t in load_tasks("synthetic-python:train").values() if t.canonical_solution][: args.pairs]
    pairs = [PreferencePair(t.prompt, t.canonical_solution or "", "    return None\n") for t in tasks]
    base, tokenizer = load_model("seed-python")
    batch = len(pairs) - len(pairs) % args.processes
    pairs = pairs[:batch]

    def update(launch: str) -> tuple[float, torch.Tensor]:
        best, weights = float("inf"), None
        for _ in range(args.repeat):
            model = copy.deepcopy(base)
            start = time.perf_counter()
            trained, _ = trl_dpo(model, copy.deepcopy(base), tokenizer, pairs, beta=0.1, lr=1e-4, epochs=1, batch_size=batch,
                                 nll_weight=1.0, launch=launch)
            best = min(best, time.perf_counter() - start)
            weights = torch.cat([p.detach().flatten() for p in trained.parameters()])
        assert weights is not None, "--repeat must be at least 1"
        return best, weights

    own, expected = update("")
    moved = float((expected - torch.cat([p.detach().flatten() for p in base.parameters()])).abs().mean())
    print(f"one DPO update of seed-python on {batch} pairs (one batch), best of {args.repeat}:")
    print(f"  in the loop's process            {own:6.2f} s")
    for name, launch in (("launched, python (1 process)", "python"),
                         (f"launched, torchrun ({args.processes} processes)",
                          f"torchrun --standalone --nproc_per_node {args.processes}")):
        seconds, weights = update(launch)
        gap = (weights - expected).abs()
        print(f"  {name:32s} {seconds:6.2f} s  {seconds / own:5.1f}x in-process, +{seconds - own:.2f} s; weights "
              f"differ by {float(gap.mean()):.1e} on average (the update moved them {moved:.1e}), {float(gap.max()):.1e} at most")


if __name__ == "__main__":
    main()
