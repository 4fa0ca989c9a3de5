"""evaluate / predict / export on a trained tiny run, through the scripts as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from conftest import run_script, write_sentiment_jsonl

from ftcore.methods.adapters import load_classifier
from ftcore.train.experiment import load_run
from ftcore.train.task import predict


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tiny_data, tmp_path_factory):
    """A LoRA run with BERT's pooler (so every export format applies)."""
    out = tmp_path_factory.mktemp("lora_run")
    args = [
        f"model.path={tiny_model_dir}", "model.pooling=pooler", "data=jsonl", f"data.train_file={tiny_data['train']}",
        f"data.validation_file={tiny_data['validation']}", f"data.test_file={tiny_data['test']}", "data.max_length=32",
        "+exp=lora", "method.targets=[query,value,intermediate]", "optim.lr=3e-3", "trainer.epochs=3",
        "trainer.batch_size=8", "trainer.precision=fp32", "trainer.device=cpu", "trainer.progress=false",
        f"hydra.run.dir={out}",
    ]  # fmt: skip
    done = run_script("train.py", *args)
    assert done.returncode == 0, done.stderr
    return out


def test_evaluate_reproduces_the_runs_test_metrics(lora_run):
    done = run_script("evaluate.py", f"run_dir={lora_run}", "split=test")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    written = json.loads((lora_run / "eval" / "test.json").read_text())["metrics"]
    final = json.loads((lora_run / "metrics.json").read_text())["test"]
    assert printed["accuracy"] == written["accuracy"] == final["accuracy"]
    assert written["confusion_matrix"] == final["confusion_matrix"]


def test_evaluate_a_new_file(lora_run, tmp_path):
    new = write_sentiment_jsonl(tmp_path / "new.jsonl", 20, seed=9)
    done = run_script("evaluate.py", f"run_dir={lora_run}", f"file={new}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_examples"] == 20
    assert (lora_run / "eval" / "new.json").is_file()


@pytest.mark.parametrize(
    "args, words",
    [
        (["split=dev"], "split='dev' is not valid"),
        (["colour=red"], "unknown key 'colour'"),
        (["data.max_length=abc"], "data.max_length"),
    ],
)
def test_evaluate_mistakes_exit_2(lora_run, args, words):
    done = run_script("evaluate.py", f"run_dir={lora_run}", *args)
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_predict_matches_the_models_own_outputs(lora_run, tmp_path):
    texts = ["good phone", "", "the screen is awful", " ".join(["very"] * 60) + " good"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_script(
        "predict.py",
        f"run_dir={lora_run}",
        f"input={tmp_path / 'in.txt'}",
        f"output={tmp_path / 'out.jsonl'}",
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [t.strip() for t in texts]
    assert rows[1]["label"] is None and rows[1]["scores"] is None
    assert rows[3].get("truncated") is True and "truncated" not in rows[0]

    run = load_run(lora_run)  # unmerged adapters, in-process
    kept = [t for t in texts if t]
    encoded = run.tokenizer.encode_batch(kept, max_length=run.config.data.max_length)
    probs, _ = predict(run.model, encoded, 4, torch.device("cpu"), "fp32")
    scores = np.array([r["scores"] for r in rows if r["text"]])
    assert np.abs(scores - probs).max() <= 1e-5
    assert [r["label"] for r in rows if r["text"]] == [run.labels.names[i] for i in probs.argmax(1)]


def test_predict_reads_stdin_jsonl_field(lora_run, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "great product"}) + "\n" + json.dumps({"text": "ugly"}) + "\n")
    done = run_script("predict.py", f"run_dir={lora_run}", f"input={src}")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["great product", "ugly"] and all(len(r["scores"]) == 2 for r in rows)
    src.write_text('{"txt": "x"}\n')
    done = run_script("predict.py", f"run_dir={lora_run}", f"input={src}")
    assert done.returncode == 2 and f"{src}:1:" in done.stderr


def run_logits(run_dir, ids, mask):
    run = load_run(run_dir)
    with torch.no_grad():
        return run.model(ids, mask)


def test_export_hf_loads_in_transformers_with_the_same_logits(lora_run, tmp_path):
    out = tmp_path / "hf"
    done = run_script("export.py", f"run_dir={lora_run}", "format=hf", f"out={out}")
    assert done.returncode == 0, done.stderr
    theirs = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    assert set(theirs.config.id2label.values()) == {"neg", "pos"}
    ids = torch.tensor([[2, 5, 20, 8, 3], [2, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask).logits
    assert (run_logits(lora_run, ids, mask) - ref).abs().max().item() <= 1e-5
    assert (out / "tokenizer.json").is_file() and (out / "labels.json").is_file()


def test_export_ftcore_is_a_standalone_merged_checkpoint(lora_run, tmp_path):
    out = tmp_path / "ftc"
    done = run_script("export.py", f"run_dir={lora_run}", "format=ftcore", f"out={out}")
    assert done.returncode == 0, done.stderr
    model = load_classifier(out).eval()
    assert not any("lora" in n for n, _ in model.named_parameters())
    ids = torch.tensor([[2, 5, 20, 8, 3], [2, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert (model(ids, mask) - run_logits(lora_run, ids, mask)).abs().max().item() <= 1e-5


def test_export_never_replaces_what_it_did_not_write(lora_run, tmp_path):
    done = run_script("export.py", f"run_dir={lora_run}", "format=ftcore", f"out={lora_run}")
    assert done.returncode == 2 and "overlaps run_dir" in done.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    done = run_script("export.py", f"run_dir={lora_run}", "format=ftcore", f"out={tmp_path / 'mine'}")
    assert done.returncode == 2 and "is not an earlier export" in done.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    for _ in range(2):  # an earlier export is replaced
        done = run_script("export.py", f"run_dir={lora_run}", "format=ftcore", f"out={tmp_path / 'exp'}")
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "exp" / "ftcore_export.json").is_file()


def test_export_mistakes_leave_nothing_behind(lora_run, tmp_path):
    done = run_script("export.py", f"run_dir={lora_run}", "format=onnx", f"out={tmp_path / 'x'}")
    assert done.returncode == 2 and "format='onnx' is not valid" in done.stderr
    (tmp_path / "not_a_run").mkdir()
    done = run_script("export.py", f"run_dir={tmp_path / 'not_a_run'}", "format=hf", f"out={tmp_path / 'x'}")
    assert done.returncode == 2 and "not a training run directory" in done.stderr
    assert not (tmp_path / "x").exists()


def test_export_peft_loads_in_peft_with_the_same_logits(lora_run, tiny_model_dir, tmp_path):
    peft = pytest.importorskip("peft")
    out = tmp_path / "peft"
    done = run_script("export.py", f"run_dir={lora_run}", "format=peft", f"out={out}")
    assert done.returncode == 0, done.stderr
    base = transformers.BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    theirs = peft.PeftModel.from_pretrained(base, out).eval()
    ids = torch.tensor([[2, 5, 20, 8, 3], [2, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask).logits
    assert (run_logits(lora_run, ids, mask) - ref).abs().max().item() <= 1e-5


def test_evaluate_scores_the_loss_with_the_runs_class_weights(tiny_model_dir, tiny_data, tmp_path):
    lines = tiny_data["train"].read_text().splitlines()
    skewed = [line for i, line in enumerate(lines) if '"pos"' in line or i % 3 == 0]  # 3:1 pos:neg
    (tmp_path / "train.jsonl").write_text("\n".join(skewed) + "\n")
    out = tmp_path / "run"
    done = run_script(
        "train.py", f"model.path={tiny_model_dir}", "data=jsonl", f"data.train_file={tmp_path / 'train.jsonl'}",
        f"data.validation_file={tiny_data['validation']}", f"data.test_file={tiny_data['test']}",
        "data.max_length=32", "data.class_weights=balanced", "+exp=lora", "trainer.epochs=1",
        "trainer.batch_size=8", "trainer.precision=fp32", "trainer.device=cpu", "trainer.progress=false",
        f"hydra.run.dir={out}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    weights = json.loads((out / "checkpoints" / "best" / "state.json").read_text())["class_weights"]
    assert len(weights) == 2 and max(weights) > 1.5 * min(weights)
    done = run_script("evaluate.py", f"run_dir={out}", "split=test")
    assert done.returncode == 0, done.stderr
    final = json.loads((out / "metrics.json").read_text())["test"]
    assert json.loads(done.stdout)["loss"] == pytest.approx(final["loss"], rel=1e-5)
