"""Running test calls from several threads at once (the adapters' thread-safety tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_in_threads(tasks: list[Callable[[], Any]], repeats: int) -> list[list[Any]]:
    """Runs each task ``repeats`` times in its own thread, all starting together; re-raises errors."""
    results: list[list[Any]] = [[] for _ in tasks]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(tasks))

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(repeats):
                results[index].append(tasks[index]())
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
