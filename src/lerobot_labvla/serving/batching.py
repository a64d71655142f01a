"""Batch requests from many connections onto one model worker thread.

One worker runs one batch at a time. While it runs, new requests queue up; the next batch takes
them all (up to `max_batch`). After the first request of a batch arrives, the batcher waits for
more, but only while fewer requests are queued than there are open connections that could still
send one (a lone client never waits), and at most `timeout_s` or half the recent model time,
whichever is less: waiting longer than the model runs cannot pay off. A model faster than
`INLINE_BELOW_S` skips all of this and runs on the event loop, one request at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# A model whose batches take less than this runs on the event loop, one request at a time, as
# openpi's server does: a hop to the worker thread (two context switches, more on a busy machine) and
# batching would cost more than the model. Slower models run batched on the worker thread so that
# the loop keeps answering other clients meanwhile.
INLINE_BELOW_S = 0.0005
RECENT_BATCHES = 15  # the model-time estimate is the median of this many recent batches


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
    t_submit: float = field(default_factory=time.perf_counter)


class Batcher:
    """`await submit(obs)` → `Result`; `infer(list[obs]) -> (B, T, A)` runs on one worker thread."""

    def __init__(
        self,
        infer: Callable[[list[Any]], np.ndarray],
        max_batch: int = 8,
        timeout_s: float = 0.005,
        open_connections: Callable[[], int] = lambda: 1,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._infer = infer
        self.max_batch = max_batch
        self.timeout_s = max(0.0, timeout_s)
        self._open_connections = open_connections
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labvla-infer")
        self._task: asyncio.Task | None = None
        self._model_s: float | None = None  # median of the recent batches' model times
        self._fast = False  # model_s < INLINE_BELOW_S
        self._recent_s: deque[float] = deque(maxlen=RECENT_BATCHES)
        self._thread_busy = False  # a batch is running on the worker thread

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="labvla-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def _observe(self, infer_ms: float) -> None:
        # A median, not a mean: on a busy machine a 2 µs model is sometimes preempted mid-call and
        # measures milliseconds. A mean then flipped the server to the batching path (thread hop and
        # all) for the next many requests, which showed up in the 16-client p99.
        self._recent_s.append(infer_ms / 1000)
        self._model_s = sorted(self._recent_s)[len(self._recent_s) // 2]
        self._fast = self._model_s < INLINE_BELOW_S

    async def submit(self, obs: Any) -> Result:
        result = self.try_inline(obs)
        return result if result is not None else await self.enqueue(obs)

    def try_inline(self, obs: Any) -> Result | None:
        """Answer right here if the model is fast and nothing waits; else None (then `enqueue`).

        Batching cannot pay off when the model costs less than the queueing. A plain call, not a
        coroutine: this is the whole per-request path for such a model.
        """
        if not self._fast or self._thread_busy or not self._queue.empty():
            return None
        try:
            actions, infer_ms = self._timed([obs])
        except Exception as exc:
            logger.exception("inference failed")
            raise RuntimeError(f"inference failed: {type(exc).__name__}: {exc}") from None
        self._observe(infer_ms)
        return Result(actions[0], infer_ms, 0.0, 1)

    async def enqueue(self, obs: Any) -> Result:
        """Queue `obs` for the next batch and wait for its row."""
        item = _Item(obs, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        return await item.future

    async def _collect(self) -> list[_Item]:
        items = [await self._queue.get()]
        target = min(self.max_batch, max(1, self._open_connections()))
        loop = asyncio.get_running_loop()
        window = self.timeout_s if self._model_s is None else min(self.timeout_s, 0.5 * self._model_s)
        deadline = loop.time() + window
        while len(items) < target:
            if not self._queue.empty():
                items.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [it for it in items if not it.future.done()]  # done = the client went away

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            if not items:
                continue
            t0 = time.perf_counter()
            try:
                if self._fast:
                    actions, infer_ms = self._timed([it.obs for it in items])
                else:
                    self._thread_busy = True
                    try:
                        actions, infer_ms = await loop.run_in_executor(
                            self._executor, self._timed, [it.obs for it in items]
                        )
                    finally:
                        self._thread_busy = False
            except Exception as exc:
                if len(items) > 1:
                    # One bad request must not fail the others: rerun each alone.
                    logger.warning("batch of %d failed (%s); retrying one by one", len(items), exc)
                    for it in items:
                        await self._run_one(it)
                    continue
                logger.exception("inference failed")
                self._fail(items[0], exc)
                continue
            self._deliver(items, actions, infer_ms, t0)
            self._observe(infer_ms)

    def _timed(self, obs: list[Any]) -> tuple[np.ndarray, float]:
        # Timed on the worker thread, so `infer_ms` is model time only (the thread hop is overhead).
        t0 = time.perf_counter()
        actions = self._infer(obs)
        return actions, (time.perf_counter() - t0) * 1000

    async def _run_one(self, item: _Item) -> None:
        t0 = time.perf_counter()
        try:
            actions, infer_ms = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, [item.obs])
        except Exception as exc:
            logger.exception("inference failed")
            self._fail(item, exc)
            return
        self._deliver([item], actions, infer_ms, t0)

    @staticmethod
    def _fail(item: _Item, exc: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(RuntimeError(f"inference failed: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _deliver(items: list[_Item], actions: np.ndarray, infer_ms: float, t0: float) -> None:
        for i, it in enumerate(items):
            if not it.future.done():
                it.future.set_result(Result(actions[i], infer_ms, (t0 - it.t_submit) * 1000, len(items)))
