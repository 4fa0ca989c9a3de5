"""Dynamic batching: texts from concurrent requests share one queue and one worker that owns the model.

The worker takes the oldest waiting text, then keeps taking texts until it holds ``max_batch_size`` or
the oldest has waited ``max_wait_ms``, and scores them in one call. Under load the queue already holds
a full batch and nobody waits. It waits only while more texts are on their way (``coming``: a request
still being read or tokenized), so a lone client pays no ``max_wait_ms``. Texts are
taken first come, first served (no request starves); the scoring call sorts them by length
(``Engine.score`` batches as ``predict.py`` does). ``max_batch_size=1`` scores every text alone.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from ftcore.serve.protocol import ServeError
from ftcore.serve.stats import Stats

log = logging.getLogger("ftcore.serve")


@dataclass
class Waiting:
    item: object
    future: Future
    since: float


_STOP = object()


class Batcher:
    """Run ``score(items) -> outputs`` (one output per item) on batches of submitted items, in one thread.

    A failing ``score`` call fails only the futures of its batch, with ServeError ``backend`` carrying
    the message; the worker logs it and goes on with the next batch.

    ``thread=True`` starts the worker in a thread of its own; with False the caller runs :meth:`work`
    itself. ``scripts/serve.py`` makes the main thread the worker: PyTorch's CPU thread pool runs its
    parallel regions best from the thread that created it, and the HTTP threads never run the model.
    """

    def __init__(self, score: Callable[[list], list], max_batch_size: int, max_wait_ms: float,
                 stats: Stats | None = None, thread: bool = True,
                 coming: Callable[[], bool] = lambda: True):  # fmt: skip
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self.score = score
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.coming = coming
        self.closed = False
        self.stats = stats or Stats()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.worker = None
        if thread:
            self.worker = threading.Thread(target=self.work, name="ftcore-batcher", daemon=True)
            self.worker.start()

    def submit(self, items: list) -> list[Future]:
        """Queue ``items``; each future resolves to its output (or raises ServeError). After
        :meth:`close`, raises ServeError ``unhealthy``."""
        if self.closed:
            raise ServeError("unhealthy", "the server is stopping")
        now = time.monotonic()
        waiting = [Waiting(item, Future(), now) for item in items]
        self.stats.add("queued", len(waiting))
        for w in waiting:
            self.queue.put(w)
        return [w.future for w in waiting]

    def close(self) -> None:
        """Finish what is queued, then stop the worker (and wait for its thread, if it has one). Texts
        that slip in after it are refused with ``unhealthy``, never left waiting."""
        self.closed = True
        self.queue.put(_STOP)
        if self.worker is not None:
            self.worker.join()

    def _next_batch(self) -> tuple[list[Waiting], bool]:
        """The next batch, and whether the worker was asked to stop."""
        first = None
        while first is None:  # (a timed wait lets a signal handler run in the main thread)
            with contextlib.suppress(queue.Empty):
                first = self.queue.get(timeout=0.5)
        if first is _STOP:
            return [], True
        batch, deadline = [first], first.since + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.coming():
                    break
                try:  # (short waits, so a request that stops coming ends the wait early)
                    nxt = self.queue.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
        return batch, False

    def work(self) -> None:
        """Score batches until :meth:`close`; everything queued before it is answered."""
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._run(batch)
        while True:  # (a submit racing close: answer it rather than leave it waiting)
            try:
                late = self.queue.get_nowait()
            except queue.Empty:
                return
            if late is not _STOP:
                late.future.set_exception(ServeError("unhealthy", "the server is stopping"))

    def _run(self, batch: list[Waiting]) -> None:
        """Score one batch and resolve its futures."""
        start = time.monotonic()
        self.stats.add("queued", -len(batch))
        for w in batch:
            self.stats.observe("ftcore_queue_seconds", start - w.since)
        try:
            outputs = self.score([w.item for w in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"scored {len(outputs)} outputs for {len(batch)} texts")
        except Exception as e:  # a model error fails this batch only; the server keeps serving
            log.exception("inference failed for a batch of %d texts", len(batch))
            for w in batch:
                w.future.set_exception(ServeError("backend", f"inference failed: {type(e).__name__}: {e}"))
            return
        finally:
            self.stats.observe("ftcore_inference_seconds", time.monotonic() - start)
            self.stats.observe("ftcore_batch_size", len(batch))
        for w, output in zip(batch, outputs):
            w.future.set_result(output)
