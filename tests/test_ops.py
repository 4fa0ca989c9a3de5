"""The CPU fast paths of dropout and attention compute what F.dropout / F.scaled_dot_product_attention do."""

import pytest
import torch
import torch.nn.functional as F

from ftcore.model.ops import Dropout, attention, dropout, keep_mask


def test_dropout_drops_at_rate_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 3e-3  # ~6 sigma at n = 4e5
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - round(0.1 * 32768) / 32768)))
    assert abs(y.mean().item() - 1.0) < 5e-3


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_dropout_rate_for_other_probabilities(p):
    torch.manual_seed(1)
    keep, scale = keep_mask((300_000,), p)
    assert abs((1 - keep.float().mean().item()) - p) < 5e-3
    assert scale == pytest.approx(1 / (1 - p), rel=1e-4)


def test_dropout_bits_are_not_correlated_across_neighbouring_elements():
    # four elements share one 64-bit draw: their drop decisions must still be independent
    torch.manual_seed(2)
    keep, _ = keep_mask((200_000, 4), 0.5)
    k = keep.float()
    for i in range(4):
        for j in range(i + 1, 4):
            both = (k[:, i] * k[:, j]).mean().item()
            assert abs(both - 0.25) < 6e-3, (i, j)


def test_dropout_in_bf16_scales_kept_values_by_the_exact_factor():
    # the scale must not itself be rounded to bf16 (1.111 -> 1.109): only the product is
    torch.manual_seed(7)
    x = torch.randn(500_000, dtype=torch.bfloat16)
    y = dropout(x, 0.1)
    kept = y != 0
    ratio = (y[kept].double() / x[kept].double()).mean().item()
    assert ratio == pytest.approx(1 / (1 - round(0.1 * 32768) / 32768), abs=2e-4)
    assert torch.equal(y[kept], (x[kept].float() * (32768 / (32768 - 3277))).bfloat16())


def test_dropout_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(3)
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    mask = y.detach() / x.detach()
    assert torch.allclose(x.grad, g * mask)
    scale = 1 / (1 - round(0.3 * 32768) / 32768)
    assert torch.allclose(mask[mask != 0], torch.full_like(mask[mask != 0], scale))
    assert 0.2 < (mask == 0).double().mean().item() < 0.4


def test_dropout_is_seeded_by_torch_manual_seed_and_identity_in_eval():
    x = torch.randn(1000, dtype=torch.bfloat16)
    torch.manual_seed(4)
    a = dropout(x, 0.2)
    torch.manual_seed(4)
    b = dropout(x, 0.2)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16
    module = Dropout(0.2).eval()
    assert module(x) is x
    assert dropout(x, 0.0) is x
    assert repr(module) == repr(torch.nn.Dropout(0.2))


def _qkv(B=3, nh=4, Lq=7, Lk=7, d=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(5)
    return [torch.randn(B, nh, L, d, generator=g, dtype=dtype, requires_grad=True) for L in (Lq, Lk, Lk)]


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("Lk", [7, 11])  # 11: extra prefix keys, as prefix tuning passes
def test_attention_equals_sdpa_forward_and_backward(with_mask, Lk):
    q, k, v = _qkv(Lk=Lk)
    mask = None
    if with_mask:
        keep = torch.ones(3, Lk, dtype=torch.bool)
        keep[1, -3:] = False
        mask = torch.zeros(3, 1, 1, Lk, dtype=q.dtype).masked_fill(~keep[:, None, None, :], -1e9)
    ours = attention(q, k, v, mask)
    ref_inputs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_inputs, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-12)
    g = torch.randn_like(ours)
    ours.backward(g)
    ref.backward(g)
    for a, b in zip((q, k, v), ref_inputs):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_attention_dropout_drops_probabilities_with_the_dropout_stream():
    q, k, v = _qkv()
    torch.manual_seed(6)
    ours = attention(q, k, v, dropout_p=0.25)
    torch.manual_seed(6)
    keep, scale = keep_mask((3, 4, 7, 7), 0.25)
    probs = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    assert torch.allclose(ours, (probs * keep * scale) @ v, atol=1e-12)


def test_attention_in_bf16_stays_within_bf16_rounding_of_fp32():
    q, k, v = _qkv(B=4, nh=12, Lq=64, Lk=64, d=32, dtype=torch.float32)
    ref = F.scaled_dot_product_attention(q, k, v)
    ours = attention(*(t.detach().bfloat16() for t in (q, k, v)))
    assert ours.dtype == torch.bfloat16
    assert (ours.float() - ref).abs().max().item() < 3e-2
