"""A per-instance cache of XRAI's default segments, keyed by the image's content.

XRAI's default candidate regions (Felzenszwalb at six scales, every segment
dilated) depend on the image alone, not on the attribution; they are most of
XRAI's own time. Explaining the same image again (another class, other
baselines, a given ``base_attribution``, the 'fast' algorithm after the 'full'
one) reuses them: the key is a digest of the image's bytes with its shape and
dtype, so equal images hit and any change of a pixel misses.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from .segments import SegmentPixels

__all__ = ["SegmentCache"]

#: Images whose segments one :class:`SegmentCache` keeps at most.
DEFAULT_MAX_ENTRIES = 8
#: Bytes of segments (pixel lists) one :class:`SegmentCache` keeps at most: about
#: 2.3 MB per 224 x 224 image, 60 MB for a 1200 x 1200 photograph.
DEFAULT_MAX_BYTES = 64 * 2**20


def image_key(image: np.ndarray) -> tuple[tuple[int, ...], str, bytes]:
    """The cache key of ``image``: its shape, dtype and a 128-bit BLAKE2b digest of its bytes."""
    contiguous = np.ascontiguousarray(image)
    digest = hashlib.blake2b(contiguous.reshape(-1).view(np.uint8).data, digest_size=16).digest()
    return contiguous.shape, contiguous.dtype.str, digest


def _segment_bytes(segments: SegmentPixels) -> int:
    return int(segments.indices.nbytes + segments.indptr.nbytes)


class SegmentCache:
    """The least recently used default segments of a few images (thread safe).

    Entries are read-only :class:`SegmentPixels` (their arrays are made
    unwritable), so a hit can be shared. At most ``max_entries`` images and
    ``max_bytes`` bytes of pixel lists are kept; larger segments are not kept
    at all.

    Args:
      max_entries: images kept at most (0 disables the cache).
      max_bytes: bytes of pixel lists kept at most.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[tuple[int, ...], str, bytes], SegmentPixels] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, int]:
        """Pickles (and copies) as an empty cache with the same limits: no lock, no entries."""
        return {"max_entries": self.max_entries, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["max_entries"], state["max_bytes"])  # type: ignore[misc]

    def get(self, key: tuple[tuple[int, ...], str, bytes]) -> SegmentPixels | None:
        """The segments stored under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            segments = self._entries.get(key)
            if segments is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return segments

    def put(self, key: tuple[tuple[int, ...], str, bytes], segments: SegmentPixels) -> SegmentPixels:
        """Stores ``segments`` under ``key`` (evicting the least recently used); returns them read-only."""
        segments.indices.flags.writeable = False
        segments.indptr.flags.writeable = False
        size = _segment_bytes(segments)
        if self.max_entries <= 0 or size > self.max_bytes:
            return segments
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= _segment_bytes(previous)
            self._entries[key] = segments
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= _segment_bytes(evicted)
        return segments

    def get_or_compute(self, image: np.ndarray, compute: Callable[[], SegmentPixels]) -> SegmentPixels:
        """The segments of ``image``: from the cache, or ``compute()`` and stored."""
        key = image_key(image)
        segments = self.get(key)
        return segments if segments is not None else self.put(key, compute())

    def clear(self) -> None:
        """Forgets every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
