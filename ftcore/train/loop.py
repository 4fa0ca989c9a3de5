"""The training loop, visible: ``fit`` trains with evaluation, checkpoints and early stopping;
``evaluate`` scores a split.

One optimizer step = one *window* of ``batch_size × grad_accum`` examples (per process), run as
``grad_accum`` micro-batches whose losses are weighted by their share of the window, so accumulating
4 batches of 2 gives the same gradient as one batch of the same 8 examples (with class weights, the
weighted mean is taken per micro-batch, so this holds only approximately). Everything random is seeded from ``trainer.seed`` and saved in checkpoints, so a resumed run
ends with the same weights as one never stopped.
"""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ftcore.config import OptimConfig, TrainerConfig
from ftcore.data.batching import collate, epoch_batches, padding_fraction
from ftcore.data.dataset import LabelSpace, Split, TaskData
from ftcore.data.tokenizer import EncodedTexts
from ftcore.errors import CheckpointError, FtcoreError
from ftcore.methods.apply import adapter_state
from ftcore.metrics import DEFAULT_METRIC, LOWER_IS_BETTER, UndefinedMetricWarning, compute_metrics
from ftcore.model.heads import SequenceClassifier
from ftcore.optim import AdamW, Schedule, param_groups
from ftcore.optim.schedules import warmup_steps_for
from ftcore.train import checkpoint as ckpt
from ftcore.train.allocator import retain_freed_memory
from ftcore.train.distributed import SINGLE_PROCESS, DistInfo, barrier, broadcast_object, gather_objects
from ftcore.train.logging import Reporter, log
from ftcore.train.precision import LossScaler, autocast


class TrainingDiverged(FtcoreError):
    """The loss or the gradients became NaN/inf (fp32/bf16); the run stops, checkpoints stay as they were."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's state.json."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    window: int = 0  # next accumulation window within the epoch
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_eval_step: int = -1
    early_stopped: bool = False
    train_seconds: float = 0.0
    train_samples: int = 0
    train_tokens: int = 0


def batch_to(batch: dict, device: torch.device) -> dict:
    return {k: None if v is None else v.to(device, non_blocking=True) for k, v in batch.items()}


def outputs_from_logits(problem: str, logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (softmax) | label probabilities (sigmoid) | regression predictions."""
    logits = logits.float()
    if problem == "single_label":
        return logits.softmax(-1)
    if problem == "multi_label":
        return logits.sigmoid()
    return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


@torch.inference_mode()
def predict(
    model: SequenceClassifier,
    encoded: EncodedTexts,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    labels: np.ndarray | None = None,
    dist: DistInfo = SINGLE_PROCESS,
) -> tuple[np.ndarray, float | None]:
    """Model outputs for every example, in example order, and the mean loss when ``labels`` are given.

    Outputs are class probabilities | label probabilities | predictions (see ``outputs_from_logits``).
    Batches are sorted by length (little padding); under DDP each rank scores a share and all ranks
    end with the same gathered result.
    """
    was_training = model.training
    model.eval()
    batches = epoch_batches(
        encoded.lengths, batch_size, 0, 0, shuffle=False, world_size=dist.world_size, rank=dist.rank
    )
    indices, outputs, loss_sum = [], [], torch.zeros((), device=device)
    for idx in batches:
        batch = batch_to(collate(encoded, idx, labels, pad_id), device)
        with autocast(device, precision):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if labels is not None:
            loss_sum += model.loss(logits, batch["labels"]) * len(idx)
        indices.append(idx)
        outputs.append(outputs_from_logits(model.problem, logits))
    local = (
        np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        torch.cat(outputs).cpu().numpy() if outputs else None,
        loss_sum.item(),
    )
    gathered = gather_objects(local, dist)
    order = np.concatenate([g[0] for g in gathered])
    stacked = np.concatenate([g[1] for g in gathered if g[1] is not None])
    result = np.empty_like(stacked)
    result[order] = stacked
    model.train(was_training)
    loss = sum(g[2] for g in gathered) / len(encoded) if labels is not None else None
    return result, loss


def evaluate(
    model: SequenceClassifier,
    split: Split,
    labels: LabelSpace,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    dist: DistInfo = SINGLE_PROCESS,
) -> tuple[dict, np.ndarray]:
    """Metrics of ``split`` (see ``ftcore.metrics.compute_metrics``, plus its mean ``loss``) and the outputs."""
    outputs, loss = predict(model, split.encoded, batch_size, device, precision, pad_id, split.labels, dist)
    metrics = compute_metrics(labels.problem, split.labels, outputs, num_classes=labels.num_labels)
    metrics["loss"] = loss
    return metrics, outputs


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (then it saves and stops)."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers, no graceful stop
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _config_diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key} ({a!r} in the checkpoint, {b!r} now)")
    return diffs


def fit(
    model: SequenceClassifier,
    data: TaskData,
    trainer: TrainerConfig,
    optim: OptimConfig,
    run_dir: Path,
    device: torch.device,
    precision: str,
    fingerprint: dict,
    pad_id: int = 0,
    pad_to_multiple: int = 8,
    augment_prob: float = 0.0,
    resume: bool = False,
    dist: DistInfo = SINGLE_PROCESS,
    extra_state: dict | None = None,
) -> dict | None:
    """Train ``model`` on ``data.splits['train']``; return the final metrics, or None if interrupted.

    ``fingerprint`` (the run's config) is stored in checkpoints; resuming under a different one is
    refused. ``extra_state`` goes into every checkpoint's state.json (e.g. the base-model pointer).
    """
    run_dir = Path(run_dir)
    wall_start = time.perf_counter()
    train, val = data.splits["train"], data.splits["validation"]
    problem = data.labels.problem
    metric = trainer.metric or DEFAULT_METRIC[problem]
    maximize = metric not in LOWER_IS_BETTER

    # --- set-up ------------------------------------------------------------------------------------
    model.to(device)
    lengths = train.encoded.lengths
    # A window holds the examples of one optimizer step, split into micro-batches of batch_size.
    window_size = trainer.batch_size * trainer.grad_accum

    def epoch_windows(epoch: int, rank: int = dist.rank) -> list[list[np.ndarray]]:
        """A rank's windows of one epoch, each cut into micro-batches of ``batch_size``."""
        bs = trainer.batch_size
        windows = epoch_batches(
            lengths, window_size, epoch, trainer.seed, world_size=dist.world_size, rank=rank
        )
        return [[w[i : i + bs] for i in range(0, len(w), bs)] for w in windows]

    first_windows = epoch_windows(0)
    windows_per_epoch = len(first_windows)
    total_steps = trainer.max_steps or trainer.epochs * windows_per_epoch
    schedule = Schedule(
        optim.schedule, total_steps, warmup_steps_for(total_steps, optim.warmup_steps, optim.warmup_ratio)
    )
    overrides = dict(optim.lr_overrides)
    if optim.head_lr is not None:
        overrides = {r"^head\.": optim.head_lr, **overrides}
    optimizer = AdamW(
        param_groups(model, optim.lr, optim.weight_decay, overrides),
        betas=tuple(optim.betas), eps=optim.eps, amsgrad=optim.amsgrad,
    )  # fmt: skip
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    names = {p: n for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_only = len(trainable) < len(names)  # a frozen base is not copied into checkpoints
    adapter_names = set(adapter_state(model))
    scaler = LossScaler(enabled=precision == "fp16")
    ddp = DistributedDataParallel(model) if dist.enabled else model
    if trainer.compile:  # compiled lazily, at the first step (and again for new shapes)
        ddp = torch.compile(ddp)
    if device.type == "cpu" and trainer.retain_memory and retain_freed_memory():
        log.info("CPU: malloc keeps freed memory for reuse (trainer.retain_memory=true)")
    progress = Progress()
    last_dir, best_dir = run_dir / "checkpoints" / "last", run_dir / "checkpoints" / "best"

    def model_tensors() -> dict[str, torch.Tensor]:
        state = model.state_dict()
        return {n: state[n] for n in adapter_names} if trainable_only else state

    saved_at = [None]  # step of the newest checkpoint on disk

    def save_last() -> None:
        if saved_at[0] == progress.step:
            return  # this step is already on disk
        saved_at[0] = progress.step
        rng_json, rng_tensors = ckpt.rng_state()
        per_rank = gather_objects((rng_json, rng_tensors), dist)
        if dist.is_main:
            opt_json, opt_tensors = ckpt.optimizer_state(optimizer, names)
            state = {
                "progress": asdict(progress),
                "config": fingerprint,
                "optimizer": opt_json,
                "scaler": scaler.state_dict(),
                "rng": [r[0] for r in per_rank],
                "trainable_only": trainable_only,
                **(extra_state or {}),
            }
            rng = {f"rank{r}.{k}": v for r, (_, tensors) in enumerate(per_rank) for k, v in tensors.items()}
            ckpt.save_checkpoint(last_dir, model_tensors(), state, opt_tensors, rng)

    if resume:
        found = ckpt.load_latest(last_dir, log=log.warning)
        if found is None:
            log.warning("no complete checkpoint in %s: training starts from step 0", last_dir)
        else:
            state, tensors = found
            diffs = _config_diff(state["config"], fingerprint)
            if diffs:
                raise CheckpointError(
                    f"{last_dir} was written by a different run config: " + "; ".join(diffs)
                )
            if len(state["rng"]) != dist.world_size:
                raise CheckpointError(
                    f"{last_dir} was written by {len(state['rng'])} processes, this run has {dist.world_size}"
                )
            ckpt.load_model_tensors(model, tensors["model.safetensors"], trainable_only, last_dir)
            ckpt.load_optimizer_state(
                optimizer, names, state["optimizer"], tensors["optimizer.safetensors"], str(last_dir)
            )
            prefix = f"rank{dist.rank}."
            mine = {
                k.removeprefix(prefix): v
                for k, v in tensors["rng.safetensors"].items()
                if k.startswith(prefix)
            }
            ckpt.set_rng_state(state["rng"][dist.rank], mine)
            scaler.load_state_dict(state["scaler"])
            progress = Progress(**state["progress"])
            saved_at[0] = progress.step
            log.info("resumed from %s at step %d (epoch %d)", last_dir, progress.step, progress.epoch)

    reporter = Reporter(run_dir, dist.is_main, trainer.progress, total_steps, progress.step)
    padding = padding_fraction(lengths, [b for w in first_windows for b in w], pad_to_multiple)
    log.info(
        "training: %d examples, %d steps (%d per epoch, batch %d x accum %d x %d processes), precision %s on %s; "
        "padding %.1f%% of batch tokens",
        len(train), total_steps, windows_per_epoch, trainer.batch_size, trainer.grad_accum, dist.world_size,
        precision, device, 100 * padding,
    )  # fmt: skip

    best_in_memory: dict[str, torch.Tensor] = {}  # every rank keeps its own copy of the best weights
    best_val_metrics: dict = {}  # and the validation metrics it had (evaluation is deterministic)

    def run_evaluation() -> None:
        """Validation metrics at this step; keep the best weights; count evaluations without progress."""
        check_finite()
        with warnings.catch_warnings():  # an early model predicting one class is expected, not news
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            metrics, _ = evaluate(
                model, val, data.labels, trainer.eval_batch_size, device, precision, pad_id, dist
            )
        progress.last_eval_step = progress.step
        value = metrics[metric]  # None when undefined (e.g. Pearson r of constant predictions): no progress
        improved = value is not None and (
            progress.best_value is None
            or (value > progress.best_value if maximize else value < progress.best_value)
        )
        reporter.scalars(progress.step, metrics, "val")
        if "confusion_matrix" in metrics:
            reporter.confusion_matrix(progress.step, metrics["confusion_matrix"], "val/confusion_matrix")
        log.info("step %d: validation %s=%s loss=%.4f%s", progress.step, metric,
                 "undefined" if value is None else f"{value:.4f}", metrics["loss"], " (best)" if improved else "")  # fmt: skip
        if improved:
            progress.best_value, progress.best_step, progress.evals_since_best = value, progress.step, 0
            best_in_memory.clear()
            best_in_memory.update({k: v.detach().to("cpu", copy=True) for k, v in model_tensors().items()})
            best_val_metrics.clear()
            best_val_metrics.update(metrics)
            if dist.is_main:
                state = {"progress": asdict(progress), "config": fingerprint, "val": metrics,
                         "trainable_only": trainable_only, **(extra_state or {})}  # fmt: skip
                ckpt.save_checkpoint(best_dir, model_tensors(), state)
        else:
            progress.evals_since_best += 1
            patience = trainer.early_stopping_patience
            if patience is not None and progress.evals_since_best >= patience:
                progress.early_stopped = True
                log.info("early stopping: no better %s in %d evaluations", metric, patience)

    # --- the loop ----------------------------------------------------------------------------------
    running_loss, running_windows = torch.zeros((), device=device), 0
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def check_finite() -> None:
        if nonfinite.item():
            raise TrainingDiverged(
                f"the loss or gradients became NaN/inf by step {progress.step}; the last good checkpoint "
                f"stays in {last_dir.parent}. Lower optim.lr or use trainer.precision=fp32"
            )

    model.train()
    interrupted = False
    compile_seconds = None
    # Training time: wall time from the first batch to the end of the last optimizer step, data loading,
    # collation and logging included, evaluations and checkpoint writes left out.
    clock = time.perf_counter()
    with StopSignal() as stop:
        while progress.step < total_steps and not progress.early_stopped and not interrupted:
            windows = epoch_windows(progress.epoch)
            # Examples in each global window (all ranks): a micro-batch's loss counts by its share of it,
            # and DDP's average over ranks multiplies back by world_size.
            per_rank = [
                windows if r == dist.rank else epoch_windows(progress.epoch, r)
                for r in range(dist.world_size)
            ]
            global_sizes = np.sum([[sum(map(len, w)) for w in ws] for ws in per_rank], axis=0)
            while (
                progress.window < len(windows) and progress.step < total_steps and not progress.early_stopped
            ):
                start = time.perf_counter()
                window = windows[progress.window]
                sizes = [len(b) for b in window]
                lr_factor = schedule(progress.step)
                for group, base_lr in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base_lr * lr_factor
                rng = (
                    np.random.default_rng([trainer.seed, progress.epoch, progress.window])
                    if augment_prob
                    else None
                )

                for i, idx in enumerate(window):
                    batch = batch_to(
                        collate(train.encoded, idx, train.labels, pad_id, pad_to_multiple, augment_prob, rng),
                        device,
                    )
                    last_micro = i == len(window) - 1
                    with ddp.no_sync() if dist.enabled and not last_micro else contextlib.nullcontext():
                        with autocast(device, precision):
                            logits = ddp(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                        share = sizes[i] * dist.world_size / global_sizes[progress.window]
                        loss = model.loss(logits, batch["labels"]) * share
                        scaler.scale_loss(loss).backward()
                    running_loss += loss.detach()

                finite = scaler.unscale_(trainable)  # fp16: one sync; otherwise a no-op
                max_norm = trainer.max_grad_norm or float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm, foreach=True)
                if finite:
                    optimizer.step()
                else:
                    log.warning(
                        "step %d: fp16 gradients overflowed; step skipped (loss scale %g)",
                        progress.step + 1,
                        scaler.scale,
                    )
                scaler.update(finite)
                if (
                    scaler.enabled and scaler.scale < 1.0
                ):  # overflowing at any scale: the loss itself is NaN/inf
                    raise TrainingDiverged(f"fp16 gradients stayed non-finite down to loss scale {scaler.scale:g} "
                                           f"by step {progress.step + 1}; lower optim.lr or use bf16/fp32")  # fmt: skip
                if not scaler.enabled:
                    nonfinite |= ~torch.isfinite(grad_norm)
                optimizer.zero_grad(set_to_none=True)

                progress.step += 1
                progress.window += 1
                running_windows += 1
                progress.train_samples += sum(sizes)
                progress.train_tokens += int(sum(lengths[b].sum() for b in window))
                if trainer.compile and compile_seconds is None:
                    compile_seconds = time.perf_counter() - start
                    log.info(
                        "torch.compile: the first step took %.1f s (tracing and code generation)",
                        compile_seconds,
                    )

                if progress.step % trainer.log_every == 0 or progress.step == total_steps:
                    check_finite()
                    if dist.enabled:  # report the loss of the whole global batch, not rank 0's share
                        torch.distributed.all_reduce(running_loss)
                        running_loss /= dist.world_size
                    mean_loss = running_loss.item() / running_windows
                    running_loss.zero_()
                    running_windows = 0
                    seconds = progress.train_seconds + time.perf_counter() - clock
                    speed = progress.train_samples / max(seconds, 1e-9) * dist.world_size
                    values = {"loss": mean_loss, "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm.item(),
                              "samples_per_s": speed, "loss_scale": scaler.scale if scaler.enabled else None}  # fmt: skip
                    reporter.scalars(progress.step, values, "train")
                    if not trainer.progress:  # without a progress bar, say how it goes in the log
                        log.info("step %d/%d: loss %.4f, lr %.2e, %.1f samples/s", progress.step, total_steps,
                                 mean_loss, values["lr"], speed)  # fmt: skip
                    reporter.advance(
                        0, loss=f"{mean_loss:.4f}", lr=f"{values['lr']:.2e}", samples_s=f"{speed:.1f}"
                    )
                reporter.advance(1)
                progress.train_seconds += time.perf_counter() - clock
                if trainer.eval_every and progress.step % trainer.eval_every == 0:
                    run_evaluation()
                stop_now = stop.requested
                if dist.enabled and progress.step % trainer.log_every == 0:  # all ranks stop at the same step
                    stop_now = broadcast_object(stop.requested, dist)
                if trainer.save_every and progress.step % trainer.save_every == 0 or stop_now:
                    check_finite()
                    save_last()
                if stop_now:
                    interrupted = True
                    break
                clock = time.perf_counter()
            if progress.window >= len(windows) and not interrupted:
                # the epoch is over: evaluate (unless this step was just evaluated), then the next epoch
                if progress.last_eval_step != progress.step:
                    run_evaluation()
                progress.epoch += 1
                progress.window = 0
                clock = time.perf_counter()

    if interrupted:
        reporter.close()
        log.warning(
            "interrupted at step %d; checkpoint saved. Continue with resume=%s", progress.step, run_dir
        )
        return None
    check_finite()
    if progress.last_eval_step != progress.step:
        run_evaluation()
    save_last()
    reporter.close()

    # --- final evaluation of the best checkpoint ---------------------------------------------------
    if not best_in_memory:  # a resumed run found its best before the restart: read it (rank 0 wrote it)
        barrier(dist)
        best = ckpt.load_latest(best_dir, log=log.warning)
        best_in_memory = best[1]["model.safetensors"] if best is not None else {}
    model.load_state_dict(best_in_memory, strict=False)
    val_metrics = (
        best_val_metrics
        or evaluate(model, val, data.labels, trainer.eval_batch_size, device, precision, pad_id, dist)[0]
    )
    test_metrics, _ = evaluate(
        model, data.splits["test"], data.labels, trainer.eval_batch_size, device, precision, pad_id, dist
    )
    totals = gather_objects((progress.train_samples, progress.train_tokens, progress.train_seconds), dist)
    seconds = max(t[2] for t in totals)
    return {
        "val": val_metrics,
        "test": test_metrics,
        "metric": metric,
        "best_step": progress.best_step,
        "steps": progress.step,
        "epochs_completed": progress.epoch,
        "early_stopped": progress.early_stopped,
        "skipped_steps": scaler.skipped_steps,
        "train_samples_per_s": sum(t[0] for t in totals) / max(seconds, 1e-9),
        "train_tokens_per_s": sum(t[1] for t in totals) / max(seconds, 1e-9),
        "train_seconds": seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "train_padding_fraction": padding,
        "precision": precision,
        "device": str(device),
        "world_size": dist.world_size,
        "compile_seconds": compile_seconds,
    }
