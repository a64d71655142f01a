"""The batcher on its own: concurrent requests share model calls; a failure stays with its request and
its client; nobody waits for connections that are not sending."""

import asyncio
import threading
import time

import numpy as np
import pytest

from lerobot_labvla.serving.batching import Batcher, InferenceError


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def slow_model(calls: list, cost_s: float = 0.02):
    def infer(obs: list) -> np.ndarray:
        calls.append(list(obs))
        if any(o == "bad" for o in obs):
            raise ValueError("bad observation")
        time.sleep(cost_s)
        return np.stack([np.full((10, 7), o, np.float32) for o in obs])

    return infer


async def submit_all(b: Batcher, items, clients=None):
    clients = clients or [None] * len(items)
    return await asyncio.gather(*(b.submit(o, c) for o, c in zip(items, clients, strict=True)), return_exceptions=True)


def test_requests_queued_during_a_model_call_share_the_next_one_and_are_routed_back():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05)
        b.start()
        first = asyncio.ensure_future(b.submit(-1))
        await asyncio.sleep(0.005)  # the model is busy with `first`; these 8 queue up meanwhile
        results = await submit_all(b, list(range(8)))
        await first
        await b.stop()
        return results

    results = run(main())
    assert [r.actions[0, 0] for r in results] == list(range(8))  # each client gets its own row
    assert [len(c) for c in calls] == [1, 8]
    assert all(r.batch_size == 8 for r in results)


def test_a_lone_request_never_waits_for_idle_connections():
    # A long batch window must not delay a request when no other request is on its way, however
    # many connections are open.
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls, 0.001), max_batch=8, timeout_s=1.0, arriving=lambda: 0)
        b.start()
        out = [await b.submit(i, "c") for i in range(3)]
        await b.stop()
        return out

    t0 = time.perf_counter()
    results = run(main())
    assert time.perf_counter() - t0 < 0.5  # with a 1 s window that waited, this takes 3 s
    assert all(r.queue_ms < 100 for r in results)


def test_the_batcher_waits_for_requests_still_being_decoded():
    calls: list = []
    arriving = [1]

    async def main():
        b = Batcher(slow_model(calls, 0.001), max_batch=8, timeout_s=0.5, arriving=lambda: arriving[0])
        b.start()
        first = asyncio.ensure_future(b.submit(1, "a"))
        await asyncio.sleep(0.05)  # the second request is "being decoded"
        arriving[0] = 0
        second = await b.submit(2, "b")
        await first
        await b.stop()
        return second

    assert run(main()).batch_size == 2
    assert [len(c) for c in calls] == [2]


def test_a_failing_request_gets_its_error_without_a_call_per_batch_mate():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05)
        b.start()
        first = asyncio.ensure_future(b.submit(-1))
        await asyncio.sleep(0.005)
        items = [1, 2, 3, "bad", 5, 6, 7, 8]
        results = await submit_all(b, items, clients=[f"c{i}" for i in range(8)])
        await first
        await b.stop()
        return b, results

    b, results = run(main())
    assert isinstance(results[3], InferenceError) and "bad observation" in str(results[3])
    assert [results[i].actions[0, 0] for i in (0, 1, 2, 4, 5, 6, 7)] == [1, 2, 3, 5, 6, 7, 8]
    # 8 -> 4 + 4 -> (2 + 2) -> (1 + 1): 6 calls after the failed one, not 8 one-by-one reruns.
    assert len(calls) - 2 <= 6, [len(c) for c in calls]
    assert max(len(c) for c in calls[2:]) == 4
    assert b.suspects == {"c3"}


def test_a_suspect_client_runs_alone_until_it_succeeds():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05)
        b.suspects.add("poison")
        b.start()
        first = asyncio.ensure_future(b.submit(-1, "x"))
        await asyncio.sleep(0.005)
        results = await submit_all(b, [1, "bad", 2, 3], clients=["a", "poison", "b", "c"])
        await first
        still = "poison" in b.suspects
        await b.submit(4, "poison")  # succeeds: no longer a suspect
        await b.stop()
        return results, still, b.suspects

    results, still, suspects = run(main())
    assert isinstance(results[1], InferenceError)
    assert ["bad"] in calls and [1, 2, 3] in calls  # the others' batch never held the suspect's request
    assert still and suspects == set()


def test_one_request_per_client_per_batch():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05)
        b.start()
        first = asyncio.ensure_future(b.submit(-1, "x"))
        await asyncio.sleep(0.005)
        await submit_all(b, [1, 2, 3, 4], clients=["greedy", "greedy", "greedy", "other"])
        await first
        await b.stop()

    run(main())
    assert calls[1:] == [[1, 4], [2], [3]]


@pytest.mark.parametrize("max_batch", [1, 4])
def test_max_batch_is_respected(max_batch):
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=max_batch, timeout_s=0.05)
        b.start()
        await submit_all(b, list(range(6)))
        await b.stop()

    run(main())
    assert max(len(c) for c in calls) <= max_batch


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


def test_a_new_client_failing_in_a_batch_of_proven_ones_costs_them_one_extra_call():
    calls: list = []

    async def main():
        b = Batcher(slow_model(calls), max_batch=8, timeout_s=0.05)
        b.start()
        await submit_all(b, [0, 0, 0], clients=["a", "b", "c"])  # a, b and c have run before
        first = asyncio.ensure_future(b.submit(-1, "x"))
        await asyncio.sleep(0.005)
        n_before = len(calls)
        results = await submit_all(b, [1, "bad", 2, 3], clients=["a", "new", "b", "c"])
        await first
        await b.stop()
        return results, calls[n_before:]

    results, after = run(main())
    assert isinstance(results[1], InferenceError)
    assert after == [[1, "bad", 2, 3], [1, 2, 3], ["bad"]]



def test_a_lone_client_runs_on_the_event_loop_and_others_on_the_worker_thread(monkeypatch):
    # A 2 ms model (too slow for the plain inline path) runs on the loop while its client is the only
    # one connected, on the worker thread as soon as another is, and never on the loop once it is
    # slower than ALONE_INLINE_BELOW_S.
    from lerobot_labvla.serving import batching

    threads: list = []
    alone = [True]

    def infer(obs: list) -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(0.002)
        return np.stack([np.full((10, 7), o, np.float32) for o in obs])

    async def main():
        b = Batcher(infer, max_batch=8, timeout_s=0.005, alone=lambda: alone[0])
        b.start()
        out = [await b.submit(i, "a") for i in range(4)]
        alone[0] = False
        out += [await b.submit(i, "a") for i in range(4, 6)]
        await b.stop()
        return out

    results = run(main())
    loop_thread = threading.current_thread().name
    assert [r.actions[0, 0] for r in results] == list(range(6))
    assert threads[0] != loop_thread  # the first call has no timing yet: worker thread
    assert threads[1:4] == [loop_thread] * 3, threads
    assert loop_thread not in threads[4:], threads

    threads.clear()
    alone[0] = True
    monkeypatch.setattr(batching, "ALONE_INLINE_BELOW_S", 0.001)  # now the model is "slow"
    run(main())
    assert loop_thread not in threads, threads


def test_a_rejected_request_wakes_a_batcher_waiting_for_it():
    # The batcher waits (up to its 5 s window here) for a request still being decoded; when the server
    # rejects that request instead, `notify` must end the wait at once.
    calls: list = []
    arriving = [1]

    async def main():
        b = Batcher(slow_model(calls, 0.001), max_batch=8, timeout_s=5.0, arriving=lambda: arriving[0])
        b.start()
        first = asyncio.ensure_future(b.submit(1, "a"))
        await asyncio.sleep(0.05)
        arriving[0] = 0  # the other request was refused
        t0 = time.perf_counter()
        b.notify()
        await first
        waited = time.perf_counter() - t0
        await b.stop()
        return waited

    assert run(main()) < 2.0
    assert [len(c) for c in calls] == [1]


def test_inline_calls_are_counted_so_a_model_that_slows_down_leaves_the_loop(monkeypatch):
    # Inline calls feed the model-time median too (after the reply, via `settle`): a lone client's model
    # that becomes slower than ALONE_INLINE_BELOW_S goes back to the worker thread once the median says so.
    from lerobot_labvla.serving import batching

    monkeypatch.setattr(batching, "ALONE_INLINE_BELOW_S", 0.01)
    threads: list = []
    cost = [0.001]

    def infer(obs: list) -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(cost[0])
        return np.zeros((len(obs), 10, 7), np.float32)

    async def main():
        b = Batcher(infer, max_batch=8, timeout_s=0.005, alone=lambda: True)
        b.start()
        for i in range(3):
            await b.submit(i, "a")
        cost[0] = 0.02
        for i in range(12):
            await b.submit(i, "a")
            await asyncio.sleep(0)
        await b.stop()

    run(main())
    loop_thread = threading.current_thread().name
    assert threads[1:3] == [loop_thread] * 2, threads
    assert threads[-1] != loop_thread, threads  # 20 ms > the 10 ms bound: back on the worker thread
