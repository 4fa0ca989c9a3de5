"""Markdown tables from benchmark JSON, for README's performance section.

    python benchmarks/report.py results.json [epoch.json ...]

Records of ``throughput.py`` give one row per configuration (method, precision, batch, length):
ftcore's and transformers(+peft)'s samples/s, their ratio, each side's achieved FLOP/s as a percentage
of the fastest matmul rate measured on that machine in that dtype (over all the records given; "MFU" is
kept for vendor peaks), and the peak memory each adds to the process (model, optimizer state,
activations; both share one process, so it is indicative).
Records of ``epoch.py`` give one row per run, in file order: training time (and, for a Trainer run,
how much faster the ftcore run before it was), evaluation time, peak resident memory and test
accuracy / macro F1; with two or more pairs, a line under the table gives the median speed-up and each
side's mean test accuracy. Records of ``presets.py`` give one row per preset run, and a record of
``tfidf_baseline.py`` the classical baseline's line under them. Under the tables: the versions, commit, machine and malloc settings the
records were made with, one line per distinct environment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.records import describe  # noqa: E402


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
        "| % of measured matmul peak, ftcore / transformers | peak MB added, ftcore / transformers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (method, precision, batch, length, _, compiled), impls in rows.items():
        ours, theirs = impls.get("ftcore", {}), impls.get("hf", {})
        ratio = f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}×" if ours and theirs else "–"
        name = method + (" (compiled)" if compiled else "")
        share = " / ".join(
            f"{100 * r['achieved_flops_per_s'] / peaks[(r['machine'], precision)]:.0f}%" if r else "–"
            for r in (ours, theirs)
        )
        memory = f"{_fmt(ours.get('peak_memory_mb'), '.0f')} / {_fmt(theirs.get('peak_memory_mb'), '.0f')}"
        lines.append(
            f"| {name} | {precision} | {batch} × {length} | {_fmt(ours.get('samples_per_s'), '.1f')} "
            f"| {_fmt(theirs.get('samples_per_s'), '.1f')} | {ratio} | {share} | {memory} |"
        )
    return lines


def _epoch_job(r: dict) -> tuple:
    """What makes two epoch records runs of the same job (seed included, where recorded)."""
    return r["method"], r["precision"], r["epochs"], r.get("seed")


def epoch_table(records: list[dict]) -> list[str]:
    """One row per run, in file order; an ftcore run is compared with the Trainer runs that follow it."""
    lines = [
        "| job | side | training time | ftcore faster by | samples/s | evaluation time | peak RSS "
        "| test accuracy | test macro F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ours, pairs = None, []
    for r in records:
        epochs = r["epochs"]
        job = f"{r['method']}, {r['precision']}, {epochs} epoch{'s' if epochs > 1 else ''}"
        if "seed" in r:
            job += f", seed {r['seed']}"
        if r["impl"] == "ftcore":
            ours, side, faster = r, "ftcore", ""
        else:
            side = "transformers Trainer" + (
                ", malloc keeping freed memory" if r.get("hf_retain_memory") else ""
            )
            same_job = ours is not None and _epoch_job(ours) == _epoch_job(r)
            faster = f"**{r['train_seconds'] / ours['train_seconds']:.2f}×**" if same_job else ""
            if same_job and not r.get("hf_retain_memory"):
                pairs.append((ours, r))
        rss = f"{r['peak_rss_mb'] / 1024:.1f} GB" if "peak_rss_mb" in r else ""
        lines.append(
            f"| {job} | {side} | {r['train_seconds']:.0f} s | {faster} | {r['train_samples_per_s']:.1f} "
            f"| {r['eval_seconds']:.0f} s | {rss} | {r['test']['accuracy']:.4f} | {r['test']['f1_macro']:.4f} |"
        )
    if len(pairs) >= 2:
        ratios = sorted(hf["train_seconds"] / ft["train_seconds"] for ft, hf in pairs)
        accuracy = [sum(p[i]["test"]["accuracy"] for p in pairs) / len(pairs) for i in (0, 1)]
        lines += [
            "",
            f"Over {len(pairs)} pairs: ftcore faster by {statistics.median(ratios):.2f}× (median; "
            f"{ratios[0]:.2f}–{ratios[-1]:.2f}×), mean test accuracy ftcore {accuracy[0]:.4f}, "
            f"Trainer {accuracy[1]:.4f}.",
        ]
    return lines


PRETRAINING_COLUMNS = " pretraining | masked-token accuracy | pretraining wall time | total wall time |"


def pretraining_cells(r: dict) -> str:
    """A run's :data:`PRETRAINING_COLUMNS`: what masked-LM pretraining read first, what it reached, and the
    whole path's time (``none`` and the run's own time for a run from the checkpoint as it came)."""
    p = r.get("pretraining")
    if p is None:
        return f" none | | | {r['wall_seconds'] / 60:.1f} min |"
    return (f" {' '.join(p['overrides']) or 'defaults'} | {p['masked_accuracy_before']:.3f} → "
            f"{p['val']['masked_accuracy']:.3f} | {p['wall_seconds'] / 60:.1f} min "
            f"| {(p['wall_seconds'] + r['wall_seconds']) / 60:.1f} min |")  # fmt: skip


def preset_table(records: list[dict], baselines: list[dict]) -> list[str]:
    """One row per preset run, in file order; the classical baseline on the same split under it."""
    pretrained = any(r.get("pretraining") for r in records)
    head = "| preset | overrides | trainable parameters | val accuracy | test accuracy | test macro F1 | test ROC-AUC "
    head += "| train samples/s | wall time |"
    if pretrained:
        head += PRETRAINING_COLUMNS
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in records:
        share = 100 * r["trainable_parameters"] / r["total_parameters"]
        row = (
            f"| {r['preset']} | {' '.join(r['overrides'])} | {r['trainable_parameters']:,} ({share:.3g}%) "
            f"| {r['val']['accuracy']:.4f} | {r['test']['accuracy']:.4f} | {r['test']['f1_macro']:.4f} "
            f"| {_fmt(r['test'].get('roc_auc'), '.4f')} | {r['train_samples_per_s']:.1f} "
            f"| {r['wall_seconds'] / 60:.1f} min |"
        )
        lines.append(row + (pretraining_cells(r) if pretrained else ""))
    for b in baselines:
        lines += ["", f"Classical baseline on the same split: {b['baseline']} (C={b['C']:g}, picked on validation): "
                      f"val accuracy {b['val_accuracy']:.4f}, test accuracy {b['test_accuracy']:.4f}."]  # fmt: skip
    return lines


def tagging_table(records: list[dict], baselines: list[dict]) -> list[str]:
    """Token-classification runs (entity or word F1 by their tag scheme), then the CRF baseline of each task."""
    head = ("| preset | overrides | trainable parameters | metric | val | test | test precision / recall "
            "| test token accuracy | train samples/s | wall time |")  # fmt: skip
    pretrained = any(r.get("pretraining") for r in records)
    if pretrained:
        head += PRETRAINING_COLUMNS
    lines = [head, "|" + " --- |" * (head.count("|") - 1)] if records else []
    for r in records:
        metric, kind = r["metric"], r["metric"].split("_")[0]
        share = 100 * r["trainable_parameters"] / r["total_parameters"]
        lines.append(
            f"| {r['preset']} | {' '.join(r['overrides'])} | {r['trainable_parameters']:,} ({share:.3g}%) | {metric} "
            f"| {r['val'][metric]:.4f} | {r['test'][metric]:.4f} | {r['test'][kind + '_precision']:.4f} / "
            f"{r['test'][kind + '_recall']:.4f} | {r['test']['token_accuracy']:.4f} "
            f"| {r['train_samples_per_s']:.1f} | {r['wall_seconds'] / 60:.1f} min |"
            + (pretraining_cells(r) if pretrained else "")
        )
    for b in baselines:
        what = "entity" if b["task"] == "ner" else "word"
        if lines:
            lines.append("")
        lines.append(f"Classical baseline, {b['task']}: {b['baseline']} (c1={b['c1']:g}, c2={b['c2']:g}, picked on "
                     f"validation): val {what} F1 {b['val']['f1']:.4f}, test {what} F1 {b['test']['f1']:.4f} "
                     f"(trained in {b['train_seconds'] / 60:.1f} min).")  # fmt: skip
    return lines


def serve_table(records: list[dict], ceiling: list[dict]) -> list[str]:
    """The load test: per client count and mode, the median over rounds of throughput and latency, with
    every round's dropped and wrong answers summed; then the model alone at each batch size."""
    import statistics

    head = "| clients | mode | requests/s | × single | p50 ms | p95 ms | p99 ms | mean batch | dropped | wrong | rounds |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)] if records else []
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["clients"], r["mode"]), []).append(r)

    def median(rows: list[dict], key: str, sub: str | None = None) -> float:
        return statistics.median(r[key][sub] if sub else r[key] for r in rows)

    for (clients, mode), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "single")):
        single = groups.get((clients, "single"))
        ratio = median(rows, "requests_per_s") / median(single, "requests_per_s") if single else None
        lines.append(
            f"| {clients} | {mode} | {median(rows, 'requests_per_s'):.1f} | {_fmt(ratio, '.2f')}× "
            f"| {median(rows, 'latency_ms', 'p50'):.0f} | {median(rows, 'latency_ms', 'p95'):.0f} "
            f"| {median(rows, 'latency_ms', 'p99'):.0f} | {median(rows, 'mean_batch_size'):.1f} "
            f"| {sum(r['dropped'] for r in rows)} | {sum(r['wrong'] for r in rows)} | {len(rows)} |"
        )
    sizes: dict[int, list[float]] = {}
    for r in ceiling:
        sizes.setdefault(r["batch_size"], []).append(r["texts_per_s"])
    if sizes:
        parts = [f"batch {size}: {statistics.median(v):.1f} texts/s" for size, v in sorted(sizes.items())]
        first = statistics.median(sizes[min(sizes)])
        gain = statistics.median(sizes[max(sizes)]) / first
        lines += ["", f"The model alone (no server, median of {len(sizes[min(sizes)])} rounds): {'; '.join(parts)} "
                      f"({gain:.2f}× from batching)."]  # fmt: skip
    return lines


def environment_lines(records: list[dict]) -> list[str]:
    """One line per distinct environment (versions, commit, machine) with the malloc settings seen in it."""
    seen: dict[str, set[str]] = {}
    for r in records:
        env = describe(r["environment"]) if "environment" in r else f"{r['machine']} (versions not recorded)"
        settings = seen.setdefault(env, set())
        if "impl" in r:  # a speed comparison: each side's malloc setting matters
            side = "ftcore" if r["impl"] == "ftcore" else "transformers"
            settings.add(f"{side} malloc {'keeps freed memory' if r.get('retain_memory') else 'default'}")
    return [f"Measured with {env}" + (f"; {', '.join(sorted(s))}." if s else ".") for env, s in seen.items()]


def table(records: list[dict]) -> str:
    steps = [r for r in records if "seq_len" in r]
    epochs = [r for r in records if "impl" in r and "seq_len" not in r]
    presets = [r for r in records if r.get("kind") == "preset" and "token_accuracy" not in r["test"]]
    taggers = [r for r in records if r.get("kind") == "preset" and "token_accuracy" in r["test"]]
    baselines = [r for r in records if r.get("kind") == "baseline"]
    tagging_baselines = [r for r in records if r.get("kind") == "tagging_baseline"]
    served = [r for r in records if r.get("kind") == "serve_load"]
    ceiling = [r for r in records if r.get("kind") == "serve_model_ceiling"]
    lines = []
    if steps:
        lines += throughput_table(steps) + [""] + environment_lines(steps) + [""]
    if epochs:
        lines += epoch_table(epochs) + [""] + environment_lines(epochs) + [""]
    if presets or baselines:
        lines += preset_table(presets, baselines) + [""] + environment_lines(presets + baselines) + [""]
    if taggers or tagging_baselines:
        lines += tagging_table(taggers, tagging_baselines) + [""]
        lines += environment_lines(taggers + tagging_baselines) + [""]
    if served or ceiling:
        lines += serve_table(served, ceiling) + [""] + environment_lines(served + ceiling) + [""]
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
