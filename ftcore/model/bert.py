"""BERT encoder, written out in the order data flows through it.

    input_ids (B, L) ─► Embeddings ─► [Layer] × N ─► last hidden state (B, L, H) ─► Pooler (B, H)

Each Layer is post-LayerNorm, as in the original paper:

    h = LayerNorm(x + Dropout(SelfAttention(x)))
    y = LayerNorm(h + Dropout(FeedForward(h)))

Attention and dropout come from ``ops.py``: ``F.scaled_dot_product_attention`` / ``F.dropout`` on CUDA,
and on CPU the same maths written out as matmuls and a bit-sliced dropout (see ops.py for why).
A head that reads only the first token ([CLS], the pooler) asks for ``first_token_only``: the last layer
then runs its queries, feed-forward and norms for that position alone. File formats and tensor names
live in ``checkpoint_io.py``; ``from_pretrained`` builds the model from what it reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from ftcore.errors import ConfigError
from ftcore.model.checkpoint_io import (
    ADDED_VOCAB_KEY,
    load_state_strict,
    read_config,
    read_hf_checkpoint,
    save_bert,
)
from ftcore.model.ops import Dropout, attention, check_dropout

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact, erf-based
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder; field names follow HF ``config.json`` so files map 1:1."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(
                f"hidden_act={self.hidden_act!r} is not supported; expected one of {sorted(ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_dropout(name, getattr(self, name))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> BertConfig:
        """Build from an HF-style dict, refusing architectures this encoder would silently get wrong."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"{source}: model_type={model_type!r} is not supported; expected 'bert'")
        position_type = d.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ConfigError(
                f"{source}: position_embedding_type={position_type!r} is not supported; expected 'absolute'"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known and v is not None}
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        return cls.from_dict(read_config(path), source=str(path))

    def to_dict(self) -> dict:
        return {"model_type": "bert", "position_embedding_type": "absolute", **asdict(self)}


class BigramEmbedding(nn.Module):
    """What each token's neighbours say about it: embeddings of the token bigrams on its left and right.

    A character-level tagger decides at every character whether a word or entity begins or ends there,
    and the two character pairs around it carry most of that evidence (classical Chinese segmenters and
    taggers are built on them). An encoder can learn pairs through attention, but a table that gives
    every frequent pair of the training text a row of its own learns them in far fewer steps.

    The buffer ``keys`` is the sorted list of known bigrams, each packed as ``left_id * 2**32 + right_id``;
    bigram ``k`` of ``keys`` has row ``k + 1`` of ``table``, row 0 is every other pair (with a special
    token, or unseen) and stays zero. Position ``i`` reads the rows of
    ``(ids[i-1], ids[i])`` and ``(ids[i], ids[i+1])``, side by side, and ``project`` maps the pair of rows
    to the hidden size. ``project`` starts at zero, so the encoder starts exactly as pretrained.
    """

    def __init__(self, num_bigrams: int, dim: int, hidden_size: int):
        super().__init__()
        self.register_buffer("keys", torch.zeros(num_bigrams, dtype=torch.int64))
        self.table = nn.Embedding(num_bigrams + 1, dim, padding_idx=0)
        self.project = nn.Linear(2 * dim, hidden_size, bias=False)

    @staticmethod
    def pack(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Bigram keys of two equal-shaped id tensors."""
        return left.long() * 2**32 + right.long()

    @torch.no_grad()
    def set_pairs(self, keys: torch.Tensor, std: float) -> None:
        """Fill a fresh bigram table: ``keys`` sorted, unique, ``len(keys)`` rows; rows start as N(0, std)."""
        if keys.shape != self.keys.shape or (keys[1:] <= keys[:-1]).any():
            raise ValueError(f"expected {self.keys.numel()} sorted unique bigram keys, got {keys.numel()}")
        self.keys.copy_(keys)
        nn.init.normal_(self.table.weight, std=std)
        self.table.weight[0].zero_()
        nn.init.zeros_(self.project.weight)

    def rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L - 1) rows of the bigrams ``(ids[:, i], ids[:, i + 1])`` (0: not known)."""
        keys = self.pack(input_ids[:, :-1], input_ids[:, 1:])
        at = torch.searchsorted(self.keys, keys).clamp(max=self.keys.numel() - 1)
        return torch.where(self.keys[at] == keys, at + 1, 0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, H) what to add to the word embeddings."""
        rows = F.pad(self.rows(input_ids), (1, 1))  # pairs past either end: row 0
        vectors = self.table(rows)  # (B, L + 1, dim): vectors[:, i] is the pair ending at position i
        return self.project(torch.cat([vectors[:, :-1], vectors[:, 1:]], dim=-1))


class Embeddings(nn.Module):
    """Sum of word, position and token-type embeddings, then LayerNorm and dropout.

    Tokens added to a pretrained vocabulary (:meth:`BertModel.add_tokens`) live in their own table
    ``added`` (ids ``word.num_embeddings`` and up), so they can train while the pretrained table stays
    frozen, and an adapter checkpoint carries only the new rows. ``bigrams``, when set
    (:meth:`BertModel.add_bigrams`), adds what the token pairs around each token say to its word
    embedding.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.added: nn.Embedding | None = None
        self.bigrams: BigramEmbedding | None = None
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def lookup(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, H) word embeddings, added tokens and bigrams included."""
        if self.added is None:
            x = self.word(input_ids)
        else:
            n = self.word.num_embeddings
            is_added = input_ids >= n
            pretrained = self.word(input_ids.masked_fill(is_added, 0))
            added = self.added((input_ids - n).clamp(min=0))
            x = torch.where(is_added.unsqueeze(-1), added, pretrained)
        return x if self.bigrams is None else x + self.bigrams(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_offset: int = 0,
    ) -> torch.Tensor:
        """(B, L) ids -> (B, L, H). ``inputs_embeds`` (B, L, H) replaces the word lookup when given.

        Positions run from ``position_offset`` (prefix tuning places the real tokens after its prefix).
        """
        x = self.lookup(input_ids) if inputs_embeds is None else inputs_embeds
        end = position_offset + x.shape[1]
        if end > self.position.num_embeddings:
            raise ValueError(
                f"sequence length {end} exceeds max_position_embeddings={self.position.num_embeddings}"
            )
        x = x + self.position.weight[position_offset:end]  # broadcast over the batch
        if token_type_ids is None:
            x = x + self.token_type.weight[0]
        else:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention: softmax(Q Kᵀ / √d + mask) V, then the output projection.

    ``prefix`` optionally supplies extra keys/values (B, nh, P, hd) that every query also attends to
    (prefix tuning); ``mask`` must then cover P + L keys.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        H = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.out = nn.Linear(H, H)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_rows: slice | None = None,
    ) -> torch.Tensor:
        """x (B, L, H) -> (B, L, H); with ``query_rows``, the output of those positions only (B, Lq, H).

        Keys and values always come from every position; only the queries (and so everything after
        them) are restricted, which is all a head that reads one position needs from the last layer.
        """
        B, H = x.shape[0], x.shape[2]

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, nh, L, hd)
            return t.view(B, t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = (heads(t) for t in self.project_qkv(x, query_rows))
        if prefix is not None:
            k = torch.cat([prefix[0].to(k.dtype), k], dim=2)
            v = torch.cat([prefix[1].to(v.dtype), v], dim=2)
        y = attention(q, k, v, mask, self.dropout_p if self.training else 0.0)  # (B, nh, Lq, hd)
        y = y.transpose(1, 2).reshape(B, q.shape[2], H)
        return self.out(y)

    def project_qkv(
        self, x: torch.Tensor, query_rows: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value (B, L, H) each, from one matmul against the stacked weights.

        One (H -> 3H) product reads ``x`` once instead of three (H -> H) ones. A projection wrapped by an
        adapter joins in when it is a :class:`FusableProjection` that splits; otherwise (DoRA, any other
        module) all three run on their own. Under autocast ``x`` is cast once, and the side paths (their
        dropout included) see the same low-precision copy the matmul reads. ``query_rows`` projects
        queries for those positions only (B, Lq, H): keys and values share one (H -> 2H) product.
        """
        parts = [_base_and_side(m) for m in (self.query, self.key, self.value)]
        if any(p is None for p in parts):
            xq = x if query_rows is None else x[:, query_rows]
            return self.query(xq), self.key(x), self.value(x)
        if torch.is_autocast_enabled(x.device.type):  # cast once for the matmul and the side paths
            x = x.to(torch.get_autocast_dtype(x.device.type))
        xq = x if query_rows is None else x[:, query_rows]
        if query_rows is None:
            outputs = F.linear(x, *_stacked(parts)).split(x.shape[-1], dim=-1)
        else:
            kv = F.linear(x, *_stacked(parts[1:])).split(x.shape[-1], dim=-1)
            outputs = (F.linear(xq, *_stacked(parts[:1])), *kv)
        inputs = (xq, x, x)
        return tuple(y if side is None else y + side(i) for y, i, (_, side) in zip(outputs, inputs, parts))


def _stacked(parts: list) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights (and biases) of the base layers in ``parts`` stacked along the output dimension."""
    weights = [base.weight for base, _ in parts]
    biases = None if any(base.bias is None for base, _ in parts) else [base.bias for base, _ in parts]
    if len(parts) == 1:
        return weights[0], None if biases is None else biases[0]
    return torch.cat(weights), None if biases is None else torch.cat(biases)


@runtime_checkable
class FusableProjection(Protocol):
    """An adapter around a query/key/value projection that can still join the fused QKV matmul.

    ``split_base()`` returns ``(base, side)`` such that the wrapper computes ``base(x) + side(x)``:
    ``base`` is the frozen ``nn.Linear`` whose weight is stacked with the other projections', ``side``
    an additive path on the same input (None when there is none, e.g. once merged). It returns None
    when the output is not of that form (DoRA rescales the base output); the projections then run one
    by one. ``ftcore.methods.lora.LoRALinear`` is one.
    """

    def split_base(self) -> tuple[nn.Linear, Callable[[torch.Tensor], torch.Tensor] | None] | None: ...


def _base_and_side(module: nn.Module) -> tuple[nn.Linear, Callable | None] | None:
    """(nn.Linear, side path or None) for a plain or fusable projection; None if it cannot be fused."""
    if type(module) is nn.Linear:
        return module, None
    return module.split_base() if isinstance(module, FusableProjection) else None


class FeedForward(nn.Module):
    """Position-wise MLP: down(act(up(x))), H -> intermediate -> H."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.up = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class Layer(nn.Module):
    """One post-LayerNorm transformer block."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_rows: slice | None = None,
    ) -> torch.Tensor:
        """(B, L, H) -> (B, L, H), or (B, Lq, H) for the positions in ``query_rows`` only."""
        y = self.attention(x, mask, prefix, query_rows)
        if query_rows is not None:
            x = x[:, query_rows]
        x = self.attention_norm(x + self.dropout(y))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class Pooler(nn.Module):
    """tanh(W · h_[CLS] + b): BERT's sentence representation."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def attention_bias(attention_mask: torch.Tensor, dtype: torch.dtype, num_prefix: int = 0) -> torch.Tensor:
    """(B, Lk) 1/0 padding mask -> additive (B, 1, 1, P + Lk) bias: 0 where attended, -inf-like elsewhere.

    An additive float mask (rather than a bool one) gives a row whose keys are all masked a uniform
    softmax instead of NaN in fp32 (``finfo.min`` rounds to -inf in bf16). SDPA's flash kernels take no
    explicit mask, so unpadded batches should pass ``attention_mask=None``. ``num_prefix`` prepends
    always-visible prefix keys.
    """
    keep = attention_mask.bool()
    if num_prefix:
        keep = torch.cat([keep.new_ones(keep.shape[0], num_prefix), keep], dim=1)
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    bias.masked_fill_(~keep, torch.finfo(dtype).min)
    return bias[:, None, None, :]


class BertModel(nn.Module):
    """The BERT encoder. ``forward`` returns the last hidden state (B, L, H); ``pool`` the pooler output.

    Two optional input hooks serve parameter-efficient methods: ``prompt`` inserts virtual tokens into
    the input (their outputs are dropped again), ``prefix`` gives every layer extra keys and values.
    """

    def __init__(self, cfg: BertConfig, add_pooler: bool = True):
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = Pooler(cfg) if add_pooler else None
        self.prompt: nn.Module | None = None  # set by prompt tuning (ftcore/methods/prompt.py)
        self.prefix: nn.Module | None = None  # set by prefix tuning (ftcore/methods/prefix.py)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) for matrices, zeros for biases, LayerNorm = identity."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        first_token_only: bool = False,
    ) -> torch.Tensor:
        """input_ids (B, L), attention_mask (B, L) of 1 = token / 0 = padding -> hidden (B, L, H).

        ``attention_mask=None`` means no padding, which lets SDPA use its fastest (mask-free) kernels.
        ``first_token_only`` returns the first token's hidden state alone, (B, 1, H), which is all a
        [CLS] or pooler head reads: the last layer then computes its keys and values for every position
        but its queries, attention output, feed-forward and norms for that one position (the result is
        the same as slicing the full output).
        """
        if self.prompt is not None:  # soft prompt tuning: virtual tokens join the input
            embeds = self.embeddings.lookup(input_ids) if inputs_embeds is None else inputs_embeds
            inputs_embeds, attention_mask, token_type_ids = self.prompt.insert(
                embeds, attention_mask, token_type_ids
            )
        P = 0 if self.prefix is None else self.prefix.length  # prefix tuning: P keys/values per layer
        x = self.embeddings(input_ids, token_type_ids, inputs_embeds, position_offset=P)
        prefixes = None if self.prefix is None else self.prefix(x.shape[0])
        mask = None if attention_mask is None else attention_bias(attention_mask, x.dtype, num_prefix=P)
        first = None
        if first_token_only:  # where the first real token sits (a prompt may come before it)
            at = self.prompt.length if self.prompt is not None and self.prompt.offset == 0 else 0
            first = slice(at, at + 1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, None if prefixes is None else prefixes[i], first if i == last else None)
        if first_token_only:
            return x if self.layers else x[:, first]
        return x if self.prompt is None else self.prompt.remove(x)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """Pooler output (B, H) from the last hidden state (B, L, H)."""
        if self.pooler is None:
            raise ValueError(
                "this BertModel was built without a pooler (its checkpoint has no pooler weights)"
            )
        return self.pooler(hidden)

    @torch.no_grad()
    def add_tokens(
        self, n: int, init: str = "mean", glosses: Sequence[Sequence[Sequence[int]]] | None = None
    ) -> None:
        """Grow the vocabulary by ``n`` ids (``vocab_size`` and up).

        New rows start at the mean pretrained embedding (``init="mean"``), or at that mean plus noise
        with the pretrained rows' per-dimension spread (``init="random"``), which tells them apart from
        the first step. ``init="gloss"`` starts row ``i`` at the meaning of ``glosses[i]``: each gloss is
        a list of senses, each sense the ids of (pretrained) tokens that say it; the row is the average
        over senses of each sense's average embedding, moved from the mean out to the median distance of
        a pretrained row from it (an average of many rows lies much closer to the mean than any one
        row, and would start nearly as indistinct as the mean itself). A token without glosses starts
        at the mean. See ``ftcore.data.glossary``.
        """
        if n <= 0:
            return
        emb = self.embeddings
        table = emb.word.weight
        mean = table.mean(dim=0)
        rows = mean.expand(n, -1).clone()
        if init == "random":
            rows += torch.randn_like(rows) * table.std(dim=0)
        elif init == "gloss":
            if glosses is None or len(glosses) != n:
                raise ValueError(f"init='gloss' needs one gloss per added token ({n})")
            radius = (table - mean).norm(dim=1).median()
            for i, senses in enumerate(glosses):
                if senses:
                    meaning = torch.stack([table[list(ids)].mean(dim=0) for ids in senses]).mean(dim=0)
                    offset = meaning - mean
                    rows[i] = mean + offset * (radius / offset.norm().clamp_min(1e-12))
        elif init != "mean":
            raise ValueError(f"unknown init {init!r} for added tokens; expected 'mean', 'random' or 'gloss'")
        if emb.added is not None:
            rows = torch.cat([emb.added.weight, rows])
        emb.added = nn.Embedding(rows.shape[0], rows.shape[1], device=rows.device, dtype=rows.dtype)
        emb.added.weight.copy_(rows)
        self.config.vocab_size += n

    def set_dropout(self, hidden: float | None = None, attention: float | None = None) -> None:
        """Change the dropout the checkpoint's config.json gave (None keeps it): ``hidden`` after the
        embeddings and on both residual branches of every block, ``attention`` on the attention
        probabilities. The config follows, so a model saved afterwards records what it trained with."""
        if hidden is not None:
            check_dropout("hidden_dropout_prob", hidden)
            self.config.hidden_dropout_prob = hidden
            self.embeddings.dropout.p = hidden
            for layer in self.layers:
                layer.dropout.p = hidden
        if attention is not None:
            check_dropout("attention_probs_dropout_prob", attention)
            self.config.attention_probs_dropout_prob = attention
            for layer in self.layers:
                layer.attention.dropout_p = attention

    def add_bigrams(self, keys: torch.Tensor, dim: int) -> None:
        """Give the bigrams ``keys`` (sorted packed pairs, see :class:`BigramEmbedding`) rows of ``dim``
        numbers, added to the word embeddings; they start at N(0, initializer_range) and their
        projection at zero, so the encoder's outputs do not change until they train."""
        if len(keys) == 0:
            raise ConfigError("no token bigram is frequent enough to embed; lower model.bigram_min_freq")
        weight = self.embeddings.word.weight
        bigrams = BigramEmbedding(len(keys), dim, self.config.hidden_size).to(weight.device, weight.dtype)
        bigrams.set_pairs(keys.to(weight.device), self.config.initializer_range)
        self.embeddings.bigrams = bigrams

    @torch.no_grad()
    def split_vocabulary(self, start: int | None) -> None:
        """Move the word-embedding rows from id ``start`` on into the added-token table.

        A checkpoint written after vocabulary extension (e.g. by masked-LM pretraining) records where its
        added tokens start (``ftcore_added_vocab_start`` in config.json); splitting them off again keeps
        them trainable under frozen-base methods, as they were when they were added. None: nothing to do.
        """
        emb = self.embeddings
        n = emb.word.num_embeddings
        if start is None or emb.added is not None or start == n:
            return
        if not 0 < start < n:
            raise ConfigError(f"{ADDED_VOCAB_KEY}={start} must be within the vocabulary of {n} tokens")
        weight = emb.word.weight
        emb.word = nn.Embedding(start, weight.shape[1], padding_idx=emb.word.padding_idx,
                                device=weight.device, dtype=weight.dtype)  # fmt: skip
        emb.word.weight.copy_(weight[:start])
        emb.added = nn.Embedding(n - start, weight.shape[1], device=weight.device, dtype=weight.dtype)
        emb.added.weight.copy_(weight[start:])
        emb.word.weight.requires_grad_(weight.requires_grad)
        emb.added.weight.requires_grad_(weight.requires_grad)

    @property
    def num_added_tokens(self) -> int:
        return 0 if self.embeddings.added is None else self.embeddings.added.num_embeddings

    @classmethod
    def from_state(cls, cfg: BertConfig, state: dict[str, torch.Tensor], source: str,
                   dtype: torch.dtype = torch.float32) -> BertModel:  # fmt: skip
        """An encoder holding ``state`` (ftcore names), checked strictly; a pooler if the state has one."""
        has_pooler = any(k.startswith("pooler.") for k in state)
        with torch.device("meta"):  # no time spent initialising weights that are about to be replaced
            model = cls(cfg, add_pooler=has_pooler)
        load_state_strict(model, state, source, dtype)
        return model

    @classmethod
    def from_hf(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                allow_pickle: bool = False) -> tuple[BertModel, dict[str, torch.Tensor], str]:  # fmt: skip
        """The encoder of an HF-format directory (rows of a grown vocabulary back in the added-token
        table, see :meth:`split_vocabulary`), the file's other top-level tensors (``classifier.*``,
        ``cls.predictions.*``) for a head to read, and the weights' source for messages."""
        config, state, other, source = read_hf_checkpoint(path, allow_pickle)
        model = cls.from_state(
            BertConfig.from_dict(config, os.path.join(path, "config.json")), state, source, dtype
        )
        model.split_vocabulary(config.get(ADDED_VOCAB_KEY))
        return model, other, source

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                        allow_pickle: bool = False) -> BertModel:  # fmt: skip
        """Load an HF-format directory (config.json + model.safetensors, with or without the ``bert.``
        prefix; classifier and pre-training heads in the file are ignored; rows of a grown vocabulary
        become the added-token table again, see :meth:`split_vocabulary`). Pickled
        ``pytorch_model.bin`` weights are read only with ``allow_pickle=True``."""
        return cls.from_hf(path, dtype, allow_pickle)[0]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write an HF-format directory that ``from_pretrained`` (ours or transformers') reads back."""
        save_bert(self, path)


__all__ = [
    "ACTIVATIONS",
    "BertConfig",
    "BertModel",
    "BigramEmbedding",
    "Embeddings",
    "FeedForward",
    "Layer",
    "Pooler",
    "SelfAttention",
    "attention_bias",
]
