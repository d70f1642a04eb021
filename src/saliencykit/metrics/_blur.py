"""The blurred images of the PIC metric: the random mask, the interpolation and its memory.

:func:`generate_random_mask` draws the pixels kept in every blurred image;
:func:`create_blurred_image` keeps the pixels of a mask and fills in the rest by
interpolating on one Delaunay triangulation of the kept pixels for all channels
(its barycentric transforms computed vectorised by :mod:`._barycentric`);
:func:`_blur_memory_estimate` is what one such blur takes (the triangulation
dominates), so that :func:`saliencykit.metrics.compute_pic_metric` can refuse an
image too large before any work and run as many blurs at once as memory allows.
Running out of memory or a Qhull failure is a :class:`PicMemoryError` or a
:class:`PicInterpolationError` that says what to do.

Part of :mod:`saliencykit.metrics.pic`, which re-exports every name here: import
them from there (or from :mod:`saliencykit.metrics`).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy import interpolate
from scipy.spatial import Delaunay, QhullError

from ..core.base import check_int, check_number
from ._barycentric import set_transforms

__all__ = ["PicInterpolationError", "PicMemoryError", "create_blurred_image", "generate_random_mask"]

_INTERPOLATORS = {
    "linear": interpolate.LinearNDInterpolator,
    "nearest": interpolate.NearestNDInterpolator,
    "cubic": interpolate.CloughTocher2DInterpolator,
}

# The peak memory of one blur (create_blurred_image, then the WebP size of its result), measured
# as the growth of ru_maxrss over one call in a fresh process, on 256^2, 512^2 and 1024^2 RGB
# images keeping 1% to 95% of their pixels (random or a blob plus 1% random): the Delaunay
# triangulation of the kept pixels (Qhull's facets, SciPy's simplices, neighbours and barycentric
# transforms) takes 1.5-1.9 kB per kept pixel, linear in their number (1024^2 with 789k kept:
# 1.40 GiB); the coordinates, the interpolated values and the WebP encoder (45 B per pixel) up to
# 75 B per pixel; channels barely matter. The estimate rounds both up. A 2048 x 2048 image with 76%
# of its pixels kept (the reference notebook's largest threshold) needs about 6.7 GB.
_BLUR_BYTES_PER_KEPT_PIXEL = 2000
_BLUR_BYTES_PER_PIXEL = 64
_BLUR_BYTES_PER_PIXEL_AND_CHANNEL = 8


class PicMemoryError(MemoryError):
    """A blurred image of the PIC metric needs more memory than there is.

    Raised by :func:`create_blurred_image` when it runs out of memory, and by
    :func:`compute_pic_metric` before any work when one blur is estimated to need
    more memory than the machine has. The message gives the image size and what
    to do (a smaller image, or fewer threads).
    """

    __module__ = "saliencykit.metrics.pic"  # where it is documented and imported from


# SciPy ships no type hints (its module is Any to mypy), so QhullError is Any here.
class PicInterpolationError(ValueError, QhullError):  # type: ignore[misc]
    """Qhull failed to triangulate the kept pixels of a blurred image (:func:`create_blurred_image`).

    A ``ValueError`` and SciPy's ``QhullError`` (what the reference let through);
    the message gives the image size, Qhull's own message and what to do.
    """

    __module__ = "saliencykit.metrics.pic"  # where it is documented and imported from


def generate_random_mask(
    image_height: int,
    image_width: int,
    fraction: float = 0.01,
    *,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Returns a boolean ``[image_height, image_width]`` mask with ``fraction`` of its pixels True.

    The mask seeds the "fully blurred" image of :func:`compute_pic_metric`: the
    few original pixels that are kept before any salient pixel is revealed. Use
    one mask per image, the same for every saliency method compared on it.

    Args:
      image_height: the mask's height, >= 1.
      image_width: the mask's width, >= 1.
      fraction: the fraction of True pixels, in [0, 1]; ``int(h * w * fraction)``
        pixels are set.
      seed: ``None`` draws from NumPy's global random state exactly like the
        reference (``np.random.seed`` reproduces its masks); an ``int`` or a
        ``np.random.Generator`` gives an independent, reproducible mask.

    Returns:
      A boolean array of shape ``(image_height, image_width)``.

    Raises:
      TypeError, ValueError: for a non-integer or non-positive size, a fraction
        outside [0, 1] or a seed of the wrong type.
    """
    image_height = check_int("image_height", image_height)
    image_width = check_int("image_width", image_width)
    fraction = check_number("fraction", fraction, minimum=0.0, maximum=1.0)
    if seed is None:
        choice = np.random.choice
    elif isinstance(seed, np.random.Generator):
        choice = seed.choice
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        choice = np.random.default_rng(int(seed)).choice
    else:
        raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")
    mask = np.zeros((image_height, image_width), dtype=bool)
    indices = choice(mask.size, replace=False, size=int(mask.size * fraction))
    mask.flat[indices] = True
    return mask


def _check_image(name: str, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape [H, W] or [H, W, C], got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2 or (image.ndim == 3 and image.shape[2] < 1):
        raise ValueError(f"{name} must be at least 2x2 pixels with >= 1 channel, got shape {image.shape}")
    return image


def _check_pixel_mask(name: str, pixel_mask: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(pixel_mask)
    if mask.shape != tuple(image_shape[:2]):
        raise ValueError(f"{name} must have the image's height and width {image_shape[:2]}, got {mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or hold only 0 and 1), got dtype {mask.dtype}")
    return mask != 0


def create_blurred_image(full_img: np.ndarray, pixel_mask: np.ndarray, method: str = "linear") -> np.ndarray:
    """Returns ``full_img`` with the pixels outside ``pixel_mask`` filled in by interpolation.

    The kept pixels (``pixel_mask`` True, plus always the four corners) are
    triangulated once, and every channel is interpolated on that triangulation:
    the values are exactly those of ``scipy.interpolate.griddata`` run channel
    by channel (the reference), at less than a third of the cost for RGB (the
    triangulation's barycentric transforms are computed vectorised, bit for
    bit as SciPy's LAPACK calls compute them). Points outside
    the triangulation's hull (none, for ``'linear'``, since the corners are
    kept) get the channel's mean.

    Args:
      full_img: the image, ``[H, W]`` or ``[H, W, C]``, any real dtype, H and W >= 2.
      pixel_mask: ``[H, W]`` boolean (or 0/1) mask of the pixels to keep.
      method: ``'linear'`` (the paper's; recommended), ``'nearest'`` or ``'cubic'``.

    Returns:
      The blurred image, with ``full_img``'s shape and dtype (integer images are
      rounded). A mask that keeps every pixel returns a copy of ``full_img``.

    Raises:
      TypeError, ValueError: for a non-numeric image, wrong shapes, a mask with
        values other than 0/1, or an unknown ``method``.
      PicMemoryError: out of memory (the triangulation takes about 2 kB per kept
        pixel: 6.7 GB for a 2048 x 2048 image with 76% of its pixels kept).
      PicInterpolationError: Qhull failed to triangulate the kept pixels.
    """
    full_img = _check_image("full_img", full_img)
    pixel_mask = _check_pixel_mask("pixel_mask", pixel_mask, full_img.shape)
    if method not in _INTERPOLATORS:
        raise ValueError(f"method must be one of {sorted(_INTERPOLATORS)}, got {method!r}")
    height, width = pixel_mask.shape
    size = f"{height}x{width}" + (f"x{full_img.shape[2]}" if full_img.ndim == 3 else "")
    try:
        return _blur(full_img, pixel_mask, method)
    except MemoryError as error:
        if isinstance(error, PicMemoryError):
            raise
        kept = int(pixel_mask.sum())
        estimate = _blur_memory_estimate(height, width, full_img.shape[2] if full_img.ndim == 3 else 1, kept)
        raise PicMemoryError(
            f"out of memory blurring a {size} image that keeps {kept} of its pixels (PIC needs about "
            f"{_gib(estimate)} for it): use a smaller image (memory grows with the number of pixels), "
            "fewer threads (n_jobs, memory_limit of compute_pic_metric) or free some memory"
        ) from error
    except QhullError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = (
            "use a smaller image, fewer threads (n_jobs, memory_limit of compute_pic_metric) or free memory"
            if "memory" in str(error).lower()
            else "check pixel_mask and the image size"
        )
        raise PicInterpolationError(
            f"Qhull could not triangulate the {int(pixel_mask.sum())} kept pixels of a {size} image"
            f" ({first_line}): {hint}"
        ) from error


def _gib(n_bytes: float) -> str:
    """A memory size for a message: GiB from 1 GiB up, MiB below."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def _blur_memory_estimate(height: int, width: int, channels: int, n_kept: int) -> int:
    """The estimated peak memory in bytes of one blur and its WebP size (see _BLUR_BYTES_PER_KEPT_PIXEL)."""
    n_pixels = height * width
    per_pixel = _BLUR_BYTES_PER_PIXEL + _BLUR_BYTES_PER_PIXEL_AND_CHANNEL * channels
    return _BLUR_BYTES_PER_KEPT_PIXEL * (n_kept + 4) + per_pixel * n_pixels


def _blur(full_img: np.ndarray, pixel_mask: np.ndarray, method: str) -> np.ndarray:
    """create_blurred_image on checked arguments."""
    height, width = pixel_mask.shape
    pixel_mask = pixel_mask.copy()
    pixel_mask[[0, 0, height - 1, height - 1], [0, width - 1, 0, width - 1]] = True
    # FIX: the reference returns a [H, W, 1] array for a grayscale image with a full mask.
    if pixel_mask.all():
        return full_img.copy()

    image = full_img if full_img.ndim == 3 else full_img[:, :, np.newaxis]
    # The reference multiplies by a float32 mask: the result has this dtype, and the
    # interpolated values are rounded to it before integer images are rounded.
    blurred = np.zeros(image.shape, dtype=np.result_type(image.dtype, np.float32))
    blurred[pixel_mask] = image[pixel_mask]

    known_points = np.argwhere(pixel_mask)
    unknown_points = np.argwhere(~pixel_mask)
    if method == "nearest":
        interpolator = interpolate.NearestNDInterpolator(known_points, image[pixel_mask])
    else:
        # The triangulation griddata would compute, with its barycentric transforms computed
        # vectorised (bit-identical, see _barycentric) rather than by LAPACK triangle by triangle.
        triangulation = Delaunay(known_points.astype(np.float64))
        set_transforms(triangulation)
        interpolator = _INTERPOLATORS[method](triangulation, image[pixel_mask], fill_value=np.nan)
    values = interpolator(unknown_points)
    outside = np.isnan(values)
    if outside.any():
        mean_color = np.mean(image, axis=(0, 1))
        values = np.where(outside, mean_color, values)
    blurred[~pixel_mask] = values

    if full_img.ndim == 2:
        blurred = blurred[:, :, 0]
    if np.issubdtype(full_img.dtype, np.integer):
        blurred = np.round(blurred)
    return blurred.astype(full_img.dtype)
