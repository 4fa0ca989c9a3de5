"""torchrun DDP on CPU (gloo): 2 processes x batch b train exactly like 1 process x batch 2b."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO, run_script
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def losses(run_dir):
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


def test_two_processes_match_one_process_with_twice_the_batch(tiny_cli_args, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg))
    args = [a for a in tiny_cli_args if not a.startswith(("model.path=", "trainer.batch_size="))]
    args += [f"model.path={model}", "trainer.epochs=2", "trainer.log_every=1"]

    single = run_script("train.py", *args, "trainer.batch_size=8", f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "scripts" / "train.py"), *args, "trainer.batch_size=4", f"hydra.run.dir={tmp_path / 'two'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 24
    assert max(abs(a - b) for a, b in zip(one, two)) <= 1e-5
    a = load_file(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "last" / "model.safetensors")
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-4, name
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert m2["world_size"] == 2 and m1["test"]["num_examples"] == m2["test"]["num_examples"] == 32
    assert abs(m1["test"]["accuracy"] - m2["test"]["accuracy"]) <= 1 / 32
    assert not (tmp_path / "two" / "checkpoints" / "last.tmp").exists()
