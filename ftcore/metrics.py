"""Evaluation metrics in plain numpy.

Single-label classification works on integer class ids ``0 .. num_classes-1``; multi-label
classification on 0/1 indicator matrices ``(n, num_classes)``; regression on float vectors.
Every function matches scikit-learn (tests use it as the oracle) with these documented choices:

- A ratio whose denominator is zero (precision of a class never predicted, recall of a class absent
  from ``y_true``) counts as 0, like scikit-learn's ``zero_division=0``, and emits an
  :class:`UndefinedMetricWarning` naming the classes.
- Macro and weighted averages run over the classes that occur in ``y_true`` or in the predictions
  (scikit-learn's default label set); a class seen in neither has nothing to measure. Per-class
  results (``average=None``) always have ``num_classes`` entries.
- A metric that is undefined as a whole (ROC-AUC when ``y_true`` holds a single class, Pearson r of a
  constant vector) returns ``None`` with a warning, where scikit-learn raises or SciPy returns NaN:
  ``None`` is valid JSON and cannot be mistaken for a score.
- Empty or mis-shaped inputs are bugs in the caller and raise ``ValueError``.

Sequence tagging, at the end of the file, scores lists of tag-name sequences: entities of BIO tags as
seqeval does by default (conlleval's reading), words of BMES segmentation tags as the SIGHAN bakeoffs.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Average = Literal["macro", "micro", "weighted"] | None

# The scalar keys of :func:`compute_metrics` per problem (a model can be selected by any of them,
# or by the evaluation ``loss``), and those where lower is better.
SCALAR_METRICS = {
    "single_label": ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                     "precision_weighted", "recall_weighted", "roc_auc"),
    "multi_label": ("f1_micro", "f1_macro", "subset_accuracy", "precision_micro", "recall_micro",
                    "precision_macro", "recall_macro", "roc_auc"),
    "regression": ("mse", "mae", "pearson"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall", "word_f1", "word_precision",
                             "word_recall", "token_accuracy"),
}  # fmt: skip
LOWER_IS_BETTER = ("loss", "mse", "mae", "perplexity")
DEFAULT_METRIC = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "mse"}


class UndefinedMetricWarning(UserWarning):
    """A metric (or part of one) is undefined for this input and was given its documented value."""


# ---------------------------------------------------------------------------------------------------
# input checks


def _class_ids(y: ArrayLike, num_classes: int, name: str) -> np.ndarray:
    """``y`` as a non-empty 1-D int64 array of ids in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} must hold class ids in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _indicator(y: ArrayLike, name: str) -> np.ndarray:
    """``y`` as a non-empty ``(n, num_labels)`` boolean matrix; entries must be 0/1."""
    y = np.asarray(y)
    if y.ndim != 2 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D indicator matrix, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return y.astype(bool)


def _floats(y: ArrayLike, name: str, ndim: int = 1) -> np.ndarray:
    """``y`` as a non-empty float64 array of ``ndim`` dimensions without NaN."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != ndim or y.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {y.shape}")
    if np.isnan(y).any():
        raise ValueError(f"{name} contains NaN")
    return y


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f"inputs have different lengths: {len(a)} and {len(b)}")


# ---------------------------------------------------------------------------------------------------
# single-label classification


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of predictions equal to the true label. ``y_true``, ``y_pred``: ``(n,)``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {y_true.shape}")
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred has shape {y_pred.shape}, expected {y_true.shape} like y_true")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class.

    Classes absent from both inputs still get their (zero) row and column.
    """
    y_true = _class_ids(y_true, num_classes, "y_true")
    y_pred = _class_ids(y_pred, num_classes, "y_pred")
    _same_length(y_true, y_pred)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _divide(numerator: np.ndarray, denominator: np.ndarray, what: str, labels: list[str]) -> np.ndarray:
    """``numerator / denominator`` with 0 where the denominator is 0, warning about those ``labels``."""
    zero = denominator == 0
    if zero.any():
        undefined = [label for label, z in zip(labels, zero) if z]
        warnings.warn(
            f"{what} for {', '.join(undefined)}; counted as 0", UndefinedMetricWarning, stacklevel=4
        )
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=~zero)


def _precision_recall_f1_from_counts(
    tp: np.ndarray, pred_count: np.ndarray, true_count: np.ndarray, average: Average
) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 from per-class true positives, predicted and true counts ``(K,)``.

    F1 is ``2·tp / (true + predicted)`` per class, so a class with recall 0 and undefined precision
    gets F1 0 without a warning of its own.
    """
    labels = [f"class {k}" for k in range(len(tp))]
    if average == "micro":
        tp, pred_count, true_count = (np.atleast_1d(count.sum()) for count in (tp, pred_count, true_count))
        labels = ["the pooled classes"]
    elif average in ("macro", "weighted"):
        seen = (true_count + pred_count) > 0
        tp, pred_count, true_count = tp[seen], pred_count[seen], true_count[seen]
        labels = [label for label, s in zip(labels, seen) if s]
        if not labels:  # nothing true and nothing predicted (only possible for multi-label input)
            warnings.warn(
                "no class is true or predicted; scores counted as 0", UndefinedMetricWarning, stacklevel=3
            )
            return 0.0, 0.0, 0.0
    elif average is not None:
        raise ValueError(f"average must be 'macro', 'micro', 'weighted' or None, got {average!r}")

    precision = _divide(tp, pred_count, "precision is undefined (never predicted)", labels)
    recall = _divide(tp, true_count, "recall is undefined (absent from y_true)", labels)
    f1 = _divide(2 * tp, true_count + pred_count, "F1 is undefined (neither true nor predicted)", labels)
    if average is None:
        return precision, recall, f1
    weights = true_count if average == "weighted" else None
    if weights is not None and weights.sum() == 0:
        warnings.warn(
            "weighted average with zero support; counted as 0", UndefinedMetricWarning, stacklevel=3
        )
        return 0.0, 0.0, 0.0
    return tuple(float(np.average(score, weights=weights)) for score in (precision, recall, f1))


def precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int, average: Average = "macro"
) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of single-label predictions.

    Args:
        y_true, y_pred: class ids ``(n,)`` in ``[0, num_classes)``.
        num_classes: number of classes K.
        average: ``"macro"`` (unweighted mean over classes seen in ``y_true`` or ``y_pred``),
            ``"micro"`` (global counts; equals accuracy), ``"weighted"`` (mean weighted by support in
            ``y_true``) or ``None`` (per-class arrays ``(K,)``).

    Returns:
        ``(precision, recall, f1)`` as floats, or arrays ``(K,)`` when ``average`` is None.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return _precision_recall_f1_from_counts(np.diag(cm), cm.sum(axis=0), cm.sum(axis=1), average)


def _binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of a boolean target ``(n,)`` with both classes present, by the rank-sum statistic.

    Tied scores get their average rank, which equals the trapezoid area under the ROC curve:
    AUC = (sum of positive ranks − n_pos·(n_pos+1)/2) / (n_pos·n_neg).
    """
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last element of each group of tied scores
    mean_ranks = ends - (counts - 1) / 2.0
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    rank_sum = mean_ranks[inverse][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _macro_roc_auc(indicator: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean one-vs-rest ROC-AUC over the columns of ``indicator`` ``(n, K)`` that hold both classes."""
    positives = indicator.sum(axis=0)
    defined = (positives > 0) & (positives < len(indicator))
    if not defined.all():
        warnings.warn(
            f"ROC-AUC is undefined for class(es) {np.flatnonzero(~defined).tolist()} "
            "(only one class in y_true); left out of the macro average",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    if not defined.any():
        return None
    return float(np.mean([_binary_roc_auc(indicator[:, k], scores[:, k]) for k in np.flatnonzero(defined)]))


def roc_auc_binary(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """ROC-AUC of binary labels ``(n,)`` in {0, 1} from positive-class scores ``(n,)``.

    Returns None (with a warning) when ``y_true`` holds a single class.
    """
    y_true = _class_ids(y_true, 2, "y_true")
    scores = _floats(scores, "scores")
    _same_length(y_true, scores)
    positive = y_true == 1
    if positive.all() or not positive.any():
        warnings.warn("ROC-AUC is undefined: only one class in y_true", UndefinedMetricWarning, stacklevel=2)
        return None
    return _binary_roc_auc(positive, scores)


def roc_auc_ovr(y_true: ArrayLike, probs: ArrayLike) -> float | None:
    """Macro one-vs-rest ROC-AUC of class ids ``(n,)`` from class scores ``(n, K)``.

    Each class k is scored by column k alone, so rows need not sum to 1, but softmax probabilities
    and raw logits rank differently: pass probabilities to compare with published numbers. Classes
    absent from ``y_true`` (or equal to all of it) are left out with a warning; None if none is left.
    """
    probs = _floats(probs, "probs", ndim=2)
    y_true = _class_ids(y_true, probs.shape[1], "y_true")
    _same_length(y_true, probs)
    return _macro_roc_auc(y_true[:, None] == np.arange(probs.shape[1]), probs)


# ---------------------------------------------------------------------------------------------------
# multi-label classification


def multilabel_precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, average: Average = "macro"
) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of indicator matrices ``(n, K)``, each label scored as a binary task.

    ``average`` as in :func:`precision_recall_f1`; ``"micro"`` pools the counts of all labels.
    """
    y_true, y_pred = _indicator(y_true, "y_true"), _indicator(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"inputs have different shapes: {y_true.shape} and {y_pred.shape}")
    tp = (y_true & y_pred).sum(axis=0)
    return _precision_recall_f1_from_counts(tp, y_pred.sum(axis=0), y_true.sum(axis=0), average)


def subset_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of rows whose predicted label set equals the true one exactly. Inputs ``(n, K)``."""
    y_true, y_pred = _indicator(y_true, "y_true"), _indicator(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"inputs have different shapes: {y_true.shape} and {y_pred.shape}")
    return float(np.mean((y_true == y_pred).all(axis=1)))


# ---------------------------------------------------------------------------------------------------
# regression


def _regression_inputs(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _floats(y_true, "y_true"), _floats(y_pred, "y_pred")
    _same_length(y_true, y_pred)
    return y_true, y_pred


def mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean of ``(y_true − y_pred)²`` over ``(n,)`` vectors."""
    y_true, y_pred = _regression_inputs(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean of ``|y_true − y_pred|`` over ``(n,)`` vectors."""
    y_true, y_pred = _regression_inputs(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def pearson_r(y_true: ArrayLike, y_pred: ArrayLike) -> float | None:
    """Pearson correlation of two ``(n,)`` vectors; None (with a warning) if either is constant."""
    y_true, y_pred = _regression_inputs(y_true, y_pred)
    dt, dp = y_true - y_true.mean(), y_pred - y_pred.mean()
    norm = np.sqrt(np.dot(dt, dt) * np.dot(dp, dp))
    if norm == 0:
        warnings.warn("Pearson r is undefined for a constant input", UndefinedMetricWarning, stacklevel=2)
        return None
    return float(np.clip(np.dot(dt, dp) / norm, -1.0, 1.0))


# ---------------------------------------------------------------------------------------------------
# one report per problem type


def compute_metrics(
    problem: str,
    y_true: ArrayLike,
    outputs: ArrayLike,
    num_classes: int | None = None,
    threshold: float = 0.5,
) -> dict[str, float | int | list | None]:
    """All metrics of one evaluation as a flat JSON-able dict (Python floats, ints, lists, None).

    Args:
        problem: ``"single_label"``, ``"multi_label"`` or ``"regression"``.
        y_true: class ids ``(n,)`` | indicator matrix ``(n, K)`` | targets ``(n,)``.
        outputs: class probabilities ``(n, K)`` (softmax) | label probabilities ``(n, K)`` (sigmoid)
            | predictions ``(n,)``. Predicted classes are the argmax | the labels with
            probability ≥ ``threshold``.
        num_classes: K, required for ``"single_label"`` (>= 2); ignored otherwise.

    Keys:
        every problem: ``num_examples``.
        single_label: ``accuracy``; ``precision_macro``, ``recall_macro``, ``f1_macro``;
            ``precision_weighted``, ``recall_weighted``, ``f1_weighted``; ``f1_micro``;
            ``roc_auc`` (binary from the class-1 column when K = 2, else macro one-vs-rest; None if
            undefined); per class, lists of K: ``precision_per_class``, ``recall_per_class``,
            ``f1_per_class``, ``support_per_class``; ``confusion_matrix`` (K lists of K counts,
            row = true class).
        multi_label: ``subset_accuracy``; ``precision_micro``, ``recall_micro``, ``f1_micro``;
            ``precision_macro``, ``recall_macro``, ``f1_macro``; ``roc_auc`` (macro over labels
            with both classes in ``y_true``; None if there is none); lists of K:
            ``f1_per_class``, ``support_per_class``.
        regression: ``mse``, ``mae``, ``pearson`` (None if either vector is constant).
    """
    if problem == "single_label":
        return _single_label_report(y_true, outputs, num_classes)
    if problem == "multi_label":
        return _multi_label_report(y_true, outputs, threshold)
    if problem == "regression":
        y_true, y_pred = _regression_inputs(y_true, outputs)
        return {
            "num_examples": len(y_true),
            "mse": mean_squared_error(y_true, y_pred),
            "mae": mean_absolute_error(y_true, y_pred),
            "pearson": pearson_r(y_true, y_pred),
        }
    raise ValueError(f"problem must be 'single_label', 'multi_label' or 'regression', got {problem!r}")


def _single_label_report(y_true: ArrayLike, probs: ArrayLike, num_classes: int | None) -> dict:
    if num_classes is None or num_classes < 2:
        raise ValueError(f"single_label metrics need num_classes >= 2, got {num_classes}")
    probs = _floats(probs, "outputs", ndim=2)
    if probs.shape[1] != num_classes:
        raise ValueError(f"outputs have {probs.shape[1]} columns, expected num_classes={num_classes}")
    y_true = _class_ids(y_true, num_classes, "y_true")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp, pred_count, true_count = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    with warnings.catch_warnings():  # each undefined per-class value is already reported below
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        p_macro, r_macro, f_macro = _precision_recall_f1_from_counts(tp, pred_count, true_count, "macro")
        p_weighted, r_weighted, f_weighted = _precision_recall_f1_from_counts(
            tp, pred_count, true_count, "weighted"
        )
        _, _, f_micro = _precision_recall_f1_from_counts(tp, pred_count, true_count, "micro")
    p_class, r_class, f_class = _precision_recall_f1_from_counts(tp, pred_count, true_count, None)
    roc_auc = roc_auc_binary(y_true, probs[:, 1]) if num_classes == 2 else roc_auc_ovr(y_true, probs)
    return {
        "num_examples": len(y_true),
        "accuracy": accuracy(y_true, y_pred),
        "precision_macro": p_macro,
        "recall_macro": r_macro,
        "f1_macro": f_macro,
        "precision_weighted": p_weighted,
        "recall_weighted": r_weighted,
        "f1_weighted": f_weighted,
        "f1_micro": f_micro,
        "roc_auc": roc_auc,
        "precision_per_class": p_class.tolist(),
        "recall_per_class": r_class.tolist(),
        "f1_per_class": f_class.tolist(),
        "support_per_class": true_count.tolist(),
        "confusion_matrix": cm.tolist(),
    }


def _multi_label_report(y_true: ArrayLike, probs: ArrayLike, threshold: float) -> dict:
    y_true = _indicator(y_true, "y_true")
    probs = _floats(probs, "outputs", ndim=2)
    if probs.shape != y_true.shape:
        raise ValueError(f"outputs have shape {probs.shape}, expected {y_true.shape} like y_true")
    y_pred = probs >= threshold
    p_micro, r_micro, f_micro = multilabel_precision_recall_f1(y_true, y_pred, "micro")
    with warnings.catch_warnings():  # each undefined per-class value is reported by the call below
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        p_macro, r_macro, f_macro = multilabel_precision_recall_f1(y_true, y_pred, "macro")
    _, _, f_class = multilabel_precision_recall_f1(y_true, y_pred, None)
    return {
        "num_examples": len(y_true),
        "subset_accuracy": subset_accuracy(y_true, y_pred),
        "precision_micro": p_micro,
        "recall_micro": r_micro,
        "f1_micro": f_micro,
        "precision_macro": p_macro,
        "recall_macro": r_macro,
        "f1_macro": f_macro,
        "roc_auc": _macro_roc_auc(y_true, probs),
        "f1_per_class": f_class.tolist(),
        "support_per_class": y_true.sum(axis=0).tolist(),
    }


# ---------------------------------------------------------------------------------------------------
# sequence tagging: named entities (BIO tags) and word segmentation (BMES tags)
#
# Inputs are sentences as sequences of tag names, true and predicted paired one to one with equal
# lengths. Entity and word scores count exact spans: a predicted span is correct iff the same span
# (with the same type, for entities) is in the truth of that sentence.


def _paired_sentences(
    true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]
) -> list[tuple[list[str], list[str]]]:
    """The sentences as ``(true, pred)`` lists of tags, checked to pair up."""
    if len(true_tag_seqs) == 0:
        raise ValueError("no sentences to score")
    if len(true_tag_seqs) != len(pred_tag_seqs):
        raise ValueError(f"{len(true_tag_seqs)} true sentences but {len(pred_tag_seqs)} predicted ones")
    pairs = [(list(true), list(pred)) for true, pred in zip(true_tag_seqs, pred_tag_seqs)]
    for i, (true, pred) in enumerate(pairs):
        if len(true) != len(pred):
            raise ValueError(f"sentence {i} has {len(true)} true tags but {len(pred)} predicted ones")
    return pairs


def token_accuracy(true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> float:
    """Fraction of tokens, over all sentences, whose predicted tag equals the true one."""
    pairs = _paired_sentences(true_tag_seqs, pred_tag_seqs)
    total = sum(len(true) for true, _ in pairs)
    if total == 0:
        raise ValueError("no tokens to score: every sentence is empty")
    return sum(t == p for true, pred in pairs for t, p in zip(true, pred)) / total


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one BIO-tagged sentence as ``(type, start, end)``, ``end`` exclusive, in order.

    Tags are ``O``, ``B-<type>`` and ``I-<type>`` (the type is everything after the first ``-``).
    Ill-formed sequences are read as conlleval reads them (and seqeval by default): B-X always starts
    an entity; I-X continues the entity just before it if that one is of type X, and otherwise starts
    one (I-X at the start, after O or after another type); O ends the entity. IOB1 tags therefore read
    correctly too. Any other tag raises ValueError.
    """
    spans = []
    open_type, open_start = None, 0  # the entity being read, if any
    for i, tag in enumerate(tags):
        prefix, dash, kind = tag.partition("-")
        if tag != "O" and not (prefix in ("B", "I") and dash and kind):
            raise ValueError(f"BIO tags are O, B-<type> or I-<type>, got {tag!r} at position {i}")
        if prefix == "I" and kind == open_type:
            continue
        if open_type is not None:
            spans.append((open_type, open_start, i))
        open_type, open_start = (None, i) if tag == "O" else (kind, i)
    if open_type is not None:
        spans.append((open_type, open_start, len(tags)))
    return spans


def _span_scores(
    tp: np.ndarray, pred_count: np.ndarray, true_count: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 ``(K,)`` from counts ``(K,)``; undefined ratios are 0, with a warning."""
    precision = _divide(tp, pred_count, "precision is undefined (nothing predicted)", labels)
    recall = _divide(tp, true_count, "recall is undefined (nothing true)", labels)
    f1 = _divide(2 * tp, true_count + pred_count, "F1 is undefined (nothing true or predicted)", labels)
    return precision, recall, f1


def entity_scores(
    true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]
) -> dict[str, float | int | dict]:
    """Entity-level precision, recall and F1 of BIO-tagged sentences, as seqeval computes them by default.

    Entities are read by :func:`bio_spans`; a predicted entity is correct iff an entity of the same
    type and span is in the truth of its sentence. Undefined ratios (nothing predicted, nothing true)
    count as 0 with an :class:`UndefinedMetricWarning`, as seqeval's default ``zero_division``.

    Returns:
        ``precision``, ``recall``, ``f1`` over all entities pooled (micro average); ``support``,
        ``predicted``, ``correct``: the numbers of true, predicted and correct entities; ``per_type``:
        ``{type: {precision, recall, f1, support}}`` for each type true or predicted, sorted by name.
    """
    pairs = _paired_sentences(true_tag_seqs, pred_tag_seqs)
    true_spans = {(i, *span) for i, (true, _) in enumerate(pairs) for span in bio_spans(true)}
    pred_spans = {(i, *span) for i, (_, pred) in enumerate(pairs) for span in bio_spans(pred)}
    correct = true_spans & pred_spans
    types = sorted({span[1] for span in true_spans | pred_spans})

    def count(spans: set) -> np.ndarray:
        per_type = Counter(span[1] for span in spans)
        return np.array([per_type[kind] for kind in types], dtype=np.int64)

    tp, pred_count, true_count = count(correct), count(pred_spans), count(true_spans)
    p_type, r_type, f_type = _span_scores(tp, pred_count, true_count, types)
    with warnings.catch_warnings():
        if types:  # an undefined pooled ratio is then undefined for every type, already reported
            warnings.simplefilter("ignore", UndefinedMetricWarning)
        pooled = [np.array([len(spans)]) for spans in (correct, pred_spans, true_spans)]
        precision, recall, f1 = (float(s[0]) for s in _span_scores(*pooled, ["all entities"]))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": len(true_spans),
        "predicted": len(pred_spans),
        "correct": len(correct),
        "per_type": {
            kind: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for kind, p, r, f, n in zip(types, p_type, r_type, f_type, true_count)
        },
    }


SEGMENTATION_TAGS = ("B", "M", "I", "E", "S")


def word_spans(tags: Sequence[str]) -> list[tuple[int, int]]:
    """The words of one segmentation-tagged sentence as ``(start, end)`` character spans, end exclusive.

    Tags, one per character: BMES (B begins a word, M continues it, E ends it, S is a one-character
    word), or BIES with I for M; the two-tag B/I scheme reads correctly too. Every character belongs
    to exactly one word. Ill-formed sequences are read as conlleval reads BIO: a word starts at B or S,
    at the first character, and after E or S; anything else continues the word before it. So "B B" is
    two words, a leading M or E opens a word (like I-X after O) and an unfinished "B M" at the end is
    a word. Any other tag raises ValueError.
    """
    starts = []
    for i, tag in enumerate(tags):
        if tag not in SEGMENTATION_TAGS:
            raise ValueError(f"segmentation tags are B, M (or I), E and S, got {tag!r} at position {i}")
        if i == 0 or tag in ("B", "S") or tags[i - 1] in ("E", "S"):
            starts.append(i)
    return list(zip(starts, starts[1:] + [len(tags)]))


def segment_words(text: str, tags: Sequence[str]) -> list[str]:
    """``text`` cut into its words by ``tags``, one tag per character (read as :func:`word_spans`)."""
    if len(text) != len(tags):
        raise ValueError(f"{len(text)} characters but {len(tags)} tags")
    return [text[start:end] for start, end in word_spans(tags)]


def segmentation_scores(
    true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]
) -> dict[str, float | int]:
    """Word-level precision, recall and F1 of a segmentation, as the SIGHAN bakeoffs define them.

    A predicted word is correct iff its exact character span is a word of the truth; precision is
    correct / predicted words, recall correct / true words. (The bakeoff's ``score`` script counts
    the words that a ``diff`` of the two word lists leaves unchanged: the same, except where repeated
    strings let diff pair words at different offsets, which spans never do.) Words are read by
    :func:`word_spans`.

    Returns:
        ``precision``, ``recall``, ``f1``; ``support``, ``predicted``, ``correct``: the numbers of
        true, predicted and correct words.
    """
    pairs = _paired_sentences(true_tag_seqs, pred_tag_seqs)
    true_words = {(i, *span) for i, (true, _) in enumerate(pairs) for span in word_spans(true)}
    pred_words = {(i, *span) for i, (_, pred) in enumerate(pairs) for span in word_spans(pred)}
    correct = true_words & pred_words
    counts = [np.array([len(words)]) for words in (correct, pred_words, true_words)]
    precision, recall, f1 = (float(s[0]) for s in _span_scores(*counts, ["words"]))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": len(true_words),
        "predicted": len(pred_words),
        "correct": len(correct),
    }


TAGGING_METRIC = {"bio": "entity_f1", "bmes": "word_f1", "none": "token_accuracy"}  # default per tag scheme


def tagging_metrics(
    scheme: str, true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]
) -> dict:
    """The metrics of a tagging task by its tag scheme: ``token_accuracy`` always; for ``bio``
    ``entity_precision``/``entity_recall``/``entity_f1`` (micro) and ``per_type`` (:func:`entity_scores`);
    for ``bmes`` ``word_precision``/``word_recall``/``word_f1`` (:func:`segmentation_scores`)."""
    metrics: dict = {"token_accuracy": token_accuracy(true_tag_seqs, pred_tag_seqs)}
    if scheme == "bio":
        scores = entity_scores(true_tag_seqs, pred_tag_seqs)
        metrics.update(
            {f"entity_{k}": scores[k] for k in ("precision", "recall", "f1", "support", "predicted")}
        )
        metrics["per_type"] = scores["per_type"]
    elif scheme == "bmes":
        scores = segmentation_scores(true_tag_seqs, pred_tag_seqs)
        metrics.update(
            {f"word_{k}": scores[k] for k in ("precision", "recall", "f1", "support", "predicted")}
        )
    return metrics
