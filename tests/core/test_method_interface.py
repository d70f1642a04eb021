"""What every method tells its callers: ``expected_keys`` and ``n_model_inputs``.

Also the batching helper that carries a method's per-batch data
(``call_model_in_batches_with_extra``), the CAM hooks of ``BaseCam`` and the
names of the ``saliencykit.core.xrai`` package.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

import saliencykit.core as sk
from saliencykit.core import xrai as xrai_package
from saliencykit.core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CoreSaliency,
    call_model_in_batches,
    call_model_in_batches_with_extra,
)
from saliencykit.core.grad_cam import BaseCam, channel_weighted_activation_map

SHAPE = (8, 6, 3)


class EveryKeyModel:
    """Answers every key for ``[B, H, W, C]`` batches; records the inputs and keys of every call.

    f(x) = sum(w * x); the "layer" is the input itself, its gradient ``w``.
    """

    def __init__(self) -> None:
        self.weights = np.linspace(-1.0, 1.0, int(np.prod(SHAPE))).reshape(SHAPE)
        self.batch_sizes: list[int] = []
        self.keys: list[list[str]] = []

    def __call__(self, x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        batch = np.asarray(x_value_batch, dtype=np.float64)
        self.batch_sizes.append(len(batch))
        self.keys.append(list(expected_keys or []))
        gradients = np.broadcast_to(self.weights, batch.shape).copy()
        return {
            INPUT_OUTPUT_GRADIENTS: gradients,
            GUIDED_INPUT_OUTPUT_GRADIENTS: np.maximum(gradients, 0.0),
            OUTPUT_LAYER_VALUES: (batch * self.weights).reshape(len(batch), -1).sum(axis=1),
            CONVOLUTION_LAYER_VALUES: np.abs(batch),
            CONVOLUTION_OUTPUT_GRADIENTS: gradients,
        }


def _image() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.0, 1.0, SHAPE)


def _square_segments() -> list[np.ndarray]:
    masks = []
    for top in (0, 4):
        for left in (0, 3):
            mask = np.zeros(SHAPE[:2], dtype=bool)
            mask[top : top + 4, left : left + 3] = True
            masks.append(mask)
    return masks


# (method, GetMask parameters), the parameters also given to n_model_inputs.
CASES = [
    (sk.GradientSaliency, {}),
    (sk.GuidedBackprop, {"batch_size": 3}),
    (sk.IntegratedGradients, {}),
    (sk.IntegratedGradients, {"x_steps": 7, "batch_size": 3, "integration_rule": "riemann_trapezoid"}),
    (sk.BlurIG, {"steps": 5, "max_sigma": 4.0, "batch_size": 2}),
    (sk.GuidedIG, {"x_steps": 6}),
    (sk.XRAI, {"segments": _square_segments(), "batch_size": 4}),
    (
        sk.XRAI,
        {
            "segments": _square_segments(),
            "baselines": [np.zeros(SHAPE)] * 3,
            "extra_parameters": sk.XRAIParameters(steps=3),
        },
    ),
    (sk.XRAI, {"base_attribution": np.ones(SHAPE), "segments": _square_segments()}),
    (sk.GradCam, {"should_resize": False}),
    (sk.GuidedGradCam, {}),
    (sk.Occlusion, {"size": 3, "stride": 2, "batch_size": 5}),
    (sk.Occlusion, {"size": (2, 6), "spatial_axes": 2}),
    (sk.GradCamPlusPlus, {}),
    (sk.LayerCam, {}),
    (sk.HiResCam, {}),
    (sk.ScoreCam, {"top_k": 2, "batch_size": 1}),
    (sk.RISE, {"n_masks": 7, "batch_size": 3, "seed": 0}),
]


@pytest.mark.parametrize(("method", "parameters"), CASES, ids=lambda case: getattr(case, "__name__", ""))
def test_n_model_inputs_counts_the_inputs_get_mask_sends(
    method: type[CoreSaliency], parameters: dict
) -> None:
    model = EveryKeyModel()
    method().GetMask(_image(), model, **parameters)
    assert method().n_model_inputs(SHAPE, **parameters) == sum(model.batch_sizes)


@pytest.mark.parametrize(("method", "parameters"), CASES[:7], ids=lambda case: getattr(case, "__name__", ""))
def test_n_smoothed_model_inputs_counts_the_inputs_of_get_smoothed_mask(
    method: type[CoreSaliency], parameters: dict
) -> None:
    model = EveryKeyModel()
    method().GetSmoothedMask(_image(), model, nsamples=3, seed=0, **parameters)
    counted = method().n_smoothed_model_inputs(SHAPE, nsamples=3, seed=0, **parameters)
    assert counted == sum(model.batch_sizes)


@pytest.mark.parametrize(("method", "parameters"), CASES, ids=lambda case: getattr(case, "__name__", ""))
def test_every_call_asks_for_the_expected_keys(method: type[CoreSaliency], parameters: dict) -> None:
    model = EveryKeyModel()
    method().GetMask(_image(), model, **parameters)
    if method is sk.ScoreCam:  # the layer once, then forward passes only: each call asks for a part
        assert all(set(keys) < set(method.expected_keys) for keys in model.keys)
    else:
        assert all(keys == list(method.expected_keys) for keys in model.keys)


def test_guided_grad_cam_is_one_model_input_for_both_of_its_answers() -> None:
    """One call answers the guided gradients and the layer (the command line counted two)."""
    model = EveryKeyModel()
    sk.GuidedGradCam().GetMask(_image(), model)
    assert model.batch_sizes == [1] and sk.GuidedGradCam().n_model_inputs(SHAPE) == 1
    assert set(sk.GuidedGradCam.expected_keys) == set(sk.GradCam.expected_keys) | set(
        sk.GuidedBackprop.expected_keys
    )


@pytest.mark.parametrize(
    ("method", "parameters", "error", "message"),
    [
        (sk.IntegratedGradients, {"x_steps": 0}, ValueError, "x_steps must be an integer >= 1"),
        (sk.IntegratedGradients, {"integration_rule": "simpson"}, ValueError, "integration_rule"),
        (sk.BlurIG, {"steps": 2.5}, TypeError, "steps must be an integer"),
        (sk.GuidedIG, {"x_steps": 10**8}, ValueError, "x_steps must be an integer <= "),
        (sk.GradientSaliency, {"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        (sk.XRAI, {"extra_parameters": sk.XRAIParameters(steps=0)}, ValueError, "steps"),
        (sk.Occlusion, {"size": 9}, ValueError, "size must fit inside the image"),
        (sk.Occlusion, {"stride": (1, 1, 1)}, ValueError, "stride must be an integer or a pair"),
    ],
)
def test_n_model_inputs_refuses_what_get_mask_refuses(
    method: type[CoreSaliency], parameters: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        method().n_model_inputs(SHAPE, **parameters)
    with pytest.raises(error, match=message):
        method().GetMask(_image(), EveryKeyModel(), **parameters)


def test_the_base_class_does_not_guess_a_count() -> None:
    with pytest.raises(NotImplementedError, match="CoreSaliency does not implement n_model_inputs"):
        CoreSaliency().n_model_inputs(SHAPE)
    with pytest.raises(ValueError, match="nsamples must be an integer >= 1"):
        sk.GradientSaliency().n_smoothed_model_inputs(SHAPE, nsamples=0)


# --------------------------------------------------------------------------
# The batching helper with per-batch extras.
# --------------------------------------------------------------------------


def test_call_model_in_batches_with_extra_hands_each_extra_back_with_its_answer() -> None:
    model = EveryKeyModel()
    inputs = np.stack([_image() * k for k in range(7)])

    def make_batch(start: int, stop: int) -> tuple[np.ndarray, tuple[int, int]]:
        return inputs[start:stop], (start, stop)

    seen = list(call_model_in_batches_with_extra(model, make_batch, 7, 3, None, [OUTPUT_LAYER_VALUES]))
    assert [(start, stop) for start, stop, _, _ in seen] == [(0, 3), (3, 6), (6, 7)]
    assert all(extra == (start, stop) for start, stop, _, extra in seen)
    for start, stop, output, _ in seen:
        np.testing.assert_allclose(
            output[OUTPUT_LAYER_VALUES], model(inputs[start:stop])[OUTPUT_LAYER_VALUES]
        )
    plain = list(call_model_in_batches(model, lambda start, stop: inputs[start:stop], 7, 3))
    assert [(start, stop) for start, stop, _ in plain] == [(0, 3), (3, 6), (6, 7)]


def test_call_model_in_batches_with_extra_checks_its_arguments_and_the_answers() -> None:
    make_batch = lambda start, stop: (np.zeros((stop - start,) + SHAPE), None)  # noqa: E731
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        next(call_model_in_batches_with_extra(EveryKeyModel(), make_batch, 4, 0))
    with pytest.raises(ValueError, match="did not return the expected key 'MISSING'"):
        next(call_model_in_batches_with_extra(EveryKeyModel(), make_batch, 4, 2, None, ["MISSING"]))


# --------------------------------------------------------------------------
# The CAM hooks.
# --------------------------------------------------------------------------


def _layer_answer() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(0.0, 2.0, (4, 3, 5)), rng.normal(size=(4, 3, 5))


def _fixed_layer_model(layer_values: np.ndarray, layer_gradients: np.ndarray):
    def call(x_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        return {
            CONVOLUTION_LAYER_VALUES: layer_values[None],
            CONVOLUTION_OUTPUT_GRADIENTS: layer_gradients[None],
            GUIDED_INPUT_OUTPUT_GRADIENTS: np.ones((1,) + np.shape(x_batch)[1:]),
        }

    return call


class MaxWeightCam(sk.GradCam):
    """A CAM variant: each channel weighted by its largest gradient."""

    def channel_weights(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        return layer_gradients.max(axis=(0, 1)).astype(np.float64)


class PositionWeightCam(sk.GradCam):
    """A variant weighted per position (HiRes-CAM's form): ReLU(sum_c G * A)."""

    def cam_map(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        return np.maximum((layer_values * layer_gradients).sum(axis=-1), 0.0)


def test_grad_cam_is_the_channel_weighted_activation_map() -> None:
    values, gradients = _layer_answer()
    mask = sk.GradCam().GetMask(
        np.zeros((8, 6, 3)), _fixed_layer_model(values, gradients), should_resize=False
    )
    expected = channel_weighted_activation_map(values, gradients)
    np.testing.assert_allclose(mask[..., 0], expected.astype(np.float32))
    np.testing.assert_array_equal(BaseCam().cam_map(values, gradients), expected)


def test_a_cam_variant_only_overrides_its_weights() -> None:
    values, gradients = _layer_answer()
    mask = MaxWeightCam().GetMask(
        np.zeros((4, 3, 3)), _fixed_layer_model(values, gradients), three_dims=False
    )
    expected = np.maximum(values @ gradients.max(axis=(0, 1)), 0.0)
    np.testing.assert_allclose(mask, (expected / expected.max()).astype(np.float32), rtol=1e-6)


def test_a_cam_variant_weighted_per_position_overrides_the_map() -> None:
    values, gradients = _layer_answer()
    call = _fixed_layer_model(values, gradients)
    mask = PositionWeightCam().GetMask(np.zeros((4, 3, 3)), call, three_dims=False, should_resize=False)
    np.testing.assert_allclose(mask, np.maximum((values * gradients).sum(axis=-1), 0.0).astype(np.float32))


def test_the_layer_answer_is_checked_before_any_hook() -> None:
    values, gradients = _layer_answer()
    with pytest.raises(ValueError, match="CONVOLUTION_OUTPUT_GRADIENTS must have the shape"):
        PositionWeightCam().GetMask(np.zeros((4, 3, 3)), _fixed_layer_model(values, gradients[:2]))


def test_guided_grad_cam_uses_the_cam_hooks_too() -> None:
    class GuidedMaxWeightCam(sk.GuidedGradCam):
        channel_weights = MaxWeightCam.channel_weights

    values, gradients = _layer_answer()
    call = _fixed_layer_model(values, gradients)
    guided = GuidedMaxWeightCam().GetMask(np.zeros((4, 3, 3)), call)
    cam = MaxWeightCam().GetMask(np.zeros((4, 3, 3)), call, three_dims=False)
    np.testing.assert_allclose(guided[..., 0], cam, rtol=1e-6)


def test_both_cam_methods_share_the_spatial_axes_message() -> None:
    values, gradients = np.ones((2, 2, 2, 3)), np.ones((2, 2, 2, 3))
    for method in (sk.GradCam(), sk.GuidedGradCam()):
        with pytest.raises(
            ValueError, match="3 spatial axes but x_value has shape \\(4, 4\\): cannot resize"
        ):
            method.GetMask(np.zeros((4, 4)), _fixed_layer_model(values, gradients))


# --------------------------------------------------------------------------
# The xrai package.
# --------------------------------------------------------------------------

#: Every name the single module saliencykit.core.xrai defined before it became a package.
FORMER_XRAI_NAMES = [
    "FAST",
    "FULL",
    "SegmentPixels",
    "XRAI",
    "XRAIOutput",
    "XRAIParameters",
    "XRAI_ALGORITHMS",
    "_DEFAULT_DILATION_RADIUS",
    "_FELZENSZWALB_IM_RESIZE",
    "_FELZENSZWALB_IM_VALUE_RANGE",
    "_FELZENSZWALB_MIN_SEGMENT_SIZE",
    "_FELZENSZWALB_SCALE_VALUES",
    "_FELZENSZWALB_SIGMA_VALUES",
    "_SearchResult",
    "_attr_aggregation_max",
    "_check_gain_function",
    "_density",
    "_disk_half_widths",
    "_exact_densities",
    "_finish_search",
    "_gain_density",
    "_gather_ranges",
    "_get_segments_felzenszwalb",
    "_incidence_matrices",
    "_index_dtype",
    "_logger",
    "_mean_precisions",
    "_normalize_image",
    "_pixels_to_mask",
    "_radix_order",
    "_unpack_segs_to_masks",
    "dilated_segment_pixels",
    "felzenszwalb_label_images",
    "segment_pixels_from_masks",
    "xrai_fast_search",
    "xrai_full_search",
]


def test_the_xrai_package_keeps_every_name_of_the_former_module() -> None:
    missing = [name for name in FORMER_XRAI_NAMES if not hasattr(xrai_package, name)]
    assert missing == []
    assert sorted(xrai_package.__all__) == sorted(
        name for name in FORMER_XRAI_NAMES if not name.startswith("_")
    )
    assert xrai_package._logger is logging.getLogger("saliencykit.core.xrai")


def test_the_original_private_static_methods_are_still_there() -> None:
    attr = np.arange(48, dtype=np.float64).reshape(8, 6)
    ours_map, ours_ranks = sk.XRAI._xrai(attr, _square_segments(), integer_segments=True)
    fast_map, _ = sk.XRAI._xrai_fast(attr, _square_segments(), min_pixel_diff=1)
    np.testing.assert_allclose(ours_map.sum(), attr.sum())
    np.testing.assert_allclose(fast_map.sum(), attr.sum())
    assert ours_ranks.min() == 1
