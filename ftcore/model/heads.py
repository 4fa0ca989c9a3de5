"""Heads on top of the encoder: classification, and BERT's masked-LM head for continued pretraining.

    hidden (B, L, H) ─► pooling (cls | pooler | mean) ─► Dropout ─► Linear(H, num_labels) ─► logits

and the loss that matches each problem type:

    single_label  cross-entropy over num_labels classes (optional class weights, label smoothing)
    multi_label   binary cross-entropy with logits, one independent sigmoid per label
    regression    mean squared error (num_labels targets, usually 1)
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ftcore.errors import CheckpointError, ConfigError
from ftcore.model.bert import ACTIVATIONS, BertConfig, BertModel, Embeddings
from ftcore.model.checkpoint_io import (
    export_masked_lm,
    load_state_strict,
    mlm_head_from_hf,
)
from ftcore.model.ops import Dropout

POOLINGS = ("cls", "pooler", "mean")
FIRST_TOKEN_POOLINGS = ("cls", "pooler")  # read the first token alone: the encoder may skip the rest
PROBLEMS = ("single_label", "multi_label", "regression")


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str, encoder: BertModel
) -> torch.Tensor:
    """(B, L, H) -> (B, H) sentence representation."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "pooler":
        return encoder.pool(hidden)
    if attention_mask is None:  # mean over every position
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class ClassificationHead(nn.Module):
    """Dropout then a linear map from the pooled representation to ``num_labels`` logits."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class SequenceClassifier(nn.Module):
    """Encoder + pooling + head. ``forward`` returns logits (B, num_labels); ``loss`` scores them.

    Args:
        encoder: a :class:`BertModel` (needs its pooler when ``pooling='pooler'``; with another pooling
            the unused pooler is dropped).
        num_labels: classes (single/multi-label) or regression targets.
        problem: ``single_label`` | ``multi_label`` | ``regression``.
        pooling: ``cls`` (hidden state of [CLS]) | ``pooler`` (BERT's tanh pooler) | ``mean`` (over real tokens).
        classifier_dropout: dropout before the classifier; defaults to the encoder's hidden dropout.
        class_weights: (num_labels,) cross-entropy weights for imbalanced single-label data.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        one_token_last_layer: run the encoder's last layer for the pooled token only (its keys and
            values still come from every token): the same logits and gradients for less work. Defaults
            to on for ``cls`` and ``pooler``, which read one token; ``mean`` needs every position.
    """

    def __init__(
        self,
        encoder: BertModel,
        num_labels: int,
        problem: str = "single_label",
        pooling: str = "cls",
        classifier_dropout: float | None = None,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        one_token_last_layer: bool | None = None,
    ):
        super().__init__()
        if problem not in PROBLEMS:
            raise ConfigError(f"problem={problem!r} is not supported; expected one of {list(PROBLEMS)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling={pooling!r} is not supported; expected one of {list(POOLINGS)}")
        if pooling == "pooler" and encoder.pooler is None:
            raise ConfigError(
                "pooling='pooler' needs pooler weights, but this encoder has none; use 'cls' or 'mean'"
            )
        if num_labels < 1 or (problem == "single_label" and num_labels < 2):
            raise ConfigError(f"num_labels={num_labels} is too small for problem={problem!r}")
        if class_weights is not None and (problem != "single_label" or class_weights.shape != (num_labels,)):
            raise ConfigError(
                f"class_weights must be a ({num_labels},) tensor and only apply to single_label"
            )
        if not 0.0 <= label_smoothing < 1.0 or (label_smoothing and problem != "single_label"):
            raise ConfigError(
                f"label_smoothing={label_smoothing} must be in [0, 1) and only applies to single_label"
            )
        if one_token_last_layer and pooling not in FIRST_TOKEN_POOLINGS:
            raise ConfigError(f"one_token_last_layer needs a pooling that reads one token, not {pooling!r}")
        if classifier_dropout is None:
            classifier_dropout = encoder.config.hidden_dropout_prob
        if pooling != "pooler":
            encoder.pooler = None  # unused: no weight that never gets a gradient (DDP refuses those)
        self.encoder = encoder
        self.num_labels = num_labels
        self.problem = problem
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.label_smoothing = label_smoothing
        self.one_token_last_layer = (
            pooling in FIRST_TOKEN_POOLINGS if one_token_last_layer is None else one_token_last_layer
        )
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels, classifier_dropout)
        self.register_buffer("class_weights", class_weights, persistent=False)
        encoder._init_weights(self.head.classifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids, attention_mask, token_type_ids, first_token_only=self.one_token_last_layer
        )
        return self.head(pool(hidden, attention_mask, self.pooling, self.encoder))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss. labels: (B,) class ids | (B, num_labels) 0/1 | (B,) or (B, num_labels) floats."""
        logits = logits.float()  # losses in fp32 even under autocast
        if self.problem == "single_label":
            return F.cross_entropy(
                logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing
            )
        if self.problem == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.mse_loss(logits, labels.float().view_as(logits))

    def head_config(self) -> dict:
        """What, besides the encoder config, is needed to rebuild this model."""
        return {
            "num_labels": self.num_labels,
            "problem": self.problem,
            "pooling": self.pooling,
            "classifier_dropout": self.classifier_dropout,
            "label_smoothing": self.label_smoothing,
        }

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, num_labels: int, problem: str = "single_label",
                        pooling: str = "cls", dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
                        **head_kwargs) -> SequenceClassifier:  # fmt: skip
        """Encoder from an HF-format directory + a new head.

        A ``classifier.*`` head in the file (e.g. an exported ``BertForSequenceClassification``) is loaded
        when its shape fits ``num_labels``; otherwise the head starts fresh, as for any new task.
        """
        encoder, other, source = BertModel.from_hf(path, dtype, allow_pickle)
        model = cls(encoder, num_labels, problem, pooling, **head_kwargs)
        head = {k.removeprefix("classifier."): v for k, v in other.items() if k.startswith("classifier.")}
        expected = model.head.classifier.state_dict()
        if head and all(head.get(k) is not None and head[k].shape == v.shape for k, v in expected.items()):
            load_state_strict(model.head.classifier, head, source, dtype)
        return model.to(dtype)


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: a transform (dense, activation, LayerNorm), then scores over the vocabulary
    from the word-embedding table itself (the decoder is tied to the input embeddings, added tokens
    included) plus an output bias per token.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: torch.Tensor, embeddings: Embeddings) -> torch.Tensor:
        """(..., H) hidden states -> (..., vocab_size) token scores."""
        h = self.norm(self.act(self.dense(hidden)))
        decoder = embeddings.word.weight
        if embeddings.added is not None:
            decoder = torch.cat([decoder, embeddings.added.weight])
        return F.linear(h, decoder, self.bias)


class MaskedLM(nn.Module):
    """Encoder + masked-LM head: ``forward`` scores the vocabulary at every position, or only at
    ``positions`` (a (B, L) bool mask, e.g. the masked tokens), which skips the vocabulary-wide matmul
    for the ~85% of positions that have no target.

    The pooler, if the encoder has one, is kept untouched (frozen) so that a sequence classifier
    fine-tuned from the result starts from it.
    """

    def __init__(self, encoder: BertModel, head: MaskedLMHead | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else MaskedLMHead(encoder.config)
        if head is None:
            encoder._init_weights(self.head.dense)
        if encoder.pooler is not None:
            encoder.pooler.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, V), or (N, V) for the N positions where ``positions`` is True (row-major order)."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            hidden = hidden[positions]
        return self.head(hidden, self.encoder.embeddings)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the targets; ``labels`` (N,) or (B, L) with -100 where there is none."""
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )

    @torch.no_grad()
    def add_tokens(self, n: int, init: str = "mean") -> None:
        """Grow the vocabulary by ``n`` ids (see ``BertModel.add_tokens``); their output bias starts at the
        mean bias, so a new token is neither favoured nor ruled out before it has been seen."""
        if n <= 0:
            return
        self.encoder.add_tokens(n, init)
        bias = self.head.bias
        self.head.bias = nn.Parameter(
            torch.cat([bias, bias.mean().expand(n)]), requires_grad=bias.requires_grad
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                        allow_pickle: bool = False) -> MaskedLM:  # fmt: skip
        """Encoder from an HF-format directory, with the masked-LM head ``cls.predictions.*`` when the
        file has it (checked strictly) and a freshly initialised one otherwise."""
        encoder, other, source = BertModel.from_hf(path, dtype, allow_pickle)
        emb = encoder.embeddings
        table = emb.word.weight if emb.added is None else torch.cat([emb.word.weight, emb.added.weight])
        decoder = other.get("cls.predictions.decoder.weight")
        if decoder is not None and not torch.equal(decoder.to(table.dtype), table):
            raise CheckpointError(f"{source}: cls.predictions.decoder.weight differs from the word embeddings; "
                                  "an untied masked-LM decoder is not supported")  # fmt: skip
        head_state = mlm_head_from_hf(other)
        head = None
        if head_state:
            with torch.device("meta"):
                head = MaskedLMHead(encoder.config)
            load_state_strict(head, head_state, source + " (cls.predictions)", dtype)
        return cls(encoder, head).to(dtype)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write an HF ``BertForMaskedLM`` directory (see ``checkpoint_io.export_masked_lm``)."""
        export_masked_lm(self, path)
