"""The classical baseline for token classification: a linear-chain CRF over character features.

    python benchmarks/crf_baseline.py [--task ner cws] [--c1 0.05] [--c2 0.01 0.1] [--max-iterations 100]
                                      [--max-train-sentences N] [--max-eval-sentences N] [--json out.json]

People's Daily January 1998 on the sentence split of ftcore's tagging data (``split_sentences``, seed 42,
80/10/10): named entities as character BIO tags (PER, LOC, ORG) and word segmentation as BMES tags.
python-crfsuite trains by L-BFGS for every (c1, c2) of the grid (c1 weighs the L1 penalty, c2 the L2);
the pair with the best validation F1 (of entities, of words) is scored once on test, by ftcore's metrics.
``--json`` appends one record per task (with versions, commit and machine).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import sys
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import pycrfsuite
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.records import append_records, environment  # noqa: E402
from ftcore.data.sources import read_peoples_daily  # noqa: E402
from ftcore.data.tagging import (  # noqa: E402
    TaggedSentence,
    peoples_daily_cws,
    peoples_daily_ner,
    split_sentences,
)
from ftcore.metrics import entity_scores, segmentation_scores, token_accuracy  # noqa: E402

BASELINE = "character-feature linear-chain CRF (python-crfsuite, L-BFGS)"
# task -> (the corpus as tagged characters, the span scores whose F1 picks c1 and c2)
TASKS = {"ner": (peoples_daily_ner, entity_scores), "cws": (peoples_daily_cws, segmentation_scores)}
BIGRAMS = ((-2, -1), (-1, 0), (0, 1), (1, 2), (-1, 1))  # character pairs, as offsets from the current one


def char_type(char: str) -> str:
    """``digit``, ``latin``, ``cjk``, ``punct`` or ``other``; full-width forms count as their ASCII kind."""
    category = unicodedata.category(char)
    if category == "Nd":
        return "digit"
    if category.startswith("P"):
        return "punct"
    name = unicodedata.name(char, "")
    if "LATIN" in name:
        return "latin"
    if "CJK" in name:
        return "cjk"
    return "other"


def char_features(chars: Sequence[str]) -> list[list[str]]:
    """The CRF attributes of each character of a sentence: the character, its neighbours up to two either
    side, five character bigrams around it and its type. Beyond the sentence's ends the neighbours are
    ``BOS`` and ``EOS``."""
    padded = ["BOS", "BOS", *chars, "EOS", "EOS"]
    features = []
    for i, char in enumerate(chars):
        window = {k: padded[i + 2 + k] for k in range(-2, 3)}
        features.append(
            ["bias", f"type={char_type(char)}"]
            + [f"c[{k}]={c}" for k, c in window.items()]
            + [f"c[{a},{b}]={window[a]}|{window[b]}" for a, b in BIGRAMS]
        )
    return features


def evaluate(model: Path, sentences: list[TaggedSentence], task: str) -> dict:
    """The span scores of ``task`` (precision, recall, F1, counts) and token accuracy of ``model``'s tags."""
    tagger = pycrfsuite.Tagger()
    tagger.open(str(model))
    true = [s.tags for s in sentences]
    pred = [tagger.tag(char_features(s.tokens)) for s in sentences]
    tagger.close()
    return {**TASKS[task][1](true, pred), "token_accuracy": token_accuracy(true, pred)}


def run_task(
    task: str, parts: dict[str, list[TaggedSentence]], args: argparse.Namespace, workdir: Path
) -> dict:
    """Train one CRF per (c1, c2), pick the best on validation, score it on test: the task's record."""
    trainer = pycrfsuite.Trainer(algorithm="lbfgs", verbose=False)
    for sentence in parts["train"]:
        trainer.append(char_features(sentence.tokens), sentence.tags)
    grid, models, val = [], {}, {}
    for c1, c2 in itertools.product(args.c1, args.c2):
        models[c1, c2] = workdir / f"{task}-c1={c1:g}-c2={c2:g}.crfsuite"
        trainer.set_params({"c1": c1, "c2": c2, "max_iterations": args.max_iterations})
        start = time.perf_counter()
        trainer.train(str(models[c1, c2]))
        seconds = time.perf_counter() - start
        val[c1, c2] = evaluate(models[c1, c2], parts["validation"], task)
        f1, iterations = val[c1, c2]["f1"], trainer.logparser.last_iteration["num"]
        grid.append({"c1": c1, "c2": c2, "val_f1": f1, "iterations": iterations, "train_seconds": seconds})
        print(f"{task} c1={c1:g} c2={c2:g}: val F1 {f1:.4f} ({iterations} iterations, {seconds:.0f} s)")
    best = max(grid, key=lambda g: g["val_f1"])
    c1, c2 = best["c1"], best["c2"]
    test = evaluate(models[c1, c2], parts["test"], task)
    print(f"{task}: {BASELINE}, c1={c1:g} c2={c2:g}: val F1 {best['val_f1']:.4f}, test F1 {test['f1']:.4f}, "
          f"test token accuracy {test['token_accuracy']:.4f}")  # fmt: skip
    return {
        "kind": "tagging_baseline",
        "task": task,
        "baseline": BASELINE,
        "c1": c1,
        "c2": c2,
        "max_iterations": args.max_iterations,
        "grid": grid,
        "val": val[c1, c2],
        "test": test,
        "train_sentences": len(parts["train"]),
        "train_seconds": best["train_seconds"],
        "eval_sentences": len(parts["test"]),
        "max_train_sentences": args.max_train_sentences,
        "max_eval_sentences": args.max_eval_sentences,
    }


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--c1", type=float, nargs="+", default=[0.05], help="L1 penalties to try")
    parser.add_argument("--c2", type=float, nargs="+", default=[0.01, 0.1], help="L2 penalties to try")
    parser.add_argument("--max-iterations", type=int, default=100, help="L-BFGS iterations at most")
    parser.add_argument("--max-train-sentences", type=int, help="the first N of the train split")
    parser.add_argument("--max-eval-sentences", type=int, help="the first N of validation and of test")
    parser.add_argument("--json", type=Path, help="append one record per task to this JSON list")
    args = parser.parse_args(argv)
    corpus = read_peoples_daily()
    indices, _ = split_sentences(len(corpus), seed=42, fractions=(0.8, 0.1, 0.1))
    limits = {
        "train": args.max_train_sentences,
        "validation": args.max_eval_sentences,
        "test": args.max_eval_sentences,
    }
    indices = {split: idx[: limits[split]] for split, idx in indices.items()}
    records = {}
    with tempfile.TemporaryDirectory() as workdir:
        for task in args.task:
            to_tags = TASKS[task][0]
            parts = {split: to_tags([corpus[i] for i in idx]) for split, idx in indices.items()}
            records[task] = run_task(task, parts, args, Path(workdir))
    if args.json:
        env = environment(torch.device("cpu"))
        env["versions"]["python-crfsuite"] = importlib.metadata.version("python-crfsuite")
        append_records(args.json, [{**record, "environment": env} for record in records.values()])
    return records


if __name__ == "__main__":
    main()
