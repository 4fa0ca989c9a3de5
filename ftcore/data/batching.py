"""Batches: which examples go together, and how they become padded tensors.

Length bucketing keeps padding small without giving up randomness: each epoch shuffles all examples,
cuts the permutation into *mega-batches* of ``batch_size × mega_batch`` examples, sorts each one by
length, slices it into batches, and shuffles the batch order. Every index appears exactly once per
epoch (under DDP, a last global batch smaller than ``world_size`` repeats a few examples), and the
order depends only on ``(seed, epoch)``, so a resumed run can skip straight to its position.

Under DDP every rank builds the same *global* batches of ``batch_size × world_size`` examples and
keeps the ``rank``-th share of each one, so N processes with batch b see exactly the examples one
process with batch N·b would.
"""

from __future__ import annotations

import numpy as np
import torch

from ftcore.data.tokenizer import EncodedTexts


def epoch_batches(
    lengths: np.ndarray,
    batch_size: int,
    epoch: int,
    seed: int,
    shuffle: bool = True,
    bucket: bool = True,
    mega_batch: int = 64,
    world_size: int = 1,
    rank: int = 0,
) -> list[np.ndarray]:
    """Index batches of one epoch for this rank.

    Args:
        lengths: (N,) token count of every example.
        batch_size: examples per batch on each rank.
        epoch, seed: the order is a pure function of both.
        shuffle: False keeps the file order (evaluation), with ``bucket`` sorting by length instead.
        bucket: sort by length within mega-batches of ``mega_batch`` batches.
        world_size, rank: DDP sharding; the last global batch is split as evenly as possible. In
            training (``shuffle``) it is topped up if needed so that every rank gets the same number of
            batches; without shuffling a rank may get one batch fewer.
    """
    n = len(lengths)
    global_size = batch_size * world_size
    if not shuffle:
        order = np.argsort(-lengths, kind="stable") if bucket else np.arange(n)
    else:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        if bucket:
            span = global_size * mega_batch
            chunks = [order[i : i + span] for i in range(0, n, span)]
            order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    if shuffle and 0 < n % global_size < world_size:
        # Fewer examples than ranks in the last global batch would leave some ranks a step short (and
        # DDP waiting forever): top it up with the epoch's first examples, as DistributedSampler does.
        # Evaluation (no shuffle) needs no lock-step, so it scores every example exactly once instead.
        order = np.resize(order, n + world_size - n % global_size)
    global_batches = [order[i : i + global_size] for i in range(0, len(order), global_size)]
    if shuffle and bucket:
        global_batches = [global_batches[i] for i in rng.permutation(len(global_batches))]
    # Rank r takes every world_size-th example of each (length-sorted) global batch: similar lengths.
    return [b[rank::world_size] for b in global_batches if len(b[rank::world_size])]


def token_batches(lengths: np.ndarray, max_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Index batches for inference, longest examples first, each holding at most ``max_rows`` examples
    and at most ``max_tokens`` padded token slots (rows × its longest example; an example longer than
    the budget goes alone). Sorting first keeps padding small; the token budget stops a pass from
    growing past the size where more rows no longer run faster per token and only add padding."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, min(max_rows, max_tokens // longest))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray], pad_to_multiple: int = 1) -> float:
    """Share of the token slots in padded batches that hold padding."""
    real = padded = 0
    for b in batches:
        lens = lengths[b]
        longest = -(-int(lens.max()) // pad_to_multiple) * pad_to_multiple
        real += int(lens.sum())
        padded += longest * len(b)
    return 1.0 - real / padded if padded else 0.0


def augment(
    ids: np.ndarray, types: np.ndarray, prob: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random token deletion and neighbour swaps (EDA-style) for one encoded example.

    Each text token is dropped with probability ``prob``, then each remaining adjacent pair of text
    tokens in the same segment is swapped with probability ``prob``. Special tokens ([CLS], [SEP]) stay.
    """
    special = np.zeros(len(ids), dtype=bool)
    special[0] = special[-1] = True
    special[:-1] |= types[:-1] != types[1:]  # the [SEP] that closes segment A
    keep = special | (rng.random(len(ids)) >= prob)
    ids, types, special = ids[keep].copy(), types[keep].copy(), special[keep]
    for i in np.flatnonzero(rng.random(len(ids) - 1) < prob):
        if not (special[i] or special[i + 1]):
            ids[i], ids[i + 1] = ids[i + 1], ids[i]
    return ids, types


def collate(
    encoded: EncodedTexts,
    indices: np.ndarray,
    labels: np.ndarray | None = None,
    pad_id: int = 0,
    pad_to_multiple: int = 1,
    augment_prob: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the batch's longest one (rounded up to ``pad_to_multiple``).

    Returns ``input_ids``, ``token_type_ids`` and ``attention_mask`` as (B, L) int64 tensors, plus
    ``labels`` when given. A batch with no padding gets ``attention_mask=None`` (SDPA runs mask-free).
    ``augment_prob > 0`` applies :func:`augment` to every example, drawing from ``rng``.
    """
    rows = [encoded[i] for i in indices]
    if augment_prob > 0:
        rows = [augment(ids, types, augment_prob, rng) for ids, types in rows]
    lengths = np.array([len(ids) for ids, _ in rows])
    L = -(-int(lengths.max()) // pad_to_multiple) * pad_to_multiple
    ids = np.full((len(rows), L), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), L), dtype=np.int64)
    for row, (example_ids, example_types) in enumerate(rows):
        ids[row, : len(example_ids)] = example_ids
        types[row, : len(example_ids)] = example_types
    batch = {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types)}
    if (lengths == L).all():
        batch["attention_mask"] = None
    else:
        batch["attention_mask"] = torch.from_numpy(
            (np.arange(L)[None, :] < lengths[:, None]).astype(np.int64)
        )
    if labels is not None:
        batch["labels"] = torch.from_numpy(np.ascontiguousarray(labels[indices]))
    return batch
