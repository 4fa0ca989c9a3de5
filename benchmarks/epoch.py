"""One epoch of real training: ftcore against transformers' ``Trainer`` (+ peft), same data, same settings.

    python benchmarks/epoch.py +exp=lora --json epoch.json          # the review corpus, one epoch each
    python benchmarks/epoch.py +exp=lora --hf-first                 # the Trainer's process runs first
    python benchmarks/epoch.py +exp=full trainer.precision=fp32     # any train.py override applies to both

The config is composed exactly as ``scripts/train.py`` composes it (``conf/``, presets, overrides), with
``trainer.epochs=1``, ``trainer.precision=bf16`` and ``model.pooling=pooler`` (the head transformers'
``BertForSequenceClassification`` has) unless overridden. Both sides then get:

* the same examples and token ids: ftcore's reader, split and tokenizer (vocabulary extension included;
  transformers' embedding matrix grows by the same rows, initialised to the same values as ftcore's, and
  peft trains just those rows through ``trainable_token_indices``, as ftcore does);
* the same hyper-parameters: batch size, learning rate, warmup steps, schedule, weight decay, betas,
  clipping, dropout, LoRA rank/alpha/targets, seed, logging interval. A setting the Trainer side cannot
  reproduce is refused, naming the key (:func:`check_comparable`), rather than compared silently;
* the same malloc setting: ``trainer.retain_memory`` applies to both processes (run the pair with
  ``trainer.retain_memory=false`` to measure that lever);
* each side's best settings for speed: for the ``Trainer``, bf16 autocast, length-grouped sampling
  (``train_sampling_strategy="group_by_length"``), dynamic padding to multiples of 8 and its default
  fused AdamW; for ftcore, what ``scripts/train.py`` does by default (``optim.fused=true`` gives it the
  same fused kernel).

Both are timed by one clock definition: wall time from the first batch to the end of the last optimizer
step, with the data loading, collation and logging each side does (ftcore's loop measures it so; the
Trainer's through callbacks at the start of its first epoch and the end of each step and log). Evaluation
is timed apart, and both are scored by the same ``ftcore.metrics`` code. Each side runs in a fresh Python
process, so neither inherits the other's heap; ``--hf-first`` swaps the order, so pairs can alternate.

Every record carries the work its side did, observed from outside the training code (trainable
parameters, dropout, the learning rate of every optimizer step, the sizes of the batches and a digest of
the token sequences they held), and the pair is refused unless both did the same; plus versions, commit
and machine (benchmarks/records.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_pre_hook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.records import append_records, dropout_profile, environment  # noqa: E402
from benchmarks.throughput import machine  # noqa: E402
from ftcore.cli import CONF_DIR, check_overrides, fail, to_config  # noqa: E402
from ftcore.config import Config, register_configs  # noqa: E402
from ftcore.data.tokenizer import TextTokenizer  # noqa: E402
from ftcore.metrics import compute_metrics  # noqa: E402
from ftcore.model import BertModel  # noqa: E402
from ftcore.optim.schedules import warmup_steps_for  # noqa: E402
from ftcore.train.allocator import retain_freed_memory  # noqa: E402
from ftcore.train.distributed import SINGLE_PROCESS  # noqa: E402
from ftcore.train.experiment import new_token_rows, prepare, seed_everything, train  # noqa: E402
from ftcore.train.precision import resolve_device, resolve_precision  # noqa: E402

DEFAULTS = ["trainer.epochs=1", "trainer.precision=bf16", "model.pooling=pooler"]
HF_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
HF_LORA_TARGETS = ("query", "key", "value")  # module names that are the same in both encoders

# Keys the Trainer side reproduces. The data keys reach it through ftcore's own reader and tokenizer.
HONOURED = {
    *(f"model.{k}" for k in ("name", "path", "classifier_dropout", "extend_vocab", "extend_vocab_min_freq",
                             "extend_vocab_max_new", "extend_vocab_relearn", "extend_vocab_glossary",
                             "extend_vocab_words")),
    *(f"data.{k}" for k in ("name", "train_file", "validation_file", "test_file", "text_field", "text_pair_field",
                            "label_field", "label_sep", "max_length", "max_train_samples", "max_eval_samples",
                            "lowercase", "split_seed", "validation_fraction", "test_fraction", "augment_prob",
                            "pad_to_multiple")),
    *(f"method.{k}" for k in ("r", "alpha", "dropout", "train_pooler", "train_added_tokens")),
    *(f"optim.{k}" for k in ("name", "lr", "weight_decay", "betas", "eps", "schedule", "warmup_ratio", "warmup_steps",
                             "fused")),  # (the Trainer's AdamW is always fused; ftcore's is with optim.fused)
    *(f"trainer.{k}" for k in ("batch_size", "eval_batch_size", "grad_accum", "max_grad_norm", "precision", "device",
                               "seed", "log_every", "progress", "retain_memory")),
}  # fmt: skip
# Keys the comparison needs at one value (or set of values), and why.
REQUIRED = {
    "method.name": (("lora", "full"), "the comparison covers lora and full"),
    "method.targets": (None, f"use some of {list(HF_LORA_TARGETS)}"),  # checked as a subset
    "model.pooling": (("pooler",), "transformers' head uses the pooler"),
    "data.problem": (("single_label",), "the Trainer side trains single-label classification"),
    "data.class_weights": (("none",), "the Trainer's loss has no class weights"),
    "data.resample": (("none",), "the Trainer side samples each example once"),
    "data.augment": (("none",), "the Trainer side has no augmentation"),
    "method.init": (("default",), "peft's default LoRA init"),
    "method.use_rslora": ((False,), "plain LoRA scaling on both sides"),
    "trainer.epochs": (
        (1,),
        "the Trainer keeps its last weights, ftcore its best epoch's: compare one epoch",
    ),
    "trainer.compile": ((False,), "eager on both sides"),
    "model.extend_vocab_init": (("auto", "mean", "gloss"), "added rows both sides can start from alike"),
    "resume": ((None,), "a fresh run on both sides"),
}


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


def flat(cfg: Config) -> dict[str, object]:
    """``group.key -> value`` for every setting (``resume`` as itself)."""
    out = {}
    for group, values in dataclasses.asdict(cfg).items():
        if isinstance(values, dict):
            out.update({f"{group}.{k}": v for k, v in values.items()})
        else:
            out[group] = values
    return out


def check_comparable(cfg: Config) -> None:
    """Refuse, in one line naming each key, every setting the Trainer side cannot reproduce: a key it
    does not honour must keep its default, and a few must have the one value both sides share."""
    values, defaults = flat(cfg), flat(Config())
    problems = []
    for key, value in values.items():
        if key in REQUIRED:
            allowed, why = REQUIRED[key]
            if key == "method.targets":
                ok = cfg.method.name != "lora" or set(value) <= set(HF_LORA_TARGETS)
            else:
                ok = value in allowed
            if not ok:
                problems.append(f"{key}={value} ({why})")
        elif key not in HONOURED and value != defaults[key]:
            problems.append(f"{key}={value} (the Trainer side has no counterpart)")
    if problems:
        fail("not comparable: " + "; ".join(problems))


# --- the work each side does, observed from outside -----------------------------------------------


class WorkProbe:
    """Records what one side's training does: the learning rate of every optimizer step, and the token
    ids and attention mask of every training batch the model is called with.

    Hooks only keep references during training (the digest is taken afterwards), so they cost the timed
    run next to nothing. ``watch(model)`` follows a model built here; ``capture_first_model()`` follows
    the first module called in training mode (the model a training function builds inside itself).
    """

    def __init__(self):
        self.lrs: list[float] = []
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.model: torch.nn.Module | None = None
        self._handles = [register_optimizer_step_pre_hook(self._on_step)]

    def _on_step(self, optimizer, args, kwargs) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def _on_batch(self, module, args, kwargs) -> None:
        if module.training:
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            self.batches.append((ids, torch.ones_like(ids) if mask is None else mask))

    def watch(self, model: torch.nn.Module) -> None:
        self.model = model
        self._handles.append(model.register_forward_pre_hook(self._on_batch, with_kwargs=True))

    def capture_first_model(self) -> None:
        def first(module, args):
            if module.training:
                self._handles.remove(handle)
                handle.remove()
                self.watch(module)
                self._on_batch(module, args, {})

        handle = register_module_forward_pre_hook(first)
        self._handles.append(handle)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def work(self) -> dict:
        sequences = sorted(
            hashlib.sha256(row[m.bool()].cpu().numpy().astype(np.int64).tobytes()).hexdigest()
            for ids, mask in self.batches
            for row, m in zip(ids, mask)
        )
        return {
            "trainable_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "dropout": dropout_profile(self.model),
            "optimizer_steps": len(self.lrs),
            "lr_per_step": self.lrs,
            "batch_sizes": {
                str(k): n for k, n in sorted(Counter(len(ids) for ids, _ in self.batches).items())
            },
            "tokens": int(sum(int(mask.sum()) for _, mask in self.batches)),
            "sequences": hashlib.sha256("".join(sequences).encode()).hexdigest()[:16],
        }


def check_same_work(records: list[dict]) -> None:
    """Refuse a pair whose sides did different work (one line naming what differs)."""
    a, b = (r["work"] for r in records)
    differ = [f"{k}: {a[k]} vs {b.get(k)}" for k in a if k != "lr_per_step" and a[k] != b.get(k)]
    lrs = list(zip(a["lr_per_step"], b["lr_per_step"]))
    if len(a["lr_per_step"]) != len(b["lr_per_step"]):
        differ.append(f"lr_per_step: {len(a['lr_per_step'])} vs {len(b['lr_per_step'])} steps")
    elif bad := [i for i, (x, y) in enumerate(lrs) if not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)]:
        differ.append(f"lr_per_step: step {bad[0] + 1} at {lrs[bad[0]][0]:.6g} vs {lrs[bad[0]][1]:.6g}")
    if differ:
        fail("the two sides did different work: " + "; ".join(differ))


# --- ftcore ----------------------------------------------------------------------------------------


def run_ftcore(cfg: Config, work: Path) -> dict:
    probe = WorkProbe()
    probe.capture_first_model()
    start = time.perf_counter()
    try:
        result = train(cfg, work / "ftcore")
    finally:
        probe.close()
    wall = time.perf_counter() - start
    return {
        "impl": "ftcore",
        "train_seconds": result["train_seconds"],
        "eval_seconds": result["wall_seconds"] - result["train_seconds"],
        "wall_seconds": wall,
        "train_samples_per_s": result["train_samples_per_s"],
        "val": result["val"],
        "test": result["test"],
        "work": probe.work(),
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


def build_hf_model(cfg: Config, model_dir: Path, num_labels: int, tokenizer: TextTokenizer):
    import peft
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=num_labels, attn_implementation="sdpa",
        classifier_dropout=cfg.model.classifier_dropout,
    )  # fmt: skip
    old = model.config.vocab_size
    added = list(range(old, tokenizer.vocab_size))
    if added:
        model.resize_token_embeddings(tokenizer.vocab_size, mean_resizing=False)
        # the rows ftcore's side starts from, made as it makes them
        ours = BertModel.from_pretrained(model_dir)
        ours.add_tokens(*new_token_rows(cfg.model, tokenizer, ours, cfg.data.problem))
        with torch.no_grad():
            model.get_input_embeddings().weight[old:] = ours.embeddings.added.weight[-len(added) :]
    if cfg.method.name == "lora":
        lora = peft.LoraConfig(
            task_type="SEQ_CLS", r=cfg.method.r, lora_alpha=cfg.method.alpha, lora_dropout=cfg.method.dropout,
            target_modules=list(cfg.method.targets),
            trainable_token_indices={"word_embeddings": added} if added and cfg.method.train_added_tokens else None,
            modules_to_save=["classifier", "pooler"] if cfg.method.train_pooler else None,
        )  # fmt: skip
        model = peft.get_peft_model(model, lora)
    return model


def training_clock():
    """A ``TrainerCallback`` timing the Trainer as ftcore's loop times itself: from the start of the first
    epoch (before its first batch is loaded) to the end of the last optimizer step or step log."""
    import transformers

    class TrainingClock(transformers.TrainerCallback):
        start: float | None = None
        end: float | None = None

        def on_epoch_begin(self, args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:  # a step's log, not the summary after training
                self.end = time.perf_counter()

        @property
        def seconds(self) -> float:
            return self.end - self.start

    return TrainingClock()


def run_hf(cfg: Config, work: Path) -> dict:
    import transformers

    transformers.logging.set_verbosity_error()

    start = time.perf_counter()
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    seed_everything(cfg.trainer.seed)
    tokenizer, data, model_dir = prepare(cfg, SINGLE_PROCESS)
    model = build_hf_model(cfg, model_dir, data.labels.num_labels, tokenizer)
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
        eval_strategy="no", save_strategy="no", logging_strategy="steps", logging_steps=cfg.trainer.log_every,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    clock = training_clock()
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train_set, callbacks=[clock],
        data_collator=lambda f: pad_batch(f, tokenizer.pad_id, cfg.data.pad_to_multiple),
    )  # fmt: skip
    probe = WorkProbe()
    probe.watch(model)
    try:
        trainer.train()
    finally:
        probe.close()
    eval_start = time.perf_counter()
    metrics = {}
    for name in ("validation", "test"):
        # (with length grouping, the Trainer predicts in its own order: labels come back alongside)
        output = trainer.predict(EncodedDataset(data.splits[name]))
        probs = torch.from_numpy(np.asarray(output.predictions, dtype=np.float32)).softmax(-1).numpy()
        metrics[name] = compute_metrics("single_label", output.label_ids, probs, data.labels.num_labels)
    return {
        "impl": "hf",
        "train_seconds": clock.seconds,
        "eval_seconds": time.perf_counter() - eval_start,
        "wall_seconds": time.perf_counter() - start,
        "train_samples_per_s": len(train_set) * cfg.trainer.epochs / clock.seconds,
        "val": metrics["validation"],
        "test": metrics["test"],
        "optimizer": args.optim,
        "work": probe.work(),
    }


# --- main -------------------------------------------------------------------------------------------


def run_side(name: str, cfg: Config, overrides: list[str], work: Path) -> dict:
    """One side's record, measured in this process."""
    device = resolve_device(cfg.trainer.device)
    if name == "hf" and cfg.trainer.retain_memory and device.type == "cpu":
        retain_freed_memory()  # what ftcore's loop does for itself under the same key
    record = {"ftcore": run_ftcore, "hf": run_hf}[name](cfg, work)
    record.update(
        method=cfg.method.name, precision=cfg.trainer.precision, epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size, seed=cfg.trainer.seed, overrides=overrides,
        retain_memory=cfg.trainer.retain_memory and device.type == "cpu", machine=machine(device),
        environment=environment(device), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )  # fmt: skip
    print(f"{name:>7}: train {record['train_seconds']:.1f} s ({record['train_samples_per_s']:.1f} samples/s), "
          f"eval {record['eval_seconds']:.1f} s, test accuracy {record['test']['accuracy']:.4f}, "
          f"macro F1 {record['test']['f1_macro']:.4f}, peak RSS {record['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return record


def run_child(name: str, overrides: list[str], work: Path) -> dict:
    """Run one side in a fresh interpreter, so neither inherits the other's heap or allocator settings."""
    out = work / f"{name}-record.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--record", str(out),
               "--work-dir", str(work), *overrides]  # fmt: skip
    done = subprocess.run(command, check=False)
    if done.returncode != 0:  # the child has said why (one line for a user error)
        sys.exit(done.returncode)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="append the two records to this JSON list")
    parser.add_argument("--only", choices=("ftcore", "hf"), help="run one side only, in this process")
    parser.add_argument("--hf-first", action="store_true", help="run the Trainer's process first")
    parser.add_argument("--work-dir", type=Path, help="where run directories go (default: a temp dir)")
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)  # a child's output file
    args, overrides = parser.parse_known_args(argv)
    cfg = compose(overrides)
    check_comparable(cfg)
    cfg.trainer.progress = False
    order = ("hf", "ftcore") if args.hf_first else ("ftcore", "hf")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        if args.only:
            records = [run_side(args.only, cfg, overrides, work)]
        else:
            records = [run_child(name, overrides, work) for name in order]
            for position, record in enumerate(records):
                record["ran_first"] = position == 0
            records.sort(key=lambda r: r["impl"] != "ftcore")  # ftcore's record first, as the tables read
            check_same_work(records)
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
