"""Serve a trained run over HTTP: ``python scripts/serve.py run_dir=<dir> [host=127.0.0.1 port=8080 ...]``.

Answers ``POST /predict`` in text-embeddings-inference's shapes, so a TEI client works unchanged::

    curl -s localhost:8080/predict -H 'Content-Type: application/json' -d '{"inputs": "质量很好"}'
    [{"score": 0.97, "label": "positive"}, {"score": 0.03, "label": "negative"}]

plus ``GET /health``, ``/info`` and ``/metrics`` (Prometheus). Texts of concurrent requests are scored
together (dynamic batching): at most ``max_batch_size`` texts per model call, the oldest waiting at
most ``max_wait_ms`` for company. The model is the run's ``checkpoint`` (best) with adapters merged,
run as ``predict.py`` runs it, in ``precision`` (``auto``: the run's own) on ``device``;
``threads`` sets PyTorch's intra-op threads (0: its default). SIGTERM or Ctrl-C drains and exits 0.

Keys: run_dir, checkpoint, host, port, max_batch_size, max_wait_ms, max_batch_tokens (padded tokens per
forward pass; 0: 1024 on CPU, 16384 on CUDA), max_client_batch_size,
max_concurrent_requests, payload_limit (bytes), threads, precision, device, drain_timeout_s,
log_requests; ``data.*`` / ``trainer.*`` override the run's config (e.g. ``data.max_length``).
"""

import logging
import sys

import torch

from ftcore import cli
from ftcore.config import check_choice
from ftcore.serve.engine import Engine
from ftcore.serve.server import ServeSettings, serve
from ftcore.train.experiment import RUN_CHECKPOINTS, load_run

DEFAULTS = {
    "run_dir": "", "checkpoint": "best", "host": "127.0.0.1", "port": 8080, "max_batch_size": 32,
    "max_wait_ms": 5, "max_batch_tokens": 0, "max_client_batch_size": 32, "max_concurrent_requests": 512,
    "payload_limit": 2_000_000, "threads": 0, "precision": "auto", "device": "auto", "drain_timeout_s": 30,
    "log_requests": False,
}  # fmt: skip


def main() -> None:
    args, overrides = cli.parse_key_values(sys.argv[1:], DEFAULTS, required=("run_dir",))
    check_choice("checkpoint", args["checkpoint"], RUN_CHECKPOINTS)
    check_choice("precision", args["precision"], ("auto", "fp32", "bf16", "fp16"))
    check_choice("device", args["device"], ("auto", "cpu", "cuda"))
    settings = ServeSettings(
        host=args["host"], port=args["port"], max_batch_size=args["max_batch_size"],
        max_wait_ms=args["max_wait_ms"], max_client_batch_size=args["max_client_batch_size"],
        max_concurrent_requests=args["max_concurrent_requests"], payload_limit=args["payload_limit"],
        drain_timeout_s=args["drain_timeout_s"], log_requests=args["log_requests"],
    )  # fmt: skip
    try:
        settings.check()
    except ValueError as e:
        cli.fail(str(e))
    if args["max_batch_tokens"] < 0:
        cli.fail(f"max_batch_tokens={args['max_batch_tokens']} must be 0 (automatic) or more")
    if args["threads"] < 0:
        cli.fail(f"threads={args['threads']} must be 0 (PyTorch's default) or more")
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")

    def load() -> Engine:
        run = load_run(args["run_dir"], args["checkpoint"])
        cfg = cli.apply_overrides(run.config, overrides)
        return Engine(run, cfg, device=args["device"], precision=args["precision"],
                      max_batch_size=settings.max_batch_size, max_batch_tokens=args["max_batch_tokens"])  # fmt: skip

    drained = serve(settings, load)
    sys.exit(0 if drained else 1)


if __name__ == "__main__":
    cli.guard(main)
