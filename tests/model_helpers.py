"""Small builders shared by the model and method tests: a tiny classifier with a method applied, a padded
batch, adapters moved off their (zero) initialisation."""

from __future__ import annotations

import torch

from ftcore.config import MethodConfig
from ftcore.methods import apply_method
from ftcore.model import BertModel, SequenceClassifier


def make(tiny_config, pooling="pooler", **method):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=3, pooling=pooling)
    return apply_method(model, MethodConfig(**method)), model


def batch():
    ids = torch.randint(5, 99, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    return ids, mask


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def randomize_adapters(model):
    for name, p in model.named_parameters():
        if "lora_" in name or "magnitude" in name or "prefix" in name or "prompt" in name:
            p.add_(torch.randn_like(p) * 0.05)
