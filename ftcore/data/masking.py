"""BERT's masked-LM corruption of a padded batch (Devlin et al. 2019, section 3.1).

Of the real tokens (never ``[CLS]``, ``[SEP]``, ``[PAD]`` or other special tokens) each is picked as a
target with probability ``probability`` (15%); a picked token is replaced by ``[MASK]`` 80% of the time,
by a random ordinary token 10% of the time, and left as it is otherwise. The loss is scored on the picked
positions only (``labels`` is -100 elsewhere).

With ``whole_word`` the draw is per word instead: a token and the ``##`` pieces that follow it are picked
(and replaced) together, so the model cannot recover a masked piece from the rest of its word. Every
Chinese character is a word of its own for BERT's tokenizer, so whole-word masking changes nothing there.

Everything is drawn from the ``numpy`` generator passed in: the loop derives it from (seed, epoch, step),
so each epoch masks afresh and a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of positions without a target (PyTorch's cross-entropy ignore_index)


@dataclass(frozen=True)
class MaskingVocabulary:
    """What masking needs to know of the tokenizer.

    Attributes:
        mask_id: id of ``[MASK]``.
        special: (vocab_size,) bool, True for ids never masked nor drawn as random replacements.
        continues: (vocab_size,) bool, True for word pieces that continue a word (``##...``).
    """

    mask_id: int
    special: np.ndarray
    continues: np.ndarray

    @property
    def replacements(self) -> np.ndarray:
        """Ids a picked token may be replaced by in the random 10%: every ordinary token."""
        return np.flatnonzero(~self.special)


def mask_tokens(
    input_ids: np.ndarray,
    vocab: MaskingVocabulary,
    rng: np.random.Generator,
    probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    whole_word: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt a (B, L) batch of token ids; returns ``(inputs, labels)``, both (B, L) int64.

    ``labels`` holds the original id at every picked position and ``IGNORE`` elsewhere. Padding and
    special tokens are never picked.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    maskable = ~vocab.special[ids]
    if whole_word:
        # a word starts at every maskable token that does not continue a maskable token before it
        after_maskable = np.zeros_like(maskable)
        after_maskable[:, 1:] = maskable[:, :-1]
        starts = maskable & (~vocab.continues[ids] | ~after_maskable)
        word = np.cumsum(starts.ravel()).reshape(ids.shape) - 1  # word index of each position
        drawn = rng.random(max(int(starts.sum()), 1)) < probability
        picked = maskable & drawn[np.maximum(word, 0)]
        choice = rng.random(len(drawn))[np.maximum(word, 0)]  # one replacement draw per word
    else:
        picked = maskable & (rng.random(ids.shape) < probability)
        choice = rng.random(ids.shape)
    labels = np.where(picked, ids, IGNORE)
    inputs = ids.copy()
    to_mask = picked & (choice < mask_fraction)
    to_random = picked & (choice >= mask_fraction) & (choice < mask_fraction + random_fraction)
    inputs[to_mask] = vocab.mask_id
    replacements = vocab.replacements
    inputs[to_random] = replacements[rng.integers(0, len(replacements), int(to_random.sum()))]
    return inputs, labels
