"""TextTokenizer: parity with transformers' BertTokenizerFast on the real MiniLM vocabulary,
our truncation policy, the vocab.txt path, errors, and vocabulary extension."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ftcore.data.tokenizer import EncodedTexts, TextTokenizer, script_of
from ftcore.errors import CheckpointError, ConfigError, FtcoreError

transformers = pytest.importorskip("transformers")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "这个产品质量很好，物流也很快！",
    "Café naïve façade résumé — ÉCOLE Ångström",
    "great product 😀👍🏽 would buy again🎉",
    "Mixed: iPhone 15 价格 is ¥5999, très cher!! [SEP] inside",
    "",
    "   \t\n ",
    "supercalifragilistic" * 6,  # one word over WordPiece's 100-character limit
    "ctrl\x00chars\u200b and\ufeff zero-width",
]
PAIRS = [*TEXTS[1:], "second text of the last pair"]
CHINESE = ["我爱这个产品，质量很好", "物流很快，包装也不错", "质量不好，很失望", "客服态度很好，物流快"]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path) -> TextTokenizer:
    return TextTokenizer.from_dir(minilm_dir)


@pytest.fixture(scope="module")
def hf(minilm_dir: Path):
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))


@pytest.fixture
def vocab_dir(minilm_dir: Path, tmp_path: Path) -> Path:
    """The MiniLM tokenizer files without tokenizer.json."""
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    return tmp_path


def as_lists(encoded: EncodedTexts) -> tuple[list[list[int]], list[list[int]]]:
    examples = [encoded[i] for i in range(len(encoded))]
    return [ids.tolist() for ids, _ in examples], [types.tolist() for _, types in examples]


def hf_lists(hf, texts, pairs=None, max_length=None) -> tuple[list[list[int]], list[list[int]]]:
    truncation = {} if max_length is None else {"truncation": True, "max_length": max_length}
    out = hf(list(texts), None if pairs is None else list(pairs), **truncation)
    return out["input_ids"], out["token_type_ids"]


def words(n: int, start: int = 0) -> str:
    """``n`` words of one token each, cycling through eight numbers from ``start``."""
    numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
    return " ".join(numbers[(start + i) % 8] for i in range(n))


# --- parity with transformers -------------------------------------------------------------------------


def test_single_texts_match_transformers(tokenizer, hf):
    encoded = tokenizer.encode_batch(TEXTS, max_length=512)
    assert as_lists(encoded) == hf_lists(hf, TEXTS)
    assert encoded.num_truncated == 0


def test_text_pairs_match_transformers(tokenizer, hf):
    encoded = tokenizer.encode_batch(TEXTS, PAIRS, max_length=512)
    ids, type_ids = as_lists(encoded)
    assert (ids, type_ids) == hf_lists(hf, TEXTS, PAIRS)
    assert type_ids[0] == [0] * 12 + [1] * (len(ids[0]) - 12)  # [CLS] + 10 tokens + [SEP], then text b


def test_special_tokens_and_vocab_size(tokenizer, hf):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id) == (0, 100, 101, 102)
    assert tokenizer.vocab_size == len(hf) == 30522


@pytest.mark.parametrize("max_length", [2, 5, 16])
def test_single_truncation_matches_transformers(tokenizer, hf, max_length):
    texts = [*TEXTS, words(40)]
    encoded = tokenizer.encode_batch(texts, max_length=max_length)
    assert as_lists(encoded) == hf_lists(hf, texts, max_length=max_length)
    full_lengths = tokenizer.encode_batch(texts, max_length=512).lengths
    assert encoded.num_truncated == int((full_lengths > max_length).sum())
    assert np.array_equal(encoded.truncated, full_lengths > max_length)
    assert encoded.lengths.max() <= max_length


@pytest.mark.parametrize("max_length", [3, 4, 9, 10, 17])
def test_pair_longest_first_truncation_matches_transformers(tokenizer, hf, max_length):
    lengths = [0, 1, 3, 4, 5, 8, 13]
    texts = [words(n) for n in lengths for _ in lengths]
    pairs = [words(m, start=3) for _ in lengths for m in lengths]
    encoded = tokenizer.encode_batch(texts, pairs, max_length=max_length)
    assert as_lists(encoded) == hf_lists(hf, texts, pairs, max_length=max_length)
    too_long = [n + m + 3 > max_length for n in lengths for m in lengths]
    assert encoded.num_truncated == sum(too_long)


def test_pair_truncation_on_real_text_matches_transformers(tokenizer, hf):
    encoded = tokenizer.encode_batch(TEXTS, PAIRS[::-1], max_length=12)
    assert as_lists(encoded) == hf_lists(hf, TEXTS, PAIRS[::-1], max_length=12)


# --- our policy -------------------------------------------------------------------------------------


def test_truncation_and_padding_of_tokenizer_json_do_not_leak(tokenizer):
    long_text = words(300)
    encoded = tokenizer.encode_batch([long_text, "short"], max_length=256)
    assert encoded.lengths.tolist() == [256, 3]  # the file says truncate to 128 and pad to 128
    assert encoded.num_truncated == 1
    assert tokenizer.encode_batch([long_text], max_length=1000).lengths.tolist() == [302]


def test_encoded_texts_layout(tokenizer):
    encoded = tokenizer.encode_batch(["hello world", "hi"], ["a b c", ""], max_length=6)
    assert len(encoded) == 2
    assert encoded.ids.dtype == np.int32 and encoded.type_ids.dtype == np.int8
    assert encoded.offsets.tolist() == [0, 6, 10]
    assert encoded.lengths.tolist() == [6, 4]
    # longest first with 3 tokens to spare: "a b c" loses "c", then both are cut, the longer b keeping 2
    assert encoded[0][0].tolist() == [101, 7592, 102, 1037, 1038, 102]
    assert encoded[0][1].tolist() == [0, 0, 0, 1, 1, 1]
    assert encoded[1][0].tolist() == [101, 7632, 102, 102]
    assert encoded[1][1].tolist() == [0, 0, 0, 1]
    assert encoded.num_truncated == 1


def test_empty_batch(tokenizer):
    encoded = tokenizer.encode_batch([])
    assert len(encoded) == 0 and encoded.ids.size == 0 and encoded.num_truncated == 0


def test_max_length_too_small_and_mismatched_pairs(tokenizer):
    with pytest.raises(ConfigError, match="max_length=2"):
        tokenizer.encode_batch(["a"], ["b"], max_length=2)
    with pytest.raises(ValueError, match="2 texts but 1 text_pairs"):
        tokenizer.encode_batch(["a", "b"], ["c"])


def test_unk_rate(tokenizer):
    assert tokenizer.unk_rate(["hello world"]) == 0.0
    assert tokenizer.unk_rate(["我爱这个"]) == pytest.approx(3 / 4)  # 我 is in the vocabulary
    assert tokenizer.unk_rate([]) == 0.0


# --- which tokens a too-long text keeps: head, tail, head_tail -------------------------------------

ZERO_TO_SEVEN = [5717, 2028, 2048, 2093, 2176, 2274, 2416, 2698]  # ids of words(8)


def text_ids(tokenizer, text: str) -> list[int]:
    """The token ids of ``text`` without special tokens, nothing cut."""
    return tokenizer.encode_batch([text], max_length=None)[0][0][1:-1].tolist()


def test_head_is_the_default_and_keeps_the_first_tokens(tokenizer):
    texts = [words(12), words(3)]
    encoded = tokenizer.encode_batch(texts, max_length=8)
    assert encoded[0][0].tolist() == [101, *ZERO_TO_SEVEN[:6], 102]
    assert encoded[1][0].tolist() == [101, *ZERO_TO_SEVEN[:3], 102]
    assert encoded.truncated.tolist() == [True, False]
    head = tokenizer.encode_batch(texts, max_length=8, truncation="head", head_tokens=2)
    for a, b in zip(vars(encoded).values(), vars(head).values()):
        assert np.array_equal(a, b) and a.dtype == b.dtype


def test_tail_keeps_the_last_tokens(tokenizer):
    encoded = tokenizer.encode_batch([words(12), words(3)], max_length=8, truncation="tail")
    # words(12) is zero ... seven zero ... three: its last six tokens are six seven zero one two three
    assert encoded[0][0].tolist() == [101, *ZERO_TO_SEVEN[6:], *ZERO_TO_SEVEN[:4], 102]
    assert encoded[1][0].tolist() == [101, *ZERO_TO_SEVEN[:3], 102]  # fits: as it was
    assert encoded.truncated.tolist() == [True, False]


def test_head_tail_keeps_the_papers_128_first_and_382_last_tokens(tokenizer):
    text = " ".join(str(i) for i in range(700))  # tokens that never repeat in order
    full = text_ids(tokenizer, text)
    encoded = tokenizer.encode_batch([text, "12 34"], max_length=512, truncation="head_tail")
    assert encoded[0][0].tolist() == [101, *full[:128], *full[-382:], 102]
    assert encoded[1][0].tolist() == [101, *text_ids(tokenizer, "12 34"), 102]
    assert encoded.truncated.tolist() == [True, False]


@pytest.mark.parametrize(
    ("max_length", "head_tokens", "head"), [(16, 10, 10), (16, 0, 0), (16, None, 4), (40, None, 10)]
)
def test_head_tail_keeps_head_tokens_first_and_the_rest_last(tokenizer, max_length, head_tokens, head):
    text = " ".join(str(i) for i in range(100))
    full = text_ids(tokenizer, text)
    encoded = tokenizer.encode_batch(
        [text], max_length=max_length, truncation="head_tail", head_tokens=head_tokens
    )
    tail = max_length - 2 - head  # None: round(14 * 128 / 510) = 4, round(38 * 128 / 510) = 10
    assert encoded[0][0].tolist() == [101, *full[:head], *full[len(full) - tail :], 102]


def test_pairs_are_cut_longest_first_then_per_segment(tokenizer):
    a, b = " ".join(str(i) for i in range(30)), " ".join(str(i) for i in range(100, 112))
    ids_a, ids_b = text_ids(tokenizer, a), text_ids(tokenizer, b)
    assert (len(ids_a), len(ids_b)) == (30, 12)
    max_length = 23  # 20 text tokens: longest first keeps 10 of each
    rows = {
        truncation: tokenizer.encode_batch([a], [b], max_length=max_length, truncation=truncation)
        for truncation in ("head", "tail", "head_tail")
    }
    assert rows["head"][0][0].tolist() == [101, *ids_a[:10], 102, *ids_b[:10], 102]
    assert rows["tail"][0][0].tolist() == [101, *ids_a[-10:], 102, *ids_b[-10:], 102]
    # head_tail: each segment keeps round(10 * 128 / 510) = 3 tokens at its head, 7 at its tail
    assert rows["head_tail"][0][0].tolist() == [
        101,
        *ids_a[:3],
        *ids_a[-7:],
        102,
        *ids_b[:3],
        *ids_b[-7:],
        102,
    ]
    for encoded in rows.values():
        assert encoded[0][1].tolist() == [0] * 12 + [1] * 11
        assert encoded.truncated.tolist() == [True]
    # an explicit head_tokens is a share of the whole budget: 4 of 20 keeps 10 · 4/20 = 2 per segment
    ht = tokenizer.encode_batch([a], [b], max_length=max_length, truncation="head_tail", head_tokens=4)
    assert ht[0][0].tolist() == [101, *ids_a[:2], *ids_a[-8:], 102, *ids_b[:2], *ids_b[-8:], 102]


def test_bad_truncation_arguments(tokenizer):
    with pytest.raises(ConfigError, match="head_tokens=14 must be at least 0 and below the 14 text tokens"):
        tokenizer.encode_batch(["a"], max_length=16, truncation="head_tail", head_tokens=14)
    with pytest.raises(ValueError, match="truncation='middle'"):
        tokenizer.encode_batch(["a"], truncation="middle")


def test_max_length_none_keeps_every_token(tokenizer):
    encoded = tokenizer.encode_batch([words(700), "hi"], [words(3), "yo"], max_length=None)
    assert encoded.lengths.tolist() == [706, 5] and encoded.num_truncated == 0


# --- loading ----------------------------------------------------------------------------------------


def test_vocab_txt_path_matches_tokenizer_json_and_transformers(tokenizer, vocab_dir):
    from_vocab = TextTokenizer.from_dir(vocab_dir)
    hf_vocab = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir))
    for max_length in (512, 10):
        single = as_lists(from_vocab.encode_batch(TEXTS, max_length=max_length))
        pair = as_lists(from_vocab.encode_batch(TEXTS, PAIRS, max_length=max_length))
        assert single == as_lists(tokenizer.encode_batch(TEXTS, max_length=max_length))
        assert single == hf_lists(hf_vocab, TEXTS, max_length=max_length)
        assert pair == as_lists(tokenizer.encode_batch(TEXTS, PAIRS, max_length=max_length))
        assert pair == hf_lists(hf_vocab, TEXTS, PAIRS, max_length=max_length)
    assert from_vocab.vocab_size == tokenizer.vocab_size
    assert from_vocab.unk_id == tokenizer.unk_id


@pytest.mark.parametrize("with_json", [True, False])
def test_do_lower_case_false_is_honoured_like_transformers(minilm_dir, vocab_dir, with_json):
    if with_json:
        shutil.copy(minilm_dir / "tokenizer.json", vocab_dir / "tokenizer.json")
    config = json.loads((vocab_dir / "tokenizer_config.json").read_text())
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    texts = ["Hello World", "Café naïve"]
    ids, _ = as_lists(TextTokenizer.from_dir(vocab_dir).encode_batch(texts))
    assert ids == hf_lists(transformers.BertTokenizerFast.from_pretrained(str(vocab_dir)), texts)[0]
    assert ids[0] != as_lists(TextTokenizer.from_dir(vocab_dir, lowercase=True).encode_batch(texts))[0][0]


def test_explicit_lowercase_overrides_tokenizer_json(minilm_dir):
    cased = TextTokenizer.from_dir(minilm_dir, lowercase=False)
    # the vocabulary is uncased: "Hello" is unknown and the accent is kept (strip_accents follows lowercase)
    assert cased.encode_batch(["Hello hello Café"]).ids.tolist() == [101, 100, 7592, 100, 102]


def test_missing_directory_is_a_user_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FtcoreError, match=f"{missing}.*tokenizer.json or vocab.txt"):
        TextTokenizer.from_dir(missing)


def test_directory_without_tokenizer_files_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FtcoreError, match=f"{tmp_path} has neither tokenizer.json nor vocab.txt"):
        TextTokenizer.from_dir(tmp_path)


def test_broken_files_are_checkpoint_errors(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json is not a valid tokenizers JSON file"):
        TextTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(CheckpointError, match=r"vocab.txt lacks the special tokens \[CLS\], \[SEP\]"):
        TextTokenizer.from_dir(tmp_path)


# --- saving and vocabulary extension ----------------------------------------------------------------


def test_save_round_trip(minilm_dir, tmp_path):
    cased = TextTokenizer.from_dir(minilm_dir, lowercase=False)
    assert cased.save(tmp_path / "run") == tmp_path / "run" / "tokenizer.json"
    reloaded = TextTokenizer.from_dir(tmp_path / "run")
    hf_reloaded = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "run"))
    expected = as_lists(cased.encode_batch(TEXTS, PAIRS))
    assert as_lists(reloaded.encode_batch(TEXTS, PAIRS)) == expected
    assert hf_lists(hf_reloaded, TEXTS, PAIRS, max_length=128) == expected
    saved = json.loads((tmp_path / "run" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None


def test_save_keeps_explicit_strip_accents(tokenizer, vocab_dir, tmp_path):
    config = json.loads((vocab_dir / "tokenizer_config.json").read_text())
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps({**config, "strip_accents": False}))
    keeps_accents = TextTokenizer.from_dir(vocab_dir)  # lower-cases but keeps "é" (an unknown word here)
    expected = as_lists(keeps_accents.encode_batch(TEXTS))
    assert expected[0][2] != as_lists(tokenizer.encode_batch(TEXTS))[0][2]  # "Café naïve façade ..."
    keeps_accents.save(tmp_path)
    assert as_lists(TextTokenizer.from_dir(tmp_path).encode_batch(TEXTS)) == expected
    assert hf_lists(transformers.BertTokenizerFast.from_pretrained(str(tmp_path)), TEXTS) == expected
    assert hf_lists(transformers.BertTokenizerFast.from_pretrained(str(vocab_dir)), TEXTS) == expected


def test_extend_vocabulary_gives_unknown_characters_their_own_ids(minilm_dir):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    english_before = as_lists(tokenizer.encode_batch(TEXTS, PAIRS))
    before = tokenizer.encode_batch(CHINESE)
    assert tokenizer.unk_id in before.ids

    added = tokenizer.extend_vocabulary(CHINESE, min_freq=2)
    # 很 ×4, 好 ×3, then ×2 by code point; 不 and ， (also ×2 or more) are in the vocabulary already
    assert added == ["很", "好", "快", "流", "物", "质", "量"]
    assert tokenizer.vocab_size == 30522 + len(added)

    after = tokenizer.encode_batch(["很好，物流快", "质量很好"])
    expected_ids = {char: 30522 + i for i, char in enumerate(added)}
    e = expected_ids
    assert as_lists(after)[0] == [
        [101, e["很"], e["好"], 1989, e["物"], e["流"], e["快"], 102],
        [101, e["质"], e["量"], e["很"], e["好"], 102],
    ]
    assert as_lists(tokenizer.encode_batch(TEXTS, PAIRS)) != english_before  # TEXTS contain 很 and 质量
    untouched = [t for t in TEXTS if not set(t) & set(added)]
    assert as_lists(tokenizer.encode_batch(untouched)) == as_lists(
        TextTokenizer.from_dir(minilm_dir).encode_batch(untouched)
    )
    assert tokenizer.extend_vocabulary(CHINESE, min_freq=2) == []  # nothing left to add


def test_extend_vocabulary_splits_unknown_characters_out_of_words(minilm_dir):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    assert tokenizer.encode_batch(["great😀"]).ids.tolist() == [101, 100, 102]  # the whole word is unknown
    assert tokenizer.extend_vocabulary(["great😀", "😀"], min_freq=2) == ["😀"]
    assert tokenizer.encode_batch(["great😀"]).ids.tolist() == [101, 2307, 30522, 102]


def test_extend_vocabulary_is_deterministic_and_respects_limits(minilm_dir):
    first = TextTokenizer.from_dir(minilm_dir).extend_vocabulary(CHINESE, min_freq=1)
    second = TextTokenizer.from_dir(minilm_dir).extend_vocabulary(CHINESE[::-1], min_freq=1)
    assert first == second
    assert first[0] == "很"
    assert TextTokenizer.from_dir(minilm_dir).extend_vocabulary(CHINESE, min_freq=1, max_new=3) == first[:3]
    assert TextTokenizer.from_dir(minilm_dir).extend_vocabulary(CHINESE, min_freq=6) == []


def test_extended_vocabulary_survives_save_and_load(minilm_dir, tmp_path):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    added = tokenizer.extend_vocabulary(CHINESE, min_freq=1)
    tokenizer.save(tmp_path)
    reloaded = TextTokenizer.from_dir(tmp_path)
    assert reloaded.vocab_size == tokenizer.vocab_size == 30522 + len(added)
    expected = as_lists(tokenizer.encode_batch(CHINESE + TEXTS))
    assert as_lists(reloaded.encode_batch(CHINESE + TEXTS)) == expected
    hf_reloaded = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    assert hf_lists(hf_reloaded, CHINESE + TEXTS) == expected
    assert tokenizer.unk_id not in reloaded.encode_batch(CHINESE).ids


def test_relearn_moves_the_known_characters_of_a_mostly_unknown_script_to_new_ids(minilm_dir, tmp_path):
    """不 and ， are in MiniLM's vocabulary; with relearn, 不 (a CJK character, a script the vocabulary
    mostly lacks here) gets a new id like the unknown ones, while ， (FULLWIDTH: all known) and the English
    words keep theirs. The old entry is renamed, so nothing produces its id again."""
    plain = TextTokenizer.from_dir(minilm_dir)
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    old_id = tokenizer.token_id("不")
    added = tokenizer.extend_vocabulary(CHINESE, min_freq=2, relearn=True)
    assert set(added) == {"很", "好", "快", "流", "物", "质", "量", "不"}
    assert added == sorted(added, key=lambda c: -sum(t.count(c) for t in CHINESE))  # by frequency
    assert tokenizer.token_id("不") >= 30522 and tokenizer.token_id("[relearned:不]") == old_id
    assert tokenizer.token_id("，") == plain.token_id("，")
    english = [t for t in TEXTS if not any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert as_lists(tokenizer.encode_batch(english)) == as_lists(plain.encode_batch(english))
    assert old_id not in tokenizer.encode_batch(CHINESE + TEXTS).ids
    tokenizer.save(tmp_path)
    reloaded = TextTokenizer.from_dir(tmp_path)
    assert as_lists(reloaded.encode_batch(CHINESE + TEXTS)) == as_lists(
        tokenizer.encode_batch(CHINESE + TEXTS)
    )
    hf_reloaded = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    assert hf_lists(hf_reloaded, CHINESE + TEXTS) == as_lists(tokenizer.encode_batch(CHINESE + TEXTS))
    assert reloaded.extend_vocabulary(CHINESE, min_freq=2, relearn=True) == []  # nothing left to move


def test_relearn_leaves_a_script_the_vocabulary_knows_alone(minilm_dir):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    texts = ["café crème brûlée", "naïve façade", "😀 great", "😀 fine"] * 3
    added = tokenizer.extend_vocabulary(texts, min_freq=2, relearn=True)
    assert added == ["😀"]  # Latin letters (é, ç, ...) are known: none is moved
    assert script_of("é") == "LATIN" and script_of("不") == "CJK" and script_of("，") == "FULLWIDTH"


def test_frequent_bigrams_count_pairs_within_examples_without_special_tokens():
    rng = np.random.default_rng(0)
    examples = [rng.integers(0, 8, rng.integers(1, 12)) for _ in range(300)]
    lengths = [len(e) for e in examples]
    encoded = EncodedTexts(
        ids=np.concatenate(examples).astype(np.int32), type_ids=np.zeros(sum(lengths), np.int8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]), truncated=np.zeros(len(examples), bool),
    )  # fmt: skip
    counts = {}
    for e in examples:
        for a, b in zip(e[:-1].tolist(), e[1:].tolist()):
            if a not in (0, 3) and b not in (0, 3):
                counts[a, b] = counts.get((a, b), 0) + 1
    for min_freq in (1, 25, 30):
        keys = encoded.frequent_bigrams(min_freq, skip=[0, 3])
        expected = sorted(a * 2**32 + b for (a, b), n in counts.items() if n >= min_freq)
        assert keys.tolist() == expected and keys.dtype == np.int64
    assert 0 < len(encoded.frequent_bigrams(25, skip=[0, 3])) < len(encoded.frequent_bigrams(1, skip=[0, 3]))
    assert len(encoded.frequent_bigrams(1)) > len(encoded.frequent_bigrams(1, skip=[0, 3]))
