"""Label new texts: ``python scripts/predict.py run_dir=<dir> input=<file.txt|file.jsonl|-> [output=<file.jsonl|->]``.

Input: one text per line (``.txt`` or ``-`` for stdin), or JSON lines with the run's text field(s).
Output: one JSON object per input line, in order: ``text``, ``label`` (name), ``scores`` (probabilities
in label-id order; the predicted value for regression), and ``truncated`` when the text was longer
than ``data.max_length`` tokens. Texts are encoded as the run was trained (``data.truncation``, or with
``data.long_text=windows`` read whole as windows whose logits are pooled per text: never truncated).
Empty lines give ``label: null``. Adapters are merged first.
"""

import json
import sys
from pathlib import Path

import numpy as np

from ftcore import cli
from ftcore.data.dataset import encode_texts
from ftcore.errors import DataError
from ftcore.files import save_text
from ftcore.methods.lora import merge_lora
from ftcore.train.experiment import load_run
from ftcore.train.precision import resolve_device, resolve_precision
from ftcore.train.task import predict

DEFAULTS = {"run_dir": "", "input": "", "output": "-", "checkpoint": "best", "batch_size": 64}


def read_inputs(source: str, text_field: str, pair_field: str | None) -> list[tuple[str, str | None]]:
    """(text, text pair) per input line; JSON lines when the file ends in .jsonl."""
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(source, f"cannot read the input ({e})") from None
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
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args["output"] == "-":
        sys.stdout.write(lines)
    else:
        save_text(lines, args["output"])


if __name__ == "__main__":
    cli.guard(main)
