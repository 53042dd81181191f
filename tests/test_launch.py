"""TRL updates launched in processes of their own (``codeloop.train.launch``): through torchrun and
accelerate launch on two CPU processes (gloo), as they run them over GPUs, against the same update in
the test's process; the launcher's resolution, refusals, failures and clean-up."""

from __future__ import annotations

import copy
import gc
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the trl extra is part of the dev install")

import torch  # noqa: E402

from codeloop.models.tiny import tiny_causal_lm  # noqa: E402
from codeloop.train.launch import LaunchError, launcher  # noqa: E402
from codeloop.train.trl_backend import LoRA, trl_dpo, trl_kto  # noqa: E402
from codeloop.types import PreferencePair  # noqa: E402
from conftest import running_with  # noqa: E402

PAIRS = [PreferencePair("Q:", " yes", " no"), PreferencePair("Q:", " a", " b")] * 8
ROWS = [{"prompt": "Q:", "completion": " yes", "label": True}, {"prompt": "Q:", "completion": " no", "label": False}] * 8
TWO = "torchrun --standalone --nproc_per_node 2"


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def dpo(launch, **settings):
    model, tok = tiny_causal_lm(seed=4)
    start = weights(model)
    trained, stats = trl_dpo(model, copy.deepcopy(model), tok, PAIRS, beta=0.5, lr=1e-2, epochs=2, nll_weight=1.0,
                             launch=launch, **{"batch_size": 16, **settings})
    assert trained is model  # trained in place: whatever holds the policy sees the update
    return start, weights(trained), stats


@pytest.fixture(scope="module")
def in_process():
    return dpo("")


def test_an_update_launched_in_one_process_is_the_update_in_the_loops_process(in_process):
    start, expected, stats = in_process
    _, launched, launched_stats = dpo("python")
    assert not torch.equal(start, expected) and torch.equal(launched, expected)
    assert launched_stats["processes"] == 1 and launched_stats["steps"] == stats["steps"] == 2
    assert launched_stats["final_loss"] == stats["final_loss"]


ACCELERATE = """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_processes: 2
num_machines: 1
machine_rank: 0
mixed_precision: 'no'
use_cpu: true
"""


@pytest.mark.parametrize("launch", ["torchrun", "accelerate"])
def test_two_launched_processes_split_the_batch_and_make_the_same_update(in_process, tmp_path, launch):
    """Each of the two processes (torchrun's, or accelerate launch's from a two-GPU config run on the
    CPU) takes 8 of the batch of 16 (here all rows, so that both runs see the same batches); gradients
    averaged over both are the gradient of the whole batch, so the weights match one process's to
    float rounding."""
    (tmp_path / "two.yaml").write_text(ACCELERATE)
    start, expected, stats = in_process
    _, launched, launched_stats = dpo(TWO if launch == "torchrun" else f"accelerate launch --config_file {tmp_path / 'two.yaml'}")
    assert launched_stats["processes"] == 2 and launched_stats["steps"] == stats["steps"]
    assert launched_stats["distributed"] == "MULTI_CPU"  # as accelerate runs either launcher on CPUs
    assert torch.allclose(launched, expected, atol=1e-5) and (launched - start).abs().max() > 1e-3


def test_a_launched_lora_update_merges_its_adapter_into_the_policy():
    model, tok = tiny_causal_lm(seed=4)
    expected, _ = trl_kto(copy.deepcopy(model), None, tok, ROWS, beta=0.5, lr=1e-2, epochs=1, batch_size=8,
                          nll_weight=1.0, lora=LoRA(r=4))
    trained, stats = trl_kto(model, None, tok, ROWS, beta=0.5, lr=1e-2, epochs=1, batch_size=8, nll_weight=1.0,
                             lora=LoRA(r=4), launch="python")
    assert stats["processes"] == 1 and not hasattr(trained, "peft_config")  # a plain model, the adapter merged
    assert trained is model  # merged into the loop's own policy, which is moved back to its device
    assert torch.equal(weights(trained), weights(expected))


def left_in_tmp(prefix: str = "codeloop-reference-") -> list[Path]:
    """The folders under $TMPDIR whose names start with ``prefix`` (by default: saved references)."""
    return [p for p in Path(tempfile.gettempdir()).glob(prefix + "*") if p.is_dir()]


def test_a_reference_is_written_once_for_the_launched_updates_that_train_against_it():
    """Two launched updates against one reference write it once, and train as the same two updates in the
    test's process do; its folder goes with the reference."""
    model, tok = tiny_causal_lm(seed=4)
    reference, expected = copy.deepcopy(model), copy.deepcopy(model)
    settings = {"beta": 0.5, "lr": 1e-2, "batch_size": 16, "nll_weight": 1.0}
    for _ in range(2):
        trl_dpo(expected, reference, tok, PAIRS, **settings)
    before, writes = left_in_tmp(), []
    save = reference.save_pretrained
    reference.save_pretrained = lambda *a, **k: (writes.append(a), save(*a, **k))
    for _ in range(2):
        trl_dpo(model, reference, tok, PAIRS, launch="python", **settings)
    assert len(writes) == 1 and torch.equal(weights(model), weights(expected))
    (folder,) = set(left_in_tmp()) - set(before)
    del reference, save
    gc.collect()
    assert not folder.exists()


def test_a_saved_reference_is_written_again_once_its_weights_change_however_they_change():
    from codeloop.train.launch import _reference_folder

    reference, _ = tiny_causal_lm(seed=4)
    first = _reference_folder(reference)
    assert _reference_folder(reference) == first and (first / "config.json").is_file()
    reference.to(torch.float64).to(torch.float32)  # moved and back (as off the GPU for an update): the same weights
    assert _reference_folder(reference) == first
    with torch.no_grad():
        next(reference.parameters()).add_(1e-3)  # in place: its version counter moves
    second = _reference_folder(reference)
    assert second != first and not first.exists()
    with torch.no_grad():
        reference.lm_head.weight.data = reference.lm_head.weight.data.flip(0)  # no counter moves; the checksums do
    third = _reference_folder(reference)
    assert third != second and not second.exists()
    version = reference.lm_head.weight._version
    reference.lm_head.weight.data[3, 5] += 1e-4  # through .data: no counter moves either
    assert reference.lm_head.weight._version == version
    fourth = _reference_folder(reference)
    assert fourth != third and not third.exists() and _reference_folder(reference) == fourth
    from safetensors.torch import load_file

    assert torch.equal(load_file(fourth / "model.safetensors")["model.embed_tokens.weight"], reference.lm_head.weight)  # tied
    del reference
    gc.collect()
    assert not fourth.exists()


def test_a_reference_that_cannot_be_written_leaves_no_folder_behind():
    from codeloop.train.launch import _reference_folder

    reference, _ = tiny_causal_lm(seed=4)
    before = left_in_tmp()

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    reference.save_pretrained = full
    with pytest.raises(OSError, match="No space left"):
        _reference_folder(reference)
    assert left_in_tmp() == before


def test_a_batch_that_does_not_split_over_the_processes_fails_with_the_reason_and_leaves_the_policy_alone():
    model, tok = tiny_causal_lm(seed=4)
    start = weights(model)
    with pytest.raises(LaunchError, match=r"(?s)failed \(exit [1-9].*batch_size 3 does not split evenly over the 2 processes") as failed:
        trl_dpo(model, copy.deepcopy(model), tok, PAIRS, batch_size=3, launch=TWO)
    assert torch.equal(weights(model), start)
    log = Path(re.search(r"its whole output is in (\S+codeloop-launch-\S+\.log)\)", str(failed.value)).group(1))
    assert "batch_size 3 does not split" in log.read_text()  # kept for the user, beyond the work folder
    log.unlink()


def test_the_launcher_is_found_beside_codeloops_python_before_path(monkeypatch, tmp_path):
    (tmp_path / "notes.txt").write_text("not a program\n")
    monkeypatch.setenv("PATH", "/nonexistent")  # an environment that is not activated
    assert launcher("python -X dev") == [sys.executable, "-X", "dev"]
    beside = Path(sys.executable).parent / "torchrun"
    assert launcher(TWO) == [str(beside), "--standalone", "--nproc_per_node", "2"]
    for bad, reason in [("", "launch is empty"), ("torchrun 'x", "launch \"torchrun 'x\" is not a command line"),
                        ("no-such-launcher -n 2", "launch 'no-such-launcher' is neither beside"),
                        (f"{tmp_path}/notes.txt -n 2", f"launch {tmp_path}/notes.txt is not an executable file")]:
        with pytest.raises(ValueError, match=reason):
            launcher(bad)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"launch": TWO}, f"--set launch={TWO}: launch '{TWO}' needs trainer trl"),
    ({"trainer": "trl", "launch": "no-such-launcher"}, "--set launch=no-such-launcher: launch 'no-such-launcher' is neither beside"),
    ({"trainer": "trl", "objective": "sft", "launch": "python"}, "--set launch=python: launch 'python': objective sft trains"),
])
def test_a_launch_the_loop_cannot_use_is_refused_at_its_key_before_any_work(tmp_path, settings, expected):
    from typer.testing import CliRunner

    from codeloop.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(f"iterations: 1\nout_dir: {tmp_path / 'run'}\n")
    sets = [word for key, value in settings.items() for word in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(app, ["loop", "plum", str(config), *sets])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_loop_resumed_with_a_launcher_trains_the_model_the_loops_own_process_trains(tmp_path):
    """Online DPO with TRL for two iterations in the loop's process; the same run's iteration 2 redone
    on two torchrun processes (a resume may change launch) samples the same pairs and trains the same
    model, to float rounding (one batch holds every pair, so that both draw the same batches)."""
    from safetensors.torch import load_file

    from codeloop.recipes.online_dpo import OnlineDPOConfig, run

    def config(out, launch=""):
        return OnlineDPOConfig(n_intents=12, fraction=0.5, iterations=2, k=3, val_limit=4, val_n=2, batch_size=256,
                               max_new_tokens=96, trainer="trl", out_dir=str(out), launch=launch)

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    stale = set(left_in_tmp("codeloop-"))  # what a run killed earlier may have left there is not this test's
    run(config(straight))
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "iter_2")  # as if killed during iteration 2
    metrics = run(config(resumed, TWO))
    assert json.loads((resumed / "config.json").read_text())["launch"] == TWO
    from datasets import load_from_disk

    assert 0 < len(load_from_disk(str(resumed / "iter_2" / "pairs"))) <= 256
    assert load_from_disk(str(resumed / "iter_2" / "pairs")).to_list() == load_from_disk(str(straight / "iter_2" / "pairs")).to_list()
    a, b = (load_file(path / "iter_2" / "model" / "model.safetensors") for path in (straight, resumed))
    before = load_file(straight / "iter_1" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(not torch.equal(a[k], before[k]) for k in a)  # iteration 2 did train
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert "processes" not in metrics[1] and (metrics[2]["processes"], metrics[2]["distributed"]) == (2, "MULTI_CPU")
    assert not set(left_in_tmp("codeloop-launch-")) - stale  # work folders removed
    gc.collect()
    assert not set(left_in_tmp()) - stale  # and the reference's, with the run's reference


def test_no_process_a_launcher_started_outlives_its_update_whether_it_ends_or_is_stopped(tmp_path):
    import signal
    import time

    from codeloop.train.launch import _run

    left = f"import subprocess; subprocess.Popen(['sleep', '{297 + os.getpid() % 1000 / 1000}'])"  # exits, a child left behind
    _run([sys.executable, "-c", left], tmp_path / "a.log", "python")
    assert not running_with(f"sleep {297 + os.getpid() % 1000 / 1000}")

    stuck = f"import subprocess, time; subprocess.Popen(['sleep', '{298 + os.getpid() % 1000 / 1000}']); time.sleep(300)"

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(2)  # Ctrl-C in the loop, while the launcher runs
    try:
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            _run([sys.executable, "-c", stuck], tmp_path / "b.log", "python")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 30 and not running_with(f"sleep {298 + os.getpid() % 1000 / 1000}")


STUCK = """
import ctypes, sys, threading
import codeloop.train.launch as launch

class Stuck:  # freed as a Gloo process group freed just after a collective may be: never
    def __del__(self):
        threading.Event().wait()

def update(work):
    held = Stuck()
    ctypes.CDLL(None).printf(b"native output\\n")  # as torch's C++ prints: buffered by the C library
    if sys.argv[1] == "fails":
        raise RuntimeError("the update failed")
    return held  # as the real one returns its trainer

launch._update = update
launch.main([sys.argv[2]])
"""


@pytest.mark.parametrize("update", ["ends", "fails"])
def test_a_launched_process_ends_without_freeing_what_its_update_holds(tmp_path, update):
    """A launched process leaves without tearing its update down: what it holds (its trainer, its process
    group) is never freed, so a destructor that never returns cannot keep it, the launcher and the loop
    waiting, whether the update ended or failed."""
    import subprocess

    try:
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a launcher without -u
        done = subprocess.run([sys.executable, "-c", STUCK, update, str(tmp_path)], capture_output=True, text=True,
                              timeout=60, env=buffered)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the launched process whose update {update} was still running 60 s on, freeing what it held")
    assert done.returncode == (0 if update == "ends" else 1), done.stderr
    assert done.stdout == "native output\n"  # flushed before the process ended
    if update == "fails":
        assert "RuntimeError: the update failed" in (tmp_path / "error.0.txt").read_text()
        assert "codeloop: Traceback" in done.stderr  # flushed before the process ended


def test_a_launcher_that_runs_nothing_is_named_not_met_as_a_missing_file():
    model, tok = tiny_causal_lm(seed=4)
    with pytest.raises(LaunchError, match=r"exited 0, but no process of it finished the update: is \S*echo a launcher"):
        trl_dpo(model, copy.deepcopy(model), tok, PAIRS, batch_size=8, launch="echo")
