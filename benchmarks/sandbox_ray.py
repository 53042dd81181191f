"""The sandbox over Ray versus the local sandbox: same samples, same run.

    .venv/bin/python benchmarks/sandbox_ray.py [--address local] [--workers 2] [--repeat 10] [--rounds 3]

Samples: HumanEval's canonical solutions x --repeat (1,640 by default). The local peer is
``Sandbox(workers=W)`` on this machine, W = --workers (default: this machine's cores); the other is
``RaySandbox(address, workers=...)``: with ``--address local`` a Ray instance started here with W CPUs
(so the ratio is what going through Ray costs on one machine), with a cluster's address every CPU it
has free (--ray-workers to cap it), so the ratio is what the cluster buys over this machine. Actor and
worker start-up are inside each timing; starting or joining Ray is not (a cluster is up before a run).
The two alternate for --rounds rounds; prints each and the median ratio. ``--peer unpinned`` measures
instead the actors' CPU leases: the same RaySandbox with ``pin=False`` as the peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import RaySandbox, Sandbox
from codeloop.types import Sample


PEERS = {"local": "local sandbox", "unpinned": "Ray unpinned"}


def timed(sandbox, tasks, samples) -> tuple[float, float, str, int]:  # type: ignore[no-untyped-def]
    """samples/s, pass@1, isolation level, workers."""
    start = time.perf_counter()
    with sandbox:
        level, workers = sandbox.level, getattr(sandbox, "workers", getattr(sandbox, "n_workers", 0))
        outcomes = evaluate(tasks, samples, sandbox)
    return len(samples) / (time.perf_counter() - start), sum(o.passed for o in outcomes) / len(outcomes), level, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="local", help="'local' (start Ray here) or a Ray cluster's address")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local sandbox workers (and local Ray's CPUs)")
    parser.add_argument("--ray-workers", type=int, default=0, help="sandbox actors on the cluster (0: every free CPU)")
    parser.add_argument("--chunk", type=int, default=16, help="jobs per Ray call")
    parser.add_argument("--repeat", type=int, default=10, help="copies of each canonical solution")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--peer", choices=("local", "unpinned"), default="local",
                        help="what Ray (RaySandbox's default: each actor pinned to a CPU it leases on its node, where Ray "
                             "counts the node's CPUs) is measured against: the local sandbox, or the same RaySandbox "
                             "with pin=False (actors placed by the OS)")
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    samples = [Sample(t.task_id, t.canonical_solution or "") for _ in range(args.repeat) for t in tasks.values()]
    if args.address == "local":
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    print(f"samples: {len(samples)} (HumanEval canonical x {args.repeat}), Ray at {args.address} with "
          f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs, rounds: {args.rounds}")
    ratios = []
    for r in range(1, args.rounds + 1):
        ours, ours_pass, level, n = timed(RaySandbox(workers=args.ray_workers or None, chunk=args.chunk), tasks, samples)
        peer = (Sandbox(workers=args.workers) if args.peer == "local"
                else RaySandbox(workers=args.ray_workers or None, chunk=args.chunk, pin=False))
        theirs, theirs_pass, peer_level, peer_n = timed(peer, tasks, samples)
        ratios.append(ours / theirs)
        print(f"round {r}: Ray ({n} workers, isolation {level}) {ours:7.1f} samples/s pass@1 {ours_pass:.3f} | "
              f"{PEERS[args.peer]} ({peer_n} workers, isolation {peer_level}) {theirs:7.1f} samples/s "
              f"pass@1 {theirs_pass:.3f} | ratio {ours / theirs:.2f}x")
    print(f"median ratio Ray / {PEERS[args.peer]}: {statistics.median(ratios):.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
