"""Heads on top of the encoder: sequence and token classification, and BERT's masked-LM head for
continued pretraining.

    hidden (B, L, H) ─► pooling (cls | pooler | mean) ─► Dropout ─► Linear(H, num_labels) ─► logits
    hidden (B, L, H) ─► Dropout ─► Linear(H, num_tags) ─► per-token logits (─► CRF)

and the loss that matches each problem type:

    single_label  cross-entropy over num_labels classes (optional class weights, label smoothing)
    multi_label   binary cross-entropy with logits, one independent sigmoid per label
    regression    mean squared error (num_labels targets, usually 1)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

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
from ftcore.model.crf import CRF
from ftcore.model.ops import Dropout

POOLINGS = ("cls", "pooler", "mean")
FIRST_TOKEN_POOLINGS = ("cls", "pooler")  # read the first token alone: the encoder may skip the rest
PROBLEMS = ("single_label", "multi_label", "regression")  # of sequence classification
TOKEN_CLASSIFICATION = "token_classification"  # data.problem of tagging tasks (TokenClassifier)
IGNORE_INDEX = -100  # the label of a position nothing is predicted at (torch's cross-entropy default)


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


def load_fitting_classifier(
    classifier: nn.Linear, other: dict[str, torch.Tensor], source: str, dtype: torch.dtype
) -> None:
    """Load a checkpoint's ``classifier.*`` tensors (e.g. of an exported HF classifier) into ``classifier``
    when they fit its shape; otherwise leave the fresh head as it is, as for any new task."""
    head = {k.removeprefix("classifier."): v for k, v in other.items() if k.startswith("classifier.")}
    expected = classifier.state_dict()
    if head and all(head.get(k) is not None and head[k].shape == v.shape for k, v in expected.items()):
        load_state_strict(classifier, head, source, dtype)


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
        load_fitting_classifier(model.head.classifier, other, source, dtype)
        return model.to(dtype)


class TokenHead(nn.Module):
    """Dropout then a linear map from every position's hidden state to ``num_tags`` logits, and the CRF
    over them when there is one (it trains with the head under every method)."""

    def __init__(self, hidden_size: int, num_tags: int, dropout: float, crf: CRF | None = None):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_tags)
        self.crf = crf

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


def labelled_positions(
    logits: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gather each row's positions where ``mask`` is True to the front, in order: ``(B, N, T)`` logits,
    ``(B, N)`` bool mask of the real entries (a prefix) and the ``(B, N)`` labels there, if given. The
    CRF reads a sentence as its words' first sub-tokens only, with no gaps."""
    counts = mask.sum(dim=1)
    n = max(int(counts.max()), 1) if len(mask) else 1
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :n]  # True positions first
    gathered = logits.gather(1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    real = torch.arange(n, device=mask.device) < counts.unsqueeze(1)
    return gathered, real, None if labels is None else labels.gather(1, order)


class TokenClassifier(nn.Module):
    """Encoder + per-token head: ``forward`` returns logits (B, L, num_tags) at every position.

    The loss reads the positions whose label is not -100 (each word's first sub-token): cross-entropy
    averaged over them, or, with a CRF, the negative log-likelihood of each row's tag sequence over
    those positions, summed and divided by their number (the same scale as the cross-entropy).

    Args:
        encoder: a :class:`BertModel` (its pooler is dropped: every position is read).
        num_tags: size of the tag set.
        classifier_dropout: dropout before the classifier; defaults to the encoder's hidden dropout.
        crf: a :class:`~ftcore.model.crf.CRF` over ``num_tags`` tags, or None for independent tags.
    """

    problem = TOKEN_CLASSIFICATION

    def __init__(
        self,
        encoder: BertModel,
        num_tags: int,
        classifier_dropout: float | None = None,
        crf: CRF | None = None,
    ):
        super().__init__()
        if num_tags < 1:
            raise ConfigError(f"num_tags={num_tags} must be at least 1")
        if crf is not None and crf.num_tags != num_tags:
            raise ConfigError(f"the CRF has {crf.num_tags} tags but the classifier {num_tags}")
        if classifier_dropout is None:
            classifier_dropout = encoder.config.hidden_dropout_prob
        encoder.pooler = None  # unused: no weight that never gets a gradient (DDP refuses those)
        self.encoder = encoder
        self.num_labels = num_tags
        self.classifier_dropout = classifier_dropout
        self.head = TokenHead(encoder.config.hidden_size, num_tags, classifier_dropout, crf)
        encoder._init_weights(self.head.classifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids))

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor,
        begins: torch.Tensor | None = None, ends: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Mean loss per labelled position. labels: (B, L) tag ids, -100 where nothing is predicted;
        ``begins`` / ``ends`` (B,): whether each row starts / ends its sentence (CRF only; None: all do)."""
        logits = logits.float()
        labelled = labels != IGNORE_INDEX
        if not labelled.any():  # windows holding only later sub-tokens: nothing to learn, but a graph
            return logits.sum() * 0.0
        if self.head.crf is None:
            return F.cross_entropy(
                logits.reshape(-1, self.num_labels), labels.reshape(-1), ignore_index=IGNORE_INDEX
            )
        rows = labelled.any(dim=1)  # a window may hold only later sub-tokens: nothing to score
        emissions, mask, tags = labelled_positions(logits[rows], labelled[rows], labels[rows])
        begins = None if begins is None else begins[rows]
        ends = None if ends is None else ends[rows]
        likelihood = self.head.crf.log_likelihood(emissions, tags, mask, begins, ends)
        return -likelihood.sum() / labelled.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The tag ids of each row's ``mask`` positions, in order: the per-position argmax, or the CRF's
        best sequence. ``logits`` (B, N, T) of whole sentences, ``mask`` (B, N) a prefix per row."""
        if self.head.crf is not None:
            return self.head.crf.decode(logits, mask)
        best = logits.argmax(dim=-1)
        return [row[:n] for row, n in zip(best.tolist(), mask.sum(dim=1).tolist())]

    def head_config(self) -> dict:
        """What, besides the encoder config, is needed to rebuild this model."""
        return {"num_labels": self.num_labels, "classifier_dropout": self.classifier_dropout,
                "crf": self.head.crf is not None}  # fmt: skip

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, num_tags: int, classifier_dropout: float | None = None,
                        crf: CRF | None = None, dtype: torch.dtype = torch.float32,
                        allow_pickle: bool = False) -> TokenClassifier:  # fmt: skip
        """Encoder from an HF-format directory + a new head; a ``classifier.*`` head in the file (e.g. an
        exported ``BertForTokenClassification``) is loaded when its shape fits ``num_tags``."""
        encoder, other, source = BertModel.from_hf(path, dtype, allow_pickle)
        model = cls(encoder, num_tags, classifier_dropout, crf)
        load_fitting_classifier(model.head.classifier, other, source, dtype)
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
    def add_tokens(
        self, n: int, init: str = "mean", glosses: Sequence[Sequence[Sequence[int]]] | None = None
    ) -> None:
        """Grow the vocabulary by ``n`` ids (see ``BertModel.add_tokens``); their output bias starts at the
        mean bias, so a new token is neither favoured nor ruled out before it has been seen."""
        if n <= 0:
            return
        self.encoder.add_tokens(n, init, glosses)
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
