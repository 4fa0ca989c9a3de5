"""A task, as the training loop sees it: what a training batch holds, its loss, and how a split is scored.

The loop (``loop.py``) knows nothing of classification. It asks a task for the token counts of the
training examples (to bucket them), a collated batch of chosen examples, the loss of a batch, and the
metrics of a split; the model it trains takes ``(input_ids, attention_mask, token_type_ids)``. Sequence
classification is :class:`ClassificationTask`; other tasks (masked-LM pretraining, token classification)
are objects with the same five members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ftcore.data.batching import collate, epoch_batches
from ftcore.data.dataset import LabelSpace, Split, TaskData
from ftcore.data.long_text import pool_windows
from ftcore.data.tokenizer import EncodedTexts
from ftcore.metrics import DEFAULT_METRIC, compute_metrics
from ftcore.model.heads import SequenceClassifier
from ftcore.train.distributed import SINGLE_PROCESS, DistInfo, gather_objects
from ftcore.train.precision import autocast


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
    documents: np.ndarray | None = None,
    window_pool: str = "mean",
) -> tuple[np.ndarray, float | None]:
    """Model outputs for every example, in example order, and the mean loss when ``labels`` are given.

    Outputs are class probabilities | label probabilities | predictions (see ``outputs_from_logits``).
    An example is one row of ``encoded``, or, when ``documents`` maps each row to its example (long
    texts read as windows), the fp32 mean or max (``window_pool``) of its rows' logits: outputs, labels
    and loss then count each example once. Batches are sorted by length (little padding); under DDP
    each rank scores a share and all ranks end with the same gathered result.
    """
    was_training = model.training
    model.eval()
    batches = epoch_batches(
        encoded.lengths, batch_size, 0, 0, shuffle=False, world_size=dist.world_size, rank=dist.rank
    )
    indices, logits = [], []
    for idx in batches:
        batch = batch_to(collate(encoded, idx, pad_id=pad_id), device)
        with autocast(device, precision):
            logits.append(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float())
        indices.append(idx)
    local = (
        np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        torch.cat(logits).cpu().numpy() if logits else None,
    )
    gathered = gather_objects(local, dist)
    order = np.concatenate([g[0] for g in gathered])
    stacked = np.concatenate([g[1] for g in gathered if g[1] is not None])
    row_logits = np.empty_like(stacked)
    row_logits[order] = stacked
    logits = torch.from_numpy(row_logits).to(device)
    if documents is not None:
        logits = pool_windows(logits, documents, window_pool)
    loss = None if labels is None else model.loss(logits, torch.as_tensor(labels, device=device)).item()
    model.train(was_training)
    return outputs_from_logits(model.problem, logits).cpu().numpy(), loss


def evaluate(
    model: SequenceClassifier,
    split: Split,
    labels: LabelSpace,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    dist: DistInfo = SINGLE_PROCESS,
    window_pool: str = "mean",
) -> tuple[dict, np.ndarray]:
    """Metrics of ``split`` (see ``ftcore.metrics.compute_metrics``, plus its mean ``loss``) and the outputs,
    per example (windows pooled by ``window_pool``)."""
    outputs, loss = predict(model, split.encoded, batch_size, device, precision, pad_id, split.labels, dist,
                            documents=split.documents, window_pool=window_pool)  # fmt: skip
    metrics = compute_metrics(labels.problem, split.labels, outputs, num_classes=labels.num_labels)
    metrics["loss"] = loss
    return metrics, outputs


@dataclass
class ClassificationTask:
    """Sequence classification (single-label, multi-label, regression) over encoded splits.

    ``augment_prob > 0`` applies token deletion/swap to training batches (see ``data.batching``). Long
    texts read as windows train as one example per window, with the label of its text, and are scored
    per text, their windows' logits pooled by ``window_pool`` (see ``data.long_text``).
    """

    data: TaskData
    pad_id: int = 0
    pad_to_multiple: int = 8
    augment_prob: float = 0.0
    window_pool: str = "mean"

    @property
    def train_lengths(self) -> np.ndarray:
        """(N,) token count of every training example (a window of a long text is an example)."""
        return self.data.splits["train"].encoded.lengths

    @property
    def default_metric(self) -> str:
        return DEFAULT_METRIC[self.data.labels.problem]

    def train_batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        """The training examples ``indices`` padded into one batch (augmented when configured)."""
        train = self.data.splits["train"]
        return collate(train.encoded, indices, train.row_labels, self.pad_id, self.pad_to_multiple,
                       self.augment_prob, rng)  # fmt: skip

    def forward(self, net: nn.Module, batch: dict) -> torch.Tensor:
        """Logits of ``batch``; ``net`` is the model as the loop calls it (DDP, compiled)."""
        return net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, model: SequenceClassifier, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The head's loss (cross-entropy, BCE or MSE by problem, with class weights and smoothing)."""
        return model.loss(logits, batch["labels"])

    def evaluate(
        self, model: SequenceClassifier, split: str, batch_size: int, device: torch.device, precision: str,
        dist: DistInfo = SINGLE_PROCESS,
    ) -> dict:  # fmt: skip
        """Metrics of the named split, with its mean ``loss``."""
        metrics, _ = evaluate(model, self.data.splits[split], self.data.labels, batch_size, device, precision,
                              self.pad_id, dist, window_pool=self.window_pool)  # fmt: skip
        return metrics
