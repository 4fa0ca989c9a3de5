"""Files of a trained model: adapters (just the trained tensors, over a base model) and standalone
ftcore classifier checkpoints (everything, adapters merged).

    adapter/      adapter.json (method, head, base-model path, added tokens, bigram table shape)
                  + adapter.safetensors
    classifier/   ftcore_model.json (encoder config, head, prefix/prompt shapes) + model.safetensors
                  (a token classifier with a CRF also keeps the tag map, ``labels.json``, whose names
                  and scheme give the CRF's constraints)

Both are written atomically, the JSON last, so its presence marks a complete directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ftcore.config import MethodConfig
from ftcore.errors import CheckpointError
from ftcore.files import save_json, save_safetensors
from ftcore.methods.apply import adapter_state, apply_method
from ftcore.methods.lora import LoRALinear
from ftcore.methods.prefix import PrefixEncoder
from ftcore.methods.prompt import SoftPrompt
from ftcore.model.bert import BertConfig, BertModel, BigramEmbedding
from ftcore.model.checkpoint_io import WEIGHTS, load_state_strict
from ftcore.model.crf import crf_for_tags
from ftcore.model.heads import SequenceClassifier, TokenClassifier

FTCORE_META = "ftcore_model.json"


ADAPTER_META, ADAPTER_WEIGHTS = "adapter.json", "adapter.safetensors"


def save_adapter(
    model: SequenceClassifier, path: str | Path, method: MethodConfig, base_model: str | Path
) -> None:
    """Write the trainable tensors and what is needed to rebuild the model around them over ``base_model``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    save_safetensors(adapter_state(model), root / ADAPTER_WEIGHTS)
    meta = {
        "format": "ftcore.adapter/1",
        "base_model": str(base_model),
        "method": dataclasses.asdict(method),
        "head": model.head_config(),
        "added_tokens": model.encoder.num_added_tokens,
        "bigrams": bigram_shape(model.encoder),
    }
    save_json(meta, root / ADAPTER_META)


def load_adapter(path: str | Path, base_model: str | Path | None = None) -> SequenceClassifier:
    """Rebuild a model saved by :func:`save_adapter`: the base (from the file, or ``base_model``) + adapter."""
    root = Path(path)
    try:
        meta = json.loads((root / ADAPTER_META).read_text(encoding="utf-8"))
        method = MethodConfig(
            **{**meta["method"], "prompt_init": "random"}
        )  # the saved prompt replaces any init
        tensors = load_file(root / ADAPTER_WEIGHTS)
        bigrams = saved_bigram_shape(meta)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{root}: not a readable ftcore adapter ({e})") from None
    model = SequenceClassifier.from_pretrained(base_model or meta["base_model"], **meta["head"])
    model.encoder.add_tokens(meta["added_tokens"])
    if bigrams:  # (its bigrams and rows are among the tensors)
        model.encoder.embeddings.bigrams = BigramEmbedding(*bigrams, model.encoder.config.hidden_size)
    apply_method(model, method)
    expected = adapter_state(model)
    wrong = sorted(set(expected) ^ set(tensors)) + [
        k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape
    ]
    if wrong:
        raise CheckpointError(
            f"{root / ADAPTER_WEIGHTS} does not fit this base model and method: {', '.join(wrong[:5])}"
        )
    model.load_state_dict(tensors, strict=False)
    return model


def bigram_shape(encoder: BertModel) -> list[int] | None:
    """``[bigrams, dim]`` of an encoder's bigram embeddings, for the metadata that rebuilds them."""
    bigrams = encoder.embeddings.bigrams
    return None if bigrams is None else [bigrams.keys.numel(), bigrams.table.embedding_dim]


def saved_bigram_shape(meta: dict) -> tuple[int, int] | None:
    """``(bigrams, dim)`` as :func:`bigram_shape` wrote it into ``meta`` (None: no bigram embeddings);
    ValueError or TypeError if it is not two numbers."""
    if meta.get("bigrams") is None:
        return None
    count, dim = (int(n) for n in meta["bigrams"])
    return count, dim


def save_classifier(model: SequenceClassifier | TokenClassifier, path: str | os.PathLike) -> None:
    """ftcore checkpoint directory: ``ftcore_model.json`` (everything to rebuild) + ``model.safetensors``.

    The model must be plain (LoRA merged, prefix MLP folded); added tokens, bigram embeddings, a folded
    prefix and a soft prompt are kept as they are.
    """
    encoder = model.encoder
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise CheckpointError("merge LoRA layers into the model before saving a standalone checkpoint")
    if encoder.prefix is not None and encoder.prefix.mlp is not None:
        raise CheckpointError("fold the prefix reparameterisation (prefix.fold()) before saving")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), root / WEIGHTS)
    meta = {
        "format": f"ftcore.{type(model).__name__}",
        "version": 1,
        "encoder": encoder.config.to_dict(),
        "added_tokens": encoder.num_added_tokens,
        "bigrams": bigram_shape(encoder),
        "add_pooler": encoder.pooler is not None,
        "prefix_tokens": 0 if encoder.prefix is None else encoder.prefix.length,
        "prompt": None
        if encoder.prompt is None
        else {"tokens": encoder.prompt.length, "position": encoder.prompt.position},
        "head": model.head_config(),
    }
    save_json(meta, root / FTCORE_META)  # written last: its presence marks a complete checkpoint


def load_classifier(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32
) -> SequenceClassifier | TokenClassifier:
    """Read a directory written by :func:`save_classifier`."""
    root = Path(path)
    meta_path = root / FTCORE_META
    if not meta_path.is_file():
        raise CheckpointError(f"{root}: not an ftcore checkpoint; expected {FTCORE_META} and {WEIGHTS}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        added = int(meta.get("added_tokens", 0))
        cfg = BertConfig.from_dict(
            {**meta["encoder"], "vocab_size": meta["encoder"]["vocab_size"] - added}, str(meta_path)
        )
        add_pooler, head = bool(meta["add_pooler"]), dict(meta["head"])
        prefix_tokens, prompt = int(meta.get("prefix_tokens", 0)), meta.get("prompt")
        bigrams = saved_bigram_shape(meta)
        tagger = meta.get("format") == "ftcore.TokenClassifier"
        crf = None
        if tagger and head.pop("crf", False):
            tags = json.loads((root / "labels.json").read_text(encoding="utf-8"))
            crf = crf_for_tags(list(tags["names"]), tags["scheme"])
    except OSError as e:
        raise CheckpointError(f"{root}: a token classifier with a CRF needs its labels.json ({e})") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: malformed checkpoint metadata ({e})") from None
    try:
        state = load_file(root / WEIGHTS)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{root / WEIGHTS}: cannot read weights ({e})") from None
    with torch.device("meta"):
        encoder = BertModel(cfg, add_pooler=add_pooler)
        encoder.add_tokens(added)
        H, L, nh = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads
        if bigrams:
            encoder.embeddings.bigrams = BigramEmbedding(*bigrams, H)
        if prefix_tokens:
            encoder.prefix = PrefixEncoder(L, H, nh, prefix_tokens)
        if prompt:
            encoder.prompt = SoftPrompt(prompt["tokens"], H, prompt["position"])
        if tagger:
            model = TokenClassifier(encoder, head["num_labels"], head["classifier_dropout"], crf)
        else:
            model = SequenceClassifier(encoder, **head)
    load_state_strict(model, state, str(root / WEIGHTS), dtype)
    return model
