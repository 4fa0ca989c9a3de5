"""What every benchmark record carries besides its numbers: the software, the code and the machine.

A speed ratio means something only next to the versions that produced it (a new torch can move either
side), the commit of the code measured, the processor and its vector extensions (bf16 matmuls need
AVX-512 BF16 or AMX), the thread count and each side's malloc setting.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "peft", "numpy", "tokenizers", "safetensors")
# The CPU flags that decide which matmul kernels run.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def dropout_profile(model: nn.Module) -> dict[str, list[float]]:
    """The dropout probabilities a model applies, by place: hidden states (embeddings and layer outputs),
    attention probabilities, the classifier input and adapter inputs. Read from the modules themselves,
    so both implementations are described the same way."""
    profile: dict[str, set[float]] = {}
    adapter_inputs = {  # the dropout modules inside a LoRA layer (ftcore's LoRALinear, peft's LoraLayer)
        id(m) for parent in model.modules() if hasattr(parent, "lora_A") for m in parent.modules()
    }
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout):
            if id(module) in adapter_inputs:
                place = "adapter"
            elif "attention.self" in name:  # transformers keeps attention-probability dropout as a module
                place = "attention"
            elif "embeddings" in name or "layer" in name:
                place = "hidden"
            else:
                place = "classifier"
            profile.setdefault(place, set()).add(module.p)
        elif isinstance(getattr(module, "dropout_p", None), float):  # ftcore's attention
            profile.setdefault("attention", set()).add(module.dropout_p)
    return {place: sorted(ps) for place, ps in sorted(profile.items())}


def append_records(path: Path, records: list[dict]) -> None:
    """Add ``records`` to the JSON list in ``path`` (created if missing)."""
    existing = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(existing + records, indent=1))


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


CODE = ("ftcore", "scripts", "conf", "benchmarks/*.py", "pyproject.toml")  # what a measurement depends on


def git_commit() -> str | None:
    """HEAD of the checkout, with ``-dirty`` when the code measured differs from it (results and docs
    written meanwhile do not count)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE], cwd=ROOT,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.machine())  # fmt: skip
    flags_line = next((line for line in info.splitlines() if line.startswith("flags")), ":")
    present = set(flags_line.split(":", 1)[1].split())
    return model, [f for f in CPU_FLAGS if f in present]


def environment(device: torch.device) -> dict:
    """Versions, commit and machine of a record made on ``device`` in this process."""
    cpu, flags = cpu_model_and_flags()
    return {
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}},
        "git_commit": git_commit(),
        "cpu": cpu,
        "cpu_flags": flags,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


def describe(env: dict) -> str:
    """One line for the report: ``torch 2.13.0, transformers 5.23.0, ...; commit abc1234; CPU (flags), N threads``."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    commit = (env.get("git_commit") or "unknown")[:12] + (
        "-dirty" if str(env.get("git_commit")).endswith("-dirty") else ""
    )
    where = env["gpu"] or f"{env['cpu']} ({' '.join(env['cpu_flags']) or 'no AVX-512/AMX'})"
    return f"{versions}; commit {commit}; {where}, {env['threads']} threads"
