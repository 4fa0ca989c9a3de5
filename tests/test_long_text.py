"""ftcore.data.long_text: windows over long texts, pooling window logits per document, and the task
trained on windows and scored per document; a task learnable only from the end of long texts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE, run_script

from ftcore.data.dataset import LabelSpace, Split, build_task_data
from ftcore.data.long_text import encode_windows, pool_windows, split_windows, window_starts
from ftcore.data.tokenizer import EncodedTexts, TextTokenizer
from ftcore.model import BertModel, SequenceClassifier
from ftcore.train.experiment import load_run, train
from ftcore.train.task import ClassificationTask, evaluate, outputs_from_logits, predict

CLS, SEP = 2, 3  # as in the tiny vocabulary of conftest


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> TextTokenizer:
    return TextTokenizer.from_dir(tiny_model_dir)


def documents_of(text_lengths: list[int], first_id: int = 5) -> EncodedTexts:
    """``[CLS] text [SEP]`` rows whose text tokens are ``first_id, first_id + 1, ...`` across all texts
    (every token of the batch is distinct, so a window's piece tells where it was cut)."""
    rows, next_id = [], first_id
    for n in text_lengths:
        rows.append([CLS, *range(next_id, next_id + n), SEP])
        next_id += n
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    return EncodedTexts(
        ids=np.array([i for r in rows for i in r], dtype=np.int32),
        type_ids=np.zeros(int(lengths.sum()), dtype=np.int8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        truncated=np.zeros(len(rows), dtype=bool),
    )


# --- windows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_length", "stride"), [(8, 1), (8, 3), (8, 6), (10, None), (16, 7)])
def test_windows_cover_every_token_stride_apart_with_the_last_at_the_end(max_length, stride):
    text_lengths = [0, 1, 5, 6, 7, 13, 14, 30, 31, 50]
    encoded = documents_of(text_lengths)
    windows, documents = split_windows(encoded, max_length, stride)
    budget = max_length - 2
    stride = budget // 2 if stride is None else stride
    assert documents.dtype == np.int64 and len(documents) == len(windows)
    assert np.array_equal(documents, np.sort(documents))  # windows in document order
    assert windows.lengths.max() <= max_length and windows.num_truncated == 0
    for d, n in enumerate(text_lengths):
        text = encoded[d][0][1:-1].tolist()
        rows = [windows[w][0].tolist() for w in np.flatnonzero(documents == d)]
        if n <= budget:  # a text that fits is one window: its plain encoding
            assert rows == [encoded[d][0].tolist()]
            continue
        assert all(r[0] == CLS and r[-1] == SEP and len(r) == max_length for r in rows)
        starts = [text.index(r[1]) for r in rows]
        for r, start in zip(rows, starts):
            assert r[1:-1] == text[start : start + budget]  # a contiguous piece of the text
        assert starts[:-1] == list(range(0, n - budget, stride))  # stride apart ...
        assert starts[-1] == n - budget  # ... and the last ends at the text's last token
        assert {t for r in rows for t in r[1:-1]} == set(text)


def test_window_starts():
    assert window_starts(10, 4, 2).tolist() == [0, 2, 4, 6]
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]  # the last one moved back to end at 11
    assert window_starts(4, 4, 1).tolist() == [0]


def test_encode_windows_of_real_texts(tokenizer):
    long = " ".join(FILLER * 5)  # 50 tokens
    windows, documents = encode_windows(tokenizer, ["good phone", long, ""], max_length=16, stride=10)
    plain = tokenizer.encode_batch(["good phone", long, ""], max_length=16)
    assert documents.tolist() == [0, 1, 1, 1, 1, 1, 2]  # 50 tokens, 14 a window: starts 0, 10, 20, 30, 36
    assert windows[0][0].tolist() == plain[0][0].tolist() and windows[6][0].tolist() == [CLS, SEP]
    assert windows[1][0].tolist() == plain[1][0].tolist()  # the first window is the head truncation
    assert (
        windows[5][0].tolist()[1:]
        == tokenizer.encode_batch([long], max_length=16, truncation="tail")[0][0].tolist()[1:]
    )
    assert not windows.type_ids.any()


def test_windows_refuse_bad_strides_and_pairs():
    with pytest.raises(ValueError, match=r"stride=7 must be in \[1, 6\]"):
        split_windows(documents_of([20]), 8, 7)
    pair = documents_of([4])
    pair.type_ids[3:] = 1
    with pytest.raises(ValueError, match="text pairs"):
        split_windows(pair, 8)


# --- pooling and scoring per document ---------------------------------------------------------------


def test_pool_windows_mean_and_max_in_fp32():
    logits = torch.tensor(
        [[1.0, -2.0], [3.0, 0.0], [5.0, 7.0], [-1.0, 4.0], [0.5, 0.5]], dtype=torch.bfloat16
    )
    documents = np.array([0, 0, 1, 1, 2])
    mean = pool_windows(logits, documents, "mean")
    assert mean.dtype == torch.float32
    assert mean.tolist() == [[2.0, -1.0], [2.0, 5.5], [0.5, 0.5]]
    assert pool_windows(logits, documents, "max").tolist() == [[3.0, 0.0], [5.0, 7.0], [0.5, 0.5]]


@pytest.fixture
def tiny_classifier(tiny_config) -> SequenceClassifier:
    return SequenceClassifier(BertModel(tiny_config), num_labels=3, pooling="mean").eval()


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_predict_pools_windows_per_document_in_document_order(tiny_classifier, pool):
    encoded = documents_of([3, 40, 9, 25, 0], first_id=5)  # ids stay below the tiny vocabulary's 99
    windows, documents = split_windows(encoded, max_length=16, stride=5)
    assert len(windows) > 2 * len(encoded)
    labels = np.array([0, 2, 1, 1, 0])
    with torch.no_grad():
        rows = torch.cat(
            [tiny_classifier(torch.from_numpy(windows[w][0]).long()[None]) for w in range(len(windows))]
        )
    pooled = torch.stack([
        rows[documents == d].mean(0) if pool == "mean" else rows[documents == d].amax(0) for d in range(5)
    ])  # fmt: skip
    outputs, loss = predict(tiny_classifier, windows, 3, torch.device("cpu"), "fp32", labels=labels,
                            documents=documents, window_pool=pool)  # fmt: skip
    assert outputs.shape == (5, 3)
    np.testing.assert_allclose(outputs, pooled.softmax(-1).numpy(), atol=1e-6)
    assert loss == pytest.approx(tiny_classifier.loss(pooled, torch.from_numpy(labels)).item(), rel=1e-5)
    # the mean of the windows' own losses is a different number: the loss is the documents'
    window_loss = tiny_classifier.loss(rows, torch.from_numpy(labels[documents])).item()
    assert abs(loss - window_loss) > 1e-4

    split = Split("test", [None] * 5, windows, labels, documents)
    metrics, scored = evaluate(tiny_classifier, split, LabelSpace("single_label", ["a", "b", "c"]), 4,
                               torch.device("cpu"), "fp32", window_pool=pool)  # fmt: skip
    assert metrics["num_examples"] == 5 and metrics["loss"] == pytest.approx(loss)
    assert metrics["accuracy"] == np.mean(pooled.argmax(-1).numpy() == labels)
    np.testing.assert_allclose(scored, outputs)


def test_predict_without_windows_is_one_row_per_example(tiny_classifier):
    encoded = documents_of([3, 14, 9])
    with torch.no_grad():
        rows = [tiny_classifier(torch.from_numpy(encoded[i][0]).long()[None])[0] for i in range(3)]
    outputs, loss = predict(tiny_classifier, encoded, 2, torch.device("cpu"), "fp32")
    np.testing.assert_allclose(
        outputs, outputs_from_logits("single_label", torch.stack(rows)).numpy(), atol=1e-6
    )
    assert loss is None


# --- training on windows ----------------------------------------------------------------------------


def write_late_evidence_jsonl(path: Path, n: int, seed: int) -> Path:
    """Two classes whose only evidence is three polar words among the last twelve of 43-53 words (one
    token each): never among a text's first 31 tokens, always among its last 22."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.choices(FILLER, k=rng.randint(40, 50))
        for _ in range(3):
            words.insert(len(words) - rng.randint(0, 9), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        lines.append(json.dumps({"text": " ".join(words), "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def late_evidence(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("late_evidence")
    return {
        "train": write_late_evidence_jsonl(root / "train.jsonl", 128, seed=1),
        "validation": write_late_evidence_jsonl(root / "dev.jsonl", 64, seed=2),
        "test": write_late_evidence_jsonl(root / "test.jsonl", 100, seed=3),
    }


def late_evidence_config(tiny_run_config, late_evidence, **data):
    cfg = tiny_run_config
    cfg.data.train_file = str(late_evidence["train"])
    cfg.data.validation_file = str(late_evidence["validation"])
    cfg.data.test_file = str(late_evidence["test"])
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def test_windows_train_per_window_with_the_documents_label(tokenizer, late_evidence, tiny_run_config):
    cfg = late_evidence_config(tiny_run_config, late_evidence, long_text="windows", max_train_samples=20)
    data = build_task_data(cfg.data, tokenizer)
    train = data.splits["train"]
    assert len(train) == 20 and len(train.labels) == 20  # documents are subsampled, not windows
    assert len(train.encoded) == len(train.documents) >= 40  # 2 or 3 windows each
    task = ClassificationTask(data, tokenizer.pad_id, pad_to_multiple=1)
    assert np.array_equal(task.train_lengths, train.encoded.lengths) and task.train_lengths.max() == 32
    picked = np.array([0, 1, 2, len(train.encoded) - 1])
    batch = task.train_batch(picked, None)
    assert batch["labels"].tolist() == train.labels[train.documents[picked]].tolist()
    assert batch["input_ids"].shape == (4, 32)
    assert data.stats["windows"]["train"] == len(train.encoded) and data.stats["windowed"]["train"] == 20
    assert data.stats["truncated"] == {"train": 0, "validation": 0, "test": 0}


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("data", "learns"),
    [
        ({}, False),  # head: max_length 32 keeps 30 text tokens, all filler
        ({"truncation": "tail"}, True),
        ({"truncation": "head_tail"}, True),  # 8 head + 22 tail
        ({"long_text": "windows"}, True),
    ],
)
def test_evidence_past_max_length_is_learned_only_by_what_reads_it(
    tiny_run_config, late_evidence, tmp_path, data, learns
):
    cfg = late_evidence_config(tiny_run_config, late_evidence, **data)
    cfg.trainer.epochs = 3
    cfg.trainer.threads = 1  # a tiny model trains fastest on one thread; the test restores the count
    result = train(cfg, tmp_path)
    accuracy = result["test"]["accuracy"]
    assert result["test"]["num_examples"] == 100  # documents, however many windows
    if learns:
        assert accuracy >= 0.85, accuracy
    else:
        assert accuracy <= 0.65, accuracy


def test_evaluate_and_predict_scripts_score_a_windows_run_per_document(
    tiny_run_config, late_evidence, tmp_path
):
    cfg = late_evidence_config(tiny_run_config, late_evidence, long_text="windows", window_pool="max")
    cfg.trainer.epochs, cfg.trainer.threads = 1, 1
    result = train(cfg, tmp_path / "run")
    done = run_script("evaluate.py", f"run_dir={tmp_path / 'run'}", "split=test")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["num_examples"] == 100 and printed["accuracy"] == result["test"]["accuracy"]
    assert printed["loss"] == pytest.approx(result["test"]["loss"], rel=1e-5)

    texts = [json.loads(line)["text"] for line in late_evidence["test"].read_text().splitlines()[:5]] + [
        "good"
    ]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_script("predict.py", f"run_dir={tmp_path / 'run'}", f"input={tmp_path / 'in.txt'}")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in rows] == texts and not any("truncated" in r for r in rows)
    run = load_run(tmp_path / "run")
    windows, documents = encode_windows(run.tokenizer, texts, max_length=32)
    assert len(windows) > len(texts)
    probs, _ = predict(
        run.model, windows, 4, torch.device("cpu"), "fp32", documents=documents, window_pool="max"
    )
    np.testing.assert_allclose(np.array([r["scores"] for r in rows]), probs, atol=1e-5)
