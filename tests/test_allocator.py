"""trainer.retain_memory: glibc's malloc keeps freed blocks, so a repeated allocation faults no more."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from ftcore.train.allocator import _glibc, retain_freed_memory
from ftcore.train.experiment import train

glibc_only = pytest.mark.skipif(_glibc() is None, reason="mallopt is glibc's (Linux)")


def faults_of_touching(nbytes: int) -> int:
    """Minor page faults taken while allocating, writing and freeing a block of ``nbytes``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(nbytes, dtype=torch.uint8)
    block.fill_(1)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_retained_blocks_are_reused_without_page_faults():
    assert retain_freed_memory() is True
    size = 24 << 20  # 6,144 pages: above glibc's default mmap threshold, below the retained limit
    faults_of_touching(size)  # the heap grows once
    assert faults_of_touching(size) < 100  # then the same pages come back: no first touches


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="off Linux the setting does nothing")
def test_retain_is_a_no_op_off_linux():
    assert retain_freed_memory() is False


@glibc_only
@pytest.mark.parametrize("retain", [True, False])
def test_cpu_training_says_when_malloc_keeps_freed_memory(tiny_run_config, tmp_path, retain):
    cfg = tiny_run_config
    cfg.trainer.retain_memory = retain
    cfg.trainer.max_steps = 2
    train(cfg, tmp_path)
    said = "malloc keeps freed memory" in (tmp_path / "train.log").read_text()
    assert said is retain
