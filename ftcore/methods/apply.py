"""One entry point for every fine-tuning method: ``apply_method(model, cfg)``.

    full     everything trains
    freeze   embeddings and the bottom ``freeze_layers`` encoder layers are frozen
    bitfit   only bias terms train (Ben Zaken et al., 2022)

The classifier head always trains: it is new for every task.
"""

from __future__ import annotations

from collections import defaultdict

from torch import nn

from ftcore.config import MethodConfig
from ftcore.errors import ConfigError
from ftcore.model.heads import SequenceClassifier


def apply_method(model: SequenceClassifier, cfg: MethodConfig) -> SequenceClassifier:
    """Freeze / unfreeze ``model`` in place for ``cfg.name``; returns the same model."""
    cfg.validate(num_layers=len(model.encoder.layers))
    if cfg.name == "full":
        model.requires_grad_(True)
    elif cfg.name == "freeze":
        model.requires_grad_(True)
        model.encoder.embeddings.requires_grad_(False)
        for layer in model.encoder.layers[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    elif cfg.name == "bitfit":
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
    else:
        raise ConfigError(f"method.name={cfg.name!r} is not available in this build")
    model.head.requires_grad_(True)
    return model


def trainable_report(model: nn.Module) -> str:
    """Trainable parameters: total, share of all parameters, and a breakdown by module type."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_type: dict[str, int] = defaultdict(int)
    for module in model.modules():
        count = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
        if count:
            by_type[type(module).__name__] += count
    parts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(by_type.items(), key=lambda kv: -kv[1]))
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%): {parts}"
