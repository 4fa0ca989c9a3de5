"""The HTTP server: TEI's request and answer shapes, its errors, dynamic batching, metrics and shutdown."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_script
from test_token_classification import write_conll

from ftcore.config import Config, DataConfig, MethodConfig, ModelConfig, OptimConfig, TrainerConfig
from ftcore.serve.batcher import Batcher
from ftcore.serve.engine import Engine
from ftcore.serve.protocol import ServeError
from ftcore.serve.server import InferenceServer, ServeSettings
from ftcore.train.experiment import train
from ftcore.train.task import predict

CPU = torch.device("cpu")


def tiny_config(model_dir: Path, files: dict, **data) -> Config:
    return Config(
        model=ModelConfig(path=str(model_dir), pooling="mean"),
        data=DataConfig(name="jsonl", train_file=str(files["train"]), validation_file=str(files["validation"]),
                        test_file=str(files["test"]), max_length=24, **data),
        method=MethodConfig(name="lora", targets=["query", "value", "intermediate"]),
        optim=OptimConfig(lr=3e-3, warmup_ratio=0.1),
        trainer=TrainerConfig(epochs=2, batch_size=8, eval_batch_size=16, precision="fp32", device="cpu",
                              progress=False, log_every=50, threads=1),
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tiny_data, tmp_path_factory) -> Path:
    """A LoRA run of the tiny sentiment task (its adapters are merged for serving)."""
    out = tmp_path_factory.mktemp("serve_run")
    train(tiny_config(tiny_model_dir, tiny_data), out)
    return out


@pytest.fixture(scope="module")
def engine(run_dir) -> Engine:
    return Engine.load(run_dir, precision="fp32", max_batch_size=8)


@contextlib.contextmanager
def serving(engine: Engine, **settings):
    """An in-process server on a free port, healthy, drained on exit."""
    server = InferenceServer(ServeSettings(port=0, **settings))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server.attach(engine)
    try:
        yield server
    finally:
        server.drain(10)


def call(server_or_port, method: str, path: str, body: object = None, headers: dict | None = None):
    """(status, headers, parsed JSON or text) of one request on a fresh connection."""
    port = server_or_port if isinstance(server_or_port, int) else server_or_port.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return (
        response.status,
        dict(response.getheaders()),
        json.loads(payload) if "json" in kind else payload.decode(),
    )


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# answers


def test_scores_equal_predict_py_for_the_same_texts(engine, run_dir, tmp_path):
    texts = ["good phone", "the screen is awful", "it was fine and the product is nice", "sad"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_script("predict.py", f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}", "trainer.threads=1")
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line)["scores"] for line in done.stdout.splitlines()]
    names = engine.run.labels.names
    with serving(engine) as server:
        status, headers, single = call(server, "POST", "/predict", {"inputs": texts[0]})
        assert status == 200 and headers["x-total-time"].isdigit() and headers["x-compute-characters"] == "10"
        status, _, batch = call(server, "POST", "/predict", {"inputs": [[t] for t in texts]})
        assert status == 200 and len(batch) == len(texts)
    assert [a["label"] for a in single] == [a["label"] for a in batch[0]]
    assert np.allclose([a["score"] for a in single], [a["score"] for a in batch[0]], atol=1e-6)
    for answer, scores in zip(batch, expected):
        assert [a["score"] for a in answer] == sorted((a["score"] for a in answer), reverse=True)
        served = {a["label"]: a["score"] for a in answer}
        assert set(served) == set(names)
        assert max(abs(served[name] - p) for name, p in zip(names, scores)) <= 1e-5


def test_raw_scores_one_element_lists_and_pairs_refused_by_a_single_text_run(engine):
    run = engine.run
    with serving(engine) as server:
        _, _, probs = call(server, "POST", "/predict", {"inputs": ["good phone"]})  # one text, not a pair
        _, _, raw = call(server, "POST", "/predict", {"inputs": "good phone", "raw_scores": True})
        for inputs in (["good phone", "awful screen"], [["sad"], ["good phone", "awful screen"]]):
            status, _, body = call(server, "POST", "/predict", {"inputs": inputs})
            assert (status, body["error_type"]) == (413, "validation") and "single texts" in body["error"]
    logits = np.array([{a["label"]: a["score"] for a in raw}[n] for n in run.labels.names])
    assert np.allclose(softmax(logits), [{a["label"]: a["score"] for a in probs}[n] for n in run.labels.names],
                       atol=1e-6)  # fmt: skip


def test_a_pair_run_scores_pairs_as_predict_py_does(tiny_model_dir, tiny_data, tmp_path):
    files = {}
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in Path(tiny_data[split]).read_text().splitlines()]
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for r in rows:  # the label lives in the second text
                f.write(json.dumps({"text": "the product", "other": r["text"], "label": r["label"]}) + "\n")
        files[split] = tmp_path / f"{split}.jsonl"
    cfg = tiny_config(tiny_model_dir, files, text_pair_field="other")
    cfg.trainer.epochs = 1
    train(cfg, tmp_path / "run")
    pairs = [("the product", "good phone"), ("the product", "awful screen"), ("a", "it was sad")]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": a, "other": b}) + "\n" for a, b in pairs))
    done = run_script("predict.py", f"run_dir={tmp_path / 'run'}", f"input={source}", "trainer.threads=1")
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line)["scores"] for line in done.stdout.splitlines()]
    engine = Engine.load(tmp_path / "run", precision="fp32")
    with serving(engine) as server:
        status, _, answers = call(server, "POST", "/predict", {"inputs": [list(p) for p in pairs]})
        _, _, single = call(server, "POST", "/predict", {"inputs": "the product"})  # read with an empty pair
    assert status == 200
    names = engine.run.labels.names
    for answer, scores in zip(answers, expected):
        assert (
            max(abs({a["label"]: a["score"] for a in answer}[n] - p) for n, p in zip(names, scores)) <= 1e-5
        )
    encoded = engine.run.tokenizer.encode_batch(["the product"], [""], max_length=24)
    probs, _ = predict(engine.model, encoded, 4, CPU, "fp32")
    assert max(abs({a["label"]: a["score"] for a in single}[n] - p) for n, p in zip(names, probs[0])) <= 1e-5


def test_a_windows_run_pools_a_long_text_as_predict_py_does(tiny_model_dir, tiny_data, tmp_path):
    cfg = tiny_config(tiny_model_dir, tiny_data, long_text="windows", window_stride=8)
    cfg.data.max_length, cfg.trainer.epochs = 12, 1
    train(cfg, tmp_path / "run")
    texts = ["good phone", " ".join(["the screen is very"] * 8) + " awful"]  # the second: several windows
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_script(
        "predict.py", f"run_dir={tmp_path / 'run'}", f"input={tmp_path / 'in.txt'}", "trainer.threads=1"
    )
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line)["scores"] for line in done.stdout.splitlines()]
    engine = Engine.load(tmp_path / "run", precision="fp32")
    with serving(engine) as server:
        status, _, answers = call(server, "POST", "/predict", {"inputs": [[t] for t in texts]})  # no truncate
    assert status == 200
    names = engine.run.labels.names
    for answer, scores in zip(answers, expected):
        assert (
            max(abs({a["label"]: a["score"] for a in answer}[n] - p) for n, p in zip(names, scores)) <= 1e-5
        )


def test_truncate_false_refuses_a_long_text_and_true_cuts_it(engine):
    long_text = " ".join(["very"] * 40) + " good"
    with serving(engine) as server:
        status, _, body = call(server, "POST", "/predict", {"inputs": long_text})
        assert status == 413 and body["error_type"] == "validation" and "less than 24 tokens" in body["error"]
        status, _, body = call(server, "POST", "/predict", {"inputs": long_text, "truncate": True})
    assert status == 200
    cut = engine.run.tokenizer.encode_batch([long_text], max_length=24)
    assert cut.truncated[0]
    expected, _ = predict(engine.model, cut, 4, CPU, "fp32")
    assert abs({a["label"]: a["score"] for a in body}[engine.run.labels.names[0]] - expected[0][0]) <= 1e-5


@pytest.mark.parametrize("problem", ["multi_label", "regression"])
def test_multi_label_and_regression_runs_answer_in_the_same_shape(
    tiny_model_dir, tiny_data, tmp_path, problem
):
    files = {}
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in Path(tiny_data[split]).read_text().splitlines()]
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for r in rows:
                label = [r["label"], "any"] if problem == "multi_label" else float(r["label"] == "pos")
                f.write(json.dumps({"text": r["text"], "label": label}) + "\n")
        files[split] = tmp_path / f"{split}.jsonl"
    cfg = tiny_config(tiny_model_dir, files, problem=problem)
    cfg.trainer.epochs = 1
    train(cfg, tmp_path / "run")
    engine = Engine.load(tmp_path / "run", precision="fp32")
    with serving(engine) as server:
        status, _, answer = call(server, "POST", "/predict", {"inputs": "good phone"})
    assert status == 200
    expected, _ = predict(engine.model, engine.run.tokenizer.encode_batch(["good phone"], max_length=24), 4, CPU,
                          "fp32")  # fmt: skip
    if problem == "multi_label":  # independent sigmoid scores, one per label
        assert {a["label"] for a in answer} == set(engine.run.labels.names) == {"any", "neg", "pos"}
        served = np.array([{a["label"]: a["score"] for a in answer}[n] for n in engine.run.labels.names])
        assert np.abs(served - expected[0]).max() <= 1e-5 and served.sum() > 1.0
    else:
        assert len(answer) == 1 and answer[0]["label"] == "LABEL_0"
        assert abs(answer[0]["score"] - float(expected[0])) <= 1e-5


def test_a_tagging_run_answers_entity_spans_as_predict_py_finds_them(tiny_model_dir, tmp_path):
    files = {split: write_conll(tmp_path / f"{split}.txt", n, seed) for split, n, seed in
             (("train", 120, 1), ("validation", 30, 2), ("test", 30, 3))}  # fmt: skip
    cfg = tiny_config(tiny_model_dir, files, problem="token_classification")
    cfg.data.name, cfg.data.max_length, cfg.trainer.epochs, cfg.optim.lr = "conll", 16, 6, 1e-2
    train(cfg, tmp_path / "run")
    texts = ["the phone was very good and it was bad", "nice screen but sad " * 5]  # the second needs windows
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_script(
        "predict.py", f"run_dir={tmp_path / 'run'}", f"input={tmp_path / 'in.txt'}", "trainer.threads=1"
    )
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line)["entities"] for line in done.stdout.splitlines()]
    assert any(expected)
    engine = Engine.load(tmp_path / "run", precision="fp32")
    with serving(engine) as server:
        status, _, answers = call(server, "POST", "/predict", {"inputs": [[t] for t in texts]})
        assert status == 200
        status, _, body = call(server, "POST", "/predict", {"inputs": ["a pair", "of texts"]})
        assert status == 413 and "single texts" in body["error"]
        _, _, info = call(server, "GET", "/info")
    assert (
        info["problem"] == "token_classification"
        and "B-POS" in info["model_type"]["token_classifier"]["label2id"]
    )
    for answer, entities, text in zip(answers, expected, texts):
        assert [(a["entity_group"], a["start"], a["end"]) for a in answer] == [
            (e["type"], e["start"], e["end"]) for e in entities
        ]
        assert all(a["word"] == text[a["start"] : a["end"]] and 0 < a["score"] <= 1 for a in answer)


# --------------------------------------------------------------------------------------------------
# errors


def raw_request(port: int, data: bytes) -> tuple[int, dict]:
    """Send bytes as they are (for requests http.client will not make) and read one JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


MALFORMED = [
    # (what, request body or (method, path, body), status, error_type)
    ("not JSON", b'{"inputs": ', 400, "bad_request"),
    ("not UTF-8", b'{"inputs": "\xff\xfe"}', 400, "bad_request"),
    ("not an object", b'["good"]', 400, "bad_request"),
    ("no inputs", b'{"input": "good"}', 400, "bad_request"),
    ("inputs a number", b'{"inputs": 3}', 400, "bad_request"),
    ("three strings", b'{"inputs": ["a", "b", "c"]}', 400, "bad_request"),
    ("a batch element of three", b'{"inputs": [["a", "b", "c"]]}', 400, "bad_request"),
    ("a batch element not a list", b'{"inputs": [["a"], "b"]}', 400, "bad_request"),
    ("truncate not a bool", b'{"inputs": "a", "truncate": "yes"}', 400, "bad_request"),
    ("empty list", b'{"inputs": []}', 400, "empty"),
    ("empty text", b'{"inputs": [["good"], ["  "]]}', 400, "empty"),
    ("batch over max_client_batch_size", json.dumps({"inputs": [["good"]] * 5}).encode(), 413, "validation"),
    ("body over payload_limit", json.dumps({"inputs": "good " * 1000}).encode(), 413, "validation"),
    ("text too long", json.dumps({"inputs": "good " * 30}).encode(), 413, "validation"),
    ("lone surrogate", b'{"inputs": "good \\ud800"}', 422, "tokenizer"),
    ("unknown route", ("POST", "/embed", b'{"inputs": "good"}'), 404, "not_found"),
    ("wrong method", ("GET", "/predict", None), 405, "method_not_allowed"),
    ("wrong method on a GET route", ("POST", "/health", b"{}"), 405, "method_not_allowed"),
]


def test_every_malformed_request_gets_teis_error_and_a_valid_one_still_succeeds(engine):
    with serving(engine, max_client_batch_size=4, payload_limit=2000) as server:
        for what, request, status, error_type in MALFORMED:
            method, path, body = request if isinstance(request, tuple) else ("POST", "/predict", request)
            got, _, answer = call(server, method, path, body)
            assert (got, answer["error_type"]) == (status, error_type), what
            assert isinstance(answer["error"], str) and answer["error"], what
        port = server.server_address[1]
        assert raw_request(port, b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n") == (
            411, {"error": "a request body needs a Content-Length header", "error_type": "length_required"}
        )  # fmt: skip
        status, answer = raw_request(port, b"POST /predict HTTP/1.1\r\nContent-Length: ten\r\n\r\n")
        assert (status, answer["error_type"]) == (400, "bad_request")
        status, _, answer = call(server, "POST", "/predict", {"inputs": "good phone"})
        assert status == 200 and len(answer) == 2
        _, _, metrics = call(server, "GET", "/metrics")
    assert 'ftcore_request_errors_total{code="413",error_type="validation"} 3' in metrics
    assert 'ftcore_request_success_total{method="single"} 1' in metrics


def test_what_python_itself_cannot_parse_is_a_400_never_a_dropped_connection(engine):
    with serving(engine) as server:
        port = server.server_address[1]
        for body in (
            b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"inputs": "a", "x": ' + b"1" * 5000 + b"}",
        ):
            status, _, answer = call(server, "POST", "/predict", body)
            assert (status, answer["error_type"]) == (400, "bad_request") and "not valid JSON" in answer[
                "error"
            ]
        status, _, answer = call(
            server, "POST", "/predict", b'{"inputs": "a", "truncation_direction": "\\ud800"}'
        )
        assert (status, answer["error_type"]) == (413, "validation") and "\\ud800" in answer["error"]
        status, answer = raw_request(port, b"POST /predict HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n")
        assert (status, answer["error_type"]) == (400, "bad_request")
        status, answer = raw_request(
            port, b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        assert (status, answer["error_type"]) == (411, "length_required")
        status, answer = raw_request(port, b"FOO /predict HTTP/1.1\r\n\r\n")
        assert (status, answer["error_type"]) == (501, "not_implemented")
        assert call(server, "GET", "/health")[0] == 200
        _, _, metrics = call(server, "GET", "/metrics")
    assert 'ftcore_request_errors_total{code="501",error_type="not_implemented"} 1' in metrics


def test_one_connection_keeps_serving_after_its_mistakes(engine):
    with serving(engine) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
        for body, status in ((b"{", 400), (b'{"inputs": []}', 400), (b'{"inputs": "good"}', 200)):
            conn.request("POST", "/predict", body=body)
            response = conn.getresponse()
            response.read()
            assert response.status == status
        conn.request("GET", "/nowhere")
        response = conn.getresponse()
        response.read()
        conn.request("GET", "/health", body=b'{"a GET": "with a body"}')  # read and dropped
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.request("HEAD", "/info")  # headers only
        response = conn.getresponse()
        assert (
            response.status == 200
            and int(response.getheader("Content-Length")) > 0
            and response.read() == b""
        )
        conn.request("POST", "/predict", body=b'{"inputs": "good"}')
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())) == 2
        conn.close()


def test_overloaded_unhealthy_and_backend_errors(engine, monkeypatch):
    with serving(engine, max_concurrent_requests=2) as server:
        for _ in range(2):  # two requests in flight take every permit
            server.permits.acquire()
        status, _, body = call(server, "POST", "/predict", {"inputs": "good"})
        assert (status, body["error_type"]) == (429, "overloaded")
        server.permits.release()
        server.permits.release()

        server.state = "draining"
        assert call(server, "GET", "/health")[0] == 503
        status, _, body = call(server, "POST", "/predict", {"inputs": "good"})
        assert (status, body) == (503, {"error": "the server is draining", "error_type": "unhealthy"})
        server.state = "ready"

        real = engine.score
        monkeypatch.setattr(server.batcher, "score", lambda items: 1 / 0)
        status, _, body = call(server, "POST", "/predict", {"inputs": "good"})
        assert (status, body["error_type"]) == (424, "backend") and "ZeroDivisionError" in body["error"]
        monkeypatch.setattr(server.batcher, "score", real)
        assert call(server, "POST", "/predict", {"inputs": "good"})[0] == 200
        assert call(server, "GET", "/health")[0] == 200


# --------------------------------------------------------------------------------------------------
# batching, info, metrics


def test_batcher_takes_full_batches_first_come_first_served_and_a_failure_stays_in_its_batch():
    seen: list[list] = []
    gate, entered = threading.Event(), threading.Event()

    def score(items):
        entered.set()
        gate.wait(10)
        seen.append(list(items))
        if "bad" in items:
            raise ValueError("bad input reached the model")
        return [f"<{item}>" for item in items]

    batcher = Batcher(score, max_batch_size=4, max_wait_ms=0)
    first = batcher.submit(["a"])  # the worker takes it alone and blocks on the gate
    assert entered.wait(10)
    rest = batcher.submit(["b", "c", "d", "e", "f", "bad", "g", "h", "i"])
    gate.set()
    assert first[0].result(10) == "<a>"
    results = []
    for future in rest:
        try:
            results.append(future.result(10))
        except ServeError as e:
            results.append(e.error_type)
    assert results == ["<b>", "<c>", "<d>", "<e>", "backend", "backend", "backend", "backend", "<i>"]
    assert seen == [["a"], ["b", "c", "d", "e"], ["f", "bad", "g", "h"], ["i"]]
    batcher.close()
    assert not batcher.worker.is_alive()


def test_concurrent_clients_share_batches_and_each_gets_its_own_answer(engine):
    texts = [f"{w} phone" for w in ("good", "bad", "great", "awful", "nice", "ugly", "fine", "poor")] * 3
    expected = {t: engine.answer(item, out, False) for t, item, out in
                zip(texts, engine.encode([(t, None) for t in texts], False),
                    engine.score(engine.encode([(t, None) for t in texts], False)))}  # fmt: skip
    with serving(engine, max_batch_size=8, max_wait_ms=200) as server:
        with ThreadPoolExecutor(len(texts)) as pool:
            answers = list(pool.map(lambda t: call(server, "POST", "/predict", {"inputs": t}), texts))
        deadline = time.monotonic() + 10  # (a handler counts itself out just after its answer is sent)
        while server.stats.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        _, _, metrics = call(server, "GET", "/metrics")
    for text, (status, _, answer) in zip(texts, answers):
        assert status == 200
        assert [a["label"] for a in answer] == [a["label"] for a in expected[text]]
        assert np.allclose([a["score"] for a in answer], [a["score"] for a in expected[text]], atol=1e-5)
    batches = int(re.search(r"^ftcore_batch_size_count (\d+)", metrics, re.M).group(1))
    assert batches < len(texts)
    assert f"ftcore_texts_total {len(texts)}" in metrics and "ftcore_in_flight_requests 0" in metrics


def test_metrics_are_prometheus_text_and_info_describes_the_run(engine, run_dir):
    with serving(engine, max_batch_size=4, max_wait_ms=2) as server:
        call(server, "POST", "/predict", {"inputs": [["good"], ["bad"], ["fine"]]})
        status, headers, metrics = call(server, "GET", "/metrics")
        _, _, info = call(server, "GET", "/info")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for line in metrics.splitlines():
        if line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) ftcore_\w+ ", line)
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert samples['ftcore_requests_total{method="batch"}'] == 1
    for histogram in ("ftcore_batch_size", "ftcore_queue_seconds", "ftcore_inference_seconds"):
        buckets = [v for k, v in samples.items() if k.startswith(histogram + "_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == samples[histogram + "_count"] > 0
    assert samples['ftcore_batch_size_bucket{le="4"}'] == samples["ftcore_batch_size_count"]
    assert info["model_id"] == str(run_dir) and info["max_input_length"] == 24
    assert info["model_type"]["classifier"]["id2label"] == {"0": "neg", "1": "pos"}
    assert info["method"] == "lora" and info["model_dtype"] == "fp32" and info["max_batch_requests"] == 4
    assert info["serving"]["max_wait_ms"] == 2 and info["state"] == "ready"


# --------------------------------------------------------------------------------------------------
# the script


def start(*args: str) -> tuple[subprocess.Popen, int]:
    """``scripts/serve.py`` on a free port; returns the process and its port once it is healthy."""
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "serve.py"), "port=0", "threads=1", *args],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)  # fmt: skip
    port, lines = None, []
    for line in proc.stderr:
        lines.append(line)
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if "ready:" in line:
            return proc, port
    raise AssertionError("".join(lines))


def test_draining_answers_the_requests_in_flight_and_refuses_new_ones(engine, monkeypatch):
    with serving(engine) as server:
        real, entered = server.batcher.score, threading.Event()

        def slow(items):
            entered.set()
            time.sleep(1.0)
            return real(items)

        monkeypatch.setattr(server.batcher, "score", slow)
        with ThreadPoolExecutor(2) as pool:
            pending = pool.submit(call, server, "POST", "/predict", {"inputs": "good phone"})
            assert entered.wait(10)  # the request is now in the model
            drained = pool.submit(server.drain, 10)
            deadline = time.monotonic() + 10
            while server.state != "draining" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert call(server, "GET", "/health")[0] == 503
            status, _, body = call(server, "POST", "/predict", {"inputs": "good phone"})
            assert (status, body["error_type"]) == (503, "unhealthy")
            status, _, answer = pending.result(30)
            assert status == 200 and len(answer) == 2
            assert drained.result(30) is True
        server.state = "ready"  # (serving() drains again on exit: nothing left to wait for)


def test_the_script_stops_on_sigterm_and_exits_0(run_dir):
    proc, port = start(f"run_dir={run_dir}")
    try:
        assert call(port, "GET", "/health")[0] == 200
        status, _, answer = call(port, "POST", "/predict", {"inputs": "good phone"})
        assert status == 200 and len(answer) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        rest = proc.stderr.read()
        assert re.search(r"draining \d+ request\(s\)", rest) and "stopped" in rest
    finally:
        proc.kill()
    with pytest.raises(ConnectionError):
        call(port, "GET", "/health")


def test_script_mistakes_are_one_line_and_exit_2(run_dir, tmp_path):
    for args, words in (
        ([f"run_dir={tmp_path}"], "not a training run directory"),
        ([f"run_dir={run_dir}", "max_batch_size=0"], "max_batch_size=0 must be at least 1"),
        ([f"run_dir={run_dir}", "precision=fp8"], "precision"),
        ([f"run_dir={run_dir}", "colour=red"], "unknown key 'colour'"),
    ):
        done = run_script("serve.py", "port=0", *args, timeout=60)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and words in errors[0], done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run_script("serve.py", f"run_dir={run_dir}", f"port={taken.getsockname()[1]}", timeout=60)
    assert done.returncode == 2 and "cannot listen on 127.0.0.1:" in done.stderr.strip().splitlines()[-1]


def test_load_benchmark_checks_every_answer_and_records_both_modes(run_dir, tmp_path):
    from benchmarks import serve_load

    out = tmp_path / "serve.json"
    records = serve_load.main([
        "--run-dir", str(run_dir), "--clients", "1", "6", "--requests", "60", "--seconds", "20", "--texts", "20",
        "--ceiling-texts", "16", "--max-batch-size", "8", "--rounds", "1", "--tolerance", "1e-5", "--max-wait-ms", "50",
        "--server-args", "threads=1", "--json", str(out),
    ])  # fmt: skip
    ceiling, load = records[:2], records[2:]
    assert [(r["kind"], r["batch_size"], r["texts"]) for r in ceiling] == [
        ("serve_model_ceiling", 1, 16), ("serve_model_ceiling", 8, 16)
    ]  # fmt: skip
    assert all(r["texts_per_s"] > 0 for r in ceiling)
    assert [(r["mode"], r["clients"]) for r in load] == [
        ("single", 1),
        ("dynamic", 1),
        ("single", 6),
        ("dynamic", 6),
    ]
    for r in load:
        assert (
            r["requests"] == 60
            and r["dropped"] == 0
            and r["wrong"] == 0
            and r["max_score_difference"] <= 1e-5
        )
        assert (
            r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["p99"]
            and r["requests_per_s"] > 0
        )
    assert [r["mean_batch_size"] for r in load[::2]] == [1.0, 1.0] and load[3]["mean_batch_size"] > 1
    saved = json.loads(out.read_text())
    assert len(saved) == 6 and saved[2]["environment"]["git_commit"] and saved[2]["precision"] == "fp32"
