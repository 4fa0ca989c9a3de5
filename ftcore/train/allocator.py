"""Keep freed memory in the process, so a CPU training step does not page-fault its way through.

A training step allocates and frees the same activations every time. glibc's malloc hands large freed
blocks back to the kernel (``munmap``, or trimming the top of the heap), so the next step gets fresh
pages and takes a page fault on the first touch of every 4 KiB. Raising the mmap and trim thresholds
makes malloc keep those blocks and reuse them; once the heap has settled (a few steps) a step takes next
to no faults. The cost is that the process keeps its peak heap. What it buys is measured in
``benchmarks/`` (the epoch comparison with ``trainer.retain_memory`` on and off).

Only glibc on Linux has these knobs (``mallopt``); elsewhere :func:`retain_freed_memory` does nothing.
The setting lasts for the rest of the process.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # free memory at the top of the heap beyond this is given back to the kernel
M_MMAP_THRESHOLD = -3  # blocks at least this large come from their own mmap, unmapped on free
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit: larger blocks are always mmap'ed
TRIM_THRESHOLD = (1 << 31) - 1  # an int: 2 GiB


def glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None elsewhere (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only (musl has a no-op mallopt)
        return libc
    except (OSError, AttributeError):
        return None


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks up to 32 MiB (and the heap's free top) for reuse.

    Returns True where the setting took effect (Linux with glibc), False elsewhere.
    """
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


__all__ = ["glibc", "retain_freed_memory"]
