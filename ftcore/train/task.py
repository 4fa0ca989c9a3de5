"""A task, as the training loop sees it: what a training batch holds, its loss, and how a split is scored.

The loop (``loop.py``) knows nothing of classification. It asks a task for the token counts of the
training examples (to bucket them), a collated batch of chosen examples, the loss of a batch, and the
metrics of a split; the model it trains takes ``(input_ids, attention_mask, token_type_ids)``. Sequence
classification is :class:`ClassificationTask`, token classification :class:`TaggingTask`; masked-LM
pretraining (``pretrain.py``) is another object with the same five members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ftcore.data.batching import collate, epoch_batches, token_batches
from ftcore.data.dataset import LabelSpace, Split, TaskData
from ftcore.data.long_text import pool_windows
from ftcore.data.tagging import TaggedRows, TaggedSplit, TaggingData, TagSpace, collate_rows
from ftcore.data.tokenizer import EncodedTexts
from ftcore.metrics import DEFAULT_METRIC, TAGGING_METRIC, compute_metrics, tagging_metrics
from ftcore.model.heads import IGNORE_INDEX, SequenceClassifier, TokenClassifier
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

    Outputs are class probabilities | label probabilities | predictions (see ``outputs_from_logits``) of
    the logits of :func:`predict_logits`; outputs, labels and loss count each example once.
    """
    was_training = model.training
    model.eval()
    logits = predict_logits(
        model, encoded, batch_size, device, precision, pad_id, dist, documents, window_pool
    )
    loss = None if labels is None else model.loss(logits, torch.as_tensor(labels, device=device)).item()
    model.train(was_training)
    return outputs_from_logits(model.problem, logits).cpu().numpy(), loss


@torch.inference_mode()
def predict_logits(
    model: SequenceClassifier,
    encoded: EncodedTexts,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    dist: DistInfo = SINGLE_PROCESS,
    documents: np.ndarray | None = None,
    window_pool: str = "mean",
    max_tokens: int | None = None,
) -> torch.Tensor:
    """The fp32 logits ``(examples, num_labels)`` of every example, in example order, on ``device``.

    An example is one row of ``encoded``, or, when ``documents`` maps each row to its example (long
    texts read as windows), the fp32 mean or max (``window_pool``) of its rows' logits. Batches are
    sorted by length (little padding), ``batch_size`` rows each, or, with ``max_tokens`` (one process
    only), as many as fit that many padded tokens (``token_batches``); under DDP each rank scores a
    share and all ranks end with the same gathered result.
    """
    if max_tokens is not None and dist.world_size == 1:
        batches = token_batches(encoded.lengths, max_tokens, batch_size)
    else:
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
    result = torch.from_numpy(row_logits).to(device)
    return result if documents is None else pool_windows(result, documents, window_pool)


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


@torch.inference_mode()
def predict_tags(
    model: TokenClassifier,
    rows: TaggedRows,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    labels: np.ndarray | None = None,
    dist: DistInfo = SINGLE_PROCESS,
) -> tuple[list[list[int]], float | None]:
    """The tag ids of every word of every sentence of ``rows``, and the mean loss per word when
    ``labels`` (per position, see ``tagging.row_labels``) are given.

    Each word's logits come from the one row that predicts it (:func:`word_logits`); a sentence read as
    several windows is then decoded whole (argmax, or Viterbi over the entire sentence with a CRF).
    """
    was_training = model.training
    model.eval()
    pieces, loss = word_logits(model, rows, batch_size, device, precision, pad_id, labels, dist)
    num_sentences = int(rows.sentence.max()) + 1 if len(rows) else 0
    tags = decode_sentences(model, pieces, num_sentences, batch_size, device)
    model.train(was_training)
    return tags, loss


@torch.inference_mode()
def word_logits(
    model: TokenClassifier,
    rows: TaggedRows,
    batch_size: int,
    device: torch.device,
    precision: str,
    pad_id: int = 0,
    labels: np.ndarray | None = None,
    dist: DistInfo = SINGLE_PROCESS,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float | None]:
    """Pieces ``(sentence, word, logits)`` holding the fp32 logits of every word of ``rows`` once, and the
    mean loss per word when ``labels`` are given. Rows are batched by length; under DDP each rank scores
    a share and all ranks end with every piece."""
    batches = epoch_batches(
        rows.encoded.lengths, batch_size, 0, 0, shuffle=False, world_size=dist.world_size, rank=dist.rank
    )
    pieces, loss_sum, counted = [], 0.0, 0
    for idx in batches:
        batch = collate_rows(rows, idx, labels, pad_id)
        on_device = batch_to(batch, device)
        with autocast(device, precision):
            logits = model(on_device["input_ids"], on_device["attention_mask"], on_device["token_type_ids"])
        logits = logits.float()
        n = 0 if labels is None else int((batch["labels"] != IGNORE_INDEX).sum())
        if n:
            loss_sum += (
                model.loss(logits, on_device["labels"], on_device["begins"], on_device["ends"]).item() * n
            )
            counted += n
        words = batch["words"]
        predicts = (words >= 0).numpy()
        sentence = np.repeat(rows.sentence[idx][:, None], words.shape[1], axis=1)[predicts]
        pieces.append(
            (sentence, words.numpy()[predicts], logits[torch.from_numpy(predicts).to(device)].cpu().numpy())
        )
    parts = gather_objects((pieces, loss_sum, counted), dist)
    gathered = [piece for part in parts for piece in part[0]]
    loss_sum, counted = sum(part[1] for part in parts), sum(part[2] for part in parts)
    return gathered, (loss_sum / counted if counted else None)


def decode_sentences(
    model: TokenClassifier, pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num_sentences: int,
    batch_size: int, device: torch.device,
) -> list[list[int]]:  # fmt: skip
    """Tag ids of every word of every sentence from ``pieces`` of ``(sentence, word, logits)`` arrays (each
    word once): laid out per sentence (:func:`sentence_emissions`), then decoded (:func:`decode_emissions`)."""
    emissions, starts = sentence_emissions(pieces, num_sentences, model.num_labels)
    return decode_emissions(model, emissions, starts, batch_size, device)


def sentence_emissions(
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num_sentences: int, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The words' logits laid out sentence after sentence: ``emissions`` ``(words, num_labels)`` and
    ``starts`` ``(num_sentences + 1,)``, sentence ``s`` being ``emissions[starts[s]:starts[s + 1]]``."""
    num_words = np.zeros(num_sentences, dtype=np.int64)
    for sentence, word, _ in pieces:
        np.maximum.at(num_words, sentence, word + 1)
    starts = np.concatenate([[0], np.cumsum(num_words)])
    emissions = np.zeros((starts[-1], num_labels), dtype=np.float32)
    for sentence, word, logits in pieces:
        emissions[starts[sentence] + word] = logits
    return emissions, starts


def decode_emissions(
    model: TokenClassifier, emissions: np.ndarray, starts: np.ndarray, batch_size: int, device: torch.device
) -> list[list[int]]:
    """Decode each sentence of ``emissions`` (laid out as :func:`sentence_emissions` does) whole: argmax,
    or the CRF's Viterbi, ``batch_size`` sentences at a time."""
    num_words = np.diff(starts)
    num_sentences = len(num_words)
    tags: list[list[int]] = []
    for first in range(0, num_sentences, batch_size):
        chunk = range(first, min(first + batch_size, num_sentences))
        longest = max(1, int(num_words[list(chunk)].max()))
        padded = np.zeros((len(chunk), longest, model.num_labels), dtype=np.float32)
        for row, s in enumerate(chunk):
            padded[row, : num_words[s]] = emissions[starts[s] : starts[s + 1]]
        mask = torch.arange(longest)[None, :] < torch.from_numpy(num_words[list(chunk)])[:, None]
        mask[:, 0] = True  # (an empty sentence decodes one dummy position, dropped below)
        decoded = model.decode(torch.from_numpy(padded).to(device), mask.to(device))
        tags.extend(path[: num_words[s]] for path, s in zip(decoded, chunk))
    return tags


@dataclass
class TaggingTask:
    """Token classification over encoded tagging splits (``data.tagging``): rows of at most ``max_length``
    tokens, the loss at each word's first sub-token, metrics per whole sentence (entities, words or tags
    by the tag scheme)."""

    data: TaggingData
    pad_id: int = 0
    pad_to_multiple: int = 8

    @property
    def train_lengths(self) -> np.ndarray:
        """(N,) token count of every training row (a window of a long sentence is a row)."""
        return self.data.splits["train"].rows.encoded.lengths

    @property
    def default_metric(self) -> str:
        return TAGGING_METRIC[self.data.tags.scheme or "none"]

    def train_batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        train = self.data.splits["train"]
        return collate_rows(train.rows, indices, train.labels, self.pad_id, self.pad_to_multiple)

    def forward(self, net: nn.Module, batch: dict) -> torch.Tensor:
        return net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, model: TokenClassifier, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return model.loss(logits, batch["labels"], batch["begins"], batch["ends"])

    def evaluate(
        self, model: TokenClassifier, split: str, batch_size: int, device: torch.device, precision: str,
        dist: DistInfo = SINGLE_PROCESS,
    ) -> dict:  # fmt: skip
        """Metrics of the named split (``ftcore.metrics.tagging_metrics``), with its mean ``loss``."""
        metrics, _ = evaluate_tags(model, self.data.splits[split], self.data.tags, batch_size, device, precision,
                                   self.pad_id, dist)  # fmt: skip
        return metrics


def evaluate_tags(
    model: TokenClassifier, split: TaggedSplit, tags: TagSpace, batch_size: int, device: torch.device,
    precision: str, pad_id: int = 0, dist: DistInfo = SINGLE_PROCESS,
) -> tuple[dict, list[list[str]]]:  # fmt: skip
    """Metrics of a tagged split and the predicted tag names of each sentence."""
    predicted, loss = predict_tags(
        model, split.rows, batch_size, device, precision, pad_id, split.labels, dist
    )
    names = [[tags.names[i] for i in sentence] for sentence in predicted]
    metrics = tagging_metrics(tags.scheme or "none", [s.tags for s in split.sentences], names)
    metrics["loss"] = loss
    return metrics, names
