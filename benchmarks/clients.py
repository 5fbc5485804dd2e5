"""N client processes doing the same work at once, timed from a common start: threads in one
Python process would measure the interpreter lock, not the database."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

Work = Callable[[int, int, Any], None]


def run_clients(
    work: Work, *, clients: int, per_client: int, setup: Callable[[int], Any] | None = None
) -> float:
    """Operations per second across `clients` forked processes, each running
    work(client, per_client, setup(client)) after all are set up."""
    from django.db import connections

    connections.close_all()  # a forked child must open its own
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients + 1)
    results: Any = context.SimpleQueue()  # put() writes at once: the child ends with os._exit

    def child(number: int) -> None:
        try:
            state = setup(number) if setup else None
            barrier.wait(timeout=300)
            started = time.perf_counter()
            work(number, per_client, state)
            results.put((started, time.perf_counter(), None))
        except BaseException as exc:
            barrier.abort()
            results.put((0.0, 0.0, f"{type(exc).__name__}: {exc}"))
        finally:
            connections.close_all()
            os._exit(0)

    processes = [context.Process(target=child, args=(n,)) for n in range(clients)]
    for process in processes:
        process.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a child failed: see results
        barrier.wait(timeout=300)
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    if errors := [error for _, _, error in outcomes if error]:
        raise RuntimeError(f"a client failed: {errors[0]}")
    began = min(start for start, _, _ in outcomes)
    ended = max(end for _, end, _ in outcomes)
    return clients * per_client / (ended - began)
