"""Fine-tuning methods: which parameters train, and which adapter layers are added."""

from ftcore.methods.apply import adapter_state, apply_method, load_adapter, save_adapter, trainable_report

__all__ = ["adapter_state", "apply_method", "load_adapter", "save_adapter", "trainable_report"]
