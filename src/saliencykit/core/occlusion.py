"""Occlusion sensitivity (Zeiler and Fergus 2014, "Visualizing and Understanding
Convolutional Networks", arXiv 1311.2901).

A window filled with a constant slides over the image; for every position the
drop of the explained output, ``f(x) - f(x_occluded)``, is added to every pixel
the window covers. Positive values mark evidence for the output, negative
values evidence against it.

The occluded copies are built lazily, ``batch_size`` at a time, so memory stays
bounded by ``batch_size`` copies of the input whatever its size. The map is
assembled without a loop over windows: the score drops are laid on an array of
window origins and summed over each window's extent with cumulative sums, one
axis at a time.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .base import (
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    as_float_array,
    call_model_in_batches,
    check_int,
    check_number,
    scalar_outputs,
)

__all__ = ["Occlusion", "window_origins", "sum_over_windows"]


def _pair_of_ints(name: str, value: Any) -> tuple[int, int]:
    """Returns ``value`` (an int, or a pair of ints for rows and columns) as a pair, each >= 1.

    Raises:
      TypeError: if it is neither an integer nor a pair of integers.
      ValueError: if an entry is < 1 or a sequence does not have two entries.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        single = check_int(name, value)
        return single, single
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be an integer or a pair (rows, columns), got {value!r}")
    return check_int(f"{name}[0]", value[0]), check_int(f"{name}[1]", value[1])


def window_origins(length: int, window: int, stride: int) -> np.ndarray:
    """Returns the start index of every window along one axis.

    Windows start at ``0, stride, 2 * stride, ...`` while they fit inside
    ``length``. When ``(length - window)`` is not a multiple of ``stride``, one
    more window is placed flush with the far edge (start ``length - window``),
    so the last pixels are covered too instead of getting no score. With
    ``stride=1`` this is exactly ``0 .. length - window``.

    Args:
      length: size of the axis (>= ``window``).
      window: size of the window along the axis (>= 1).
      stride: step between consecutive starts (>= 1).

    Returns:
      A sorted ``int`` array of distinct starts.
    """
    last = length - window
    origins = np.arange(0, last + 1, stride)
    if origins[-1] != last:
        origins = np.append(origins, last)
    return origins


def sum_over_windows(origin_values: np.ndarray, window: int, axis: int) -> np.ndarray:
    """Spreads values stored at window starts over each window's extent along one axis.

    ``out[..., i, ...] = sum(origin_values[..., o, ...] for o in (i - window, i])``:
    every value is added to the ``window`` positions from its own index on.
    Computed with a cumulative sum and one shifted subtraction; no loop.

    Args:
      origin_values: values at window starts, zero where no window starts;
        along ``axis`` it must already have the full length of the image axis.
      window: the window's size along ``axis`` (>= 1).
      axis: the axis to sum along.

    Returns:
      An array of ``origin_values``' shape and dtype.
    """
    running = np.cumsum(origin_values, axis=axis)
    result = running.copy()
    source = [slice(None)] * running.ndim
    target = [slice(None)] * running.ndim
    source[axis] = slice(None, running.shape[axis] - window)
    target[axis] = slice(window, None)
    result[tuple(target)] -= running[tuple(source)]
    return result


class Occlusion(CoreSaliency):
    """Occlusion sensitivity: how much the output drops when a patch is hidden.

    ``call_model_function`` must answer ``OUTPUT_LAYER_VALUES`` with one scalar
    (the explained output) per example: shape ``[batch]`` or ``[batch, 1]``.
    No gradients are needed.

    With the defaults (``size=15``, ``stride=1``, ``batch_size=1``) the map and
    the calls are those of the reference library: one call on the input, then
    one per window. ``batch_size`` groups the input and the occluded copies
    into calls of that many examples (the input is the first example of the
    first call): ``ceil((n_windows + 1) / batch_size)`` calls in all.
    """

    expected_keys = [OUTPUT_LAYER_VALUES]

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        size: int | tuple[int, int] = 15,
        value: float = 0,
        stride: int | tuple[int, int] = 1,
        batch_size: int = 1,
    ) -> np.ndarray:
        """Returns the occlusion mask of ``x_value``.

        Args:
          x_value: the un-batched input, ``[H, W]`` or ``[H, W, C]`` (more
            trailing axes are allowed; windows slide over the first two axes
            and cover all the others). Integers become floats.
          call_model_function: answers ``OUTPUT_LAYER_VALUES``, one scalar per
            example (``[batch]`` or ``[batch, 1]``).
          call_model_args: passed to every call unchanged.
          size: the window, ``size x size`` for an int or ``(height, width)``
            for a pair; each between 1 and the image's size along its axis.
          value: the number written into the window (every channel).
          stride: step between window starts, an int or ``(rows, columns)``,
            each >= 1. Windows start at ``0, stride, 2 stride, ...`` while they
            fit; when the image's far edge is not reached exactly, one extra
            row (column) of windows is placed flush with it, so every pixel is
            covered when ``stride <= size`` (see :func:`window_origins`). With
            ``stride > size`` pixels between windows get no score (zero).
          batch_size: the most examples (input or occluded copies) sent to the
            model in one call; memory holds at most that many copies.

        Returns:
          The map, ``x_value``'s shape and floating dtype: for each pixel, the
          sum over the windows covering it of ``f(x) - f(x_occluded)``, the
          same value in every channel.

        Raises:
          TypeError, ValueError: bad arguments (a window larger than the image,
            ``size``, ``stride`` or ``batch_size`` < 1, an input with fewer than
            two axes); a missing, misshapen or non-finite model answer, or an
            answer with more than one value per example.

        FIX over the reference: a window larger than the image is an error (the
        reference silently returns zeros); integer inputs are computed in
        floating point (the reference truncates the scores to the input's
        integer dtype). An ``OUTPUT_LAYER_VALUES`` with several values per
        example is an error: the reference takes ``values[0]`` and broadcasts
        that vector into the map, which only works by accident of shapes.
        """
        x_value = as_float_array("x_value", x_value, min_ndim=2)
        window_rows, window_cols = _pair_of_ints("size", size)
        stride_rows, stride_cols = _pair_of_ints("stride", stride)
        fill_value = check_number("value", value)
        batch_size = check_int("batch_size", batch_size)
        height, width = x_value.shape[:2]
        if window_rows > height or window_cols > width:
            raise ValueError(
                f"size must fit inside the image: window {window_rows}x{window_cols} "
                f"for x_value of shape {x_value.shape}"
            )

        row_origins = window_origins(height, window_rows, stride_rows)
        col_origins = window_origins(width, window_cols, stride_cols)
        n_windows = len(row_origins) * len(col_origins)

        def occluded_copies(start: int, stop: int) -> np.ndarray:
            # Example 0 is the input itself; example k >= 1 hides window k - 1.
            batch = np.repeat(x_value[None], stop - start, axis=0)
            for copy, example in zip(batch, range(start, stop), strict=True):
                if example == 0:
                    continue
                row_index, col_index = divmod(example - 1, len(col_origins))
                top, left = row_origins[row_index], col_origins[col_index]
                copy[top : top + window_rows, left : left + window_cols] = fill_value
            return batch

        outputs = np.empty(n_windows + 1, dtype=np.float64)
        for start, stop, answer in call_model_in_batches(
            call_model_function,
            occluded_copies,
            n_windows + 1,
            batch_size,
            call_model_args,
            self.expected_keys,
        ):
            outputs[start:stop] = scalar_outputs(answer[OUTPUT_LAYER_VALUES])

        score_drops = outputs[0] - outputs[1:].reshape(len(row_origins), len(col_origins))
        drops_at_origins = np.zeros((height, width), dtype=np.float64)
        drops_at_origins[np.ix_(row_origins, col_origins)] = score_drops
        pixel_scores = sum_over_windows(drops_at_origins, window_rows, axis=0)
        pixel_scores = sum_over_windows(pixel_scores, window_cols, axis=1)

        trailing = (None,) * (x_value.ndim - 2)
        return np.broadcast_to(pixel_scores[(...,) + trailing], x_value.shape).astype(x_value.dtype)
