"""Running the PIC metric's independent jobs (blurred images, WebP sizes) in threads, within a memory budget.

Pillow's WebP encoder and Qhull's triangulation release the GIL, so threads
overlap them; SciPy's barycentric transforms of each triangulation do not, so
blurs gain little (benchmarks/bench_pic.py: 15 WebP sizes 1.25 s -> 0.67 s in 2
threads, 14 blurs 1.22 s -> 1.19 s). Worker processes were tried and rejected: processes forked from
a caller whose BLAS or OpenMP thread pools have started (NumPy, SciPy or
PyTorch already used) stalled for seconds to minutes inside BLAS calls.

Each blur of a large image takes gigabytes (a Delaunay triangulation of every
kept pixel), so the number of jobs that run at once is also bounded by memory
(:func:`plan_n_jobs`), using the machine's free memory read without any
dependency (``/proc/meminfo``, the cgroup's limit, ``os.sysconf``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: The memory budget when the free memory cannot be read (not Linux, no ``os.sysconf``).
FALLBACK_MEMORY_LIMIT = 2 * 2**30

#: The fraction of the free memory that the PIC jobs running at once may take by default.
DEFAULT_MEMORY_FRACTION = 0.5


def default_n_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_int(path: str) -> int | None:
    """The integer in a one-line file (a cgroup setting), or None if absent, 'max' or unreadable."""
    try:
        with open(path, encoding="ascii") as file:
            text = file.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where there is none)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                name, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    values[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    except OSError:
        pass
    return values


def _cgroup_limit_and_usage() -> tuple[int | None, int | None]:
    """This process's cgroup memory limit and usage in bytes (v2, then v1), or None where unlimited."""
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_path)
        if limit is not None and limit < 2**60:  # cgroup v1 writes a huge number for "no limit"
            return limit, _read_int(usage_path)
    return None, None


def available_memory() -> int | None:
    """The memory this process can still take, in bytes, or None where it cannot be read.

    The smallest of ``MemAvailable`` (``/proc/meminfo``, which counts reclaimable
    caches; else ``os.sysconf('SC_AVPHYS_PAGES')``) and the room left under the
    cgroup's memory limit (containers).
    """
    candidates = []
    meminfo = _meminfo()
    if "MemAvailable" in meminfo:
        candidates.append(meminfo["MemAvailable"])
    else:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    limit, usage = _cgroup_limit_and_usage()
    if limit is not None:
        candidates.append(max(limit - (usage or 0), 0))
    return min(candidates) if candidates else None


def total_memory() -> int | None:
    """All the memory this process could ever have, in bytes (RAM + swap, or the cgroup's limit), or None."""
    candidates = []
    meminfo = _meminfo()
    if "MemTotal" in meminfo:
        candidates.append(meminfo["MemTotal"] + meminfo.get("SwapTotal", 0))
    else:
        try:
            candidates.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    limit, _ = _cgroup_limit_and_usage()
    if limit is not None:
        candidates.append(limit)
    return min(candidates) if candidates else None


def default_memory_limit() -> int:
    """The default budget of the jobs running at once: half the available memory, else 2 GiB."""
    available = available_memory()
    if available is None:
        return FALLBACK_MEMORY_LIMIT
    return max(int(available * DEFAULT_MEMORY_FRACTION), 1)


def plan_n_jobs(estimates: Sequence[int], n_jobs: int, memory_limit: int) -> int:
    """The number of threads to run jobs of these estimated peak memories in.

    Any ``k`` of the jobs may run at the same time in ``k`` threads, so ``k`` is
    the largest number, at most ``n_jobs``, for which the ``k`` largest estimates
    sum to at most ``memory_limit``. At least 1: a job larger than the budget
    alone still runs, alone.

    Args:
      estimates: each job's estimated peak memory in bytes.
      n_jobs: the most threads wanted, >= 1.
      memory_limit: the budget in bytes for all the jobs running at once.

    Returns:
      The number of threads, between 1 and ``max(1, min(n_jobs, len(estimates)))``.
    """
    running_total = 0
    count = 0
    for estimate in sorted(estimates, reverse=True)[:n_jobs]:
        running_total += estimate
        if running_total > memory_limit:
            break
        count += 1
    return max(count, 1)


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
