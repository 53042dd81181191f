"""Where the kernel's share of a sandboxed sample goes, against the bare fork's: a profile, side by side.

    sudo .venv/bin/python scripts/fork_profile.py [--samples 16400] [--seconds 8]

A diagnostic for the throughput work (README, "Why 2 workers stay below 8x"; docs/sandbox-throughput.md),
not a benchmark. Runs, one after the other, codeloop's sandbox (2 workers) and the bare fork of
``benchmarks/sandbox_overhead.py`` (its fresh interpreter) on HumanEval's canonical samples, and attaches
``perf record -g`` for ``--seconds`` to one zygote, its samples included, and to the bare fork's process,
its children included; then to the zygote alone. Prints, for each, the share of CPU in the kernel and in
libpython, and the kernel functions that differ most, in microseconds per sample: a function's share of
the profile times the CPU per sample that ``sandbox_overhead.py --jobs humaneval`` measures for those
processes (given as --ours-ms and --bare-ms; the defaults are one such run). Needs perf and root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from sandbox_overhead import BARE_FORK, _children, workload  # noqa: E402

from codeloop.sandbox import Sandbox  # noqa: E402
from codeloop.sandbox.zygote import modules_named  # noqa: E402


def record(pid: int, seconds: float, out: Path, inherit: bool = True) -> None:
    subprocess.run(["perf", "record", "-q", "-g", *([] if inherit else ["-i"]), "-p", str(pid), "-o", str(out), "--",
                    "sleep", str(seconds)], check=True, capture_output=True)


def shares(data: Path, sort: str) -> dict[str, float]:
    """Each DSO's or symbol's share of the profile, 0..1."""
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none"],
                            check=True, capture_output=True, text=True).stdout
    found = {}
    for line in report.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%") and not line.startswith("#"):
            found[" ".join(parts[1:])] = float(parts[0].rstrip("%")) / 100
    return found


def summary(name: str, data: Path, ms: float) -> dict[str, float]:
    dsos = shares(data, "dso")
    kernel = sum(v for k, v in dsos.items() if "kernel" in k)
    python = sum(v for k, v in dsos.items() if "libpython" in k)
    print(f"{name}: {ms:.2f} ms per sample; kernel {kernel:.0%} ({kernel * ms:.2f} ms), libpython {python:.0%} "
          f"({python * ms:.2f} ms)")
    return {k.removeprefix("[k] "): v * ms * 1000 for k, v in shares(data, "sym").items() if k.startswith("[k] ")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16400)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ours-ms", type=float, default=2.2, help="CPU per sample of a zygote and its samples")
    parser.add_argument("--zygote-ms", type=float, default=0.44, help="CPU per sample of a zygote alone")
    parser.add_argument("--bare-ms", type=float, default=1.55, help="CPU per sample of the bare fork, parent + child")
    args = parser.parse_args()
    jobs, sources = workload("humaneval", args.samples)
    tmp = Path(tempfile.mkdtemp())
    with Sandbox(workers=2, timeout_s=3.0) as sandbox:
        print(sandbox.containment)  # starts the workers
        zygote = _children(sandbox._workers[0].proc.pid)[0]
        run = iter(sandbox.run(jobs))

        drain = threading.Thread(target=lambda: [None for _ in run], daemon=True)
        drain.start()
        time.sleep(2)
        record(zygote, args.seconds, tmp / "ours.data")
        record(zygote, args.seconds, tmp / "zygote.data", inherit=False)
        drain.join()
    distinct = sorted(set(sources))
    index = {source: i for i, source in enumerate(distinct)}
    modules = sorted({n for source in distinct for n in modules_named(compile(source, "<sample>", "exec"))})
    given = json.dumps({"sources": distinct, "order": [index[s] for s in sources] * 2, "modules": modules})
    bare = subprocess.Popen([sys.executable, "-I", "-c", BARE_FORK], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    assert bare.stdin is not None
    bare.stdin.write(given)
    bare.stdin.close()
    time.sleep(2)
    record(bare.pid, args.seconds, tmp / "bare.data")
    bare.wait()
    ours = summary("codeloop, a zygote and its samples", tmp / "ours.data", args.ours_ms)
    summary("codeloop, the zygote alone", tmp / "zygote.data", args.zygote_ms)
    floor = summary("bare fork, parent and children", tmp / "bare.data", args.bare_ms)
    print("kernel functions, microseconds per sample: codeloop - bare = difference")
    rows = sorted(((ours.get(k, 0) - floor.get(k, 0), k) for k in set(ours) | set(floor)), reverse=True)
    for difference, name in rows[:20]:
        print(f"  {ours.get(name, 0):7.1f} - {floor.get(name, 0):6.1f} = {difference:+7.1f}  {name}")


if __name__ == "__main__":
    main()
