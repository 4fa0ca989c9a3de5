"""LoRA (Hu et al., 2021) and DoRA (Liu et al., 2024) as a wrapper around a frozen ``nn.Linear``.

    LoRA:  y = W₀x + b + s · B A dropout(x)               s = α / r   (rsLoRA: s = α / √r)
    DoRA:  y = b + m ⊙ (W₀x + s · B A x) / ‖W₀ + s B A‖    (row norms, treated as a constant in backward;
                                                         with dropout, see ``forward``)

A (r × in) and B (out × r) are the only new weights (DoRA adds the magnitude m, one per output).
The low-rank path is computed as ``(x Aᵀ) Bᵀ`` and never materialises the out × in update, and
``merge()`` folds it into W₀ so inference costs nothing extra.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ftcore.config import LORA_INITS
from ftcore.model.ops import Dropout

# Target names (as the fine-tuning literature says them) -> module-name suffix in our encoder.
TARGETS = {
    "query": "attention.query",
    "key": "attention.key",
    "value": "attention.value",
    "attention_output": "attention.out",
    "intermediate": "ffn.up",
    "output": "ffn.down",
    "pooler": "pooler.dense",
}


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (and DoRA magnitude when ``dora``).

    Args:
        base: the linear layer to adapt; its weight and bias are frozen.
        r: rank of the update.
        alpha: scale numerator; the update is multiplied by ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).
        dropout: dropout on the input of the low-rank path.
        init: ``default`` (A Kaiming-uniform, B = 0: starts as the base layer), ``gaussian`` (A ~ N(0, 1/r),
            B = 0), or ``pissa`` (A, B from the top-r singular vectors of W₀, which keeps only the residual).
        use_rslora: rank-stabilised scaling α/√r (Kalajdzievski, 2023).
        dora: learn a per-output magnitude and normalise the direction (weight-decomposed LoRA).
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "default",
        use_rslora: bool = False,
        dora: bool = False,
    ):
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        self.r, self.alpha = r, alpha
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r, device=w.device, dtype=w.dtype))
        self.magnitude = None
        self.merged = False
        self.reset_parameters(init)
        if dora:
            self.magnitude = nn.Parameter(self._weight_norm())

    @torch.no_grad()
    def reset_parameters(self, init: str = "default") -> None:
        """Initialise A and B (see the class docstring); follows peft's choices for each option."""
        if init == "default":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)
        elif init == "gaussian":
            nn.init.normal_(self.lora_A, std=1 / self.r)
            nn.init.zeros_(self.lora_B)
        elif init == "pissa":
            # W₀ = U S Vᵀ: the top-r part moves into B A (scaled back by 1/s), the rest stays in W₀.
            weight = self.base.weight.float()
            U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
            root = S[: self.r].sqrt() / math.sqrt(self.scaling)
            self.lora_A.copy_(root[:, None] * Vh[: self.r])
            self.lora_B.copy_(U[:, : self.r] * root[None, :])
            residual = weight - self.scaling * self.lora_B.float() @ self.lora_A.float()
            self.base.weight.copy_(residual.to(self.base.weight.dtype))
        else:
            raise ValueError(f"unknown LoRA init {init!r}; expected one of {LORA_INITS}")

    def delta_weight(self) -> torch.Tensor:
        """The dense update s · B A (out × in); used for merging and norms, never in the forward pass."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def _weight_norm(self) -> torch.Tensor:
        """Row norms ‖W₀ + s B A‖ (one per output unit)."""
        return torch.linalg.vector_norm(self.base.weight + self.delta_weight(), dim=1)

    def _low_rank(self, xd: torch.Tensor) -> torch.Tensor:
        """s · B A xd as two thin matmuls (s folded into B, which is out × r, rather than applied to the
        B·L × out result)."""
        return F.linear(F.linear(xd, self.lora_A), self.lora_B * self.scaling)

    def side(self, x: torch.Tensor) -> torch.Tensor:
        """The additive LoRA path s · B A dropout(x)."""
        return self._low_rank(self.dropout(x))

    def split_base(self) -> tuple[nn.Linear, Callable[[torch.Tensor], torch.Tensor] | None] | None:
        """(frozen base ``nn.Linear``, additive side path): makes this a ``bert.FusableProjection``, so
        the fused QKV matmul can batch the base with the other projections; None for DoRA, whose update
        is not additive."""
        if self.merged:
            return self.base, None
        return None if self.magnitude is not None else (self.base, self.side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        if self.magnitude is None:
            return self.base(x) + self.side(x)
        xd = self.dropout(x)
        lora = self._low_rank(xd)
        # DoRA, in peft's arrangement: base(x) + (m/n − 1) · W₀ dropout(x) + (m/n) · s B A dropout(x)
        # (without dropout this is b + (m/n) ⊙ (W₀x + s B A x)).
        scale = self.magnitude / self._weight_norm().detach()  # (out,)
        base = self.base(x)
        if xd is x:
            direction = base if self.base.bias is None else base - self.base.bias
        else:
            direction = F.linear(xd, self.base.weight)
        return base + (scale - 1) * direction + scale * lora

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W₀ with the update folded in: W₀ + s B A, or m ⊙ (W₀ + s B A) / ‖W₀ + s B A‖ for DoRA."""
        weight = self.base.weight + self.delta_weight()
        if self.magnitude is not None:
            weight = weight * (self.magnitude / torch.linalg.vector_norm(weight, dim=1))[:, None]
        return weight

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (the original is kept to ``unmerge``)."""
        if not self.merged:
            self._unmerged_weight = self.base.weight.detach().clone()
            self.base.weight.copy_(self.merged_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the base weight saved by ``merge``."""
        if self.merged:
            self.base.weight.copy_(self._unmerged_weight)
            del self._unmerged_weight
            self.merged = False

    def extra_repr(self) -> str:
        kind = "DoRA" if self.magnitude is not None else "LoRA"
        return f"{kind}(r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g})"


def target_pattern(targets: list[str]) -> re.Pattern:
    """Regex matching the module names of ``targets`` (keys of :data:`TARGETS`) anywhere in the encoder."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; expected some of {list(TARGETS)}")
    return re.compile(r"(^|\.)(" + "|".join(re.escape(TARGETS[t]) for t in targets) + r")$")


def inject_lora(model: nn.Module, targets: list[str], **lora_kwargs) -> list[str]:
    """Replace every ``nn.Linear`` whose name matches ``targets`` by a :class:`LoRALinear`; return the names."""
    pattern = target_pattern(targets)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.search(n)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), **lora_kwargs))
    return names


def merge_lora(model: nn.Module) -> int:
    """Replace every :class:`LoRALinear` by a plain ``nn.Linear`` holding the merged weight; return the count."""
    names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        lora: LoRALinear = getattr(parent, child)
        if not lora.merged:
            lora.merge()
        setattr(parent, child, lora.base)
    return len(names)
