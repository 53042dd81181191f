"""How many of a loop's training positives are wrong programs that the 6 cases miss.

    .venv/bin/python benchmarks/false_passes.py [--run runs/demo] [--tasks synthetic-python:train]

For every iteration folder of a loop run, the distinct positives it trained on (the chosen side of
``iter_N/pairs``, or the desirable rows of a PLUM-KTO run's ``iter_N/kto``) are run against the tasks'
own cases and against the 50 of ``synthetic-python+``; prints, per iteration, how many pass the first
and how many of those fail the second.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codeloop.data import load_tasks
from codeloop.eval import evaluate
from codeloop.sandbox import Sandbox
from codeloop.types import Sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--tasks", default="synthetic-python:train", help="the run's intents (synthetic-python:SPLIT)")
    args = parser.parse_args()
    from datasets import load_from_disk

    base = load_tasks(args.tasks)
    plus = load_tasks(args.tasks.replace("synthetic-python:", "synthetic-python+:", 1))
    by_prompt = {t.prompt: task_id for task_id, t in base.items()}
    dirs = sorted([*Path(args.run).glob("iter_*/pairs"), *Path(args.run).glob("iter_*/kto")],
                  key=lambda p: int(p.parent.name.split("_")[1]))
    if not dirs:
        raise SystemExit(f"{args.run}: no iter_N/pairs or iter_N/kto folders (run `make demo` or `codeloop loop` first)")
    with Sandbox() as sandbox:
        for path in dirs:
            rows = load_from_disk(str(path))
            chosen = sorted({(row["prompt"], row["chosen"]) for row in rows} if path.name == "pairs" else
                            {(row["prompt"], row["completion"]) for row in rows if row["label"]})
            samples = [Sample(by_prompt[prompt], text) for prompt, text in chosen]
            on_base, on_plus = evaluate(base, samples, sandbox), evaluate(plus, samples, sandbox)
            passed = sum(o.passed for o in on_base)
            wrong = sum(b.passed and not p.passed for b, p in zip(on_base, on_plus))
            print(f"{path.parent.name}: {len(chosen)} distinct chosen, {passed} pass the 6 cases, "
                  f"{wrong} of those fail the 50 ({wrong / max(passed, 1):.1%})")


if __name__ == "__main__":
    main()
