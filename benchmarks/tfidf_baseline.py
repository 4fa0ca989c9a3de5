"""The classical baseline on the review corpus: character n-gram TF-IDF + logistic regression.

    python benchmarks/tfidf_baseline.py [--ngrams 3] [--C 1 3 10] [--json baseline.json]

Same cleaned corpus and the same stratified 70/15/15 split as ``data=reviews``; the regularisation
strength is picked on validation, and test accuracy is reported once for that choice. ``--json``
appends the result (with versions, commit and machine) for ``report.py`` to print beside the presets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sklearn
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.records import append_records, environment  # noqa: E402
from ftcore.config import DataConfig  # noqa: E402
from ftcore.data.dataset import read_splits  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngrams", type=int, default=3, help="character n-grams from 1 to this")
    parser.add_argument("--C", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--json", type=Path, help="append the result to this JSON list")
    args = parser.parse_args(argv)
    raw, _, _ = read_splits(DataConfig(max_train_samples=args.max_train_samples))
    texts = {split: [e.text for e in examples] for split, examples in raw.items()}
    labels = {split: [e.label for e in examples] for split, examples in raw.items()}
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, args.ngrams), sublinear_tf=True, min_df=2)
    features = {"train": vectorizer.fit_transform(texts["train"])}
    features.update({s: vectorizer.transform(texts[s]) for s in ("validation", "test")})
    fits = [LogisticRegression(C=C, max_iter=2000).fit(features["train"], labels["train"]) for C in args.C]
    scores = [clf.score(features["validation"], labels["validation"]) for clf in fits]
    best = max(range(len(fits)), key=scores.__getitem__)
    result = {
        "kind": "baseline",
        "baseline": f"char 1-{args.ngrams}-gram TF-IDF + logistic regression",
        "C": args.C[best],
        "val_accuracy": scores[best],
        "test_accuracy": fits[best].score(features["test"], labels["test"]),
    }
    print(f"char 1-{args.ngrams}-gram TF-IDF + logistic regression, C={result['C']:g}: "
          f"val accuracy {result['val_accuracy']:.4f}, test accuracy {result['test_accuracy']:.4f}")  # fmt: skip
    if args.json:
        env = environment(torch.device("cpu"))
        env["versions"]["scikit-learn"] = sklearn.__version__
        append_records(
            args.json, [{**result, "max_train_samples": args.max_train_samples, "environment": env}]
        )
    return result


if __name__ == "__main__":
    main()
