"""Score a trained run: ``python scripts/evaluate.py run_dir=<dir> [split=test|validation|train] [file=<new file>]``.

``file=`` scores a new labelled file (jsonl/csv/tsv by extension, or ``format=``; for a tagging run conll or
jsonl) with the run's fields, label map and encoding (truncation, or long texts as windows scored per text); ``data.*`` overrides
change how data is read (e.g. ``data.label_field=gold``).
Prints the metrics as JSON and writes them to ``<run_dir>/eval/<split or file name>.json``.
"""

import json
import sys
from pathlib import Path

from ftcore import cli
from ftcore.config import check_choice
from ftcore.data.dataset import build_task_data, encode_split, reader_options
from ftcore.data.sources import read_examples
from ftcore.data.tagging import TagSpace, build_tagging_data, encode_tagged_split, read_tagged_file
from ftcore.files import save_json
from ftcore.train.experiment import RUN_CHECKPOINTS, load_run
from ftcore.train.precision import resolve_device, resolve_precision
from ftcore.train.task import evaluate, evaluate_tags

DEFAULTS = {"run_dir": "", "split": "test", "file": "", "format": "", "checkpoint": "best", "output": ""}


def main() -> None:
    args, overrides = cli.parse_key_values(sys.argv[1:], DEFAULTS, required=("run_dir",))
    check_choice("split", args["split"], ("train", "validation", "test"))
    check_choice("checkpoint", args["checkpoint"], RUN_CHECKPOINTS)
    run = load_run(args["run_dir"], args["checkpoint"])
    cfg = cli.apply_overrides(run.config, overrides)
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    model = run.model.to(device)
    tagger = isinstance(run.labels, TagSpace)
    if args["file"]:
        path = Path(args["file"])
        fmt = args["format"] or path.suffix.lstrip(".")
        name = path.stem
        if tagger:
            sentences = read_tagged_file(path, fmt, cfg.data)
            split = encode_tagged_split("file", sentences, run.labels, run.tokenizer, cfg.data, str(path))
        else:
            examples = read_examples(path, fmt, **reader_options(cfg.data, fmt))
            split = encode_split("file", examples, run.labels, run.tokenizer, cfg.data, str(path))
    else:
        build = build_tagging_data if tagger else build_task_data
        split, name = build(cfg.data, run.tokenizer, run.labels).splits[args["split"]], args["split"]
    if tagger:
        metrics, _ = evaluate_tags(model, split, run.labels, cfg.trainer.eval_batch_size, device, precision,
                                   run.tokenizer.pad_id)  # fmt: skip
    else:
        metrics, _ = evaluate(model, split, run.labels, cfg.trainer.eval_batch_size, device, precision,
                              run.tokenizer.pad_id, window_pool=cfg.data.window_pool)  # fmt: skip
    out = Path(args["output"]) if args["output"] else Path(args["run_dir"]) / "eval" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json({"split": name, "checkpoint": str(run.checkpoint), "metrics": metrics}, out)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}, indent=2))


if __name__ == "__main__":
    cli.guard(main)
