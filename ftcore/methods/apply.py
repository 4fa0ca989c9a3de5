"""One entry point for every fine-tuning method: ``apply_method(model, cfg)``.

    full     everything trains
    freeze   embeddings and the bottom ``freeze_layers`` encoder layers are frozen
    bitfit   only bias terms train (Ben Zaken et al., 2022)
    lora     low-rank updates on the ``targets`` linear layers (lora.py); ``dora`` adds magnitudes
    prefix   learned keys/values in every layer (prefix.py)
    prompt   learned input embeddings (prompt.py)

The head always trains (a classifier is new for every task; a masked-LM head's decoder is the word
embedding table, which trains as the method says); so do tokens added by vocabulary extension and
bigram embeddings (they start untrained) and, under frozen-base methods, BERT's pooler when the model
pools with it, unless the config says otherwise.

Adapters are generic: whatever ``requires_grad`` is what an adapter checkpoint holds
(:func:`adapter_state`), and loading it onto a freshly prepared base model restores the outputs.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ftcore.config import MethodConfig
from ftcore.errors import ConfigError
from ftcore.methods.lora import LoRALinear, inject_lora
from ftcore.methods.prefix import PrefixEncoder
from ftcore.methods.prompt import SoftPrompt
from ftcore.model.heads import MaskedLM, SequenceClassifier


def apply_method(
    model: SequenceClassifier | MaskedLM,
    cfg: MethodConfig,
    prompt_init_ids: list[int] | None = None,
    max_length: int | None = None,
    max_length_key: str = "data.max_length",
) -> SequenceClassifier | MaskedLM:
    """Freeze / unfreeze ``model`` and add adapter layers in place for ``cfg.name``; returns the model.

    ``prompt_init_ids`` are the token ids of ``cfg.prompt_init_text`` (prompt tuning from text);
    ``max_length`` (the config key ``max_length_key``) lets the check that the longest input, virtual tokens
    included, still fits the position table name the right key.
    """
    encoder = model.encoder
    bert = encoder.config
    cfg.validate(num_layers=bert.num_hidden_layers)
    frozen_base = cfg.name not in ("full", "freeze")
    model.requires_grad_(not frozen_base)

    if cfg.name == "freeze":
        encoder.embeddings.requires_grad_(False)
        for layer in encoder.layers[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    elif cfg.name == "bitfit":
        for name, p in encoder.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
    elif cfg.name in ("lora", "dora"):
        if "pooler" in cfg.targets and encoder.pooler is None:
            raise ConfigError(
                "method.targets includes 'pooler' but the model does not pool with it (model.pooling)"
            )
        inject_lora(
            encoder, list(cfg.targets), r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, init=cfg.init,
            use_rslora=cfg.use_rslora, dora=cfg.name == "dora",
        )  # fmt: skip
    elif cfg.name == "prefix":
        encoder.prefix = PrefixEncoder(
            bert.num_hidden_layers, bert.hidden_size, bert.num_attention_heads, cfg.num_virtual_tokens,
            projection=cfg.prefix_projection, projection_hidden=cfg.prefix_hidden,
        ).to(encoder.embeddings.word.weight.device)  # fmt: skip
    virtual = (
        cfg.num_virtual_tokens if cfg.name in ("prefix", "prompt") else 0
    )  # they shift real tokens right
    if max_length is not None and max_length + virtual > bert.max_position_embeddings:
        extra = f" + method.num_virtual_tokens={virtual}" if virtual else ""
        raise ConfigError(
            f"{max_length_key}={max_length}{extra} exceeds the model's {bert.max_position_embeddings} positions; "
            "shorten it"
        )
    if cfg.name == "prompt":
        init = None
        if cfg.prompt_init == "text":
            if not prompt_init_ids:
                raise ConfigError("method.prompt_init_text has no tokens; give a non-empty text")
            repeats = -(-cfg.num_virtual_tokens // len(prompt_init_ids))
            ids = torch.tensor((prompt_init_ids * repeats)[: cfg.num_virtual_tokens])
            init = encoder.embeddings.lookup(ids[None])[0].detach()
        encoder.prompt = SoftPrompt(cfg.num_virtual_tokens, bert.hidden_size, cfg.prompt_position, init)

    model.head.requires_grad_(True)
    lora_pooler = encoder.pooler is not None and isinstance(encoder.pooler.dense, LoRALinear)
    if frozen_base and cfg.train_pooler and getattr(model, "pooling", None) == "pooler" and not lora_pooler:
        encoder.pooler.requires_grad_(True)  # (a LoRA-wrapped pooler trains through its adapter instead)
    if encoder.embeddings.added is not None and cfg.train_added_tokens:
        encoder.embeddings.added.requires_grad_(True)
    if encoder.embeddings.bigrams is not None:
        encoder.embeddings.bigrams.requires_grad_(True)
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Everything an adapter checkpoint needs over its base: the trainable tensors, plus the rows of
    tokens added to the vocabulary and the bigram embeddings with their bigrams (none of them is in the
    base file, trained or not)."""
    state = {
        name: p.detach()
        for name, p in model.named_parameters()
        if p.requires_grad or name.endswith("embeddings.added.weight") or ".bigrams." in name
    }
    state.update((name, b) for name, b in model.named_buffers() if name.endswith("embeddings.bigrams.keys"))
    return state


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
