"""The CPU fast paths of dropout and attention compute what F.dropout / F.scaled_dot_product_attention do."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ftcore.config import MethodConfig, ModelConfig
from ftcore.errors import ConfigError
from ftcore.model.bert import BertConfig
from ftcore.model.ops import MAX_P, MIN_P, Dropout, attention, dropout, keep_lanes, random_words


def keep_mask(shape, p):
    """True where an element is kept, and the scale of kept values."""
    lanes, scale = keep_lanes(shape, p)
    return lanes != 0, scale


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


def test_a_probability_too_small_for_15_bit_lanes_is_still_applied_exactly():
    p = MIN_P / 2  # rounds to 0 of 32768: the lanes would drop nothing
    torch.manual_seed(3)
    y = dropout(torch.ones(16_000_000), p)
    dropped = int((y == 0).sum())
    assert 122 - 50 < dropped < 122 + 50  # 122 expected, sigma 11
    assert torch.all(y[y != 0] == 1 / (1 - p))
    torch.manual_seed(3)
    assert torch.equal(y, F.dropout(torch.ones(16_000_000), p))  # PyTorch's exact path, same stream


@pytest.mark.parametrize("p", [MAX_P, 1.0, 1.5, -0.1])
def test_a_probability_out_of_range_is_refused_in_one_line_naming_the_key(p):
    for check, key in (
        (lambda: MethodConfig(name="lora", dropout=p).validate(), "method.dropout"),
        (lambda: ModelConfig(classifier_dropout=p).validate(), "model.classifier_dropout"),
        (lambda: ModelConfig(hidden_dropout=p).validate(), "model.hidden_dropout"),
        (lambda: ModelConfig(attention_dropout=p).validate(), "model.attention_dropout"),
        (lambda: BertConfig(hidden_dropout_prob=p), "hidden_dropout_prob"),
        (lambda: BertConfig(attention_probs_dropout_prob=p), "attention_probs_dropout_prob"),
    ):
        with pytest.raises(ConfigError) as e:
            check()
        assert str(e.value).startswith(f"{key}={p} is out of range") and "\n" not in str(e.value)
    assert dropout(torch.ones(8), MAX_P - 1e-6).shape == (8,)  # the largest accepted p runs


def test_dropout_bits_are_not_correlated_across_neighbouring_elements():
    # four elements share one 64-bit draw: their drop decisions must still be independent
    torch.manual_seed(2)
    keep, _ = keep_mask((200_000, 4), 0.5)
    k = keep.float()
    for i in range(4):
        for j in range(i + 1, 4):
            both = (k[:, i] * k[:, j]).mean().item()
            assert abs(both - 0.25) < 6e-3, (i, j)


def test_random_words_are_seeded_by_torch_and_every_bit_is_fair():
    torch.manual_seed(9)
    a = random_words(50_000)
    torch.manual_seed(9)
    assert torch.equal(a, random_words(50_000)) and a.dtype == torch.int64
    assert not torch.equal(a, random_words(50_000))  # the generator moved on
    bits = (a[:, None] >> torch.arange(64)) & 1  # (arithmetic shift: bit 63 is the sign)
    assert ((bits.double().mean(0) - 0.5).abs() < 0.01).all()  # ~4.5 sigma at n = 5e4


@pytest.mark.parametrize("p", [0.1, 0.5, 1 / 32768])
def test_keep_lanes_decides_each_element_from_its_own_15_bits(p):
    # the reference: element i keeps iff the low 15 bits of its 16-bit lane are >= the drop threshold
    # (odd sizes take the kernels' scalar tails, where int16 wrap-around must behave the same)
    for n in (1, 33, 1001):
        torch.manual_seed(11)
        lanes, _ = keep_lanes((n,), p)
        torch.manual_seed(11)
        words = random_words((n + 3) // 4).numpy().view(np.uint16)[:n]
        expected = (words & 0x7FFF) >= round(p * 32768)
        assert np.array_equal(lanes.numpy() == 1, expected) and set(np.unique(lanes.numpy())) <= {0, 1}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_keep_lanes_builds_the_same_mask_in_any_dtype(dtype):
    torch.manual_seed(10)
    lanes, scale = keep_lanes((5, 7, 9), 0.3)
    torch.manual_seed(10)
    mask, same_scale = keep_lanes((5, 7, 9), 0.3, dtype)
    assert mask.dtype == dtype and scale == same_scale
    assert torch.equal(mask, lanes.to(dtype)) and set(mask.unique().tolist()) == {0.0, 1.0}


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


# additive masks of every shape that broadcasts to (B, nh, Lq, Lk): per example (what BertModel passes),
# per example and query, per head, and one (Lq, Lk) matrix for all
MASK_SHAPES = [None, (3, 1, 1, -1), (3, 1, 7, -1), (3, 4, 7, -1), (7, -1)]


@pytest.mark.parametrize("mask_shape", MASK_SHAPES)
@pytest.mark.parametrize("Lk", [7, 11])  # 11: extra prefix keys, as prefix tuning passes
def test_attention_equals_sdpa_forward_and_backward(mask_shape, Lk):
    q, k, v = _qkv(Lk=Lk)
    mask = None
    if mask_shape is not None:
        shape = tuple(Lk if n == -1 else n for n in mask_shape)
        g = torch.Generator().manual_seed(8)
        drop = torch.rand(shape, generator=g) < 0.3
        drop[..., 0] = False  # every query keeps a key
        mask = torch.randn(shape, generator=g, dtype=q.dtype).masked_fill(drop, -1e9)
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
