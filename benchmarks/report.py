"""Markdown tables from benchmark JSON, for README's performance section.

    python benchmarks/report.py results.json [epoch.json ...]

Records of ``throughput.py`` give one row per configuration (method, precision, batch, length):
ftcore's and transformers(+peft)'s samples/s, their ratio, ftcore's MFU against the fastest matmul rate
measured on that machine in that dtype (over all the records given), and the peak memory each adds to
the process (model, optimizer state, activations; both share one process, so it is indicative).
Records of ``epoch.py`` give one row per job: training time, evaluation time and test accuracy /
macro F1 of each side. The machine line comes from the records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def append_records(path: Path, records: list[dict]) -> None:
    """Add ``records`` to the JSON list in ``path`` (created if missing), as the benchmarks write them."""
    existing = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(existing + records, indent=1))


def _fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def best_peaks(records: list[dict]) -> dict[tuple, float]:
    """The fastest matmul rate measured per (machine, precision) across all records: on a shared machine
    one run's own measurement can land in a slow moment, and MFU must not be inflated by it."""
    peaks: dict[tuple, float] = {}
    for r in records:
        key = (r["machine"], r["precision"])
        peaks[key] = max(peaks.get(key, 0.0), r["matmul_peak_flops_per_s"])
    return peaks


def throughput_table(records: list[dict]) -> list[str]:
    peaks = best_peaks(records)
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        key = (r["method"], r["precision"], r["batch_size"], r["seq_len"], r["model"], r["compile"])
        rows.setdefault(key, {})[r["impl"]] = r  # a later record of the same configuration wins
    lines = [
        "| method | precision | batch × length | ftcore samples/s | transformers samples/s | ratio "
        "| ftcore MFU | peak MB added, ftcore / transformers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (method, precision, batch, length, _, compiled), impls in rows.items():
        ours, theirs = impls.get("ftcore", {}), impls.get("hf", {})
        ratio = f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}×" if ours and theirs else "–"
        name = method + (" (compiled)" if compiled else "")
        peak = peaks[(ours["machine"], precision)] if ours else None
        mfu = f"{100 * ours['achieved_flops_per_s'] / peak:.0f}%" if ours else "–"
        memory = f"{_fmt(ours.get('peak_memory_mb'), '.0f')} / {_fmt(theirs.get('peak_memory_mb'), '.0f')}"
        lines.append(
            f"| {name} | {precision} | {batch} × {length} | {_fmt(ours.get('samples_per_s'), '.1f')} "
            f"| {_fmt(theirs.get('samples_per_s'), '.1f')} | {ratio} | {mfu} | {memory} |"
        )
    return lines


def epoch_table(records: list[dict]) -> list[str]:
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["method"], r["precision"], r["epochs"]), {})[r["impl"]] = r
    lines = [
        "| job | side | training time | samples/s | evaluation time | test accuracy | test macro F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (method, precision, epochs), impls in rows.items():
        for impl, label in (("ftcore", "ftcore"), ("hf", "transformers Trainer")):
            r = impls.get(impl)
            if r is None:
                continue
            speedup = ""
            if impl == "ftcore" and "hf" in impls:
                speedup = f" (**{impls['hf']['train_seconds'] / r['train_seconds']:.2f}×** faster)"
            lines.append(
                f"| {method}, {precision}, {epochs} epoch{'s' if epochs > 1 else ''} | {label} "
                f"| {r['train_seconds']:.0f} s{speedup} | {r['train_samples_per_s']:.1f} | {r['eval_seconds']:.0f} s "
                f"| {r['test']['accuracy']:.4f} | {r['test']['f1_macro']:.4f} |"
            )
    return lines


def table(records: list[dict]) -> str:
    steps = [r for r in records if "seq_len" in r]
    epochs = [r for r in records if "seq_len" not in r]
    machines = sorted({r["machine"] for r in records})
    lines = [f"Machine: {'; '.join(machines)}", ""]
    if steps:
        lines += throughput_table(steps) + [""]
    if epochs:
        lines += epoch_table(epochs) + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path)
    args = parser.parse_args(argv)
    records = [r for path in args.json for r in json.loads(path.read_text())]
    text = table(records)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
