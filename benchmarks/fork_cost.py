"""What one fork-per-sample costs, by how the process forks and what it holds.

    .venv/bin/python benchmarks/fork_cost.py [--forks 3000]

Each row is a fresh interpreter, pinned to one CPU, that imports a set of modules and freezes its heap
(as codeloop's zygote does), then forks N children that exit at once; it prints the anonymous memory
it held (RssAnon) and the wall time per fork + exit + reap (best of three), forking with ``os.fork``
(CPython's at-fork handlers run: threading's, random's, ...) and with libc's fork as the zygote does
(``codeloop.sandbox._linux.raw_fork``). The third row is close to what codeloop's zygote holds at
start (a fresh interpreter running only what samples need, ``zygote.exec_zygote``); the fourth adds
every standard-library module it imports when a sample names one (``zygote.ON_DEMAND``); the last
holds what a plain fork of the worker held, which the zygote was until a fresh interpreter replaced it
(the README's throughput paragraph has the numbers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import ctypes, gc, importlib, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
for name in sys.argv[2:]:
    importlib.import_module(name)
libc_fork = ctypes.PyDLL(None, use_errno=True).fork  # the GIL held across the call, as the zygote's
gc.collect()
gc.freeze()
anon = int(open("/proc/self/status").read().split("RssAnon:")[1].split()[0])
n = int(sys.argv[1])

def per_fork(fork):
    start = time.perf_counter()
    for _ in range(n):
        pid = fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / n * 1e3

per_fork(libc_fork)
print(anon, min(per_fork(os.fork) for _ in range(3)), min(per_fork(libc_fork) for _ in range(3)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=3000)
    args = parser.parse_args()
    from codeloop.sandbox.zygote import ON_DEMAND

    child = "json marshal pickle random traceback dataclasses socket select struct resource signal io typing".split()
    rows = [("bare interpreter", []), ("+ typing", ["typing"]),
            ("+ what a sample process itself uses", child),
            ("... + all of zygote.ON_DEMAND", [*child, *sorted(ON_DEMAND)]),
            ("a fork of the worker (the zygote before)", ["codeloop.sandbox.worker"])]
    print(f"{'process holds':40} {'RssAnon':>9} {'os.fork':>9} {'libc fork':>10}")
    for label, modules in rows:
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.forks), *modules], capture_output=True, text=True,
                             check=True).stdout.split()
        anon, with_hooks, raw = int(out[0]), float(out[1]), float(out[2])
        print(f"{label:40} {anon / 1024:7.1f}MB {with_hooks:7.3f}ms {raw:8.3f}ms")


if __name__ == "__main__":
    main()
