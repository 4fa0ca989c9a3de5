"""Fine-tuning methods: which parameters train, and which adapter layers are added."""

from ftcore.methods.apply import apply_method, trainable_report

__all__ = ["apply_method", "trainable_report"]
