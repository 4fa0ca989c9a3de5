"""The benchmark harness: FLOP counting by hand, and a 2-step run of both implementations (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, throughput
from benchmarks.flops import step_flops_per_token


def test_flop_count_matches_a_hand_count(tiny_config):
    # H=32, I=37, N=2 layers, L=10, C=2 labels
    dense = 2 * (4 * 32 * 32 + 2 * 32 * 37)  # 12,928 per token and layer
    attention = 2 * 2 * 10 * 32  # 1,280
    head = (2 * 32 * 32 + 2 * 32 * 2) / 10  # pooler + classifier, once per sequence of 10
    full = step_flops_per_token(tiny_config, seq_len=10, num_labels=2, method="full")
    assert full.forward == 2 * (dense + attention) + head == 28633.6
    assert full.backward == 2 * (dense + 2 * attention) + 2 * dense + 2 * head
    assert full.total == pytest.approx(3 * full.forward, rel=0.05)  # the usual "3x forward" rule
    lora = step_flops_per_token(tiny_config, seq_len=10, num_labels=2, method="lora")
    assert lora.backward == 2 * (dense + 2 * attention) + 2 * head  # no base weight gradients
    frozen = step_flops_per_token(tiny_config, seq_len=10, num_labels=2, method="freeze", freeze_layers=1)
    assert frozen.backward == 1 * (dense + 2 * attention) + 1 * dense + 2 * head


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
