"""One epoch of real training: ftcore against transformers' ``Trainer`` (+ peft), same data, same settings.

    python benchmarks/epoch.py +exp=lora --json epoch.json          # the review corpus, one epoch each
    python benchmarks/epoch.py +exp=full trainer.precision=fp32     # any train.py override applies to both

The config is composed exactly as ``scripts/train.py`` composes it (``conf/``, presets, overrides), with
``trainer.epochs=1``, ``trainer.precision=bf16`` and ``model.pooling=pooler`` (the head transformers'
``BertForSequenceClassification`` has) unless overridden. Both sides then get:

* the same examples and token ids: ftcore's reader, split and tokenizer (vocabulary extension included;
  transformers' embedding matrix grows by the same rows, initialised to the same mean embedding, and
  peft trains just those rows through ``trainable_token_indices``, as ftcore does);
* the same hyper-parameters: batch size, learning rate, warmup steps, schedule, weight decay, betas,
  clipping, dropout, LoRA rank/alpha/targets, seed;
* each side's best settings for speed: for the ``Trainer``, bf16 autocast, length-grouped sampling
  (``train_sampling_strategy="group_by_length"``), dynamic padding to multiples of 8 and its default
  fused AdamW; for ftcore, what ``scripts/train.py`` does by default.

It reports training time (the epoch's steps, data loading included), evaluation time, peak resident
memory and the validation and test metrics of each, computed by the same ``ftcore.metrics`` code. Each
side runs in a fresh Python process (ftcore first, then the ``Trainer``), so neither inherits the other's
heap or allocator settings: ftcore's training loop tells glibc's malloc to keep freed memory
(``trainer.retain_memory``); ``--hf-retain-memory`` gives the Trainer's process the same setting, to
separate that lever from the rest. Rerun to see the machine's drift.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import append_records  # noqa: E402
from benchmarks.throughput import machine  # noqa: E402
from ftcore.cli import CONF_DIR, check_overrides, fail, to_config  # noqa: E402
from ftcore.config import Config, register_configs  # noqa: E402
from ftcore.metrics import compute_metrics  # noqa: E402
from ftcore.optim.schedules import warmup_steps_for  # noqa: E402
from ftcore.train.allocator import retain_freed_memory  # noqa: E402
from ftcore.train.distributed import SINGLE_PROCESS  # noqa: E402
from ftcore.train.experiment import prepare, seed_everything, train  # noqa: E402
from ftcore.train.precision import resolve_device, resolve_precision  # noqa: E402

DEFAULTS = ["trainer.epochs=1", "trainer.precision=bf16", "model.pooling=pooler"]
HF_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
HF_LORA_TARGETS = ("query", "key", "value")  # module names that are the same in both encoders


def compose(overrides: list[str]) -> Config:
    from hydra import compose, initialize_config_dir

    register_configs()
    keys = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    overrides = [d for d in DEFAULTS if d.split("=", 1)[0] not in keys] + overrides
    check_overrides(overrides)  # a bad key or value: one line, exit 2, as in scripts/train.py
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    cfg.validate()
    return cfg


def check_comparable(cfg: Config) -> None:
    """Refuse settings the transformers side cannot reproduce, rather than compare different jobs."""
    problems = []
    if cfg.method.name not in ("lora", "full"):
        problems.append(f"method.name={cfg.method.name} (the comparison covers lora and full)")
    if cfg.method.name == "lora" and not set(cfg.method.targets) <= set(HF_LORA_TARGETS):
        problems.append(f"method.targets={list(cfg.method.targets)} (use some of {list(HF_LORA_TARGETS)})")
    if cfg.model.pooling != "pooler":
        problems.append(f"model.pooling={cfg.model.pooling} (transformers' head uses the pooler)")
    if cfg.optim.head_lr is not None or cfg.optim.lr_overrides or cfg.optim.amsgrad:
        problems.append("optim.head_lr / lr_overrides / amsgrad (a single-group AdamW on both sides)")
    data = cfg.data
    if (
        data.problem != "single_label"
        or "none" != data.class_weights
        or "none" != data.augment
        or "none" != data.resample
    ):
        problems.append("data: single_label, class_weights=none, resample=none, augment=none")
    if cfg.method.name == "lora" and (cfg.method.init != "default" or cfg.method.use_rslora):
        problems.append("method.init=default, use_rslora=false")
    if problems:
        fail("not comparable: " + "; ".join(problems))


# --- ftcore ----------------------------------------------------------------------------------------


def run_ftcore(cfg: Config, work: Path) -> dict:
    start = time.perf_counter()
    result = train(cfg, work / "ftcore")
    wall = time.perf_counter() - start
    return {
        "impl": "ftcore",
        "train_seconds": result["train_seconds"],
        "eval_seconds": result["wall_seconds"] - result["train_seconds"],
        "wall_seconds": wall,
        "train_samples_per_s": result["train_samples_per_s"],
        "val": result["val"],
        "test": result["test"],
    }


# --- transformers Trainer (+ peft) ------------------------------------------------------------------


class EncodedDataset(torch.utils.data.Dataset):
    """ftcore's encoded split as the list of dicts the ``Trainer`` expects."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        ids, _ = self.split.encoded[i]
        return {"input_ids": ids.tolist(), "labels": int(self.split.labels[i])}


def pad_batch(features: list[dict], pad_id: int, multiple: int) -> dict:
    """Dynamic padding to the longest example of the batch (rounded up to ``multiple``)."""
    longest = max(len(f["input_ids"]) for f in features)
    width = -(-longest // multiple) * multiple
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[row, : len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}


def build_hf_model(cfg: Config, model_dir: Path, num_labels: int, vocab_size: int):
    import peft
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=num_labels, attn_implementation="sdpa",
        classifier_dropout=cfg.model.classifier_dropout,
    )  # fmt: skip
    old = model.config.vocab_size
    added = list(range(old, vocab_size))
    if added:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
        with torch.no_grad():  # ftcore's extend_vocab_init=mean
            weight = model.get_input_embeddings().weight
            weight[old:] = weight[:old].mean(dim=0)
    if cfg.method.name == "lora":
        lora = peft.LoraConfig(
            task_type="SEQ_CLS", r=cfg.method.r, lora_alpha=cfg.method.alpha, lora_dropout=cfg.method.dropout,
            target_modules=list(cfg.method.targets),
            trainable_token_indices={"word_embeddings": added} if added and cfg.method.train_added_tokens else None,
            modules_to_save=["classifier", "pooler"] if cfg.method.train_pooler else None,
        )  # fmt: skip
        model = peft.get_peft_model(model, lora)
    return model


def run_hf(cfg: Config, work: Path) -> dict:
    import transformers

    transformers.logging.set_verbosity_error()

    start = time.perf_counter()
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    seed_everything(cfg.trainer.seed)
    tokenizer, data, model_dir = prepare(cfg, SINGLE_PROCESS)
    model = build_hf_model(cfg, model_dir, data.labels.num_labels, tokenizer.vocab_size)
    train_set = EncodedDataset(data.splits["train"])
    window = cfg.trainer.batch_size * cfg.trainer.grad_accum
    total_steps = cfg.trainer.epochs * -(-len(train_set) // window)
    args = transformers.TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=cfg.trainer.batch_size,
        per_device_eval_batch_size=cfg.trainer.eval_batch_size, gradient_accumulation_steps=cfg.trainer.grad_accum,
        num_train_epochs=cfg.trainer.epochs, learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
        adam_beta1=cfg.optim.betas[0], adam_beta2=cfg.optim.betas[1], adam_epsilon=cfg.optim.eps,
        lr_scheduler_type=HF_SCHEDULES[cfg.optim.schedule],
        warmup_steps=warmup_steps_for(total_steps, cfg.optim.warmup_steps, cfg.optim.warmup_ratio),
        max_grad_norm=cfg.trainer.max_grad_norm or 0.0, bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=device.type == "cpu", train_sampling_strategy="group_by_length", seed=cfg.trainer.seed,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train_set,
        data_collator=lambda f: pad_batch(f, tokenizer.pad_id, cfg.data.pad_to_multiple),
    )  # fmt: skip
    trained = trainer.train()
    eval_start = time.perf_counter()
    metrics = {}
    for name in ("validation", "test"):
        # (with length grouping, the Trainer predicts in its own order: labels come back alongside)
        output = trainer.predict(EncodedDataset(data.splits[name]))
        probs = torch.from_numpy(np.asarray(output.predictions, dtype=np.float32)).softmax(-1).numpy()
        metrics[name] = compute_metrics("single_label", output.label_ids, probs, data.labels.num_labels)
    return {
        "impl": "hf",
        "train_seconds": trained.metrics["train_runtime"],
        "eval_seconds": time.perf_counter() - eval_start,
        "wall_seconds": time.perf_counter() - start,
        "train_samples_per_s": len(train_set) * cfg.trainer.epochs / trained.metrics["train_runtime"],
        "val": metrics["validation"],
        "test": metrics["test"],
        "optimizer": args.optim,
    }


# --- main -------------------------------------------------------------------------------------------


def run_side(name: str, cfg: Config, overrides: list[str], work: Path, hf_retain_memory: bool) -> dict:
    """One side's record, measured in this process."""
    if name == "hf" and hf_retain_memory:
        retain_freed_memory()
    record = {"ftcore": run_ftcore, "hf": run_hf}[name](cfg, work)
    record.update(
        method=cfg.method.name, precision=cfg.trainer.precision, epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size, seed=cfg.trainer.seed, overrides=overrides,
        machine=machine(resolve_device(cfg.trainer.device)),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )  # fmt: skip
    if name == "hf":
        record["hf_retain_memory"] = hf_retain_memory
    print(f"{name:>7}: train {record['train_seconds']:.1f} s ({record['train_samples_per_s']:.1f} samples/s), "
          f"eval {record['eval_seconds']:.1f} s, test accuracy {record['test']['accuracy']:.4f}, "
          f"macro F1 {record['test']['f1_macro']:.4f}, peak RSS {record['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return record


def run_child(name: str, overrides: list[str], work: Path, hf_retain_memory: bool) -> dict:
    """Run one side in a fresh interpreter, so neither inherits the other's heap or allocator settings."""
    out = work / f"{name}-record.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--record", str(out),
               "--work-dir", str(work), *(["--hf-retain-memory"] if hf_retain_memory else []), *overrides]  # fmt: skip
    done = subprocess.run(command, check=False)
    if done.returncode != 0:  # the child has said why (one line for a user error)
        sys.exit(done.returncode)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="append the two records to this JSON list")
    parser.add_argument("--only", choices=("ftcore", "hf"), help="run one side only, in this process")
    parser.add_argument("--work-dir", type=Path, help="where run directories go (default: a temp dir)")
    parser.add_argument(
        "--hf-retain-memory", action="store_true",
        help="give the Trainer's process ftcore's malloc setting too (trainer.retain_memory)",
    )  # fmt: skip
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)  # a child's output file
    args, overrides = parser.parse_known_args(argv)
    cfg = compose(overrides)
    check_comparable(cfg)
    cfg.trainer.progress = False
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        if args.only:
            records = [run_side(args.only, cfg, overrides, work, args.hf_retain_memory)]
        else:
            records = [run_child(name, overrides, work, args.hf_retain_memory) for name in ("ftcore", "hf")]
    if args.record:
        args.record.write_text(json.dumps(records[0]))
    if len(records) == 2:
        print(
            f"ftcore / hf training time: {records[1]['train_seconds'] / records[0]['train_seconds']:.2f}x faster"
        )
    if args.json:
        append_records(args.json, records)
    return records


if __name__ == "__main__":
    main()
