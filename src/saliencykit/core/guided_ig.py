"""Guided Integrated Gradients: an adaptive path that avoids high-gradient regions.

Kapishnikov et al. 2021, "Guided Integrated Gradients: an Adaptive Path Method
for Removing Noise" (arXiv 2106.09788).

At every step the ``fraction`` of features with the smallest absolute gradient
moves towards the input, never more than ``max_dist`` (a fraction of the path)
away from the straight line, until the L1 distance to the input has shrunk by
``1/steps`` of the total. The path is sequential (each step needs the gradient
at the point the previous step reached), so the method makes one model call per
step. The NumPy work between calls is a fixed number of in-place passes over
the features, and every value is computed by the same floating-point
operations as in a direct transcription of the algorithm (bit for bit: the
tests compare the two): features equal to the baseline are dropped once; the
quantile is the exact k-th smallest absolute gradient, found by
:func:`_kth_smallest` (a sample brackets it and only the few percent of values
in the bracket are partitioned: about 2.5 times cheaper than ``np.partition``
over all values); selections are 0/1 float masks used arithmetically (boolean
indexing, ``np.where`` and ``where=`` with irregular masks are several times
slower than a plain pass); every feature-sized array is a buffer allocated
once; and the attribution is updated once per step (the gradient is constant
within a step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    baseline_like,
    check_evaluation_count,
    check_number,
)

__all__ = ["GuidedIG", "guided_ig_path", "guided_ig_points"]

#: Tolerance when comparing the reached and the target L1 distance (as the reference).
EPSILON = 1e-9
#: Values sampled by :func:`_kth_smallest` to bracket the k-th smallest.
_SAMPLE_SIZE = 2048


def guided_ig_path(
    x_input: np.ndarray,
    x_baseline: np.ndarray,
    grad_func: Any,
    steps: int = 200,
    fraction: float = 0.25,
    max_dist: float = 0.02,
) -> np.ndarray:
    """Returns the Guided IG attribution of ``x_input`` (float64, its shape).

    Args:
      x_input: the explained input.
      x_baseline: the path's start, same shape.
      grad_func: ``grad_func(x)`` returns the gradient at ``x`` (same shape).
      steps: number of steps (model calls), >= 1.
      fraction: fraction in (0, 1] of the features moved in one iteration
        (the quantile is taken over all features, those equal to the baseline
        counting as unmovable; when fewer features than that can move, all
        that can are selected).
      max_dist: the most a feature may run ahead of or lag behind the straight
        line, as a fraction of the path, in [0, 1].
    """
    path = guided_ig_points(x_input, x_baseline, steps, fraction, max_dist)
    try:
        point = next(path)
        while True:
            point = path.send(grad_func(point))
    except StopIteration as stop:
        return stop.value


def _sample_positions(n: int) -> np.ndarray | None:
    """Sorted positions of :func:`_kth_smallest`'s sample in an array of ``n`` values (None: too few values).

    ``_SAMPLE_SIZE`` distinct positions drawn with a fixed seed: a random sample,
    so that no structure of the values (colour channels, rows) biases it, and the
    same sample every time, so that the work is deterministic.
    """
    if n <= 4 * _SAMPLE_SIZE:
        return None
    return np.sort(np.random.default_rng(0).choice(n, _SAMPLE_SIZE, replace=False))


def _kth_smallest(values: np.ndarray, k: int, sample_positions: np.ndarray | None) -> Any:
    """Returns ``np.partition(values, k)[k]`` (the same value), usually without partitioning ``values``.

    The idea of Floyd and Rivest's selection: the sorted sample
    ``values[sample_positions]`` brackets the k-th smallest value between two
    sample values ``low <= high`` with a margin of 3.5 standard deviations of
    the sample's rank; two comparisons count the values below ``low`` and
    gather those in ``[low, high]`` (about 6% of them), and the answer is the
    right order statistic of that band. When the counts show that the bracket
    missed (rarely), the whole array is partitioned. The result is exact in
    every case, ties included: the k-th smallest value is unique. About 2.5
    times faster than ``np.partition`` on the 150,528 gradients of a 224 x 224
    x 3 image.

    Args:
      values: a 1-D array without NaN.
      k: ``0 <= k < len(values)``.
      sample_positions: :func:`_sample_positions` of ``len(values)``.
    """
    if sample_positions is None:
        return np.partition(values, k)[k]
    n = len(values)
    sample = np.sort(values[sample_positions])
    m = len(sample)
    fraction = k / (n - 1)
    centre = round(fraction * (m - 1))
    margin = int(3.5 * math.sqrt(m * fraction * (1 - fraction))) + 4
    low, high = sample[max(centre - margin, 0)], sample[min(centre + margin, m - 1)]
    below = values < low
    n_below = int(np.count_nonzero(below))
    in_band = values <= high
    in_band ^= below  # low <= value <= high
    band = np.compress(in_band, values)
    if n_below <= k < n_below + len(band):
        return np.partition(band, k - n_below)[k - n_below]
    return np.partition(values, k)[k]


def guided_ig_points(
    x_input: np.ndarray,
    x_baseline: np.ndarray,
    steps: int = 200,
    fraction: float = 0.25,
    max_dist: float = 0.02,
) -> Generator[np.ndarray, Any, np.ndarray]:
    """:func:`guided_ig_path` as a generator: yields each point, receives the gradient there.

    ``gradient = yield point`` (``point`` of ``x_input``'s shape, float64, valid
    until the gradient is sent back); returns the attribution.
    """
    shape = x_input.shape
    x_input = x_input.astype(np.float64).ravel()
    x_baseline = x_baseline.astype(np.float64).ravel()
    attribution = np.zeros_like(x_input)
    diff_full = x_input - x_baseline
    l1_total = float(np.abs(diff_full).sum())
    if l1_total == 0:
        return attribution.reshape(shape)

    # Features where input == baseline never move and get zero attribution; in the
    # reference they sit at x_max from the start and count only in the quantile.
    moving = np.flatnonzero(diff_full)
    all_moving = len(moving) == len(x_input)
    diff = diff_full[moving]
    base, target = x_baseline[moving], x_input[moving]
    x_full = x_baseline.copy()
    attr = np.zeros_like(base)
    # The reference takes the quantile over every feature, the non-moving ones
    # sorting last (infinite gradient). When the quantile falls among those (fewer
    # moving features than the fraction asks for: sparse inputs), every moving
    # feature that can still move is selected.
    quantile_index = int(math.floor(fraction * (len(x_input) - 1)))
    quantile_among_moving = quantile_index < len(moving)
    # Buffers reused by every step (no feature-sized allocation in the loop). The
    # point alternates between two buffers: the step's start stays in the other.
    # Masks are 0/1 floats and selections arithmetic (x * (1 - m) + y * m, exact
    # for 0/1): boolean indexing, np.where and where= with irregular masks are
    # several times slower than a plain pass in NumPy.
    x, x_start = base.copy(), np.empty_like(base)
    x_max, gap, scratch = np.empty_like(base), np.empty_like(base), np.empty_like(base)
    behind, selected = np.empty_like(base), np.empty_like(base)
    excluded = np.empty(len(base), dtype=bool)
    abs_grad = keyed = np.empty(0)
    sample_positions = _sample_positions(len(base))

    for step in range(steps):
        if all_moving:
            x_full = x
        else:
            x_full[moving] = x
        grad = np.asarray((yield x_full.reshape(shape))).ravel()
        if not all_moving:
            grad = grad[moving]
        # Kept in the model's dtype: exact, and half the memory traffic for float32.
        if abs_grad.dtype != grad.dtype or abs_grad.shape != grad.shape:
            abs_grad, keyed = np.empty_like(grad), np.empty_like(grad)
        np.abs(grad, out=abs_grad)
        largest = np.finfo(abs_grad.dtype).max

        alpha = (step + 1.0) / steps
        alpha_min = max(alpha - max_dist, 0.0)
        alpha_max = min(alpha + max_dist, 1.0)
        np.multiply(diff, alpha_max, out=x_max)
        x_max += base  # base + diff * alpha_max
        l1_target = l1_total * (1 - (step + 1) / steps)
        x, x_start = x_start, x

        # Features that fell behind alpha_min jump to x_min = base + diff * alpha_min:
        # x = x_start * (1 - behind) + x_min * behind. Later iterations of this step
        # only move features towards x_max, so none falls behind again.
        np.subtract(x_start, base, out=scratch)
        scratch /= diff
        np.less(scratch, alpha_min, out=behind)
        np.subtract(1.0, behind, out=x)
        x *= x_start
        np.multiply(diff, alpha_min, out=scratch)
        scratch += base
        scratch *= behind
        x += scratch
        np.subtract(x, target, out=scratch)
        l1_current = float(np.abs(scratch, out=scratch).sum())
        # Features at x_max are out of the selection (the reference gives them an
        # infinite gradient so that they sort last in the quantile; `largest` here).
        np.equal(x, x_max, out=excluded)
        any_excluded = bool(excluded.any())

        while not math.isclose(l1_target, l1_current, rel_tol=EPSILON, abs_tol=EPSILON):
            candidates = abs_grad
            if any_excluded:
                np.copyto(keyed, abs_grad)
                np.copyto(keyed, largest, where=excluded)
                candidates = keyed
            threshold = largest
            if quantile_among_moving:
                threshold = _kth_smallest(candidates, quantile_index, sample_positions)
            if threshold < largest:
                np.less_equal(candidates, threshold, out=selected)
            else:  # the quantile falls on an excluded entry: take every candidate
                np.logical_not(excluded, out=selected)
            np.subtract(x_max, x, out=gap)  # x_max - x; |x - x_max| is its absolute value
            np.abs(gap, out=scratch)
            scratch *= selected
            gap_selected = float(scratch.sum())
            if gap_selected <= 0:
                break  # nothing left to move (the reference would loop forever)
            gamma = (l1_current - l1_target) / gap_selected
            if gamma > 1.0:
                # Moving the selection all the way is not enough: do it and repeat.
                np.subtract(1.0, selected, out=scratch)
                x *= scratch
                np.multiply(x_max, selected, out=scratch)
                x += scratch  # x * (1 - selected) + x_max * selected
                excluded |= selected.astype(bool)
                any_excluded = True
                l1_current -= gap_selected
            else:
                gap *= gamma
                gap *= selected
                x += gap  # x + (x_max - x) * gamma * selected
                break
        # The gradient is constant within a step, so one update covers all moves.
        np.subtract(x, x_start, out=scratch)
        scratch *= grad
        attr += scratch

    attribution[moving] = attr
    return attribution.reshape(shape)


def _fixed_inputs(batch: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``make_inputs`` for a request of the one batch ``batch``."""
    return lambda start, stop: batch


class GuidedIG(CoreSaliency):
    """Guided Integrated Gradients, framework independent.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS``. The path is
    sequential: :meth:`GetMask` makes one call per step;
    :meth:`~saliencykit.core.base.CoreSaliency.GetMaskBatch` sends step ``k``
    of up to ``batch_size`` examples in one call (``x_steps * ceil(N /
    batch_size)`` calls).
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]
    per_example_arguments = ("x_baseline",)

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        x_baseline: np.ndarray | None = None,
        x_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
    ) -> np.ndarray:
        """Returns the Guided IG attribution of ``x_value``.

        Args:
          x_value: the un-batched input, any shape; integers become floats.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to every call unchanged.
          x_baseline: the path's start, ``x_value``'s shape; zeros if ``None``.
          x_steps: number of steps, one model call each, between 1 and
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS`.
          fraction: fraction in (0, 1] of the features with the smallest
            absolute gradient moved in each iteration; 1 gives straight-line IG.
            Features equal to the baseline never move but count in the
            fraction, as in the reference; when fewer features can move than
            the fraction asks for (a sparse input), all that can are moved.
          max_dist: the most any feature may deviate from the straight line, as
            a fraction of the path, in [0, 1]; 0 gives straight-line IG (with
            the right-Riemann rule), 1 the unbounded method.

        Returns:
          The attribution (float64), ``x_value``'s shape.

        Raises:
          TypeError, ValueError: bad arguments, or a bad model answer (NaN or
            inf gradients are an error; the reference loops forever on them).

        FIX over the reference: it crashes on NumPy >= 2.4 (the removed
        ``np.quantile(interpolation=...)``) and never ends on NaN gradients.
        (Sparse inputs, where most features equal the baseline, give the
        reference's result.)
        """
        steps = self._mask_steps(x_value, x_baseline, x_steps, fraction, max_dist)
        return self._run_one(steps, x_value, call_model_function, call_model_args, 1)

    def _mask_steps(
        self, x_value: Any, x_baseline: Any, x_steps: int, fraction: float, max_dist: float
    ) -> Steps:
        x_value = as_float_array("x_value", x_value)
        x_baseline = baseline_like("x_baseline", x_baseline, x_value)
        x_steps = check_evaluation_count("x_steps", x_steps)
        fraction = check_number("fraction", fraction, minimum=0.0, maximum=1.0, minimum_inclusive=False)
        max_dist = check_number("max_dist", max_dist, minimum=0.0, maximum=1.0)
        input_dtype = x_value.dtype
        path = guided_ig_points(x_value, x_baseline, x_steps, fraction, max_dist)
        try:
            point = next(path)
            while True:
                # A copy: the path's buffers are overwritten by the next steps, the
                # model's inputs never are.
                answer = yield Request(1, _fixed_inputs(point[None].astype(input_dtype)), self.expected_keys)
                point = path.send(answer[INPUT_OUTPUT_GRADIENTS][0])
        except StopIteration as stop:
            return stop.value

    def n_model_inputs(self, x_shape: tuple[int, ...], *, x_steps: int = 200, **other: Any) -> int:
        """One model input per step: ``x_steps``.

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``x_steps``.
        """
        return check_evaluation_count("x_steps", x_steps)
