"""What a launched update (``launch``) saves by writing the reference once per run: the time to write a
reference with ``save_pretrained``, as every launched update did before, against the check that it is
unchanged since it was written (``codeloop.train.launch._reference_folder``: version counters and
checksums, two reads of the weights), on a Llama-style model of ``--layers`` x ``--width`` built in code.

    .venv/bin/python benchmarks/reference_reuse.py [--width 1024] [--layers 16] [--dtype float32] [--repeat 3] [--device cpu]

Both best of ``--repeat``, with the reference on ``--device`` (``cuda``: the check runs where the
weights are, and the write first copies them to the host, as a loop on a GPU does). The write goes to
``$TMPDIR`` (into the page cache: the launched processes read it from there, and the disk's own
write-back comes on top).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cpu", help="where the reference's weights are: cpu, cuda")
    args = parser.parse_args()

    import torch

    from codeloop.models.tiny import causal_lm
    from codeloop.train.launch import _reference_folder

    reference = causal_lm(32000, d_model=args.width, n_layer=args.layers, n_head=args.width // 64).to(getattr(torch, args.dtype))
    reference.to(args.device)
    size = sum(p.numel() for p in reference.parameters())

    def best(step) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            step()
            if reference.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return min(times)

    def write() -> None:
        folder = tempfile.mkdtemp(prefix="codeloop-bench-")
        try:
            reference.save_pretrained(folder)
        finally:
            shutil.rmtree(folder)

    written = best(write)
    first = _reference_folder(reference)  # written here, once
    checked = best(lambda: _reference_folder(reference))
    assert _reference_folder(reference) == first
    gib = size * reference.dtype.itemsize / 2**30
    print(f"reference of {size / 1e6:.0f}M parameters ({gib:.2f} GiB in {args.dtype}) on {reference.device}, best of {args.repeat}:")
    print(f"  written (every launched update before)   {written:6.2f} s")
    print(f"  checked unchanged (every later update)   {checked:6.2f} s  {written / checked:5.1f}x faster")


if __name__ == "__main__":
    main()
