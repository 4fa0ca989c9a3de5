"""Load-test ``scripts/serve.py``: throughput and latency with dynamic batching against one text per model call.

    python scripts/train.py +exp=lora hydra.run.dir=outputs/reviews-lora
    python benchmarks/serve_load.py --run-dir outputs/reviews-lora --json benchmarks/results/serve.json

For each mode (``dynamic``: ``max_batch_size``/``max_wait_ms`` as given; ``single``: ``max_batch_size=1``)
a server is started as a user starts it, on localhost; both stay up and take turns under load, every
setting repeated ``--rounds`` times, so slow drift of the machine hits both alike. For each client
count, that many threads each
hold one keep-alive connection and send ``POST /predict`` with one text of the run's test split at a
time, until ``--requests`` are answered or ``--seconds`` have passed. Every answer is checked against
``scripts/predict.py``'s scores for the same text (run once up front): a request that fails, or whose
scores differ by more than ``--tolerance``, counts as dropped or wrong. Both modes get the same texts,
in the same order, timed the same way (client-side, from sending a request to reading its answer).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.records import ROOT, append_records, environment  # noqa: E402


def review_texts(run_dir: Path, split: str, limit: int) -> list[str]:
    """The texts of one split of the run's own data, as the run split them."""
    from ftcore.data.dataset import read_splits
    from ftcore.train.experiment import load_run

    cfg = load_run(run_dir).config
    splits, _, _ = read_splits(cfg.data)
    return [e.text for e in splits[split] if e.text.strip()][:limit]


def predict_py_scores(run_dir: Path, texts: list[str], workdir: Path) -> list[dict[str, float]]:
    """``scripts/predict.py``'s probabilities per text, by label."""
    source = workdir / "texts.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    labels = json.loads((run_dir / "labels.json").read_text())["names"]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), f"run_dir={run_dir}",
                           f"input={source}"], cwd=ROOT, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return [dict(zip(labels, json.loads(line)["scores"])) for line in done.stdout.splitlines()]


class Server:
    """``scripts/serve.py`` in a subprocess, on a free port; stopped with SIGTERM."""

    def __init__(self, run_dir: Path, *settings: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), f"run_dir={run_dir}", "port=0", *settings],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.port = None
        for line in self.proc.stderr:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            self.port = int(found.group(1)) if found else self.port
            if "ready:" in line:
                break
        else:
            raise RuntimeError(f"serve.py exited with {self.proc.wait()} before it was ready")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained

    def get(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path)
        body = conn.getresponse().read().decode()
        conn.close()
        return body

    def batches(self) -> tuple[float, float]:
        """(texts scored, model batches) so far, from /metrics."""
        text = self.get("/metrics")
        texts = float(re.search(r"^ftcore_texts_total (\S+)", text, re.M).group(1))
        return texts, float(re.search(r"^ftcore_batch_size_count (\S+)", text, re.M).group(1))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def drive(port: int, texts: list[str], expected: list[dict], clients: int, max_requests: int,
          max_seconds: float, tolerance: float) -> dict:  # fmt: skip
    """``clients`` threads send the texts in turn (text ``i`` is request ``i``) until ``max_requests`` are
    sent or ``max_seconds`` have passed; returns throughput, latency percentiles and failures."""
    lock, issued = threading.Lock(), [0]
    latencies: list[float] = []
    failures = {"dropped": 0, "wrong": 0}
    worst = [0.0]
    start_line = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start_line.wait()
        while True:
            with lock:
                i = issued[0]
                if i >= max_requests or time.perf_counter() > deadline:
                    break
                issued[0] += 1
            body = json.dumps({"inputs": texts[i % len(texts)], "truncate": True}).encode()
            began = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                with lock:
                    failures["dropped"] += 1
                continue
            elapsed = time.perf_counter() - began
            ok = response.status == 200
            diff = float("inf")
            if ok:
                served = {a["label"]: a["score"] for a in json.loads(payload)}
                diff = max(abs(served[k] - v) for k, v in expected[i % len(texts)].items())
            with lock:
                latencies.append(elapsed)
                if not ok:
                    failures["dropped"] += 1
                elif diff > tolerance:
                    failures["wrong"] += 1
                worst[0] = max(worst[0], diff if ok else 0.0)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + max_seconds
    began = time.perf_counter()
    start_line.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {
            q: round(float(np.percentile(ms, p)), 2) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        **failures,
        "max_score_difference": round(worst[0], 6),
    }


def model_ceiling(
    run_dir: Path, texts: list[str], batch_sizes: list[int], max_texts: int, rounds: int
) -> list[dict]:
    """The model alone, in this process's main thread, with no server: texts per second when the same
    texts are scored ``batch_size`` at a time (as the server's worker scores them). No server can batch
    better than this; the ratio between batch sizes bounds what dynamic batching can gain."""
    from ftcore.serve.engine import Engine

    engine = Engine.load(run_dir, max_batch_size=max(batch_sizes))
    items = engine.encode([(t, None) for t in texts[:max_texts]], truncate=True)
    records = []
    for round_ in range(rounds):
        for size in batch_sizes:
            chunks = [items[k : k + size] for k in range(0, len(items) - size + 1, size)]
            if not chunks:
                raise ValueError(f"--ceiling-texts {len(items)} is fewer than a batch of {size}")
            engine.score(chunks[0])  # warm-up
            began = time.perf_counter()
            for chunk in chunks:
                engine.score(chunk)
            wall = time.perf_counter() - began
            scored = len(chunks) * size
            records.append({"kind": "serve_model_ceiling", "round": round_, "batch_size": size, "texts": scored,
                            "texts_per_s": round(scored / wall, 2), "ms_per_text": round(wall / scored * 1000, 3),
                            "precision": engine.precision})  # fmt: skip
            print(f"round {round_}  model only, batch {size:3d}: {scored / wall:8.1f} texts/s", flush=True)
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="a trained run (e.g. +exp=lora on reviews)"
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--modes", nargs="+", choices=["single", "dynamic"], default=["single", "dynamic"])
    parser.add_argument("--requests", type=int, default=3000, help="requests per setting at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per setting at most")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every setting, modes interleaved, so both meet the machine's drift alike")  # fmt: skip
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=int, default=5)
    parser.add_argument("--texts", type=int, default=2604, help="test-split texts to cycle through")
    parser.add_argument("--ceiling-texts", type=int, default=512,
                        help="texts per batch size for the model-only ceiling (0: skip it)")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest score difference from predict.py that counts as right (bf16 batches "
                             "of other shapes differ in the last bits)")  # fmt: skip
    parser.add_argument(
        "--server-args", default="", help="more serve.py key=value settings (space-separated)"
    )
    parser.add_argument(
        "--json", type=Path, help="append one record per mode and client count to this JSON list"
    )
    args = parser.parse_args(argv)

    texts = review_texts(args.run_dir, "test", args.texts)
    with tempfile.TemporaryDirectory() as workdir:
        expected = predict_py_scores(args.run_dir, texts, Path(workdir))
    records = []
    if args.ceiling_texts:
        records += model_ceiling(
            args.run_dir, texts, [1, args.max_batch_size], args.ceiling_texts, args.rounds
        )
    servers, settings, infos = {}, {}, {}
    for mode in args.modes:  # both servers stay up; only the one under load works
        size = 1 if mode == "single" else args.max_batch_size
        settings[mode] = [
            f"max_batch_size={size}",
            f"max_wait_ms={args.max_wait_ms}",
            *args.server_args.split(),
        ]
        servers[mode] = Server(args.run_dir, *settings[mode])
        infos[mode] = json.loads(servers[mode].get("/info"))
    for round_ in range(args.rounds):
        for clients in args.clients:
            for mode, server in servers.items():
                before = server.batches()
                result = drive(
                    server.port, texts, expected, clients, args.requests, args.seconds, args.tolerance
                )
                after = server.batches()
                result["mean_batch_size"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)
                print(f"round {round_}  {mode:8s} clients={clients:3d}  {result['requests_per_s']:8.1f} req/s  "
                      f"p50 {result['latency_ms']['p50']:7.1f} ms  p99 {result['latency_ms']['p99']:7.1f} ms  "
                      f"batch {result['mean_batch_size']:5.1f}  dropped {result['dropped']}  wrong {result['wrong']}",
                      flush=True)  # fmt: skip
                records.append({"kind": "serve_load", "round": round_, "mode": mode, "settings": settings[mode],
                                "precision": infos[mode]["model_dtype"], "threads": infos[mode]["serving"]["threads"],
                                "texts": len(texts), **result})  # fmt: skip
    for mode, server in servers.items():
        exit_code = server.stop()
        if exit_code != 0:
            raise RuntimeError(f"serve.py ({mode}) exited with {exit_code} on SIGTERM")
    if args.json:
        import torch

        env = environment(torch.device("cpu"))
        append_records(args.json, [{**r, "run": str(args.run_dir), "environment": env} for r in records])
    return records


if __name__ == "__main__":
    main()
