"""Batch requests from many connections onto one model worker thread.

One worker runs one batch at a time. While it runs, new requests queue up; the next batch takes
them in arrival order (up to `max_batch`, at most one per client). The batcher never waits for
connections that are not sending: it waits for more only while requests it already has are still
being decoded (the server reports how many), at most `timeout_s` or half the recent model time,
whichever is less. A model faster than `INLINE_BELOW_S` skips all of this and runs on the event
loop, one request at a time. So does a model faster than `ALONE_INLINE_BELOW_S` while its client is
the only one connected (the server says so): nobody else is there to be kept waiting, and the hop to
the worker thread and back would be the largest part of the request's overhead. Otherwise models run
on the one worker thread.

A batch that fails inside the model is split and each part retried: first the requests of clients
whose requests have run before apart from the others (the usual culprit is a new client), then in
halves, so the requests that can run are answered after a few extra calls (at most about
2·log2(batch)), not one call each; a request that fails on its own gets its error. Its client is
then a suspect: its next requests run in a batch of their own (one model call, never inside
anyone else's batch) until one succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerobot_labvla.errors import one_line

logger = logging.getLogger(__name__)

# A model whose batches take less than this runs on the event loop, one request at a time, as
# openpi's server does: a hop to the worker thread (two context switches, more on a busy machine) and
# batching would cost more than the model. Slower models run batched on the worker thread so that
# the loop keeps answering other clients meanwhile.
INLINE_BELOW_S = 0.0005
# ...except while a single client is connected: then a model faster than this also runs on the loop.
# The hop to the worker thread and back (two thread wake-ups, each waking an idle CPU on an idle VM)
# was the largest part of a lone client's overhead: ~0.3 ms more than openpi's server with a 20 ms
# model. Nobody else is there to wait meanwhile; a second client's handshake or a health check waits
# for at most the one model call in progress, which this bound keeps short. The rule is about
# connections, not about an empty queue: switching a torch model between the loop and the worker
# thread from one request to the next (each calling thread gets its own OpenMP team) cut batched
# throughput on the tiny CPU checkpoint from 96 to 39 requests/s in an earlier A/B, while the number
# of connections changes rarely. The first call (no timing yet) runs on the worker thread.
ALONE_INLINE_BELOW_S = 0.05
RECENT_BATCHES = 15  # the model-time estimate is the median of this many recent batches


class InferenceError(RuntimeError):
    """The model failed on this request (the request passed validation)."""


@dataclass
class Result:
    actions: np.ndarray  # (T, A) float32
    infer_ms: float  # the whole batch's model time (preprocess + predict + postprocess)
    queue_ms: float  # from submit to the start of its batch
    batch_size: int


@dataclass
class _Item:
    obs: Any
    future: asyncio.Future
    client: Hashable | None
    t_submit: float = field(default_factory=time.perf_counter)


class Batcher:
    """`await submit(obs, client)` → `Result`; `infer(list[obs]) -> (B, T, A)` runs on one worker thread."""

    def __init__(
        self,
        infer: Callable[[list[Any]], np.ndarray],
        max_batch: int = 8,
        timeout_s: float = 0.005,
        arriving: Callable[[], int] = lambda: 0,
        alone: Callable[[], bool] = lambda: False,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._infer = infer
        self.max_batch = max_batch
        self.timeout_s = max(0.0, timeout_s)
        self._arriving = arriving  # requests received by the server and not yet submitted
        self._alone = alone  # a single client is connected
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._awaiting_arrivals = False  # `_collect` waits for requests still being decoded
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labvla-infer")
        self._task: asyncio.Task | None = None
        self._model_s: float | None = None  # median of the recent batches' model times
        self._fast = False  # model_s < INLINE_BELOW_S
        self._fast_alone = False  # model_s < ALONE_INLINE_BELOW_S
        self._recent_s: deque[float] = deque(maxlen=RECENT_BATCHES)
        self._thread_busy = False  # a batch is running on the worker thread
        self.suspects: set[Hashable] = set()  # clients whose last request failed inside the model
        self._proven: set[Hashable] = set()  # clients with a request that ran, and none failed since
        self._unsettled: list[tuple[Hashable | None, float]] = []  # inline successes not yet counted

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="labvla-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for it in self._queue:
            if not it.future.done():
                it.future.set_exception(InferenceError("server is shutting down"))
        self._executor.shutdown(wait=True)

    def forget(self, client: Hashable) -> None:
        """The client went away."""
        self.suspects.discard(client)
        self._proven.discard(client)

    def _observe(self, infer_ms: float) -> None:
        # A median, not a mean: on a busy machine a 2 µs model is sometimes preempted mid-call and
        # measures milliseconds. A mean then flipped the server to the batching path (thread hop and
        # all) for the next many requests, which showed up in the 16-client p99.
        self._recent_s.append(infer_ms / 1000)
        self._model_s = sorted(self._recent_s)[len(self._recent_s) // 2]
        self._fast = self._model_s < INLINE_BELOW_S
        self._fast_alone = self._model_s < ALONE_INLINE_BELOW_S

    async def submit(self, obs: Any, client: Hashable | None = None) -> Result:
        result = self.try_inline(obs, client)
        return result if result is not None else await self.enqueue(obs, client)

    def try_inline(self, obs: Any, client: Hashable | None = None) -> Result | None:
        """Answer right here if the model is fast (or fast enough and the client alone) and nothing
        waits; else None (then `enqueue`).

        Batching cannot pay off when the model costs less than the queueing, nor with nobody to batch
        with. A plain call, not a coroutine: this is the whole per-request path for such a model.
        """
        if self._unsettled:
            self.settle()
        if self._thread_busy or self._queue or not (self._fast or (self._fast_alone and self._alone())):
            return None
        try:
            actions, infer_ms = self._timed([obs])
        except Exception as exc:
            self._suspect(client, exc)
            raise InferenceError(f"inference failed: {one_line(exc)}") from None
        self._unsettled.append((client, infer_ms))  # counted by `settle`, once the reply is on its way
        return Result(actions[0], infer_ms, 0.0, 1)

    def settle(self) -> None:
        """Count the inline calls answered since the last time (model-time estimate, proven clients).

        The server calls this after sending the reply: right after a model call the CPU's caches are
        cold (the core idled through it), so every line run before the reply goes out is paid for in
        the client's latency. The batcher also settles before its next decision, for other callers.
        """
        for client, infer_ms in self._unsettled:
            self._succeeded(client)
            self._observe(infer_ms)
        self._unsettled.clear()

    async def enqueue(self, obs: Any, client: Hashable | None = None) -> Result:
        """Queue `obs` for the next batch and wait for its row."""
        if self._unsettled:
            self.settle()
        item = _Item(obs, asyncio.get_running_loop().create_future(), client)
        self._queue.append(item)
        self._wakeup.set()
        return await item.future

    def notify(self) -> None:
        """A request the batcher may be waiting for will not come (rejected, or answered inline).

        Only wakes the batcher while it waits for arrivals: every request calls this, and waking an
        idle batcher for nothing cost a task step per request.
        """
        if self._awaiting_arrivals:
            self._wakeup.set()

    async def _wait(self, timeout: float | None) -> bool:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _take(self) -> list[_Item]:
        """The next batch: a suspect at the head runs alone; else arrival order, no suspects, one per client."""
        while self._queue and self._queue[0].future.done():  # the client went away
            self._queue.popleft()
        if not self._queue:
            return []
        head = self._queue[0]
        if head.client is not None and head.client in self.suspects:
            return [self._queue.popleft()]
        batch: list[_Item] = []
        clients: set = set()
        keep: deque[_Item] = deque()
        while self._queue and len(batch) < self.max_batch:
            it = self._queue.popleft()
            if it.future.done():
                continue
            if it.client is not None and (it.client in self.suspects or it.client in clients):
                keep.append(it)
                continue
            clients.add(it.client)
            batch.append(it)
        keep.extend(self._queue)
        self._queue = keep
        return batch

    async def _collect(self) -> list[_Item]:
        while not self._queue:
            await self._wait(None)
        loop = asyncio.get_running_loop()
        window = self.timeout_s if self._model_s is None else min(self.timeout_s, 0.5 * self._model_s)
        deadline = loop.time() + window
        # Wait only for requests already received and still being decoded, never for idle connections.
        self._awaiting_arrivals = True
        try:
            while len(self._queue) < self.max_batch and self._arriving() > 0:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._wait(remaining):
                    break
        finally:
            self._awaiting_arrivals = False
        return self._take()

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            if items:
                await self._run_batch(items)

    async def _run_batch(self, items: list[_Item]) -> None:
        t0 = time.perf_counter()
        try:
            if self._fast:
                actions, infer_ms = self._timed([it.obs for it in items])
            else:
                self._thread_busy = True
                try:
                    actions, infer_ms = await asyncio.get_running_loop().run_in_executor(
                        self._executor, self._timed, [it.obs for it in items]
                    )
                finally:
                    self._thread_busy = False
        except Exception as exc:
            if len(items) == 1:
                self._fail(items[0], exc)
                return
            # Someone in this batch cannot run: split, so the others are answered in a few calls.
            first, second = self._split(items)
            logger.warning("batch of %d failed (%s); retrying as %d + %d", len(items), one_line(exc), len(first), len(second))
            await self._run_batch(first)
            await self._run_batch(second)
            return
        self._observe(infer_ms)
        for i, it in enumerate(items):
            self._succeeded(it.client)
            if not it.future.done():
                it.future.set_result(Result(actions[i], infer_ms, (t0 - it.t_submit) * 1000, len(items)))

    def _split(self, items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        proven = [it for it in items if it.client in self._proven]
        if 0 < len(proven) < len(items):
            return proven, [it for it in items if it.client not in self._proven]
        half = len(items) // 2
        return items[:half], items[half:]

    def _succeeded(self, client: Hashable | None) -> None:
        if client is not None:
            self.suspects.discard(client)
            self._proven.add(client)

    def _timed(self, obs: list[Any]) -> tuple[np.ndarray, float]:
        # Timed on the worker thread, so `infer_ms` is model time only (the thread hop is overhead).
        t0 = time.perf_counter()
        actions = self._infer(obs)
        return actions, (time.perf_counter() - t0) * 1000

    def _suspect(self, client: Hashable | None, exc: Exception) -> None:
        if client is not None:
            self.suspects.add(client)
            self._proven.discard(client)
        logger.warning("inference failed for one request%s: %s", f" from {client}" if client is not None else "", one_line(exc))
        logger.debug("traceback of the failed inference", exc_info=exc)

    def _fail(self, item: _Item, exc: Exception) -> None:
        self._suspect(item.client, exc)
        if not item.future.done():
            item.future.set_exception(InferenceError(f"inference failed: {one_line(exc)}"))
