"""Training checkpoints: written atomically, verified on read, enough to resume bit for bit.

A checkpoint is a directory:

    model.safetensors       trained tensors (only the trainable ones when the base model is frozen)
    optimizer.safetensors   AdamW moments, keyed by parameter name
    rng.safetensors         torch CPU (and CUDA) generator states
    state.json              step/epoch position, schedule, scaler, python/numpy RNG, best-so-far,
                            config, and the SHA-256 of every file above

It is written into a temporary sibling, fsync'ed, then swapped in by renames, keeping the previous
checkpoint as ``<name>.prev``. A reader verifies the checksums and falls back to ``.prev`` when the
newest one is partial or corrupt, so a ``kill -9`` at any moment leaves a usable checkpoint behind.

:class:`RunCheckpoints` is what the training loop uses: it writes ``checkpoints/last`` (the whole
training state, every rank's RNG included) and ``checkpoints/best`` (weights and validation metrics),
and restores a run from ``last`` after checking it was written by the same config and process count.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ftcore.errors import CheckpointError
from ftcore.files import fsync
from ftcore.methods.apply import adapter_state
from ftcore.train.distributed import SINGLE_PROCESS, DistInfo, barrier, gather_objects

FORMAT = "ftcore.train_checkpoint/1"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- what goes in -----------------------------------------------------------------------------------


def rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON-able python/numpy generator states, torch generator states as tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    json_state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return json_state, tensors


def set_rng_state(json_state: dict, tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = json_state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = json_state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def optimizer_state(optimizer: torch.optim.Optimizer, names: dict[torch.Tensor, str]) -> tuple[dict, dict]:
    """(JSON part: groups' hyper-parameters and per-tensor step counts, tensors keyed ``name/slot``)."""
    tensors, steps = {}, {}
    for p, state in optimizer.state.items():
        for slot, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{names[p]}/{slot}"] = value
            else:
                steps[names[p]] = value
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"groups": groups, "steps": steps}, tensors


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    names: dict[torch.Tensor, str],
    json_state: dict,
    tensors: dict,
    source: str,
) -> None:
    saved_names = [g.get("names") for g in json_state["groups"]]
    current_names = [g.get("names") for g in optimizer.param_groups]
    if saved_names != current_names:
        raise CheckpointError(
            f"{source}: optimizer parameter groups differ from this run's; refusing to resume"
        )
    for group, saved in zip(optimizer.param_groups, json_state["groups"]):
        group.update({k: v for k, v in saved.items() if k != "names"})
    by_name = {n: p for p, n in names.items()}
    optimizer.state.clear()
    for key, value in tensors.items():
        name, slot = key.rsplit("/", 1)
        optimizer.state[by_name[name]][slot] = value.to(by_name[name].device)
    for name, step in json_state["steps"].items():
        optimizer.state[by_name[name]]["step"] = step


def load_model_tensors(model: torch.nn.Module, tensors: dict, trainable_only: bool, source) -> None:
    """Load a training checkpoint's tensors into ``model``, refusing any that do not fit it exactly."""
    expected = adapter_state(model) if trainable_only else model.state_dict()
    wrong = sorted(set(tensors) ^ set(expected))
    wrong += [k for k in tensors if k in expected and tensors[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{source}: tensors do not fit this model and method: {', '.join(wrong[:5])}")
    model.load_state_dict(tensors, strict=False)


# --- writing and reading ------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    model_tensors: dict[str, torch.Tensor],
    state: dict,
    optimizer_tensors: dict[str, torch.Tensor] | None = None,
    rng_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Atomically replace ``directory`` with a new checkpoint; the old one becomes ``<directory>.prev``.

    An ``OSError`` while writing (disk full, no permission) removes the partial temporary directory and
    raises ``CheckpointError`` naming the path; the previous checkpoints stay as they were.
    """
    final = Path(directory)
    tmp, prev = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".prev")
    files = {
        "model.safetensors": model_tensors,
        "optimizer.safetensors": optimizer_tensors or {},
        "rng.safetensors": rng_tensors or {},
    }
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        checksums = {}
        for filename, tensors in files.items():
            path = tmp / filename
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, path)
            fsync(path)
            checksums[filename] = _sha256(path)
        state = {"format": FORMAT, **state, "files": checksums}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        fsync(tmp / "state.json")
        fsync(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"{final}: could not write the checkpoint ({e}); the previous one is kept"
        ) from None
    if final.exists():
        shutil.rmtree(prev, ignore_errors=True)
        final.rename(prev)
    tmp.rename(final)
    fsync(final.parent)
    return final


def _read_verified(directory: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """state.json and the tensor files of one checkpoint, or CheckpointError if anything is off."""
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{directory}: unreadable state.json ({e})") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{directory}: not an ftcore training checkpoint (format {state.get('format')!r})"
        )
    tensors = {}
    for filename in TENSOR_FILES:
        path = directory / filename
        if not path.is_file() or _sha256(path) != state["files"].get(filename):
            raise CheckpointError(f"{path}: missing or corrupt (checksum mismatch)")
        try:
            tensors[filename] = load_file(path)
        except SafetensorError as e:
            raise CheckpointError(f"{path}: unreadable ({e})") from None
    return state, tensors


def load_latest(directory: str | os.PathLike, log=print) -> tuple[dict, dict] | None:
    """Newest valid checkpoint among ``directory`` and ``directory.prev``; None if there is none."""
    final = Path(directory)
    for candidate in (final, final.with_name(final.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return _read_verified(candidate)
        except CheckpointError as e:
            log(f"skipping checkpoint: {e}")
    return None


# --- a run's checkpoints ------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's state.json."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    window: int = 0  # next accumulation window within the epoch
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_eval_step: int = -1
    early_stopped: bool = False
    train_seconds: float = 0.0
    train_samples: int = 0
    train_tokens: int = 0

    def summary(self, dist: DistInfo) -> dict:
        """Steps, best step and training throughput over all ranks (the slowest rank's time)."""
        totals = gather_objects((self.train_samples, self.train_tokens, self.train_seconds), dist)
        seconds = max(t[2] for t in totals)
        return {
            "best_step": self.best_step, "steps": self.step, "epochs_completed": self.epoch,
            "early_stopped": self.early_stopped, "train_seconds": seconds,
            "train_samples_per_s": sum(t[0] for t in totals) / max(seconds, 1e-9),
            "train_tokens_per_s": sum(t[1] for t in totals) / max(seconds, 1e-9),
        }  # fmt: skip

    def advance(self, examples: int, tokens: int) -> None:
        """One optimizer step done over ``examples`` examples holding ``tokens`` tokens."""
        self.step += 1
        self.window += 1
        self.train_samples += examples
        self.train_tokens += tokens


def config_diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """``key (saved in the checkpoint, current now)`` for every leaf that differs."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key} ({a!r} in the checkpoint, {b!r} now)")
    return diffs


class RunCheckpoints:
    """``<run>/checkpoints/{last,best}`` of one training run.

    With a frozen base only the trainable tensors (adapters, head, added tokens) are written. ``state``
    is what every checkpoint's state.json carries besides the progress (the run's config as
    ``fingerprint``, the base-model pointer...).
    """

    def __init__(self, run_dir: Path, model: torch.nn.Module, optimizer, scaler, fingerprint: dict,
                 dist: DistInfo = SINGLE_PROCESS, extra_state: dict | None = None):  # fmt: skip
        self.last, self.best = run_dir / "checkpoints" / "last", run_dir / "checkpoints" / "best"
        self.model, self.optimizer, self.scaler, self.dist = model, optimizer, scaler, dist
        self.names = {p: n for n, p in model.named_parameters()}
        self.trainable_only = any(not p.requires_grad for p in model.parameters())
        self.adapter_names = set(adapter_state(model))
        self.state = {"config": fingerprint, "trainable_only": self.trainable_only, **(extra_state or {})}
        self.saved_step: int | None = None  # step of the newest checkpoint in last/

    def model_tensors(self) -> dict[str, torch.Tensor]:
        state = self.model.state_dict()
        return {n: state[n] for n in self.adapter_names} if self.trainable_only else state

    def save_last(self, progress: Progress) -> None:
        """Everything needed to continue at ``progress`` (each rank's RNG gathered to rank 0, which writes)."""
        if self.saved_step == progress.step:
            return  # this step is already on disk
        self.saved_step = progress.step
        rng_json, rng_tensors = rng_state()
        per_rank = gather_objects((rng_json, rng_tensors), self.dist)
        if self.dist.is_main:
            opt_json, opt_tensors = optimizer_state(self.optimizer, self.names)
            state = {"progress": asdict(progress), **self.state, "optimizer": opt_json,
                     "scaler": self.scaler.state_dict(), "rng": [r[0] for r in per_rank]}  # fmt: skip
            rng = {f"rank{r}.{k}": v for r, (_, tensors) in enumerate(per_rank) for k, v in tensors.items()}
            save_checkpoint(self.last, self.model_tensors(), state, opt_tensors, rng)

    def save_best(self, progress: Progress, val_metrics: dict) -> None:
        if self.dist.is_main:
            state = {"progress": asdict(progress), **self.state, "val": val_metrics}
            save_checkpoint(self.best, self.model_tensors(), state)

    def resume(self, log) -> Progress:
        """Restore model, optimizer, scaler and RNG from last/; a fresh Progress when there is none."""
        found = load_latest(self.last, log=log.warning)
        if found is None:
            log.warning("no complete checkpoint in %s: training starts from step 0", self.last)
            return Progress()
        state, tensors = found
        diffs = config_diff(state["config"], self.state["config"])
        if diffs:
            raise CheckpointError(f"{self.last} was written by a different run config: " + "; ".join(diffs))
        if len(state["rng"]) != self.dist.world_size:
            raise CheckpointError(
                f"{self.last} was written by {len(state['rng'])} processes, this run has {self.dist.world_size}"
            )
        load_model_tensors(self.model, tensors["model.safetensors"], self.trainable_only, self.last)
        load_optimizer_state(
            self.optimizer, self.names, state["optimizer"], tensors["optimizer.safetensors"], str(self.last)
        )
        prefix = f"rank{self.dist.rank}."
        mine = {
            k.removeprefix(prefix): v for k, v in tensors["rng.safetensors"].items() if k.startswith(prefix)
        }
        set_rng_state(state["rng"][self.dist.rank], mine)
        self.scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        self.saved_step = progress.step
        log.info("resumed from %s at step %d (epoch %d)", self.last, progress.step, progress.epoch)
        return progress

    def best_tensors(self, log) -> dict[str, torch.Tensor]:
        """The best checkpoint's weights as rank 0 wrote them (for a run that found its best before a restart)."""
        barrier(self.dist)
        best = load_latest(self.best, log=log.warning)
        return best[1]["model.safetensors"] if best is not None else {}
