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
from lerobot_labvla.serving.batching import Batcher
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
        try:
            if not simple:
                await ws.send(packer.pack(self.metadata))
            prev_total_ms = None
            n = 0
            async for message in ws:
                n += 1
                t0 = time.perf_counter()
                self._busy += 1
                try:
                    reply, ok, log = await self._answer(message, simple, packer, prev_total_ms)
                    await ws.send(reply)
                finally:
                    self._busy -= 1
                total_ms = (time.perf_counter() - t0) * 1000
                if ok:
                    prev_total_ms = total_ms
                    logger.info("%s %s #%d %s total_ms=%.1f", peer, path, n, log, total_ms)
                else:
                    logger.warning("%s %s #%d error: %s (%.1f ms)", peer, path, n, log, total_ms)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            logger.info("%s disconnected", peer)

    async def _answer(
        self, message: str | bytes, simple: bool, packer: Any, prev_total_ms: float | None
    ) -> tuple[str | bytes, bool, str]:
        """→ (frame to send, ok, log text). Never raises for a client's mistake."""
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
            result = await self.batcher.submit(obs)
        except (ValueError, RuntimeError) as exc:  # BadRequest, WireFormatError, inference failures
            text = str(exc)
            return (packer.pack({"error": text}) if simple else text), False, text
        except Exception as exc:  # a bug on our side must not cost the client its connection
            logger.exception("unexpected error while answering a request")
            text = f"internal server error: {type(exc).__name__}: {exc}"
            return (packer.pack({"error": text}) if simple else text), False, text
        log = f"ok batch={result.batch_size} queue_ms={result.queue_ms:.1f} infer_ms={result.infer_ms:.1f}"
        if simple:
            return packer.pack({"actions": result.actions.tolist()}), True, log
        timing = {"infer_ms": result.infer_ms, "queue_ms": result.queue_ms, "batch_size": result.batch_size}
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        return packer.pack({"actions": result.actions, "server_timing": timing}), True, log

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
    """Writes queued log records to stderr every `period_s`, all of a tick in one write.

    The event loop only enqueues a record (a few µs); formatting and I/O happen here, and one wake-up
    per tick instead of one per request keeps this thread from competing with the loop for the CPU
    and the GIL when many clients are served at once.
    """

    def __init__(self, records: queue.SimpleQueue, formatter: logging.Formatter, period_s: float = 0.05):
        super().__init__(name="labvla-log", daemon=True)
        self.records, self.formatter, self.period_s = records, formatter, period_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.period_s):
            self.flush()

    def flush(self) -> None:
        lines = []
        while True:
            try:
                lines.append(self.formatter.format(self.records.get_nowait()))
            except queue.Empty:
                break
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()

    def stop(self) -> None:
        self._stopped.set()
        self.flush()


class _EnqueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted later by `_LogWriter`; our log arguments are immutable values


def _setup_logging(level: str) -> None:
    # A log line per request must stay cheap next to a ~1 ms round trip: skip the caller-frame lookup
    # and the thread/process fields (the logging HOWTO's "Optimization" switches; we print none of them).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    records: queue.SimpleQueue = queue.SimpleQueue()
    writer = _LogWriter(records, logging.Formatter("%(asctime)s %(levelname)s labvla-serve: %(message)s"))
    writer.start()
    atexit.register(writer.stop)  # writes what is still queued at exit
    # Our own logger tree: plugin/LeRobot imports may reconfigure the root logger after us.
    log = logging.getLogger("lerobot_labvla.serving")
    log.handlers[:] = [_EnqueueHandler(records)]
    log.setLevel(level)
    log.propagate = False


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level.upper())
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
