"""Where the sandbox's page faults land: per sample process and per zygote, by kind and memory region.

    sudo .venv/bin/python scripts/sample_faults.py [--jobs trivial|humaneval] [--samples 1640]

A diagnostic for the throughput work (docs/sandbox-throughput.md), not a benchmark: each copy-on-write
fault costs about a microsecond in a VM, and a sample takes a few hundred. Runs one sandbox worker on
``--jobs`` (as ``benchmarks/sandbox_overhead.py``) while ``perf record`` traces every user-space page
fault on the machine (the ``exceptions:page_fault_user`` and ``page_fault_kernel`` tracepoints: needs
perf and root), then sorts the faults of the zygote and of the sample processes by kind (COW: a write
to a page shared since the fork; exec: an instruction fetch from a file page the fork did not copy;
read-new, write-new: a first touch) and by the zygote's mapping they fall in.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from sandbox_overhead import _children, workload  # noqa: E402

from codeloop.sandbox import Sandbox  # noqa: E402

_EVENT = re.compile(r"\s*(\S+)\s+(\d+)\s+exceptions:page_fault_(user|kernel): address=(0x[0-9a-f]+) "
                    r"ip=\S+ error_code=(0x[0-9a-f]+)")


def _regions(maps: str) -> tuple[list[int], list[tuple[int, int, str]]]:
    spans = []
    for line in maps.splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        name = parts[5].rsplit("/", 1)[-1] if len(parts) > 5 else "[anon]"
        spans.append((lo, hi, f"{name} {parts[1]}"))
    spans.sort()
    return [s[0] for s in spans], spans


def _region(address: int, starts: list[int], spans: list[tuple[int, int, str]]) -> str:
    i = bisect.bisect_right(starts, address) - 1
    return spans[i][2] if i >= 0 and spans[i][0] <= address < spans[i][1] else "[mapped after start]"


def _kind(code: int, where: str) -> str:
    kind = "exec" if code & 0x10 else "COW" if code & 0x3 == 0x3 else "write-new" if code & 0x2 else "read-new"
    return kind + (" (in a system call)" if where == "kernel" else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", choices=("trivial", "humaneval"), default="trivial")
    parser.add_argument("--samples", type=int, default=1640)
    parser.add_argument("--top", type=int, default=15, help="regions to list for each process kind")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("scripts/sample_faults.py: perf must trace every process on the machine: run it as root")
    jobs, _ = workload(args.jobs, args.samples)
    with tempfile.TemporaryDirectory() as tmp, Sandbox(workers=1, timeout_s=3.0) as sandbox:
        list(sandbox.run(jobs[:100]))  # the zygote's on-demand imports happen before the trace
        worker = sandbox._workers[0].proc.pid
        zygote = _children(worker)[0]
        starts, spans = _regions(Path(f"/proc/{zygote}/maps").read_text())
        data = f"{tmp}/faults.data"
        try:
            perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "exceptions:page_fault_user",
                                     "-e", "exceptions:page_fault_kernel", "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise SystemExit("scripts/sample_faults.py: needs perf (linux-perf / linux-tools)") from None
        time.sleep(1.0)  # perf's start-up
        outcomes = list(sandbox.run(jobs))
        perf.send_signal(2)
        _, err = perf.communicate()
        if perf.returncode not in (0, -2):
            raise SystemExit(f"perf record failed: {err.decode(errors='replace').strip()}")
        script = subprocess.run(["perf", "script", "-i", data, "-F", "pid,comm,event,trace"],
                                capture_output=True, text=True, check=True).stdout
    if not all(o.passed for o in outcomes):
        raise SystemExit("a job that must pass did not: the sandbox is broken, nothing to measure")
    counts: dict[str, collections.Counter[tuple[str, str]]] = {"sample": collections.Counter(), "zygote": collections.Counter()}
    samples: set[int] = set()
    for line in script.splitlines():
        m = _EVENT.match(line)
        if not m or not m.group(1).startswith("python"):
            continue
        pid = int(m.group(2))
        if pid in (os.getpid(), worker):
            continue
        who = "zygote" if pid == zygote else "sample"
        if who == "sample":
            samples.add(pid)
        counts[who][(_kind(int(m.group(5), 16), m.group(3)), _region(int(m.group(4), 16), starts, spans))] += 1
    n = len(jobs)
    print(f"{n} {args.jobs} jobs on one worker; {len(samples)} sample processes seen faulting "
          f"(a sample forked again after a wrong guess counts twice)")
    for who, counter in counts.items():
        kinds: collections.Counter[str] = collections.Counter()
        for (kind, _region_name), c in counter.items():
            kinds[kind] += c
        print(f"\n{who}: {sum(counter.values()) / n:.1f} faults per job: "
              + ", ".join(f"{kind} {c / n:.1f}" for kind, c in kinds.most_common()))
        for (kind, name), c in counter.most_common(args.top):
            print(f"  {c / n:7.1f}  {kind:24s} {name}")


if __name__ == "__main__":
    main()
