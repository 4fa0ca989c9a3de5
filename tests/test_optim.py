"""AdamW against torch.optim.AdamW, parameter groups, and schedule formulas."""

from __future__ import annotations

import math

import pytest
import torch

from ftcore.config import OptimConfig
from ftcore.errors import ConfigError
from ftcore.model import BertModel, SequenceClassifier
from ftcore.optim import AdamW, Schedule, param_groups
from ftcore.optim.build import build_optimizer
from ftcore.optim.schedules import warmup_steps_for


def twin_models(tiny_config):
    a = SequenceClassifier(BertModel(tiny_config), num_labels=3)
    b = SequenceClassifier(BertModel(tiny_config), num_labels=3)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_matches_torch_over_100_steps(tiny_config, amsgrad, fused):
    ours_model, ref_model = twin_models(tiny_config)
    groups = dict(lr=3e-3, weight_decay=0.1, lr_overrides={r"^head\.": 1e-2})
    settings = dict(betas=(0.9, 0.98), eps=1e-6, amsgrad=amsgrad)
    ours = AdamW(param_groups(ours_model, **groups), **settings, fused=fused)
    ref = torch.optim.AdamW(param_groups(ref_model, **groups), **settings, fused=fused)
    assert len(ours.param_groups) == 4  # (encoder | head lr) x (decay | no decay)
    ids = torch.randint(1, 99, (4, 10))
    labels = torch.tensor([0, 1, 2, 1])
    ours_model.eval(), ref_model.eval()  # no dropout: both see the same gradients
    for _ in range(100):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            model.loss(model(ids), labels).backward()
            for g in opt.param_groups:  # exercise changing learning rates, as a schedule does
                g["lr"] = g["lr"] * 0.99
            opt.step()
    for (name, p), q in zip(ours_model.named_parameters(), ref_model.parameters()):
        assert (p - q).abs().max().item() <= 1e-6, name
    assert ours.state[next(ours_model.parameters())]["step"] == 100


def test_fused_and_written_out_updates_agree_and_share_their_state(tiny_config):
    """The two updates keep the same state, so one takes over from the other mid-way, and the
    parameters agree to rounding."""
    ids = torch.randint(1, 99, (4, 10))
    labels = torch.tensor([0, 1, 2, 1])

    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            model.loss(model(ids), labels).backward()
            opt.step()

    plain_model, switched_model = twin_models(tiny_config)
    plain_model.eval(), switched_model.eval()
    start = {n: p.detach().clone() for n, p in plain_model.named_parameters()}
    plain = AdamW(param_groups(plain_model, lr=3e-3, weight_decay=0.1))
    train(plain_model, plain, 20)
    fused = AdamW(param_groups(switched_model, lr=3e-3, weight_decay=0.1), fused=True)
    train(switched_model, fused, 10)
    resumed = AdamW(param_groups(switched_model, lr=3e-3, weight_decay=0.1))
    resumed.load_state_dict(fused.state_dict())
    train(switched_model, resumed, 10)
    first = next(switched_model.parameters())
    assert resumed.state[first]["step"] == 20 and isinstance(fused.state[first]["step"], int)
    # A key's bias shifts every score of a query alike: softmax gives it no gradient but rounding, which
    # Adam's normalisation turns into steps of either sign; every other tensor is compared.
    switched = dict(switched_model.named_parameters())
    for name, p in plain_model.named_parameters():
        if name.endswith("key.bias"):
            continue
        assert (p - switched[name]).abs().max().item() <= 1e-5, name
        assert (p - start[name]).abs().max().item() > 1e-4, name  # and training moved it


def test_optim_fused_reaches_the_optimizer(tiny_config):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=2)
    for fused in (False, True):
        optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-3, fused=fused), total_steps=10)
        assert optimizer.fused is fused


def test_param_groups_exclude_biases_and_layernorm_from_decay(tiny_config):
    model = SequenceClassifier(BertModel(tiny_config), num_labels=2)
    model.encoder.embeddings.word.weight.requires_grad_(False)
    groups = param_groups(model, lr=1e-3, weight_decay=0.01)
    decayed = {n for g in groups if g["weight_decay"] for n in g["names"]}
    plain = {n for g in groups if not g["weight_decay"] for n in g["names"]}
    assert "encoder.embeddings.norm.weight" in plain and "encoder.layers.0.ffn_norm.weight" in plain
    assert "encoder.layers.1.attention.query.bias" in plain and "head.classifier.bias" in plain
    assert "encoder.layers.1.attention.query.weight" in decayed and "head.classifier.weight" in decayed
    assert "encoder.embeddings.position.weight" in decayed
    assert "encoder.embeddings.word.weight" not in decayed | plain  # frozen tensors are left out
    assert len(decayed | plain) == sum(1 for p in model.parameters() if p.requires_grad)


def test_adamw_rejects_bad_settings():
    with pytest.raises(ValueError, match="lr=-1"):
        AdamW([torch.zeros(1, requires_grad=True)], lr=-1)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedules_follow_their_formulas(kind):
    total, warmup = 100, 10
    f = Schedule(kind, total, warmup)
    for step in range(warmup):
        assert f(step) == pytest.approx(step / warmup)
    for step in range(warmup, total + 1):
        progress = (step - warmup) / (total - warmup)
        expected = {
            "linear": 1 - progress,
            "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
            "constant": 1.0,
        }[kind]
        assert f(step) == pytest.approx(expected, abs=1e-12)
    assert f(warmup) == 1.0


def test_linear_schedule_matches_the_transformers_helper():
    transformers = pytest.importorskip("transformers")
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1.0)
    ref = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=7, num_training_steps=50)
    ours = Schedule("linear", 50, 7)
    for step in range(51):
        assert opt.param_groups[0]["lr"] == pytest.approx(ours(step), abs=1e-12)
        opt.step()
        ref.step()


def test_warmup_ratio_and_bad_schedules():
    assert warmup_steps_for(1000, None, 0.06) == 60
    assert warmup_steps_for(1000, 5, 0.06) == 5
    with pytest.raises(ConfigError, match="optim.schedule='step'"):
        Schedule("step", 10)
    with pytest.raises(ConfigError, match="does not fit"):
        Schedule("linear", 10, 11)
