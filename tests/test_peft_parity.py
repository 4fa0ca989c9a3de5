"""Our LoRA / rsLoRA / DoRA / prefix tuning on the real MiniLM give peft's logits, through exported adapters."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from ftcore.config import MethodConfig
from ftcore.errors import CheckpointError
from ftcore.methods import apply_method
from ftcore.methods.peft_io import export_peft
from ftcore.model import SequenceClassifier

peft = pytest.importorskip("peft")

ALL = ["query", "key", "value", "attention_output", "intermediate", "output"]


def padded_batch(minilm_dir):
    tok = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    enc = tok(
        ["a wonderful little phone", "the battery died after two days, awful"],
        ["yes", "never again"],
        padding=True,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


@torch.no_grad()
def perturb(model):
    """Adapters start as the identity; move every trainable tensor so the comparison means something."""
    gen = torch.Generator().manual_seed(7)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def ours_and_peft(minilm_dir, tmp_path, method: MethodConfig, num_labels=3):
    ours = SequenceClassifier.from_pretrained(minilm_dir, num_labels=num_labels, pooling="pooler")
    apply_method(ours, method)
    perturb(ours)
    if ours.encoder.prefix is not None:
        ours.encoder.prefix.fold()
    ours.eval()
    export_peft(ours, method, minilm_dir, tmp_path)
    base = transformers.BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=num_labels)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    return ours, theirs


@pytest.mark.parametrize(
    "method",
    [
        MethodConfig(name="lora", r=4, alpha=8, targets=["query", "value"]),
        MethodConfig(name="lora", r=8, alpha=16, targets=ALL, use_rslora=True),
        MethodConfig(name="lora", r=2, alpha=32, targets=["key", "attention_output", "output"]),
        MethodConfig(name="dora", r=4, alpha=8, targets=["query", "value", "intermediate"]),
        MethodConfig(name="prefix", num_virtual_tokens=5),
        MethodConfig(name="prefix", num_virtual_tokens=4, prefix_projection=True, prefix_hidden=64),
    ],
    ids=["lora", "rslora-all", "lora-kao", "dora", "prefix", "prefix-mlp"],
)
def test_logits_equal_peft(minilm_dir, tmp_path, method):
    ours, theirs = ours_and_peft(minilm_dir, tmp_path, method)
    ids, mask, types = padded_batch(minilm_dir)
    with torch.no_grad():
        mine = ours(ids, mask, types)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert (mine - ref).abs().max().item() <= 1e-5
    # every LoRA layer we adapted is one peft adapted, no more, no less
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    if method.name != "prefix":
        wrapped = sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in theirs.modules())
        assert wrapped == len([k for k in keys if k.endswith("lora_A.weight")]) == 6 * len(method.targets)


def test_exported_config_names_the_method(minilm_dir, tmp_path):
    ours_and_peft(minilm_dir, tmp_path, MethodConfig(name="dora", r=4, alpha=8))
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["use_dora"] is True and config["task_type"] == "SEQ_CLS"
    assert config["modules_to_save"] == ["classifier"]


def test_peft_export_refuses_what_peft_cannot_express(minilm_dir, tmp_path):
    mean = apply_method(
        SequenceClassifier.from_pretrained(minilm_dir, num_labels=2, pooling="mean"),
        MethodConfig(name="lora"),
    )
    with pytest.raises(CheckpointError, match="pools with BERT's pooler"):
        export_peft(mean, MethodConfig(name="lora"), minilm_dir, tmp_path)
    cfg = MethodConfig(name="prompt", num_virtual_tokens=3)
    prompt = apply_method(SequenceClassifier.from_pretrained(minilm_dir, num_labels=2, pooling="pooler"), cfg)
    with pytest.raises(CheckpointError, match="peft export covers lora, dora and prefix"):
        export_peft(prompt, cfg, minilm_dir, tmp_path)
    bigrams = SequenceClassifier.from_pretrained(minilm_dir, num_labels=2, pooling="pooler")
    bigrams.encoder.add_bigrams(torch.tensor([2000 * 2**32 + 2001]), dim=4)
    apply_method(bigrams, MethodConfig(name="lora"))
    with pytest.raises(CheckpointError, match="peft has no place for bigram embeddings"):
        export_peft(bigrams, MethodConfig(name="lora"), minilm_dir, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_grown_vocabulary_travels_as_the_base_of_the_adapter(tiny_model_dir, tmp_path):
    method = MethodConfig(name="lora", r=2, alpha=4, targets=["query", "value"])
    ours = SequenceClassifier.from_pretrained(tiny_model_dir, num_labels=2, pooling="pooler")
    ours.encoder.add_tokens(3)
    apply_method(ours, method)
    perturb(ours)
    ours.eval()
    export_peft(ours, method, tiny_model_dir, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((tmp_path / "base").resolve())
    base = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    assert base.config.vocab_size == ours.encoder.config.vocab_size
    theirs = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    ids = torch.tensor([[2, 5, 27, 29, 9, 3], [2, 28, 7, 3, 0, 0]])  # 27..29 are the added tokens
    mask = (ids != 0).long()
    with torch.no_grad():
        assert (
            ours(ids, mask) - theirs(input_ids=ids, attention_mask=mask).logits
        ).abs().max().item() <= 1e-5
