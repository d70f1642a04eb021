"""Tests of RISE: analytic answers, the published algorithm step by step, calls and seeds.

No library we can install implements RISE, so the oracles are analytic (a
model that reads one pixel gives a map peaking at that pixel; a constant model
gives that constant everywhere) and the authors' algorithm written out here
one mask at a time (grid, ``skimage.transform.resize`` with ``order=1,
mode="reflect", anti_aliasing=False``, random crop, weighted sum), fed the
same random draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.transform import resize

from saliencykit.core.base import OUTPUT_LAYER_VALUES
from saliencykit.core.rise import RISE

from .models import LinearModel, RecordingModel, never_called


class PixelModel(RecordingModel):
    """f(x) = x[position] (summed over channels): a model that reads one pixel."""

    def __init__(self, position):
        super().__init__()
        self.position = position

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        x_batch = self.record(x_value_batch, call_model_args, expected_keys)
        value = x_batch[(slice(None), *self.position)]
        return {OUTPUT_LAYER_VALUES: value.reshape(len(x_batch), -1).sum(axis=1)}


class TanhModel(RecordingModel):
    """A nonlinear score: tanh(sum(w x) / 50)."""

    def __init__(self, shape, seed=0):
        super().__init__()
        self.weights = np.random.default_rng(seed).normal(size=shape)

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        x_batch = self.record(x_value_batch, call_model_args, expected_keys).astype(np.float64)
        axes = tuple(range(1, x_batch.ndim))
        return {OUTPUT_LAYER_VALUES: np.tanh((x_batch * self.weights).sum(axis=axes) / 50)}


def published_rise(model, x_value, n_masks, cells, p_keep, seed):
    """Petsiuk et al.'s algorithm for an image, one mask at a time, from RISE's documented draws."""
    height, width = x_value.shape[:2]
    grid = (math.ceil(height / cells[0]), math.ceil(width / cells[1]))
    draws = np.random.default_rng(seed).random((n_masks, grid[0] * grid[1] + 2))
    saliency = np.zeros((height, width))
    for row in draws:
        cell_grid = (row[: grid[0] * grid[1]] < p_keep).reshape(grid).astype(np.float64)
        up_size = ((grid[0] + 1) * cells[0], (grid[1] + 1) * cells[1])
        enlarged = resize(cell_grid, up_size, order=1, mode="reflect", anti_aliasing=False)
        shift = int(row[-2] * cells[0]), int(row[-1] * cells[1])
        mask = enlarged[shift[0] : shift[0] + height, shift[1] : shift[1] + width]
        score = model((x_value * mask[..., None])[None])[OUTPUT_LAYER_VALUES][0]
        saliency += score * mask
    return saliency / (n_masks * p_keep)


def image(seed=0, shape=(37, 29, 3)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------------------
# Analytic answers and the published algorithm.
# --------------------------------------------------------------------------


def test_a_model_that_reads_one_pixel_gives_a_map_peaking_at_that_pixel():
    position = (20, 11)
    x_value = np.ones((32, 32, 1), dtype=np.float32)
    saliency = RISE().GetMask(
        x_value, PixelModel(position), n_masks=1000, cell_size=8, seed=0, batch_size=250
    )
    peak = np.unravel_index(np.argmax(saliency[..., 0]), (32, 32))
    assert peak == position
    # S(l) = sum_i M_i(pixel) M_i(l) / (N p): E[M(pixel)^2] / p at the pixel, E[M]^2 / p = p far from
    # it (independent cells), and in between over about a cell.
    far = saliency[position[0], (position[1] + 16) % 32, 0]
    assert abs(far - 0.5) < 0.05
    assert saliency[position][0] > 1.3 * far
    assert saliency[position][0] > 1.2 * np.percentile(saliency, 50)


def test_a_constant_model_gives_the_constant_everywhere():
    # sum_i c M_i / (N p) -> c, since E[M] = p at every position.
    x_value = image(1)
    model = LinearModel(np.zeros(x_value.shape), offset=3.0)
    saliency = RISE().GetMask(x_value, model, n_masks=2000, p_keep=0.3, seed=1, batch_size=500)
    assert abs(float(saliency.mean()) - 3.0) < 0.1
    assert np.abs(saliency - 3.0).max() < 0.6


@pytest.mark.parametrize("cells, p_keep", [((6, 5), 0.4), ((37, 1), 0.5), ((1, 29), 0.9)])
def test_matches_the_published_algorithm_step_by_step(cells, p_keep):
    x_value = image(2)
    model = TanhModel(x_value.shape)
    ours = RISE().GetMask(x_value, model, n_masks=40, cell_size=cells, p_keep=p_keep, seed=7, batch_size=16)
    expected = published_rise(model, x_value, 40, cells, p_keep, seed=7)
    assert ours.shape == x_value.shape and ours.dtype == np.float32
    for channel in range(3):
        np.testing.assert_allclose(
            ours[..., channel], expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max()
        )


def test_baseline_sequence_and_volume():
    sequence = np.arange(1.0, 13.0)
    baseline = np.full(12, 0.5)
    # A linear model: f(b + M (x - b)) = sum w (b + M (x - b)); only its mean matters here.
    model = LinearModel(np.ones(12))
    ours = RISE().GetMask(sequence, model, n_masks=200, cell_size=3, seed=3, x_baseline=baseline)
    assert ours.shape == (12,) and np.isfinite(ours).all()
    masks_sent = (np.concatenate(model.batches) - baseline) / (sequence - baseline)
    assert masks_sent.min() >= -1e-12 and masks_sent.max() <= 1 + 1e-12
    volume = image(4, (6, 8, 10, 2))
    ours_3d = RISE().GetMask(
        volume, TanhModel(volume.shape), n_masks=20, cell_size=(2, 3, 4), spatial_axes=3, seed=0
    )
    assert ours_3d.shape == volume.shape
    np.testing.assert_array_equal(ours_3d[..., 0], ours_3d[..., 1])


# --------------------------------------------------------------------------
# Calls, batches, seeds.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_masks, batch_size", [(10, 4), (10, 10), (7, 32), (5, 1)])
def test_calls_and_counts(n_masks, batch_size):
    x_value = image(5)
    model = TanhModel(x_value.shape)
    RISE().GetMask(x_value, model, "args", n_masks=n_masks, batch_size=batch_size, seed=0)
    assert model.num_calls == math.ceil(n_masks / batch_size)
    assert sum(model.batch_sizes) == n_masks and max(model.batch_sizes) <= batch_size
    assert model.expected_keys == [[OUTPUT_LAYER_VALUES]] * model.num_calls
    assert model.call_model_args == ["args"] * model.num_calls
    assert RISE().n_model_inputs(x_value.shape, n_masks=n_masks, batch_size=batch_size) == n_masks
    assert RISE().n_model_inputs(x_value.shape) == 2000


def test_the_masks_do_not_depend_on_batch_size():
    x_value = image(6)
    model = TanhModel(x_value.shape)
    maps = [RISE().GetMask(x_value, model, n_masks=30, seed=11, batch_size=size) for size in (1, 7, 30, 64)]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], rtol=1e-6)


def test_get_mask_batch_equals_get_mask_per_example_and_shares_calls():
    images = np.stack([image(seed) for seed in range(3)])
    model = TanhModel(images.shape[1:])
    batch = RISE().GetMaskBatch(images, model, n_masks=10, seed=5, batch_size=8)
    assert model.num_calls == math.ceil(3 * 10 / 8) and max(model.batch_sizes) <= 8
    singles = np.stack([RISE().GetMask(x, model, n_masks=10, seed=5) for x in images])
    np.testing.assert_allclose(batch, singles, rtol=1e-6)


def test_seeds():
    x_value = image(7)
    model = TanhModel(x_value.shape)

    def run(seed):
        return RISE().GetMask(x_value, model, n_masks=8, seed=seed)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    np.testing.assert_array_equal(run(np.random.default_rng(9)), run(np.random.default_rng(9)))
    np.random.seed(12)
    first = run(None)
    np.random.seed(12)
    np.testing.assert_array_equal(run(None), first)
    smoothed = RISE().GetSmoothedMask(x_value, model, nsamples=2, seed=0, n_masks=4)
    assert smoothed.shape == x_value.shape
    np.random.seed(13)  # the smoothing seed fixes the masks too, whatever the global state
    np.testing.assert_array_equal(
        RISE().GetSmoothedMask(x_value, model, nsamples=2, seed=0, n_masks=4), smoothed
    )


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_masks": 0}, ValueError, "n_masks must be an integer >= 1, got 0"),
        ({"n_masks": 10.0}, TypeError, "n_masks must be an integer, got float"),
        ({"p_keep": 0.0}, ValueError, r"p_keep must be > 0.0, got 0.0"),
        ({"p_keep": 1.5}, ValueError, r"p_keep must be <= 1.0, got 1.5"),
        ({"cell_size": 0}, ValueError, "cell_size must be an integer >= 1, got 0"),
        ({"cell_size": (4, 4, 4)}, ValueError, r"cell_size must be an integer or a pair of integers"),
        ({"cell_size": 30}, ValueError, r"cell_size must be at most .* \(37, 29\), got 30 along axis 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        ({"seed": "1"}, TypeError, "seed must be None, an int or a numpy Generator, got str"),
        ({"spatial_axes": 4}, ValueError, r"spatial_axes must be an integer <= 3 \(x_value has shape"),
        ({"x_baseline": np.zeros(3)}, ValueError, r"x_baseline must have the shape of x_value \(37, 29, 3\)"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(kwargs, error, match):
    with pytest.raises(error, match=match):
        RISE().GetMask(image(), never_called, **kwargs)


def test_an_answer_with_several_values_per_example():
    def model(x_batch, call_model_args=None, expected_keys=None):
        return {OUTPUT_LAYER_VALUES: np.ones((len(x_batch), 2))}

    with pytest.raises(ValueError, match="OUTPUT_LAYER_VALUES"):
        RISE().GetMask(image(), model, n_masks=3, seed=0)
