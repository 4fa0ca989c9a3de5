"""Continued (domain-adaptive) masked-LM pretraining: config -> text -> MaskedLM -> ``fit`` -> ``<run>/model``.

Gururangan et al. (2020, "Don't Stop Pretraining") continue BERT's masked-LM objective on unlabelled
text of the task's domain before fine-tuning. Here it runs through the same loop as fine-tuning
(``fit``: precision, accumulation, checkpoints, bit-exact resume, DDP, TensorBoard); only the task
differs: :class:`MaskedLMTask` masks every training batch afresh (``ftcore/data/masking.py``) and scores
held-out text by masked-token accuracy and perplexity.

The run directory holds what ``train.py`` leaves (``.hydra/``, ``tokenizer/``, ``checkpoints/``,
``metrics.json``, ``tb/``, ``train.log``) and ``model/``: the best weights as an HF ``BertForMaskedLM``
directory, vocabulary grown by the added characters (ordinary entries of ``vocab.txt`` and
``tokenizer.json``), which ``train.py model.path=<run>/model`` fine-tunes. Its config.json says where the
added rows start, so frozen-base methods keep training them (see ``BertModel.split_vocabulary``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftcore.config import CorpusConfig, DataConfig, MaskingConfig, PretrainConfig, TextSource
from ftcore.data.batching import epoch_batches
from ftcore.data.dataset import read_splits, stratified_split
from ftcore.data.long_text import encode_windows
from ftcore.data.masking import IGNORE, MaskingVocabulary, mask_tokens
from ftcore.data.sources import read_peoples_daily, read_texts
from ftcore.data.tagging import read_tagged_splits
from ftcore.data.tokenizer import MASK, EncodedTexts, TextTokenizer
from ftcore.errors import CheckpointError, ConfigError, DataError
from ftcore.files import replace_dir, save_json
from ftcore.methods import apply_method, trainable_report
from ftcore.methods.lora import merge_lora
from ftcore.model import MaskedLM
from ftcore.train.distributed import (
    SINGLE_PROCESS,
    DistInfo,
    barrier,
    gather_objects,
)
from ftcore.train.experiment import (
    PRETRAINING_RECORD,
    SPLIT_KEYS,
    extend_vocabulary,
    fingerprint,
    new_token_rows,
    run_context,
)
from ftcore.train.logging import log
from ftcore.train.loop import fit
from ftcore.train.precision import autocast
from ftcore.train.task import batch_to

CORPUS_SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------------
# text


def source_texts(source: TextSource) -> tuple[list[str], str]:
    """The texts of one source and how messages name it."""
    split = {k: getattr(source, k) for k in SPLIT_KEYS}  # train.py's split of a bundled corpus
    if source.name == "reviews":
        splits, _, _ = read_splits(DataConfig(name="reviews", **split))
        return [e.text for e in splits["train"]], "reviews (training split)"
    if source.name == "peoples_daily_train":  # the sentences of every peoples_daily_* task, in the same order
        splits, _, _ = read_tagged_splits(DataConfig(name="peoples_daily_cws", tag_scheme="bmes", **split))
        return ["".join(s.tokens) for s in splits["train"]], "peoples_daily (training split)"
    if source.name == "peoples_daily":
        return ["".join(word for word, _ in words) for _, words in read_peoples_daily()], "peoples_daily"
    return [text for _, text in read_texts(source.file, source.name, source.text_field)], str(source.file)


def read_corpus(cfg: CorpusConfig) -> tuple[dict[str, list[str]], dict]:
    """The train / validation / test texts of the mix, and counts to log.

    Each source is cut on its own (so a source's weight never moves its texts between parts); its train
    part then appears ``weight`` times, the fraction beyond whole repeats as a fixed random subset.
    """
    parts: dict[str, list[str]] = {split: [] for split in CORPUS_SPLITS}
    stats: dict = {}
    for i, source in enumerate(cfg.sources):
        texts, name = source_texts(source)
        texts = list(dict.fromkeys(t.strip() for t in texts if t.strip()))  # exact repeats once
        if not texts:
            raise DataError(name, "no text that is not blank; expected at least one")
        fractions = [
            min(f, cfg.max_eval_texts / len(texts)) for f in (cfg.validation_fraction, cfg.test_fraction)
        ]
        train, validation, test = stratified_split(None, len(texts), fractions, cfg.split_seed + i)
        if len(train) == 0:
            raise DataError(name, "no text left for training after the validation and test parts")
        rng = np.random.default_rng([cfg.split_seed, i])
        whole, fraction = divmod(source.weight, 1.0)
        extra = rng.choice(train, int(round(fraction * len(train))), replace=False)
        weighted = np.concatenate([np.tile(train, int(whole)), np.sort(extra)])
        parts["train"] += [texts[j] for j in weighted]
        parts["validation"] += [texts[j] for j in validation]
        parts["test"] += [texts[j] for j in test]
        stats[f"{i}:{name}"] = {"texts": len(texts), "train": len(weighted), "validation": len(validation),
                                "test": len(test), "weight": source.weight}  # fmt: skip
    for split in ("validation", "test"):
        if not parts[split]:
            raise ConfigError(f"corpus.{split}_fraction leaves no held-out text; raise it")
    return parts, stats


# ---------------------------------------------------------------------------------------------------
# the task


def masking_vocabulary(tokenizer: TextTokenizer) -> MaskingVocabulary:
    """Which ids masking may touch: every id but special tokens; ``##`` pieces continue words."""
    tokens = tokenizer.id_to_token_table()
    mask_id = tokenizer.token_id(MASK)
    if mask_id is None:
        raise ConfigError(f"the tokenizer has no {MASK} token; masked-LM pretraining needs one")
    specials = tokenizer.special_tokens
    special = np.array([t in specials for t in tokens])
    continues = np.array([t.startswith("##") for t in tokens])
    return MaskingVocabulary(mask_id, special, continues)


@dataclass
class MaskedLMTask:
    """Masked-LM over encoded text splits, in the shape the loop asks of a task (see ``task.py``).

    Every text is masked from a generator of its own: in training, seeded by the loop's generator for
    the step (so each epoch masks afresh, a resumed run masks as an uninterrupted one, and DDP ranks or
    micro-batches of the same shape never share a mask) and the text's index; held-out texts are masked
    once, from ``seed`` and their index, so every evaluation scores the same targets whatever the batch
    size or the number of processes.
    """

    splits: dict[str, EncodedTexts]
    vocab: MaskingVocabulary
    masking: MaskingConfig
    seed: int
    pad_id: int = 0
    pad_to_multiple: int = 8

    default_metric = "loss"

    def __post_init__(self) -> None:
        self._held_out = {
            split: [self.mask_text(self.splits[split][i][0], np.random.default_rng([self.seed, k, i]))
                    for i in range(len(self.splits[split]))]
            for k, split in enumerate(CORPUS_SPLITS) if split != "train"
        }  # fmt: skip

    @property
    def train_lengths(self) -> np.ndarray:
        return self.splits["train"].lengths

    def mask_text(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) of one encoded text (see ``masking.mask_tokens``)."""
        m = self.masking
        inputs, labels = mask_tokens(ids[None], self.vocab, rng, m.probability, m.mask_fraction,
                                     m.random_fraction, m.whole_word)  # fmt: skip
        return inputs[0], labels[0]

    def batch(
        self, rows: list[tuple[np.ndarray, np.ndarray]], pad_to_multiple: int = 1
    ) -> dict[str, torch.Tensor]:
        """Masked texts padded into one batch: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``."""
        lengths = np.array([len(inputs) for inputs, _ in rows])
        L = -(-int(lengths.max()) // pad_to_multiple) * pad_to_multiple
        ids = np.full((len(rows), L), self.pad_id, dtype=np.int64)
        labels = np.full((len(rows), L), IGNORE, dtype=np.int64)
        for r, (inputs, targets) in enumerate(rows):
            ids[r, : len(inputs)], labels[r, : len(inputs)] = inputs, targets
        mask = (
            None
            if (lengths == L).all()
            else torch.from_numpy((np.arange(L) < lengths[:, None]).astype(np.int64))
        )
        return {"input_ids": torch.from_numpy(ids), "attention_mask": mask,
                "token_type_ids": torch.zeros_like(torch.from_numpy(ids)), "labels": torch.from_numpy(labels)}  # fmt: skip

    def train_batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        base = int(rng.integers(2**63))
        train = self.splits["train"]
        rows = [self.mask_text(train[i][0], np.random.default_rng([base, int(i)])) for i in indices]
        return self.batch(rows, self.pad_to_multiple)

    def forward(self, net: nn.Module, batch: dict) -> torch.Tensor:
        """Scores (N, V) at the N target positions only."""
        return net(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["labels"] != IGNORE
        )

    def loss(self, model: MaskedLM, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over the batch's targets (0 for a batch without any, rather than NaN).

        The loop weights each micro-batch by its share of the window's texts, not of its targets: with
        gradient accumulation the window's loss is a mean of per-micro-batch means."""
        labels = batch["labels"]
        targets = labels[labels != IGNORE]
        return F.cross_entropy(logits.float(), targets, reduction="sum") / max(len(targets), 1)

    @torch.inference_mode()
    def evaluate(self, model: MaskedLM, split: str, batch_size: int, device: torch.device, precision: str,
                 dist: DistInfo = SINGLE_PROCESS) -> dict:  # fmt: skip
        """``loss`` (mean cross-entropy per target), ``perplexity`` (its exp) and ``masked_accuracy``."""
        was_training = model.training
        model.eval()
        encoded = self.splits[split]
        batches = epoch_batches(encoded.lengths, batch_size, 0, 0, shuffle=False,
                                world_size=dist.world_size, rank=dist.rank)  # fmt: skip
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        targets = 0
        for idx in batches:
            batch = batch_to(self.batch([self._held_out[split][i] for i in idx]), device)
            with autocast(device, precision):
                logits = self.forward(model, batch)
            labels = batch["labels"][batch["labels"] != IGNORE]
            loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").double()
            correct += (logits.argmax(-1) == labels).sum()
            targets += len(labels)
        model.train(was_training)
        gathered = gather_objects((loss_sum.item(), correct.item(), targets), dist)
        loss_total, correct_total, count = (sum(g[k] for g in gathered) for k in range(3))
        loss = loss_total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                "masked_accuracy": correct_total / max(count, 1), "targets": count}  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# the run


def build_masked_lm(cfg: PretrainConfig, model_dir: Path, tokenizer: TextTokenizer) -> MaskedLM:
    """Pretrained encoder (+ its masked-LM head when the checkpoint has one), dropout as
    ``model.*_dropout`` say, vocabulary grown to the tokenizer's, method applied; the pooler stays frozen (masked-LM gives it no gradient)."""
    model = MaskedLM.from_pretrained(model_dir)
    model.encoder.set_dropout(cfg.model.hidden_dropout, cfg.model.attention_dropout)
    model.add_tokens(*new_token_rows(cfg.model, tokenizer, model.encoder, None))
    apply_method(model, cfg.method, max_length=cfg.corpus.max_length, max_length_key="corpus.max_length")
    if model.encoder.pooler is not None:
        model.encoder.pooler.requires_grad_(False)
    return model


def save_model_dir(model: MaskedLM, tokenizer: TextTokenizer, corpus: CorpusConfig, path: Path) -> None:
    """``path`` as an HF-format BertForMaskedLM directory with the tokenizer (LoRA merged first), put in
    place whole (``files.replace_dir``), so a ``model/`` that exists is complete."""
    merge_lora(model)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_as_vocabulary(tmp)
        save_json({"corpus": dataclasses.asdict(corpus)}, tmp / PRETRAINING_RECORD)

    try:
        replace_dir(path, write)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write the model directory ({e.strerror or e})") from None


def pretrain(cfg: PretrainConfig, run_dir: str | Path) -> dict | None:
    """Run one masked-LM pretraining job into ``run_dir``; returns metrics.json's content (None if
    interrupted)."""
    run_dir = Path(run_dir)
    with run_context(cfg, run_dir) as (dist, device, precision):
        model_dir = cfg.model.resolve_path()
        tokenizer = TextTokenizer.from_dir(model_dir, lowercase=cfg.corpus.lowercase)
        texts, stats = read_corpus(cfg.corpus)
        if cfg.model.extend_vocab:
            extend_vocabulary(tokenizer, list(dict.fromkeys(texts["train"])), cfg.model, dist)  # (unweighted)
        budget = cfg.corpus.max_length - 2  # a long text becomes consecutive pieces: every token is read
        splits = {
            name: encode_windows(tokenizer, texts[name], cfg.corpus.max_length, stride=budget)[0]
            for name in CORPUS_SPLITS
        }
        stats["pieces"] = {name: len(e) for name, e in splits.items()}
        stats["tokens"] = {name: int(e.lengths.sum()) for name, e in splits.items()}
        if dist.is_main:
            log.info("corpus: %s", json.dumps(stats, ensure_ascii=False))
        model = build_masked_lm(cfg, model_dir, tokenizer)
        if dist.enabled:
            torch.manual_seed(cfg.trainer.seed + 1000 * dist.rank)
        if dist.is_main:
            log.info("model: %s + masked-LM head; %s", model_dir, trainable_report(model))
            tokenizer.save(run_dir / "tokenizer")
        task = MaskedLMTask(splits, masking_vocabulary(tokenizer), cfg.mlm, cfg.trainer.seed, tokenizer.pad_id,
                            cfg.corpus.pad_to_multiple)  # fmt: skip
        extra = {"base_model": str(model_dir), "vocab_size": tokenizer.vocab_size}
        before_training = task.evaluate(
            model.to(device), "validation", cfg.trainer.eval_batch_size, device, precision, dist
        )
        train = splits["train"]
        resumable = fingerprint(cfg, precision, (train.ids, train.offsets), {"train_texts": len(train)})
        result = fit(model, task, cfg.trainer, cfg.optim, run_dir, device, precision, resumable,
                     resume=cfg.resume is not None, dist=dist, extra_state=extra)  # fmt: skip
        if result is not None and dist.is_main:
            result["val_before"] = before_training
            save_model_dir(model.cpu(), tokenizer, cfg.corpus, run_dir / "model")
            save_json(result, run_dir / "metrics.json")
            log.info("masked-token accuracy %.4f -> %.4f (validation), %.4f (test); model in %s",
                     before_training["masked_accuracy"], result["val"]["masked_accuracy"],
                     result["test"]["masked_accuracy"], run_dir / "model")  # fmt: skip
        barrier(dist)
        return result
