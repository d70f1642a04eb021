"""Keeping large freed blocks in the process for reuse: faster big model calls on Linux CPUs.

A model call on the CPU allocates its activations afresh each time. glibc's
``malloc`` serves every block above its mmap threshold (at most 32 MiB by
default) with a new ``mmap`` and returns it with ``munmap`` when the tensor is
freed, so the next call touches, faults in and zero-fills the same memory
again. The cost grows with the batch: on the 2-core machine this was written
on, EfficientNet-Lite0's forward and backward pass cost 25-35 ms per input in
calls of 8 to 10 inputs and 41-58 ms per input in calls of 16 to 25, so a
batch of many images ran slower than a loop over the images. With the freed
blocks kept for reuse the cost per input stays about 25-29 ms from 8 to 25
inputs per call (``benchmarks/bench_batch.py --default-malloc`` shows the
difference).

:func:`reuse_freed_memory` changes a process-wide setting of the C library,
so the library never calls it on its own: the ``saliencykit`` command calls it
for its process, Ray workers of :mod:`saliencykit.runs` for theirs, and a
program that sends big batches to a CPU model may call it once at start. The
price is memory: freed blocks stay with the process (its resident size stays
near its peak) instead of going back to the operating system.
"""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "reuse_freed_memory"]

#: Blocks up to this size come from the heap and are reused after ``free``.
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the top of the heap is given back to the system only above this
#: (the largest value ``mallopt``'s C ``int`` takes).
TRIM_THRESHOLD_BYTES = 2**31 - 1

# mallopt's parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory() -> bool:
    """Asks glibc's ``malloc`` to keep large freed blocks for reuse (process-wide).

    Sets ``M_MMAP_THRESHOLD`` to :data:`MMAP_THRESHOLD_BYTES` and
    ``M_TRIM_THRESHOLD`` to :data:`TRIM_THRESHOLD_BYTES` with ``mallopt``, the
    same as starting Python with ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` set. Idempotent. It cannot be undone (glibc
    has no way to restore its dynamic threshold), so call it only in a
    process you own.

    Returns:
      ``True`` when glibc accepted both settings; ``False`` on other platforms
      or C libraries (macOS, Windows, musl), where nothing is changed.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    accepted_mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    accepted_trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(accepted_mmap and accepted_trim)
