"""fp16 loss scaling: overflowing steps are skipped and the scale adapts."""

from __future__ import annotations

import torch

from ftcore.train.precision import LossScaler


def test_loss_scaler_skips_steps_with_inf_gradients_and_adapts_the_scale():
    scaler = LossScaler(enabled=True, init_scale=1024.0, growth_interval=2)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([2048.0, float("inf"), 1024.0])
    assert scaler.unscale_([p]) is False
    scaler.update(False)
    assert scaler.scale == 512.0 and scaler.skipped_steps == 1
    p.grad = torch.tensor([512.0, 1024.0, 256.0])
    assert scaler.unscale_([p]) is True
    assert torch.equal(p.grad, torch.tensor([1.0, 2.0, 0.5]))  # divided by the scale
    scaler.update(True)
    scaler.update(True)
    assert scaler.scale == 1024.0 and scaler.skipped_steps == 1  # grows after 2 clean steps
    restored = LossScaler(enabled=True)
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()
    off = LossScaler(enabled=False)
    p.grad = torch.tensor([float("nan"), 1.0, 1.0])
    assert off.unscale_([p]) is True and off.scale_loss(torch.tensor(3.0)).item() == 3.0
