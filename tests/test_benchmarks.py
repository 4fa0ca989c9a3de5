"""The benchmark harness: FLOP counting by hand, and a 2-step run of both implementations (no timing asserted)."""

from __future__ import annotations

import json

import pytest

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
    lora = step_flops_per_token(tiny_config, method="lora", **whole)
    assert lora.backward == 2 * (dense + 2 * attention) + 2 * head  # no base weight gradients
    frozen = step_flops_per_token(tiny_config, method="freeze", freeze_layers=1, **whole)
    assert frozen.backward == 1 * (dense + 2 * attention) + 1 * dense + 2 * head
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
    assert top_only.backward == pytest.approx((last_dense + 2 * last_attention) + last_dense + 2 * head)


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_harness_runs_both_implementations_and_writes_records(tiny_model_dir, tmp_path, method):
    out = tmp_path / "bench.json"
    args = ["--model", str(tiny_model_dir), "--method", method, "--batch-size", "2", "--seq-len", "8",
            "--precision", "fp32", "--device", "cpu", "--steps", "2", "--warmup", "1", "--rounds", "1",
            "--baseline", "hf", "--json", str(out)]  # fmt: skip
    records = throughput.main(args)
    assert [r["impl"] for r in records] == ["ftcore", "hf"]
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(records))
    for r in records:
        assert (
            r["steps"] == 2
            and r["samples_per_s"] > 0
            and r["tokens_per_s"] == pytest.approx(8 * r["samples_per_s"])
        )
        assert 0 < r["mfu"] and r["model_flops_per_token"] > 0 and r["matmul_peak_flops_per_s"] > 0
        assert r["step_time_s"]["p10"] <= r["step_time_s"]["median"] <= r["step_time_s"]["p90"]
    text = report.main([str(out)])
    assert f"| {method} | fp32 | 2 × 8 |" in text and "Machine:" in text


def test_tfidf_baseline_runs_on_the_review_split():
    from benchmarks import tfidf_baseline

    result = tfidf_baseline.main(["--ngrams", "2", "--C", "1", "--max-train-samples", "2000"])
    assert result["C"] == 1.0 and 0.6 < result["test_accuracy"] < 1.0 and 0.6 < result["val_accuracy"] < 1.0


def tiny_overrides(tiny_model_dir, tiny_data, *extra):
    return [
        f"model.path={tiny_model_dir}", "data=jsonl", f"data.train_file={tiny_data['train']}",
        f"data.validation_file={tiny_data['validation']}", f"data.test_file={tiny_data['test']}",
        "data.max_length=32", "trainer.precision=fp32", "trainer.device=cpu", "trainer.batch_size=8", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("method", ["full", "lora"])
def test_epoch_comparison_trains_both_sides_on_the_same_job(tiny_model_dir, tiny_data, tmp_path, method):
    from benchmarks import epoch

    out = tmp_path / "epoch.json"
    settings = ["optim.lr=3e-3"] if method == "full" else ["optim.lr=1e-2", "method.train_pooler=true"]
    args = [
        "--json",
        str(out),
        "--work-dir",
        str(tmp_path),
        f"method={method}",
        "trainer.epochs=8",
        *settings,
    ]
    records = epoch.main(args + tiny_overrides(tiny_model_dir, tiny_data))
    assert [r["impl"] for r in records] == ["ftcore", "hf"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    for r in records:
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0 and r["epochs"] == 8
        assert r["test"]["num_examples"] == 32 and r["val"]["num_examples"] == 32
        if method == "full":  # both learn the separable task with the same settings (a frozen random
            # tiny encoder behind a pooler is too weak for LoRA to get far, on either side)
            assert r["test"]["accuracy"] >= 0.8, (r["impl"], r["test"]["accuracy"])
    text = report.main([str(out)])
    assert f"| {method}, fp32, 8 epochs, seed 42 | ftcore |" in text and "| transformers Trainer |" in text


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


def test_epoch_comparison_refuses_jobs_the_other_side_cannot_run(tiny_model_dir, tiny_data, capsys):
    from benchmarks import epoch

    with pytest.raises(SystemExit) as exit_info:
        epoch.main(["+exp=prefix", "model.pooling=mean", *tiny_overrides(tiny_model_dir, tiny_data)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: not comparable: method.name=prefix")
    assert "model.pooling=mean" in err
    with pytest.raises(SystemExit) as exit_info:  # a bad override: the same one-line error as train.py
        epoch.main(["trainer.epoch=1", *tiny_overrides(tiny_model_dir, tiny_data)])
    assert exit_info.value.code == 2 and "trainer.epoch" in capsys.readouterr().err
