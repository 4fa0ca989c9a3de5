"""AdamW (Loshchilov & Hutter, 2019), written out, with one multi-tensor update per parameter group.

For every parameter θ with gradient g, at step t:

    θ ← θ · (1 − lr·λ)                        decoupled weight decay
    m ← β₁·m + (1 − β₁)·g                     first moment
    v ← β₂·v + (1 − β₂)·g²                    second moment  (amsgrad: v̂max ← max(v̂max, v))
    θ ← θ − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)

The operations and their order follow ``torch.optim.AdamW``, so both give the same numbers. Each line
runs as one ``torch._foreach_*`` call over all tensors of a group instead of a Python loop per tensor.

``fused=True`` is the speed seam: the same update as one ``torch._fused_adamw_`` kernel per group, which
reads and writes every tensor once instead of once per line above. It pays where the trainable tensors
are large (full fine-tuning, big embedding tables); the lines above stay the definition, and the
fused kernel agrees with them to rounding (tests/test_optim.py). Both keep the same state (integer step
counts, the two moments), so either can take over from the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import torch
from torch import nn


class AdamW(torch.optim.Optimizer):
    """AdamW with decoupled weight decay and bias correction.

    Args:
        params: parameters or parameter groups (dicts with ``params`` and any of the options below).
        lr: learning rate.
        betas: decay rates (β₁, β₂) of the moment estimates.
        eps: added to the denominator for numerical stability.
        weight_decay: decoupled decay λ (applied as θ·(1 − lr·λ)).
        amsgrad: use the running maximum of the second moment (Reddi et al., 2018).
        fused: run each group's update as one fused kernel (same formula, see the module docstring).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
        fused: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(
                f"invalid AdamW settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)
        self.fused = fused

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            lr, eps, amsgrad = group["lr"], group["eps"], group["amsgrad"]
            grads = [p.grad for p in params]
            states = [self._state_of(p, amsgrad) for p in params]
            for s in states:
                s["step"] += 1
            if self.fused:
                self._fused_step(group, params, grads, states)
                continue
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]

            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            if amsgrad:
                max_sqs = [s["max_exp_avg_sq"] for s in states]
                torch._foreach_maximum_(max_sqs, exp_avg_sqs)
                exp_avg_sqs = max_sqs

            # Bias corrections per tensor (steps differ only if some tensors skipped a step without grad).
            step_sizes = [-lr / (1 - beta1 ** s["step"]) for s in states]
            bias2_sqrt = [math.sqrt(1 - beta2 ** s["step"]) for s in states]
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
        return loss

    @staticmethod
    def _fused_step(group: dict, params: list, grads: list, states: list[dict]) -> None:
        """The update of :meth:`step` for one group as ``torch._fused_adamw_`` calls, one per device and
        dtype (the kernel takes tensors of one kind). Steps are already counted; the kernel reads them
        as tensors, which are built here so that the state keeps plain integers."""
        amsgrad = group["amsgrad"]
        kinds: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            kinds.setdefault((p.device, p.dtype), []).append(i)
        beta1, beta2 = group["betas"]
        for (device, _), index in kinds.items():
            counts = {states[i]["step"] for i in index}  # (one, unless some tensors skipped steps)
            step_of = {n: torch.tensor(float(n), device=device) for n in counts}
            steps = [step_of[states[i]["step"]] for i in index]
            torch._fused_adamw_(
                [params[i] for i in index],
                [grads[i] for i in index],
                [states[i]["exp_avg"] for i in index],
                [states[i]["exp_avg_sq"] for i in index],
                [states[i]["max_exp_avg_sq"] for i in index] if amsgrad else [],
                steps,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                amsgrad=amsgrad,
                maximize=False,
            )

    def _state_of(self, p: torch.Tensor, amsgrad: bool) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    lr_overrides: dict[str, float] | None = None,
) -> list[dict]:
    """Trainable parameters split into groups by (learning rate, weight decay).

    Biases and LayerNorm parameters get no weight decay. ``lr_overrides`` maps a regular expression,
    searched in the parameter name, to its learning rate (first match wins), e.g.
    ``{r"^head\\.": 1e-3, r"lora_B": 2e-3}`` for a faster classifier head or LoRA+ style B matrices.
    """
    no_decay = {
        id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)
    }
    patterns = [(re.compile(k), v) for k, v in (lr_overrides or {}).items()]
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = 0.0 if name.endswith("bias") or id(p) in no_decay else weight_decay
        group_lr = next((v for pattern, v in patterns if pattern.search(name)), lr)
        group = groups.setdefault(
            (group_lr, decay), {"params": [], "names": [], "lr": group_lr, "weight_decay": decay}
        )
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())
