"""Occlusion sensitivity (Zeiler and Fergus 2014, "Visualizing and Understanding
Convolutional Networks", arXiv 1311.2901).

A window filled with a constant (or with per-feature values) slides over the
image, or along a sequence; for every position the drop of the explained
output, ``f(x) - f(x_occluded)``, is added to every pixel (step) the window
covers. Positive values mark evidence for the output, negative values evidence
against it. Rank 1 inputs are sequences, rank 2 and more images, unless
``spatial_axes`` says otherwise (see :class:`Occlusion`).

The occluded copies are built lazily, ``batch_size`` at a time, so memory stays
bounded by ``batch_size`` copies of the input whatever its size. The map is
assembled without a loop over windows: the score drops are laid on an array of
window origins and summed over each window's extent with cumulative sums, one
axis at a time.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import (
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    check_evaluation_count,
    check_int,
    check_number,
    scalar_outputs,
)

__all__ = ["Occlusion", "window_origins", "sum_over_windows", "IMAGE_SPATIAL_AXES"]

#: Spatial axes of an input of rank >= 2 unless ``spatial_axes`` says otherwise:
#: ``[H, W]`` and ``[H, W, C, ...]`` are images (the reference's behaviour).
IMAGE_SPATIAL_AXES = 2


def _ints_per_axis(name: str, value: Any, n_axes: int) -> tuple[int, ...]:
    """Returns ``value`` (an int, or one int per spatial axis) as ``n_axes`` ints, each >= 1.

    Raises:
      TypeError: if it is neither an integer nor a sequence of integers.
      ValueError: if an entry is < 1 or a sequence does not have ``n_axes`` entries.
    """
    expected = "a pair of integers (rows, columns)" if n_axes == 2 else f"{n_axes} integers (one per axis)"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (check_int(name, value),) * n_axes
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be an integer or {expected}, got {value!r}")
    if len(value) != n_axes:
        raise ValueError(
            f"{name} must be an integer or {expected} for {n_axes} spatial axis(es), got {value!r}"
        )
    return tuple(check_int(f"{name}[{axis}]", entry) for axis, entry in enumerate(value))


def _fill_values(value: Any, x_value: np.ndarray) -> float | np.ndarray:
    """Returns ``value`` as a finite number or an array of ``x_value``'s shape (a broadcast view).

    Raises:
      TypeError: if it is not numeric.
      ValueError: if it is not finite, not representable in ``x_value``'s
        dtype, or an array that does not broadcast to ``x_value``'s shape.
    """
    if np.ndim(value) == 0:
        scalar = value.item() if isinstance(value, (np.ndarray, np.generic)) else value
        fill: float | np.ndarray = check_number("value", scalar)
        fills = np.asarray(fill)
    else:
        fills = as_float_array("value", value)
        try:
            fill = np.broadcast_to(fills, x_value.shape)
        except ValueError:
            raise ValueError(
                f"value must be a number or an array that broadcasts to x_value's shape {x_value.shape} "
                f"(NumPy rules: trailing axes aligned, e.g. one value per channel), got shape {fills.shape}"
            ) from None
    with np.errstate(over="ignore"):
        in_dtype = fills.astype(x_value.dtype)
    if not np.isfinite(in_dtype).all():
        raise ValueError(
            f"value must be representable in x_value's dtype {x_value.dtype}: it overflows to inf"
        )
    return fill


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


@dataclass(frozen=True)
class _WindowGrid:
    """The windows of one occlusion run, one entry per spatial axis (see :meth:`Occlusion.GetMask`).

    Attributes:
      x_shape: the input's shape.
      spatial_shape: its spatial shape (its leading axes).
      windows: the window's length along each spatial axis.
      strides: the step between window starts along each spatial axis.
      arguments: ``size`` and ``stride`` as given, for messages.
    """

    x_shape: tuple[int, ...]
    spatial_shape: tuple[int, ...]
    windows: tuple[int, ...]
    strides: tuple[int, ...]
    arguments: str

    @classmethod
    def parse(
        cls,
        x_shape: tuple[int, ...],
        size: int | Sequence[int],
        stride: int | Sequence[int],
        spatial_axes: int | None,
    ) -> _WindowGrid:
        """Checks ``spatial_axes``, ``size`` and ``stride`` for an input of ``x_shape``.

        Raises:
          TypeError, ValueError: one of them is not an integer (or one per
            spatial axis) >= 1; ``spatial_axes`` is more than the input's rank.
        """
        if spatial_axes is None:
            n_spatial = 1 if len(x_shape) == 1 else IMAGE_SPATIAL_AXES
        else:
            n_spatial = check_int(
                "spatial_axes",
                spatial_axes,
                maximum=len(x_shape),
                limit_reason=f"x_value has shape {x_shape}",
            )
        windows = _ints_per_axis("size", size, n_spatial)
        strides = _ints_per_axis("stride", stride, n_spatial)
        return cls(x_shape, x_shape[:n_spatial], windows, strides, f"size={size!r}, stride={stride!r}")

    def origins(self) -> list[np.ndarray]:
        """The windows' starts along each spatial axis (:func:`window_origins`).

        Raises:
          ValueError: a window or stride longer than its axis, or more than
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS` model evaluations.
        """
        kind = {1: "sequence", 2: "image"}.get(len(self.spatial_shape), "input")
        if any(window > length for window, length in zip(self.windows, self.spatial_shape, strict=True)):
            raise ValueError(
                f"size must fit inside the {kind}: window {'x'.join(map(str, self.windows))} for "
                f"x_value of shape {self.x_shape} (spatial shape {self.spatial_shape})"
            )
        if any(step > length for step, length in zip(self.strides, self.spatial_shape, strict=True)):
            raise ValueError(
                f"stride must be at most the {kind}'s length along each spatial axis "
                f"{self.spatial_shape}, got {'x'.join(map(str, self.strides))}"
            )
        origins = [
            window_origins(length, window, step)
            for length, window, step in zip(self.spatial_shape, self.windows, self.strides, strict=True)
        ]
        n_windows = math.prod(len(axis_origins) for axis_origins in origins)
        check_evaluation_count(f"the number of windows + 1 ({self.arguments})", n_windows + 1)
        return origins


class Occlusion(CoreSaliency):
    """Occlusion sensitivity: how much the output drops when a patch is hidden.

    ``call_model_function`` must answer ``OUTPUT_LAYER_VALUES`` with one scalar
    (the explained output) per example: shape ``[batch]`` or ``[batch, 1]``.
    No gradients are needed.

    The window slides over the input's leading *spatial* axes and covers the
    remaining (feature, channel) axes whole. Which axes are spatial:

    - rank 1, ``[L]``: a sequence; the window slides along its one axis;
    - rank 2 or more: an image, ``[H, W]`` or ``[H, W, C, ...]``; the window
      slides over the first two axes (the reference's behaviour);
    - ``spatial_axes=1`` makes a rank-2 ``[L, C]`` input (or ``[L, C, ...]``)
      a sequence of feature vectors; ``spatial_axes=3`` a volume ``[D, H, W, C]``.
      Rank 2 is ambiguous (``[H, W]`` or ``[L, C]``), so it stays an image
      unless ``spatial_axes`` says otherwise.

    With the defaults (``size=15``, ``stride=1``, ``batch_size=1``) on an image
    the map and the calls are those of the reference library: one call on the
    input, then one per window. ``batch_size`` groups the input and the
    occluded copies into calls of that many examples (the input is the first
    example of the first call): ``ceil((n_windows + 1) / batch_size)`` calls in all.
    """

    expected_keys = [OUTPUT_LAYER_VALUES]

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        size: int | Sequence[int] = 15,
        value: float | np.ndarray = 0,
        stride: int | Sequence[int] = 1,
        batch_size: int = 1,
        spatial_axes: int | None = None,
    ) -> np.ndarray:
        """Returns the occlusion mask of ``x_value``.

        Args:
          x_value: the un-batched input: a sequence ``[L]`` (or ``[L, C]`` with
            ``spatial_axes=1``), an image ``[H, W]`` or ``[H, W, C]`` (more
            trailing axes are allowed and covered whole). Integers become
            floats. See the class docstring for which axes are spatial.
          call_model_function: answers ``OUTPUT_LAYER_VALUES``, one scalar per
            example (``[batch]`` or ``[batch, 1]``).
          call_model_args: passed to every call unchanged.
          size: the window: an int for the same length along every spatial
            axis (``size x size`` on an image, ``size`` steps on a sequence),
            or one int per spatial axis (``(height, width)`` on an image);
            each between 1 and the input's length along its axis.
          value: what is written into the window: a number (every feature and
            channel), or an array that broadcasts to ``x_value``'s shape by
            NumPy's rules (trailing axes aligned): ``[C]`` gives one value per
            channel or feature, ``x_value``'s shape a full replacement input
            (the window shows that input's values there), ``[L, 1]`` one value
            per position of an ``[L, C]`` sequence. It must be finite in
            ``x_value``'s dtype.
          stride: step between window starts, an int or one int per spatial
            axis, each between 1 and the input's length along its axis.
            Windows start at ``0, stride, 2 stride, ...`` while they fit;
            when the far edge is not reached exactly, one extra window is
            placed flush with it, so every position is covered when ``stride
            <= size`` (see :func:`window_origins`). With ``stride > size``
            positions between windows get no score (zero).
          batch_size: the most examples (input or occluded copies) sent to the
            model in one call; memory holds at most that many copies (values
            above the number of windows + 1 act as that number).
          spatial_axes: how many leading axes are spatial (1, 2, 3... at most
            ``x_value.ndim``); ``None`` (default): 1 for a rank-1 input, 2
            otherwise.

        Returns:
          The map, ``x_value``'s shape, floating point (``x_value``'s dtype,
          float32 for float16): for each position, the sum over the windows
          covering it of ``f(x) - f(x_occluded)``, the same value in every
          feature or channel.

        Raises:
          TypeError, ValueError: bad arguments (a window or stride larger than
            the input, ``size``, ``stride`` or ``batch_size`` < 1, a ``value``
            that does not broadcast, more than
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS` model
            evaluations); a missing, misshapen or non-finite model answer, or
            an answer with more than one value per example.

        FIX over the reference: a window larger than the image is an error (the
        reference silently returns zeros); integer inputs are computed in
        floating point (the reference truncates the scores to the input's
        integer dtype). An ``OUTPUT_LAYER_VALUES`` with several values per
        example is an error: the reference takes ``values[0]`` and broadcasts
        that vector into the map, which only works by accident of shapes. The
        reference fails on rank-1 inputs and takes one number as ``value``.
        """
        batch_size = check_int("batch_size", batch_size)
        steps = self._mask_steps(x_value, size, value, stride, spatial_axes)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(
        self,
        x_value: Any,
        size: int | Sequence[int],
        value: float | np.ndarray,
        stride: int | Sequence[int],
        spatial_axes: int | None,
    ) -> Steps:
        x_value = as_float_array("x_value", x_value, min_ndim=1)
        grid = _WindowGrid.parse(x_value.shape, size, stride, spatial_axes)
        fill = _fill_values(value, x_value)
        origins, windows = grid.origins(), grid.windows
        counts = tuple(len(axis_origins) for axis_origins in origins)
        n_windows = math.prod(counts)

        def occluded_copies(start: int, stop: int) -> np.ndarray:
            # Example 0 is the input itself; example k >= 1 hides window k - 1.
            batch = np.repeat(x_value[None], stop - start, axis=0)
            for copy, example in zip(batch, range(start, stop), strict=True):
                if example == 0:
                    continue
                position = np.unravel_index(example - 1, counts)
                window = tuple(
                    slice(int(axis_origins[index]), int(axis_origins[index]) + length)
                    for axis_origins, index, length in zip(origins, position, windows, strict=True)
                )
                copy[window] = fill if isinstance(fill, float) else fill[window]
            return batch

        outputs = np.empty(n_windows + 1, dtype=np.float64)

        def store(start: int, stop: int, answer: dict[str, np.ndarray]) -> None:
            outputs[start:stop] = scalar_outputs(answer[OUTPUT_LAYER_VALUES])

        yield Request(n_windows + 1, occluded_copies, self.expected_keys, store)

        score_drops = outputs[0] - outputs[1:].reshape(counts)
        position_scores = np.zeros(grid.spatial_shape, dtype=np.float64)
        position_scores[np.ix_(*origins)] = score_drops
        for axis, window in enumerate(windows):
            position_scores = sum_over_windows(position_scores, window, axis=axis)

        trailing = (None,) * (x_value.ndim - len(grid.spatial_shape))
        dtype = np.result_type(x_value.dtype, np.float32)
        return np.broadcast_to(position_scores[(...,) + trailing], x_value.shape).astype(dtype)

    def n_model_inputs(
        self,
        x_shape: tuple[int, ...],
        *,
        size: int | Sequence[int] = 15,
        stride: int | Sequence[int] = 1,
        spatial_axes: int | None = None,
        **other: Any,
    ) -> int:
        """The input and one occluded copy per window: ``n_windows + 1`` (see :meth:`GetMask`).

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``size``, ``stride`` or ``spatial_axes``
            for ``x_shape``, as :meth:`GetMask` raises them.
        """
        if len(x_shape) < 1:
            raise ValueError(f"x_value must have at least 1 dimension(s), got shape {tuple(x_shape)}")
        origins = _WindowGrid.parse(tuple(x_shape), size, stride, spatial_axes).origins()
        return math.prod(len(axis_origins) for axis_origins in origins) + 1
