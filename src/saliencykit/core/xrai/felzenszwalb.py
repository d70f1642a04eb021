"""XRAI's default segmentation: Felzenszwalb's graph segmentation at six scales.

Felzenszwalb and Huttenlocher 2004, "Efficient graph-based image
segmentation". Felzenszwalb runs once per scale, on the image rescaled and
resized once, the six scales concurrently on threads of their own
(:class:`LabelImagesJob`); each segment is then dilated by a disk
(:func:`~saliencykit.core.xrai.segments.dilated_segment_pixels`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from skimage import segmentation, transform

from ..arguments import check_int

__all__ = ["LabelImagesJob", "default_segmentation_workers", "felzenszwalb_label_images"]

#: Felzenszwalb ``scale`` values; one segmentation per value (reference values).
_FELZENSZWALB_SCALE_VALUES = (50, 100, 150, 250, 500, 1200)
#: Felzenszwalb Gaussian pre-smoothing ``sigma`` values.
_FELZENSZWALB_SIGMA_VALUES = (0.8,)
#: The image is resized to this shape before segmentation.
_FELZENSZWALB_IM_RESIZE = (224, 224)
#: The image values are rescaled to this range before segmentation.
_FELZENSZWALB_IM_VALUE_RANGE = (-1.0, 1.0)
#: Felzenszwalb ``min_size``: smaller components are merged into a neighbour.
_FELZENSZWALB_MIN_SEGMENT_SIZE = 150
#: Radius of the disk every Felzenszwalb segment is dilated with.
_DEFAULT_DILATION_RADIUS = 5


def _normalize_image(
    im: np.ndarray, value_range: Sequence[float], resize_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Rescales ``im`` linearly to ``value_range`` and optionally resizes it (reference helper).

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image.
      value_range: ``(lowest, highest)`` values of the result.
      resize_shape: if given, the result is resized to this ``(H', W')`` with a
        cubic spline and anti-aliasing, as ``skimage.transform.resize(order=3)``.

    Returns:
      The rescaled (and resized) image, floating point.

    FIX over the reference: a constant image maps to ``value_range[0]``
    everywhere instead of NaN (division by zero).
    """
    lowest, highest = np.min(im), np.max(im)
    if highest == lowest:
        unit = np.zeros(np.shape(im), dtype=np.result_type(im, np.float32))
    else:
        unit = (im - lowest) / (highest - lowest)
    im = unit * (value_range[1] - value_range[0]) + value_range[0]
    if resize_shape is not None:
        im = transform.resize(
            im, resize_shape, order=3, mode="constant", preserve_range=True, anti_aliasing=True
        )
    return im


def _available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_segmentation_workers() -> int:
    """Threads :func:`felzenszwalb_label_images` uses by default: one per scale, at most one per CPU."""
    return max(1, min(len(_FELZENSZWALB_SCALE_VALUES) * len(_FELZENSZWALB_SIGMA_VALUES), _available_cpus()))


class LabelImagesJob:
    """:func:`felzenszwalb_label_images` started now, on its own threads; :meth:`result` waits for it.

    The six segmentations are independent, and scikit-image's Felzenszwalb
    releases the GIL for much of its work (its edge sort and its union-find
    loops), so they run concurrently on ``threads`` threads of a pool of this
    job's own, shut down when the last one ends: nothing outlives the job,
    and a forked process inherits no pool. The results are those of the
    serial computation, in the same order. The image is rescaled and resized
    at once, on the calling thread: later changes to ``im`` do not matter.

    Args:
      im, resize_image, scale_range: see :func:`felzenszwalb_label_images`.
      threads: threads started for the segmentations (>= 0); 0 starts none:
        :meth:`result` computes them on the calling thread, one after the other.
      then: applied to each label image on the thread that made it (XRAI
        dilates its segments there); :meth:`result` returns what it returns.
    """

    def __init__(
        self,
        im: np.ndarray,
        resize_image: bool = True,
        scale_range: Sequence[float] | None = None,
        threads: int = 0,
        then: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        threads = check_int("threads", threads, minimum=0)
        if scale_range is None:
            scale_range = _FELZENSZWALB_IM_VALUE_RANGE
        im = np.asarray(im)
        if im.dtype.kind != "f":
            im = im.astype(np.float64)
        self._original_shape = im.shape[:2]
        self._resize_image = resize_image
        self._then = then
        resize_shape = _FELZENSZWALB_IM_RESIZE if resize_image else None
        self._normalized = _normalize_image(im, scale_range, resize_shape)
        self._parameters = [
            (scale, sigma) for scale in _FELZENSZWALB_SCALE_VALUES for sigma in _FELZENSZWALB_SIGMA_VALUES
        ]
        self._futures: list[Future[Any]] = []
        if threads > 0:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="saliencykit-felzenszwalb")
            try:
                self._futures = [pool.submit(self._segment_then, *job) for job in self._parameters]
            finally:
                pool.shutdown(wait=False)  # the threads end with the last segmentation

    def _segment_then(self, scale: float, sigma: float) -> Any:
        """One segmentation, then ``then`` (see the class)."""
        labels = self._segment(scale, sigma)
        return labels if self._then is None else self._then(labels)

    def _segment(self, scale: float, sigma: float) -> np.ndarray:
        """One segmentation, its labels resized back to the image's size (int64)."""
        labels = segmentation.felzenszwalb(
            self._normalized, scale=scale, sigma=sigma, min_size=_FELZENSZWALB_MIN_SEGMENT_SIZE
        )
        if self._resize_image and labels.shape != self._original_shape:
            labels = transform.resize(
                labels,
                self._original_shape,
                order=0,
                preserve_range=True,
                mode="constant",
                anti_aliasing=False,
            )
        return labels.astype(np.int64)

    def result(self) -> list[Any]:
        """The six label images, or what ``then`` made of them (waits for those still running)."""
        if not self._futures:
            return [self._segment_then(*parameters) for parameters in self._parameters]
        return [future.result() for future in self._futures]

    def cancel(self) -> None:
        """Drops the segmentations not started yet (those running finish, unused)."""
        for future in self._futures:
            future.cancel()


def felzenszwalb_label_images(
    im: np.ndarray,
    resize_image: bool = True,
    scale_range: Sequence[float] | None = None,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Felzenszwalb segmentations of ``im`` at XRAI's six scales, as label images.

    Felzenszwalb and Huttenlocher 2004, "Efficient graph-based image
    segmentation". The image is rescaled to ``scale_range`` (default
    ``[-1, 1]``) and, when ``resize_image``, resized to 224x224 so that the
    scale parameters mean the same for every image size; the labels are
    resized back with nearest-neighbour interpolation. The six segmentations
    run concurrently (see :class:`LabelImagesJob`); the result is the same.

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image. Integer images are converted to
        float64 first (the same values as the reference for unsigned images;
        the reference subtracts in the integer type, which wraps around for
        signed images with a range wider than the type: FIX).
      resize_image: segment at 224x224 (True, the reference's default) or at
        the image's own size.
      scale_range: ``(lowest, highest)`` value range for the segmentation.
      workers: threads for the six segmentations (>= 1; 1: one after the
        other on the calling thread); ``None``: one per scale, at most one
        per CPU (:func:`default_segmentation_workers`).

    Returns:
      Six ``[H, W]`` int64 label images (scales 50, 100, 150, 250, 500, 1200).

    Raises:
      TypeError, ValueError: a bad ``workers``.
    """
    workers = default_segmentation_workers() if workers is None else check_int("workers", workers)
    return LabelImagesJob(im, resize_image, scale_range, threads=workers if workers > 1 else 0).result()
