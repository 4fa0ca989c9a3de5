"""Learning-rate schedules: linear warmup from 0, then linear | cosine | constant.

A schedule is a pure function of the step, so resuming a run needs nothing but the step count:

    warmup   (step < W):  f = step / W
    linear:               f = max(0, (T − step) / (T − W))
    cosine:               f = ½ · (1 + cos(π · (step − W) / (T − W)))
    constant:             f = 1

where T is the total number of optimizer steps; the rate at ``step`` is ``base_lr · f``.
"""

from __future__ import annotations

import math

from ftcore.errors import ConfigError

SCHEDULES = ("linear", "cosine", "constant")


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    """``warmup_steps`` if given, else ``ceil(warmup_ratio · total_steps)``."""
    return warmup_steps if warmup_steps is not None else math.ceil(warmup_ratio * total_steps)


class Schedule:
    """Multiplier of the base learning rate at each optimizer step (``schedule(step)``)."""

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0):
        if kind not in SCHEDULES:
            raise ConfigError(f"optim.schedule={kind!r} is not valid; expected one of {', '.join(SCHEDULES)}")
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ConfigError(f"warmup of {warmup_steps} steps does not fit in {total_steps} training steps")
        self.kind, self.total, self.warmup = kind, total_steps, warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        if self.kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
