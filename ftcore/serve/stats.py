"""The server's counters and histograms, written in Prometheus' text exposition format (``GET /metrics``).

Thread-safe: handler threads and the batching worker record into one :class:`Stats` under its lock.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

# Seconds: from a fraction of a millisecond (queueing under light load) to several seconds (overload).
TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative bucket counts, sum and count of observed values (Prometheus histogram semantics)."""

    def __init__(self, buckets: tuple[float, ...]):
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        return out + [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]


HISTOGRAMS = {
    "ftcore_request_duration_seconds": (
        "Time from reading a /predict request to its answer (answered requests).",
        TIME_BUCKETS,
    ),
    "ftcore_queue_seconds": ("Time a text waited in the batching queue before its batch ran.", TIME_BUCKETS),
    "ftcore_inference_seconds": ("Time the model took for one batch.", TIME_BUCKETS),
    "ftcore_batch_size": ("Texts per model batch.", SIZE_BUCKETS),
}


class Stats:
    """What ``/metrics`` reports: requests by kind, errors by status and type, in-flight requests,
    queued texts, and the histograms of :data:`HISTOGRAMS`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter = Counter()  # "single" | "batch"
        self.successes: Counter = Counter()
        self.errors: Counter = Counter()  # (status code, error type)
        self.texts = 0
        self.in_flight = 0
        self.queued = 0
        self.histograms = {name: Histogram(buckets) for name, (_, buckets) in HISTOGRAMS.items()}

    def observe(self, name: str, value: float) -> None:
        with self.lock:
            self.histograms[name].observe(value)

    def add(self, field: str, delta: int) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + delta)

    def count(self, counter: str, key) -> None:
        with self.lock:
            getattr(self, counter)[key] += 1

    def render(self) -> str:
        """The whole exposition text."""
        with self.lock:
            lines = [
                "# HELP ftcore_requests_total /predict requests received, by kind (one text or a batch).",
                "# TYPE ftcore_requests_total counter",
                *(f'ftcore_requests_total{{method="{k}"}} {self.requests[k]}' for k in ("single", "batch")),
                "# HELP ftcore_request_success_total /predict requests answered with 200.",
                "# TYPE ftcore_request_success_total counter",
                *(
                    f'ftcore_request_success_total{{method="{k}"}} {self.successes[k]}'
                    for k in ("single", "batch")
                ),
                "# HELP ftcore_request_errors_total Requests answered with an error, by status code and error type.",
                "# TYPE ftcore_request_errors_total counter",
                *(
                    f'ftcore_request_errors_total{{code="{code}",error_type="{kind}"}} {n}'
                    for (code, kind), n in sorted(self.errors.items())
                ),  # fmt: skip
                "# HELP ftcore_texts_total Texts (or text pairs) scored.",
                "# TYPE ftcore_texts_total counter",
                f"ftcore_texts_total {self.texts}",
                "# HELP ftcore_in_flight_requests Requests being handled now.",
                "# TYPE ftcore_in_flight_requests gauge",
                f"ftcore_in_flight_requests {self.in_flight}",
                "# HELP ftcore_queue_size Texts waiting for the model now.",
                "# TYPE ftcore_queue_size gauge",
                f"ftcore_queue_size {self.queued}",
            ]
            for name, (help_text, _) in HISTOGRAMS.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                lines += self.histograms[name].lines(name)
        return "\n".join(lines) + "\n"
