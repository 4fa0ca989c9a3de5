"""Dropout and attention, with CPU paths written for speed.

Both compute exactly what their textbook definitions say; they differ from ``F.dropout`` and
``F.scaled_dot_product_attention`` only in how they get there on a CPU, where those two are slow for
BERT-sized training steps (measured with ``benchmarks/throughput.py``, 2-core AVX-512 machine):

* ``F.dropout`` draws one Bernoulli sample per element through a slow per-element path; 30% of a LoRA
  training step went into it. :func:`dropout` draws 64 random bits at a time and uses 15 of them per
  element (see :func:`keep_lanes`), so the drop probability is ``p`` rounded to a multiple of 1/32768
  (0.1 → 0.100006) and the kept values are scaled by the matching ``1 / (1 - p)``, which keeps the
  expectation exact.
* SDPA with ``dropout_p > 0`` falls back to its math kernel, which upcasts bf16 to fp32 and masks
  ``-inf`` rows with several extra passes; its fused flash kernel (no dropout) is slow for 32-wide heads.
  :func:`attention` runs softmax(Q Kᵀ / √d + mask) V as two batched matmuls in the input dtype with the
  scale and mask folded in, and is 3–4x faster per layer forward + backward at L=128 in bf16.

On CUDA both defer to PyTorch's kernels; under ``torch.compile`` dropout does too (the compiler
generates its own random numbers and cannot trace the int16 view of the random words).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BITS = 15  # random bits per element: 4 elements from every int64 draw (whose top bit is always 0)
LEVELS = 1 << BITS


def _use_fallback(x: torch.Tensor) -> bool:
    return x.device.type != "cpu" or torch.compiler.is_compiling()


# Four 16-bit lanes per int64 word, as signed 64-bit constants: the low 15 bits of every lane, the lowest
# bit of every lane (times a number: that number in every lane) and the top bit of every lane.
LANE_BITS = 0x7FFF_7FFF_7FFF_7FFF
LANE_ONES = 0x0001_0001_0001_0001
LANE_TOPS = 0x8000_8000_8000_8000 - (1 << 64)


def keep_lanes(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """An int16 tensor of ``shape`` holding 1 (keep, probability ``1 - p``) or 0 (drop), with ``p``
    rounded to a multiple of 1/32768, and the scale ``1 / (1 - p)`` for that rounded ``p``.

    Each int64 drawn from the default CPU generator (63 random bits) decides four elements, one 16-bit
    lane each, without a per-lane pass: a lane's 15 random bits v plus (32768 - drop) reach the lane's
    top bit exactly when v >= drop, and cannot carry into the next lane; a shift brings that bit down.
    """
    n = math.prod(shape)
    drop = round(p * LEVELS)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
    words.bitwise_and_(LANE_BITS).add_((LEVELS - drop) * LANE_ONES).bitwise_and_(LANE_TOPS)
    words = words.bitwise_right_shift_(BITS).bitwise_and_(LANE_ONES)
    return words.view(torch.int16)[:n].view(shape), LEVELS / (LEVELS - drop)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool tensor of ``shape``, True with probability ``1 - p``, and the scale; see :func:`keep_lanes`."""
    lanes, scale = keep_lanes(shape, p)
    return lanes != 0, scale


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        lanes, scale = keep_lanes(x.shape, p)
        mask = lanes.to(x.dtype)  # 0 / 1
        ctx.save_for_backward(mask)
        ctx.scale = scale
        # x · mask · scale in one pass, rounded once: a bf16 mask holding the scale itself would
        # round 1/(1 - p) (1.111 -> 1.109) and shrink every kept activation by 0.16%.
        return torch.addcmul(x.new_zeros(()), x, mask, value=scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, mask, value=ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only)."""
    if not training or p == 0.0:
        return x
    if _use_fallback(x):
        return F.dropout(x, p, training=True)
    return _Dropout.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same repr, same state) computed by :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v with dropout on the probabilities.

    q (B, nh, Lq, d), k and v (B, nh, Lk, d); ``mask`` is additive and broadcasts to (B, nh, Lq, Lk).
    """
    if q.device.type != "cpu":  # (under torch.compile the matmul form below lets inductor fuse it)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.add_(mask.to(scores.dtype))
    probs = dropout(torch.softmax(scores, dim=-1), dropout_p)
    return torch.matmul(probs, v)


__all__ = ["Dropout", "attention", "dropout", "keep_lanes", "keep_mask"]
