"""Running the PIC metric's independent jobs (blurred images, WebP sizes) in threads.

Pillow's WebP encoder and Qhull's triangulation release the GIL, so threads
overlap them; SciPy's barycentric transforms of each triangulation do not, so
blurs gain little (benchmarks/bench_pic.py: 15 WebP sizes 1.25 s -> 0.67 s in 2
threads, 14 blurs 1.22 s -> 1.19 s). Worker processes were tried and rejected: processes forked from
a caller whose BLAS or OpenMP thread pools have started (NumPy, SciPy or
PyTorch already used) stalled for seconds to minutes inside BLAS calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def default_n_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    function, arguments = job
    return function(*arguments)


def run_jobs(jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], n_jobs: int) -> list[Any]:
    """Returns ``[function(*arguments) for function, arguments in jobs]``, in up to ``n_jobs`` threads.

    ``n_jobs=1`` (or a single job) runs everything in the calling thread.
    """
    if n_jobs == 1 or len(jobs) == 1:
        return [_run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(jobs))) as executor:
        return list(executor.map(_run, jobs))
