"""trainer.retain_memory: glibc's malloc keeps freed blocks, so a repeated allocation faults no more."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftcore.train.allocator import glibc, retain_freed_memory
from ftcore.train.experiment import train

glibc_only = pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's (Linux)")


# A training step in miniature: blocks of several sizes (the largest near the 32 MiB mmap limit) alive
# together, then all freed; after six warm-up steps (the heap settles), the minor page faults of five more.
STEPS = """
import resource, sys, torch
from ftcore.train.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
else:  # the opposite, made deterministic: every block of 1 MiB or more gets its own mmap, unmapped on free
    import ctypes
    assert ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
def step():
    blocks = [torch.empty(n << 20, dtype=torch.uint8).fill_(1) for n in (24, 8, 16, 30)]
    del blocks
for _ in range(6):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def step_faults(mode: str) -> int:
    """Faults of five miniature steps in a fresh interpreter (the setting is process-wide and final)."""
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@glibc_only
def test_retained_blocks_are_reused_without_page_faults():
    # five steps touch 5 x 78 MiB = 99,840 pages; memory handed back is faulted in again on every step
    assert step_faults("give-back") > 90_000  # (the measurement sees faults)
    assert step_faults("retain") < 100


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
