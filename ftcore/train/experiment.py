"""A whole run, wired together: config -> data -> model -> method -> ``fit`` -> run directory.

The run directory holds everything needed to use the model later without the original command:

    .hydra/config.yaml     the composed config (written by Hydra)
    tokenizer/             the tokenizer, including any vocabulary extension
    labels.json            the label <-> id map built from the training split (the tag map, with its
                           scheme, for token classification)
    checkpoints/{last,best}/
    metrics.json           final validation and test metrics (written last: the run is complete)
    tb/, train.log
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ftcore.config import Config, DataConfig, ModelConfig, PretrainConfig
from ftcore.data.dataset import LabelSpace, TaskData, build_task_data, read_splits
from ftcore.data.glossary import gloss_token_ids, load_glossary
from ftcore.data.tagging import TaggingData, TagSpace, build_tagging_data, read_tagged_splits
from ftcore.data.tokenizer import EncodedTexts, TextTokenizer
from ftcore.errors import CheckpointError, ConfigError
from ftcore.files import save_json
from ftcore.methods import apply_method, trainable_report
from ftcore.model import BertModel, SequenceClassifier
from ftcore.model.crf import crf_for_tags
from ftcore.model.heads import TOKEN_CLASSIFICATION, TokenClassifier
from ftcore.train import checkpoint as ckpt
from ftcore.train.distributed import DistInfo, barrier, init_distributed, shutdown
from ftcore.train.logging import attach_log_file, log
from ftcore.train.loop import fit
from ftcore.train.precision import resolve_device, resolve_precision
from ftcore.train.task import ClassificationTask, TaggingTask

# what cuts data=reviews and data=peoples_daily_* into splits, and so the training split a corpus source reads
SPLIT_KEYS = ("split_seed", "validation_fraction", "test_fraction")
PRETRAINING_RECORD = "ftcore_pretraining.json"  # in a pretraining run's model/: the text it read
BIGRAM_KEYS = "encoder.embeddings.bigrams.keys"  # a checkpoint's tensor of the bigrams with embeddings

# trainer.* settings that change how a run reports, not what it computes: resuming may change them.
COSMETIC_TRAINER_KEYS = ("progress", "log_every", "threads", "compile", "retain_memory")


def fingerprint(cfg: Config | PretrainConfig, precision: str, trained_on: tuple[np.ndarray, ...],
                counts: dict[str, int]) -> dict:  # fmt: skip
    """What a checkpoint must agree with to be resumed: the config (less cosmetic keys), the precision
    actually used (``auto`` resolves per machine), the training data's ``counts`` and a digest of its
    encoded arrays ``trained_on``."""
    d = dataclasses.asdict(cfg)
    d.pop("resume")
    for key in COSMETIC_TRAINER_KEYS:
        d["trainer"].pop(key)
    digest = hashlib.sha256()
    for array in trained_on:
        digest.update(np.ascontiguousarray(array).tobytes())
    d["resolved"] = {"precision": precision, **counts, "train_sha256": digest.hexdigest()}
    return d


def train_fingerprint(cfg: Config, data: TaskData | TaggingData, precision: str) -> dict:
    """:func:`fingerprint` of a fine-tuning run: its encoded training split and labels."""
    train = data.splits["train"]
    encoded = train.rows.encoded if isinstance(data, TaggingData) else train.encoded
    trained_on = (encoded.ids, encoded.offsets, train.labels)
    return fingerprint(cfg, precision, trained_on, {"train_examples": len(train)})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(
    cfg: Config,
    model_dir: Path,
    labels: LabelSpace | TagSpace,
    tokenizer: TextTokenizer,
    class_weights: np.ndarray | None = None,
    bigram_keys: torch.Tensor | None = None,
) -> SequenceClassifier | TokenClassifier:
    """Pretrained encoder + new head for the task, vocabulary grown to the tokenizer's, embeddings for
    ``bigram_keys`` (``model.bigrams``, see :func:`frequent_bigrams`), dropout as ``model.*_dropout``
    say, method applied."""
    classifier_dropout = cfg.model.classifier_dropout
    if classifier_dropout is None:
        classifier_dropout = cfg.model.hidden_dropout  # None still: the checkpoint's hidden dropout
    if isinstance(labels, TagSpace):
        model = TokenClassifier.from_pretrained(
            model_dir,
            labels.num_tags,
            classifier_dropout,
            crf=crf_for_tags(labels.names, labels.scheme) if cfg.model.crf else None,
        )
    else:
        model = SequenceClassifier.from_pretrained(
            model_dir,
            num_labels=labels.num_labels,
            problem=labels.problem,
            pooling=cfg.model.pooling,
            classifier_dropout=classifier_dropout,
            class_weights=None if class_weights is None else torch.from_numpy(class_weights),
            label_smoothing=cfg.model.label_smoothing,
        )
    model.encoder.set_dropout(cfg.model.hidden_dropout, cfg.model.attention_dropout)
    model.encoder.add_tokens(*new_token_rows(cfg.model, tokenizer, model.encoder, cfg.data.problem))
    if cfg.model.bigrams:
        if bigram_keys is None:
            raise ValueError("model.bigrams needs the bigram keys of the training data")
        model.encoder.add_bigrams(bigram_keys, cfg.model.bigram_dim)
    prompt_ids = None
    if cfg.method.name == "prompt" and cfg.method.prompt_init == "text":
        encoded = tokenizer.encode_batch([cfg.method.prompt_init_text], max_length=512)
        prompt_ids = encoded[0][0][1:-1].tolist()  # without [CLS] and [SEP]
    return apply_method(model, cfg.method, prompt_init_ids=prompt_ids, max_length=cfg.data.max_length)


def check_no_leakage(model_dir: Path, data: DataConfig) -> None:
    """Refuse to fine-tune from a model whose pretraining text held this run's validation or test split:
    ``data=reviews`` or ``data=peoples_daily_*`` from a *different* cut of its corpus' training split
    (corpus source ``reviews`` / ``peoples_daily_train``), a People's Daily tagger from all of People's
    Daily (source ``peoples_daily``)."""
    record = model_dir / PRETRAINING_RECORD
    tagging = data.name.startswith("peoples_daily_")
    if not (data.name == "reviews" or tagging) or not record.is_file():
        return
    split_source, corpus, held_out = (
        ("peoples_daily_train", "People's Daily", "sentences")
        if tagging
        else ("reviews", "review", "reviews")
    )
    sources = json.loads(record.read_text(encoding="utf-8"))["corpus"]["sources"]
    ours = {k: getattr(data, k) for k in SPLIT_KEYS}
    for source in sources:
        if tagging and source["name"] == "peoples_daily":
            raise ConfigError(
                f"model.path={model_dir} was pretrained on all of People's Daily; data={data.name} would evaluate "
                "on sentences it read (pretrain on corpus=peoples_daily_train instead)"
            )
        theirs = {k: source.get(k) for k in SPLIT_KEYS}
        if source["name"] == split_source and theirs != ours:
            raise ConfigError(
                f"model.path={model_dir} was pretrained on the {corpus} training split of {theirs}; fine-tuning "
                f"with data.{', data.'.join(f'{k}={v}' for k, v in ours.items())} would evaluate on {held_out} "
                "it read"
            )


def extend_vocabulary(tokenizer: TextTokenizer, texts: list[str], cfg: ModelConfig, dist: DistInfo) -> None:
    """Add the characters of ``texts`` that the vocabulary can only spell as [UNK], and the glossary's most
    frequent words (``model.extend_vocab*``); log how the [UNK] rate changed."""
    before = tokenizer.unk_rate(texts[:2000])
    words = load_glossary(cfg.extend_vocab_glossary) if cfg.extend_vocab_words else {}
    added = tokenizer.extend_vocabulary(
        texts, cfg.extend_vocab_min_freq, cfg.extend_vocab_max_new, relearn=cfg.extend_vocab_relearn,
        words=words.keys(), max_words=cfg.extend_vocab_words,
    )  # fmt: skip
    if dist.is_main:
        relearned = sum(tokenizer.token_id(f"[relearned:{char}]") is not None for char in added)
        words_added = sum(len(token) > 1 for token in added)
        log.info("vocabulary extended by %d characters and %d words: [UNK] rate %.1f%% -> %.1f%% (%d of the "
                 "characters relearned: in the vocabulary, but of a script it mostly lacks)",
                 len(added) - words_added, words_added, 100 * before, 100 * tokenizer.unk_rate(texts[:2000]),
                 relearned)  # fmt: skip


def new_token_rows(
    cfg: ModelConfig, tokenizer: TextTokenizer, encoder: BertModel, problem: str | None
) -> tuple[int, str, list[list[list[int]]] | None]:
    """How ``encoder``'s vocabulary grows to the tokenizer's: ``(n, init, glosses)`` for ``add_tokens``,
    with ``model.extend_vocab_init`` resolved for ``problem`` (None: pretraining) and, for ``gloss``, the
    glossary's senses of the new tokens as ids of the encoder's pretrained tokens."""
    first = encoder.config.vocab_size
    n = tokenizer.vocab_size - first
    init = cfg.added_token_init(problem)
    if n <= 0 or init != "gloss":
        return n, init, None
    tokens = tokenizer.id_to_token_table()[first:]
    glossary = load_glossary(cfg.extend_vocab_glossary)
    glosses = gloss_token_ids(tokenizer, tokens, glossary, below=encoder.embeddings.word.num_embeddings)
    log.info("%d of %d added tokens start from their glosses in %s", sum(map(bool, glosses)), n,
             cfg.extend_vocab_glossary)  # fmt: skip
    return n, init, glosses


def frequent_bigrams(
    cfg: ModelConfig, tokenizer: TextTokenizer, data: TaskData | TaggingData, dist: DistInfo
) -> torch.Tensor | None:
    """The token bigrams of the training split that get embeddings (``model.bigrams``), as sorted packed
    keys; None when the run has none. Logs how many there are and how much of validation they cover."""
    if not cfg.bigrams:
        return None

    def rows(name: str) -> EncodedTexts:
        split = data.splits[name]
        return split.rows.encoded if isinstance(data, TaggingData) else split.encoded

    specials = [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id]
    keys = rows("train").frequent_bigrams(cfg.bigram_min_freq, skip=specials)
    if dist.is_main:
        seen = rows("validation").frequent_bigrams(1, skip=specials)
        times = "once" if cfg.bigram_min_freq == 1 else f"{cfg.bigram_min_freq} times"
        log.info("bigram embeddings: %d token bigrams seen at least %s in training (%d x %d numbers); "
                 "%.1f%% of the distinct bigrams of validation among them", len(keys), times,
                 len(keys) + 1, cfg.bigram_dim, 100 * np.isin(seen, keys).mean() if len(seen) else 0.0)  # fmt: skip
    return torch.from_numpy(keys)


@contextlib.contextmanager
def run_context(cfg: Config | PretrainConfig, run_dir: Path) -> Iterator[tuple[DistInfo, torch.device, str]]:
    """What every job does around its work: check ``resume``, set threads, join the process group (under
    torchrun), resolve the precision, open the run directory and its log file (rank 0), seed; yields
    ``(dist, device, precision)`` and leaves the process group at the end."""
    cfg.validate()
    if cfg.resume is not None:
        if not (Path(cfg.resume) / "checkpoints").is_dir():
            raise ConfigError(f"resume={cfg.resume}: not a run directory with checkpoints/ to continue from")
        if Path(cfg.resume).resolve() != run_dir.resolve():
            raise ConfigError(f"resume={cfg.resume} continues in its own directory, not in {run_dir}; "
                              "drop hydra.run.dir (and -m) when resuming")  # fmt: skip
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    dist, device = init_distributed(resolve_device(cfg.trainer.device))
    if not dist.is_main:
        log.setLevel(logging.ERROR)  # one voice: rank 0 reports, the others only on errors
    try:
        precision = resolve_precision(cfg.trainer.precision, device)
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            attach_log_file(run_dir)
        seed_everything(cfg.trainer.seed)
        yield dist, device, precision
    finally:
        shutdown(dist)


def prepare(cfg: Config, dist: DistInfo) -> tuple[TextTokenizer, TaskData | TaggingData, Path]:
    """Tokenizer (extended when asked) and encoded data of a run."""
    model_dir = cfg.model.resolve_path()
    check_no_leakage(model_dir, cfg.data)
    tokenizer = TextTokenizer.from_dir(model_dir, lowercase=cfg.data.lowercase)
    tagging = cfg.data.problem == TOKEN_CLASSIFICATION
    splits = read_tagged_splits(cfg.data) if tagging else read_splits(cfg.data)
    if cfg.model.extend_vocab:
        if tagging:
            texts = [" ".join(s.tokens) for s in splits[0]["train"]]
        else:
            texts = [t for e in splits[0]["train"] for t in (e.text, e.text_pair) if t]
        extend_vocabulary(tokenizer, texts, cfg.model, dist)
    if tagging:
        data = build_tagging_data(cfg.data, tokenizer, splits=splits)
    else:
        data = build_task_data(cfg.data, tokenizer, splits=splits)
    if dist.is_main:
        log.info("data: %s", json.dumps(data.stats, ensure_ascii=False))
    return tokenizer, data, model_dir


def train(cfg: Config, run_dir: str | Path) -> dict | None:
    """Run one training job into ``run_dir``; returns the metrics written to metrics.json (None if interrupted)."""
    run_dir = Path(run_dir)
    with run_context(cfg, run_dir) as (dist, device, precision):
        tokenizer, data, model_dir = prepare(cfg, dist)
        tagging = isinstance(data, TaggingData)
        labels = data.tags if tagging else data.labels
        bigrams = frequent_bigrams(cfg.model, tokenizer, data, dist)
        model = build_model(
            cfg, model_dir, labels, tokenizer, None if tagging else data.class_weights, bigrams
        )
        if dist.enabled:  # same initial weights everywhere (DDP also broadcasts them), own dropout streams
            torch.manual_seed(cfg.trainer.seed + 1000 * dist.rank)
        if dist.is_main:
            head = (
                "token classifier" + (" + CRF" if cfg.model.crf else "")
                if tagging
                else f"{cfg.model.pooling} pooling"
            )
            log.info("model: %s (%s); %s", model_dir, head, trainable_report(model))
            tokenizer.save(run_dir / "tokenizer")
            labels.save(run_dir / "labels.json")
        weights = None if tagging or data.class_weights is None else data.class_weights.tolist()
        # (the loss weights go with the checkpoints: evaluating the run later scores the same loss)
        extra = {"base_model": str(model_dir), "vocab_size": tokenizer.vocab_size, "class_weights": weights}
        if tagging:
            task = TaggingTask(data, tokenizer.pad_id, cfg.data.pad_to_multiple)
        else:
            task = ClassificationTask(data, tokenizer.pad_id, cfg.data.pad_to_multiple,
                                      augment_prob=cfg.data.augment_prob if cfg.data.augment != "none" else 0.0,
                                      window_pool=cfg.data.window_pool)  # fmt: skip
        result = fit(model, task, cfg.trainer, cfg.optim, run_dir, device, precision,
                     train_fingerprint(cfg, data, precision), resume=cfg.resume is not None, dist=dist,
                     extra_state=extra)  # fmt: skip
        if result is not None and dist.is_main:
            save_json(result, run_dir / "metrics.json")
            log.info("test %s=%.4f (best step %s); metrics in %s", result["metric"], result["test"].get(result["metric"]) or 0.0,
                     result["best_step"], run_dir / "metrics.json")  # fmt: skip
        barrier(dist)
        return result


@dataclasses.dataclass
class TrainedRun:
    """A finished (or stopped) run loaded back: its config, tokenizer, labels and model."""

    config: Config
    tokenizer: TextTokenizer
    labels: LabelSpace | TagSpace
    model: SequenceClassifier | TokenClassifier
    checkpoint: Path
    base_model: Path


def config_from_dict(d: dict) -> Config:
    """A :class:`Config` from its (possibly partial) dict form, typed and checked like a composed one."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), d))


RUN_CHECKPOINTS = ("best", "last")  # what a run directory keeps, and load_run reads


def load_run(run_dir: str | Path, which: str = "best") -> TrainedRun:
    """Rebuild the model of a run directory from its base model and the ``best`` (or ``last``) checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "labels.json").is_file() or not (run_dir / "tokenizer").is_dir():
        raise CheckpointError(
            f"{run_dir}: not a training run directory (labels.json and tokenizer/ expected)"
        )
    found = ckpt.load_latest(run_dir / "checkpoints" / which, log=log.warning)
    if found is None:
        raise CheckpointError(f"{run_dir / 'checkpoints' / which}: no complete checkpoint to load")
    state, tensors = found
    cfg = config_from_dict({k: v for k, v in state["config"].items() if k != "resolved"})
    tokenizer = TextTokenizer.from_dir(run_dir / "tokenizer")
    tagging = cfg.data.problem == TOKEN_CLASSIFICATION
    labels = TagSpace.load(run_dir / "labels.json") if tagging else LabelSpace.load(run_dir / "labels.json")
    cfg.method.prompt_init = "random"  # the checkpoint holds the trained prompt
    # ... and the added tokens' rows, and tokenizer/ the extended vocabulary: nothing is extended or
    # initialised again (no glossary needed)
    cfg.model.extend_vocab, cfg.model.extend_vocab_init = False, "mean"
    weights = state.get("class_weights")  # (absent from checkpoints written before it was kept)
    weights = None if weights is None else np.asarray(weights, dtype=np.float32)
    bigrams = tensors["model.safetensors"].get(BIGRAM_KEYS)  # (their rows are in the checkpoint too)
    if cfg.model.bigrams and bigrams is None:
        raise CheckpointError(
            f"{run_dir / 'checkpoints' / which}: model.bigrams=true but no {BIGRAM_KEYS} saved"
        )
    model = build_model(cfg, Path(state["base_model"]), labels, tokenizer, weights, bigrams)
    ckpt.load_model_tensors(
        model, tensors["model.safetensors"], state["trainable_only"], run_dir / "checkpoints" / which
    )
    return TrainedRun(
        cfg, tokenizer, labels, model.eval(), run_dir / "checkpoints" / which, Path(state["base_model"])
    )
