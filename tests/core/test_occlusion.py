"""Tests of saliencykit.core.occlusion, with PAIR's saliency 0.2.1 as an oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from saliency.core import occlusion as reference_occlusion

from saliencykit.core.base import OUTPUT_LAYER_VALUES, SHAPE_ERROR_MESSAGE
from saliencykit.core.occlusion import Occlusion, sum_over_windows, window_origins

from .models import ConstantOutputModel, LinearModel, never_called


def nonlinear_model(weights):
    """A smooth non-linear score, one per example, shape [batch, 1]."""

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        flat = (x_value_batch * weights).reshape(len(x_value_batch), -1)
        return {
            OUTPUT_LAYER_VALUES: np.tanh(flat.sum(axis=1, keepdims=True)) + flat.max(axis=1, keepdims=True)
        }

    return call_model_function


def brute_force_occlusion(image, model, size, value, stride):
    """The documented semantics with plain loops: starts 0, stride, ... plus one flush with the far edge."""
    window_rows, window_cols = size
    stride_rows, stride_cols = stride

    def starts(length, window, step):
        result = list(range(0, length - window + 1, step))
        if result[-1] != length - window:
            result.append(length - window)
        return result

    def score(x):
        return float(np.asarray(model(x[None])[OUTPUT_LAYER_VALUES]).reshape(-1)[0])

    original = score(image)
    result = np.zeros(image.shape, dtype=np.float64)
    for top in starts(image.shape[0], window_rows, stride_rows):
        for left in starts(image.shape[1], window_cols, stride_cols):
            occluded = image.copy()
            occluded[top : top + window_rows, left : left + window_cols] = value
            result[top : top + window_rows, left : left + window_cols] += original - score(occluded)
    return result


def test_reference_example():
    image = np.zeros([5, 5])
    image[1, 1] = 1
    image[3, 3] = 1
    expected = np.array(
        [
            [3.0, 6.0, 6.0, 3.0, 0.0],
            [6.0, 15.0, 18.0, 12.0, 3.0],
            [6.0, 18.0, 24.0, 18.0, 6.0],
            [3.0, 12.0, 18.0, 15.0, 6.0],
            [0.0, 3.0, 6.0, 6.0, 3.0],
        ]
    )
    model = LinearModel(np.full((5, 5), 3.0))
    np.testing.assert_array_equal(Occlusion().GetMask(image, model, size=3), expected)
    np.testing.assert_array_equal(Occlusion().GetMask(image, model, size=3, batch_size=4), expected)


@pytest.mark.parametrize("value", [0.0, 2.0, -1.5])
def test_linear_model_gives_exact_window_sums(value):
    # For f(x) = sum(w x) hiding a window drops f by sum_window(w (x - value)); with
    # small integers every sum is exact in floating point.
    rng = np.random.default_rng(3)
    image = rng.integers(-3, 4, size=(9, 8, 2)).astype(np.float64)
    weights = rng.integers(-2, 3, size=image.shape).astype(np.float64)
    drop_per_pixel = (weights * (image - value)).sum(axis=-1)
    size = 4
    expected = np.zeros((9, 8))
    for top in range(9 - size + 1):
        for left in range(8 - size + 1):
            window = (slice(top, top + size), slice(left, left + size))
            expected[window] += drop_per_pixel[window].sum()
    mask = Occlusion().GetMask(image, LinearModel(weights), size=size, value=value, batch_size=6)
    assert mask.shape == image.shape
    np.testing.assert_array_equal(mask[..., 0], expected)
    np.testing.assert_array_equal(mask[..., 1], expected)


@pytest.mark.parametrize(
    "shape, size, dtype",
    [
        ((12, 11, 3), 4, np.float32),
        ((10, 9), 3, np.float64),
        ((7, 7, 1), 7, np.float64),
        ((6, 8, 2), 1, np.float32),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_parity_with_reference(shape, size, dtype, batch_size):
    rng = np.random.default_rng(len(shape) * 100 + size)
    image = rng.normal(size=shape).astype(dtype)
    model = nonlinear_model(rng.normal(size=shape).astype(dtype))
    ours = Occlusion().GetMask(image, model, size=size, value=0.5, batch_size=batch_size)
    theirs = reference_occlusion.Occlusion().GetMask(image, model, size=size, value=0.5)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * np.abs(theirs).max())


@pytest.mark.parametrize("batch_size, call_sizes", [(1, [1] * 10), (4, [4, 4, 2]), (10, [10]), (64, [10])])
def test_call_counts_under_batching(batch_size, call_sizes):
    model = LinearModel(np.ones((5, 5)))
    image = np.arange(25.0).reshape(5, 5) + 1.0
    Occlusion().GetMask(image, model, {"foo": "bar"}, size=3, batch_size=batch_size)
    assert model.batch_sizes == call_sizes
    assert model.call_model_args == [{"foo": "bar"}] * len(call_sizes)
    assert model.expected_keys == [[OUTPUT_LAYER_VALUES]] * len(call_sizes)
    examples = np.concatenate(model.batches)
    np.testing.assert_array_equal(examples[0], image)  # the unoccluded input comes first
    assert all(np.count_nonzero(example == 0) == 9 for example in examples[1:])
    assert len({example.tobytes() for example in examples}) == 10


@pytest.mark.parametrize(
    "shape, size, stride",
    [
        ((11, 13, 2), (3, 5), 1),
        ((11, 13, 2), 3, 2),
        ((11, 13), (4, 2), (3, 2)),
        ((12, 12, 3), 4, 4),  # windows tile the image exactly
        ((10, 9, 1), (2, 3), (4, 5)),  # stride > size: gaps with no score
        ((9, 9), 9, 3),  # a single window
    ],
)
def test_stride_and_rectangular_windows_match_brute_force(shape, size, stride):
    rng = np.random.default_rng(5)
    image = rng.normal(size=shape)
    model = nonlinear_model(rng.normal(size=shape))
    pairs = [(v, v) if isinstance(v, int) else v for v in (size, stride)]
    expected = brute_force_occlusion(image, model, pairs[0], -0.25, pairs[1])
    mask = Occlusion().GetMask(image, model, size=size, value=-0.25, stride=stride, batch_size=7)
    np.testing.assert_allclose(mask, expected, rtol=1e-12, atol=1e-12)


def test_stride_call_count_and_edge_windows():
    model = LinearModel(np.ones((10, 10)))
    Occlusion().GetMask(np.ones((10, 10)), model, size=3, stride=4, batch_size=100)
    # Starts 0, 4 and the edge window at 7 along each axis: 9 windows + the input.
    assert model.batch_sizes == [10]


def test_window_origins():
    np.testing.assert_array_equal(window_origins(10, 3, 1), np.arange(8))
    np.testing.assert_array_equal(window_origins(10, 3, 4), [0, 4, 7])
    np.testing.assert_array_equal(window_origins(11, 3, 4), [0, 4, 8])
    np.testing.assert_array_equal(window_origins(5, 5, 2), [0])


def test_sum_over_windows_on_both_axes():
    starts = np.zeros((5, 6))
    starts[1, 2] = 1.0
    starts[3, 0] = 10.0
    total = sum_over_windows(sum_over_windows(starts, 2, axis=0), 3, axis=1)
    expected = np.zeros((5, 6))
    expected[1:3, 2:5] += 1.0
    expected[3:5, 0:3] += 10.0
    np.testing.assert_array_equal(total, expected)


def test_extra_trailing_axes_and_integer_input():
    image = np.arange(6 * 5 * 2 * 2, dtype=np.uint8).reshape(6, 5, 2, 2)
    weights = np.linspace(0.0, 1.0, image.size).reshape(image.shape)
    mask = Occlusion().GetMask(image, LinearModel(weights), size=2, batch_size=8)
    assert mask.shape == image.shape and mask.dtype.kind == "f"
    expected = brute_force_occlusion(image.astype(np.float64), LinearModel(weights), (2, 2), 0.0, (1, 1))
    np.testing.assert_allclose(mask, expected, rtol=1e-5)
    assert np.all(mask == mask[:, :, :1, :1])


def test_output_of_shape_batch_by_one_is_accepted():
    image = np.ones((4, 4))

    def model(x, call_model_args=None, expected_keys=None):
        return {OUTPUT_LAYER_VALUES: x.sum(axis=(1, 2))[:, None]}

    np.testing.assert_array_equal(
        Occlusion().GetMask(image, model, size=2, batch_size=3),
        Occlusion().GetMask(image, LinearModel(np.ones((4, 4))), size=2),
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"size": 6}, ValueError, "size must fit inside the image"),
        ({"size": (2, 6)}, ValueError, "size must fit inside the image"),
        ({"size": 0}, ValueError, "size must be an integer >= 1"),
        ({"size": (3, 0)}, ValueError, r"size\[1\] must be an integer >= 1"),
        ({"size": (1, 2, 3)}, ValueError, "size must be an integer or a pair"),
        ({"size": 2.5}, TypeError, "size must be an integer or a pair"),
        ({"size": True}, TypeError, "size must be an integer"),
        ({"stride": 0}, ValueError, "stride must be an integer >= 1"),
        ({"stride": (1, -2)}, ValueError, r"stride\[1\] must be an integer >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"value": float("nan")}, ValueError, "value must be finite"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        Occlusion().GetMask(np.ones((5, 5, 3)), LinearModel(np.ones((5, 5, 3))), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        Occlusion().GetMask(np.float64(5.0), LinearModel(1.0), size=1)
    with pytest.raises(ValueError, match="finite"):
        Occlusion().GetMask(np.full((5, 5), np.nan), LinearModel(np.ones((5, 5))), size=2)


def test_nan_from_the_model():
    def model(x, call_model_args=None, expected_keys=None):
        scores = x.reshape(len(x), -1).sum(axis=1)
        scores[-1] = np.nan
        return {OUTPUT_LAYER_VALUES: scores}

    with pytest.raises(ValueError, match="non-finite"):
        Occlusion().GetMask(np.ones((5, 5)), model, size=3, batch_size=4)


def test_several_values_per_example_is_a_clear_error():
    def model(x, call_model_args=None, expected_keys=None):
        return {OUTPUT_LAYER_VALUES: np.ones((len(x), 3))}

    with pytest.raises(ValueError, match="one scalar per example"):
        Occlusion().GetMask(np.ones((5, 5, 3)), model, size=3)


def test_wrong_batch_dimension_is_the_reference_error():
    model = ConstantOutputModel({OUTPUT_LAYER_VALUES: np.ones(5)})
    expected = SHAPE_ERROR_MESSAGE[OUTPUT_LAYER_VALUES].format("1", "5")
    with pytest.raises(ValueError, match=expected):
        Occlusion().GetMask(np.zeros((5, 5)), model, size=3)

    def one_value_per_call(x, call_model_args=None, expected_keys=None):
        return {OUTPUT_LAYER_VALUES: [float(np.sum(x))]}

    with pytest.raises(ValueError, match=SHAPE_ERROR_MESSAGE[OUTPUT_LAYER_VALUES].format("4", "1")):
        Occlusion().GetMask(np.zeros((5, 5)), one_value_per_call, size=3, batch_size=4)


def test_missing_key():
    with pytest.raises(ValueError, match="did not return the expected key"):
        Occlusion().GetMask(np.zeros((5, 5)), ConstantOutputModel({}), size=3)


def test_memory_is_bounded_by_batch_size():
    # A large image, few windows: every call holds at most batch_size copies.
    image = np.ones((64, 64, 3), dtype=np.float32)
    model = LinearModel(np.ones_like(image))
    Occlusion().GetMask(image, model, size=16, stride=16, batch_size=3)
    assert max(model.batch_sizes) == 3
    assert model.num_calls == math.ceil((16 + 1) / 3)


# --------------------------------------------------------------------------
# Sequences, per-feature values, huge parameters (issue 11, items 13 and 14).
# --------------------------------------------------------------------------


def brute_force_sequence_occlusion(sequence, model, size, value, stride=1):
    """Occlusion along axis 0 only, with plain loops; ``value`` broadcast like NumPy does."""
    fill = np.broadcast_to(value, sequence.shape)

    def score(x):
        return float(np.asarray(model(x[None])[OUTPUT_LAYER_VALUES]).reshape(-1)[0])

    starts = list(range(0, len(sequence) - size + 1, stride))
    if starts[-1] != len(sequence) - size:
        starts.append(len(sequence) - size)
    original = score(sequence)
    result = np.zeros(sequence.shape)
    for start in starts:
        occluded = sequence.copy()
        occluded[start : start + size] = fill[start : start + size]
        result[start : start + size] += original - score(occluded)
    return result


@pytest.mark.parametrize("stride", [1, 3])
def test_sequence_slides_along_its_one_axis(stride):
    # size=10 on [L] is a window of 10 steps (the old code refused rank 1).
    rng = np.random.default_rng(21)
    sequence = rng.normal(size=40)
    model = nonlinear_model(rng.normal(size=40))
    mask = Occlusion().GetMask(sequence, model, size=10, value=0.5, stride=stride, batch_size=8)
    expected = brute_force_sequence_occlusion(sequence, model, 10, 0.5, stride)
    assert mask.shape == (40,)
    np.testing.assert_allclose(mask, expected, rtol=1e-12, atol=1e-12)
    # One call on the input plus one per window: 31 windows at stride 1.
    linear = LinearModel(np.ones(40))
    Occlusion().GetMask(sequence, linear, size=10, batch_size=1000)
    assert linear.batch_sizes[0] == 1 + 31


@pytest.mark.parametrize(
    "value",
    [0.0, np.array([1.0, -2.0, 0.5]), np.linspace(-1, 1, 25 * 3).reshape(25, 3), np.arange(25.0)[:, None]],
    ids=["number", "per-feature [C]", "full [L, C]", "per-position [L, 1]"],
)
def test_sequence_of_feature_vectors_with_per_feature_values(value):
    # [L, C] is an image unless spatial_axes=1 says it is a sequence of C features.
    rng = np.random.default_rng(22)
    sequence = rng.normal(size=(25, 3))
    model = nonlinear_model(rng.normal(size=(25, 3)))
    mask = Occlusion().GetMask(sequence, model, size=4, value=value, spatial_axes=1, batch_size=5)
    expected = brute_force_sequence_occlusion(sequence, model, 4, value)
    np.testing.assert_allclose(mask, expected, rtol=1e-12, atol=1e-12)
    assert np.all(mask == mask[:, :1])
    # The default for rank 2 stays the reference's [H, W] image.
    image_mask = Occlusion().GetMask(sequence, model, size=3)
    reference = reference_occlusion.Occlusion().GetMask(sequence, model, size=3)
    np.testing.assert_allclose(image_mask, reference, rtol=1e-12, atol=1e-12)


def test_image_with_one_value_per_channel_and_a_replacement_image():
    rng = np.random.default_rng(23)
    image = rng.normal(size=(7, 6, 3))
    model = nonlinear_model(rng.normal(size=(7, 6, 3)))
    per_channel = np.array([0.1, -0.2, 0.3])
    mask = Occlusion().GetMask(image, model, size=(3, 2), value=per_channel, stride=2, batch_size=4)

    def score(x):
        return float(np.asarray(model(x[None])[OUTPUT_LAYER_VALUES]).reshape(-1)[0])

    expected = np.zeros((7, 6))
    for top in (0, 2, 4):
        for left in (0, 2, 4):
            occluded = image.copy()
            occluded[top : top + 3, left : left + 2] = per_channel
            expected[top : top + 3, left : left + 2] += score(image) - score(occluded)
    np.testing.assert_allclose(mask, np.repeat(expected[..., None], 3, axis=2), rtol=1e-12, atol=1e-12)
    # A value of the image's shape shows that image inside the window: the image itself changes nothing.
    assert not Occlusion().GetMask(image, model, size=3, value=image).any()


def test_volume_with_three_spatial_axes():
    rng = np.random.default_rng(24)
    volume = rng.integers(-3, 4, size=(4, 5, 3, 2)).astype(np.float64)
    weights = rng.integers(-2, 3, size=volume.shape).astype(np.float64)
    mask = Occlusion().GetMask(volume, LinearModel(weights), size=2, spatial_axes=3, batch_size=50)
    drop = (weights * volume).sum(axis=-1)  # f(x) - f(x with a window zeroed) = sum of w x over it
    expected = np.zeros((4, 5, 3))
    for d in range(3):
        for h in range(4):
            for w in range(2):
                window = (slice(d, d + 2), slice(h, h + 2), slice(w, w + 2))
                expected[window] += drop[window].sum()
    np.testing.assert_array_equal(mask[..., 0], expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 3, "stride": 2**63}, r"stride must be at most the image's length .*\(5, 5\)"),
        ({"size": 3, "stride": (1, 6)}, r"stride must be at most the image's length"),
        ({"size": (2, 2, 2)}, r"size must be an integer or a pair"),
        ({"spatial_axes": 4}, r"spatial_axes must be an integer <= 3 \(x_value has shape \(5, 5, 3\)\)"),
        ({"spatial_axes": 0}, r"spatial_axes must be an integer >= 1"),
        ({"value": np.zeros(4)}, r"value must be a number or an array that broadcasts to .*\(5, 5, 3\)"),
        ({"value": np.array([0.0, np.inf, 1.0])}, r"value must be finite"),
    ],
)
def test_bad_arguments_for_sequences_and_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Occlusion().GetMask(np.ones((5, 5, 3)), never_called, **kwargs)


def test_sequence_window_larger_than_the_sequence():
    with pytest.raises(ValueError, match=r"size must fit inside the sequence: window 10 .*\(8,\)"):
        Occlusion().GetMask(np.ones(8), never_called, size=10)


def test_too_many_windows_are_refused_before_any_call():
    # 3200 x 3200 windows of one pixel: more than 10**7 model evaluations.
    image = np.broadcast_to(np.float32(0.5), (3200, 3200))
    with pytest.raises(ValueError, match=r"number of windows \+ 1 .* must be an integer <= 10000000"):
        Occlusion().GetMask(image, never_called, size=1)


def test_float16_input_gives_a_finite_float32_map():
    image = np.full((4, 4), 100.0, dtype=np.float16)
    mask = Occlusion().GetMask(image, LinearModel(np.full((4, 4), 100.0)), size=3)
    assert mask.dtype == np.float32
    assert np.isfinite(mask).all() and mask.max() == 4 * 9 * 100.0 * 100.0  # 360000 > float16's 65504
    with pytest.raises(ValueError, match=r"value must be representable in x_value's dtype float16"):
        Occlusion().GetMask(image, never_called, size=3, value=1e6)
