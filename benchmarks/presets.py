"""Train presets end to end with ``scripts/train.py``, as a user would, and record what each run reached.

    python benchmarks/presets.py lora --json lora.json                               # README's command
    python benchmarks/presets.py full freeze bitfit lora dora prefix prompt trainer.epochs=1 --json presets.json
    python benchmarks/presets.py lora full --pretrain corpus=reviews --json path.json   # pretrain, then each

Arguments with ``=`` are overrides given to every run. ``--pretrain "<overrides>"`` first runs
``scripts/pretrain.py`` with those overrides (once) and fine-tunes every preset from its ``model/``; each
record then carries the pretraining run's wall time, corpus and masked-token accuracy before/after.

Each preset runs as its own ``train.py`` process
(into a temporary run directory, or ``--work-dir``); its record holds the validation and test metrics of
``metrics.json``, training throughput, what ``train.log`` says of the data (corpus cleaning, split
counts, truncation, the [UNK] rate before and after vocabulary extension) and the trainable-parameter
count, the process's
wall time (start-up, reading and tokenizing the corpus, evaluation and checkpoints included) and peak
resident memory, plus versions, commit and machine (benchmarks/records.py). ``report.py`` renders the
records as the preset table, next to the classical baseline's record (``tfidf_baseline.py --json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.records import append_records, environment  # noqa: E402
from ftcore.cli import fail  # noqa: E402

METRICS = ("accuracy", "f1_macro", "roc_auc", "loss")  # of sequence classification; tagging keeps its own
TAGGING_METRICS = ("entity_f1", "entity_precision", "entity_recall", "per_type", "word_f1", "word_precision",
                   "word_recall", "token_accuracy", "loss")  # fmt: skip
TRAINABLE = re.compile(r"trainable parameters: ([\d,]+) of ([\d,]+)")
DATA = re.compile(r"data: (\{.*\})$", re.M)
VOCAB = re.compile(
    r"vocabulary extended by (\d+) characters and (\d+) words: \[UNK\] rate ([\d.]+)% -> ([\d.]+)%"
)


def scores(split: dict) -> dict:
    """The metrics a record keeps of one split: classification's, or a tagging task's that it has."""
    if "token_accuracy" in split:
        return {k: split[k] for k in TAGGING_METRICS if k in split}
    return {k: split.get(k) for k in METRICS}


def run_preset(preset: str, overrides: list[str], run_dir: Path) -> dict:
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), f"+exp={preset}", *overrides,
               "trainer.progress=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:  # train.py has said why
        fail(f"+exp={preset} failed (exit {os.waitstatus_to_exitcode(status)}); nothing recorded for it")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    trainable, total = TRAINABLE.search(log).groups()
    vocab = VOCAB.search(log)
    return {
        "kind": "preset",
        "preset": preset,
        "overrides": overrides,
        "epochs_completed": metrics["epochs_completed"],
        "steps": metrics["steps"],
        "best_step": metrics["best_step"],
        "data": json.loads(DATA.search(log).group(1)),
        "added_tokens": int(vocab.group(1)) + int(vocab.group(2)) if vocab else 0,
        "added_words": int(vocab.group(2)) if vocab else 0,
        "unk_percent": [float(vocab.group(3)), float(vocab.group(4))] if vocab else None,
        "trainable_parameters": int(trainable.replace(",", "")),
        "total_parameters": int(total.replace(",", "")),
        "metric": metrics["metric"],
        "val": scores(metrics["val"]),
        "test": scores(metrics["test"]),
        "train_samples_per_s": metrics["train_samples_per_s"],
        "precision": metrics["precision"],
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "environment": environment(torch.device(metrics["device"])),
    }


def run_pretraining(overrides: list[str], run_dir: Path) -> dict:
    """``scripts/pretrain.py`` with ``overrides`` into ``run_dir``: what its record says of it."""
    command = [sys.executable, str(ROOT / "scripts" / "pretrain.py"), *overrides, "trainer.progress=false",
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        fail(f"pretraining ({' '.join(overrides)}) failed (exit {os.waitstatus_to_exitcode(status)})")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    return {
        "overrides": overrides,
        "corpus": json.loads(re.search(r"corpus: (\{.*\})$", log, re.M).group(1)),
        "steps": metrics["steps"],
        "masked_accuracy_before": metrics["val_before"]["masked_accuracy"],
        "val": {k: metrics["val"][k] for k in ("masked_accuracy", "perplexity", "loss")},
        "test": {k: metrics["test"][k] for k in ("masked_accuracy", "perplexity", "loss")},
        "train_samples_per_s": metrics["train_samples_per_s"],
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="preset names (conf/exp/), then key=value overrides for all")
    parser.add_argument("--json", type=Path, help="append one record per preset to this JSON list")
    parser.add_argument("--work-dir", type=Path, help="where run directories go (default: a temp dir)")
    parser.add_argument("--pretrain", metavar="OVERRIDES", help="pretrain.py overrides (space-separated); "
                        "the presets then fine-tune its model")  # fmt: skip
    args = parser.parse_args(argv)
    presets = [r for r in args.runs if "=" not in r]
    overrides = [r for r in args.runs if "=" in r]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        pretraining = None
        if args.pretrain is not None:
            pretraining = run_pretraining(args.pretrain.split(), work / "pretrain")
            print(f"pretraining: masked-token accuracy {pretraining['masked_accuracy_before']:.4f} -> "
                  f"{pretraining['val']['masked_accuracy']:.4f}, {pretraining['wall_seconds'] / 60:.1f} min", flush=True)  # fmt: skip
        for preset in presets:
            extra = [] if pretraining is None else [f"model.path={work / 'pretrain' / 'model'}"]
            record = run_preset(preset, overrides + extra, work / preset)
            record["overrides"] = overrides  # (the model path is a temporary directory)
            record["pretraining"] = pretraining
            metric = record["metric"]
            print(f"{preset}: test {metric} {record['test'][metric]:.4f}, val {record['val'][metric]:.4f}, "
                  f"{record['train_samples_per_s']:.1f} samples/s, {record['wall_seconds'] / 60:.1f} min", flush=True)  # fmt: skip
            records.append(record)
            if args.json:  # one at a time: a long sweep keeps what it measured if a later run fails
                append_records(args.json, [record])
    return records


if __name__ == "__main__":
    main()
