"""What one fork-per-sample costs, by how the process forks and what it holds.

    .venv/bin/python benchmarks/fork_cost.py [--forks 3000]

Each row is a fresh interpreter (``python -I``), pinned to one CPU, that imports a set of modules and
freezes its heap (as codeloop's zygote does), then forks N children that exit at once; it prints the
anonymous memory it held (RssAnon) and the wall time per fork + exit + reap (best of three), forking
with ``os.fork`` (CPython's at-fork handlers run: threading's, random's, ...) and with libc's fork as
the zygote does (``codeloop.sandbox._linux.raw_fork``). The "zygote" rows boot as codeloop's zygote
does (``zygote._BOOT``, up to where it would start serving: the five modules of
``zygote.OWN_MODULES`` built from the code ``zygote.own_code`` reads), so they hold what it holds at
start; then what it imports on demand (``zygote.ON_DEMAND``) once HumanEval's programs named theirs,
then all of that list. The last row holds what a plain fork of the worker held, which the zygote was
until a fresh interpreter replaced it (the README's throughput paragraph has the numbers).
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
    from codeloop.data import load_tasks
    from codeloop.sandbox import zygote

    config = zygote.boot_config(zygote.own_code(), "none", None, [], -1)
    serving = "sock = socket.socket"  # where the boot stops building and starts serving
    assert serving in zygote._BOOT, "zygote._BOOT changed: update where fork_cost stops it"
    boot = "import sys\n_argv = sys.argv[:]\n" + zygote._BOOT.split(serving)[0] + "sys.argv = _argv\n"
    humaneval = sorted({name for task in load_tasks("humaneval").values()
                        for name in zygote.modules_named(compile(task.prompt + (task.canonical_solution or ""), "<p>", "exec"))})
    rows = [("bare interpreter", "", []), ("+ typing", "", ["typing"]),
            ("the zygote at start", boot, []),
            (f"... + HumanEval's {len(humaneval)} on demand", boot, humaneval),
            ("... + all of zygote.ON_DEMAND", boot, sorted(zygote.ON_DEMAND)),
            ("a fork of the worker (the zygote before)", "", ["codeloop.sandbox.worker"])]
    print(f"{'process holds':40} {'RssAnon':>9} {'os.fork':>9} {'libc fork':>10}")
    for label, prefix, modules in rows:
        out = subprocess.run([sys.executable, "-I", "-c", prefix + CHILD, str(args.forks), *modules],
                             input=config if prefix else b"", capture_output=True, check=True).stdout.split()
        anon, with_hooks, raw = int(out[0]), float(out[1]), float(out[2])
        print(f"{label:40} {anon / 1024:7.1f}MB {with_hooks:7.3f}ms {raw:8.3f}ms")


if __name__ == "__main__":
    main()
