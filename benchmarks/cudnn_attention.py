"""GPU sampling with cuDNN attention allowed versus kept out (the hf backend's rule), first pass.

    python benchmarks/cudnn_attention.py [--prompts 100] [--limit-s 120] [--model seed-python]

torch's cuDNN attention builds a plan for each new shape on first sight, and sampling meets new shapes
all the time (prompt lengths; rows dropped as they finish). The hf backend therefore samples on CUDA
with every attention backend but cuDNN's (``codeloop.models.hf.attention_without_cudnn``). This times
the first pass over fresh prompts (the demo's sampling settings: n=4, T=0.8, 32 rows in flight) both
ways, each in a fresh process (the plans are cached per process), cuDNN's way first, each under
``--limit-s``: a pass still running then is reported as unfinished. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time


def child(mode: str, n_prompts: int, model: str) -> None:
    from codeloop.data import synthetic
    from codeloop.data.prompts import STOP
    from codeloop.models import hf
    from codeloop.types import SamplingParams

    if mode == "cudnn-allowed":
        hf.attention_without_cudnn = lambda device: contextlib.nullcontext()  # type: ignore[assignment]
    prompts = [t.prompt for t in synthetic.generate("train", n_prompts).values()]
    params = SamplingParams(n=4, temperature=0.8, max_new_tokens=160, stop=STOP, seed=0)
    gen = hf.HFGenerator(model, batch_size=32)
    gen.generate(["def f(x):\n"], SamplingParams(n=1, max_new_tokens=2, stop=STOP))  # CUDA set-up, stop scan
    start = time.perf_counter()
    rows = gen.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for row in rows for c in row)
    print(f"{seconds:.2f} {tokens}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--limit-s", type=float, default=120.0, help="per setting, model loading included")
    parser.add_argument("--model", default="seed-python")
    parser.add_argument("--child", choices=("cudnn-allowed", "backend-rule"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompts, args.model)
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("cudnn_attention.py measures GPU sampling: no CUDA device here")
    print(f"model {args.model}, {args.prompts} fresh prompts x 4, 32 rows in flight, {torch.cuda.get_device_name()}")
    seconds = {}
    for mode in ("cudnn-allowed", "backend-rule"):
        cmd = [sys.executable, __file__, "--child", mode, "--prompts", str(args.prompts), "--model", args.model]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit_s, check=True).stdout
        except subprocess.TimeoutExpired:
            print(f"{mode:14s} unfinished after {args.limit_s:.0f} s")
            continue
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{mode} run failed (exit {exc.returncode}):\n{exc.stderr[-2000:]}") from None
        secs, tokens = out.split()[-2:]
        seconds[mode] = float(secs)
        print(f"{mode:14s} {float(secs):7.2f} s  {int(tokens) / float(secs):8.1f} tokens/s")
    if len(seconds) == 2:
        print(f"first pass, cuDNN allowed / kept out: {seconds['cudnn-allowed'] / seconds['backend-rule']:.2f}x the time")


if __name__ == "__main__":
    main()
