"""A whole run, wired together: config -> data -> model -> method -> ``fit`` -> run directory.

The run directory holds everything needed to use the model later without the original command:

    .hydra/config.yaml     the composed config (written by Hydra)
    tokenizer/             the tokenizer, including any vocabulary extension
    labels.json            the label <-> id map built from the training split
    checkpoints/{last,best}/
    metrics.json           final validation and test metrics (written last: the run is complete)
    tb/, train.log
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from ftcore.config import Config
from ftcore.data.dataset import TaskData, build_task_data, read_splits
from ftcore.data.tokenizer import TextTokenizer
from ftcore.errors import ConfigError
from ftcore.methods import apply_method, trainable_report
from ftcore.model import SequenceClassifier
from ftcore.model.checkpoint_io import save_json
from ftcore.train.distributed import DistInfo, barrier, init_distributed, shutdown
from ftcore.train.logging import attach_log_file, log
from ftcore.train.loop import fit
from ftcore.train.precision import resolve_device, resolve_precision

# Settings that change how a run reports, not what it computes: resuming may change them.
COSMETIC_KEYS = {"resume": None, "trainer": ("progress", "log_every", "threads")}


def fingerprint(cfg: Config) -> dict:
    """The config as a dict, without the keys a resumed run may change."""
    d = dataclasses.asdict(cfg)
    d.pop("resume")
    for key in COSMETIC_KEYS["trainer"]:
        d["trainer"].pop(key)
    return d


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: Config, model_dir: Path, data: TaskData, tokenizer: TextTokenizer) -> SequenceClassifier:
    """Pretrained encoder + new head for the task, vocabulary grown if needed, method applied."""
    weights = None if data.class_weights is None else torch.from_numpy(data.class_weights)
    model = SequenceClassifier.from_pretrained(
        model_dir,
        num_labels=data.labels.num_labels,
        problem=data.labels.problem,
        pooling=cfg.model.pooling,
        classifier_dropout=cfg.model.classifier_dropout,
        class_weights=weights,
        label_smoothing=cfg.model.label_smoothing,
    )
    model.encoder.add_tokens(tokenizer.vocab_size - model.encoder.config.vocab_size)
    prompt_ids = None
    if cfg.method.prompt_init == "text":
        prompt_ids = tokenizer.encode_batch([cfg.method.prompt_init_text], max_length=512)[0][0][
            1:-1
        ].tolist()
    return apply_method(model, cfg.method, prompt_init_ids=prompt_ids, max_length=cfg.data.max_length)


def prepare(cfg: Config, dist: DistInfo) -> tuple[TextTokenizer, TaskData, Path]:
    """Tokenizer (extended when asked) and encoded data of a run."""
    model_dir = cfg.model.resolve_path()
    tokenizer = TextTokenizer.from_dir(model_dir, lowercase=cfg.data.lowercase)
    splits = read_splits(cfg.data)
    if cfg.model.extend_vocab:
        texts = [t for e in splits[0]["train"] for t in (e.text, e.text_pair) if t]
        before = tokenizer.unk_rate(texts[:2000])
        added = tokenizer.extend_vocabulary(
            texts, cfg.model.extend_vocab_min_freq, cfg.model.extend_vocab_max_new
        )
        if dist.is_main:
            log.info("vocabulary extended by %d tokens: [UNK] rate %.1f%% -> %.1f%%", len(added), 100 * before,
                     100 * tokenizer.unk_rate(texts[:2000]))  # fmt: skip
    data = build_task_data(cfg.data, tokenizer, splits=splits)
    if dist.is_main:
        log.info("data: %s", json.dumps(data.stats, ensure_ascii=False))
    return tokenizer, data, model_dir


def train(cfg: Config, run_dir: str | Path) -> dict | None:
    """Run one training job into ``run_dir``; returns the metrics written to metrics.json (None if interrupted)."""
    run_dir = Path(run_dir)
    cfg.validate()
    if cfg.resume is not None and not (Path(cfg.resume) / "checkpoints").is_dir():
        raise ConfigError(f"resume={cfg.resume}: not a run directory with checkpoints/ to continue from")
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    dist, device = init_distributed(resolve_device(cfg.trainer.device))
    if not dist.is_main:
        log.setLevel(logging.ERROR)  # one voice: rank 0 reports, the others only on errors
    try:
        precision = resolve_precision(cfg.trainer.precision, device)
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            attach_log_file(run_dir)
        seed_everything(cfg.trainer.seed)
        tokenizer, data, model_dir = prepare(cfg, dist)
        model = build_model(cfg, model_dir, data, tokenizer)
        if dist.is_main:
            log.info("model: %s (%s pooling); %s", model_dir, cfg.model.pooling, trainable_report(model))
            tokenizer.save(run_dir / "tokenizer")
            data.labels.save(run_dir / "labels.json")
        extra = {"base_model": str(model_dir), "vocab_size": tokenizer.vocab_size}
        result = fit(
            model, data, cfg.trainer, cfg.optim, run_dir, device, precision, fingerprint(cfg),
            pad_id=tokenizer.pad_id, pad_to_multiple=cfg.data.pad_to_multiple,
            augment_prob=cfg.data.augment_prob if cfg.data.augment != "none" else 0.0,
            resume=cfg.resume is not None, dist=dist, extra_state=extra,
        )  # fmt: skip
        if result is not None and dist.is_main:
            save_json(result, run_dir / "metrics.json")
            log.info("test %s=%.4f (best step %s); metrics in %s", result["metric"], result["test"].get(result["metric"]) or 0.0,
                     result["best_step"], run_dir / "metrics.json")  # fmt: skip
        barrier(dist)
        return result
    finally:
        shutdown(dist)
