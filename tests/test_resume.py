"""Exact resume: a run killed with SIGKILL and resumed ends bit-identical to one never stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_script
from safetensors.torch import load_file

from ftcore.train import checkpoint as ckpt


def weights(run_dir, which="last"):
    return load_file(run_dir / "checkpoints" / which / "model.safetensors")


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture
def args(tiny_cli_args):
    # dropout stays on (0.1): resuming must also restore the random generator states
    return [*tiny_cli_args, "trainer.epochs=6", "trainer.save_every=1", "trainer.eval_every=5"]


@pytest.fixture
def reference(args, tmp_path):
    out = tmp_path / "reference"
    done = run_script("train.py", *args, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    return out


def saved_step(run_dir) -> int:
    try:
        return json.loads((run_dir / "checkpoints" / "last" / "state.json").read_text())["progress"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.parametrize("kill_after_step", [3, 29])
def test_sigkill_then_resume_is_bit_identical(args, reference, tmp_path, kill_after_step):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args, f"hydra.run.dir={out}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while saved_step(out) < kill_after_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    assert saved_step(out) >= kill_after_step

    done = run_script("train.py", *args, f"resume={out}")
    assert done.returncode == 0, done.stderr
    assert_identical(weights(out), weights(reference))
    assert_identical(weights(out, "best"), weights(reference, "best"))
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    assert ours["test"] == theirs["test"] and ours["best_step"] == theirs["best_step"]
    assert "resumed from" in (out / "train.log").read_text()


def test_corrupt_or_partial_checkpoint_falls_back_to_the_previous_one(args, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "metrics.json").unlink()
    last = out / "checkpoints" / "last"
    # A crash between the two renames of a save: no `last`, a half-written `last.tmp`, an intact `.prev`.
    shutil.rmtree(last)
    (out / "checkpoints" / "last.tmp").mkdir()
    (out / "checkpoints" / "last.tmp" / "model.safetensors").write_bytes(b"partial")
    state, _ = ckpt.load_latest(last)
    assert state["progress"]["step"] == 71  # the save before the final one
    # A corrupt newest checkpoint is skipped too.
    shutil.copytree(out / "checkpoints" / "last.prev", last)
    with open(last / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff\xff\xff")
    messages = []
    state, _ = ckpt.load_latest(last, log=messages.append)
    assert state["progress"]["step"] == 71 and "checksum mismatch" in messages[0]  # served by .prev

    done = run_script("train.py", *args, f"resume={out}")
    assert done.returncode == 0, done.stderr
    assert_identical(weights(out), weights(reference))


def test_resume_with_a_different_config_exits_2_naming_the_key(args, reference):
    done = run_script("train.py", *args, "optim.lr=1e-3", f"resume={reference}")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "optim.lr (0.003 in the checkpoint, 0.001 now)" in line


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_is_identical(args, reference, tmp_path):
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args, f"hydra.run.dir={out}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while saved_step(out) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert not (out / "metrics.json").exists()
    stopped_at = saved_step(out)
    assert 10 <= stopped_at < 72
    assert f"interrupted at step {stopped_at}" in (out / "train.log").read_text()

    done = run_script("train.py", *args, f"resume={out}")
    assert done.returncode == 0, done.stderr
    assert_identical(weights(out), weights(reference))
