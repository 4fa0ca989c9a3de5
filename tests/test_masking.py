"""BERT's masking: what is picked, what it becomes, whole words, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ftcore.data.masking import IGNORE, MaskingVocabulary, mask_tokens

V = 40
SPECIAL = np.zeros(V, dtype=bool)
SPECIAL[:5] = True  # [PAD] [UNK] [CLS] [SEP] [MASK]
CONTINUES = np.zeros(V, dtype=bool)
CONTINUES[30:] = True  # "##" pieces
VOCAB = MaskingVocabulary(mask_id=4, special=SPECIAL, continues=CONTINUES)


def batch(rows: int = 64, length: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 30, (rows, length))
    ids[:, 0] = 2
    lengths = rng.integers(10, length + 1, rows)
    for r, n in enumerate(lengths):
        ids[r, n - 1] = 3
        ids[r, n:] = 0
    return ids


def test_only_real_tokens_are_picked_at_the_rate_asked():
    ids = batch(400)
    inputs, labels = mask_tokens(ids, VOCAB, np.random.default_rng(1), probability=0.15)
    picked = labels != IGNORE
    assert not picked[SPECIAL[ids]].any(), "special or padding tokens were picked"
    assert (labels[picked] == ids[picked]).all()
    assert (inputs[~picked] == ids[~picked]).all(), "a position without a target was changed"
    rate = picked.sum() / (~SPECIAL[ids]).sum()
    assert rate == pytest.approx(0.15, abs=0.01)


def test_picked_tokens_become_mask_random_or_stay_80_10_10():
    ids = batch(800)
    inputs, labels = mask_tokens(ids, VOCAB, np.random.default_rng(2))
    picked = labels != IGNORE
    masked = (inputs == VOCAB.mask_id) & picked
    unchanged = (inputs == ids) & picked
    other = picked & ~masked & ~unchanged
    n = picked.sum()
    assert masked.sum() / n == pytest.approx(0.8, abs=0.02)
    # a random replacement can draw the original token (1 in 35 here): it then counts as unchanged
    assert (other.sum() + unchanged.sum()) / n == pytest.approx(0.2, abs=0.02)
    assert other.sum() / n > 0.08
    assert not SPECIAL[inputs[other]].any(), "a random replacement drew a special token"


def test_whole_word_masking_picks_and_treats_a_word_with_its_pieces():
    ids = np.array([[2, 10, 31, 32, 11, 33, 12, 3, 0, 0]] * 2000)
    inputs, labels = mask_tokens(ids, VOCAB, np.random.default_rng(3), whole_word=True)
    picked = labels != IGNORE
    words = [[1, 2, 3], [4, 5], [6]]
    for word in words:  # all pieces of a word share one fate
        assert (picked[:, word] == picked[:, word[:1]]).all()
        masked = inputs[:, word] == VOCAB.mask_id
        assert (masked == masked[:, :1]).all()
    assert picked[:, 1].mean() == pytest.approx(0.15, abs=0.03)


def test_whole_word_never_joins_a_piece_to_a_word_across_special_tokens():
    ids = np.array([[2, 31, 10, 3]] * 500)  # a "##" piece right after [CLS] is a word of its own
    _, labels = mask_tokens(ids, VOCAB, np.random.default_rng(4), probability=0.5, whole_word=True)
    picked = labels != IGNORE
    assert 0.4 < picked[:, 1].mean() < 0.6
    assert (picked[:, 1] != picked[:, 2]).any()


def test_the_same_generator_masks_the_same_way_and_another_differently():
    ids = batch(8)
    a = mask_tokens(ids, VOCAB, np.random.default_rng([7, 0, 3]))
    b = mask_tokens(ids, VOCAB, np.random.default_rng([7, 0, 3]))
    c = mask_tokens(ids, VOCAB, np.random.default_rng([7, 1, 3]))  # next epoch, same step
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
