"""The optimizer and schedule of a run, from ``optim.*``."""

from __future__ import annotations

from torch import nn

from ftcore.config import OptimConfig
from ftcore.optim.adamw import AdamW, param_groups
from ftcore.optim.schedules import Schedule, warmup_steps_for


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int) -> tuple[AdamW, Schedule]:
    """AdamW over the trainable parameters of ``model``, and the schedule of its learning rates.

    Parameters are grouped by (learning rate, weight decay): biases and LayerNorm are not decayed,
    ``optim.head_lr`` gives the classifier head its own rate and ``optim.lr_overrides`` any parameter
    whose name matches; ``optim.fused`` picks the fused update. Each group remembers its ``base_lr``;
    :func:`set_learning_rates` scales it.
    """
    overrides = dict(cfg.lr_overrides)
    if cfg.head_lr is not None:
        overrides = {r"^head\.": cfg.head_lr, **overrides}
    groups = param_groups(model, cfg.lr, cfg.weight_decay, overrides)
    optimizer = AdamW(groups, betas=tuple(cfg.betas), eps=cfg.eps, amsgrad=cfg.amsgrad, fused=cfg.fused)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    warmup = warmup_steps_for(total_steps, cfg.warmup_steps, cfg.warmup_ratio)
    return optimizer, Schedule(cfg.schedule, total_steps, warmup)


def set_learning_rates(optimizer: AdamW, schedule: Schedule, step: int) -> None:
    """Every group's rate for optimizer step ``step``: its base rate times the schedule's factor."""
    factor = schedule(step)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
