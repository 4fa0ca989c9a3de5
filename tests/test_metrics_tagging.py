"""ftcore.metrics' tagging scores: entities against seqeval, segmentation against a by-hand reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from seqeval.metrics import accuracy_score
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

from ftcore import metrics
from ftcore.metrics import UndefinedMetricWarning

TOL = 1e-12
CASES = 300
ENTITY_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def seqeval_scores(true: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's default (conlleval) scores, in the shape :func:`metrics.entity_scores` returns."""
    precision, recall, f1, support = quiet(precision_recall_fscore_support, true, pred, average="micro")
    per_type = quiet(precision_recall_fscore_support, true, pred, average=None)
    types = sorted({kind for kind, _, _ in get_entities(true) + get_entities(pred)})
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "per_type": {
            kind: {"precision": p, "recall": r, "f1": f, "support": n}
            for kind, p, r, f, n in zip(types, *per_type)
        },
    }


def assert_matches_seqeval(true: list[list[str]], pred: list[list[str]]) -> dict:
    ours, theirs = quiet(metrics.entity_scores, true, pred), seqeval_scores(true, pred)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(theirs[key], abs=TOL), key
    assert ours["support"] == theirs["support"]
    assert ours["per_type"].keys() == theirs["per_type"].keys()
    for kind, scores in theirs["per_type"].items():
        for key, value in scores.items():
            assert ours["per_type"][kind][key] == pytest.approx(value, abs=TOL), (kind, key)
    for sentence in true + pred:  # seqeval's ends are inclusive, ours exclusive
        assert metrics.bio_spans(sentence) == [(k, s, e + 1) for k, s, e in get_entities(sentence)]
    return ours


# ---------------------------------------------------------------------------------------------------
# entities


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),  # I- after O opens an entity
        (["I-PER", "O"], [("PER", 0, 1)]),  # ... and so at the start
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # a type switch opens one
        (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),  # B- always opens one
        (["O", "O", "B-LOC", "I-LOC"], [("LOC", 2, 4)]),  # at the sentence end
        (["B-A-B", "I-A-B"], [("A-B", 0, 2)]),  # the type is all after the first dash
        (["O", "O"], []),
        ([], []),
    ],
)
def test_bio_spans_by_hand(tags, spans):
    assert metrics.bio_spans(tags) == spans
    assert_matches_seqeval([tags], [tags])


@pytest.mark.parametrize("tag", ["PER", "B", "I-", "E-PER", "S-PER", "o", "b-PER", ""])
def test_unknown_bio_tags_are_refused_in_one_line(tag):
    with pytest.raises(ValueError, match="position 1") as error:
        metrics.bio_spans(["O", tag])
    assert "\n" not in str(error.value)


def test_entity_scores_by_hand():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["O", "I-LOC", "I-LOC"]]
    # true: PER(0,2) LOC(3,4) | LOC(1,3); predicted: PER(0,2) PER(3,4) | LOC(1,3); 2 of 3 correct
    scores = assert_matches_seqeval(true, pred)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert (scores["support"], scores["predicted"], scores["correct"]) == (3, 3, 2)
    assert scores["per_type"] == {
        "LOC": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
        "PER": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
    }


def test_entities_do_not_run_across_sentences():
    true = [["O", "B-PER"], ["I-PER", "O"]]
    pred = [["O", "B-PER"], ["B-PER", "O"]]
    scores = assert_matches_seqeval(true, pred)
    assert scores["f1"] == 1.0 and scores["support"] == 2


def test_no_predicted_entity_scores_zero_precision_with_a_warning():
    true, pred = [["B-PER", "I-PER", "O"], ["B-LOC"]], [["O", "O", "O"], ["O"]]
    with pytest.warns(UndefinedMetricWarning, match="precision is undefined"):
        scores = metrics.entity_scores(true, pred)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert scores["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert_matches_seqeval(true, pred)


def test_no_entity_at_all_scores_zero_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="all entities"):
        scores = metrics.entity_scores([["O", "O"], []], [["O", "O"], []])
    assert scores == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0, "correct": 0, "per_type": {}
    }  # fmt: skip
    assert_matches_seqeval([["O", "O"], []], [["O", "O"], []])


def test_entity_scores_match_seqeval_on_random_sentences():
    rng = np.random.default_rng(0)
    weights = np.array([6, 2, 2, 2, 2, 1, 1], dtype=float)  # mostly O, every kind of ill-formed run
    for _ in range(CASES):
        lengths = rng.integers(0, 15, size=int(rng.integers(1, 6)))
        true = [list(rng.choice(ENTITY_TAGS, n, p=weights / weights.sum())) for n in lengths]
        noise = rng.random()  # from near-copies of the truth to unrelated sequences
        pred = [
            [tag if rng.random() > noise else str(rng.choice(ENTITY_TAGS)) for tag in sentence]
            for sentence in true
        ]
        assert_matches_seqeval(true, pred)


def test_token_accuracy_matches_seqeval():
    rng = np.random.default_rng(1)
    for _ in range(50):
        lengths = rng.integers(1, 10, size=int(rng.integers(1, 5)))
        true = [list(rng.choice(ENTITY_TAGS, n)) for n in lengths]
        pred = [list(rng.choice(ENTITY_TAGS, n)) for n in lengths]
        assert metrics.token_accuracy(true, pred) == pytest.approx(accuracy_score(true, pred), abs=TOL)


@pytest.mark.parametrize(
    "score", [metrics.entity_scores, metrics.token_accuracy, metrics.segmentation_scores]
)
def test_unpaired_inputs_are_refused(score):
    with pytest.raises(ValueError, match="no sentences"):
        score([], [])
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1 has 2 true tags but 1 predicted"):
        score([["O"], ["O", "O"]], [["O"], ["O"]])


def test_token_accuracy_of_nothing_is_refused():
    with pytest.raises(ValueError, match="no tokens"):
        metrics.token_accuracy([[], []], [[], []])


# ---------------------------------------------------------------------------------------------------
# word segmentation


def reference_words(tags: list[str]) -> list[list[int]]:
    """Words as lists of character positions: a new word at B or S, first, and after E or S."""
    words = []
    for i, tag in enumerate(tags):
        if not words or tag in ("B", "S") or tags[i - 1] in ("E", "S"):
            words.append([])
        words[-1].append(i)
    return words


def reference_scores(true: list[list[str]], pred: list[list[str]]) -> tuple[float, float, float]:
    """Precision, recall, F1 by counting, sentence by sentence, the predicted words also true."""
    correct = predicted = gold = 0
    for true_tags, pred_tags in zip(true, pred):
        true_words, pred_words = reference_words(true_tags), reference_words(pred_tags)
        correct += sum(word in true_words for word in pred_words)
        predicted += len(pred_words)
        gold += len(true_words)
    precision, recall = correct / predicted, correct / gold
    return precision, recall, 2 * precision * recall / (precision + recall) if correct else 0.0


def tags_of(words: list[str]) -> list[str]:
    """BMES tags of a well-formed segmentation."""
    return [
        tag
        for word in words
        for tag in (["S"] if len(word) == 1 else ["B"] + ["M"] * (len(word) - 2) + ["E"])
    ]


def test_segmentation_scores_by_hand():
    # 我 爱 北京 天安门 against 我 爱 北京天安门: 2 of 3 predicted words are right, 2 of 4 true ones found
    true, pred = tags_of(["我", "爱", "北京", "天安门"]), tags_of(["我", "爱", "北京天安门"])
    assert (true, pred) == (list("SSBEBME"), list("SSBMMME"))
    scores = metrics.segmentation_scores([true], [pred])
    assert scores == {
        "precision": pytest.approx(2 / 3), "recall": 0.5, "f1": pytest.approx(4 / 7),
        "support": 4, "predicted": 3, "correct": 2,
    }  # fmt: skip
    assert metrics.segment_words("我爱北京天安门", pred) == ["我", "爱", "北京天安门"]


@pytest.mark.parametrize(
    "tags, words",
    [
        ("BMES", ["abc", "d"]),
        ("BIES", ["abc", "d"]),  # I for M
        ("BIIBB", ["abc", "d", "e"]),  # the two-tag B/I scheme
        ("BB", ["a", "b"]),  # B always opens a word
        ("MEBE", ["ab", "cd"]),  # a leading M opens one
        ("SMEEE", ["a", "bc", "d", "e"]),  # M or E after E or S opens one
        ("SBM", ["a", "bc"]),  # an unfinished word at the end is a word
        ("", []),
    ],
)
def test_ill_formed_segmentations_are_read_as_documented(tags, words):
    assert metrics.segment_words("abcde"[: len(tags)], list(tags)) == words


def test_unknown_segmentation_tags_are_refused_in_one_line():
    for bad in ("O", "B-PER", "b", ""):
        with pytest.raises(ValueError, match="position 2") as error:
            metrics.word_spans(["B", "E", bad])
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="3 characters but 2 tags"):
        metrics.segment_words("abc", ["B", "E"])


def test_well_formed_tags_give_back_their_words():
    rng = np.random.default_rng(2)
    for _ in range(CASES):
        lengths = rng.integers(1, 5, size=int(rng.integers(1, 8)))
        text = "".join(chr(0x4E00 + int(i)) for i in rng.integers(0, 500, size=lengths.sum()))
        ends = np.cumsum(lengths)
        words = [text[end - n : end] for n, end in zip(lengths, ends)]
        assert metrics.segment_words(text, tags_of(words)) == words


def test_segmentation_scores_match_the_reference_on_random_tags():
    rng = np.random.default_rng(3)
    for _ in range(CASES):
        lengths = rng.integers(1, 15, size=int(rng.integers(1, 5)))
        true = [list(rng.choice(list("BMES"), n)) for n in lengths]
        noise = rng.random()
        pred = [[t if rng.random() > noise else str(rng.choice(list("BMIES"))) for t in s] for s in true]
        scores = metrics.segmentation_scores(true, pred)
        expected = reference_scores(true, pred)
        assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx(expected, abs=TOL)
