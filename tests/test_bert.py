"""BertModel vs transformers.BertModel: same weights in, same numbers out."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from model_helpers import batch, make, randomize_adapters

from ftcore.errors import ConfigError
from ftcore.model import BertConfig, BertModel
from ftcore.model.checkpoint_io import hf_to_ftcore_name

TEXTS = [
    ("The battery lasts all day and the screen is bright.", "Shipping was slow."),
    ("Terrible.", "I want a refund, the box arrived crushed and nothing works at all."),
    ("这个手机很好用，屏幕清晰。", "物流太慢了"),
    ("Café naïve façade — great value 👍", "ok"),
]


def padded_batch(tokenizer_dir):
    tok = transformers.BertTokenizerFast.from_pretrained(tokenizer_dir)
    a, b = zip(*TEXTS)
    enc = tok(list(a), list(b), padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any() and (enc["token_type_ids"] == 1).any()
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    ours = BertModel.from_pretrained(minilm_dir).eval()
    theirs = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    return ours, theirs


def test_minilm_hidden_states_and_pooler_match_transformers_fp32(minilm_dir, minilm_pair):
    ours, theirs = minilm_pair
    ids, mask, types = padded_batch(minilm_dir)
    with torch.no_grad():
        hidden = ours(ids, mask, types)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    assert hidden.shape == ref.last_hidden_state.shape
    assert (hidden - ref.last_hidden_state)[real].abs().max().item() <= 1e-5
    assert (ours.pool(hidden) - ref.pooler_output).abs().max().item() <= 1e-5


def test_minilm_matches_transformers_under_bf16_autocast(minilm_dir, minilm_pair):
    ours, theirs = minilm_pair
    ids, mask, types = padded_batch(minilm_dir)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = ours(ids, mask, types).float()
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.float()
    with torch.no_grad():
        exact = ours(ids, mask, types)
    real = mask.bool()
    # Both bf16 runs sit within bf16 rounding of each other and of the fp32 result.
    assert (hidden - ref)[real].abs().max().item() <= 0.05
    assert (hidden - exact)[real].abs().max().item() <= 0.1
    assert torch.nn.functional.cosine_similarity(hidden[real], exact[real], dim=-1).min().item() > 0.999


def test_dropout_changed_after_loading_trains_as_transformers_configured_so(minilm_dir):
    """set_dropout(0, 0) in training mode gives transformers' numbers with both probabilities 0 in its
    config (no site keeps the file's 0.1), and the config records it; None leaves a probability be."""
    ids, mask, types = padded_batch(minilm_dir)
    theirs = transformers.BertModel.from_pretrained(
        minilm_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager"
    ).train()
    ours = BertModel.from_pretrained(minilm_dir).train()
    with torch.no_grad():
        torch.manual_seed(0)
        dropped = ours(ids, mask, types)
        ours.set_dropout(hidden=0.0, attention=0.0)
        hidden = ours(ids, mask, types)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    real = mask.bool()
    assert (hidden - ref)[real].abs().max().item() <= 1e-5
    assert (dropped - ref)[real].abs().max().item() > 1e-2  # the file's dropout was on before
    assert (ours.config.hidden_dropout_prob, ours.config.attention_probs_dropout_prob) == (0.0, 0.0)
    ours.set_dropout(hidden=0.3)
    assert ours.config.hidden_dropout_prob == 0.3 and ours.config.attention_probs_dropout_prob == 0.0
    assert {layer.dropout.p for layer in ours.layers} == {0.3} and ours.embeddings.dropout.p == 0.3
    assert {layer.attention.dropout_p for layer in ours.layers} == {0.0}
    with pytest.raises(ConfigError, match="attention_probs_dropout_prob=1.0 is out of range"):
        ours.set_dropout(attention=1.0)


def test_padding_does_not_change_real_tokens(minilm_dir, minilm_pair):
    ours, _ = minilm_pair
    ids, mask, types = padded_batch(minilm_dir)
    with torch.no_grad():
        batched = ours(ids, mask, types)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            alone = ours(ids[row : row + 1, :n], None, types[row : row + 1, :n])
            assert (alone[0] - batched[row, :n]).abs().max().item() <= 1e-5


def hf_random_model(tmp_path, **overrides):
    cfg = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides,
    )  # fmt: skip
    model = transformers.BertModel(cfg, add_pooling_layer=True)
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_random_model_forward_and_gradients_match_transformers(tmp_path, act):
    theirs = hf_random_model(tmp_path, hidden_act=act).train()  # dropout is 0: train mode is deterministic
    ours = BertModel.from_pretrained(tmp_path).train()
    ids = torch.randint(1, 99, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    types = torch.randint(0, 2, ids.shape)
    out = ours(ids, mask, types)
    ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    assert (out - ref.last_hidden_state)[real].abs().max().item() <= 1e-5
    # Same loss -> same gradients for every weight (over real tokens only).
    (out[real].pow(2).sum() + ours.pool(out).sum()).backward()
    (ref.last_hidden_state[real].pow(2).sum() + ref.pooler_output.sum()).backward()
    ours_grads = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        mine = ours_grads[hf_to_ftcore_name(name)].grad
        scale = p.grad.abs().max().item()
        assert (mine - p.grad).abs().max().item() <= 1e-4 * max(scale, 1.0), name


def test_config_reads_hf_json(minilm_dir):
    cfg = BertConfig.from_json(minilm_dir / "config.json")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 6, 12)
    assert cfg.intermediate_size == 1536 and cfg.layer_norm_eps == 1e-12 and cfg.pad_token_id == 0
    assert BertConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "change, words",
    [
        ({"model_type": "roberta"}, "model_type='roberta'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
        ({"hidden_act": "swish"}, "hidden_act='swish'"),
        ({"num_attention_heads": 5}, "not divisible"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, minilm_dir, change, words):
    d = json.loads((minilm_dir / "config.json").read_text())
    d.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as e:
        BertConfig.from_json(path)
    msg = str(e.value)
    assert str(path) in msg and words in msg and "\n" not in msg


def test_config_missing_and_invalid_json(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        BertConfig.from_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BertConfig.from_json(tmp_path / "config.json")


def test_added_tokens_get_their_own_table_starting_at_the_mean(tiny_config):
    model = BertModel(tiny_config).eval()
    old = model.embeddings.word.weight.detach().clone()
    ids = torch.tensor([[1, 5, 98, 2]])
    before = model(ids)
    model.add_tokens(4)
    model.add_tokens(2)
    added = model.embeddings.added.weight
    assert model.num_added_tokens == 6 and model.config.vocab_size == 105
    assert torch.equal(model.embeddings.word.weight, old)  # the pretrained table is untouched
    assert torch.allclose(added, old.mean(0).expand(6, -1))
    assert torch.equal(model(ids), before)  # old ids encode as before
    with torch.no_grad():
        added[5] += 1.0
    looked_up = model.embeddings.lookup(torch.tensor([[3, 104, 99]]))
    assert torch.equal(looked_up[0, 0], old[3]) and torch.equal(looked_up[0, 1], added[5])
    assert torch.equal(looked_up[0, 2], added[0])


def pack(pairs):
    return torch.tensor(sorted(a * 2**32 + b for a, b in pairs))


def test_bigram_embeddings_read_the_pair_on_each_side_and_start_at_zero(tiny_config):
    model = BertModel(tiny_config).eval()
    ids = torch.tensor([[2, 5, 6, 7, 5, 3, 0], [2, 6, 7, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    before = model(ids, mask)
    known = [(5, 6), (6, 7), (7, 5), (3, 0), (40, 41)]
    model.add_bigrams(pack(known), dim=4)
    bigrams = model.embeddings.bigrams
    assert bigrams.table.weight.shape == (6, 4) and bigrams.table.weight[1:].abs().sum() > 0
    assert torch.equal(model(ids, mask), before)  # the projection starts at zero
    with torch.no_grad():
        bigrams.project.weight.normal_()
    row = {pair: i + 1 for i, pair in enumerate(sorted(known))}
    table = bigrams.table.weight
    for b, sequence in enumerate(ids.tolist()):
        for i in range(len(sequence)):
            left = row.get(tuple(sequence[i - 1 : i + 1]), 0) if i > 0 else 0
            right = row.get(tuple(sequence[i : i + 2]), 0) if i + 1 < len(sequence) else 0
            expected = bigrams.project(torch.cat([table[left], table[right]]))
            torch.testing.assert_close(bigrams(ids)[b, i], expected)
    assert bigrams.rows(ids).tolist()[1] == [0, row[6, 7], 0, row[3, 0], 0, 0]  # (2, 6) is unknown
    assert torch.equal(table[0], torch.zeros(4))
    looked_up = model.embeddings.lookup(ids)
    torch.testing.assert_close(looked_up, model.embeddings.word(ids) + bigrams(ids))
    assert not torch.equal(model(ids, mask), before)


def test_bigram_keys_must_be_sorted_and_some(tiny_config):
    model = BertModel(tiny_config)
    with pytest.raises(ConfigError, match="model.bigram_min_freq"):
        model.add_bigrams(torch.zeros(0, dtype=torch.int64), dim=4)
    with pytest.raises(ValueError, match="sorted unique"):
        model.add_bigrams(pack([(5, 6), (6, 7)]).flip(0), dim=4)


def test_sequence_longer_than_positions_is_refused(tiny_config):
    model = BertModel(tiny_config)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 65, dtype=torch.long))


@pytest.mark.parametrize(
    "targets", [[], ["query", "value"], ["query", "key", "value"], "dora"], ids=["plain", "qv", "qkv", "dora"]
)
def test_fused_qkv_projection_equals_the_three_projections(tiny_config, targets):
    if targets == "dora":
        model, _ = make(tiny_config, name="dora", targets=["query", "value"], r=4, dropout=0.0)
    elif targets:
        model, _ = make(tiny_config, name="lora", targets=targets, r=4, dropout=0.0)
    else:
        model, _ = make(tiny_config, name="full")
    randomize_adapters(model)
    attention = model.encoder.layers[0].attention
    x = torch.randn(2, 5, tiny_config.hidden_size, dtype=torch.float64)
    model.double()
    fused = attention.project_qkv(x)
    separate = (attention.query(x), attention.key(x), attention.value(x))
    projections = (attention.query, attention.key, attention.value)
    params = [p for m in projections for p in m.parameters() if p.requires_grad]
    g_fused = torch.autograd.grad(sum((t * t).sum() for t in fused), params)
    g_separate = torch.autograd.grad(sum((t * t).sum() for t in separate), params)
    for a, b in zip(fused, separate):
        assert torch.allclose(a, b, atol=1e-12)
    for a, b in zip(g_fused, g_separate):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize(
    "method",
    [
        {"name": "full"},
        {"name": "lora", "targets": ["query", "key", "value"]},  # the stacked projection with side paths
        {"name": "dora"},  # projections that run one by one
        {"name": "prefix"},
        {"name": "prompt", "prompt_position": "after_cls"},
        {"name": "prompt", "prompt_position": "before"},
    ],
    ids=lambda m: "-".join(str(v) for v in m.values() if not isinstance(v, list)),
)
def test_a_first_token_head_computes_only_that_position_in_the_last_layer(tiny_config, method):
    torch.manual_seed(0)
    model, _ = make(tiny_config, **method)
    randomize_adapters(model)
    encoder = model.encoder.eval()
    ids, mask = batch()
    for attention_mask in (mask, None):
        with torch.no_grad():
            full = encoder(ids, attention_mask)
            first = encoder(ids, attention_mask, first_token_only=True)
        assert first.shape == (4, 1, tiny_config.hidden_size)
        torch.testing.assert_close(first, full[:, :1], rtol=1e-5, atol=1e-6)
    # the gradients of everything that trains are those of the full computation (dropout off)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_p"):
            module.dropout_p = 0.0
    grads = []
    for first_only in (False, True):
        model.zero_grad()
        encoder(ids, mask, first_token_only=first_only)[:, 0].pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)
