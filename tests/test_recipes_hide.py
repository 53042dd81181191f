"""Every loop hides its own output folder from the samples it judges: earlier iterations' passing
programs (and crlhf-scores' scores file) are answers a completion could read. The sandbox's ``hide``
itself is tested in the adversarial suite; this is the wiring, each loop run up to its sandbox."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from codeloop.recipes import coderl, common, crlhf, online_dpo, optimise, plum, self_refine
from codeloop.sandbox import Job


class _Opened(Exception):
    """Raised by the spy in place of a sandbox: the loop has gone as far as this test needs."""


def _spy(seen: dict[str, Any]) -> Any:
    def open_sandbox(*args: object, **options: Any) -> None:
        seen.update(options)
        raise _Opened

    return open_sandbox


def _scores_config(out: Path) -> crlhf.ScoresConfig:
    scores = out.parent / "scores.jsonl"
    scores.write_text('{"task_id": "synthetic-python/train/0", "completion": "    return 0\\n", "score": 1.0}\n')
    return crlhf.ScoresConfig(scores=str(scores), out_dir=str(out))


LOOPS = [
    (plum, "run", lambda out: plum.PLUMConfig(out_dir=str(out))),
    (online_dpo, "run", lambda out: online_dpo.OnlineDPOConfig(out_dir=str(out))),
    (coderl, "run", lambda out: coderl.CodeRLConfig(out_dir=str(out))),
    (crlhf, "run", lambda out: crlhf.CRLHFConfig(out_dir=str(out))),
    (crlhf, "run_scores", _scores_config),
    (self_refine, "run", lambda out: self_refine.RefineConfig(out_dir=str(out))),
]


@pytest.mark.parametrize(("module", "entry", "config"), LOOPS, ids=lambda v: getattr(v, "__name__", "").rsplit(".", 1)[-1])
def test_each_loop_hides_its_out_dir_from_the_samples(module: ModuleType, entry: str, config: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(common, "open_sandbox", _spy(seen))  # loop_sandbox's
    monkeypatch.setattr(module, "open_sandbox", _spy(seen), raising=False)  # a loop that went round it
    cfg = config(tmp_path / "out")
    with pytest.raises(_Opened):
        getattr(module, entry)(cfg)
    hidden = {str(p) for p in seen["hide"]}
    assert cfg.out_dir in hidden
    if entry == "run_scores":
        assert cfg.scores in hidden


def test_the_optimisation_loop_hides_its_out_dir_from_both_its_sandboxes(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, ...]] = []

    class Spy:
        def __init__(self, *args: object, hide: tuple[str, ...] = (), **options: object) -> None:
            made.append(tuple(hide))
            if len(made) == 2:
                raise _Opened

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(optimise, "Sandbox", Spy)
    cfg = optimise.OptimiseConfig(out_dir=str(tmp_path / "out"), limit=1)
    with pytest.raises(_Opened):
        optimise.run(cfg)
    assert made == [(cfg.out_dir,), (cfg.out_dir,)]


def test_a_loops_sandbox_says_what_holds_the_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with common.loop_sandbox("", str(tmp_path / "out"), []) as sandbox:
        assert sandbox.run_one(Job(program="def f(x):\n    return 2 * x\n", entry_point="f",
                                   test="def check(c):\n    assert c(2) == 4\n")).passed
    assert capsys.readouterr().out.startswith("sandbox: isolation ")
