"""The benchmark harness: FLOP counting by hand, and a 2-step run of both implementations (no timing asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import report, throughput
from benchmarks.flops import step_flops_per_token


def test_flop_count_matches_a_hand_count(tiny_config):
    # H=32, I=37, N=2 layers, L=10, C=2 labels; first the whole last layer (as transformers computes it)
    dense = 2 * (4 * 32 * 32 + 2 * 32 * 37)  # 12,928 per token and layer
    attention = 2 * 2 * 10 * 32  # 1,280
    head = (2 * 32 * 32 + 2 * 32 * 2) / 10  # pooler + classifier, once per sequence of 10
    whole = dict(seq_len=10, num_labels=2, first_token_head=False)
    full = step_flops_per_token(tiny_config, method="full", **whole)
    assert full.forward == 2 * (dense + attention) + head == 28633.6
    assert full.backward == 2 * (dense + 2 * attention) + 2 * dense + 2 * head
    assert full.total == pytest.approx(3 * full.forward, rel=0.05)  # the usual "3x forward" rule
    qkv = 2 * 3 * 32 * 32  # the input gradient of the query/key/value projections, per token
    lora = step_flops_per_token(tiny_config, method="lora", **whole)
    # no base weight gradients, and no input gradient for layer 0's projections (frozen embeddings)
    assert lora.backward == 2 * (dense + 2 * attention) - qkv + 2 * head
    for method in ("bitfit", "prompt"):  # the embeddings' LayerNorm bias / the prompt need that gradient
        assert step_flops_per_token(tiny_config, method=method, **whole).backward == lora.backward + qkv
    frozen = step_flops_per_token(tiny_config, method="freeze", freeze_layers=1, **whole)
    assert frozen.backward == 1 * (dense + 2 * attention) - qkv + 1 * dense + 2 * head
    # a one-token head: the last layer projects keys and values (2 * 2 * 32 * 32 per token) for all 10
    # tokens, and the query, output projection, feed-forward and attention for one of them
    last_dense = 2 * 2 * 32 * 32 + (2 * 2 * 32 * 32 + 2 * 2 * 32 * 37) / 10  # 4,096 + 883.2
    last_attention = 2 * 2 * 10 * 32 / 10  # 128
    one = step_flops_per_token(tiny_config, seq_len=10, num_labels=2, method="full")
    assert one.forward == pytest.approx(dense + attention + last_dense + last_attention + head)
    assert one.forward == pytest.approx(19532.8)  # 14,208 + 4,979.2 + 128 + 217.6
    assert one.backward == pytest.approx(
        (dense + 2 * attention) + (last_dense + 2 * last_attention) + dense + last_dense + 2 * head
    )
    top_only = step_flops_per_token(tiny_config, seq_len=10, num_labels=2, method="freeze", freeze_layers=1)
    last_qkv = 2 * 2 * 32 * 32 + 2 * 32 * 32 / 10  # keys and values of all 10 tokens, one query
    assert top_only.backward == pytest.approx(
        (last_dense + 2 * last_attention) - last_qkv + last_dense + 2 * head
    )


def step_args(tiny_model_dir, tmp_path, method):
    return ["--model", str(tiny_model_dir), "--method", method, "--batch-size", "2", "--seq-len", "8",
            "--precision", "fp32", "--device", "cpu", "--steps", "2", "--warmup", "1", "--rounds", "1",
            "--baseline", "hf", "--json", str(tmp_path / "bench.json")]  # fmt: skip


@pytest.mark.parametrize("method", throughput.METHODS)
def test_both_sides_time_the_same_job_for_every_method(tiny_model_dir, tmp_path, method):
    records = throughput.main(step_args(tiny_model_dir, tmp_path, method))
    ours, theirs = records
    assert [ours["impl"], theirs["impl"]] == ["ftcore", "hf"]
    # the same trainable tensors, dropout, optimizer groups (lr, decay, betas, eps) and batch, as many steps
    assert ours["work"] == theirs["work"] and ours["steps"] == theirs["steps"] == 2
    work = ours["work"]
    assert work["trainable_parameters"] > 0 and work["dropout"]["hidden"] == [0.1]
    if method in ("lora", "dora"):
        assert work["dropout"]["adapter"] == [0.1]
    assert sum(work["optimizer_groups"].values()) == work["trainable_parameters"]
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved == json.loads(json.dumps(records))
    for r in records:
        assert r["tokens_per_s"] == pytest.approx(8 * r["samples_per_s"]) and r["samples_per_s"] > 0
        assert r["step_time_s"]["p10"] <= r["step_time_s"]["median"] <= r["step_time_s"]["p90"]
        assert r["achieved_flops_per_s"] == pytest.approx(r["model_flops_per_token"] * r["tokens_per_s"])
        assert r["matmul_peak_fraction"] == pytest.approx(
            r["achieved_flops_per_s"] / r["matmul_peak_flops_per_s"]
        )
        assert r["mfu"] is None  # no vendor peak for a CPU
        env = r["environment"]
        assert env["versions"]["torch"] == torch.__version__ and env["versions"]["peft"]
        assert env["threads"] == torch.get_num_threads() and env["cpu"] and r["retain_memory"] is False
    # transformers computes the whole last layer, ftcore the pooled token's share of it
    assert theirs["model_flops_per_token"] > ours["model_flops_per_token"]
    text = report.main([str(tmp_path / "bench.json")])
    assert f"| {method} | fp32 | 2 × 8 |" in text and "% of measured matmul peak" in text
    assert "MFU" not in text and f"torch {torch.__version__}" in text


@pytest.mark.parametrize(
    "change",
    [
        ("trainable_parameters", lambda model: model.classifier.requires_grad_(False)),
        ("dropout", lambda model: setattr(model.dropout, "p", 0.2)),
        ("optimizer_groups", None),
    ],
)
def test_a_side_given_different_work_is_refused(tiny_model_dir, tmp_path, monkeypatch, capsys, change):
    key, alter = change
    build = throughput.build_hf

    def altered(path, method, device):
        model, optimizer, forward = build(path, method, device)
        if alter:
            alter(model)
        else:
            optimizer.param_groups[0]["lr"] *= 2
        return model, optimizer, forward

    monkeypatch.setattr(throughput, "build_hf", altered)
    with pytest.raises(SystemExit) as e:
        throughput.main(step_args(tiny_model_dir, tmp_path, "full"))
    err = capsys.readouterr().err.splitlines()[-1]  # (after transformers' loading messages)
    assert e.value.code == 2
    assert err.startswith(f"error: the two sides would do different work ({key}): {key}: [")
    assert not (tmp_path / "bench.json").exists()


def test_tfidf_baseline_runs_on_the_review_split(tmp_path):
    from benchmarks import tfidf_baseline

    out = tmp_path / "baseline.json"
    args = ["--ngrams", "2", "--C", "1", "--max-train-samples", "2000", "--json", str(out)]
    result = tfidf_baseline.main(args)
    assert result["C"] == 1.0 and 0.6 < result["test_accuracy"] < 1.0 and 0.6 < result["val_accuracy"] < 1.0
    (saved,) = json.loads(out.read_text())
    assert (
        saved["test_accuracy"] == result["test_accuracy"] and saved["environment"]["versions"]["scikit-learn"]
    )
    text = report.main([str(out)])
    assert (
        "Classical baseline on the same split: char 1-2-gram TF-IDF + logistic regression (C=1, picked on "
        f"validation): val accuracy {result['val_accuracy']:.4f}, test accuracy {result['test_accuracy']:.4f}."
    ) in text


def test_presets_harness_records_what_each_train_py_run_reached(tiny_cli_args, tmp_path):
    from benchmarks import presets

    out = tmp_path / "presets.json"
    records = presets.main(["full", "bitfit", *tiny_cli_args, "trainer.epochs=1", "--json", str(out),
                            "--work-dir", str(tmp_path)])  # fmt: skip
    assert [r["preset"] for r in records] == ["full", "bitfit"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    for r in records:
        metrics = json.loads((tmp_path / r["preset"] / "metrics.json").read_text())
        assert (
            r["test"]["accuracy"] == metrics["test"]["accuracy"]
            and r["val"]["loss"] == metrics["val"]["loss"]
        )
        assert r["epochs_completed"] == 1 and r["wall_seconds"] > 0 and r["peak_rss_mb"] > 50
        assert r["environment"]["git_commit"] and "trainer.epochs=1" in r["overrides"]
        assert r["data"]["counts"] == {"train": 96, "validation": 32, "test": 32}
        assert r["added_tokens"] > 0 and r["unk_percent"][1] <= r["unk_percent"][0]  # presets extend it
    full, bitfit = records
    assert full["trainable_parameters"] == full["total_parameters"] > bitfit["trainable_parameters"] > 0
    text = report.main([str(out)])
    assert f"| full | {' '.join(full['overrides'])} | {full['trainable_parameters']:,} (100%) |" in text
    assert f"| {bitfit['test']['accuracy']:.4f} |" in text


def test_presets_harness_stops_on_a_failed_run(tiny_cli_args, tmp_path, capsys):
    from benchmarks import presets

    with pytest.raises(SystemExit) as e:
        presets.main(["full", *tiny_cli_args, "data.train_file=missing.jsonl", "--work-dir", str(tmp_path)])
    assert e.value.code == 2 and "+exp=full failed (exit 2)" in capsys.readouterr().err


def tiny_overrides(tiny_model_dir, tiny_data, *extra):
    return [
        f"model.path={tiny_model_dir}", "data=jsonl", f"data.train_file={tiny_data['train']}",
        f"data.validation_file={tiny_data['validation']}", f"data.test_file={tiny_data['test']}",
        "data.max_length=32", "trainer.precision=fp32", "trainer.device=cpu", "trainer.batch_size=8", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def epoch_data(tiny_data, tmp_path_factory):
    """The tiny task with 1,536 training examples: one epoch (192 steps of 8) learns it for every seed tried."""
    from conftest import write_sentiment_jsonl

    train = write_sentiment_jsonl(tmp_path_factory.mktemp("epoch") / "train.jsonl", 1536, seed=4)
    return {**tiny_data, "train": train}


@pytest.mark.parametrize("method,order", [("full", []), ("lora", ["--hf-first"])])
def test_epoch_comparison_trains_both_sides_on_the_same_job(
    tiny_model_dir, epoch_data, tmp_path, method, order
):
    from benchmarks import epoch

    out = tmp_path / "epoch.json"
    settings = ["optim.lr=3e-3"] if method == "full" else ["optim.lr=1e-2", "method.train_pooler=true"]
    args = ["--json", str(out), "--work-dir", str(tmp_path), *order, f"method={method}", *settings]
    records = epoch.main(args + tiny_overrides(tiny_model_dir, epoch_data))
    ours, theirs = records
    assert [ours["impl"], theirs["impl"]] == ["ftcore", "hf"]
    assert ours["ran_first"] is not bool(order) and theirs["ran_first"] is bool(order)
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    # the same job, observed from outside each side's training code
    assert ours["work"]["trainable_parameters"] == theirs["work"]["trainable_parameters"] > 0
    assert ours["work"]["optimizer_steps"] == theirs["work"]["optimizer_steps"] == 192
    assert ours["work"]["lr_per_step"] == pytest.approx(theirs["work"]["lr_per_step"], rel=1e-6)
    peak = 3e-3 if method == "full" else 1e-2
    assert max(ours["work"]["lr_per_step"]) == pytest.approx(peak, rel=0.1)  # warmup, then linear decay
    assert ours["work"]["lr_per_step"][-1] < peak / 50
    for key in ("dropout", "batch_sizes", "tokens", "sequences"):
        assert ours["work"][key] == theirs["work"][key], key
    assert ours["work"]["batch_sizes"] == {"8": 192} and ours["work"]["dropout"]["hidden"] == [0.1]
    for r in records:
        assert 0 < r["train_seconds"] < r["wall_seconds"] and r["eval_seconds"] > 0 and r["epochs"] == 1
        assert r["test"]["num_examples"] == 32 and r["val"]["num_examples"] == 32
        assert r["retain_memory"] is True and r["environment"]["versions"]["transformers"]
        if method == "full":  # both learn the separable task with the same settings (a frozen random
            # tiny encoder behind a pooler is too weak for LoRA to get far, on either side)
            assert r["test"]["accuracy"] >= 0.8, [(r["impl"], r["test"]["accuracy"]) for r in records]
    text = report.main([str(out)])
    assert f"| {method}, fp32, 1 epoch, seed 42 | ftcore |" in text and "| transformers Trainer |" in text
    assert "ftcore malloc keeps freed memory, transformers malloc keeps freed memory" in text


@pytest.fixture(scope="module")
def ftcore_epoch_record(tiny_model_dir, epoch_data, tmp_path_factory):
    from benchmarks import epoch

    work = tmp_path_factory.mktemp("ftcore-side")
    args = ["--only", "ftcore", "--work-dir", str(work), "method=lora", "method.train_pooler=true"]
    return epoch.main(args + tiny_overrides(tiny_model_dir, epoch_data))[0]


def _more_dropout(model):
    model.base_model.model.dropout.p = 0.3


def _other_schedule(monkeypatch, epoch):
    monkeypatch.setitem(epoch.HF_SCHEDULES, "linear", "cosine")


def _one_example_fewer_per_batch(monkeypatch, epoch):
    pad = epoch.pad_batch
    monkeypatch.setattr(epoch, "pad_batch", lambda features, *a: pad(features[:-1] or features, *a))


@pytest.mark.parametrize(
    "key,model_change,setting_change",
    [
        ("dropout", _more_dropout, None),
        (
            "trainable_parameters",
            lambda model: model.base_model.model.bert.pooler.requires_grad_(False),
            None,
        ),
        ("lr_per_step", None, _other_schedule),
        ("batch_sizes", None, _one_example_fewer_per_batch),
    ],
)
def test_a_pair_whose_sides_did_different_work_is_refused(
    ftcore_epoch_record,
    tiny_model_dir,
    epoch_data,
    tmp_path,
    monkeypatch,
    capsys,
    key,
    model_change,
    setting_change,
):
    from benchmarks import epoch

    if model_change:
        build = epoch.build_hf_model

        def changed(*args):
            model = build(*args)
            model_change(model)
            return model

        monkeypatch.setattr(epoch, "build_hf_model", changed)
    if setting_change:
        setting_change(monkeypatch, epoch)
    args = ["--only", "hf", "--work-dir", str(tmp_path), "method=lora", "method.train_pooler=true"]
    theirs = epoch.main(args + tiny_overrides(tiny_model_dir, epoch_data))[0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        epoch.check_same_work([ftcore_epoch_record, theirs])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: the two sides did different work: ") and f"{key}: " in err


def test_epoch_table_compares_each_trainer_run_with_its_ftcore_run_and_sums_up_the_pairs():
    def run(impl, seconds, accuracy, seed, **extra):
        return {"impl": impl, "method": "lora", "precision": "bf16", "epochs": 1, "seed": seed,
                "train_seconds": seconds, "train_samples_per_s": 1000 / seconds, "eval_seconds": 9.0,
                "peak_rss_mb": 2048, "test": {"accuracy": accuracy, "f1_macro": accuracy}, **extra}  # fmt: skip

    records = [
        run("ftcore", 100.0, 0.80, 1), run("hf", 250.0, 0.79, 1),
        run("hf", 200.0, 0.79, 1, hf_retain_memory=True),  # a variant of the same job: compared, not paired
        run("ftcore", 100.0, 0.82, 2), run("hf", 190.0, 0.80, 2),
        run("ftcore", 100.0, 0.81, 3), run("hf", 210.0, 0.83, 4),  # another seed: not the same job
    ]  # fmt: skip
    lines = report.epoch_table(records)
    faster = [line.split(" | ")[3] for line in lines[2:9]]
    assert faster == ["", "**2.50×**", "**2.00×**", "", "**1.90×**", "", ""]
    assert lines[2].startswith("| lora, bf16, 1 epoch, seed 1 | ftcore | 100 s |")
    assert lines[-1] == (
        "Over 2 pairs: ftcore faster by 2.20× (median; 1.90–2.50×), mean test accuracy ftcore 0.8100, "
        "Trainer 0.7950."
    )
    assert not any(line.startswith("Over") for line in report.epoch_table(records[:2]))


@pytest.mark.parametrize(
    "setting",
    [
        "trainer.threads=1", "model.label_smoothing=0.1", "model.extend_vocab_init=random", "trainer.max_steps=3",
        "trainer.eval_every=2", "trainer.early_stopping_patience=1", "trainer.save_every=5", "trainer.epochs=2",
        "trainer.compile=true", "method.init=gaussian", "optim.head_lr=1e-3", "optim.amsgrad=true",
        "data.class_weights=balanced", "method.use_rslora=true",
    ],
)  # fmt: skip
def test_epoch_comparison_refuses_each_setting_the_trainer_cannot_honour(
    tiny_model_dir, tiny_data, capsys, setting
):
    from benchmarks import epoch

    with pytest.raises(SystemExit) as exit_info:
        epoch.main(["method=lora", setting, *tiny_overrides(tiny_model_dir, tiny_data)])
    err = capsys.readouterr().err
    key, value = setting.split("=")
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: not comparable: ") and f"{key}=" in err


def test_epoch_comparison_names_every_problem_and_bad_overrides(tiny_model_dir, tiny_data, capsys):
    from benchmarks import epoch

    with pytest.raises(SystemExit) as exit_info:
        epoch.main(["+exp=prefix", "model.pooling=mean", *tiny_overrides(tiny_model_dir, tiny_data)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: not comparable: ")
    assert "model.pooling=mean" in err and "method.name=prefix" in err
    with pytest.raises(SystemExit) as exit_info:  # a bad override: the same one-line error as train.py
        epoch.main(["trainer.epoch=1", *tiny_overrides(tiny_model_dir, tiny_data)])
    assert exit_info.value.code == 2 and "trainer.epoch" in capsys.readouterr().err


def test_tagging_table_shows_what_pretraining_read_and_the_whole_paths_time():
    def tagger(wall: float, pretraining: dict | None) -> dict:
        scores = {"entity_f1": 0.9, "entity_precision": 0.91, "entity_recall": 0.89, "token_accuracy": 0.99}
        return {"kind": "preset", "preset": "ner", "overrides": [], "trainable_parameters": 1, "total_parameters": 4,
                "metric": "entity_f1", "val": scores, "test": scores, "train_samples_per_s": 48.0,
                "wall_seconds": wall, "pretraining": pretraining}  # fmt: skip

    pretraining = {"overrides": ["corpus=peoples_daily_train"], "masked_accuracy_before": 0.0,
                   "val": {"masked_accuracy": 0.069}, "wall_seconds": 600.0}  # fmt: skip
    head, _, plain, adapted = report.tagging_table([tagger(540.0, None), tagger(540.0, pretraining)], [])
    assert head.endswith("| pretraining | masked-token accuracy | pretraining wall time | total wall time |")
    assert plain.endswith("| 9.0 min | none | | | 9.0 min |")
    assert adapted.endswith("| 9.0 min | corpus=peoples_daily_train | 0.000 → 0.069 | 10.0 min | 19.0 min |")
    assert "pretraining" not in report.tagging_table([tagger(540.0, None)], [])[0]
