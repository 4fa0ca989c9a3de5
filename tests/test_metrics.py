"""ftcore.metrics against scikit-learn / SciPy on seeded random cases, plus the documented edge cases."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn import metrics as skm

from ftcore import metrics
from ftcore.metrics import UndefinedMetricWarning

TOL = 1e-12
CASES = 100  # per test; scikit-learn dominates the run time


def random_single_label(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels ``(n,)`` with a varying number of classes, some of them possibly missing from either side."""
    k = int(rng.integers(2, 8))
    n = int(rng.integers(1, 60))
    # restrict each side to a random subset of classes so that absent classes are common
    true_classes = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    pred_classes = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    return rng.choice(true_classes, n), rng.choice(pred_classes, n), k


def random_scores(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Scores with many ties (few distinct values) in half of the cases."""
    if rng.random() < 0.5:
        return rng.integers(0, 4, size=shape) / 4.0
    return rng.random(shape)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------
# single-label classification


def test_accuracy_and_confusion_matrix_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(CASES):
        y_true, y_pred, k = random_single_label(rng)
        assert metrics.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
        expected = skm.confusion_matrix(y_true, y_pred, labels=np.arange(k))
        np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, k), expected)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_precision_recall_f1_match_sklearn(average):
    rng = np.random.default_rng(1)
    for _ in range(CASES):
        y_true, y_pred, k = random_single_label(rng)
        # averages run over the classes seen on either side (sklearn's default label set);
        # per-class results cover all k classes
        labels = np.arange(k) if average is None else None
        expected = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )[:3]
        got = quiet(metrics.precision_recall_f1, y_true, y_pred, k, average)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=0, atol=TOL)


def test_roc_auc_binary_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(CASES):
        n = int(rng.integers(2, 80))
        y_true = rng.integers(0, 2, n)
        y_true[:2] = [0, 1]  # both classes present
        rng.shuffle(y_true)
        scores = random_scores(rng, (n,))
        expected = skm.roc_auc_score(y_true, scores)
        assert metrics.roc_auc_binary(y_true, scores) == pytest.approx(expected, abs=TOL)


def test_roc_auc_ovr_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(CASES):
        k = int(rng.integers(3, 7))
        n = int(rng.integers(k, 80))
        y_true = rng.integers(0, k, n)
        y_true[:k] = np.arange(k)  # every class present, as sklearn requires
        probs = random_scores(rng, (n, k)) + 1e-3
        probs /= probs.sum(axis=1, keepdims=True)  # sklearn insists on rows summing to 1
        expected = skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=np.arange(k))
        assert metrics.roc_auc_ovr(y_true, probs) == pytest.approx(expected, abs=TOL)


def test_roc_auc_ovr_skips_absent_classes_with_warning():
    rng = np.random.default_rng(4)
    y_true = rng.choice([0, 2, 3], 50)  # class 1 never occurs
    probs = rng.random((50, 4))
    expected = np.mean([skm.roc_auc_score(y_true == k, probs[:, k]) for k in (0, 2, 3)])
    with pytest.warns(UndefinedMetricWarning, match=r"class\(es\) \[1\]"):
        assert metrics.roc_auc_ovr(y_true, probs) == pytest.approx(expected, abs=TOL)


# ---------------------------------------------------------------------------------------------------
# multi-label classification


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_multilabel_precision_recall_f1_match_sklearn(average):
    rng = np.random.default_rng(5)
    for _ in range(CASES):
        n, k = int(rng.integers(1, 40)), int(rng.integers(2, 7))  # sklearn reads one column as binary
        y_true = (rng.random((n, k)) < rng.random()).astype(int)
        y_pred = (rng.random((n, k)) < rng.random()).astype(int)
        labels = None
        if average == "macro":  # only labels that occur on either side enter the macro average
            labels = np.flatnonzero((y_true | y_pred).any(axis=0))
            if len(labels) == 0:
                continue  # covered by test_multilabel_nothing_true_or_predicted
        expected = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )[:3]
        got = quiet(metrics.multilabel_precision_recall_f1, y_true, y_pred, average)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=0, atol=TOL)
        assert metrics.subset_accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_multilabel_nothing_true_or_predicted():
    zeros = np.zeros((3, 2), dtype=int)
    with pytest.warns(UndefinedMetricWarning, match="no class is true or predicted"):
        assert metrics.multilabel_precision_recall_f1(zeros, zeros, "macro") == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------------
# regression


def test_regression_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(6)
    for _ in range(CASES):
        n = int(rng.integers(2, 100))
        y_true = rng.normal(size=n) * rng.uniform(0.1, 100)
        y_pred = y_true * rng.normal() + rng.normal(size=n) * rng.uniform(0, 10)
        assert metrics.mean_squared_error(y_true, y_pred) == pytest.approx(
            skm.mean_squared_error(y_true, y_pred), rel=TOL, abs=TOL
        )
        assert metrics.mean_absolute_error(y_true, y_pred) == pytest.approx(
            skm.mean_absolute_error(y_true, y_pred), rel=TOL, abs=TOL
        )
        assert metrics.pearson_r(y_true, y_pred) == pytest.approx(pearsonr(y_true, y_pred)[0], abs=TOL)


# ---------------------------------------------------------------------------------------------------
# edge cases: defined values with a warning


def test_class_never_predicted_has_precision_zero_with_warning():
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 1, 1]
    with pytest.warns(
        UndefinedMetricWarning, match=r"precision is undefined \(never predicted\) for class 2"
    ):
        precision, recall, f1 = metrics.precision_recall_f1(y_true, y_pred, 3, average=None)
    np.testing.assert_allclose(precision, [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(f1, [1.0, 0.5, 0.0])


def test_class_absent_from_y_true_has_recall_zero_with_warning():
    y_true, y_pred = [0, 0, 1], [0, 2, 1]
    with pytest.warns(
        UndefinedMetricWarning, match=r"recall is undefined \(absent from y_true\) for class 2"
    ):
        _, recall, _ = metrics.precision_recall_f1(y_true, y_pred, 3, average=None)
    np.testing.assert_allclose(recall, [0.5, 1.0, 0.0])


def test_class_absent_everywhere_gets_zero_row_and_stays_out_of_macro():
    y_true, y_pred = [0, 1, 1], [0, 1, 0]
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, 3), [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    )
    # macro over classes 0 and 1 only: F1 = (2/3 + 2/3) / 2
    assert metrics.precision_recall_f1(y_true, y_pred, 3, "macro")[2] == pytest.approx(2 / 3)
    with pytest.warns(UndefinedMetricWarning) as record:
        assert metrics.precision_recall_f1(y_true, y_pred, 3, None)[2][2] == 0.0
    assert [str(w.message) for w in record] == [
        "precision is undefined (never predicted) for class 2; counted as 0",
        "recall is undefined (absent from y_true) for class 2; counted as 0",
        "F1 is undefined (neither true nor predicted) for class 2; counted as 0",
    ]


def test_roc_auc_with_single_class_is_none_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        assert metrics.roc_auc_binary([1, 1, 1], [0.2, 0.5, 0.9]) is None
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        assert metrics.roc_auc_ovr([2, 2], np.full((2, 3), 1 / 3)) is None


def test_pearson_of_constant_input_is_none_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="constant"):
        assert metrics.pearson_r([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]) is None
    with pytest.warns(UndefinedMetricWarning, match="constant"):
        assert metrics.pearson_r([4.0], [1.0]) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.accuracy([], []),
        lambda: metrics.confusion_matrix([], [], 2),
        lambda: metrics.confusion_matrix([0, 3], [0, 1], 3),  # id out of range
        lambda: metrics.confusion_matrix([0.0, 1.0], [0, 1], 2),  # not integer ids
        lambda: metrics.precision_recall_f1([0, 1], [0], 2),  # length mismatch
        lambda: metrics.precision_recall_f1([0, 1], [0, 1], 2, average="samples"),
        lambda: metrics.roc_auc_binary([0, 1], [0.1, float("nan")]),
        lambda: metrics.mean_squared_error([], []),
        lambda: metrics.subset_accuracy([[0, 1]], [[0, 2]]),  # not an indicator matrix
        lambda: metrics.compute_metrics("ranking", [0], [0.0]),
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------------------------------
# reports


def test_single_label_report_matches_parts_and_is_json():
    rng = np.random.default_rng(7)
    for k in (2, 5):
        y_true = rng.integers(0, k, 40)
        probs = rng.dirichlet(np.ones(k), 40)
        y_pred = probs.argmax(axis=1)
        report = metrics.compute_metrics("single_label", y_true, probs, num_classes=k)
        assert json.loads(json.dumps(report)) == report
        assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
        for average in ("macro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
            assert report[f"precision_{average}"] == pytest.approx(p, abs=TOL)
            assert report[f"recall_{average}"] == pytest.approx(r, abs=TOL)
            assert report[f"f1_{average}"] == pytest.approx(f, abs=TOL)
        assert report["f1_micro"] == pytest.approx(report["accuracy"], abs=TOL)
        expected_auc = (
            skm.roc_auc_score(y_true, probs[:, 1])
            if k == 2
            else skm.roc_auc_score(y_true, probs, multi_class="ovr")
        )
        assert report["roc_auc"] == pytest.approx(expected_auc, abs=TOL)
        assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=range(k)).tolist()
        assert report["support_per_class"] == np.bincount(y_true, minlength=k).tolist()
        assert len(report["f1_per_class"]) == k


def test_single_label_report_with_one_true_class_keeps_going():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    with pytest.warns(UndefinedMetricWarning):
        report = metrics.compute_metrics("single_label", [0, 0, 0], probs, num_classes=2)
    assert report["roc_auc"] is None
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"] == [[2, 1], [0, 0]]
    assert json.loads(json.dumps(report)) == report


def test_multi_label_report():
    rng = np.random.default_rng(8)
    y_true = (rng.random((30, 4)) < 0.4).astype(int)
    probs = rng.random((30, 4))
    y_pred = (probs >= 0.5).astype(int)
    report = metrics.compute_metrics("multi_label", y_true, probs)
    assert json.loads(json.dumps(report)) == report
    assert report["subset_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["f1_micro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"), abs=TOL)
    assert report["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"), abs=TOL)
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, probs, average="macro"), abs=TOL)
    assert report["support_per_class"] == y_true.sum(axis=0).tolist()


def test_regression_report():
    report = metrics.compute_metrics("regression", [1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert report == {
        "num_examples": 3,
        "mse": pytest.approx((0.25 + 0 + 1) / 3),
        "mae": pytest.approx(1.5 / 3),
        "pearson": pytest.approx(pearsonr([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])[0]),
    }
