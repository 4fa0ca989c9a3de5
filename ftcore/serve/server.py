"""The HTTP server: text-embeddings-inference's routes on the standard library's threading server.

Routes: ``POST /predict`` (see ``protocol``), ``GET /health`` (200 once the model is loaded and warm,
503 while loading or draining), ``GET /info`` (the run and the serving settings), ``GET /metrics``
(Prometheus text). Each connection gets a thread that reads, checks and tokenizes its requests; the
model runs only in the :class:`Batcher`'s worker. At most ``max_concurrent_requests`` requests are
handled at once; more are refused with ``overloaded`` (429) instead of queueing without bound.

Shutdown (:func:`serve`): SIGTERM or SIGINT stops accepting (``/health`` and new requests answer 503),
waits for the requests in flight to be answered, then exits.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

import ftcore
from ftcore.errors import ConfigError
from ftcore.serve.batcher import Batcher
from ftcore.serve.engine import Engine
from ftcore.serve.protocol import ServeError, parse_predict
from ftcore.serve.stats import Stats

log = logging.getLogger("ftcore.serve")

ROUTES = {"/predict": "POST", "/health": "GET", "/info": "GET", "/metrics": "GET"}


@dataclass
class ServeSettings:
    """``scripts/serve.py``'s keys (TEI's names where TEI has the setting)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_size: int = 32  # texts per model call
    max_wait_ms: float = 5.0  # how long the oldest queued text waits for a fuller batch
    max_client_batch_size: int = 32  # texts in one request
    max_concurrent_requests: int = 512
    payload_limit: int = 2_000_000  # bytes of a request body
    drain_timeout_s: float = 30.0
    log_requests: bool = False

    def check(self) -> None:
        for key in ("max_batch_size", "max_client_batch_size", "max_concurrent_requests", "payload_limit"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms={self.max_wait_ms} must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port} must be in [0, 65535]")


class InferenceServer(ThreadingHTTPServer):
    """The listening socket, the serving state and what the handlers share."""

    daemon_threads = True
    request_queue_size = 1024  # connections waiting to be accepted (socketserver's default, 5, resets bursts)

    def __init__(self, settings: ServeSettings):
        super().__init__((settings.host, settings.port), Handler)
        self.settings = settings
        self.stats = Stats()
        self.state = "loading"  # -> "ready" -> "draining"
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.permits = threading.BoundedSemaphore(settings.max_concurrent_requests)
        self.preparing = 0  # requests in flight that have not queued their texts yet
        self.idle = threading.Condition()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def attach(self, engine: Engine, worker_thread: bool = True) -> None:
        """Serve ``engine``: set up the batcher (its worker in a thread of its own, or, with
        ``worker_thread=False``, the caller's to run with ``batcher.work()``), warm the model up in this
        thread, then report healthy."""
        self.engine = engine
        self.batcher = Batcher(engine.score, self.settings.max_batch_size, self.settings.max_wait_ms,
                               self.stats, thread=worker_thread, coming=lambda: self.preparing > 0)  # fmt: skip
        engine.warm_up()
        with self.idle:  # (a drain that began during warm-up keeps the server draining)
            if self.state == "loading":
                self.state = "ready"

    def drain(self, timeout: float) -> bool:
        """Refuse new requests, wait (up to ``timeout`` seconds) for those in flight; True if all finished."""
        with self.idle:
            self.state = "draining"
            done = self.idle.wait_for(lambda: self.stats.in_flight == 0, timeout)
        self.shutdown()
        if self.batcher is not None:
            self.batcher.close()
        self.server_close()
        return done

    def info(self) -> dict:
        s = self.settings
        info = {"version": ftcore.__version__, "state": self.state}
        if self.engine is not None:
            info.update(self.engine.info())
        info.update(
            max_concurrent_requests=s.max_concurrent_requests, max_batch_requests=s.max_batch_size,
            max_client_batch_size=s.max_client_batch_size, auto_truncate=False,
            serving={**asdict(s), "threads": torch.get_num_threads()},
        )  # fmt: skip
        return info


class Handler(BaseHTTPRequestHandler):
    """One connection (HTTP/1.1 keep-alive): route, answer JSON, count everything in ``server.stats``."""

    protocol_version = "HTTP/1.1"
    server_version = f"ftcore/{ftcore.__version__}"
    disable_nagle_algorithm = True  # a small answer goes out at once, not after the client's delayed ACK
    timeout = 60  # seconds a client may stay silent mid-request before its connection is dropped
    server: InferenceServer

    # -- plumbing ---------------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if self.server.settings.log_requests:
            log.info("%s %s", self.address_string(), format % args)

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        """One whole answer (headers, then the body unless the request was HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value: object, headers: dict | None = None) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8", errors="backslashreplace")
        self.send_body(status, body, "application/json", headers)

    def send_error_body(self, error: ServeError, headers: dict | None = None) -> None:
        self.server.stats.count("errors", (error.status, error.error_type))
        self.send_json(error.status, error.body(), headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library answers itself (a malformed request line, headers too long, an
        unknown method), in the same JSON body shape as every other error."""
        self.close_connection = True
        kind = HTTPStatus(code).phrase.lower().replace(" ", "_").replace("-", "_")
        self.send_error_body(ServeError(kind, message or HTTPStatus(code).phrase, status=code))

    def route(self, method: str) -> bool:
        """True if ``self.path`` takes ``method``; otherwise answer 404 or 405. Either way a GET's or a
        refused request's body is read and dropped, so the connection stays in step."""
        path = self.path.split("?", 1)[0]
        if ROUTES.get(path) == method:
            if method == "GET":
                self.skip_body()
            return True
        self.skip_body()
        if path not in ROUTES:
            self.send_error_body(ServeError("not_found", f"no route {path}; routes: {', '.join(ROUTES)}"))
        else:
            allowed = ROUTES[path]
            self.send_error_body(
                ServeError("method_not_allowed", f"{path} takes {allowed}, not {method}"), {"Allow": allowed}
            )
        return False

    def body_length(self) -> int | None:
        """The declared body length; None when there is none. A chunked body (unsupported) or a length
        that is not a plain byte count closes the connection after the answer."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ServeError(
                "length_required", "chunked request bodies are not supported; send Content-Length"
            )
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        if not re.fullmatch(r"[0-9]{1,15}", length.strip()):
            self.close_connection = True
            raise ServeError("bad_request", f"Content-Length {length!r} is not a byte count")
        return int(length)

    def skip_body(self) -> None:
        """Read and drop a body we will not use (or close the connection after the answer)."""
        try:
            length = self.body_length()
        except ServeError:
            return
        if length is not None and length <= self.server.settings.payload_limit:
            self.rfile.read(length)
        elif length is not None:
            self.close_connection = True

    def read_body(self) -> bytes:
        length = self.body_length()
        if length is None:
            self.close_connection = True
            raise ServeError("length_required", "a request body needs a Content-Length header")
        if length > self.server.settings.payload_limit:
            self.close_connection = True  # the body stays unread: linger() after the answer
            raise ServeError(
                "validation", f"the request body ({length} bytes) is over the limit of "
                f"{self.server.settings.payload_limit} bytes",
            )  # fmt: skip
        return self.rfile.read(length)

    def linger(self, seconds: float = 2.0, most: int = 64 << 20) -> None:
        """After refusing a body unread: stop writing, then read and drop what the client still sends for
        a bounded time, so it sees our answer instead of a connection reset."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(seconds)
            deadline, read = time.monotonic() + seconds, 0
            while read < most and time.monotonic() < deadline:
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                read += len(chunk)
        except OSError:
            pass

    # -- methods ----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self.route("GET"):
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.send_body(
                200, self.server.stats.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
            )
        elif self.server.state != "ready":
            self.send_error_body(ServeError("unhealthy", f"the server is {self.server.state}"))
        elif path == "/health":
            self.send_body(200, b"", "text/plain")
        else:
            self.send_json(200, self.server.info())

    def do_HEAD(self) -> None:
        """A GET route's status and headers, without the body (e.g. a load balancer's health check)."""
        if ROUTES.get(self.path.split("?", 1)[0]) == "GET":
            self.do_GET()
        else:
            self.route("HEAD")

    def do_POST(self) -> None:
        if not self.route("POST"):
            return
        server, started = self.server, time.monotonic()
        try:
            body = self.read_body()
        except ServeError as e:
            self.send_error_body(e)
            if e.error_type == "validation":  # too large: refused unread
                self.linger()
            return
        with server.idle:  # (drain() flips the state under the same lock: no request slips past it)
            ready = server.state == "ready"
            if ready:
                server.stats.add("in_flight", 1)
        if not ready:
            self.close_connection = True
            self.send_error_body(ServeError("unhealthy", f"the server is {server.state}"))
            return
        try:  # in flight until the answer is written, so a draining server waits for it
            if not server.permits.acquire(blocking=False):
                self.send_error_body(ServeError("overloaded", "Model is overloaded"))
                return
            try:
                status, answer, headers = self.predict(body, started)
            except Exception as e:  # a bug: log it, answer, keep serving
                log.exception("internal error answering /predict")
                error = ServeError(
                    "internal", f"internal error ({type(e).__name__}); see the server log", status=500
                )
                status, answer, headers = 500, error, {}
            finally:
                server.permits.release()
            if isinstance(answer, ServeError):
                self.send_error_body(answer)
            else:
                self.send_json(status, answer, headers)
        finally:
            with server.idle:
                server.stats.add("in_flight", -1)
                server.idle.notify_all()

    def predict(self, body: bytes, started: float) -> tuple[int, object, dict]:
        server, engine = self.server, self.server.engine
        with server.idle:
            server.preparing += 1
        try:
            try:
                request = parse_predict(body, server.settings.max_client_batch_size)
                server.stats.count("requests", "batch" if request.batched else "single")
                items = engine.encode(request.inputs, request.truncate)
                encoded = time.monotonic()
                futures = server.batcher.submit(items)
            finally:
                with server.idle:
                    server.preparing -= 1
            outputs = [f.result() for f in futures]
            answers = [engine.answer(item, out, request.raw_scores) for item, out in zip(items, outputs)]
        except ServeError as e:
            return e.status, e, {}
        server.stats.count("successes", "batch" if request.batched else "single")
        server.stats.add("texts", len(items))
        total = time.monotonic() - started
        server.stats.observe("ftcore_request_duration_seconds", total)
        headers = {
            "x-total-time": str(round(total * 1000)),
            "x-tokenization-time": str(round((encoded - started) * 1000)),
            "x-compute-characters": str(sum(len(t) + len(p or "") for t, p in request.inputs)),
        }
        return 200, answers if request.batched else answers[0], headers

    def _no_such_method(self) -> None:
        self.route(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _no_such_method


def serve(
    settings: ServeSettings,
    load: Callable[[], Engine],
    ready: Callable[[InferenceServer], None] | None = None,
) -> bool:
    """Listen, load the model (``/health`` answers 503 meanwhile), serve until SIGTERM/SIGINT, drain.

    The HTTP server runs in a background thread; the calling (main) thread loads the model and then
    runs every batch (see ``Batcher``). A signal starts the drain in another thread, which stops the
    worker once the requests in flight are answered. Returns True if they all were within
    ``drain_timeout_s``. ``ready`` is called once the server is healthy (tests, benchmarks).
    """
    stop, drained, draining = threading.Event(), [], []
    try:
        server = InferenceServer(settings)
    except OSError as e:  # e.g. the port is taken
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}") from None

    def drain() -> None:
        log.info("stopping: draining %d request(s) in flight", server.stats.in_flight)
        drained.append(server.drain(settings.drain_timeout_s))

    def start_draining() -> None:
        draining.append(threading.Thread(target=drain, name="ftcore-drain", daemon=True))
        draining[0].start()

    def on_signal(*_) -> None:
        if not stop.is_set():
            stop.set()
            if server.batcher is not None:  # (while loading, the drain starts once the model is up)
                start_draining()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    log.info("listening on %s; loading the model", server.url)
    try:
        engine = load()
        server.attach(engine, worker_thread=False)
    except BaseException:
        server.shutdown()
        server.server_close()
        raise
    log.info("ready: %s on %s (%s, %s, max_batch_size=%d, max_wait_ms=%g)", engine.info()["model_id"],
             server.url, engine.device, engine.precision, settings.max_batch_size, settings.max_wait_ms)  # fmt: skip
    if ready is not None:
        ready(server)
    if stop.is_set() and not draining:
        start_draining()
    server.batcher.work()  # until the drain closes the queue
    draining[0].join()
    log.info(
        "stopped" if drained and drained[0] else "stopped with requests still in flight after drain_timeout_s"
    )
    return bool(drained and drained[0])
