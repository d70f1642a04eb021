"""XRAI's default segmentation: Felzenszwalb's graph segmentation at six scales.

Felzenszwalb and Huttenlocher 2004, "Efficient graph-based image
segmentation". Felzenszwalb runs once per scale, on the image rescaled and
resized once; each segment is then dilated by a disk
(:func:`~saliencykit.core.xrai.segments.dilated_segment_pixels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import segmentation, transform

__all__ = ["felzenszwalb_label_images"]

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


def felzenszwalb_label_images(
    im: np.ndarray,
    resize_image: bool = True,
    scale_range: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Felzenszwalb segmentations of ``im`` at XRAI's six scales, as label images.

    Felzenszwalb and Huttenlocher 2004, "Efficient graph-based image
    segmentation". The image is rescaled to ``scale_range`` (default
    ``[-1, 1]``) and, when ``resize_image``, resized to 224x224 so that the
    scale parameters mean the same for every image size; the labels are
    resized back with nearest-neighbour interpolation.

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image. Integer images are converted to
        float64 first (the same values as the reference for unsigned images;
        the reference subtracts in the integer type, which wraps around for
        signed images with a range wider than the type: FIX).
      resize_image: segment at 224x224 (True, the reference's default) or at
        the image's own size.
      scale_range: ``(lowest, highest)`` value range for the segmentation.

    Returns:
      Six ``[H, W]`` int64 label images (scales 50, 100, 150, 250, 500, 1200).
    """
    if scale_range is None:
        scale_range = _FELZENSZWALB_IM_VALUE_RANGE
    im = np.asarray(im)
    if im.dtype.kind != "f":
        im = im.astype(np.float64)
    original_shape = im.shape[:2]
    resize_shape = _FELZENSZWALB_IM_RESIZE if resize_image else None
    normalized = _normalize_image(im, scale_range, resize_shape)
    label_images = []
    for scale in _FELZENSZWALB_SCALE_VALUES:
        for sigma in _FELZENSZWALB_SIGMA_VALUES:
            labels = segmentation.felzenszwalb(
                normalized, scale=scale, sigma=sigma, min_size=_FELZENSZWALB_MIN_SEGMENT_SIZE
            )
            if resize_image and labels.shape != original_shape:
                labels = transform.resize(
                    labels,
                    original_shape,
                    order=0,
                    preserve_range=True,
                    mode="constant",
                    anti_aliasing=False,
                )
            label_images.append(labels.astype(np.int64))
    return label_images
