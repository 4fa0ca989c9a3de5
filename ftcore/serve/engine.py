"""A trained run loaded for serving: encode requests, score batches of them, shape the answers.

The work is split by thread. :meth:`Engine.encode` runs in the request's own handler thread: it
tokenizes and checks the texts, so a bad input is refused before it queues. :meth:`Engine.score` runs in
the batcher's one worker thread, which owns the model: it scores the texts of many requests together,
as ``scripts/predict.py`` scores a file (the same encoding, length-sorted batches, window pooling,
precision and adapters merged), so a served score equals predict.py's for the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import ftcore
from ftcore.config import Config
from ftcore.data.dataset import encode_texts
from ftcore.data.tagging import CHARACTER_TASKS, TagSpace, encode_sentences, split_text
from ftcore.data.tokenizer import EncodedTexts
from ftcore.errors import FtcoreError
from ftcore.methods.lora import merge_lora
from ftcore.metrics import bio_spans, word_spans
from ftcore.serve.protocol import ServeError, ranked
from ftcore.train.experiment import TrainedRun, load_run
from ftcore.train.precision import resolve_device, resolve_precision
from ftcore.train.task import (
    decode_emissions,
    outputs_from_logits,
    predict_logits,
    sentence_emissions,
    word_logits,
)


@dataclass
class Item:
    """One text (or text pair) of a request, as the worker needs it.

    ``rows`` holds a classifier's encoded row (or the text's windows); a tagger's ``tokens`` and their
    character ``spans`` are encoded in the worker with the rest of the batch."""

    text: str
    pair: str | None
    rows: EncodedTexts | None = None
    tokens: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)


def concat_encoded(parts: list[EncodedTexts]) -> EncodedTexts:
    """The rows of several :class:`EncodedTexts`, in order, as one."""
    lengths = np.concatenate([p.lengths for p in parts])
    return EncodedTexts(
        ids=np.concatenate([p.ids for p in parts]),
        type_ids=np.concatenate([p.type_ids for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        truncated=np.concatenate([p.truncated for p in parts]),
    )


def select_rows(encoded: EncodedTexts, rows: np.ndarray) -> EncodedTexts:
    """The chosen rows of ``encoded`` (consecutive, in order) as their own :class:`EncodedTexts`."""
    start, end = encoded.offsets[rows[0]], encoded.offsets[rows[-1] + 1]
    return EncodedTexts(
        ids=encoded.ids[start:end],
        type_ids=encoded.type_ids[start:end],
        offsets=encoded.offsets[rows[0] : rows[-1] + 2] - start,
        truncated=encoded.truncated[rows],
    )


class Engine:
    """Serve a run: ``encode`` (any thread), ``run`` (the one worker thread), ``answer`` (any thread).

    Args:
        run: the loaded run (``load_run``); its adapters are merged and prefixes folded here.
        cfg: the run's config, possibly with ``data.*`` / ``trainer.*`` overrides.
        device, precision: ``auto`` picks as training does; ``precision=auto`` keeps the run's own.
        max_batch_size: rows per forward pass at most (a long text read as windows has several).
        max_batch_tokens: padded tokens per forward pass at most: the texts of one batch are sorted by
            length and cut into passes of this size (0: 1024 on CPU, where bigger passes only add
            padding, 16384 on CUDA).
    """

    def __init__(self, run: TrainedRun, cfg: Config, device: str = "auto", precision: str = "auto",
                 max_batch_size: int = 32, max_batch_tokens: int = 0):  # fmt: skip
        self.run, self.cfg = run, cfg
        self.device = resolve_device(cfg.trainer.device if device == "auto" else device)
        self.precision = resolve_precision(
            cfg.trainer.precision if precision == "auto" else precision, self.device
        )
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens or (16384 if self.device.type == "cuda" else 1024)
        self.tagging = isinstance(run.labels, TagSpace)
        self.model = run.model
        merge_lora(self.model)  # no adapter cost per request
        if self.model.encoder.prefix is not None:
            self.model.encoder.prefix.fold()
        self.model.to(self.device).eval()

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best", **kwargs) -> Engine:
        run = load_run(run_dir, checkpoint)
        return cls(run, run.config, **kwargs)

    @property
    def max_length(self) -> int:
        return self.cfg.data.max_length

    # -- in the request's thread ------------------------------------------------------------------
    def encode(self, inputs: list[tuple[str, str | None]], truncate: bool) -> list[Item]:
        """Items for the texts of one request, encoded as ``predict.py`` encodes them: a run trained on
        pairs (``data.text_pair_field``) reads every input as a pair (a missing second text is empty).

        Raises ServeError ``validation`` for a text longer than ``data.max_length`` tokens when
        ``truncate`` is false (a run reading windows never truncates) and for a pair sent to a run that
        reads single texts; ``tokenizer`` if tokenizing fails."""
        items = [Item(text, pair) for text, pair in inputs]
        reads_pairs = not self.tagging and self.cfg.data.text_pair_field is not None
        if not reads_pairs and any(item.pair is not None for item in items):
            raise ServeError("validation", "this run reads single texts, not pairs: send [text] or a string")
        if self.tagging:
            by_character = self.cfg.data.name in CHARACTER_TASKS
            for item in items:
                item.tokens, item.spans = split_text(item.text, by_character)
            return items
        texts = [item.text for item in items]
        pairs = [item.pair or "" for item in items] if reads_pairs else None
        try:
            encoded, documents = encode_texts(self.run.tokenizer, texts, pairs, self.cfg.data)
        except FtcoreError as e:  # e.g. a pair run configured to read long texts as windows
            raise ServeError("validation", str(e)) from None
        except Exception as e:  # the tokenizers library refuses what it cannot encode
            raise ServeError("tokenizer", f"cannot tokenize the input: {e}") from None
        if documents is None:
            documents = np.arange(len(items))
            if not truncate and encoded.truncated.any():
                raise ServeError(
                    "validation", f"`inputs` must have less than {self.max_length} tokens; send "
                    '"truncate": true to cut a longer text as the run was trained '
                    f"(data.truncation={self.cfg.data.truncation})",
                )  # fmt: skip
        for slot, item in enumerate(items):
            item.rows = select_rows(encoded, np.flatnonzero(documents == slot))
        return items

    # -- in the worker's thread -------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, items: list[Item]) -> list:
        """The output of every item: its fp32 logits ``(num_labels,)`` for a classifier; for a tagger, the
        logits of its words ``(words, num_labels)`` and their decoded tag ids ``(words,)``."""
        if self.tagging:
            return self._run_tagger(items)
        rows = [item.rows for item in items]
        documents = np.repeat(np.arange(len(items)), [len(r) for r in rows])
        windows = self.cfg.data.long_text == "windows"
        logits = predict_logits(
            self.model, concat_encoded(rows), self.max_batch_size, self.device, self.precision,
            self.run.tokenizer.pad_id, documents=documents if windows else None,
            window_pool=self.cfg.data.window_pool, max_tokens=self.max_batch_tokens,
        )  # fmt: skip
        return list(logits.cpu().numpy())

    def _run_tagger(self, items: list[Item]) -> list[tuple[np.ndarray, np.ndarray]]:
        rows = encode_sentences(
            self.run.tokenizer, [item.tokens for item in items], self.max_length, self.cfg.data.window_stride
        )
        pieces, _ = word_logits(self.model, rows, self.max_batch_size, self.device, self.precision,
                                self.run.tokenizer.pad_id)  # fmt: skip
        emissions, starts = sentence_emissions(pieces, len(items), self.model.num_labels)
        tags = decode_emissions(self.model, emissions, starts, self.max_batch_size, self.device)
        return [(emissions[starts[i] : starts[i + 1]], np.asarray(path)) for i, path in enumerate(tags)]

    def warm_up(self) -> None:
        """Score a short and a full-length text once, so the first requests pay no first-call costs."""
        long_text = " ".join(["warm"] * self.max_length)
        self.score(self.encode([("warm up", None), (long_text, None)], truncate=True))

    # -- answers ----------------------------------------------------------------------------------
    def answer(self, item: Item, output, raw_scores: bool) -> list[dict]:
        """The answer for one item (its output from :meth:`score`): labels by score (see ``protocol``), or
        a tagger's spans."""
        logits = output[0] if self.tagging else output
        if not np.isfinite(logits).all():
            raise ServeError("backend", "score is NaN")
        if self.tagging:
            return self._spans(item, *output, raw_scores)
        labels = self.run.labels
        if labels.problem == "regression":
            return [{"score": float(output.reshape(-1)[0]), "label": "LABEL_0"}]
        scores = (
            output if raw_scores else outputs_from_logits(labels.problem, torch.from_numpy(output)).numpy()
        )
        return ranked(scores, labels.names)

    def _spans(self, item: Item, logits: np.ndarray, path: np.ndarray, raw_scores: bool) -> list[dict]:
        """A tagger's answer, shaped as token-classification pipelines group entities: ``{"entity_group",
        "score", "word", "start", "end"}`` per entity (BIO), word (BMES, group ``WORD``) or token (plain
        tags); the score is the mean probability (logit with ``raw_scores``) of the chosen tags."""
        scores = logits if raw_scores else torch.from_numpy(logits).softmax(-1).numpy()
        chosen = scores[np.arange(len(path)), path]
        tags = [self.run.labels.names[t] for t in path]
        if self.run.labels.scheme == "bio":
            groups = list(bio_spans(tags))
        elif self.run.labels.scheme == "bmes":
            groups = [("WORD", a, b) for a, b in word_spans(tags)]
        else:
            groups = [(tag, i, i + 1) for i, tag in enumerate(tags)]
        out = []
        for kind, a, b in groups:
            start, end = item.spans[a][0], item.spans[b - 1][1]
            out.append({"entity_group": kind, "score": float(chosen[a:b].mean()), "word": item.text[start:end],
                        "start": start, "end": end})  # fmt: skip
        return out

    def info(self) -> dict:
        """What ``GET /info`` tells about the model (TEI's fields where they apply, then ftcore's)."""
        labels = self.run.labels
        problem = "token_classification" if self.tagging else labels.problem
        names = ["LABEL_0"] if problem == "regression" else labels.names
        return {
            "model_id": str(self.run.checkpoint.parent.parent),
            "model_dtype": self.precision,
            "model_type": {
                "token_classifier" if self.tagging else "classifier": {
                    "id2label": {str(i): str(n) for i, n in enumerate(names)},
                    "label2id": {str(n): i for i, n in enumerate(names)},
                }
            },
            "max_input_length": self.max_length,
            "version": ftcore.__version__,
            "checkpoint": str(self.run.checkpoint),
            "problem": problem,
            "method": self.cfg.method.name,
            "device": str(self.device),
            "truncation": "windows" if self.cfg.data.long_text == "windows" else self.cfg.data.truncation,
            "max_batch_tokens": self.max_batch_tokens,
        }
