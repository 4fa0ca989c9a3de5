"""Optimizer and learning-rate schedules."""

from ftcore.optim.adamw import AdamW, param_groups
from ftcore.optim.schedules import Schedule

__all__ = ["AdamW", "Schedule", "param_groups"]
