"""Prefix tuning (Li & Liang, 2021) / P-tuning v2 (Liu et al., 2022): learned keys and values per layer.

Every layer's attention also attends to P learned key/value vectors placed before the sequence:

    attention(Q, [K_prefix; K], [V_prefix; V])      K_prefix, V_prefix: (B, heads, P, head_dim)

They come from one table of shape (P, layers · 2 · hidden) — directly, or through a reparameterising
MLP (Embedding(P, hidden) → Linear → tanh → Linear) that steadies training. ``fold()`` evaluates the
MLP once and keeps only the resulting table, so inference pays nothing for it. Padding keys stay
masked; prefix keys are always visible, so even a padded position sees the prefix. As in peft (where
the prefix is a key/value cache of P earlier positions), the real tokens take positions P, P + 1, ….
"""

from __future__ import annotations

import torch
from torch import nn


class PrefixEncoder(nn.Module):
    """Produces the per-layer (key, value) prefixes.

    Args:
        num_layers, hidden_size, num_heads: of the encoder.
        num_virtual_tokens: P, prefix length.
        projection: reparameterise through an MLP with ``projection_hidden`` units (default: hidden_size).
    """

    def __init__(
        self,
        num_layers: int,
        hidden_size: int,
        num_heads: int,
        num_virtual_tokens: int,
        projection: bool = False,
        projection_hidden: int | None = None,
    ):
        super().__init__()
        self.num_layers, self.num_heads, self.length = num_layers, num_heads, num_virtual_tokens
        self.head_dim = hidden_size // num_heads
        out = num_layers * 2 * hidden_size
        if projection:
            projection_hidden = projection_hidden or hidden_size
            self.embedding = nn.Embedding(num_virtual_tokens, hidden_size)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, out)
            )
        else:
            self.embedding = nn.Embedding(num_virtual_tokens, out)
            self.mlp = None

    def table(self) -> torch.Tensor:
        """(P, layers · 2 · hidden): for each virtual token, layer 0 key, layer 0 value, layer 1 key, ..."""
        return self.embedding.weight if self.mlp is None else self.mlp(self.embedding.weight)

    def forward(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One (key, value) pair per layer, each (B, heads, P, head_dim)."""
        P, L, nh, hd = self.length, self.num_layers, self.num_heads, self.head_dim
        t = self.table().view(P, L * 2, nh, hd).permute(1, 2, 0, 3)  # (2L, nh, P, hd)
        t = t.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, B, nh, P, hd)
        return [(t[2 * i], t[2 * i + 1]) for i in range(L)]

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP reparameterisation by the table it produces (exactly the same prefixes)."""
        if self.mlp is None:
            return
        table = self.table()
        self.embedding = nn.Embedding(self.length, table.shape[1], device=table.device, dtype=table.dtype)
        self.embedding.weight.copy_(table)
        self.mlp = None
