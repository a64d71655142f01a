"""`labvla-serve`: serve a LeRobot checkpoint over OpenPI's msgpack WebSocket protocol.

URLs on one port:
- `ws://HOST:PORT/` (also `/openpi`): OpenPI. The server sends the policy metadata first; each
  request is a msgpack-numpy observation dict; each reply `{"actions": (T, A) float32,
  "server_timing": {"infer_ms", ...}}`; a bad request gets a text frame naming the problem
  (openpi-client raises it) and the connection stays open.
- `ws://HOST:PORT/simple`: the simple client. No metadata; the client sends
  `{"images": [...], "state": [...], "instruction": "..."}` first and gets `{"actions": [[...]]}`
  (or `{"error": "..."}`).
- `http://HOST:PORT/healthz`: 200 `OK` while serving, 503 while draining.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import hmac
import http
import logging
import logging.handlers
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from lerobot_labvla.errors import LabVLAError, cli_errors
from lerobot_labvla.serving import msgpack_numpy
from lerobot_labvla.serving.batching import Batcher, Result
from lerobot_labvla.serving.observations import (
    BadRequest,
    KeyMapper,
    Observation,
    ObservationSpec,
    decode_openpi,
    decode_simple,
    parse_key_map,
)

logger = logging.getLogger("lerobot_labvla.serving.server")

OPENPI_PATHS = ("/", "/openpi")
SIMPLE_PATHS = ("/simple",)
RECV_CHUNK_BYTES = 1 << 20


ACCESS_FORMAT = "%s %s #%d ok batch=%d queue_ms=%.1f infer_ms=%.1f total_ms=%.1f"


def _log_request(peer: str, path: str, n: int, result: Result, total_ms: float) -> None:
    logger.info(ACCESS_FORMAT, peer, path, n, result.batch_size, result.queue_ms, result.infer_ms, total_ms)


# The per-request log line. `prepare_process` (the CLI) swaps in a cheaper sink that formats the line
# itself (~1 µs, no LogRecord) for the log writer thread; library users get plain `logging`.
_access_log: Callable[[str, str, int, Result, float], None] = _log_request


class Runner(Protocol):
    spec: ObservationSpec

    def metadata(self) -> dict[str, Any]: ...

    def infer(self, obs: list[Observation]) -> np.ndarray: ...


class InferenceServer:
    """One port, two protocols, one batching model worker."""

    def __init__(
        self,
        runner: Runner,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_batch: int = 8,
        batch_timeout_ms: float = 5.0,
        api_key: str | None = None,
        key_map: dict[str, str] | None = None,
        max_message_bytes: int = 32 << 20,
        drain_timeout_s: float = 30.0,
    ):
        self.runner = runner
        self.host, self.port = host, port
        self.api_key = api_key or None
        self.mapper = KeyMapper(runner.spec, key_map or {})
        self.max_message_bytes = max_message_bytes
        self.drain_timeout_s = drain_timeout_s
        self.metadata = {**runner.metadata(), "key_aliases": dict(self.mapper.aliases), "max_batch": max_batch}
        self._connections: set[ServerConnection] = set()
        self._busy = 0  # requests received and not yet answered
        self._draining = False
        self._stop: asyncio.Event | None = None
        self._batcher_args = (max_batch, batch_timeout_ms / 1000.0)
        self.batcher: Batcher | None = None

    # --- HTTP side: health, auth, routing -------------------------------------------------
    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            if self._draining:
                return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return conn.respond(http.HTTPStatus.OK, "OK\n")
        if path not in OPENPI_PATHS + SIMPLE_PATHS:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"unknown path {path}; use / (OpenPI) or /simple\n")
        if self.api_key is not None:
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Api-Key {self.api_key}".encode()):
                logger.warning("%s refused: missing or wrong Api-Key", conn.remote_address)
                return conn.respond(http.HTTPStatus.UNAUTHORIZED, "missing or invalid 'Authorization: Api-Key ...' header\n")
        if self._draining:
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down\n")
        return None

    # --- WebSocket side --------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path
        simple = path in SIMPLE_PATHS
        peer = "%s:%s" % ws.remote_address[:2]
        packer = msgpack_numpy.Packer()
        self._connections.add(ws)
        logger.info("%s connected on %s", peer, path)
        if hasattr(ws.transport, "max_size"):
            # asyncio's selector transport reads at most 256 KiB per recv() (a class attribute meant
            # to be tuned); a request with two 224x224 images is ~300 KB, so each took two or more
            # reads, each with its own buffer, parser wake-up and ACK. Reading up to 1 MiB at once
            # cut the server's CPU per request by ~10% at 16 clients (A/B with benchmarks/serving.py's
            # load generator). Other event loops (uvloop) have no such attribute and are left alone.
            ws.transport.max_size = RECV_CHUNK_BYTES
        access = _access_log if logger.isEnabledFor(logging.INFO) else None
        try:
            if not simple:
                await ws.send(packer.pack(self.metadata))
            prev_total_ms = None
            n = 0
            while True:
                message = await ws.recv()  # (`async for` adds an async generator step per message)
                n += 1
                t0 = time.perf_counter()
                self._busy += 1
                try:
                    reply, outcome = await self._answer(message, simple, packer, prev_total_ms)
                    await ws.send(reply)
                finally:
                    self._busy -= 1
                total_ms = (time.perf_counter() - t0) * 1000
                if type(outcome) is Result:
                    prev_total_ms = total_ms
                    if access is not None:
                        access(peer, path, n, outcome, total_ms)
                else:
                    logger.warning("%s %s #%d error: %s (%.1f ms)", peer, path, n, outcome, total_ms)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            logger.info("%s disconnected", peer)

    async def _answer(
        self, message: str | bytes, simple: bool, packer: Any, prev_total_ms: float | None
    ) -> tuple[str | bytes, Result | str]:
        """→ (frame to send, the `Result` or the error text). Never raises for a client's mistake."""
        try:
            if self._draining:
                raise BadRequest("server is shutting down (SIGTERM); reconnect to another replica")
            if isinstance(message, str):
                raise BadRequest("expected a binary msgpack frame, got a text frame")
            if len(message) > self.max_message_bytes:
                raise BadRequest(
                    f"message of {len(message)} bytes is over the server's limit of {self.max_message_bytes} "
                    "bytes (--max-message-mb)"
                )
            raw = msgpack_numpy.unpackb(message)
            if simple:
                # Nested lists are slow to convert; keep the event loop free for other clients.
                obs = await asyncio.to_thread(decode_simple, raw, self.runner.spec)
            else:
                obs = decode_openpi(raw, self.runner.spec, self.mapper)
            result = self.batcher.try_inline(obs)
            if result is None:
                result = await self.batcher.enqueue(obs)
        except (ValueError, RuntimeError) as exc:  # BadRequest, WireFormatError, inference failures
            text = str(exc)
            return (packer.pack({"error": text}) if simple else text), text
        except Exception as exc:  # a bug on our side must not cost the client its connection
            logger.exception("unexpected error while answering a request")
            text = f"internal server error: {type(exc).__name__}: {exc}"
            return (packer.pack({"error": text}) if simple else text), text
        if simple:
            return packer.pack({"actions": result.actions.tolist()}), result
        timing = {"infer_ms": result.infer_ms, "queue_ms": result.queue_ms, "batch_size": result.batch_size}
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        return packer.pack({"actions": result.actions, "server_timing": timing}), result

    # --- lifecycle --------------------------------------------------------------------------
    async def run(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT (or `request_stop`), then drain in-flight requests and exit."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.batcher = Batcher(self.runner.infer, *self._batcher_args, open_connections=lambda: len(self._connections))
        self.batcher.start()
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests): request_stop() instead
            pass
        # Messages over 4x the soft limit are cut at the protocol level (close code 1009) so a client
        # cannot make the server buffer unbounded data; up to that, it gets an error reply.
        hard_limit = 4 * self.max_message_bytes
        # Torch/LeRobot leave millions of long-lived objects; without this, each full garbage collection
        # walks them all in the middle of a request (tens of ms of tail latency).
        gc.collect()
        gc.freeze()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=hard_limit,
            server_header="labvla-serve",
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            logger.info(
                "serving %s on ws://%s:%d (OpenPI: /, simple client: /simple, health: /healthz)",
                self.metadata.get("policy_type"), self.host, self.port,
            )
            if on_ready:
                on_ready(self.port)
            await self._stop.wait()
            await self._drain(server)
        await self.batcher.stop()

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _drain(self, server: Any) -> None:
        self._draining = True
        logger.info("draining: %d request(s) in flight, %d connection(s)", self._busy, len(self._connections))
        server.close(close_connections=False)  # stop accepting; keep open connections answering
        deadline = time.monotonic() + self.drain_timeout_s
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._busy:
            logger.warning("drain timeout: %d request(s) still in flight", self._busy)
        for ws in list(self._connections):
            await ws.close(code=1001, reason="server shutting down")
        await server.wait_closed()
        logger.info("stopped")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labvla-serve",
        description="Serve a LeRobot checkpoint over OpenPI's WebSocket protocol (ws://HOST:PORT/) and the "
        "simple LabVLA client protocol (ws://HOST:PORT/simple); health check at http://HOST:PORT/healthz.",
    )
    p.add_argument("--policy.path", dest="policy_path", required=True, help="checkpoint dir (pretrained_model) or Hub id")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu, mps (default: the checkpoint's, else cuda if available)")
    p.add_argument("--max-batch", type=int, default=8, help="most requests batched into one model call (1 = no batching)")
    p.add_argument("--batch-timeout-ms", type=float, default=5.0, help="longest wait for more requests to fill a batch (also capped at half the recent model time)")
    p.add_argument("--api-key", default=os.environ.get("LABVLA_API_KEY"), help="require 'Authorization: Api-Key KEY' (default: $LABVLA_API_KEY)")
    p.add_argument("--key-map", default=None, help='client key -> checkpoint key, JSON \'{"cam_high": "observation.images.front"}\' or cam_high=observation.images.front,...')
    p.add_argument("--actions-per-chunk", type=int, default=None, help="send only the first N actions of each chunk")
    p.add_argument("--max-message-mb", type=float, default=32.0, help="larger requests get an error reply")
    p.add_argument("--drain-timeout-s", type=float, default=30.0, help="on SIGTERM, wait this long for in-flight requests")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    return p


class _LogWriter(threading.Thread):
    """Writes queued log lines to stderr every `period_s`, all of a tick in one write.

    The event loop only enqueues: a LogRecord (formatted here), or the per-request line, which the
    loop formats itself for ~1 µs (`access`). Formatting hundreds of per-request records here instead
    held the GIL for most of a millisecond every tick, stalling the loop: a p99 cost at 16 clients.
    One wake-up per tick instead of one per request keeps this thread from competing with the loop
    for the CPU and the GIL; the write itself releases the GIL.
    """

    def __init__(self, records: queue.SimpleQueue, formatter: logging.Formatter, period_s: float = 0.1):
        super().__init__(name="labvla-log", daemon=True)
        self.records, self.formatter, self.period_s = records, formatter, period_s
        self._stopped = threading.Event()
        self._second, self._stamp = -1, ""

    def run(self) -> None:
        while not self._stopped.wait(self.period_s):
            self.flush()

    def access(self, peer: str, path: str, n: int, result: Result, total_ms: float) -> None:
        """The per-request line's sink on the event loop (see `_access_log`).

        The text `Formatter(LOG_FORMAT)` would give the LogRecord, with the date formatted once per
        second instead of once per line (strftime and the LogRecord dominated the cost of a line).
        """
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        self.records.put(ACCESS_LINE % (self._stamp, (t - second) * 1000, peer, path, n, result.batch_size,
                                        result.queue_ms, result.infer_ms, total_ms))

    def flush(self) -> None:
        lines = []
        while True:
            try:
                item = self.records.get_nowait()
            except queue.Empty:
                break
            lines.append(item if type(item) is str else self.formatter.format(item))
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()

    def stop(self) -> None:
        self._stopped.set()
        self.flush()


class _EnqueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted later by `_LogWriter`; our log arguments are immutable values


LOG_FORMAT = "%(asctime)s %(levelname)s labvla-serve: %(message)s"
ACCESS_LINE = "%s,%03d INFO labvla-serve: " + ACCESS_FORMAT


def _tune_allocator() -> None:
    """Keep glibc's malloc from returning memory to the kernel between requests.

    Every request allocates and frees ~1.5 MB of short-lived buffers (socket reads, the websockets
    frame, the unmasked payload, the decoded images). With glibc's defaults, blocks this large either
    come from mmap() or sit at the top of the heap, which is trimmed on free, so the next request
    page-faults the same memory back in: ~8 faults per request, ~6% of the server's CPU at 16 clients
    (A/B with benchmarks/serving.py's load generator; ~1 fault per request after). Fixed thresholds
    keep up to 64 MiB of freed heap for reuse. No-op where `mallopt` does not exist (macOS, Windows).
    """
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 16 << 20)
    mallopt(m_trim_threshold, 64 << 20)


def prepare_process(log_level: str) -> None:
    """What `labvla-serve` sets up for its process before serving: logging and the allocator."""
    _setup_logging(log_level)
    _tune_allocator()


def _setup_logging(level: str) -> None:
    # A log line per request must stay cheap next to a ~1 ms round trip: skip the caller-frame lookup
    # and the thread/process fields (the logging HOWTO's "Optimization" switches; we print none of them).
    global _access_log
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    records: queue.SimpleQueue = queue.SimpleQueue()
    writer = _LogWriter(records, logging.Formatter(LOG_FORMAT))
    writer.start()
    atexit.register(writer.stop)  # writes what is still queued at exit
    # Our own logger tree: plugin/LeRobot imports may reconfigure the root logger after us.
    log = logging.getLogger("lerobot_labvla.serving")
    log.handlers[:] = [_EnqueueHandler(records)]
    log.setLevel(level)
    log.propagate = False
    _access_log = writer.access


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    prepare_process(args.log_level.upper())
    for flag, value in (("--max-batch", args.max_batch), ("--max-message-mb", args.max_message_mb),
                        ("--actions-per-chunk", 1 if args.actions_per_chunk is None else args.actions_per_chunk)):
        if value <= 0:
            raise LabVLAError(f"{flag} must be > 0, got {value}")
    if args.batch_timeout_ms < 0:
        raise LabVLAError(f"--batch-timeout-ms must be >= 0, got {args.batch_timeout_ms}")
    from lerobot_labvla.serving.runner import PolicyRunner

    runner = PolicyRunner(args.policy_path, device=args.device, actions_per_chunk=args.actions_per_chunk)
    server = InferenceServer(
        runner,
        args.host,
        args.port,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        api_key=args.api_key,
        key_map=parse_key_map(args.key_map, runner.spec),
        max_message_bytes=int(args.max_message_mb * (1 << 20)),
        drain_timeout_s=args.drain_timeout_s,
    )
    asyncio.run(server.run())


if __name__ == "__main__":
    main()
