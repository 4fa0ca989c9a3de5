"""Fine-tuning methods: which parameters train, and which adapter layers are added."""

from ftcore.methods.adapters import load_adapter, load_classifier, save_adapter, save_classifier
from ftcore.methods.apply import adapter_state, apply_method, trainable_report

__all__ = [
    "adapter_state",
    "apply_method",
    "load_adapter",
    "load_classifier",
    "save_adapter",
    "save_classifier",
    "trainable_report",
]
