"""Running the PIC metric's independent jobs (blurred images, WebP sizes) on every core.

Triangulating with Qhull and encoding WebP release the GIL, but computing the
triangulation's barycentric transforms does not, so threads reach only about
1.1-1.5x on 2 cores. Worker processes forked from the caller (the way
PyTorch's DataLoader starts its workers on Linux) run the same code with no
GIL in the way; they are started once, on first use, and kept for later calls.
The results are the same whichever way the jobs run.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PARALLEL_MODES = ("auto", "processes", "threads")

_pool: Any = None
_pool_size = 0
_pool_lock = threading.Lock()


def default_n_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _process_pool(n_jobs: int) -> Any:
    """The shared pool of ``n_jobs`` forked workers (re-created if ``n_jobs`` changed)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != n_jobs:
            if _pool is not None:
                _pool.terminate()
            with warnings.catch_warnings():
                # Python >= 3.12 warns that fork() in a multi-threaded process may deadlock the
                # child; the workers only run NumPy, SciPy and Pillow code, like DataLoader workers.
                warnings.simplefilter("ignore", DeprecationWarning)
                _pool = multiprocessing.get_context("fork").Pool(n_jobs)
            _pool_size = n_jobs
        return _pool


@atexit.register
def _close_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.terminate()
        _pool = None


def _run(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    function, arguments = job
    return function(*arguments)


def run_jobs(
    jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], n_jobs: int, parallel: str
) -> list[Any]:
    """Returns ``[function(*arguments) for function, arguments in jobs]``, computed in parallel.

    Args:
      jobs: ``(function, arguments)`` pairs; functions must be importable module-level
        functions (they are sent to worker processes by name).
      n_jobs: the most jobs running at once; 1 runs them in the calling thread.
      parallel: ``'processes'`` (forked workers; Linux only), ``'threads'``, or
        ``'auto'`` (processes where fork is available, threads elsewhere).
    """
    if n_jobs == 1 or len(jobs) == 1:
        return [_run(job) for job in jobs]
    if parallel == "processes" and not _can_fork():
        raise ValueError("parallel='processes' needs the fork start method (Linux); use 'threads'")
    if parallel in ("processes", "auto") and _can_fork():
        return _process_pool(n_jobs).map(_run, jobs, chunksize=1)
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(jobs))) as executor:
        return list(executor.map(_run, jobs))
