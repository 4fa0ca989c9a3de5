"""Fine-tuning methods on a tiny model: what trains, merge invariance, padding invariance, adapter round trips."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import batch, make, randomize_adapters, trainable

from ftcore.config import MethodConfig
from ftcore.errors import CheckpointError, ConfigError
from ftcore.methods import adapter_state, apply_method, load_adapter, save_adapter, trainable_report
from ftcore.methods.lora import LoRALinear, merge_lora
from ftcore.model import BertModel, SequenceClassifier
from ftcore.optim import AdamW

ALL_TARGETS = ["query", "key", "value", "attention_output", "intermediate", "output"]


def test_full_freeze_and_bitfit_train_the_right_parameters(tiny_config):
    model, _ = make(tiny_config, name="full")
    assert all(p.requires_grad for p in model.parameters())
    model, _ = make(tiny_config, name="freeze", freeze_layers=1)
    names = trainable(model)
    assert not any(n.startswith(("encoder.embeddings.", "encoder.layers.0.")) for n in names)
    assert "encoder.layers.1.attention.query.weight" in names and "head.classifier.weight" in names
    model, _ = make(tiny_config, name="bitfit")
    assert all(n.endswith(".bias") or n.startswith("head.") for n in trainable(model))
    assert "encoder.layers.0.ffn.up.bias" in trainable(model)


@pytest.mark.parametrize("name", ["lora", "dora"])
def test_lora_targets_and_trainable_set(tiny_config, name):
    model, _ = make(tiny_config, name=name, targets=ALL_TARGETS, r=4, train_pooler=True)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 6 * tiny_config.num_hidden_layers
    names = trainable(model)
    adapters = {n for n in names if not n.startswith(("head.", "encoder.pooler."))}
    suffixes = {"lora_A", "lora_B"} | ({"magnitude"} if name == "dora" else set())
    assert {n.rsplit(".", 1)[1] for n in adapters} == suffixes
    assert "encoder.pooler.dense.weight" in names  # train_pooler=True with pooling=pooler
    frozen_pooler, _ = make(tiny_config, name=name, targets=["query"])
    assert not any(n.startswith("encoder.pooler.") for n in trainable(frozen_pooler))
    assert "trainable parameters:" in trainable_report(model)


@pytest.mark.parametrize(
    "name, init", [("lora", "default"), ("lora", "gaussian"), ("lora", "pissa"), ("dora", "default")]
)
def test_adapters_start_as_the_base_model(tiny_config, name, init):
    base = SequenceClassifier(BertModel(tiny_config), num_labels=3, pooling="pooler").eval()
    ids, mask = batch()
    with torch.no_grad():
        before = base(ids, mask)
        apply_method(base, MethodConfig(name=name, init=init, targets=ALL_TARGETS, r=4)).eval()
        after = base(ids, mask)
    assert (before - after).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name, rslora", [("lora", False), ("lora", True), ("dora", False)])
def test_merge_unmerge_and_merge_away_keep_outputs(tiny_config, name, rslora):
    model, _ = make(tiny_config, name=name, targets=ALL_TARGETS, r=4, use_rslora=rslora)
    randomize_adapters(model)
    model.eval()
    ids, mask = batch()
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    with torch.no_grad():
        ref = model(ids, mask)
        base_weight = layers[0].base.weight.clone()
        for m in layers:
            m.merge()
        merged = model(ids, mask)
        for m in layers:
            m.unmerge()
        unmerged = model(ids, mask)
        assert torch.equal(layers[0].base.weight, base_weight)
        assert merge_lora(model) == len(layers)
        plain = model(ids, mask)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    for out in (merged, unmerged, plain):
        assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "method",
    [
        {"name": "lora", "targets": ALL_TARGETS, "dropout": 0.0},
        {"name": "dora", "targets": ["query", "value"], "dropout": 0.0},
        {"name": "bitfit"},
        {"name": "freeze", "freeze_layers": 1},
        {"name": "prefix", "num_virtual_tokens": 5, "prefix_projection": True, "prefix_hidden": 16},
        {"name": "prompt", "num_virtual_tokens": 4},
    ],
)
def test_only_intended_parameters_change_during_training(tiny_config, method):
    model, _ = make(tiny_config, pooling="mean", **method)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = trainable(model)
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2, 1])
    for _ in range(3):
        opt.zero_grad()
        model.loss(model(ids, mask), labels).backward()
        opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in names), n


@pytest.mark.parametrize(
    "method",
    [
        {"name": "prefix", "num_virtual_tokens": 5},
        {"name": "prefix", "num_virtual_tokens": 3, "prefix_projection": True, "prefix_hidden": 16},
        {"name": "prompt", "num_virtual_tokens": 4},
        {"name": "prompt", "num_virtual_tokens": 4, "prompt_position": "before"},
    ],
)
@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_prefix_and_prompt_padded_batches_equal_unpadded_singles(tiny_config, method, pooling):
    model, _ = make(tiny_config, pooling=pooling, **method)
    randomize_adapters(model)
    model.eval()
    ids, mask = batch()
    with torch.no_grad():
        batched = model(ids, mask)
        for row in range(len(ids)):
            n = int(mask[row].sum())
            alone = model(ids[row : row + 1, :n])
            assert (alone[0] - batched[row]).abs().max().item() <= 1e-5


def test_prefix_fold_keeps_outputs_and_drops_the_mlp(tiny_config):
    model, _ = make(
        tiny_config, name="prefix", num_virtual_tokens=4, prefix_projection=True, prefix_hidden=16
    )
    model.eval()
    ids, mask = batch()
    with torch.no_grad():
        ref = model(ids, mask)
        model.encoder.prefix.fold()
        folded = model(ids, mask)
    assert model.encoder.prefix.mlp is None
    assert model.encoder.prefix.embedding.weight.shape == (
        4,
        tiny_config.num_hidden_layers * 2 * tiny_config.hidden_size,
    )
    assert (ref - folded).abs().max().item() <= 1e-6


def test_prompt_from_text_without_token_ids_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="prompt_init_text has no tokens"):
        make(tiny_config, name="prompt", num_virtual_tokens=5, prompt_init="text", prompt_init_text="x")


def test_prompt_text_init_and_position_budget(tiny_config):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=2)
    cfg = MethodConfig(name="prompt", num_virtual_tokens=5, prompt_init="text", prompt_init_text="good")
    apply_method(model, cfg, prompt_init_ids=[7, 8])
    expected = model.encoder.embeddings.word.weight[[7, 8, 7, 8, 7]]
    assert torch.equal(model.encoder.prompt.embeddings.detach(), expected.detach())
    with pytest.raises(ConfigError, match="exceeds the model's 64 positions"):
        apply_method(
            SequenceClassifier(BertModel(tiny_config), num_labels=2),
            MethodConfig(name="prompt"),
            max_length=60,
        )


@pytest.mark.parametrize(
    "method",
    [
        {"name": "lora", "targets": ["query", "value", "intermediate"], "r": 4},
        {"name": "dora", "r": 2},
        {"name": "prefix", "num_virtual_tokens": 3},
        {"name": "prompt", "num_virtual_tokens": 3},
        {"name": "bitfit"},
    ],
)
def test_adapter_save_load_round_trip_reproduces_outputs(tiny_model_dir, tmp_path, method):
    cfg = MethodConfig(**method)
    model = SequenceClassifier.from_pretrained(tiny_model_dir, num_labels=3, pooling="pooler")
    model.encoder.add_tokens(2)
    apply_method(model, cfg)
    randomize_adapters(model)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.1)
    model.eval()
    save_adapter(model, tmp_path, cfg, tiny_model_dir)
    saved = adapter_state(model)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter.json", "adapter.safetensors"}
    assert "encoder.embeddings.added.weight" in saved and not any("word.weight" in k for k in saved)
    loaded = load_adapter(tmp_path).eval()
    ids = torch.tensor([[2, 5, 27, 28, 9, 3], [2, 6, 7, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), loaded(ids, mask))


@pytest.mark.parametrize("name", ["full", "freeze", "bitfit", "lora", "dora", "prefix", "prompt"])
def test_bigram_embeddings_train_under_every_method_and_travel_with_the_adapter(
    tiny_model_dir, tmp_path, name
):
    cfg = MethodConfig(name=name, r=2, num_virtual_tokens=2, freeze_layers=1)
    model = SequenceClassifier.from_pretrained(tiny_model_dir, num_labels=2, pooling="mean")
    model.encoder.add_bigrams(torch.tensor([5 * 2**32 + 6, 6 * 2**32 + 7, 9 * 2**32 + 5]), dim=3)
    apply_method(model, cfg)
    assert {n for n in trainable(model) if "bigrams" in n} == {
        "encoder.embeddings.bigrams.table.weight",
        "encoder.embeddings.bigrams.project.weight",
    }
    saved = adapter_state(model)
    assert "encoder.embeddings.bigrams.keys" in saved and "encoder.embeddings.bigrams.table.weight" in saved
    if name in ("full", "freeze"):
        return  # (the whole model is the checkpoint)
    randomize_adapters(model)
    with torch.no_grad():
        model.encoder.embeddings.bigrams.project.weight.normal_()
    model.eval()
    save_adapter(model, tmp_path, cfg, tiny_model_dir)
    loaded = load_adapter(tmp_path).eval()
    ids = torch.tensor([[2, 5, 6, 7, 9, 5, 3], [2, 6, 7, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), loaded(ids, mask))
        loaded.encoder.embeddings.bigrams = None
        assert not torch.allclose(model(ids, mask), loaded(ids, mask))
    meta = json.loads((tmp_path / "adapter.json").read_text())
    assert meta["bigrams"] == [3, 3]
    (tmp_path / "adapter.json").write_text(json.dumps({**meta, "bigrams": [3]}))
    with pytest.raises(CheckpointError, match="not a readable ftcore adapter"):
        load_adapter(tmp_path)


def test_frozen_added_tokens_still_travel_with_the_adapter(tiny_model_dir, tmp_path):
    cfg = MethodConfig(name="lora", r=2, train_added_tokens=False)
    model = SequenceClassifier.from_pretrained(tiny_model_dir, num_labels=2, pooling="cls")
    model.encoder.add_tokens(3, init="random")
    apply_method(model, cfg)
    assert not model.encoder.embeddings.added.weight.requires_grad
    assert "encoder.embeddings.added.weight" in adapter_state(model)
    save_adapter(model, tmp_path, cfg, tiny_model_dir)
    loaded = load_adapter(tmp_path)
    assert torch.equal(loaded.encoder.embeddings.added.weight, model.encoder.embeddings.added.weight)
