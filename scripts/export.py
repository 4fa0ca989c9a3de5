"""Export a trained run: ``python scripts/export.py run_dir=<dir> format=<peft|hf|ftcore> out=<dir>``.

    peft     adapter_config.json + adapter_model.safetensors for peft (LoRA, DoRA, prefix tuning), the
             classifier in modules_to_save; load with PeftModel.from_pretrained over the same base model
    hf       a merged BertForSequenceClassification directory (needs model.pooling=pooler), or for a token
             classifier a BertForTokenClassification directory (a CRF's scores, which it has no place
             for, go beside it in crf.safetensors)
    ftcore   a merged standalone ftcore checkpoint (any pooling, any method, CRF and bigram embeddings
             included)

Every format also gets the run's tokenizer and labels.json, so the directory is self-contained.
"""

import shutil
import sys
from pathlib import Path

from ftcore import cli
from ftcore.config import check_choice
from ftcore.files import save_json, save_safetensors
from ftcore.methods.adapters import save_classifier
from ftcore.methods.lora import merge_lora
from ftcore.methods.peft_io import export_peft
from ftcore.model.checkpoint_io import export_hf, export_hf_token_classifier
from ftcore.model.heads import TokenClassifier
from ftcore.train.experiment import RUN_CHECKPOINTS, load_run

DEFAULTS = {"run_dir": "", "format": "", "out": "", "checkpoint": "best"}
CRF_WEIGHTS = "crf.safetensors"  # a CRF's transition/start/end scores beside an HF token classifier
MARKER = "ftcore_export.json"  # written last; an existing out= is replaced only if it carries one


def main() -> None:
    args, overrides = cli.parse_key_values(sys.argv[1:], DEFAULTS, required=("run_dir", "format", "out"))
    if overrides:
        cli.fail("export takes no data.* or trainer.* overrides")
    check_choice("format", args["format"], ("peft", "hf", "ftcore"))
    check_choice("checkpoint", args["checkpoint"], RUN_CHECKPOINTS)
    out = Path(args["out"])
    run_dir = Path(args["run_dir"]).resolve()
    if out.resolve() == run_dir or run_dir in out.resolve().parents or out.resolve() in run_dir.parents:
        cli.fail(f"out={out} overlaps run_dir={args['run_dir']}; export to a directory of its own")
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MARKER).is_file())):
        cli.fail(f"out={out} exists and is not an earlier export; choose a new or empty directory")
    run = load_run(args["run_dir"], args["checkpoint"])
    tagger = isinstance(run.model, TokenClassifier)
    if tagger and args["format"] == "peft":
        cli.fail("format=peft exports sequence classifiers; export this token classifier as hf or ftcore")
    if run.model.encoder.embeddings.bigrams is not None and args["format"] != "ftcore":
        cli.fail(f"format={args['format']} has no place for the run's bigram embeddings (model.bigrams=true); "
                 "export it as ftcore")  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")  # never leave a half-written export that looks complete
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if args["format"] == "peft":
            export_peft(run.model, run.config.method, run.base_model, tmp, final_path=out)
        else:
            merge_lora(run.model)
            if run.model.encoder.prefix is not None:
                run.model.encoder.prefix.fold()
            id2label = dict(enumerate(map(str, run.labels.names)))
            if args["format"] == "hf" and tagger:
                export_hf_token_classifier(run.model, tmp, id2label)
                if run.model.head.crf is not None:
                    save_safetensors(dict(run.model.head.crf.state_dict()), tmp / CRF_WEIGHTS)
            elif args["format"] == "hf":
                export_hf(run.model, tmp, id2label)
            else:
                save_classifier(run.model, tmp)
        run.tokenizer.save(tmp)
        run.labels.save(tmp / "labels.json")
        save_json(
            {"format": args["format"], "run_dir": str(run_dir), "checkpoint": str(run.checkpoint)},
            tmp / MARKER,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"exported {args['format']} to {out}")
    if args["format"] == "hf" and tagger and run.model.head.crf is not None:
        print(f"note: BertForTokenClassification has no CRF; its transition scores are in {out / CRF_WEIGHTS} "
              "(ftcore format), and transformers alone decodes each token by argmax")  # fmt: skip


if __name__ == "__main__":
    cli.guard(main)
