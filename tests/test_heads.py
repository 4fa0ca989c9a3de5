"""SequenceClassifier: pooling, logits and losses against transformers.BertForSequenceClassification."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers
from model_helpers import batch

from ftcore.errors import ConfigError
from ftcore.model import BertModel, SequenceClassifier
from ftcore.model.checkpoint_io import export_hf
from ftcore.model.heads import pool


def hf_classifier(
    model: SequenceClassifier, tmp_path, problem_type: str
) -> transformers.BertForSequenceClassification:
    export_hf(model, tmp_path / "hf")
    hf = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "hf", problem_type=problem_type
    )
    return hf.eval()


@pytest.mark.parametrize(
    "problem, num_labels, hf_problem",
    [
        ("single_label", 3, "single_label_classification"),
        ("multi_label", 4, "multi_label_classification"),
        ("regression", 1, "regression"),
    ],
)
def test_logits_and_loss_match_transformers(minilm_dir, tmp_path, problem, num_labels, hf_problem):
    ours = SequenceClassifier.from_pretrained(
        minilm_dir, num_labels=num_labels, problem=problem, pooling="pooler"
    ).eval()
    theirs = hf_classifier(ours, tmp_path, hf_problem)
    ids = torch.randint(1000, 29000, (4, 12))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    if problem == "single_label":
        labels = torch.tensor([0, 2, 1, 2])
    elif problem == "multi_label":
        labels = torch.randint(0, 2, (4, num_labels)).float()
    else:
        labels = torch.randn(4)
    with torch.no_grad():
        logits = ours(ids, mask)
        ref = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    assert logits.shape == (4, num_labels)
    assert (logits - ref.logits).abs().max().item() <= 1e-5
    assert abs(ours.loss(logits, labels).item() - ref.loss.item()) <= 1e-5


def test_mean_pooling_ignores_padding(tiny_config):
    encoder = BertModel(tiny_config).eval()
    hidden = torch.randn(2, 5, tiny_config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = pool(hidden, mask, "mean", encoder)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0), atol=1e-6)
    assert torch.allclose(pooled[1], hidden[1].mean(0), atol=1e-6)
    assert torch.equal(pool(hidden, mask, "cls", encoder), hidden[:, 0])


@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean"])
def test_logits_do_not_depend_on_padding(tiny_config, pooling):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=3, pooling=pooling).eval()
    ids = torch.randint(1, 99, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        assert (model(ids) - model(padded, mask)).abs().max().item() <= 1e-5


def test_weighted_and_smoothed_cross_entropy(tiny_config):
    weights = torch.tensor([0.2, 1.0, 3.0])
    model = SequenceClassifier(
        BertModel(tiny_config), num_labels=3, class_weights=weights, label_smoothing=0.1
    )
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    logp = F.log_softmax(logits, dim=-1)
    w = weights[labels]
    nll = -(w * logp[torch.arange(6), labels]).sum() / w.sum()
    smooth = -(logp * weights).sum(-1).sum() / w.sum() / 3  # uniform part, weighted per class
    expected = 0.9 * nll + 0.1 * smooth
    assert abs(model.loss(logits, labels).item() - expected.item()) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"pooling": "max"}, "pooling='max'"),
        ({"problem": "ranking"}, "problem='ranking'"),
        ({"num_labels": 1}, "num_labels=1"),
        ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
        ({"class_weights": torch.ones(2)}, "class_weights"),
    ],
)
def test_bad_head_settings_name_the_setting(tiny_config, kwargs, words):
    args = {"num_labels": 3, **kwargs}
    with pytest.raises(ConfigError) as e:
        SequenceClassifier(BertModel(tiny_config), **args)
    assert words in str(e.value)


def test_pooler_pooling_needs_pooler_weights(tiny_config):
    with pytest.raises(ConfigError, match="pooler"):
        SequenceClassifier(BertModel(tiny_config, add_pooler=False), num_labels=2, pooling="pooler")


def test_the_head_reads_the_first_token_only_for_cls_and_pooler(tiny_config, monkeypatch):
    calls = []
    forward = BertModel.forward
    monkeypatch.setattr(BertModel, "forward", lambda self, *a, **k: calls.append(k) or forward(self, *a, **k))
    ids, mask = batch()
    for pooling in ("cls", "pooler", "mean"):
        SequenceClassifier(BertModel(tiny_config), num_labels=2, pooling=pooling)(ids, mask)
    assert [k.get("first_token_only") for k in calls] == [True, True, False]
    calls.clear()
    SequenceClassifier(BertModel(tiny_config), num_labels=2, pooling="cls", one_token_last_layer=False)(
        ids, mask
    )
    assert [k.get("first_token_only") for k in calls] == [False]  # the decision is the head's argument
    with pytest.raises(ConfigError, match="one_token_last_layer needs a pooling that reads one token"):
        SequenceClassifier(BertModel(tiny_config), num_labels=2, pooling="mean", one_token_last_layer=True)
