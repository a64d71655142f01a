"""The batcher on its own: concurrent requests share model calls; one failure stays with its request."""

import asyncio
import threading
import time

import numpy as np
import pytest

from lerobot_labvla.serving.batching import Batcher


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def slow_model(calls: list):
    def infer(obs: list) -> np.ndarray:
        calls.append(len(obs))
        if any(o == "bad" for o in obs):
            raise ValueError("bad observation")
        time.sleep(0.02)
        return np.stack([np.full((10, 7), o, np.float32) for o in obs])

    return infer


def test_concurrent_requests_are_batched_and_routed_back():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05, open_connections=lambda: 8)
        b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(8)))
        await b.stop()
        return results

    results = run(main())
    assert [r.actions[0, 0] for r in results] == list(range(8))  # each client gets its own row
    assert max(calls) > 1 and sum(calls) == 8


def test_a_failing_request_does_not_fail_its_batch_mates():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=4, timeout_s=0.05, open_connections=lambda: 4)
        b.start()
        results = await asyncio.gather(*(b.submit(o) for o in (1, "bad", 3, 4)), return_exceptions=True)
        await b.stop()
        return results

    results = run(main())
    assert isinstance(results[1], RuntimeError) and "bad observation" in str(results[1])
    assert [results[i].actions[0, 0] for i in (0, 2, 3)] == [1, 3, 4]


@pytest.mark.parametrize("max_batch", [1, 4])
def test_max_batch_is_respected(max_batch):
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=max_batch, timeout_s=0.05, open_connections=lambda: 6)
        b.start()
        await asyncio.gather(*(b.submit(i) for i in range(6)))
        await b.stop()

    run(main())
    assert max(calls) <= max_batch


def test_a_fast_model_stays_on_the_event_loop_through_a_preempted_call():
    # A ~µs model runs inline on the loop. One call that happens to take 20 ms (the OS preempted it)
    # must not move the following requests onto the worker thread.
    threads: list = []
    slow_calls = {3}

    def infer(obs: list) -> np.ndarray:
        threads.append(threading.current_thread().name)
        if len(threads) in slow_calls:
            time.sleep(0.02)
        return np.zeros((len(obs), 10, 7), np.float32)

    async def main():
        b = Batcher(infer, max_batch=8, timeout_s=0.005)
        b.start()
        for i in range(12):
            await b.submit(i)
        await b.stop()

    run(main())
    loop_thread = threading.current_thread().name
    assert threads[0] != loop_thread  # the first call has no timing yet: worker thread
    assert threads[1:] == [loop_thread] * 11, threads
