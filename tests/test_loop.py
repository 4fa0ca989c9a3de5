"""The training loop end to end on a tiny model: learning, accumulation, precision, divergence, logging."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import MethodConfig
from ftcore.errors import CheckpointError
from ftcore.model.heads import SequenceClassifier
from ftcore.optim.schedules import Schedule, warmup_steps_for
from ftcore.train import checkpoint as ckpt
from ftcore.train.experiment import train
from ftcore.train.loop import TrainingDiverged


def no_dropout_model(src, dst):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def final_weights(run_dir):
    return load_file(run_dir / "checkpoints" / "last" / "model.safetensors")


def test_bf16_cpu_run_learns_and_writes_the_run_directory(tiny_run_config, tmp_path):
    cfg = tiny_run_config
    cfg.trainer.precision = "bf16"
    cfg.trainer.epochs = 8
    cfg.trainer.eval_every = 6
    result = train(cfg, tmp_path)
    assert result["precision"] == "bf16"
    assert result["test"]["accuracy"] >= 0.9 and result["val"]["accuracy"] >= 0.9
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val", "test", "best_step", "train_samples_per_s", "train_tokens_per_s", "train_seconds"):
        assert key in metrics
    assert metrics["steps"] == 8 * 12 and metrics["best_step"] <= 96
    assert (
        metrics["train_samples_per_s"] > 0 and metrics["train_tokens_per_s"] > metrics["train_samples_per_s"]
    )
    for name in ("train.log", "labels.json", "tokenizer/tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    for which in ("last", "best"):
        state = json.loads((tmp_path / "checkpoints" / which / "state.json").read_text())
        assert state["progress"]["step"] == (96 if which == "last" else metrics["best_step"])
    assert "validation accuracy" in (tmp_path / "train.log").read_text()
    best_state = json.loads((tmp_path / "checkpoints" / "best" / "state.json").read_text())
    assert metrics["val"] == best_state["val"]  # the best checkpoint's validation, not evaluated twice


def test_tensorboard_has_training_and_validation_scalars(tiny_run_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_run_config
    cfg.optim.lr_overrides = {r"embeddings\.": 10 * cfg.optim.lr}  # the first group: its own rate
    train(cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s"} <= scalars
    assert {"val/accuracy", "val/f1_macro", "val/loss"} <= scalars
    assert "val/confusion_matrix" in events.Tags()["images"]
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert len(lrs) == 24 // 4 and lrs[-1] < lrs[0]  # logged every 4 steps; linear decay
    schedule = Schedule(
        cfg.optim.schedule, 24, warmup_steps_for(24, cfg.optim.warmup_steps, cfg.optim.warmup_ratio)
    )
    assert lrs == pytest.approx([cfg.optim.lr * schedule(step - 1) for step in range(4, 25, 4)])  # optim.lr's


def test_gradient_accumulation_equals_the_large_batch(tiny_run_config, tiny_model_dir, tmp_path):
    cfg = tiny_run_config
    cfg.model.path = str(no_dropout_model(tiny_model_dir, tmp_path / "model"))
    cfg.trainer.epochs = 1
    big = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, batch_size=8, grad_accum=1))
    small = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, batch_size=2, grad_accum=4))
    train(big, tmp_path / "big")
    train(small, tmp_path / "small")
    a, b = final_weights(tmp_path / "big"), final_weights(tmp_path / "small")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 2e-5, name
    # and training really moved the weights
    start = SequenceClassifier.from_pretrained(cfg.model.path, num_labels=2).encoder.state_dict()
    assert not torch.allclose(
        a["encoder.layers.0.attention.query.weight"], start["layers.0.attention.query.weight"]
    )


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_run_config, tmp_path, monkeypatch):
    cfg = tiny_run_config
    cfg.trainer.save_every = 2
    cfg.trainer.log_every = 1
    calls = {"n": 0}
    original = SequenceClassifier.loss

    def poisoned(self, logits, labels):
        calls["n"] += 1
        loss = original(self, logits, labels)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(SequenceClassifier, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match="NaN/inf by step 7") as e:
        train(cfg, tmp_path)
    assert "\n" not in str(e.value)
    state, tensors = ckpt.load_latest(tmp_path / "checkpoints" / "last")
    assert state["progress"]["step"] == 6
    assert all(torch.isfinite(t).all() for t in tensors["model.safetensors"].values())
    assert not (tmp_path / "metrics.json").exists()


def test_frozen_base_checkpoints_hold_only_trainable_tensors(tiny_run_config, tmp_path):
    cfg = tiny_run_config
    cfg.method = MethodConfig(name="bitfit")
    cfg.trainer.epochs = 1
    train(cfg, tmp_path)
    saved = final_weights(tmp_path)
    assert saved and all(name.endswith(".bias") or name.startswith("head.") for name in saved)
    state = json.loads((tmp_path / "checkpoints" / "last" / "state.json").read_text())
    assert state["trainable_only"] is True and state["base_model"] == cfg.model.path


def test_resume_refuses_a_different_config(tiny_run_config, tmp_path):
    cfg = tiny_run_config
    cfg.trainer.epochs = 1
    train(cfg, tmp_path)
    cfg.optim.lr = 5e-4
    cfg.resume = str(tmp_path)
    with pytest.raises(CheckpointError, match=r"optim.lr \(0.003 in the checkpoint, 0.0005 now\)"):
        train(cfg, tmp_path)


def test_fp16_on_cpu_is_refused(tiny_run_config, tmp_path):
    from ftcore.errors import ConfigError

    tiny_run_config.trainer.precision = "fp16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train(tiny_run_config, tmp_path)


def test_early_stopping_after_patience_evaluations_without_progress(tiny_run_config, tmp_path):
    cfg = tiny_run_config
    cfg.trainer.epochs = 8
    cfg.trainer.eval_every = 2
    cfg.trainer.early_stopping_patience = 2
    cfg.trainer.metric = "loss"  # keeps improving for a while, then stalls
    result = train(cfg, tmp_path)
    assert result["early_stopped"] is True
    assert result["steps"] == result["best_step"] + 2 * 2 < 96
    assert "early stopping: no better loss in 2 evaluations" in (tmp_path / "train.log").read_text()


def test_selection_metric_must_exist_for_the_problem(tiny_run_config, tmp_path):
    from ftcore.errors import ConfigError

    tiny_run_config.trainer.metric = "bleu"
    with pytest.raises(
        ConfigError, match="trainer.metric='bleu' is not valid; expected one of loss, accuracy"
    ):
        train(tiny_run_config, tmp_path)
    tiny_run_config.trainer.metric = "mse"  # a regression metric on a classification task
    with pytest.raises(ConfigError, match="trainer.metric='mse'"):
        train(tiny_run_config, tmp_path)


@pytest.mark.parametrize("problem", ["multi_label", "regression"])
def test_multi_label_and_regression_runs_select_by_their_default_metric(tiny_run_config, tmp_path, problem):
    files = {}
    for split in ("train", "validation", "test"):
        source = getattr(tiny_run_config.data, f"{split}_file")
        rows = [json.loads(line) for line in Path(source).read_text().splitlines()]
        out = tmp_path / f"{split}.jsonl"
        with open(out, "w") as f:
            for r in rows:
                label = [r["label"], "any"] if problem == "multi_label" else float(r["label"] == "pos")
                f.write(json.dumps({"text": r["text"], "label": label}) + "\n")
        files[split] = str(out)
    cfg = tiny_run_config
    cfg.data.problem = problem
    cfg.data.train_file, cfg.data.validation_file, cfg.data.test_file = (
        files["train"],
        files["validation"],
        files["test"],
    )
    cfg.trainer.epochs = 6
    result = train(cfg, tmp_path / "run")
    if problem == "multi_label":
        assert result["metric"] == "f1_micro" and result["test"]["f1_micro"] >= 0.9
    else:
        assert (
            result["metric"] == "mse" and result["test"]["mse"] <= 0.15 and result["test"]["pearson"] >= 0.7
        )  # chance: 0.25, 0


def test_compiled_training_matches_eager_and_reports_the_compile_time(
    tiny_run_config, tiny_model_dir, tmp_path
):
    cfg = tiny_run_config
    cfg.model.path = str(no_dropout_model(tiny_model_dir, tmp_path / "model"))
    cfg.trainer.max_steps = 3
    eager = train(cfg, tmp_path / "eager")
    compiled = train(
        dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, compile=True)),
        tmp_path / "compiled",
    )
    assert eager["compile_seconds"] is None and compiled["compile_seconds"] > 0
    assert "torch.compile: the first step took" in (tmp_path / "compiled" / "train.log").read_text()
    a, b = final_weights(tmp_path / "eager"), final_weights(tmp_path / "compiled")
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-5, name


def test_a_failing_checkpoint_write_ends_the_run_naming_the_path_and_keeps_the_old_ones(
    tiny_run_config, tmp_path, monkeypatch
):
    cfg = tiny_run_config
    cfg.trainer.save_every = 2
    writes = {"n": 0}
    original = ckpt.save_file

    def disk_fills_up(tensors, path, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 3 * 3 + 2:  # the 4th save of last/ (3 files each), after a partial file
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device", str(path))
        return original(tensors, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", disk_fills_up)
    last = tmp_path / "checkpoints" / "last"
    with pytest.raises(CheckpointError) as e:
        train(cfg, tmp_path)
    message = str(e.value)
    assert "\n" not in message and str(last) in message and "No space left on device" in message
    assert not last.with_name("last.tmp").exists()  # the partial directory is gone
    for directory, step in ((last, 6), (last.with_name("last.prev"), 4)):  # both intact and verified
        state, tensors = ckpt._read_verified(directory)
        assert state["progress"]["step"] == step and tensors["model.safetensors"]
    assert not (tmp_path / "metrics.json").exists()
