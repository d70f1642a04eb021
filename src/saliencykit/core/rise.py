"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko 2018,
"RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018,
arXiv 1806.07421).

The model sees the input through ``N`` random smooth masks ``M_i`` (values in
``[0, 1]``), and each position's saliency is the mean score of the masked
inputs weighted by how much of that position each mask kept::

    S = 1 / (N p) * sum_i f(b + M_i * (x - b)) M_i        (b = 0: f(x * M_i))

A mask, as in the paper and the authors' code: a coarse grid of ``g`` cells per
spatial axis, each cell kept (1) with probability ``p`` and dropped (0)
otherwise, ``g = ceil(length / cell)`` for a cell of ``cell`` pixels; the grid
is enlarged bilinearly to ``(g + 1) cell`` pixels per axis
(``skimage.transform.resize`` with ``order=1``, ``mode="reflect"``, no
anti-aliasing) and a window of the input's size is cut from it at a random
offset in ``[0, cell)`` along each axis. ``E[M] = p`` everywhere, hence the
``1 / (N p)``.

Randomness: mask ``i`` is made from one row of uniform draws, ``g_1 ... g_d``
grid values (kept where ``< p``) followed by one value per axis for the offset
(``floor(u * cell)``). Rows are drawn in mask order, a call's worth at a time,
from one generator, so the masks do not depend on ``batch_size`` and memory
holds about ``batch_size`` masks whatever ``N``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import (
    DEFAULT_BATCH_SIZE,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    baseline_like,
    check_evaluation_count,
    check_int,
    check_number,
    scalar_outputs,
)
from .grad_cam import _axis_resize_operator
from .occlusion import IMAGE_SPATIAL_AXES, _ints_per_axis

__all__ = ["RISE", "DEFAULT_GRID_CELLS"]

#: Cells per spatial axis when ``cell_size`` is None: the authors' ImageNet setting (8 x 8).
DEFAULT_GRID_CELLS = 8


def _generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The generator of one mask set (see :meth:`RISE.GetMask`'s ``seed``).

    ``default_rng(seed)`` for an int; otherwise seeded by one draw from the
    Generator, or from NumPy's global state for None.

    Raises:
      TypeError: a seed that is not None, an int or a ``np.random.Generator``.
    """
    if isinstance(seed, np.random.Generator):
        return np.random.default_rng(int(seed.integers(2**63)))
    if seed is None:
        return np.random.default_rng(int(np.random.randint(2**31)))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__} {seed!r}")


class _MaskMaker:
    """Draws RISE masks for one input's spatial shape (see the module docstring)."""

    def __init__(
        self, spatial_shape: tuple[int, ...], cells: tuple[int, ...], p_keep: float, rng: np.random.Generator
    ) -> None:
        self.spatial_shape = spatial_shape
        self.cells = np.array(cells)
        self.grid_shape = tuple(
            math.ceil(length / cell) for length, cell in zip(spatial_shape, cells, strict=True)
        )
        self.p_keep = p_keep
        self.rng = rng
        # Per axis: the matrix enlarging g cells to (g + 1) * cell pixels.
        self.operators = [
            _axis_resize_operator(grid, (grid + 1) * cell)
            for grid, cell in zip(self.grid_shape, cells, strict=True)
        ]

    def masks(self, count: int) -> np.ndarray:
        """The next ``count`` masks, float64 ``[count, ..spatial..]``."""
        n_grid = math.prod(self.grid_shape)
        draws = self.rng.random((count, n_grid + len(self.spatial_shape)))
        masks = (draws[:, :n_grid] < self.p_keep).astype(np.float64).reshape((count, *self.grid_shape))
        offsets = np.floor(draws[:, n_grid:] * self.cells).astype(int)
        for axis, (operator, length) in enumerate(zip(self.operators, self.spatial_shape, strict=True)):
            # Each mask's rows of the enlarging matrix, from its offset: [count, length, grid].
            rows = operator[offsets[:, axis, None] + np.arange(length)]
            moved = np.moveaxis(masks, axis + 1, -1)  # [count, ..., grid]
            enlarged = np.matmul(moved.reshape(count, -1, operator.shape[1]), rows.transpose(0, 2, 1))
            masks = np.moveaxis(enlarged.reshape(*moved.shape[:-1], length), -1, axis + 1)
        return masks


class RISE(CoreSaliency):
    """RISE: the mean score of randomly masked copies of the input, weighted by each mask.

    A black-box method: ``call_model_function`` must answer
    ``OUTPUT_LAYER_VALUES`` with one scalar (the explained output) per example,
    ``[batch]`` or ``[batch, 1]``; no gradients. The masks are smooth random
    patterns over the input's leading *spatial* axes (the same rule as
    :class:`~saliencykit.core.occlusion.Occlusion`: a rank-1 input is a
    sequence, a rank-2 or higher input an image ``[H, W, ...]`` unless
    ``spatial_axes`` says otherwise) and cover the other axes (channels) whole.

    Cost in model calls: ``n_masks`` masked inputs, in ``ceil(n_masks /
    batch_size)`` calls (with :meth:`GetMaskBatch` the inputs of several
    examples share calls). The estimate's noise falls as ``1 / sqrt(n_masks)``:
    the paper uses thousands of masks on ImageNet.
    """

    expected_keys = [OUTPUT_LAYER_VALUES]
    per_example_arguments = ("x_baseline",)

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        n_masks: int = 2000,
        cell_size: int | Sequence[int] | None = None,
        p_keep: float = 0.5,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | np.random.Generator | None = None,
        x_baseline: np.ndarray | None = None,
        spatial_axes: int | None = None,
    ) -> np.ndarray:
        """Returns the RISE saliency map of ``x_value``.

        Args:
          x_value: the un-batched input: a sequence ``[L]`` (or ``[L, C]`` with
            ``spatial_axes=1``), an image ``[H, W]`` or ``[H, W, C]``, a volume
            ``[D, H, W, C]`` with ``spatial_axes=3``; integers become floats.
          call_model_function: answers ``OUTPUT_LAYER_VALUES``, one scalar per
            example (``[batch]`` or ``[batch, 1]``).
          call_model_args: passed to every call unchanged.
          n_masks: the number of random masks ``N``, between 1 and
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS` (default
            2000, with an 8 x 8 grid and ``p_keep=0.5`` the settings of the
            authors' example).
          cell_size: the size in pixels of one cell of the random grid: an
            int (the same along every spatial axis) or one int per spatial
            axis, each between 1 and the axis' length; None (default): a
            grid of 8 cells per axis, ``ceil(length / 8)`` (28 pixels at 224).
          p_keep: the probability ``p`` that a cell is kept, in ``(0, 1]``.
          batch_size: the most masked inputs in one call (>= 1); memory holds
            about that many inputs and masks.
          seed: an ``int`` makes the masks reproducible (the same masks for
            every input and every ``batch_size``: with :meth:`GetMaskBatch`,
            every example gets the same masks, as in the authors' code); a
            ``np.random.Generator`` gives one draw (taken when the mask's
            computation starts; with :meth:`GetMaskBatch` one per example,
            in example order) that seeds the masks; None takes that draw
            from NumPy's global state (``np.random.seed`` reproduces it).
            Through :meth:`GetSmoothedMask` (whose own ``seed`` is the
            noise's) a seed given there seeds the masks too: each noisy
            sample's masks take their draw from the noise's generator.
          x_baseline: what the input shows where a mask is 0, ``x_value``'s
            shape; zeros if None (the paper's ``x * M``).
          spatial_axes: how many leading axes are spatial (1 to
            ``x_value.ndim``); None: 1 for a rank-1 input, 2 otherwise.

        Returns:
          The map, ``x_value``'s shape, the same value in every channel, in
          ``x_value``'s dtype (float32 for float16 or integers): position
          ``λ`` holds ``sum_i f(masked_i) M_i(λ) / (N p)``, an estimate of
          the expected score when ``λ`` is kept.

        Raises:
          TypeError, ValueError: bad arguments (``n_masks``, ``batch_size``,
            ``cell_size`` or ``spatial_axes`` not integers in range, ``p_keep``
            outside ``(0, 1]``, a seed of another type, a baseline of another
            shape); a missing, misshapen or non-finite answer, or more than
            one value per example.
        """
        batch_size = check_int("batch_size", batch_size)
        steps = self._mask_steps(x_value, n_masks, cell_size, p_keep, seed, x_baseline, spatial_axes)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(
        self,
        x_value: Any,
        n_masks: int,
        cell_size: int | Sequence[int] | None,
        p_keep: float,
        seed: int | np.random.Generator | None,
        x_baseline: Any,
        spatial_axes: int | None,
    ) -> Steps:
        x_value = as_float_array("x_value", x_value, min_ndim=1)
        x_baseline = baseline_like("x_baseline", x_baseline, x_value)
        n_masks = check_evaluation_count("n_masks", n_masks)
        p_keep = check_number("p_keep", p_keep, minimum=0.0, maximum=1.0, minimum_inclusive=False)
        spatial_shape = _spatial_shape(x_value.shape, spatial_axes)
        cells = _cells(cell_size, spatial_shape)
        maker = _MaskMaker(spatial_shape, cells, p_keep, _generator(seed))
        compute_dtype = np.result_type(x_value.dtype, np.float32)
        difference = x_value.astype(compute_dtype) - x_baseline.astype(compute_dtype)
        trailing = (None,) * (x_value.ndim - len(spatial_shape))
        pending: dict[int, np.ndarray] = {}
        saliency = np.zeros(spatial_shape, dtype=np.float64)

        def masked_inputs(start: int, stop: int) -> np.ndarray:
            masks = pending[start] = maker.masks(stop - start)
            masked = x_baseline + masks.astype(compute_dtype)[(...,) + trailing] * difference
            return masked.astype(x_value.dtype, copy=False)

        def add_scores(start: int, stop: int, output: dict[str, np.ndarray]) -> None:
            scores = scalar_outputs(output[OUTPUT_LAYER_VALUES]).astype(np.float64)
            # einsum, not tensordot: no BLAS threads left spinning into the next model call.
            saliency[...] += np.einsum("k,k...->...", scores, pending.pop(start))

        yield Request(n_masks, masked_inputs, self.expected_keys, add_scores)
        saliency /= n_masks * p_keep
        return np.broadcast_to(saliency[(...,) + trailing], x_value.shape).astype(compute_dtype)

    def n_model_inputs(self, x_shape: tuple[int, ...], *, n_masks: int = 2000, **other: Any) -> int:
        """One masked input per mask: ``n_masks``.

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``n_masks``.
        """
        return check_evaluation_count("n_masks", n_masks)


def _spatial_shape(x_shape: tuple[int, ...], spatial_axes: int | None) -> tuple[int, ...]:
    """The input's spatial shape: its first ``spatial_axes`` axes (1 for rank 1, else 2 by default).

    Raises:
      TypeError, ValueError: ``spatial_axes`` not an integer in ``[1, len(x_shape)]``.
    """
    if spatial_axes is None:
        n_spatial = 1 if len(x_shape) == 1 else IMAGE_SPATIAL_AXES
    else:
        n_spatial = check_int(
            "spatial_axes", spatial_axes, maximum=len(x_shape), limit_reason=f"x_value has shape {x_shape}"
        )
    return tuple(x_shape[:n_spatial])


def _cells(cell_size: int | Sequence[int] | None, spatial_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The cell's size per spatial axis, each in ``[1, length]``.

    Raises:
      TypeError, ValueError: not an int (or one per spatial axis), or out of range.
    """
    if cell_size is None:
        return tuple(math.ceil(length / DEFAULT_GRID_CELLS) for length in spatial_shape)
    cells = _ints_per_axis("cell_size", cell_size, len(spatial_shape))
    for axis, (cell, length) in enumerate(zip(cells, spatial_shape, strict=True)):
        if cell > length:
            raise ValueError(
                f"cell_size must be at most the input's length along each spatial axis {spatial_shape}, "
                f"got {cell} along axis {axis}"
            )
    return cells
