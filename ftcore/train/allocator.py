"""Keep freed memory in the process, so a CPU training step does not page-fault its way through.

A training step allocates and frees the same activations every time. glibc's malloc hands large freed
blocks back to the kernel (``munmap``, or trimming the top of the heap), so the next step gets fresh
pages and takes a page fault on the first touch of every 4 KiB: about 45,000 faults, and 10–15% of a
B=32, L=128 MiniLM step on the 2-core machine these numbers come from (``benchmarks/throughput.py``'s
model and batches, timed with and without in alternating processes; faults read from ``getrusage``).
Raising the mmap and trim thresholds makes malloc keep those blocks and reuse them; once the heap has
settled (a few steps) a step takes next to no faults. The cost is that the process keeps its peak heap
(about 15% more resident memory at L=128). :func:`release_freed_memory` does the opposite, once
(``malloc_trim``).

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


def _glibc() -> ctypes.CDLL | None:
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
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the kernel now (``malloc_trim``); a no-op without glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


__all__ = ["release_freed_memory", "retain_freed_memory"]
