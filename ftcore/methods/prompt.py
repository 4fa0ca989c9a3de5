"""Soft prompt tuning (Lester et al., 2021): P trainable embeddings inserted into the input.

    [CLS] p₁ … p_P  tok₁ … tok_n [SEP]      (position="after_cls", the default)
    p₁ … p_P [CLS] tok₁ … tok_n [SEP]       (position="before")

The virtual tokens get position embeddings like real ones (so ``max_length + P`` must fit within
``max_position_embeddings``), token type 0, and are always attended to. The encoder drops their
output states again, so heads and pooling see exactly the real tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ftcore.config import PROMPT_POSITIONS


class SoftPrompt(nn.Module):
    """P learned input embeddings.

    Args:
        num_virtual_tokens: P.
        hidden_size: embedding width of the encoder.
        position: ``after_cls`` or ``before``.
        init: (P, hidden) initial embeddings, e.g. the word embeddings of a text; random N(0, 0.02) if None.
    """

    def __init__(
        self,
        num_virtual_tokens: int,
        hidden_size: int,
        position: str = "after_cls",
        init: torch.Tensor | None = None,
    ):
        super().__init__()
        if position not in PROMPT_POSITIONS:
            raise ValueError(f"unknown prompt position {position!r}; expected one of {PROMPT_POSITIONS}")
        self.position = position
        self.offset = 1 if position == "after_cls" else 0  # where the prompt starts
        weight = (
            torch.empty(num_virtual_tokens, hidden_size).normal_(std=0.02) if init is None else init.clone()
        )
        self.embeddings = nn.Parameter(weight)

    @property
    def length(self) -> int:
        return self.embeddings.shape[0]

    def insert(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(B, L, H) word embeddings -> (B, P + L, H), with mask and token types extended to match."""
        B, o, P = embeds.shape[0], self.offset, self.length
        prompt = self.embeddings.to(embeds.dtype).unsqueeze(0).expand(B, -1, -1)
        embeds = torch.cat([embeds[:, :o], prompt, embeds[:, o:]], dim=1)
        if attention_mask is not None:
            ones = attention_mask.new_ones(B, P)
            attention_mask = torch.cat([attention_mask[:, :o], ones, attention_mask[:, o:]], dim=1)
        if token_type_ids is not None:
            zeros = token_type_ids.new_zeros(B, P)
            token_type_ids = torch.cat([token_type_ids[:, :o], zeros, token_type_ids[:, o:]], dim=1)
        return embeds, attention_mask, token_type_ids

    def remove(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, P + L, H) -> (B, L, H): the output states of the real tokens only."""
        o = self.offset
        return torch.cat([hidden[:, :o], hidden[:, o + self.length :]], dim=1)
