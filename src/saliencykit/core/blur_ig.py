"""Blur IG: integrated gradients along a path of ever stronger Gaussian blur.

Xu, Venugopalan and Sundararajan 2020, "Attribution in Scale and Space"
(arXiv 2004.03383).

The reference blurs with ``scipy.ndimage.gaussian_filter(..., mode="constant")``
twice per step (200 full 2-D filters at the defaults: most of its run time).
Here every blur is a pointwise product in the frequency domain:

- A Gaussian filter truncated at ``radius = int(4 * sigma + 0.5)`` with zero
  padding is a *linear* convolution. Only the taps ``|k| <= n - 1`` can reach
  from one pixel of an axis of length ``n`` to another, so with the image
  zero-padded to a length ``L >= n + min(radius, n - 1)`` the circular
  convolution of length ``L`` equals it on the image's pixels (no wrap-around
  reaches them). Its multiplier is the DFT of the truncated, normalised
  kernel folded onto ``L`` points: exactly scipy's kernel, so the result is
  scipy's up to the rounding of the transforms (~1e-16 relative in float64,
  ~1e-7 in float32).
- The image's 2-D spectrum is computed once per mask (at up to four paddings,
  smaller for the small blurs); each path point is then one multiplication and
  one inverse transform (a complex FFT along H, the padding rows dropped, then
  a real FFT along W), all single-threaded (no BLAS), and so is its
  finite-difference derivative ``(blur(s + h) - blur(s)) / h``, whose multiplier
  ``D_H K_W(s + h) + K_H(s) D_W`` (``D = (K(s + h) - K(s)) / h`` per axis, in
  float64) has no cancellation, so float32 images can be blurred in float32.
- Memory is linear in the image: the spectrum is about four times the image
  (``L <= 2n`` per axis), and only the path points of one model call (and
  their derivatives) exist at a time.

The reference's boundary is ``mode="constant"`` (zero padding), which no
real-to-real transform diagonalises; the padded FFT is the exact equivalent.
(A type-II DCT diagonalises ``mode="reflect"``; for zero padding it needs the
image padded by half the kernel's reach on *both* sides, i.e. transforms as
long as the FFT's. Measured on the default path, 224 x 224 x 3 float32: 1.25
times the FFT's time, equally exact; ``benchmarks/bench_blur_ig_memory.py``,
section 4, runs both.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft
from scipy.linalg import toeplitz

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    check_evaluation_count,
    check_number,
)

__all__ = [
    "MAX_SIGMA_PER_SIDE",
    "BlurIG",
    "blur_path",
    "gaussian_blur",
    "gaussian_blur_matrix",
    "max_sigma_for",
]

#: scipy.ndimage.gaussian_filter's default truncation, in standard deviations.
TRUNCATE = 4.0
#: The largest blur, as a multiple of the image's longest spatial side. With
#: zero padding, at ``sigma = 1000 * n`` every blurred pixel is the image's sum
#: over the window times nearly the same weight: the blurred image is uniform
#: to ``(n / sigma)**2 / 2 = 5e-7`` and at most ``(n / (sigma * sqrt(2 pi)))**2
#: = 1.6e-7`` of the image's largest magnitude, i.e. black to float32
#: precision. Larger blurs cannot add information to the path (they only spread
#: its steps over black images); they are refused as a likely mistake.
MAX_SIGMA_PER_SIDE = 1000
#: Kernel radii up to this are normalised exactly as scipy does (a sum over the
#: whole kernel); larger ones by the Euler-Maclaurin formula (see
#: :func:`_kernel_sum`), so that no kernel of more than ~2**15 taps is built.
_DIRECT_SUM_RADIUS = 2**14
#: Number of paddings of the image's spectrum (see ``_SpectralBlur``): small
#: blurs need less padding, hence smaller (faster) transforms.
_LEVELS = 4


def max_sigma_for(shape: tuple[int, ...]) -> float:
    """Returns the largest blur sigma accepted for an image of ``shape`` (H x W [x C]).

    ``MAX_SIGMA_PER_SIDE`` times the longest spatial side (see there why).
    """
    return float(MAX_SIGMA_PER_SIDE * max(shape[0], shape[1] if len(shape) > 1 else 1))


def _check_sigma(name: str, sigma: Any, shape: tuple[int, ...], largest: float | None = None) -> float:
    """Checks a blur strength: finite, >= 0 and at most :func:`max_sigma_for` ``shape``.

    ``largest`` is the largest blur sigma that ``sigma`` leads to (by default ``sigma``).
    """
    sigma = check_number(name, sigma, minimum=0.0)
    limit = max_sigma_for(shape)
    largest = sigma if largest is None else largest
    if largest > limit:
        side = max(shape[0], shape[1] if len(shape) > 1 else 1)
        raise ValueError(
            f"{name} must give blurs of sigma <= {limit:g} ({MAX_SIGMA_PER_SIDE} x the image's longest "
            f"side, {side} pixels: at that blur the image is already uniform and black to float32 "
            f"precision), got {name}={sigma:g} (largest sigma {largest:g})"
        )
    return sigma


def _kernel_sum(sigma: float, radius: int) -> float:
    """Returns ``sum(exp(-k**2 / (2 sigma**2)) for |k| <= radius)``, scipy's normaliser.

    Up to ``_DIRECT_SUM_RADIUS`` the sum is computed as scipy computes it (the
    same array, the same ``sum``), hence bit-identical kernels. Beyond, the
    Euler-Maclaurin formula with three correction terms, exact to ~1e-16
    relative there (the first neglected term is below ``1e-8 / sigma**6``):
    ``sigma sqrt(2 pi) erf(t / sqrt(2)) + f(r) (1 - He1(t) / (6 sigma)
    + He3(t) / (360 sigma**3) - He5(t) / (15120 sigma**5))`` with ``t = r / sigma``,
    ``f(r) = exp(-t**2 / 2)`` and ``He`` the probabilists' Hermite polynomials.
    """
    if radius <= _DIRECT_SUM_RADIUS:
        return float(np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2).sum())
    return _kernel_sum_euler_maclaurin(sigma, radius)


def _kernel_sum_euler_maclaurin(sigma: float, radius: int) -> float:
    """The Euler-Maclaurin value of :func:`_kernel_sum` (accurate for ``sigma >= 50``)."""
    t = radius / sigma
    edge = math.exp(-0.5 * t * t)
    he1, he3, he5 = t, t**3 - 3 * t, t**5 - 10 * t**3 + 15 * t
    corrections = 1 - he1 / (6 * sigma) + he3 / (360 * sigma**3) - he5 / (15120 * sigma**5)
    return sigma * math.sqrt(2 * math.pi) * math.erf(t / math.sqrt(2)) + edge * corrections


def _kernel_taps(sigma: float, n: int) -> np.ndarray:
    """Taps ``0..min(radius, n - 1)`` of scipy's normalised Gaussian kernel (float64).

    The kernel is ``exp(-k^2 / (2 sigma^2)) / sum`` for ``|k| <= radius =
    int(TRUNCATE * sigma + 0.5)`` (scipy's ``_gaussian_kernel1d``); taps
    farther than ``n - 1`` never join two pixels of an axis of length ``n``.
    ``sigma == 0`` gives ``[1.0]`` (no blur).
    """
    if sigma == 0:
        return np.ones(1)
    radius = _radius(sigma)
    kept = min(radius, n - 1)
    taps = np.exp(-0.5 / (sigma * sigma) * np.arange(kept + 1) ** 2)
    return taps / _kernel_sum(sigma, radius)


def _radius(sigma: float) -> int:
    """scipy's kernel radius for ``sigma``: ``int(TRUNCATE * sigma + 0.5)``."""
    return int(TRUNCATE * sigma + 0.5)


def _multiplier(taps: np.ndarray, length: int, half: bool) -> np.ndarray:
    """The DFT of the symmetric kernel ``taps`` folded onto ``length`` points (real, float64).

    ``half``: the ``length // 2 + 1`` frequencies of a real FFT, else all ``length``.
    """
    folded = np.zeros(length)
    folded[: len(taps)] = taps
    if len(taps) > 1:
        folded[length - len(taps) + 1 :] += taps[:0:-1]
    return np.fft.rfft(folded).real if half else np.fft.fft(folded).real


def gaussian_blur_matrix(n: int, sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """Returns the ``n x n`` matrix of a 1-D Gaussian filter with zero padding (float64).

    ``gaussian_blur_matrix(n, s) @ v`` equals
    ``scipy.ndimage.gaussian_filter1d(v, s, mode="constant", truncate=truncate)``:
    the kernel is ``exp(-k^2 / (2 s^2))`` for ``|k| <= int(truncate * s + 0.5)``,
    normalised to sum to one. ``sigma == 0`` gives the identity. A dense
    reference for small ``n`` (memory ``n**2``); Blur IG itself does not use it.
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


class _SpectralBlur:
    """Zero-padded Gaussian blurs of one H x W x C image over H and W, by FFT.

    A blur of radius ``r`` needs the image zero-padded to ``L >= n + min(r, n - 1)``
    along each axis. The padded spectrum (``C x L_H x (L_W // 2 + 1)`` complex,
    at most about four times the image) is computed at ``_LEVELS`` paddings,
    for radii up to 1/4, 1/2, 3/4 and all of the largest radius asked for
    (about 30% less work than one padding at the defaults), each when first
    needed. Only the last one is kept and a smaller one is never gone back to
    (Blur IG's sigmas grow: each is computed once). Every blur or derivative
    then costs one multiplication and one inverse transform per channel, with
    temporaries of one channel's spectrum.

    Args:
      image: H x W x C.
      max_sigma: the largest sigma that will be asked for (sets the paddings).
      dtype: float32 or float64, the precision of the transforms.
    """

    def __init__(self, image: np.ndarray, max_sigma: float, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.image = image
        self.height, self.width, self.channels = image.shape
        self._longest_radius = max(self.height, self.width) - 1
        largest = min(_radius(max_sigma), self._longest_radius)
        self._level_radii = sorted({-(-largest * k // _LEVELS) for k in range(1, _LEVELS + 1)})
        self._level_radius = -1
        self.spectrum = np.empty(0)

    def _use_level(self, sigma: float) -> None:
        """Makes ``self.spectrum`` a padded spectrum long enough for blurs of ``sigma``."""
        needed = min(_radius(sigma), self._longest_radius)
        if self._level_radius >= needed:  # a larger padding is as exact: keep it
            return
        radius = next((level for level in self._level_radii if level >= needed), needed)
        self._level_radius = radius
        self.length_h = scipy.fft.next_fast_len(self.height + min(radius, self.height - 1), real=False)
        self.length_w = scipy.fft.next_fast_len(self.width + min(radius, self.width - 1), real=True)
        self.spectrum = np.empty(0)  # the old level's memory goes first
        channels_first = np.ascontiguousarray(self.image.transpose(2, 0, 1), dtype=self.dtype)
        spectrum = scipy.fft.rfft(channels_first, n=self.length_w, axis=2, workers=1)
        self.spectrum = scipy.fft.fft(spectrum, n=self.length_h, axis=1, workers=1, overwrite_x=True)
        self._buffer = np.empty_like(self.spectrum[0])

    def _taps(self, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """The kernel taps (float64) of ``sigma`` along H and W."""
        return _kernel_taps(sigma, self.height), _kernel_taps(sigma, self.width)

    def _multipliers(self, taps: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The multipliers (float64) of ``taps`` along H (all frequencies) and W (half of them)."""
        return _multiplier(taps[0], self.length_h, half=False), _multiplier(taps[1], self.length_w, half=True)

    def _apply(self, multiplier: np.ndarray, out: np.ndarray) -> None:
        """Writes the inverse transform of ``spectrum * multiplier``, cropped, into ``out`` (H x W x C)."""
        for channel, spectrum in enumerate(self.spectrum):
            np.multiply(spectrum, multiplier, out=self._buffer)
            rows = scipy.fft.ifft(self._buffer, axis=0, workers=1, overwrite_x=True)[: self.height]
            blurred = scipy.fft.irfft(rows, n=self.length_w, axis=1, workers=1)
            out[:, :, channel] = blurred[:, : self.width]

    def blur(self, sigma: float, out: np.ndarray) -> None:
        """Writes the image blurred with ``sigma`` into ``out`` (H x W x C, any float dtype)."""
        taps = self._taps(sigma)
        if len(taps[0]) == len(taps[1]) == 1:  # no tap joins two pixels: a scaling (none for radius 0)
            scale = taps[0][0] * taps[1][0]
            out[...] = self.image if scale == 1 else self.image * scale
            return
        self._use_level(sigma)
        along_h, along_w = self._multipliers(taps)
        self._apply(np.multiply.outer(along_h.astype(self.dtype), along_w.astype(self.dtype)), out)

    def blur_and_derivative(
        self, sigma: float, grad_step: float, point: np.ndarray, derivative: np.ndarray
    ) -> None:
        """Writes ``blur(sigma)`` to ``point``, ``(blur(sigma + h) - blur(sigma)) / h`` to ``derivative``."""
        taps, next_taps = self._taps(sigma), self._taps(sigma + grad_step)
        if len(taps[0]) == len(taps[1]) == len(next_taps[0]) == len(next_taps[1]) == 1:
            scale, next_scale = taps[0][0] * taps[1][0], next_taps[0][0] * next_taps[1][0]
            point[...] = self.image if scale == 1 else self.image * scale
            derivative[...] = self.image * ((next_scale - scale) / grad_step)
            return
        self._use_level(sigma + grad_step)
        (along_h, along_w), (next_h, next_w) = self._multipliers(taps), self._multipliers(next_taps)
        self._apply(np.multiply.outer(along_h.astype(self.dtype), along_w.astype(self.dtype)), point)
        # K_H(s + h) K_W(s + h) - K_H(s) K_W(s) = D_H K_W(s + h) + K_H(s) D_W, times h:
        # each D from float64 kernels, so no cancellation in the transform's precision.
        difference_h = ((next_h - along_h) / grad_step).astype(self.dtype)
        difference_w = ((next_w - along_w) / grad_step).astype(self.dtype)
        multiplier = np.multiply.outer(difference_h, next_w.astype(self.dtype))
        multiplier += np.multiply.outer(along_h.astype(self.dtype), difference_w)
        self._apply(multiplier, derivative)


def _as_image(name: str, image: Any) -> np.ndarray:
    """``image`` as a float H x W x C array (a view with C = 1 for H x W)."""
    array = as_float_array(name, image)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} must be an image, H x W x C or H x W; got shape {array.shape}")
    return array if array.ndim == 3 else array[..., None]


def blur_path(
    image: np.ndarray, sigmas: np.ndarray, grad_step: float, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the blurred images and their finite-difference sigma derivatives.

    Args:
      image: H x W x C, blurred over H and W only.
      sigmas: the S blur strengths (each >= 0 and at most :func:`max_sigma_for`).
      grad_step: the sigma step ``h`` of the derivative.
      dtype: precision of the transforms (float32 or float64).

    Returns:
      ``(points, derivatives)``, each S x H x W x C in ``dtype``: ``points[i]``
      is ``gaussian_filter(image, [s_i, s_i, 0], mode="constant")`` and
      ``derivatives[i]`` is ``(blur(s_i + h) - blur(s_i)) / h``. Memory: the
      outputs plus a few times the image.
    """
    image = _as_image("image", image)
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    grad_step = check_number("grad_step", grad_step, minimum=0.0, minimum_inclusive=False)
    largest = float(sigmas.max(initial=0.0)) + grad_step
    for sigma in sigmas:
        _check_sigma("sigmas", float(sigma), image.shape, largest=float(sigma) + grad_step)
    blur = _SpectralBlur(image, largest, dtype)
    points = np.empty((len(sigmas),) + image.shape, dtype=dtype)
    derivatives = np.empty_like(points)
    for sigma, point, derivative in zip(sigmas, points, derivatives, strict=True):
        blur.blur_and_derivative(float(sigma), grad_step, point, derivative)
    return points, derivatives


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Returns ``image`` (H x W x C or H x W) blurred over its two spatial axes (float64).

    Same result as the reference's ``gaussian_blur``:
    ``scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0], mode="constant")``,
    and ``image`` itself for ``sigma == 0``. ``sigma`` must be at most
    :func:`max_sigma_for` the image's shape.

    Raises:
      ValueError: a bad ``image`` or ``sigma``.
    """
    as_3d = _as_image("image", image).astype(np.float64, copy=False)
    sigma = _check_sigma("sigma", sigma, as_3d.shape)
    blurred = np.empty(as_3d.shape)
    _SpectralBlur(as_3d, sigma, np.float64).blur(sigma, blurred)
    return blurred.reshape(np.shape(image))


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
        ``sqrt``), path point ``i`` is the image blurred with ``sigma_i`` (over
        H and W, zero padding, truncated at 4 sigma: the reference's
        ``scipy.ndimage.gaussian_filter(..., mode="constant")``) and its path
        derivative the finite difference
        ``(blur(sigma_i + grad_step) - blur(sigma_i)) / grad_step``; the mask is
        ``-sum_i (sigma_{i+1} - sigma_i) * derivative_i * gradient_i``.

        Memory is linear in the image and bounded by ``batch_size``: the
        image's spectrum (about 4 times the image) and the ``batch_size`` path
        points of one call with their derivatives; each blur costs two FFTs.

        Args:
          x_value: an image, H x W x C or H x W; integers become floats.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to every call unchanged.
          max_sigma: the strongest blur, in pixels (> 0). The largest blur
            (``max_sigma``, or its square root when ``sqrt``) must be at most
            ``MAX_SIGMA_PER_SIDE`` (1000) times the image's longest side: at
            that blur the image is uniform and black to float32 precision.
          steps: number of path points and model evaluations (>= 1, at most
            ``MAX_MODEL_EVALUATIONS``).
          grad_step: sigma step of the finite-difference derivative (> 0, at
            most the same limit as the blur).
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
        computation = self._mask_steps(x_value, max_sigma, steps, grad_step, sqrt)
        return self._run_one(computation, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(self, x_value: Any, max_sigma: float, steps: int, grad_step: float, sqrt: bool) -> Steps:
        x_value = as_float_array("x_value", x_value)
        if x_value.ndim not in (2, 3):
            raise ValueError(f"x_value must be an image, H x W x C or H x W; got shape {x_value.shape}")
        steps = check_evaluation_count("steps", steps)
        max_sigma = check_number("max_sigma", max_sigma, minimum=0.0, minimum_inclusive=False)
        largest_sigma = math.sqrt(max_sigma) if sqrt else max_sigma
        _check_sigma("max_sigma", max_sigma, x_value.shape, largest=largest_sigma)
        grad_step = check_number("grad_step", grad_step, minimum=0.0, minimum_inclusive=False)
        _check_sigma("grad_step", grad_step, x_value.shape)

        def sigmas(start: int, stop: int) -> np.ndarray:
            """sigma_start..sigma_stop, computed as the reference computes them."""
            ramp = np.arange(start, stop + 1) * max_sigma / steps
            return np.sqrt(ramp) if sqrt else ramp

        image = x_value if x_value.ndim == 3 else x_value[..., None]
        # float32 images are blurred in float32 (about 2x faster), float64 in float64.
        dtype = np.result_type(x_value.dtype, np.float32)
        blur = _SpectralBlur(image, largest_sigma + grad_step, dtype)
        # The derivatives of the path points of the call in progress (one chunk at a time).
        derivatives_of: dict[int, np.ndarray] = {}

        def path_points(start: int, stop: int) -> np.ndarray:
            """Path points start..stop-1 (the model's inputs); their derivatives wait for the answer."""
            points = np.empty((stop - start,) + image.shape, dtype=x_value.dtype)
            derivatives = np.empty((stop - start,) + image.shape, dtype=dtype)
            for sigma, point, derivative in zip(sigmas(start, stop)[:-1], points, derivatives, strict=True):
                blur.blur_and_derivative(float(sigma), grad_step, point, derivative)
            derivatives_of[start] = derivatives
            return points.reshape((stop - start,) + x_value.shape)

        total = np.zeros(x_value.shape, dtype=np.float64)

        def add_gradients(start: int, stop: int, output: dict[str, np.ndarray]) -> None:
            step_sizes = np.diff(sigmas(start, stop))
            gradients = output[INPUT_OUTPUT_GRADIENTS]
            weighted = derivatives_of.pop(start).reshape(gradients.shape) * gradients
            # einsum, not tensordot: a BLAS call here leaves BLAS threads spinning
            # into the next model call, which then runs up to 2.5x slower.
            total[...] -= np.einsum("b,b...->...", step_sizes, weighted)

        yield Request(steps, path_points, self.expected_keys, add_gradients)
        return total.astype(np.result_type(x_value.dtype, np.float32))

    def n_model_inputs(self, x_shape: tuple[int, ...], *, steps: int = 100, **other: Any) -> int:
        """One model input per path point: ``steps``.

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``steps``.
        """
        return check_evaluation_count("steps", steps)
