"""Checkpoint I/O: HF-format loading variants, strict errors, round trips and HF export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from ftcore.errors import CheckpointError
from ftcore.methods.adapters import load_classifier, save_classifier
from ftcore.model import BertModel, SequenceClassifier
from ftcore.model.checkpoint_io import export_hf, ftcore_to_hf_name, hf_to_ftcore_name


def tiny_hf(tmp_path, cls=transformers.BertModel, **kwargs):
    """A random HF model saved as safetensors in tmp_path; returns the model."""
    cfg = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, **kwargs,
    )  # fmt: skip
    model = cls(cfg).eval()
    model.save_pretrained(tmp_path)
    return model


def hidden_of(model, ids):
    with torch.no_grad():
        return model(ids)


def ids_batch():
    return torch.randint(1, 99, (2, 9))


def test_name_table_round_trips():
    for hf in [
        "embeddings.LayerNorm.weight",
        "encoder.layer.5.attention.self.query.bias",
        "encoder.layer.11.output.dense.weight",
    ]:
        assert ftcore_to_hf_name(hf_to_ftcore_name(hf)) == hf
    assert hf_to_ftcore_name("encoder.layer.0.output.LayerNorm.gamma") == "layers.0.ffn_norm.weight"
    assert hf_to_ftcore_name("cls.predictions.bias") is None


def test_loads_checkpoint_with_bert_prefix_and_ignores_pretraining_heads(tmp_path):
    theirs = tiny_hf(tmp_path, transformers.BertForPreTraining)  # bert.* + cls.predictions/seq_relationship
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert any(k.startswith("bert.") for k in keys) and any(k.startswith("cls.") for k in keys)
    ours = BertModel.from_pretrained(tmp_path).eval()
    ids = ids_batch()
    with torch.no_grad():
        ref = theirs.bert(input_ids=ids).last_hidden_state
    assert (hidden_of(ours, ids) - ref).abs().max().item() <= 1e-5


def test_loads_old_gamma_beta_names_and_sharded_index(tmp_path):
    theirs = tiny_hf(tmp_path / "src")
    state = load_file(tmp_path / "src" / "model.safetensors")
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    names = sorted(renamed)
    half = len(names) // 2
    out = tmp_path / "sharded"
    out.mkdir()
    shutil.copy(tmp_path / "src" / "config.json", out)
    weight_map = {}
    for i, part in enumerate([names[:half], names[half:]]):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: renamed[k].contiguous() for k in part}, out / shard)
        weight_map.update({k: shard for k in part})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ours = BertModel.from_pretrained(out).eval()
    ids = ids_batch()
    with torch.no_grad():
        ref = theirs(input_ids=ids).last_hidden_state
    assert (hidden_of(ours, ids) - ref).abs().max().item() <= 1e-5


def test_pickle_weights_need_explicit_opt_in(tmp_path):
    theirs = tiny_hf(tmp_path / "src")
    out = tmp_path / "bin"
    out.mkdir()
    shutil.copy(tmp_path / "src" / "config.json", out)
    torch.save(theirs.state_dict(), out / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        BertModel.from_pretrained(out)
    ours = BertModel.from_pretrained(out, allow_pickle=True).eval()
    ids = ids_batch()
    with torch.no_grad():
        ref = theirs(input_ids=ids).last_hidden_state
    assert (hidden_of(ours, ids) - ref).abs().max().item() <= 1e-5


def test_checkpoint_without_pooler_builds_encoder_without_one(tmp_path):
    tiny_hf(tmp_path, transformers.BertForMaskedLM)  # MLM models carry no pooler
    ours = BertModel.from_pretrained(tmp_path)
    assert ours.pooler is None
    with pytest.raises(Exception, match="pooler"):
        SequenceClassifier.from_pretrained(tmp_path, num_labels=2, pooling="pooler")
    assert SequenceClassifier.from_pretrained(tmp_path, num_labels=2, pooling="cls").num_labels == 2


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_directory_and_missing_weights(tmp_path):
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(tmp_path / "nope")
    assert str(tmp_path / "nope") in one_line(e)
    tiny_hf(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(tmp_path / "m")
    assert "no weights found" in one_line(e) and "model.safetensors" in one_line(e)


def test_corrupt_weights_file(tmp_path):
    tiny_hf(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(tmp_path)
    assert "cannot read" in one_line(e)


def test_mismatch_lists_missing_unexpected_and_misshaped_tensors(tmp_path):
    tiny_hf(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["encoder.layer.1.attention.self.key.weight"]
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(40, 32)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(tmp_path)
    msg = one_line(e)
    assert str(tmp_path / "model.safetensors") in msg
    assert "missing: layers.1.attention.key.weight" in msg
    assert "wrong shape: layers.0.ffn.up.weight (file [40, 32] vs model [37, 32])" in msg

    state["encoder.layer.1.attention.self.key.weight"] = torch.zeros(32, 32)
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(37, 32)
    state["encoder.layer.0.adapter.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(tmp_path)
    assert "unexpected: encoder.layer.0.adapter.weight" in one_line(e)


def test_config_with_wrong_model_type_is_refused(tmp_path):
    tiny_hf(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "distilbert"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception) as e:
        BertModel.from_pretrained(tmp_path)
    assert "model_type='distilbert'" in one_line(e) and str(tmp_path / "config.json") in one_line(e)


@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean"])
def test_ftcore_checkpoint_round_trip(tiny_config, tmp_path, pooling):
    model = SequenceClassifier(
        BertModel(tiny_config), num_labels=4, problem="multi_label", pooling=pooling
    ).eval()
    save_classifier(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ftcore_model.json", "model.safetensors"]
    loaded = load_classifier(tmp_path).eval()
    assert (loaded.problem, loaded.pooling, loaded.num_labels) == ("multi_label", pooling, 4)
    ids = ids_batch()
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))


def test_ftcore_checkpoint_errors(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="not an ftcore checkpoint"):
        load_classifier(tmp_path)
    save_classifier(SequenceClassifier(BertModel(tiny_config), num_labels=2), tmp_path)
    meta = json.loads((tmp_path / "ftcore_model.json").read_text())
    meta["head"]["num_labels"] = 5
    (tmp_path / "ftcore_model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        load_classifier(tmp_path)
    assert "head.classifier.weight (file [2, 32] vs model [5, 32])" in one_line(e)


def test_hf_export_loads_in_transformers_with_identical_logits(minilm_dir, tmp_path):
    model = SequenceClassifier.from_pretrained(minilm_dir, num_labels=3, pooling="pooler").eval()
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    export_hf(model, tmp_path, id2label=labels)
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label == labels
    ids = torch.randint(1000, 29000, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    with torch.no_grad():
        ours = model(ids, mask, types)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        back = SequenceClassifier.from_pretrained(tmp_path, num_labels=3, pooling="pooler").eval()(
            ids, mask, types
        )
    assert (ours - ref).abs().max().item() <= 1e-5
    assert torch.equal(ours, back)  # our loader picks the exported classifier up again


def test_hf_export_needs_pooler_pooling(tiny_config, tmp_path):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=2, pooling="mean")
    with pytest.raises(CheckpointError, match="pooling='pooler'"):
        export_hf(model, tmp_path)
    assert not any(tmp_path.iterdir())
