"""Dropout and attention, with CPU paths written for speed.

Both compute exactly what their textbook definitions say; they differ from ``F.dropout`` and
``F.scaled_dot_product_attention`` only in how they get there on a CPU, where those two are slow for
BERT-sized training steps (measured with ``benchmarks/throughput.py``, 2-core AVX-512 machine):

* ``F.dropout`` draws one Bernoulli sample per element through a slow per-element path; half of a LoRA
  training step went into it. :func:`dropout` draws 64 random bits at a time and uses 15 of them per
  element, so the drop probability is ``p`` rounded to a multiple of 1/32768 (0.1 → 0.100006) and the
  kept values are scaled by the matching ``1 / (1 - p)``, which keeps the expectation exact.
* SDPA with ``dropout_p > 0`` falls back to its math kernel, which upcasts bf16 to fp32 and masks
  ``-inf`` rows with several extra passes; its fused flash kernel (no dropout) is slow for 32-wide heads.
  :func:`attention` runs softmax(Q Kᵀ / √d + mask) V as two batched matmuls in the input dtype with the
  scale and mask folded in, and is 3–4x faster per layer forward + backward at L=128 in bf16.

On CUDA, and under ``torch.compile`` (which fuses its own kernels), both defer to PyTorch.
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


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool tensor of ``shape`` that is True with probability ``1 - p`` (``p`` rounded to 1/32768),
    and the scale ``1 / (1 - p)`` for that rounded ``p``. Uses the default CPU generator."""
    n = math.prod(shape)
    drop = round(p * LEVELS)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 random bits each
    bits = words.view(torch.int16)[:n].view(shape)
    return (bits & (LEVELS - 1)) >= drop, LEVELS / (LEVELS - drop)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, scale = keep_mask(x.shape, p)
        # bool -> uint8 -> x.dtype is ~10x faster than bool -> bf16 directly
        mask = keep.view(torch.uint8).to(x.dtype).mul_(scale)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


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
    if _use_fallback(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.add_(mask.to(scores.dtype))
    probs = dropout(torch.softmax(scores, dim=-1), dropout_p)
    return torch.matmul(probs, v)


__all__ = ["Dropout", "attention", "dropout", "keep_mask"]
