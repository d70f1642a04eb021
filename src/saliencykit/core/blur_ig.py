"""Blur IG: integrated gradients along a path of ever stronger Gaussian blur.

Xu, Venugopalan and Sundararajan 2020, "Attribution in Scale and Space"
(arXiv 2004.03383).

The reference blurs with ``scipy.ndimage.gaussian_filter`` twice per step (200
full 2-D filters at the defaults: most of its run time). A truncated Gaussian
filter with zero padding is a symmetric Toeplitz matrix along each spatial
axis, so a blur is two matrix products, ``R X C^T``. The finite-difference
derivative ``(blur(s + h) - blur(s)) / h`` is computed without cancellation as
``R X D_C^T + D_R X C'^T`` with ``D = (M(s + h) - M(s)) / h`` formed from the
kernels, which lets float32 images use float32 products (relative error ~1e-6)
while float64 images match scipy's filter to ~1e-12.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import toeplitz

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    as_float_array,
    call_model_in_batches,
    check_int,
    check_number,
)

__all__ = ["BlurIG", "blur_path", "gaussian_blur", "gaussian_blur_matrix"]

#: scipy.ndimage.gaussian_filter's default truncation, in standard deviations.
TRUNCATE = 4.0
#: Path points blurred per batch of matrix products (see ``BlurIG.GetMask``).
PATH_CHUNK = 16


def gaussian_blur_matrix(n: int, sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """Returns the ``n x n`` matrix of a 1-D Gaussian filter with zero padding (float64).

    ``gaussian_blur_matrix(n, s) @ v`` equals
    ``scipy.ndimage.gaussian_filter1d(v, s, mode="constant", truncate=truncate)``:
    the kernel is ``exp(-k^2 / (2 s^2))`` for ``|k| <= int(truncate * s + 0.5)``,
    normalised to sum to one. ``sigma == 0`` gives the identity.
    """
    if sigma == 0:
        return np.eye(n)
    radius = int(truncate * sigma + 0.5)
    kernel = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    kernel /= kernel.sum()
    column = np.zeros(n)
    kept = min(radius + 1, n)
    column[:kept] = kernel[radius : radius + kept]
    return toeplitz(column)


def blur_path(
    image: np.ndarray, sigmas: np.ndarray, grad_step: float, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the blurred images and their finite-difference sigma derivatives.

    Args:
      image: H x W x C, blurred over H and W only.
      sigmas: the S blur strengths.
      grad_step: the sigma step ``h`` of the derivative.
      dtype: precision of the matrix products (float32 or float64).

    Returns:
      ``(points, derivatives)``, each S x H x W x C in ``dtype``: ``points[i]``
      is ``gaussian_filter(image, [s_i, s_i, 0], mode="constant")`` and
      ``derivatives[i]`` is ``(blur(s_i + h) - blur(s_i)) / h``.
    """
    height, width, channels = image.shape
    n_sigmas = len(sigmas)

    def matrices(n: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        blur = [gaussian_blur_matrix(n, float(s)) for s in sigmas]
        blur_next = [gaussian_blur_matrix(n, float(s + grad_step)) for s in sigmas]
        difference = [(after - before) / grad_step for before, after in zip(blur, blur_next, strict=True)]
        return blur, blur_next, difference

    row_blur, _, row_difference = matrices(height)
    col_blur, col_blur_next, col_difference = (
        matrices(width) if width != height else (row_blur, _, row_difference)
    )
    rows = np.concatenate(row_blur + row_difference).astype(dtype)
    by_rows = rows @ image.astype(dtype, copy=False).reshape(height, width * channels)
    # Lay each result out as [W, H*C] so that the column filter is a plain matmul too.
    by_rows = by_rows.reshape(2 * n_sigmas, height, width, channels).transpose(0, 2, 1, 3)
    by_rows = by_rows.reshape(2 * n_sigmas, width, height * channels)
    blurred_rows, differentiated_rows = by_rows[:n_sigmas], by_rows[n_sigmas:]

    def stacked(blocks: list[np.ndarray]) -> np.ndarray:
        return np.stack(blocks).astype(dtype)

    points = stacked(col_blur) @ blurred_rows
    derivatives = stacked(col_difference) @ blurred_rows + stacked(col_blur_next) @ differentiated_rows

    def to_images(stack: np.ndarray) -> np.ndarray:
        return stack.reshape(n_sigmas, width, height, channels).transpose(0, 2, 1, 3)

    return to_images(points), to_images(derivatives)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Returns ``image`` (H x W x C or H x W) blurred over its two spatial axes (float64).

    Same result as the reference's ``gaussian_blur``:
    ``scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0], mode="constant")``,
    and ``image`` itself for ``sigma == 0``.
    """
    image = np.asarray(image, dtype=np.float64)
    as_3d = image if image.ndim == 3 else image[..., None]
    height, width = as_3d.shape[:2]
    blurred = np.einsum("ij,jwc->iwc", gaussian_blur_matrix(height, sigma), as_3d)
    blurred = np.einsum("kw,iwc->ikc", gaussian_blur_matrix(width, sigma), blurred)
    return blurred.reshape(image.shape)


class BlurIG(CoreSaliency):
    """Integrated gradients along a blur path, from a fully blurred image to the input.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS``.
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        max_sigma: float = 50,
        steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        batch_size: int = 1,
    ) -> np.ndarray:
        """Returns the Blur IG mask of an image.

        With ``sigma_i = i * max_sigma / steps`` (or its square root when
        ``sqrt``), path point ``i`` is the image blurred with ``sigma_i`` and
        its path derivative the finite difference
        ``(blur(sigma_i + grad_step) - blur(sigma_i)) / grad_step``; the mask is
        ``-sum_i (sigma_{i+1} - sigma_i) * derivative_i * gradient_i``.

        Args:
          x_value: an image, H x W x C or H x W; integers become floats.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to every call unchanged.
          max_sigma: the strongest blur, in pixels (> 0).
          steps: number of path points and model evaluations (>= 1).
          grad_step: sigma step of the finite-difference derivative (> 0).
          sqrt: space the sigmas as square roots of a linear ramp.
          batch_size: the most path points sent to the model in one call.

        Returns:
          The attribution, ``x_value``'s shape.

        Raises:
          TypeError, ValueError: bad arguments, or a bad model answer.

        FIX over the reference: it weights every point of a batch with the step
        size of the batch's last point, which is wrong when ``sqrt=True`` and
        ``batch_size > 1``; here each point has its own step size.
        """
        x_value = as_float_array("x_value", x_value)
        if x_value.ndim not in (2, 3):
            raise ValueError(f"x_value must be an image, H x W x C or H x W; got shape {x_value.shape}")
        max_sigma = check_number("max_sigma", max_sigma, minimum=0.0, minimum_inclusive=False)
        steps = check_int("steps", steps)
        grad_step = check_number("grad_step", grad_step, minimum=0.0, minimum_inclusive=False)

        sigmas = np.arange(steps + 1) * max_sigma / steps
        if sqrt:
            sigmas = np.sqrt(sigmas)
        step_sizes = np.diff(sigmas)
        image = x_value if x_value.ndim == 3 else x_value[..., None]
        # float32 images are blurred in float32 (about 3x faster), float64 in float64.
        dtype = np.result_type(x_value.dtype, np.float32)
        derivatives = {}
        # Blurs are computed PATH_CHUNK points at a time: BLAS threads keep spinning
        # for a while after a product and slow the model call that follows, so
        # few large products beat one small product per call.
        chunk_size = max(batch_size if isinstance(batch_size, int) else 1, PATH_CHUNK)
        chunk: dict[str, Any] = {"start": 0, "stop": 0}

        def path_points(start: int, stop: int) -> np.ndarray:
            if not chunk["start"] <= start < stop <= chunk["stop"]:
                chunk_stop = min(max(stop, start + chunk_size), steps)
                chunk["points"], chunk["derivatives"] = blur_path(
                    image, sigmas[start:chunk_stop], grad_step, dtype
                )
                chunk["start"], chunk["stop"] = start, chunk_stop
            rows = slice(start - chunk["start"], stop - chunk["start"])
            batch_shape = (stop - start,) + x_value.shape
            derivatives[start] = chunk["derivatives"][rows].reshape(batch_shape)
            return chunk["points"][rows].reshape(batch_shape).astype(x_value.dtype, copy=False)

        total = np.zeros(x_value.shape, dtype=np.float64)
        for start, stop, output in call_model_in_batches(
            call_model_function, path_points, steps, batch_size, call_model_args, self.expected_keys
        ):
            weighted = derivatives.pop(start) * output[INPUT_OUTPUT_GRADIENTS]
            # einsum, not tensordot: a BLAS call here leaves BLAS threads spinning
            # into the next model call, which then runs up to 2.5x slower.
            total -= np.einsum("b,b...->...", step_sizes[start:stop], weighted)
        return total.astype(np.result_type(x_value.dtype, np.float32))
