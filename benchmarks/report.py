"""Markdown tables from benchmark JSON, for README's performance section.

    python benchmarks/report.py results.json [more.json ...]

One row per configuration (method, precision, batch, length): ftcore and transformers(+peft)
samples/s, their ratio, ftcore's MFU against the measured matmul peak, and peak memory. The machine
line comes from the records themselves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(records: list[dict]) -> str:
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        key = (r["method"], r["precision"], r["batch_size"], r["seq_len"], r["model"], r["compile"])
        rows.setdefault(key, {})[r["impl"]] = r  # a later record of the same configuration wins
    machines = sorted({r["machine"] for r in records})
    lines = [
        f"Machine: {'; '.join(machines)}",
        "",
        "| method | precision | batch × length | ftcore samples/s | transformers samples/s | ratio | ftcore MFU | ftcore peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (method, precision, batch, length, _, compiled), impls in rows.items():
        ours, theirs = impls.get("ftcore"), impls.get("hf")
        ratio = f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}×" if ours and theirs else "–"
        name = method + (" (compiled)" if compiled else "")
        ours_speed = f"{ours['samples_per_s']:.1f}" if ours else "–"
        theirs_speed = f"{theirs['samples_per_s']:.1f}" if theirs else "–"
        mfu = f"{100 * ours['mfu']:.0f}%" if ours else "–"
        memory = f"{ours['peak_memory_mb']:.0f}" if ours and ours["peak_memory_mb"] else "–"
        lines.append(
            f"| {name} | {precision} | {batch} × {length} | {ours_speed} | {theirs_speed} | {ratio} | {mfu} | {memory} |"
        )
    return "\n".join(lines) + "\n"


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
