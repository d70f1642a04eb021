"""The information in an image for the PIC metric: its lossless WebP size (:func:`estimate_image_entropy`).

Part of :mod:`saliencykit.metrics.pic`, which re-exports every name here: import
them from there (or from :mod:`saliencykit.metrics`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["ImageDtypeError", "estimate_image_entropy"]

#: The largest width and height that lossless WebP (the entropy estimate) can encode.
_WEBP_MAX_SIDE = 16383


class ImageDtypeError(TypeError, ValueError):
    """An image that is not ``uint8``.

    A ``TypeError`` (a wrong dtype) and a ``ValueError``, which is what the
    reference raised, so code that caught it keeps working.
    """

    __module__ = "saliencykit.metrics.pic"  # where it is documented and imported from


def estimate_image_entropy(image: np.ndarray) -> int:
    """Returns the information in ``image`` estimated as its lossless WebP size in bytes.

    Args:
      image: a ``uint8`` image, ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``.

    Returns:
      The size in bytes of the lossless WebP encoding (quality 100, Pillow's default effort).

    Raises:
      TypeError: if the image is not ``uint8``.
      ValueError: for any other shape, or a side longer than WebP's limit of 16383 pixels.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ImageDtypeError(f"image must be a uint8 array, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"image must have shape [H, W] or [H, W, 1|3|4], got shape {image.shape}")
    _check_webp_size("image", image.shape)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="webp", lossless=True, quality=100)
    return buffer.tell()


def _check_webp_size(name: str, shape: tuple[int, ...]) -> None:
    if max(shape[:2]) > _WEBP_MAX_SIDE:
        raise ValueError(
            f"{name} must be at most {_WEBP_MAX_SIDE} pixels high and wide (the limit of the WebP encoding"
            f" that measures PIC's entropy), got {shape[0]}x{shape[1]}; resize it first"
        )
