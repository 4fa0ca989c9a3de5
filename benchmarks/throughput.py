"""Training throughput of ftcore, and of transformers (+ peft) on the identical job, in one run.

    python benchmarks/throughput.py --method lora --batch-size 32 --seq-len 128 --precision bf16 \\
        --steps 20 --baseline hf --json results.json

Each step is a full training step (forward, loss, backward, optimizer) on one fixed batch of random
token ids with no padding, the same batch for both sides. With ``--baseline hf`` the two implementations
alternate in ``--rounds`` blocks (ours, theirs, ours, ...) after their warm-up steps, so both see the same
machine state; medians are reported. ftcore uses its default AdamW (the
multi-tensor one; ``optim.fused`` is off by default), transformers ``torch.optim.AdamW(fused=True)``, the
Trainer's default ``adamw_torch_fused``.

Every record carries the work it timed (trainable parameters, dropout, optimizer groups, a digest of the
batch: tests assert both sides get the same), the model FLOPs per token of its side (benchmarks/flops.py:
transformers computes the whole last layer, ftcore one token of it for a [CLS]/pooler head), the achieved
FLOP/s as a fraction of a matmul peak measured in the same run and dtype (and MFU against the vendor's
peak where it is known), the peak memory each implementation adds to the process (resident set on CPU,
allocated on CUDA; taken while it warms up, before the next one is built), and the versions, commit and
machine (benchmarks/records.py). Both sides share one process and leave malloc's settings alone.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.flops import step_flops_per_token  # noqa: E402
from benchmarks.records import append_records, dropout_profile, environment  # noqa: E402
from ftcore.cli import fail  # noqa: E402
from ftcore.config import MethodConfig, ModelConfig  # noqa: E402
from ftcore.methods import apply_method  # noqa: E402
from ftcore.model import BertConfig, SequenceClassifier  # noqa: E402
from ftcore.optim import AdamW, param_groups  # noqa: E402
from ftcore.train.allocator import glibc  # noqa: E402
from ftcore.train.precision import autocast, resolve_device  # noqa: E402

METHODS = ("full", "freeze", "bitfit", "lora", "dora", "prefix", "prompt")
# Dense bf16/fp16 (and TF32 for fp32) tensor-core peaks, FLOP/s, by device-name substring.
VENDOR_PEAKS = {
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 156e12},
}
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def method_config(name: str, num_layers: int) -> MethodConfig:
    """The same settings on both sides: LoRA r=8, alpha=16 on query/value; 20 virtual tokens; freezing
    the embeddings and the bottom half of the layers."""
    return MethodConfig(
        name=name, r=8, alpha=16.0, dropout=0.1, targets=["query", "value"], freeze_layers=num_layers // 2
    )


def model_dir(spec: str, work: Path) -> Path:
    """``minilm``, ``bert-base`` (random init, BERT-base shape) or a local HF-format directory."""
    if spec == "minilm":
        return ModelConfig().resolve_path()
    if spec == "bert-base":
        from ftcore.model import BertModel

        path = work / "bert-base-random"
        if not (path / "config.json").is_file():
            torch.manual_seed(0)
            BertModel(BertConfig(**BERT_BASE)).save_pretrained(path)
        return path
    return Path(spec)


# --- the two implementations ----------------------------------------------------------------------


def build_ftcore(path: Path, method: str, device: torch.device):
    model = SequenceClassifier.from_pretrained(path, num_labels=2, pooling="pooler")
    apply_method(model, method_config(method, model.encoder.config.num_hidden_layers))
    model.to(device).train()
    optimizer = AdamW(param_groups(model, lr=1e-4, weight_decay=0.01))

    def forward(ids, labels):
        return model.loss(model(ids), labels)

    return model, optimizer, forward


def build_hf(path: Path, method: str, device: torch.device):
    import peft
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(
        path, num_labels=2, attn_implementation="sdpa"
    )
    cfg = method_config(method, model.config.num_hidden_layers)
    if method in ("lora", "dora"):
        lora = peft.LoraConfig(task_type="SEQ_CLS", r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                               target_modules=["query", "value"], use_dora=method == "dora")  # fmt: skip
        model = peft.get_peft_model(model, lora)
    elif method == "prefix":
        model = peft.get_peft_model(
            model, peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=cfg.num_virtual_tokens)
        )
    elif method == "prompt":
        model = peft.get_peft_model(
            model, peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=cfg.num_virtual_tokens)
        )
    elif method == "bitfit":
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith(".bias") or name.startswith("classifier."))
    elif method == "freeze":
        model.bert.embeddings.requires_grad_(False)
        for layer in model.bert.encoder.layer[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    model.to(device).train()
    decay = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and not n.endswith("bias") and "LayerNorm" not in n
    ]
    no_decay = [
        p for n, p in model.named_parameters() if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n)
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        fused=True,
    )

    def forward(ids, labels):
        return F.cross_entropy(model(input_ids=ids).logits.float(), labels)

    return model, optimizer, forward


# --- the work each side does ------------------------------------------------------------------------


def work_done(
    model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor
) -> dict:
    """What one training step of this side computes, to compare the two sides by."""
    groups: dict[str, int] = {}
    for g in optimizer.param_groups:
        key = f"lr={g['lr']:g} weight_decay={g['weight_decay']:g} betas={tuple(g['betas'])} eps={g['eps']:g}"
        groups[key] = groups.get(key, 0) + sum(p.numel() for p in g["params"])
    batch = hashlib.sha256(ids.cpu().numpy().tobytes() + labels.cpu().numpy().tobytes()).hexdigest()[:16]
    return {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "dropout": dropout_profile(model),
        "optimizer_groups": dict(sorted(groups.items())),
        "batch": batch,
    }


def check_same_work(works: list[dict]) -> None:
    """Stop (exit 2, one line) when the sides would time different jobs: a ratio of those means nothing."""
    differ = sorted(k for k in works[0] if any(w.get(k) != works[0][k] for w in works[1:]))
    if differ:
        fail(f"the two sides would do different work ({', '.join(differ)}): "
             + "; ".join(f"{k}: {[w.get(k) for w in works]}" for k in differ))  # fmt: skip


# --- measuring ---------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak resident set)


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory_mb(device: torch.device) -> float | None:
    """Memory in use now: allocated on CUDA, resident set on CPU (after handing freed heap back to the
    system, so that memory a previous implementation freed is not counted as the next one's)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    gc.collect()
    if (libc := glibc()) is not None:
        libc.malloc_trim(0)  # hand the heap's free memory back to the kernel now
    return _status_mb("VmRSS")


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak since the last ``reset_peak_memory``: max allocated on CUDA, peak resident set on CPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _status_mb("VmHWM")


def matmul_peak(device: torch.device, precision: str, repeats: int = 12) -> float:
    """FLOP/s of a large square matmul in the dtype the run uses (best of ``repeats``).

    Measured before and after the timed steps (the larger is kept): on a shared machine a single
    short measurement can land in a slow moment and inflate every MFU.
    """
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class Runner:
    """One implementation, ready to time training steps on a fixed batch."""

    def __init__(self, name, build, path, method, device, precision, ids, labels, compile_model):
        torch.manual_seed(0)
        self.name, self.device, self.precision = name, device, precision
        self.memory_before = memory_mb(device)
        self.peak_memory = None  # MB this implementation adds at its peak (model, optimizer, activations)
        self.model, self.optimizer, forward = build(path, method, device)
        self.forward = torch.compile(forward) if compile_model else forward
        self.ids, self.labels = ids, labels
        self.work = work_done(self.model, self.optimizer, ids, labels)
        self.times: list[float] = []
        self.compile_seconds = None

    def step(self) -> float:
        sync(self.device)
        start = time.perf_counter()
        with autocast(self.device, self.precision):
            loss = self.forward(self.ids, self.labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync(self.device)
        return time.perf_counter() - start

    def warm_up(self, steps: int, compiled: bool) -> None:
        reset_peak_memory(self.device)
        first = self.step()  # includes compilation with --compile
        self.compile_seconds = first if compiled else None
        for _ in range(steps - 1):
            self.step()
        peak = peak_memory_mb(self.device)
        if peak is not None and self.memory_before is not None:
            self.peak_memory = peak - self.memory_before

    def run(self, steps: int) -> None:
        self.times += [self.step() for _ in range(steps)]


def record(runner: Runner, args, flops, peak: float, vendor: float | None) -> dict:
    t = sorted(runner.times)
    median = statistics.median(t)
    q = statistics.quantiles(t, n=10) if len(t) >= 2 else [t[0]] * 9
    tokens = args.batch_size * args.seq_len
    achieved = flops.total * tokens / median
    env = environment(runner.device)
    return {
        "impl": runner.name,
        "method": args.method,
        "model": args.model,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "precision": args.precision,
        "device": str(runner.device),
        "compile": args.compile,
        "steps": len(t),
        "samples_per_s": args.batch_size / median,
        "tokens_per_s": tokens / median,
        "step_time_s": {"median": median, "p10": q[0], "p90": q[-1]},
        "peak_memory_mb": runner.peak_memory,
        "compile_seconds": runner.compile_seconds,
        "work": runner.work,
        "model_flops_per_token": flops.total,
        "achieved_flops_per_s": achieved,
        "matmul_peak_flops_per_s": peak,
        "matmul_peak_fraction": achieved / peak,
        "vendor_peak_flops_per_s": vendor,
        "mfu": achieved / vendor if vendor else None,
        "retain_memory": False,  # malloc's defaults on both sides (they share this process)
        "machine": machine(runner.device),
        "environment": env,
    }


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=METHODS, default="lora")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved blocks per implementation")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--model", default="minilm", help="minilm | bert-base (random init) | <HF-format dir>"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward+loss")
    parser.add_argument("--baseline", choices=("none", "hf"), default="none")
    parser.add_argument("--json", type=Path, help="append the records to this JSON list")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        parser.error("fp16 needs a CUDA device")
    work = Path(os.environ.get("FTCORE_BENCH_DIR", Path.home() / ".cache" / "ftcore-bench"))
    path = model_dir(args.model, work)
    bert = BertConfig.from_json(path / "config.json")
    freeze_layers = method_config(args.method, bert.num_hidden_layers).freeze_layers
    flops = {  # each side's own: ftcore runs the last layer for the pooled token only
        impl: step_flops_per_token(
            bert, args.seq_len, 2, args.method, freeze_layers, first_token_head=impl == "ftcore"
        )
        for impl in ("ftcore", "hf")
    }
    # One batch for both sides, drawn before either model is built (building consumes random numbers).
    generator = torch.Generator().manual_seed(0)
    vocab = bert.vocab_size
    ids = torch.randint(min(1000, vocab // 2), vocab, (args.batch_size, args.seq_len), generator=generator)
    labels = torch.randint(0, 2, (args.batch_size,), generator=generator)

    builders = [("ftcore", build_ftcore)] + ([("hf", build_hf)] if args.baseline == "hf" else [])
    runners = []
    for name, build in builders:  # built and warmed up one after the other: each peak memory is its own
        runners.append(Runner(name, build, path, args.method, device, args.precision, ids.to(device),
                              labels.to(device), args.compile))  # fmt: skip
        runners[-1].warm_up(max(1, args.warmup), args.compile)
    check_same_work([r.work for r in runners])
    peak_before = matmul_peak(device, args.precision)
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        for r in runners:
            r.run(per_round)
    peak = max(peak_before, matmul_peak(device, args.precision))
    vendor = next(
        (
            v[args.precision]
            for k, v in VENDOR_PEAKS.items()
            if device.type == "cuda" and k in machine(device)
        ),
        None,
    )
    records = [record(r, args, flops[r.name], peak, vendor) for r in runners]

    for rec in records:
        mfu = f", MFU {100 * rec['mfu']:.1f}%" if rec["mfu"] is not None else ""
        print(f"{rec['impl']:>7} {args.method} B={args.batch_size} L={args.seq_len} {args.precision}: "
              f"{rec['samples_per_s']:.1f} samples/s, step {rec['step_time_s']['median'] * 1e3:.1f} ms, "
              f"{100 * rec['matmul_peak_fraction']:.1f}% of measured matmul peak{mfu}")  # fmt: skip
    if len(records) == 2:
        print(f"ftcore / hf = {records[0]['samples_per_s'] / records[1]['samples_per_s']:.2f}x")
    if args.json:
        append_records(args.json, records)
    return records


if __name__ == "__main__":
    main()
