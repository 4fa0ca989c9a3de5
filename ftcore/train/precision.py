"""Device and numeric precision: where the model runs, in which dtype, and fp16 loss scaling.

fp32   plain float32
bf16   autocast to bfloat16 (CUDA with bf16 support; CPUs with AVX-512 BF16 or AMX run it fast)
fp16   autocast to float16 on CUDA, with dynamic loss scaling so small gradients do not underflow
auto   bf16 where it is fast (see above), else fp32
"""

from __future__ import annotations

import contextlib
import functools

import torch

from ftcore.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto"
        )
    return torch.device(name)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX, where bf16 matmuls beat fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for this device; refuse combinations that cannot work."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return name


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


class LossScaler:
    """Dynamic loss scaling for fp16 training.

    The loss is multiplied by ``scale`` before backward so small gradients survive in fp16. Before the
    optimizer step the gradients are divided by ``scale`` again; if any is inf/NaN the step is skipped
    and the scale halves. After ``growth_interval`` clean steps in a row the scale doubles.
    With ``enabled=False`` (fp32, bf16) every method is a no-op and no step is ever skipped.
    """

    def __init__(
        self,
        enabled: bool,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        self.enabled = enabled
        self.scale = init_scale
        self.growth_factor, self.backoff_factor, self.growth_interval = (
            growth_factor,
            backoff_factor,
            growth_interval,
        )
        self.clean_steps = 0
        self.skipped_steps = 0

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    def unscale_(self, params: list[torch.Tensor]) -> bool:
        """Divide gradients by the scale in place; return True if all of them are finite."""
        grads = [p.grad for p in params if p.grad is not None]
        if not self.enabled or not grads:
            return True
        found_inf = torch.zeros(1, device=grads[0].device)
        inv_scale = torch.full((1,), 1.0 / self.scale, device=grads[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
        return not bool(found_inf.item())

    def update(self, finite: bool) -> None:
        """Adjust the scale after a step attempt."""
        if not self.enabled:
            return
        if finite:
            self.clean_steps += 1
            if self.clean_steps == self.growth_interval:
                self.scale *= self.growth_factor
                self.clean_steps = 0
        else:
            self.scale *= self.backoff_factor
            self.clean_steps = 0
            self.skipped_steps += 1

    def state_dict(self) -> dict:
        return {"scale": self.scale, "clean_steps": self.clean_steps, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.clean_steps, self.skipped_steps = (
            state["scale"],
            state["clean_steps"],
            state["skipped_steps"],
        )
