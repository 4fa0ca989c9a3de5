"""Long documents read whole: overlapping windows in, one pooled prediction per document out.

A text longer than ``max_length`` tokens is either truncated (``data.truncation``: head, tail or both
ends, see ``tokenizer.py``) or, with ``data.long_text=windows``, cut into overlapping windows of
``budget = max_length - 2`` text tokens, each its own ``[CLS] piece [SEP]`` row::

    text   t0 t1 ............................................ t(n-1)
    [CLS] t0 ... t(b-1) [SEP]                    window starts 0, s, 2s, ...
              [CLS] ts ... t(s+b-1) [SEP]        (s = data.window_stride)
                                 [CLS] t(n-b) ... t(n-1) [SEP]    the last ends at the last token

Every token is read by some window, no window is longer than ``max_length``, and a text that fits is
one window equal to its plain encoding. Training treats every window as an example carrying its
document's label; evaluation and prediction pool the windows' logits per document
(:func:`pool_windows`) so each document is scored once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ftcore.data.tokenizer import EncodedTexts, TextTokenizer

LONG_TEXT_MODES = ("truncate", "windows")  # what happens to a text longer than max_length
WINDOW_POOLS = ("mean", "max")  # how a document's window logits become its logits


def window_starts(num_tokens: int, budget: int, stride: int) -> np.ndarray:
    """Where the windows over a text of ``num_tokens`` tokens start, ``budget`` tokens per window.

    ``0, stride, 2·stride, ...`` while a window would end before the text does, then
    ``num_tokens - budget`` so that the last window ends at the last token; ``[0]`` for a text that fits.
    """
    if num_tokens <= budget:
        return np.zeros(1, dtype=np.int64)
    return np.append(np.arange(0, num_tokens - budget, stride), num_tokens - budget)


def split_windows(
    encoded: EncodedTexts, max_length: int, stride: int | None = None
) -> tuple[EncodedTexts, np.ndarray]:
    """Cut every ``[CLS] text [SEP]`` row of ``encoded`` into windows of at most ``max_length`` tokens.

    Args:
        encoded: single texts encoded whole (``encode_batch(texts, max_length=None)``).
        max_length: most tokens per window, ``[CLS]`` and ``[SEP]`` included.
        stride: text tokens from one window's start to the next, in ``[1, max_length - 2]``;
            ``None`` for half a window, ``(max_length - 2) // 2``.

    Returns:
        The windows in document order (none truncated), and ``(num_windows,)`` int64: the document
        (row of ``encoded``) each window belongs to.
    """
    budget = max_length - 2
    stride = budget // 2 if stride is None else stride
    if not 1 <= stride <= budget:
        raise ValueError(f"stride={stride} must be in [1, {budget}] for max_length={max_length}")
    if encoded.type_ids.any():
        raise ValueError("windows take single texts; got text pairs")
    text_lengths = encoded.lengths - 2
    starts = [window_starts(n, budget, stride) for n in text_lengths]
    documents = np.repeat(np.arange(len(encoded)), [len(s) for s in starts])
    starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    lengths = np.minimum(text_lengths[documents], budget) + 2
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # position in `encoded` of every window token: the text token start + p for the p-th token of a
    # window, except the first and last, which are the document's own [CLS] and [SEP]
    cls = encoded.offsets[:-1][documents]
    position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    source = np.repeat(cls + starts, lengths) + position
    source[offsets[:-1]] = cls
    source[offsets[1:] - 1] = encoded.offsets[1:][documents] - 1
    windows = EncodedTexts(
        ids=encoded.ids[source],
        type_ids=encoded.type_ids[source],
        offsets=offsets,
        truncated=np.zeros(len(documents), dtype=bool),
    )
    return windows, documents


def encode_windows(
    tokenizer: TextTokenizer, texts: Sequence[str], max_length: int, stride: int | None = None
) -> tuple[EncodedTexts, np.ndarray]:
    """Encode ``texts`` whole and cut them into windows (see :func:`split_windows`)."""
    return split_windows(tokenizer.encode_batch(texts, max_length=None), max_length, stride)


def pool_windows(logits: torch.Tensor, documents: np.ndarray, how: str = "mean") -> torch.Tensor:
    """Pool window logits into document logits, in fp32.

    Args:
        logits: ``(num_windows, C)`` logits of every window.
        documents: ``(num_windows,)`` document of each window; documents are ``0 .. D - 1``, each with
            at least one window.
        how: ``mean`` or ``max`` over a document's windows, per logit.

    Returns:
        ``(D, C)`` fp32 logits of every document.
    """
    if how not in WINDOW_POOLS:
        raise ValueError(f"how={how!r}; expected one of {', '.join(WINDOW_POOLS)}")
    logits = logits.float()
    index = torch.as_tensor(documents, device=logits.device)[:, None].expand_as(logits)
    num_documents = int(documents.max()) + 1 if len(documents) else 0
    pooled = logits.new_zeros(num_documents, logits.shape[1])
    return pooled.scatter_reduce(
        0, index, logits, reduce="mean" if how == "mean" else "amax", include_self=False
    )
