"""The training loop, visible: ``fit`` trains a model on a task with evaluation, checkpoints and early
stopping; ``train_step`` is one optimizer step.

One optimizer step = one *window* of ``batch_size × grad_accum`` examples (per process), run as
``grad_accum`` micro-batches whose losses are weighted by their share of the window, so accumulating
4 batches of 2 gives the same gradient as one batch of the same 8 examples (with class weights, the
weighted mean is taken per micro-batch, so this holds only approximately). Everything random is seeded
from ``trainer.seed`` and saved in checkpoints, so a resumed run ends with the same weights as one
never stopped. What is trained on (batches, loss, metrics) comes from the task (``task.py``).
"""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ftcore.config import OptimConfig, TrainerConfig
from ftcore.data.batching import epoch_batches, padding_fraction
from ftcore.errors import FtcoreError
from ftcore.metrics import LOWER_IS_BETTER, UndefinedMetricWarning
from ftcore.optim.build import build_optimizer, set_learning_rates
from ftcore.train.allocator import retain_freed_memory
from ftcore.train.checkpoint import Progress, RunCheckpoints
from ftcore.train.distributed import SINGLE_PROCESS, DistInfo, broadcast_object
from ftcore.train.logging import Reporter, log
from ftcore.train.precision import LossScaler, autocast
from ftcore.train.task import batch_to


class TrainingDiverged(FtcoreError):
    """The loss or the gradients became NaN/inf (fp32/bf16); the run stops, checkpoints stay as they were."""


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


class Windows:
    """Each rank's windows of an epoch, cut into micro-batches, and the size of every global window.

    The order is a pure function of (seed, epoch): a resumed run finds its place by the window index.
    """

    def __init__(self, lengths: np.ndarray, trainer: TrainerConfig, dist: DistInfo):
        self.lengths, self.trainer, self.dist = lengths, trainer, dist
        self._cached: tuple = (None, None)
        self.per_epoch = len(self.epoch(0)[0])

    def of_rank(self, epoch: int, rank: int) -> list[list[np.ndarray]]:
        bs, size = self.trainer.batch_size, self.trainer.batch_size * self.trainer.grad_accum
        windows = epoch_batches(
            self.lengths, size, epoch, self.trainer.seed, world_size=self.dist.world_size, rank=rank
        )
        return [[w[i : i + bs] for i in range(0, len(w), bs)] for w in windows]

    def padding(self, pad_to_multiple: int) -> float:
        """The share of padding in the batches of the first epoch."""
        batches = [b for w in self.epoch(0)[0] for b in w]
        return padding_fraction(self.lengths, batches, pad_to_multiple)

    def epoch(self, epoch: int) -> tuple[list[list[np.ndarray]], np.ndarray]:
        """This rank's windows, and the examples in each global window (all ranks together); computed
        once per epoch."""
        if self._cached[0] != epoch:
            mine = self.of_rank(epoch, self.dist.rank)
            ranks = [
                mine if r == self.dist.rank else self.of_rank(epoch, r) for r in range(self.dist.world_size)
            ]
            self._cached = (epoch, (mine, np.sum([[sum(map(len, w)) for w in ws] for ws in ranks], axis=0)))
        return self._cached[1]


@dataclass
class StepResult:
    loss: torch.Tensor  # the window's loss (this rank's share), not synchronised
    grad_norm: torch.Tensor
    examples: int
    tokens: int


def train_step(net: nn.Module, model: nn.Module, task, window: list[np.ndarray], global_size: int,
               optimizer, scaler: LossScaler, trainer: TrainerConfig, device: torch.device, precision: str,
               dist: DistInfo, rng: np.random.Generator, step: int) -> StepResult:  # fmt: skip
    """Optimizer step ``step``: forward and backward over the window's micro-batches, then clip and step
    (fp16: unscale first, skip the step when gradients overflowed). ``net`` is ``model`` as called (DDP,
    compiled); ``rng`` is what data augmentation draws from."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), device=device)
    for i, idx in enumerate(window):
        batch = batch_to(task.train_batch(idx, rng), device)
        last = i == len(window) - 1  # gradients sync across ranks once per window, at its end
        with net.no_sync() if dist.enabled and not last else contextlib.nullcontext():
            with autocast(device, precision):
                outputs = task.forward(net, batch)
            # a micro-batch counts by its share of the global window; DDP's mean over ranks multiplies
            # back by world_size
            loss = task.loss(model, outputs, batch) * (len(idx) * dist.world_size / global_size)
            scaler.scale_loss(loss).backward()
        loss_sum += loss.detach()
    finite = scaler.unscale_(trainable)  # fp16: one sync; otherwise a no-op
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, trainer.max_grad_norm or float("inf"), foreach=True)
    if finite:
        optimizer.step()
    else:
        log.warning("step %d: fp16 gradients overflowed; step skipped (loss scale %g)", step, scaler.scale)
    scaler.update(finite)
    if scaler.enabled and scaler.scale < 1.0:  # overflowing at any scale: the loss itself is NaN/inf
        raise TrainingDiverged(f"fp16 gradients stayed non-finite down to loss scale {scaler.scale:g} by step "
                               f"{step}; lower optim.lr or use bf16/fp32")  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    tokens = int(sum(task.train_lengths[b].sum() for b in window))
    return StepResult(loss_sum, grad_norm, sum(map(len, window)), tokens)


class Divergence:
    """Watches gradient norms on the device and raises ``TrainingDiverged`` when asked to check (a sync),
    so a NaN/inf is caught before it is evaluated or saved, without a sync every step."""

    def __init__(self, device: torch.device, checkpoints: Path):
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.checkpoints = checkpoints

    def watch(self, grad_norm: torch.Tensor) -> None:
        self.nonfinite |= ~torch.isfinite(grad_norm)

    def check(self, step: int) -> None:
        if self.nonfinite.item():
            raise TrainingDiverged(
                f"the loss or gradients became NaN/inf by step {step}; the last good checkpoint stays in "
                f"{self.checkpoints}. Lower optim.lr or use trainer.precision=fp32"
            )


class Validation:
    """Scores the validation split, keeps the weights and metrics of the best evaluation so far, and
    stops early after ``trainer.early_stopping_patience`` evaluations in a row without a better metric."""

    def __init__(self, task, trainer: TrainerConfig, device: torch.device, precision: str, dist: DistInfo,
                 checkpoints: RunCheckpoints, reporter: Reporter, divergence: Divergence):  # fmt: skip
        self.task, self.trainer, self.device, self.precision = task, trainer, device, precision
        self.dist, self.checkpoints, self.reporter, self.divergence = dist, checkpoints, reporter, divergence
        self.metric = trainer.metric or task.default_metric
        self.maximize = self.metric not in LOWER_IS_BETTER
        self.best_weights: dict[str, torch.Tensor] = {}  # every rank keeps its own copy
        self.best_metrics: dict = {}  # evaluation is deterministic: the best is not scored twice

    def score(self, model: nn.Module, split: str) -> dict:
        with warnings.catch_warnings():  # an early model predicting one class is expected, not news
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            return self.task.evaluate(model, split, self.trainer.eval_batch_size, self.device, self.precision,
                                      self.dist)  # fmt: skip

    def __call__(self, model: nn.Module, progress: Progress) -> None:
        """Evaluate at ``progress.step`` and update the best-so-far and early-stopping state in ``progress``."""
        self.divergence.check(progress.step)  # never score (or keep) weights that diverged
        metrics = self.score(model, "validation")
        value = metrics[self.metric]  # None when undefined (e.g. Pearson r of constant predictions)
        best = progress.best_value
        improved = value is not None and (best is None or (value > best if self.maximize else value < best))
        progress.last_eval_step = progress.step
        self.reporter.evaluation(progress.step, metrics, self.metric, improved)
        if improved:
            progress.best_value, progress.best_step, progress.evals_since_best = value, progress.step, 0
            weights = self.checkpoints.model_tensors()
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
            self.best_metrics = metrics
            self.checkpoints.save_best(progress, metrics)
            return
        progress.evals_since_best += 1
        patience = self.trainer.early_stopping_patience
        if patience is not None and progress.evals_since_best >= patience:
            progress.early_stopped = True
            log.info("early stopping: no better %s in %d evaluations", self.metric, patience)

    def final(self, model: nn.Module) -> tuple[dict, dict]:
        """Validation and test metrics of the best weights (read back from disk by a resumed run that
        found its best before the restart)."""
        model.load_state_dict(self.best_weights or self.checkpoints.best_tensors(log), strict=False)
        # (scored without silencing UndefinedMetricWarning: a final model predicting one class is news)
        args = (self.trainer.eval_batch_size, self.device, self.precision, self.dist)
        val = self.best_metrics or self.task.evaluate(model, "validation", *args)
        return val, self.task.evaluate(model, "test", *args)


def fit(model: nn.Module, task, trainer: TrainerConfig, optim: OptimConfig, run_dir: Path, device: torch.device,
        precision: str, fingerprint: dict, resume: bool = False, dist: DistInfo = SINGLE_PROCESS,
        extra_state: dict | None = None) -> dict | None:  # fmt: skip
    """Train ``model`` on ``task``; return the final metrics, or None if interrupted (checkpoint saved).

    ``fingerprint`` (the run's config) is stored in checkpoints; resuming under a different one is
    refused. ``extra_state`` goes into every checkpoint's state.json (e.g. the base-model pointer).
    """
    # --- set-up ------------------------------------------------------------------------------------
    wall_start, run_dir = time.perf_counter(), Path(run_dir)
    model.to(device)
    windows = Windows(task.train_lengths, trainer, dist)
    total_steps = trainer.max_steps or trainer.epochs * windows.per_epoch
    optimizer, schedule = build_optimizer(model, optim, total_steps)
    scaler = LossScaler(enabled=precision == "fp16")
    net = DistributedDataParallel(model) if dist.enabled else model
    if trainer.compile:  # compiled lazily, at the first step (and again for new shapes)
        net = torch.compile(net)
    if device.type == "cpu" and trainer.retain_memory and retain_freed_memory():
        log.info("CPU: malloc keeps freed memory for reuse (trainer.retain_memory=true)")
    checkpoints = RunCheckpoints(run_dir, model, optimizer, scaler, fingerprint, dist, extra_state)
    progress = checkpoints.resume(log) if resume else Progress()
    reporter = Reporter(run_dir, dist.is_main, trainer.progress, total_steps, progress.step)
    divergence = Divergence(device, checkpoints.last.parent)
    validate = Validation(task, trainer, device, precision, dist, checkpoints, reporter, divergence)
    padding = windows.padding(task.pad_to_multiple)
    log.info("training: %d examples, %d steps (%d per epoch, batch %d x accum %d x %d processes), precision %s "
             "on %s; padding %.1f%% of batch tokens", len(task.train_lengths), total_steps, windows.per_epoch,
             trainer.batch_size, trainer.grad_accum, dist.world_size, precision, device, 100 * padding)  # fmt: skip

    # --- the loop: epochs of windows, one optimizer step each ----------------------------------------
    model.train()
    running, compile_seconds, stop_now = RunningLoss(device), None, False
    # Training time: wall time from the first batch to the end of the last optimizer step, data loading,
    # collation and logging included, evaluations and checkpoint writes left out.
    clock = time.perf_counter()
    with StopSignal() as stop:
        while progress.step < total_steps and not progress.early_stopped:
            epoch_windows, global_sizes = windows.epoch(progress.epoch)
            set_learning_rates(optimizer, schedule, progress.step)
            rng = np.random.default_rng([trainer.seed, progress.epoch, progress.window])  # augmentation
            result = train_step(net, model, task, epoch_windows[progress.window], global_sizes[progress.window],
                                optimizer, scaler, trainer, device, precision, dist, rng, progress.step + 1)  # fmt: skip
            if not scaler.enabled:  # fp16 checks its own gradients; the others when they next sync
                divergence.watch(result.grad_norm)
            progress.advance(result.examples, result.tokens)
            running.add(result.loss)
            if trainer.compile and compile_seconds is None:
                compile_seconds = time.perf_counter() - clock
                log.info("torch.compile: the first step took %.1f s (tracing, code generation)", compile_seconds)  # fmt: skip
            if progress.step % trainer.log_every == 0 or progress.step == total_steps:
                divergence.check(progress.step)
                speed = progress.train_samples / (progress.train_seconds + time.perf_counter() - clock)
                lr = optim.lr * schedule(progress.step - 1)  # optim.lr's rate (lr_overrides scale alike)
                reporter.training(progress.step, running.mean(dist), lr, result.grad_norm.item(),
                                  speed * dist.world_size, scaler)  # fmt: skip
            reporter.advance(1)
            progress.train_seconds += time.perf_counter() - clock
            if trainer.eval_every and progress.step % trainer.eval_every == 0:
                validate(model, progress)
            if progress.window == len(epoch_windows):  # the epoch is over: evaluate (once), then the next
                if progress.last_eval_step != progress.step:
                    validate(model, progress)
                progress.epoch, progress.window = progress.epoch + 1, 0
            stop_now = stop.requested
            if dist.enabled and progress.step % trainer.log_every == 0:  # all ranks stop at the same step
                stop_now = broadcast_object(stop.requested, dist)
            if trainer.save_every and progress.step % trainer.save_every == 0 or stop_now:
                divergence.check(progress.step)
                checkpoints.save_last(progress)
            if stop_now:
                break
            clock = time.perf_counter()
    if stop_now:
        reporter.close()
        log.warning(
            "interrupted at step %d; checkpoint saved. Continue with resume=%s", progress.step, run_dir
        )
        return None

    # --- the end: a last evaluation and checkpoint, then the best weights scored ---------------------
    divergence.check(progress.step)
    if progress.last_eval_step != progress.step:
        validate(model, progress)
    checkpoints.save_last(progress)
    reporter.close()
    val, test = validate.final(model)
    return {"val": val, "test": test, "metric": validate.metric, **progress.summary(dist),
            "skipped_steps": scaler.skipped_steps, "wall_seconds": time.perf_counter() - wall_start,
            "train_padding_fraction": padding, "precision": precision, "device": str(device),
            "world_size": dist.world_size, "compile_seconds": compile_seconds}  # fmt: skip


class RunningLoss:
    """The mean window loss since the last report, summed on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        self.total, self.windows = torch.zeros((), device=device), 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.windows += 1

    def mean(self, dist: DistInfo) -> float:
        """The mean over the windows since the last call; under DDP over the whole global batch."""
        if dist.enabled:
            torch.distributed.all_reduce(self.total)
            self.total /= dist.world_size
        mean = self.total.item() / max(self.windows, 1)
        self.total.zero_()
        self.windows = 0
        return mean
