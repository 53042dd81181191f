"""One table, one budget: online DPO, PLUM-KTO, PLUM-DPO (balanced), rejection-sampling SFT and CodeRL.

    .venv/bin/python benchmarks/compare_loops.py [--iterations 6] [--out runs/compare]

Every method starts from seed-python, sees the same intents in the same order (the first 2,000
synthetic-python:train tasks, 20% per iteration), samples k=4 candidates per intent at T=0.8 from its
current policy, updates (2 epochs for the preference and SFT loops; CodeRL: one REINFORCE epoch after
its critic's two), and is validated on the same 100 held-out synthetic-python:test
tasks (n=4, T=0.8) after every iteration, against their 6 I/O cases and (pass@1+) the 50 of
synthetic-python+:test. Each runs through the same CLI a user would type
(``codeloop loop online-dpo|plum|coderl CONFIG --set ...``), so each row can be rerun alone. Methods at
the settings of their papers (PLUM without an NLL term; online DPO with it), plus PLUM-KTO with online
DPO's NLL guard, and CodeRL with and without its critic. About 25 minutes on 2 CPU cores; each
method's own command is printed before it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "codeloop")
METHODS = {  # name: (loop, config, overrides)
    "online DPO (+NLL)": ("online-dpo", "configs/online_dpo/demo.yaml", []),
    "PLUM-KTO": ("plum", "configs/plum/demo.yaml", ["objective=kto"]),
    "PLUM-KTO + NLL": ("plum", "configs/plum/demo.yaml", ["objective=kto", "nll_weight=1.0"]),
    "PLUM-DPO (balanced)": ("plum", "configs/plum/demo.yaml", ["objective=dpo"]),
    "rejection-sampling SFT": ("plum", "configs/plum/demo.yaml", ["objective=sft", "lr=0.0005"]),
    "CodeRL (critic, REINFORCE)": ("coderl", "configs/coderl/demo.yaml", []),
    "REINFORCE, no critic": ("coderl", "configs/coderl/demo.yaml", ["critic=none"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    rows = []
    for name, (loop, config, sets) in METHODS.items():
        out = Path(args.out) / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        overrides = [*sets, f"iterations={args.iterations}", f"out_dir={out}"]
        command = [CLI, "loop", loop, config, *[x for s in overrides for x in ("--set", s)]]
        print("$", " ".join(command), file=sys.stderr, flush=True)
        start = time.monotonic()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        metrics = [json.loads(line) for line in (ROOT / out / "metrics.jsonl").read_text().splitlines()]
        rows.append((name, metrics[0], metrics[-1], max(m["pass_at_1"] for m in metrics), time.monotonic() - start))
    print("| method | pass@1 seed -> last (best) | pass@1+ seed -> last | compile errors seed -> last | minutes |")
    print("|---|---|---|---|---|")
    for name, first, last, best, seconds in rows:
        plus = (f"{first['pass_at_1_plus']:.3f} -> {last['pass_at_1_plus']:.3f}"
                if "pass_at_1_plus" in first and "pass_at_1_plus" in last else "-")
        print(f"| {name} | {first['pass_at_1']:.3f} -> {last['pass_at_1']:.3f} ({best:.3f}) | {plus} | "
              f"{first['compile_error_rate']:.3f} -> {last['compile_error_rate']:.3f} | {seconds / 60:.1f} |")


if __name__ == "__main__":
    main()
