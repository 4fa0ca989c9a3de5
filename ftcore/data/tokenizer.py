"""Text → token ids for BERT-style encoders.

:class:`TextTokenizer` wraps a WordPiece ``tokenizers.Tokenizer`` read from a model directory
(``tokenizer.json``, or ``vocab.txt`` for older checkpoints) and owns the input policy itself:
every example becomes ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` cut to ``max_length`` tokens
(keeping the first tokens, the last, or both ends: :data:`TRUNCATIONS`), never padded (padding happens
per batch in the collate function). Truncation or padding stored in ``tokenizer.json`` is switched off
so it cannot apply silently.

Encoded examples come back flat (:class:`EncodedTexts`): one int32 array of all token ids plus
offsets, which a dataset stores cheaply and slices per example.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ftcore.errors import CheckpointError, ConfigError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
REQUIRED_TOKENS = (PAD, UNK, CLS, SEP)

TRUNCATIONS = ("head", "tail", "head_tail")  # which tokens of a too-long text are kept
# head_tail's default split: Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification") keep
# 128 head + 382 tail of the 510 text tokens of max_length 512.
HEAD_TAIL_SHARE = 128 / 510
MAX_WORD_CHARS = 4  # longest word extend_vocabulary adds: longer dictionary entries are mostly phrases


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids of many examples stored flat: example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Attributes:
        ids: ``(total_tokens,)`` int32 token ids, special tokens included.
        type_ids: ``(total_tokens,)`` int8 segment ids: 0 for ``[CLS] a [SEP]``, 1 for ``b [SEP]``.
        offsets: ``(num_examples + 1,)`` int64 start of each example; ``offsets[-1] == total_tokens``.
        truncated: ``(num_examples,)`` bool, True where an example lost tokens to ``max_length``.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ids, type_ids)`` of example ``i``, both views of length ``lengths[i]``."""
        start, end = self.offsets[i], self.offsets[i + 1]
        return self.ids[start:end], self.type_ids[start:end]

    @property
    def num_truncated(self) -> int:
        """How many examples lost tokens to ``max_length``."""
        return int(self.truncated.sum())

    @property
    def lengths(self) -> np.ndarray:
        """``(num_examples,)`` number of tokens in each example."""
        return np.diff(self.offsets)

    def frequent_bigrams(self, min_freq: int, skip: Sequence[int] = ()) -> np.ndarray:
        """The token bigrams seen at least ``min_freq`` times within examples, as sorted unique keys
        ``left_id * 2**32 + right_id`` (see ``ftcore.model.bert.BigramEmbedding``); pairs that hold an
        id of ``skip`` (the special tokens) are left out. Counts are over the rows as the model reads
        them: a pair in the overlap of two windows of one text counts twice."""
        ids = self.ids.astype(np.int64)
        within = np.ones(max(len(ids) - 1, 0), dtype=bool)
        within[self.offsets[1:-1] - 1] = False  # the pair across two examples' boundary
        if len(skip):
            kept = ~np.isin(ids, np.asarray(skip, dtype=np.int64))
            within &= kept[:-1] & kept[1:]
        keys, counts = np.unique((ids[:-1] << 32 | ids[1:])[within], return_counts=True)
        return keys[counts >= min_freq]


class TextTokenizer:
    """A BERT WordPiece tokenizer with our truncation policy; build it with :meth:`from_dir`.

    Attributes:
        pad_id, cls_id, sep_id, unk_id: ids of ``[PAD]``, ``[CLS]``, ``[SEP]`` and ``[UNK]``.
    """

    def __init__(self, tokenizer: Tokenizer):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._unextended: Tokenizer | None = None  # as loaded, before extend_vocabulary (see original_ids)
        self.pad_id = tokenizer.token_to_id(PAD)
        self.cls_id = tokenizer.token_to_id(CLS)
        self.sep_id = tokenizer.token_to_id(SEP)
        self.unk_id = tokenizer.token_to_id(UNK)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, lowercase: bool | None = None) -> TextTokenizer:
        """Load the tokenizer of a model directory.

        Reads ``tokenizer.json`` if present, else builds the standard BERT tokenizer from ``vocab.txt``.

        Args:
            path: directory holding ``tokenizer.json`` or ``vocab.txt`` (and maybe ``tokenizer_config.json``).
            lowercase: lower-case (and strip accents, unless ``tokenizer_config.json`` says otherwise)
                before WordPiece. ``None`` takes ``do_lower_case`` from ``tokenizer_config.json``; without
                it, ``tokenizer.json`` keeps its own setting and ``vocab.txt`` lower-cases.
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(
                f"tokenizer directory {path} does not exist; expected a directory with tokenizer.json or vocab.txt"
            )
        config_file = path / "tokenizer_config.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        if lowercase is None:
            lowercase = config.get("do_lower_case")

        if (path / "tokenizer.json").is_file():
            source = path / "tokenizer.json"
            try:
                tokenizer = Tokenizer.from_file(str(source))
            except Exception as error:  # tokenizers raises a bare Exception for any parse error
                raise CheckpointError(f"{source} is not a valid tokenizers JSON file: {error}") from error
            _check_bert_wordpiece(tokenizer, source)
            if lowercase is not None:
                tokenizer.normalizer.lowercase = lowercase  # accent stripping follows unless set explicitly
        elif (path / "vocab.txt").is_file():
            tokenizer = _bert_wordpiece(
                path / "vocab.txt", config, lowercase=True if lowercase is None else lowercase
            )
        else:
            raise CheckpointError(
                f"{path} has neither tokenizer.json nor vocab.txt; point to a model directory that has one"
            )
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (the embedding matrix needs this many rows)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` and a matching ``tokenizer_config.json`` into ``directory``.

        ``from_dir(directory)`` (and ``transformers.BertTokenizerFast``, which reads the normalisation
        flags from ``tokenizer_config.json``) then encode exactly like this one.
        Returns the path of ``tokenizer.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / "tokenizer.json"))
        normalizer = self._tokenizer.normalizer
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": normalizer.lowercase,
            "strip_accents": normalizer.strip_accents,
            "tokenize_chinese_chars": normalizer.handle_chinese_chars,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        return directory / "tokenizer.json"

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        max_length: int | None = 128,
        truncation: str = "head",
        head_tokens: int | None = None,
    ) -> EncodedTexts:
        """Encode texts (or text pairs) to ``[CLS] a [SEP]`` / ``[CLS] a [SEP] b [SEP]``, no padding.

        A text longer than its budget (``max_length`` less the special tokens) keeps, by ``truncation``:
        ``head`` its first tokens, ``tail`` its last tokens, ``head_tail`` its first ``k`` and last
        ``budget - k`` tokens, ``k = head_tokens`` (default ``round(budget · 128/510)``, Sun et al. 2019).
        For pairs the budget is first split "longest first": the longer text gives up tokens until the two
        are equally long, then both do (see :func:`_longest_first`), exactly as ``transformers`` does with
        ``truncation=True``; then each cut segment keeps its tokens by ``truncation`` (``head_tail``
        keeping the same share ``k / budget`` of its own length at its head).

        Args:
            texts: first (or only) text of each example.
            text_pairs: second text of each example, same length as ``texts``.
            max_length: most tokens per example, special tokens included; ``None`` keeps every token.
            truncation: one of :data:`TRUNCATIONS`.
            head_tokens: ``k`` of ``head_tail``, below the budget; ``None`` for the paper's share.
        """
        num_special = 2 if text_pairs is None else 3
        if max_length is not None and max_length < num_special:
            raise ConfigError(f"max_length={max_length} leaves no room for the {num_special} special tokens")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation={truncation!r}; expected one of {', '.join(TRUNCATIONS)}")
        firsts = self.wordpiece_ids(texts)
        seconds = None if text_pairs is None else self.wordpiece_ids(text_pairs)
        if seconds is not None and len(seconds) != len(firsts):
            raise ValueError(f"got {len(texts)} texts but {len(text_pairs)} text_pairs")
        budget = sys.maxsize if max_length is None else max_length - num_special  # tokens left for the texts
        if head_tokens is not None and not 0 <= head_tokens < budget:
            raise ConfigError(
                f"head_tokens={head_tokens} must be at least 0 and below the {budget} text tokens "
                f"max_length={max_length} leaves"
            )
        head_share = HEAD_TAIL_SHARE if head_tokens is None else head_tokens / budget

        def cut(tokens: list[int], keep: int) -> list[int]:
            """``keep`` tokens of a text, chosen by ``truncation``."""
            if keep >= len(tokens) or truncation == "head":
                return tokens[:keep]
            head = 0 if truncation == "tail" else round(keep * head_share)
            return tokens[:head] + tokens[len(tokens) - (keep - head) :]

        rows, first_segment_lengths, truncated = [], [], []
        if seconds is None:
            for a in firsts:
                truncated.append(len(a) > budget)
                rows.append([self.cls_id, *cut(a, budget), self.sep_id])
                first_segment_lengths.append(len(rows[-1]))
        else:
            for a, b in zip(firsts, seconds):
                keep_a, keep_b = _longest_first(len(a), len(b), budget)
                truncated.append(keep_a + keep_b < len(a) + len(b))
                rows.append([self.cls_id, *cut(a, keep_a), self.sep_id, *cut(b, keep_b), self.sep_id])
                first_segment_lengths.append(keep_a + 2)

        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=offsets[-1])
        # a token is in segment 1 when its position within the example is past the first segment
        position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        type_ids = (position >= np.repeat(first_segment_lengths, lengths)).astype(np.int8)
        return EncodedTexts(
            ids=ids, type_ids=type_ids, offsets=offsets, truncated=np.array(truncated, dtype=bool)
        )

    def token_id(self, token: str) -> int | None:
        """The id of ``token`` (None if the vocabulary lacks it)."""
        return self._tokenizer.token_to_id(token)

    def id_to_token_table(self) -> list[str]:
        """Every token by id, added tokens included: ``table[i]`` is the token of id ``i``."""
        table = [""] * self.vocab_size
        for token, i in self._tokenizer.get_vocab(with_added_tokens=True).items():
            table[i] = token
        return table

    @property
    def special_tokens(self) -> set[str]:
        """Tokens that are never text: [PAD], [CLS], [SEP], [MASK], [UNK] and any added special token."""
        added = self._tokenizer.get_added_tokens_decoder().values()
        return {PAD, UNK, CLS, SEP, MASK} | {t.content for t in added if t.special}

    def save_as_vocabulary(self, directory: str | os.PathLike) -> Path:
        """Like :meth:`save`, with every added token written as an ordinary vocabulary entry.

        The characters :meth:`extend_vocabulary` added become entries of the WordPiece vocabulary (in
        ``tokenizer.json`` and in a ``vocab.txt`` for tools that read only that), at the ids they have
        now; they also stay listed as added tokens in ``tokenizer.json``, so through it text splits around
        them exactly as before and every text encodes to the same ids. (A tokenizer built from ``vocab.txt``
        alone splits CJK characters the same way, but reads an added word as its characters and spells an
        added non-CJK character glued to a word as [UNK].) Returns the path of ``tokenizer.json``.
        """
        directory = Path(directory)
        path = self.save(directory)
        state = json.loads(path.read_text(encoding="utf-8"))
        vocab = state["model"]["vocab"]
        for token in state["added_tokens"]:
            vocab.setdefault(token["content"], token["id"])
        path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        table = sorted(vocab, key=vocab.get)
        (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in table), encoding="utf-8")
        return path

    def unk_rate(self, texts: Sequence[str]) -> float:
        """Fraction of the texts' tokens (special tokens not counted) that are ``[UNK]``; 0.0 if none."""
        ids = list(chain.from_iterable(self.wordpiece_ids(texts)))
        return ids.count(self.unk_id) / len(ids) if ids else 0.0

    def extend_vocabulary(
        self,
        texts: Sequence[str],
        min_freq: int = 2,
        max_new: int | None = None,
        relearn: bool = False,
        words: Collection[str] = (),
        max_words: int = 0,
    ) -> list[str]:
        """Give frequent characters that WordPiece cannot spell their own token ids.

        A character (after normalisation) that is in the vocabulary neither alone nor as ``##char`` can
        only ever produce ``[UNK]`` — e.g. most Chinese characters or emoji for an English vocabulary.
        Those seen at least ``min_freq`` times in ``texts`` become added tokens with ids ``vocab_size,
        vocab_size + 1, ...`` in order of descending frequency, then code point; at most ``max_new`` of them.
        Afterwards each such character encodes to its own id wherever it occurs, and the text around it
        is split off and tokenized as before; text that tokenized without ``[UNK]`` is unchanged.

        ``relearn`` also moves the characters of a script the vocabulary mostly lacks (more than half of
        the script's frequent characters in ``texts`` are unknown, by :func:`script_of`) that *are* in
        the vocabulary to added ids: an English vocabulary holds a few hundred common Chinese characters
        whose pretrained rows learned next to nothing, and frozen-base methods would never train them.
        Their old entries are renamed ``[relearned:<char>]`` (ids unchanged, never produced again).

        ``words`` (e.g. a dictionary's headwords) offers multi-character tokens for scripts written
        without spaces, whose characters BERT's normaliser splits apart (CJK ideographs): of those words
        of 2 to ``MAX_WORD_CHARS`` such characters, the ``max_words`` that occur most often in ``texts``
        (at least ``min_freq`` times) are added after the characters. Text is then split at the leftmost
        longest added token, so a word is one token wherever it occurs (forward maximum matching: with
        很不 and 不错 both added, "很不错" reads 很不 + 错), and the model sees words as TF-IDF's
        character n-grams do instead of composing every word from its characters.

        The model's embedding matrix must grow to the new :attr:`vocab_size`.
        Returns the added characters and words in id order.
        """
        if self._unextended is None:
            self._unextended = Tokenizer.from_str(self._tokenizer.to_str())
        # normalisation maps each character on its own, so normalising the distinct characters suffices
        counts = Counter()
        for raw_char, count in Counter(chain.from_iterable(texts)).items():
            for char in self._tokenizer.normalizer.normalize_str(raw_char):
                counts[char] += count
        frequent = [char for char, count in counts.items() if count >= min_freq and not char.isspace()]
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        prefix = self._tokenizer.model.continuing_subword_prefix
        known = {char for char in frequent if char in vocab or prefix + char in vocab}
        if relearn:
            scripts = Counter(script_of(char) for char in frequent)
            unknown = Counter(script_of(char) for char in frequent if char not in known)
            mostly_unknown = {script for script, n in unknown.items() if script and n > scripts[script] / 2}
            retired = {char for char in known if script_of(char) in mostly_unknown}
            if retired:
                self._retire(retired)
                known -= retired
        new = sorted((char for char in frequent if char not in known), key=lambda char: (-counts[char], char))
        new = new[:max_new]
        if max_words > 0:
            new += self._frequent_words(texts, words, min_freq)[:max_words]
        self._tokenizer.add_tokens([AddedToken(token, normalized=True, special=False) for token in new])
        return new

    def _frequent_words(self, texts: Sequence[str], words: Collection[str], min_freq: int) -> list[str]:
        """The multi-character ``words`` not yet in the vocabulary that occur at least ``min_freq`` times
        in ``texts``, most frequent first (then by code points)."""
        normalize = self._tokenizer.normalizer.normalize_str
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        wanted = {
            word for word in words
            if 1 < len(word) <= MAX_WORD_CHARS and word not in vocab
            and all(normalize(char) == f" {char} " for char in word)
        }  # fmt: skip
        counts = Counter()
        for text in texts:
            for n in range(2, MAX_WORD_CHARS + 1):
                counts.update(gram for i in range(len(text) - n + 1) if (gram := text[i : i + n]) in wanted)
        found = [word for word in wanted if counts[word] >= min_freq]
        return sorted(found, key=lambda word: (-counts[word], word))

    def _retire(self, chars: set[str]) -> None:
        """Rename the vocabulary entries of ``chars`` (alone and as ``##char``) so they are never produced."""
        model = self._tokenizer.model
        prefix = model.continuing_subword_prefix
        vocab = self._tokenizer.get_vocab(with_added_tokens=False)
        renamed = {}
        for token, i in vocab.items():
            char = token.removeprefix(prefix)
            renamed[f"[relearned:{token}]" if char in chars else token] = i
        self._tokenizer.model = models.WordPiece(
            renamed, unk_token=model.unk_token, continuing_subword_prefix=prefix,
            max_input_chars_per_word=model.max_input_chars_per_word,
        )  # fmt: skip

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids of sentences given as words, without special tokens and untruncated, with the word
        each token comes from.

        Each word is normalised and split into WordPiece tokens on its own, so no token spans two words.
        A word that yields no token at all (a control or zero-width character the normaliser drops)
        becomes one ``[UNK]``: every word has a first token to predict its tag at.

        Returns:
            Per sentence ``(ids, words)``, both ``(num_tokens,)`` int32: ``words[p]`` is the index of the
            word that token ``p`` belongs to (non-decreasing, every word present).
        """
        encodings = self._tokenizer.encode_batch(
            [list(words) for words in sentences], is_pretokenized=True, add_special_tokens=False
        )
        encoded = []
        for words, encoding in zip(sentences, encodings):
            ids = np.asarray(encoding.ids, dtype=np.int32)
            word_of = np.asarray(encoding.word_ids, dtype=np.int32)
            missing = np.setdiff1d(np.arange(len(words), dtype=np.int32), word_of)
            if len(missing):
                at = np.searchsorted(word_of, missing)
                ids, word_of = np.insert(ids, at, self.unk_id), np.insert(word_of, at, missing)
            encoded.append((ids, word_of))
        return encoded

    def wordpiece_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text without special tokens, untruncated (batched, in parallel)."""
        return _ids(self._tokenizer, texts)

    def original_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`wordpiece_ids` as the tokenizer read texts when it was loaded, before
        :meth:`extend_vocabulary`: an added character splits every word it occurs in (an added "o" would
        spell "good" as [UNK] o o [UNK]), which glosses in the pretrained vocabulary must not suffer."""
        return _ids(self._unextended or self._tokenizer, texts)


def _ids(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without special tokens, untruncated (batched, in parallel)."""
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def script_of(char: str) -> str:
    """The writing system of a character as the first word of its Unicode name (``CJK``, ``LATIN``,
    ``HANGUL``, ``ARABIC``, ``DIGIT``, ...); empty for unnamed characters."""
    return unicodedata.name(char, "").split(" ", 1)[0]


def _longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of texts ``a`` and ``b`` to keep so that at most ``budget`` remain.

    The longer text is cut first; if both would end up longer than half the budget, each keeps half and
    the longer one (``b`` on ties) the odd token. Same rule as the ``tokenizers`` library.
    """
    if len_a + len_b <= budget:
        return len_a, len_b
    if min(len_a, len_b) <= budget // 2:  # only the longer text is cut
        return (budget - len_b, len_b) if len_a > len_b else (len_a, budget - len_a)
    half, odd = budget // 2, budget % 2
    return (half + odd, half) if len_a > len_b else (half, half + odd)


def _bert_wordpiece(vocab_file: Path, config: dict, lowercase: bool) -> Tokenizer:
    """The standard BERT tokenizer for ``vocab_file``, honouring ``tokenizer_config.json``'s
    ``strip_accents`` (``None``: follow ``lowercase``) and ``tokenize_chinese_chars``."""
    tokenizer = Tokenizer(models.WordPiece.from_file(str(vocab_file), unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=lowercase,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    _check_bert_wordpiece(tokenizer, vocab_file)
    vocab = tokenizer.get_vocab()
    # special tokens in the text itself ("[SEP]") are matched whole, as BERT does
    tokenizer.add_special_tokens([token for token in (PAD, UNK, CLS, SEP, MASK) if token in vocab])
    # not used by encode_batch, but makes the saved tokenizer.json complete for other tools
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return tokenizer


def _check_bert_wordpiece(tokenizer: Tokenizer, source: Path) -> None:
    """Raise if ``tokenizer`` is not a WordPiece tokenizer with BERT's special tokens."""
    if not isinstance(tokenizer.model, models.WordPiece):
        raise CheckpointError(f"{source} is not a WordPiece (BERT) tokenizer")
    if not isinstance(tokenizer.normalizer, normalizers.BertNormalizer):
        raise CheckpointError(f"{source} does not use BERT's normalizer")
    missing = [token for token in REQUIRED_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        raise CheckpointError(f"{source} lacks the special tokens {', '.join(missing)}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} cannot be read as JSON: {error}") from error
