"""What a run reports: ``train.log`` and the console, TensorBoard scalars, and a progress bar.

Only rank 0 reports; other ranks get a logger that stays silent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger("ftcore")


def attach_log_file(run_dir: Path) -> None:
    """Send ftcore's log lines to ``run_dir/train.log`` unless a handler (e.g. Hydra's) already does."""
    target = (run_dir / "train.log").resolve()
    for logger in (log, logging.getLogger()):
        for h in logger.handlers:
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve() == target:
                return
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def confusion_image(cm: np.ndarray, cell: int = 24) -> np.ndarray:
    """(K, K) counts -> (K·cell, K·cell, 3) uint8 heat map, each row scaled by its total (recall)."""
    cm = np.asarray(cm, dtype=np.float64)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    img = np.kron(share, np.ones((cell, cell)))  # each cell a block of pixels
    img[::cell, :] = img[:, ::cell] = 0.5  # grid lines
    white_to_blue = np.stack([1 - 0.8 * img, 1 - 0.6 * img, np.ones_like(img)], axis=-1)
    return (255 * white_to_blue).astype(np.uint8)


class Reporter:
    """TensorBoard + progress bar for the main process; every method is a no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool, progress: bool, total_steps: int, start_step: int):
        self.enabled, self.total_steps = enabled, total_steps
        self.tb = None
        self.bar = None
        self.log_steps = not progress  # without a progress bar, the log says how training goes
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", disable=not progress,
                        dynamic_ncols=True)  # fmt: skip

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.tb is None:
            return
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.tb.add_scalar(f"{prefix}/{key}", value, step)

    def confusion_matrix(self, step: int, cm, tag: str) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, confusion_image(np.asarray(cm)), step, dataformats="HWC")

    def training(self, step: int, loss: float, lr: float, grad_norm: float, speed: float, scaler) -> None:
        """The training scalars of ``step`` (loss averaged since the last report, samples/s so far)."""
        values = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "samples_per_s": speed,
                  "loss_scale": scaler.scale if scaler.enabled else None}  # fmt: skip
        self.scalars(step, values, "train")
        if self.log_steps:
            log.info(
                "step %d/%d: loss %.4f, lr %.2e, %.1f samples/s", step, self.total_steps, loss, lr, speed
            )
        self.advance(0, loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{speed:.1f}")

    def evaluation(self, step: int, metrics: dict, metric: str, improved: bool) -> None:
        """Validation metrics of ``step`` (and the confusion matrix as an image), and their log line."""
        self.scalars(step, metrics, "val")
        if "confusion_matrix" in metrics:
            self.confusion_matrix(step, metrics["confusion_matrix"], "val/confusion_matrix")
        shown = [metric] + [
            k for k in ("masked_accuracy", "perplexity", "loss") if k in metrics and k != metric
        ]
        values = " ".join(
            f"{k}={'undefined' if metrics[k] is None else format(metrics[k], '.4f')}" for k in shown
        )
        log.info("step %d: validation %s%s", step, values, " (best)" if improved else "")

    def advance(self, n: int, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
