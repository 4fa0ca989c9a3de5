"""Dropout and attention behind one seam: PyTorch's kernels on CUDA, CPU paths written for speed.

Both compute exactly what their textbook definitions say; they differ from ``F.dropout`` and
``F.scaled_dot_product_attention`` only in how they get there on a CPU:

* ``F.dropout`` draws one Bernoulli sample per element through a slow per-element path.
  :func:`dropout` draws 64 random bits at a time (numpy's SFC64, seeded from torch's generator) and
  uses 15 of them per element (see :func:`keep_lanes`), so the drop probability is ``p`` rounded to a
  multiple of 1/32768 (0.1 → 0.100006) and the kept values are scaled by the matching ``1 / (1 - p)``,
  which keeps the expectation exact. Probabilities the lanes cannot represent take PyTorch's path.
* SDPA with ``dropout_p > 0`` falls back to its math kernel, which upcasts bf16 to fp32 and masks
  ``-inf`` rows with several extra passes. :func:`attention` runs softmax(Q Kᵀ / √d + mask) V as two
  batched matmuls in the input dtype, with the scale and mask folded into the first (``baddbmm``).

On CUDA both defer to PyTorch's kernels; under ``torch.compile`` dropout does too (the compiler
generates its own random numbers and cannot trace the int16 view of the random words).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftcore.errors import ConfigError

BITS = 15  # random bits per element: 4 elements from every 64-bit random word
LEVELS = 1 << BITS
# p is rounded to a multiple of 1/LEVELS: below MIN_P it would round to 0 (no dropout), from MAX_P on to 1
# (no kept value to scale). Such p take PyTorch's exact path; configs refuse p >= MAX_P outright.
MIN_P, MAX_P = 1 / (2 * LEVELS), 1 - 1 / (2 * LEVELS)


def check_dropout(key: str, p: float) -> None:
    """Refuse a dropout probability outside [0, MAX_P), naming the config key."""
    if not 0.0 <= p < MAX_P:
        raise ConfigError(
            f"{key}={p} is out of range; expected a dropout probability in [0, 1 - 1/65536) "
            "(closer to 1 nothing is kept to train on)"
        )


def _use_fallback(x: torch.Tensor) -> bool:
    return x.device.type != "cpu" or torch.compiler.is_compiling()


# The bit pattern of 1.0 in each 16-bit dtype: a 16-bit lane holding it *is* that dtype's 1.
ONE_BITS = {torch.int16: 1, torch.bfloat16: 0x3F80, torch.float16: 0x3C00}


def random_words(n: int) -> torch.Tensor:
    """``n`` random 64-bit words (int64), seeded from torch's default CPU generator.

    One draw from torch's generator seeds numpy's SFC64, which fills the words about twice as fast as
    ``torch.Tensor.random_`` (Mersenne Twister, 32 bits at a time). ``torch.manual_seed`` and the saved
    RNG state of a checkpoint therefore still decide every mask.
    """
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    return torch.from_numpy(np.random.SFC64(seed).random_raw(n).view(np.int64))


def keep_lanes(
    shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.int16
) -> tuple[torch.Tensor, float]:
    """A tensor of ``shape`` holding 1 (keep, probability ``1 - p``) or 0 (drop), with ``p`` rounded to a
    multiple of 1/32768, and the scale ``1 / (1 - p)`` for that rounded ``p``.

    Each 64-bit random word decides four elements, one 16-bit lane each, in four int16 passes. For a
    16-bit ``dtype`` (int16, bf16, fp16) the kept lanes hold the bit pattern of that dtype's 1, so the
    mask needs no conversion pass; other dtypes get one.
    """
    n = math.prod(shape)
    drop = round(p * LEVELS)
    lanes = random_words((n + 3) // 4).view(torch.int16)[:n]  # four 16-bit lanes per word
    # low 15 bits v, plus (32768 - drop): the sum reaches 32768 (negative as int16) exactly when
    # v >= drop; an arithmetic shift turns the sign into all ones (keep) or zeros (drop), and a mask
    # keeps the bits of the dtype's 1.
    lanes.bitwise_and_(LEVELS - 1).add_(LEVELS - drop).bitwise_right_shift_(BITS)
    lane_dtype = dtype if dtype in ONE_BITS else torch.int16
    lanes = lanes.bitwise_and_(ONE_BITS[lane_dtype]).view(lane_dtype).view(shape)
    return (lanes if lane_dtype == dtype else lanes.to(dtype)), LEVELS / (LEVELS - drop)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask, scale = keep_lanes(x.shape, p, x.dtype)  # 0 / 1 in x's dtype
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
    if _use_fallback(x) or not MIN_P <= p < MAX_P:
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
    B, nh, Lq, d = q.shape
    Lk = k.shape[2]
    q3, kt3 = q.reshape(B * nh, Lq, d), k.reshape(B * nh, Lk, d).transpose(1, 2)
    if mask is None:
        scores = torch.bmm(q3, kt3).mul_(d**-0.5)
    else:
        # scale · q kᵀ + mask in the matmul itself: separate passes over (B·nh, Lq, Lk), the mask's
        # broadcast add above all, cost more than the product when Lk is not a multiple of 32
        mask = mask.reshape((1,) * (4 - mask.dim()) + mask.shape).to(q.dtype)
        mask = mask.expand(B, nh, mask.shape[2], Lk).reshape(B * nh, mask.shape[2], Lk)
        scores = torch.baddbmm(mask, q3, kt3, alpha=d**-0.5)
    probs = dropout(torch.softmax(scores, dim=-1), dropout_p)
    return torch.bmm(probs, v.reshape(B * nh, Lk, d)).view(B, nh, Lq, d)


__all__ = ["Dropout", "attention", "check_dropout", "dropout", "keep_lanes", "random_words"]
