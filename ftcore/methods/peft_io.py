"""Write LoRA / DoRA / prefix-tuning adapters in peft's format (``PeftModel.from_pretrained`` reads them).

    adapter_config.json        peft_type, task_type SEQ_CLS, and the method's settings
    adapter_model.safetensors  LoRA: base_model.model.bert.encoder.layer.{i}.….lora_A.weight / lora_B.weight
                               (DoRA: ….lora_magnitude_vector), base_model.model.classifier.{weight,bias}
                               prefix: prompt_embeddings (P, layers·2·hidden), base_model.classifier.*

The adapter applies over ``BertForSequenceClassification.from_pretrained(<base>, num_labels=...)``, so the
model must pool with BERT's pooler. When the run added tokens to the vocabulary, the base itself changed:
the export then carries it in ``base/`` (an HF-format BERT with the grown embedding table).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from ftcore.config import MethodConfig
from ftcore.errors import CheckpointError
from ftcore.files import save_json, save_safetensors
from ftcore.methods.lora import LoRALinear
from ftcore.model.bert import BertModel
from ftcore.model.checkpoint_io import ftcore_to_hf_name, save_bert
from ftcore.model.heads import SequenceClassifier

# Our LoRA target names -> regular expressions over HF module names (peft full-matches a string).
HF_TARGETS = {
    "query": r"attention\.self\.query",
    "key": r"attention\.self\.key",
    "value": r"attention\.self\.value",
    "attention_output": r"attention\.output\.dense",
    "intermediate": r"intermediate\.dense",
    "output": r"layer\.\d+\.output\.dense",
    "pooler": r"pooler\.dense",
}


def _hf_module(ours: str) -> str:
    """``encoder.layers.0.attention.query`` -> ``bert.encoder.layer.0.attention.self.query``."""
    hf = ftcore_to_hf_name(ours.removeprefix("encoder.") + ".weight")
    if hf is None:
        raise CheckpointError(f"no HF name for module {ours!r}")
    return "bert." + hf.removesuffix(".weight")


def export_peft(
    model: SequenceClassifier,
    method: MethodConfig,
    base_model: str | os.PathLike,
    path: str | os.PathLike,
    final_path: str | os.PathLike | None = None,
) -> None:
    """Write ``model``'s adapter as a peft SEQ_CLS adapter directory at ``path``.

    ``final_path`` is where the directory will end up (when written elsewhere first and moved): the
    config points at ``<final_path>/base`` when the export carries its own base.
    """
    if method.name not in ("lora", "dora", "prefix"):
        raise CheckpointError(
            f"peft export covers lora, dora and prefix; method {method.name!r}: use format=hf or ftcore"
        )
    if model.pooling != "pooler":
        raise CheckpointError(
            f"peft adapters run on BertForSequenceClassification, which pools with BERT's pooler; this model uses "
            f"model.pooling={model.pooling!r}: use format=ftcore"
        )
    if method.name in ("lora", "dora") and method.init == "pissa":
        raise CheckpointError("a PiSSA adapter changed its base weights; export it with format=hf or ftcore")
    if model.encoder.embeddings.bigrams is not None:
        raise CheckpointError("peft has no place for bigram embeddings (model.bigrams); use format=ftcore")
    encoder = model.encoder
    trained_pooler = any(p.requires_grad for p in encoder.pooler.parameters())
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)

    base = str(base_model)
    if encoder.num_added_tokens:  # the grown vocabulary is part of the base peft needs
        save_bert(_base_encoder(encoder), root / "base")
        base = str((Path(final_path or root) / "base").resolve())

    classifier = {f"classifier.{k}": v for k, v in model.head.classifier.state_dict().items()}
    if trained_pooler:
        classifier.update({f"bert.pooler.dense.{k}": v for k, v in encoder.pooler.dense.state_dict().items()})
    modules_to_save = ["classifier"] + (["pooler"] if trained_pooler else [])
    if method.name == "prefix":
        prefix = encoder.prefix
        tensors = {
            "prompt_embeddings": prefix.table().detach(),
            **{f"base_model.{k}": v for k, v in classifier.items()},
        }
        config = {
            "peft_type": "PREFIX_TUNING",
            "task_type": "SEQ_CLS",
            "num_virtual_tokens": prefix.length,
            "token_dim": encoder.config.hidden_size,
            "num_layers": encoder.config.num_hidden_layers,
            "num_attention_heads": encoder.config.num_attention_heads,
            "num_transformer_submodules": 1,
            "prefix_projection": False,  # the table is exported already folded
            "encoder_hidden_size": encoder.config.hidden_size,
        }
    else:
        tensors = {f"base_model.model.{k}": v for k, v in classifier.items()}
        for name, module in encoder.named_modules():
            if isinstance(module, LoRALinear):
                hf = "base_model.model." + _hf_module(f"encoder.{name}")
                tensors[f"{hf}.lora_A.weight"] = module.lora_A.detach()
                tensors[f"{hf}.lora_B.weight"] = module.lora_B.detach()
                if module.magnitude is not None:
                    tensors[f"{hf}.lora_magnitude_vector"] = module.magnitude.detach()
        config = {
            "peft_type": "LORA",
            "task_type": "SEQ_CLS",
            "r": method.r,
            "lora_alpha": method.alpha,
            "lora_dropout": method.dropout,
            "target_modules": r".*\.(" + "|".join(HF_TARGETS[t] for t in method.targets) + ")",
            "use_rslora": method.use_rslora,
            "use_dora": method.name == "dora",
            "init_lora_weights": True,
            "bias": "none",
        }
    config.update(base_model_name_or_path=base, modules_to_save=modules_to_save, inference_mode=True)
    save_safetensors(tensors, root / "adapter_model.safetensors", metadata={"format": "pt"})
    save_json(config, root / "adapter_config.json")


def _base_encoder(encoder: BertModel) -> BertModel:
    """A plain copy of the frozen base under an adapted encoder (added-token rows included)."""
    cfg = dataclasses.replace(encoder.config, vocab_size=encoder.config.vocab_size - encoder.num_added_tokens)
    plain = BertModel(cfg, add_pooler=encoder.pooler is not None)
    plain.add_tokens(encoder.num_added_tokens)
    state = {
        re.sub(r"\.base\.(weight|bias)$", r".\1", k): v
        for k, v in encoder.state_dict().items()
        if not re.search(r"lora_|magnitude|^prefix\.|^prompt\.", k)
    }
    plain.load_state_dict(state, strict=True)
    return plain
