"""Label new texts: ``python scripts/predict.py run_dir=<dir> input=<file.txt|file.jsonl|-> [output=<file.jsonl|->]``.

Input: one text per line (``.txt`` or ``-`` for stdin), or JSON lines with the run's text field(s).
Output: one JSON object per input line, in order: ``text``, ``label`` (name), ``scores`` (probabilities
in label-id order; the predicted value for regression), and ``truncated`` when the text was longer
than ``data.max_length`` tokens. Texts are encoded as the run was trained (``data.truncation``, or with
``data.long_text=windows`` read whole as windows whose logits are pooled per text: never truncated).
Empty lines give ``label: null``. Adapters are merged first.

A token-classification run tags every token instead: a ``.txt`` line is split into tokens (characters for
the character-level People's Daily tasks, whitespace-separated words otherwise; ``split=char|words``
overrides), a ``.jsonl`` line may give its ``tokens`` list instead of the text. Output: ``text``,
``tokens``, ``tags`` and, with BIO tags, ``entities`` (``{"text", "type", "start", "end"}``, character
offsets into the text, end exclusive); with BMES tags, ``words`` (the same without a type). Sentences
longer than ``data.max_length`` tokens are read as windows: every token gets a tag.
"""

import json
import sys
from pathlib import Path

import numpy as np

from ftcore import cli
from ftcore.config import check_choice
from ftcore.data.dataset import encode_texts
from ftcore.data.tagging import CHARACTER_TASKS, TagSpace, encode_sentences, split_text
from ftcore.errors import DataError
from ftcore.files import save_text
from ftcore.methods.lora import merge_lora
from ftcore.metrics import bio_spans, word_spans
from ftcore.train.experiment import load_run
from ftcore.train.precision import resolve_device, resolve_precision
from ftcore.train.task import predict, predict_tags

DEFAULTS = {"run_dir": "", "input": "", "output": "-", "checkpoint": "best", "batch_size": 64, "split": ""}


def read_lines(source: str) -> list[str]:
    """The lines of a file, or of stdin for ``-``."""
    if source == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(source).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(source, f"cannot read the input ({e})") from None


def read_inputs(source: str, text_field: str, pair_field: str | None) -> list[tuple[str, str | None]]:
    """(text, text pair) per input line; JSON lines when the file ends in .jsonl."""
    lines = read_lines(source)
    if not source.endswith(".jsonl"):
        if pair_field is not None:
            raise DataError(
                source, f"this run reads text pairs ({pair_field!r}); give a .jsonl input with both fields"
            )
        return [(line.strip(), None) for line in lines]
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            rows.append(("", None))
            continue
        try:
            record = json.loads(line)
            rows.append((str(record[text_field]), None if pair_field is None else str(record[pair_field])))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(
                source, f"expected a JSON object with field {text_field!r} ({e})", number
            ) from None
    return rows


def read_tagging_inputs(source: str, tokens_field: str, by_character: bool) -> list[dict]:
    """Per input line ``{"text", "tokens", "spans"}``: the text split into tokens with their character
    offsets (``split_text``); a JSON line with ``tokens_field`` gives its tokens instead (offsets into
    them joined by spaces)."""

    def from_text(text: str) -> dict:
        tokens, spans = split_text(text, by_character)
        return {"text": text, "tokens": tokens, "spans": spans}

    if not source.endswith(".jsonl"):
        return [from_text(text) for text, _ in read_inputs(source, "text", None)]
    rows = []
    for number, line in enumerate(read_lines(source), start=1):
        try:
            record = json.loads(line) if line.strip() else {"text": ""}
        except json.JSONDecodeError as e:
            raise DataError(source, f"not a JSON object ({e})", number) from None
        if not isinstance(record, dict) or (tokens_field not in record and "text" not in record):
            raise DataError(
                source, f"expected a JSON object with {tokens_field!r} (a list) or 'text'", number
            )
        if tokens_field not in record:
            rows.append(from_text(str(record["text"])))
            continue
        tokens = record[tokens_field]
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError(source, f"field {tokens_field!r} must be a list of non-blank strings", number)
        starts = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]]).tolist()
        spans = [(a, a + len(t)) for a, t in zip(starts, tokens)]
        rows.append({"text": " ".join(tokens), "tokens": tokens, "spans": spans})
    return rows


def stretch(row: dict, a: int, b: int, **kind) -> dict:
    """Tokens ``a .. b-1`` of an input row as a stretch of its text, with character offsets (end exclusive)."""
    start, end = row["spans"][a][0], row["spans"][b - 1][1]
    return {"text": row["text"][start:end], **kind, "start": start, "end": end}


def tag_texts(run, model, args: dict, cfg, device, precision) -> list[dict]:
    """The output records of a token-classification run (see the module docstring)."""
    split = args["split"] or ("char" if cfg.data.name in CHARACTER_TASKS else "words")
    check_choice("split", split, ("char", "words"))
    rows = read_tagging_inputs(args["input"], cfg.data.tokens_field, split == "char")
    keep = [i for i, row in enumerate(rows) if row["tokens"]]
    predicted = []
    if keep:
        encoded = encode_sentences(run.tokenizer, [rows[i]["tokens"] for i in keep], cfg.data.max_length,
                                   cfg.data.window_stride)  # fmt: skip
        predicted, _ = predict_tags(
            model, encoded, args["batch_size"], device, precision, run.tokenizer.pad_id
        )
    results = [{"text": row["text"], "tokens": row["tokens"], "tags": []} for row in rows]
    for slot, i in enumerate(keep):
        tags = [run.labels.names[t] for t in predicted[slot]]
        row = rows[i]
        results[i]["tags"] = tags
        if run.labels.scheme == "bio":
            results[i]["entities"] = [stretch(row, a, b, type=kind) for kind, a, b in bio_spans(tags)]
        elif run.labels.scheme == "bmes":
            results[i]["words"] = [stretch(row, a, b) for a, b in word_spans(tags)]
    return results


def main() -> None:
    args, overrides = cli.parse_key_values(sys.argv[1:], DEFAULTS, required=("run_dir", "input"))
    if args["batch_size"] < 1:
        cli.fail(f"batch_size={args['batch_size']} must be at least 1")
    run = load_run(args["run_dir"], args["checkpoint"])
    cfg = cli.apply_overrides(run.config, overrides)
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    model = run.model
    merge_lora(model)  # no adapter cost at inference
    if model.encoder.prefix is not None:
        model.encoder.prefix.fold()
    model.to(device)

    if isinstance(run.labels, TagSpace):
        write(tag_texts(run, model, args, cfg, device, precision), args["output"])
        return
    if args["split"]:
        cli.fail("split= applies to token-classification runs only")
    rows = read_inputs(args["input"], cfg.data.text_field, cfg.data.text_pair_field)
    keep = [i for i, (text, _) in enumerate(rows) if text]
    outputs = np.zeros((0,))
    truncated = np.zeros(0, dtype=bool)
    if keep:
        pairs = [rows[i][1] or "" for i in keep] if cfg.data.text_pair_field else None
        encoded, documents = encode_texts(run.tokenizer, [rows[i][0] for i in keep], pairs, cfg.data)
        outputs, _ = predict(model, encoded, args["batch_size"], device, precision, run.tokenizer.pad_id,
                             documents=documents, window_pool=cfg.data.window_pool)  # fmt: skip
        truncated = encoded.truncated if documents is None else np.zeros(len(keep), dtype=bool)
    results: list[dict] = [{"text": text, "label": None, "scores": None} for text, _ in rows]
    for slot, i in enumerate(keep):
        scores = outputs[slot]
        if run.labels.problem == "single_label":
            label = run.labels.names[int(scores.argmax())]
        elif run.labels.problem == "multi_label":
            label = [run.labels.names[c] for c in np.flatnonzero(scores >= 0.5)]
        else:
            label = float(scores)
        results[i].update(label=label, scores=np.atleast_1d(scores).tolist())
        if truncated[slot]:
            results[i]["truncated"] = True
    write(results, args["output"])


def write(results: list[dict], output: str) -> None:
    """One JSON object per line, to stdout (``-``) or written whole to a file."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output == "-":
        sys.stdout.write(lines)
    else:
        save_text(lines, output)


if __name__ == "__main__":
    cli.guard(main)
