"""`labvla-serve`: serve a LeRobot checkpoint over OpenPI's msgpack WebSocket protocol.

URLs on one port:
- `ws://HOST:PORT/` (also `/openpi`): OpenPI and the official LabUtopia evaluator. The server sends
  the policy metadata first; each request is a msgpack-numpy observation dict; each reply
  `{"actions": (T, A) float32, "action": the same, "server_timing": {"infer_ms", ...},
  "policy_timing": {"infer_ms"}}`; a bad request gets a text frame naming the problem
  (openpi-client raises it) and the connection stays open.
- `ws://HOST:PORT/simple`: the simple client. No metadata; the client sends
  `{"images": [...], "state": [...], "instruction": "..."}` first and gets `{"actions": [[...]]}`
  (or `{"error": "..."}`).
- `http://HOST:PORT/healthz`: 200 `OK` while serving, 503 while draining.

No client can stall the others: decoding is bounded by `msgpack_numpy.Limits` (checked from length
headers before any work), big messages are decoded and validated off the event loop, the prompt is
capped in characters before any tokenizer sees it and then in the checkpoint's tokens, and the batcher
isolates requests that fail inside the model (see `batching`).

As the official LabVLA server (zjunlp/LabVLA `deployment/serve_labvla.py`), OpenPI replies zero-pad
actions narrower than 8 dims to 8 columns (`--pad-action-dim`, 0 = off). Its other leniency, zero
actions for a request without any camera, is opt-in (`--zero-actions-without-cameras`): absolute
zero joint targets would drive a real arm to its zero pose, so by default such a request gets an error.
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
from websockets.protocol import State

from lerobot_labvla.errors import LabVLAError, cli_errors, one_line
from lerobot_labvla.serving import msgpack_numpy
from lerobot_labvla.serving.batching import Batcher, InferenceError, Result
from lerobot_labvla.serving.observations import (
    BadRequest,
    KeyMapper,
    Observation,
    ObservationSpec,
    decode_simple,
    parse_key_map,
    validate,
)

logger = logging.getLogger("lerobot_labvla.serving.server")

OPENPI_PATHS = ("/", "/openpi")
SIMPLE_PATHS = ("/simple",)
RECV_CHUNK_BYTES = 1 << 20
# Messages larger than this are decoded and validated on a worker thread (a normal request with two
# or three 224-256 px uint8 cameras is 0.3-0.6 MB and stays on the loop, where it costs ~50 µs).
OFFLOAD_BYTES = 2 << 20
DEFAULT_MAX_PROMPT_CHARS = 2048
OFFICIAL_ACTION_DIM = 8  # the official server pads replies to 7 joints + gripper for the LabUtopia client
# On SIGTERM a connection is closed once it has had no request for this long (a request already
# sent, in the socket buffers, arrives well within it on any LAN).
DRAIN_IDLE_S = 0.25
AUTH_SCHEMES = ("api-key", "bearer")  # openpi-client sends `Api-Key KEY`; the official LabVLA server takes `Bearer KEY`


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


class _OneLineHandshakeLog(logging.Filter):
    """websockets logs a failed handshake (a port scanner, a bad upgrade request) with its traceback:
    keep one line per attempt instead, since anyone who can reach the port can trigger it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "opening handshake failed" and record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {one_line(record.exc_info[1])}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


_ws_logger = logging.getLogger("lerobot_labvla.serving.websockets")
_ws_logger.addFilter(_OneLineHandshakeLog())
_ws_logger.setLevel(logging.WARNING)  # our own lines say who connected, was refused or left


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
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        pad_action_dim: int = OFFICIAL_ACTION_DIM,
        zero_actions_without_cameras: bool = False,
    ):
        if api_key is not None and not api_key.strip():
            raise ValueError("the API key is empty; pass a non-empty key, or none to serve without authentication")
        self.runner = runner
        self.host, self.port = host, port
        self.api_key = api_key
        self.mapper = KeyMapper(runner.spec, key_map or {})
        self.max_message_bytes = max_message_bytes
        self.drain_timeout_s = drain_timeout_s
        self.max_prompt_chars = max_prompt_chars
        self.pad_action_dim = pad_action_dim
        self.zero_actions_without_cameras = zero_actions_without_cameras
        # A prompt of N characters is at most 4N bytes of UTF-8; nothing else in a request is a long string.
        str_bytes = max(4 * max_prompt_chars, 4096)
        self.limits = msgpack_numpy.Limits(max_str_bytes=str_bytes, max_items=1 << 16)
        # The simple protocol sends images as nested lists: up to three 640x480 cameras' worth of items.
        self.simple_limits = msgpack_numpy.Limits(max_str_bytes=str_bytes, max_items=1 << 22)
        self.metadata = {**runner.metadata(), "key_aliases": dict(self.mapper.aliases), "max_batch": max_batch,
                         "pad_action_dim": pad_action_dim, "zero_actions_without_cameras": zero_actions_without_cameras}
        self._connections: dict[ServerConnection, float | None] = {}  # -> idle since (None: a request in progress)
        self._busy = 0  # requests received and not yet answered
        self._arriving = 0  # requests received and not yet handed to the batcher (or rejected)
        self._draining = False
        self._stop: asyncio.Event | None = None
        self._batcher_args = (max_batch, batch_timeout_ms / 1000.0)
        self.batcher: Batcher | None = None

    # --- HTTP side: health, auth, routing -------------------------------------------------
    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == "/healthz":  # polled often: no log line
            if self._draining:
                return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return conn.respond(http.HTTPStatus.OK, "OK\n")
        try:
            status, text = self._check_handshake(request)
        except Exception as exc:  # never a 500 and a traceback for what an unauthenticated client sent
            status, text = http.HTTPStatus.BAD_REQUEST, f"bad request: {one_line(exc)}"
        if status is None:
            return None
        if status >= 400:
            logger.warning("%s refused (%d): %s", "%s:%s" % conn.remote_address[:2], status, text)
        return conn.respond(status, text + "\n")

    def _check_handshake(self, request: Request) -> tuple[int | None, str]:
        path = urlsplit(request.path).path
        if path not in OPENPI_PATHS + SIMPLE_PATHS:
            return http.HTTPStatus.NOT_FOUND, f"unknown path {path[:100]}; use / (OpenPI) or /simple"
        if self.api_key is not None:
            sent = request.headers.get_all("Authorization")
            if len(sent) > 1:
                return http.HTTPStatus.BAD_REQUEST, f"{len(sent)} Authorization headers; send one"
            scheme, _, key = (sent[0] if sent else "").strip().partition(" ")
            ok = scheme.lower() in AUTH_SCHEMES and hmac.compare_digest(
                key.strip().encode("utf-8", "surrogateescape"), self.api_key.encode("utf-8", "surrogateescape")
            )
            if not ok:
                return http.HTTPStatus.UNAUTHORIZED, "missing or invalid 'Authorization: Api-Key KEY' (or 'Bearer KEY') header"
        if self._draining:
            return http.HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down; connect to another replica"
        return None, ""

    # --- WebSocket side --------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path
        simple = path in SIMPLE_PATHS
        peer = "%s:%s" % ws.remote_address[:2]
        packer = msgpack_numpy.Packer()
        self._connections[ws] = None
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
            self._connections[ws] = time.monotonic()
            while True:
                message = await ws.recv()  # (`async for` adds an async generator step per message)
                self._connections[ws] = None
                n += 1
                t0 = time.perf_counter()
                self._busy += 1
                self._arriving += 1
                try:
                    reply, outcome = await self._answer(message, simple, packer, prev_total_ms, peer)
                    await ws.send(reply)
                finally:
                    self._busy -= 1
                    self.batcher.settle()  # bookkeeping of an inline model call, now that the reply is out
                self._connections[ws] = time.monotonic()
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
            self._connections.pop(ws, None)
            if self.batcher is not None:
                self.batcher.forget(peer)
            logger.info("%s disconnected", peer)

    def _decode(self, message: bytes, simple: bool) -> Observation | None:
        """→ the validated observation, or None for a camera-less request answered with zeros (opt-in)."""
        if simple:
            raw = msgpack_numpy.unpackb(message, self.simple_limits)
            obs = decode_simple(raw, self.runner.spec, self.max_prompt_chars)
        else:
            raw = msgpack_numpy.unpackb(message, self.limits)
            mapped = self.mapper.map(raw)
            if self.zero_actions_without_cameras and not any(k in mapped for k in self.runner.spec.cameras):
                return None
            obs = validate(mapped, self.runner.spec, self.mapper, self.max_prompt_chars)
        limit = getattr(self.runner, "max_prompt_tokens", None)
        if limit is not None and obs.task:
            n = self.runner.prompt_tokens(obs.task)
            if n > limit:
                raise BadRequest(
                    f"prompt/task: {n} tokens, over this checkpoint's limit of {limit} (its max_prompt_tokens; "
                    "the model would not read the rest): shorten the instruction"
                )
        return obs

    def _zero_actions(self) -> np.ndarray:
        """The official server's answer to a request without any camera: (chunk, action_dim) zeros."""
        return np.zeros((int(self.metadata["chunk_size"]), int(self.metadata["action_dim"])), np.float32)

    def _pad(self, actions: np.ndarray) -> np.ndarray:
        if actions.shape[-1] >= self.pad_action_dim:
            return actions
        out = np.zeros((*actions.shape[:-1], self.pad_action_dim), actions.dtype)
        out[..., : actions.shape[-1]] = actions
        return out

    async def _answer(
        self, message: str | bytes, simple: bool, packer: Any, prev_total_ms: float | None, client: str
    ) -> tuple[str | bytes, Result | str]:
        """→ (frame to send, the `Result` or the error text). Never raises for a client's mistake."""
        try:
            try:
                if isinstance(message, str):
                    raise BadRequest("expected a binary msgpack frame, got a text frame")
                if len(message) > self.max_message_bytes:
                    raise BadRequest(
                        f"message of {len(message)} bytes is over the server's limit of {self.max_message_bytes} "
                        "bytes (--max-message-mb)"
                    )
                if simple or len(message) > OFFLOAD_BYTES:
                    # Nested lists and big arrays take milliseconds: keep the event loop free for others.
                    obs = await asyncio.to_thread(self._decode, message, simple)
                else:
                    obs = self._decode(message, simple)
            finally:
                self._arriving -= 1
                self.batcher.notify()
            if obs is None:
                logger.warning("%s: no camera image in the request; answering zero actions (--zero-actions-without-cameras)", client)
                result = Result(self._zero_actions(), 0.0, 0.0, 0)
            else:
                result = self.batcher.try_inline(obs, client)
                if result is None:
                    result = await self.batcher.enqueue(obs, client)
        except (ValueError, InferenceError) as exc:  # BadRequest, WireFormatError, inference failures
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
        # `action` too: the official LabUtopia client reads `action`, falling back to `actions`. The
        # array is encoded once for both keys.
        actions = msgpack_numpy.encode_array(self._pad(result.actions) if self.pad_action_dim else result.actions)
        reply = {"actions": actions, "action": actions, "server_timing": timing,
                 "policy_timing": {"infer_ms": result.infer_ms}}
        return packer.pack(reply), result

    # --- lifecycle --------------------------------------------------------------------------
    async def run(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT (or `request_stop`), then drain in-flight requests and exit."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.batcher = Batcher(self.runner.infer, *self._batcher_args, arriving=lambda: self._arriving,
                               alone=lambda: len(self._connections) == 1)
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
            logger=_ws_logger,
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
        """Keep listening (so `/healthz` says 503 and new clients are told to go elsewhere), answer every
        request already sent, close each connection once it has been idle for `DRAIN_IDLE_S`."""
        self._draining = True
        logger.info("draining: %d request(s) in flight, %d connection(s)", self._busy, len(self._connections))
        t_drain = time.monotonic()
        deadline = t_drain + self.drain_timeout_s
        closing: set[asyncio.Task] = set()
        while self._connections and time.monotonic() < deadline:
            now = time.monotonic()
            for ws, idle_since in list(self._connections.items()):
                if idle_since is not None and now - max(idle_since, t_drain) >= DRAIN_IDLE_S and ws.state is State.OPEN:
                    closing.add(asyncio.create_task(ws.close(code=1001, reason="server shutting down")))
            await asyncio.sleep(0.01)
        if self._busy:
            logger.warning("drain timeout: %d request(s) still in flight", self._busy)
        for ws in list(self._connections):
            closing.add(asyncio.create_task(ws.close(code=1001, reason="server shutting down")))
        if closing:
            await asyncio.wait(closing, timeout=5)
        server.close()
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
    p.add_argument("--api-key", default=os.environ.get("LABVLA_API_KEY"), help="require 'Authorization: Api-Key KEY' or 'Bearer KEY' (default: $LABVLA_API_KEY; an empty key is refused)")
    p.add_argument("--key-map", default=None, help='client key -> checkpoint key, JSON \'{"cam_high": "observation.images.front"}\' or cam_high=observation.images.front,...')
    p.add_argument("--output-chunk-size", "--actions-per-chunk", dest="output_chunk_size", type=int, default=None,
                   help="send only the first N actions of each chunk (as the official LabVLA server's --output_chunk_size)")
    p.add_argument("--max-message-mb", type=float, default=32.0, help="larger requests get an error reply")
    p.add_argument("--max-prompt-chars", type=int, default=DEFAULT_MAX_PROMPT_CHARS,
                   help="longer prompts get an error reply before any tokenizer sees them")
    p.add_argument("--pad-action-dim", type=int, default=OFFICIAL_ACTION_DIM,
                   help="zero-pad OpenPI replies narrower than this to this many columns, as the official LabVLA server "
                   "does for the LabUtopia client (default 8; 0 = send the checkpoint's own action width)")
    p.add_argument("--zero-actions-without-cameras", action="store_true",
                   help="answer a request without any camera image with zero actions (the official server's behaviour) "
                   "instead of an error; zeros are absolute joint targets, so use this only with the LabUtopia evaluator")
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
                        ("--max-prompt-chars", args.max_prompt_chars),
                        ("--output-chunk-size", 1 if args.output_chunk_size is None else args.output_chunk_size)):
        if value <= 0:
            raise LabVLAError(f"{flag} must be > 0, got {value}")
    if args.pad_action_dim < 0:
        raise LabVLAError(f"--pad-action-dim must be >= 0 (0 = no padding), got {args.pad_action_dim}")
    if args.batch_timeout_ms < 0:
        raise LabVLAError(f"--batch-timeout-ms must be >= 0, got {args.batch_timeout_ms}")
    if args.api_key is not None and not args.api_key.strip():
        raise LabVLAError("--api-key (or $LABVLA_API_KEY) is empty: pass a non-empty key, or unset it to serve without authentication")
    from lerobot_labvla.serving.runner import PolicyRunner

    runner = PolicyRunner(args.policy_path, device=args.device, output_chunk_size=args.output_chunk_size)
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
        max_prompt_chars=args.max_prompt_chars,
        pad_action_dim=args.pad_action_dim,
        zero_actions_without_cameras=args.zero_actions_without_cameras,
    )
    asyncio.run(server.run())


if __name__ == "__main__":
    main()
