"""Atomic file writes, used by everything that leaves a file behind (run directories, checkpoints, exports).

A file is written into a hidden temporary sibling, flushed to disk, then renamed over its final name,
and the directory entry is flushed too: a reader (or a run resumed after a crash) sees the old file or
the new one, never half of one. A write that fails removes its temporary file and raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file


def fsync(path: str | os.PathLike) -> None:
    """Flush ``path`` (a file or a directory entry table) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then move it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync(path.parent)


def save_safetensors(
    state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None
) -> None:
    """Atomically write tensors (made contiguous, moved to CPU) as safetensors."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def save_text(text: str, path: str | os.PathLike) -> None:
    """Atomically write a UTF-8 text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_json(obj, path: str | os.PathLike) -> None:
    """Atomically write an indented JSON file."""
    save_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", path)


def replace_dir(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary sibling directory, flush it to disk, then put it in place
    of ``path``: a reader sees the old directory or the new one, each complete (a crash between the two
    renames leaves the old one as ``<path>.prev``). A write that fails removes the temporary directory."""
    path = Path(path)
    tmp, prev = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".prev")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        for file in tmp.rglob("*"):
            if file.is_file():
                fsync(file)
        fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(path, prev)
    os.replace(tmp, path)
    fsync(path.parent)
    shutil.rmtree(prev, ignore_errors=True)
