"""Tests of XRAI (saliencykit.core.xrai).

The reference library (``saliency==0.2.1``) is the oracle: for the same image,
attribution and segments, our segments, region ranks and attribution map must
be identical to its, bit for bit. The reference's full search takes about a
second per 224x224 image, so its results on the real images are computed once
per test module (fixtures) and shared.
"""

from __future__ import annotations

import copy as copy_module
import importlib
import logging
import pickle
import re
import threading
import time

import numpy as np
import pytest
from saliency.core import xrai as reference_xrai
from scipy import ndimage
from skimage import data
from skimage.morphology import dilation, disk
from skimage.transform import resize

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, IntegratedGradients
from saliencykit.core import xrai as xrai_module
from saliencykit.core.xrai import XRAI, XRAIOutput, XRAIParameters
from saliencykit.core.xrai import cache as cache_module

from .models import LinearModel


def _never_called(x_value_batch, call_model_args=None, expected_keys=None):
    raise AssertionError("the model must not be called when base_attribution is given")


def _smooth_attribution(shape: tuple[int, ...], seed: int, dtype=np.float32) -> np.ndarray:
    """A realistic attribution: blurred noise plus a blob, ``shape`` = [H, W, C]."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(3, 3, 0))
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    blob = np.exp(-(((rows / shape[0]) - 0.4) ** 2 + ((cols / shape[1]) - 0.6) ** 2) / 0.04)
    return (noise / noise.std() + 2 * blob[..., None]).astype(dtype)


def _params(**kwargs) -> XRAIParameters:
    return XRAIParameters(return_xrai_segments=True, **kwargs)


def _reference_params(**kwargs) -> reference_xrai.XRAIParameters:
    return reference_xrai.XRAIParameters(return_xrai_segments=True, **kwargs)


def _assert_same_masks(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert len(ours) == len(theirs)
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert mine.dtype == bool
        assert np.array_equal(mine, reference), f"mask {index} differs"


def _assert_xrai_correctness(output: XRAIOutput, attr_2d: np.ndarray, flatten: bool) -> None:
    """The reference test's checks: completeness, one value per region, non-increasing densities."""
    attribution_map = output.attribution_mask
    assert attribution_map.shape == attr_2d.shape
    assert attribution_map.dtype == np.float64
    np.testing.assert_allclose(attribution_map.sum(), attr_2d.sum(dtype=np.float64), rtol=1e-6, atol=1e-6)
    if flatten:
        ranks = output.segments
        assert ranks.shape == attr_2d.shape and ranks.min() == 1
        masks = [ranks == rank for rank in range(1, ranks.max() + 1)]
    else:
        masks = output.segments
    covered = np.zeros(attr_2d.shape, dtype=bool)
    previous = np.inf
    for index, mask in enumerate(masks):
        assert mask.any(), f"region {index + 1} is empty"
        assert not (covered & mask).any(), "regions overlap"
        covered |= mask
        values = attribution_map[mask]
        assert values.min() == values.max(), "one value per region"
        np.testing.assert_allclose(values.sum(), attr_2d[mask].sum(dtype=np.float64), rtol=1e-5, atol=1e-5)
        if index < len(masks) - 1:  # the last region (the uncovered rest) may be denser
            assert values[0] <= previous
        previous = values[0]
    assert covered.all(), "the regions must cover the image"


# --------------------------------------------------------------------------
# Real images and the reference's results on them (computed once).
# --------------------------------------------------------------------------

IMAGES = {
    # The benchmark's image: no resizing of the labels.
    "chelsea224": lambda: resize(data.chelsea(), (224, 224)).astype(np.float32),
    # Smaller than 224 and not square: labels are resized back (nearest), some vanish.
    "coffee150x225": lambda: resize(data.coffee(), (150, 225), anti_aliasing=True),
    # Larger than 224 along one axis.
    "astronaut256x200": lambda: resize(data.astronaut(), (256, 200), anti_aliasing=True),
    # Grayscale, 2-D, uint8.
    "camera_uint8_2d": lambda: data.camera()[::4, ::3].copy(),
}


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {name: make() for name, make in IMAGES.items()}


@pytest.fixture(scope="module")
def reference_segments(images) -> dict[str, list[np.ndarray]]:
    return {name: reference_xrai._get_segments_felzenszwalb(image) for name, image in images.items()}


@pytest.fixture(scope="module")
def attributions(images) -> dict[str, np.ndarray]:
    """A base attribution of every image's shape ([H, W, 3] or [H, W])."""
    result = {}
    for seed, (name, image) in enumerate(images.items()):
        attribution = _smooth_attribution(image.shape[:2] + (3,), seed)
        result[name] = attribution if image.ndim == 3 else attribution[..., 0]
    return result


def _merge_channels(attribution: np.ndarray) -> np.ndarray:
    """XRAI's channel aggregation: the maximum over the last axis of an [H, W, C] attribution."""
    return attribution.max(axis=-1) if attribution.ndim == 3 else attribution


@pytest.fixture(scope="module")
def reference_full_ranks(reference_segments, attributions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The reference's full search on every image: (map, ranks)."""
    return {
        name: reference_xrai.XRAI._xrai(_merge_channels(attributions[name]), masks, integer_segments=True)
        for name, masks in reference_segments.items()
    }


# --------------------------------------------------------------------------
# Segmentation.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(IMAGES))
def test_segments_identical_to_reference(name, images, reference_segments) -> None:
    ours = xrai_module._get_segments_felzenszwalb(images[name])
    _assert_same_masks(ours, reference_segments[name])


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", range(4))
def test_dilation_equals_skimage_per_segment(radius: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = rng.integers(5, 41, size=2)
    # Blocky random labels (with a missing label and labels touching the borders).
    coarse = rng.integers(0, 7, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6))))
    labels = resize(coarse, (height, width), order=0, preserve_range=True, anti_aliasing=False).astype(int)
    noisy = np.where(rng.random((height, width)) < 0.05, rng.integers(0, 7, (height, width)), labels)
    noisy[noisy == 3] = 4  # label 3 absent: an empty mask
    label_images = [labels + 2, noisy, np.zeros((height, width), dtype=int)]
    segments = xrai_module.dilated_segment_pixels(label_images, radius)
    expected = [
        dilation(level == value, footprint=disk(radius))
        for level in label_images
        for value in range(level.min(), level.max() + 1)
    ]
    _assert_same_masks(segments.to_masks(), expected)
    assert segments.n_masks == len(expected)


def test_disk_rows_are_centred_runs() -> None:
    # The dilation by runs relies on every row of the disk being one centred run.
    for radius in range(0, 12):
        footprint = disk(radius).astype(bool)
        half_widths = xrai_module._disk_half_widths(radius)
        centre = radius
        for row, half_width in zip(footprint, half_widths, strict=True):
            expected = np.zeros_like(row)
            expected[centre - half_width : centre + half_width + 1] = True
            assert np.array_equal(row, expected)


def test_radix_order_matches_lexsort() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 300, 5000)
    second = rng.integers(0, 200_000, 5000)  # two 16-bit digits
    order = xrai_module._radix_order([first, second])
    assert np.array_equal(order, np.lexsort((second, first)))


def test_normalize_image_matches_reference_and_handles_constant_images() -> None:
    image = np.random.default_rng(0).random((30, 40, 3)) * 5 - 2
    np.testing.assert_array_equal(
        xrai_module._normalize_image(image, [-1.0, 1.0], (224, 224)),
        reference_xrai._normalize_image(image, [-1.0, 1.0], (224, 224)),
    )
    constant = np.full((20, 20, 3), 0.7)
    normalized = xrai_module._normalize_image(constant, (-1.0, 1.0))
    assert np.isfinite(normalized).all() and (normalized == -1.0).all()


def test_unpack_segs_to_masks_matches_reference() -> None:
    labels = [np.array([[1, 1, 3], [3, 4, 4]]), np.array([[0, 0, 0], [0, 0, 2]])]
    _assert_same_masks(
        xrai_module._unpack_segs_to_masks(labels), reference_xrai._unpack_segs_to_masks(labels)
    )


# --------------------------------------------------------------------------
# Parity with the reference on real images.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(IMAGES))
def test_full_parity_on_real_images(name, images, attributions, reference_full_ranks) -> None:
    output = XRAI().GetMaskWithDetails(
        images[name], _never_called, base_attribution=attributions[name], extra_parameters=_params()
    )
    reference_map, reference_ranks = reference_full_ranks[name]
    assert np.array_equal(output.attribution_mask, reference_map)
    assert np.array_equal(output.segments, reference_ranks)
    _assert_xrai_correctness(output, _merge_channels(attributions[name]), flatten=True)


@pytest.mark.parametrize(("name", "flatten"), [(name, True) for name in IMAGES] + [("coffee150x225", False)])
def test_fast_parity_on_real_images(name, flatten, images, attributions, reference_segments) -> None:
    attribution = attributions[name]
    output = XRAI().GetMaskWithDetails(
        images[name],
        _never_called,
        base_attribution=attribution,
        extra_parameters=_params(algorithm="fast", flatten_xrai_segments=flatten),
    )
    reference_map, reference_regions = reference_xrai.XRAI._xrai_fast(
        _merge_channels(attribution), reference_segments[name], integer_segments=flatten
    )
    assert np.array_equal(output.attribution_mask, reference_map)
    if flatten:
        assert np.array_equal(output.segments, reference_regions)
    else:
        _assert_same_masks(output.segments, reference_regions)
    _assert_xrai_correctness(output, _merge_channels(attribution), flatten=flatten)


def test_full_unflattened_parity(images, attributions, reference_segments) -> None:
    """flatten_xrai_segments=False: the same ranked boolean masks as the reference's."""
    image, attribution = images["coffee150x225"], attributions["coffee150x225"]
    parameters = _params(flatten_xrai_segments=False, return_ig_attributions=True)
    ours = XRAI().GetMaskWithDetails(
        image, _never_called, base_attribution=attribution, extra_parameters=parameters
    )
    reference_map, reference_masks = reference_xrai.XRAI._xrai(
        _merge_channels(attribution), reference_segments["coffee150x225"], integer_segments=False
    )
    assert np.array_equal(ours.attribution_mask, reference_map)
    _assert_same_masks(ours.segments, reference_masks)
    assert ours.ig_attribution is attribution
    assert ours.baselines is None
    _assert_xrai_correctness(ours, _merge_channels(attribution), flatten=False)


def test_parity_through_a_model() -> None:
    """IG from a call_model_function, then XRAI: identical to the reference.

    A linear model with power-of-two weights on an image of multiples of 1/8,
    with 4 IG steps, makes both libraries' IG exact, so their XRAI inputs are
    identical (and full of ties, which the search must break the same way).
    """
    image = np.round(resize(data.coffee(), (60, 90), anti_aliasing=True) * 8) / 8
    rng = np.random.default_rng(3)
    weights = rng.choice([-1.0, -0.5, 0.25, 0.5, 1.0, 2.0], size=image.shape)
    ours_model, reference_model = LinearModel(weights), LinearModel(weights)
    parameters = {"steps": 4, "return_ig_attributions": True}
    ours = XRAI().GetMaskWithDetails(image, ours_model, batch_size=3, extra_parameters=_params(**parameters))
    theirs = reference_xrai.XRAI().GetMaskWithDetails(
        image, reference_model, batch_size=3, extra_parameters=_reference_params(**parameters)
    )
    for mine, reference in zip(ours.ig_attribution, theirs.ig_attribution, strict=True):
        assert np.array_equal(mine, reference)
    assert np.array_equal(ours.attribution_mask, theirs.attribution_mask)
    assert np.array_equal(ours.segments, theirs.segments)
    assert ours_model.batch_sizes == reference_model.batch_sizes == [3, 1, 3, 1]
    for mine, reference in zip(ours.baselines, theirs.baselines, strict=True):
        assert np.array_equal(mine, reference)


# --------------------------------------------------------------------------
# Parity of the searches on random attributions and segments (small, fast).
# --------------------------------------------------------------------------


def _random_case(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(10, 40, size=2))
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 40))):
        kind = rng.integers(0, 4)
        if kind == 0:  # rectangle
            top, left = rng.integers(0, height), rng.integers(0, width)
            mask = np.zeros((height, width), dtype=bool)
            mask[top : top + rng.integers(1, height), left : left + rng.integers(1, width)] = True
        elif kind == 1:  # scattered pixels
            mask = rng.random((height, width)) < rng.random()
        elif kind == 2 and masks:  # duplicate of an earlier mask
            mask = masks[rng.integers(len(masks))].copy()
        else:  # empty
            mask = np.zeros((height, width), dtype=bool)
        masks.append(mask)
    kind = seed % 7
    if kind == 0:
        attr = rng.random((height, width)) - 0.4
    elif kind == 1:
        attr = (rng.random((height, width)) - 0.4).astype(np.float32)
    elif kind == 2:  # many exact ties
        attr = (np.round(rng.random((height, width)) * 3) / 3).astype(np.float32)
    elif kind == 3:  # zeros in half the image
        attr = np.where(rng.random((height, width)) < 0.5, 0.0, rng.normal(size=(height, width)))
    elif kind == 4:
        attr = rng.integers(-3, 4, size=(height, width))
    elif kind == 5:
        attr = rng.random((height, width)).astype(np.float16)
    else:  # all zeros: every density ties
        attr = np.zeros((height, width), dtype=np.float32)
    return attr, masks


@pytest.mark.parametrize("seed", range(36))
@pytest.mark.parametrize(("area_threshold", "min_pixel_diff"), [(1.0, 50), (1.0, 5), (0.3, 1), (0.0, 10)])
def test_full_search_parity_random(seed: int, area_threshold: float, min_pixel_diff: int) -> None:
    attr, masks = _random_case(seed)
    segments = xrai_module.segment_pixels_from_masks(masks, attr.shape)
    search = xrai_module.xrai_full_search(attr, segments, area_threshold, min_pixel_diff)
    ours_map, ours_ranks = xrai_module._finish_search(attr, search, integer_segments=True)
    reference_map, reference_ranks = reference_xrai.XRAI._xrai(
        attr, masks, area_perc_th=area_threshold, min_pixel_diff=min_pixel_diff, integer_segments=True
    )
    assert np.array_equal(ours_map, reference_map)
    assert np.array_equal(ours_ranks, reference_ranks)


@pytest.mark.parametrize("seed", range(36))
@pytest.mark.parametrize("min_pixel_diff", [50, 3, 0])
def test_fast_search_parity_random(seed: int, min_pixel_diff: int) -> None:
    attr, masks = _random_case(seed)
    segments = xrai_module.segment_pixels_from_masks(masks, attr.shape)
    search = xrai_module.xrai_fast_search(attr, segments, min_pixel_diff)
    ours_map, ours_regions = xrai_module._finish_search(attr, search, integer_segments=False)
    reference_map, reference_regions = reference_xrai.XRAI._xrai_fast(
        attr, masks, min_pixel_diff=min_pixel_diff, integer_segments=False
    )
    assert np.array_equal(ours_map, reference_map)
    _assert_same_masks(ours_regions, reference_regions)


@pytest.mark.parametrize("seed", range(7))
@pytest.mark.parametrize("method", ["_xrai", "_xrai_fast"])
@pytest.mark.parametrize("integer_segments", [True, False])
def test_static_search_methods_like_reference(seed: int, method: str, integer_segments: bool) -> None:
    attr, masks = _random_case(seed)
    ours_map, ours_regions = getattr(XRAI, method)(
        attr, masks, min_pixel_diff=5, integer_segments=integer_segments
    )
    reference_map, reference_regions = getattr(reference_xrai.XRAI, method)(
        attr, masks, min_pixel_diff=5, integer_segments=integer_segments
    )
    assert np.array_equal(ours_map, reference_map)
    if integer_segments:
        assert np.array_equal(ours_regions, reference_regions)
    else:
        _assert_same_masks(ours_regions, reference_regions)
    with pytest.raises(ValueError, match="gain_fun"):
        getattr(XRAI, method)(attr, masks, gain_fun=np.mean)


# --------------------------------------------------------------------------
# The reference test's behaviours.
# --------------------------------------------------------------------------

IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def random_image() -> np.ndarray:
    return np.random.default_rng(5).random((IMAGE_SIZE, IMAGE_SIZE, 3)) * 0.3 + 0.5


@pytest.fixture(scope="module")
def linear_weights() -> np.ndarray:
    return np.random.default_rng(6).normal(size=(IMAGE_SIZE, IMAGE_SIZE, 3))


@pytest.mark.parametrize("algorithm", ["full", "fast"])
@pytest.mark.parametrize("flatten", [True, False])
def test_get_mask_with_details(algorithm, flatten, random_image, linear_weights) -> None:
    model = LinearModel(linear_weights)
    parameters = _params(
        algorithm=algorithm, flatten_xrai_segments=flatten, return_ig_attributions=True, steps=5
    )
    output = XRAI().GetMaskWithDetails(random_image, model, extra_parameters=parameters)

    low, high = random_image.min(), random_image.max()
    expected_ig = [(random_image - low) * linear_weights, (random_image - high) * linear_weights]
    assert len(output.ig_attribution) == 2
    for ig, expected in zip(output.ig_attribution, expected_ig, strict=True):
        np.testing.assert_allclose(ig, expected, rtol=1e-12, atol=1e-12)
    assert [float(b.flat[0]) for b in output.baselines] == [low, high]
    attr_2d = np.mean(output.ig_attribution, axis=0).max(axis=-1)
    _assert_xrai_correctness(output, attr_2d, flatten=flatten)

    if flatten:  # the map does not depend on flatten_xrai_segments
        heatmap = XRAI().GetMask(random_image, model, extra_parameters=parameters)
        assert np.array_equal(heatmap, output.attribution_mask)


def test_custom_segments(random_image, linear_weights) -> None:
    first = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    first[10:31, 10:31] = True
    second = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    second[35:60, 30:62] = True
    parameters = _params(flatten_xrai_segments=False, return_ig_attributions=True, steps=3)
    output = XRAI().GetMaskWithDetails(
        random_image, LinearModel(linear_weights), segments=[first, second], extra_parameters=parameters
    )
    attr_2d = np.mean(output.ig_attribution, axis=0).max(axis=-1)
    _assert_xrai_correctness(output, attr_2d, flatten=False)
    assert len(output.segments) == 3  # both rectangles, then the rest
    denser_first = attr_2d[first].mean() >= attr_2d[second].mean()
    assert np.array_equal(output.segments[0], first if denser_first else second)
    assert np.array_equal(output.segments[2], ~(first | second))


def test_batch_size_and_baselines_reach_integrated_gradients(random_image, linear_weights) -> None:
    rng = np.random.default_rng(7)
    baselines = [rng.random(random_image.shape), rng.random(random_image.shape)]
    segments = [np.ones((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)]
    model = LinearModel(linear_weights)
    output = XRAI().GetMaskWithDetails(
        random_image,
        model,
        call_model_args={"class": 3},
        baselines=baselines,
        segments=segments,
        batch_size=4,
        extra_parameters=_params(steps=10, return_ig_attributions=True),
    )
    assert model.batch_sizes == [4, 4, 2] * 2
    assert all(args == {"class": 3} for args in model.call_model_args)
    assert all(list(keys) == [INPUT_OUTPUT_GRADIENTS] for keys in model.expected_keys)
    for baseline, returned, ig in zip(baselines, output.baselines, output.ig_attribution, strict=True):
        assert np.array_equal(returned, baseline)
        expected = IntegratedGradients().GetMask(
            random_image, LinearModel(linear_weights), x_baseline=baseline, x_steps=10, batch_size=4
        )
        assert np.array_equal(ig, expected)
    # One segment covering everything: one region, the mean of the attribution.
    attr_2d = np.mean(output.ig_attribution, axis=0).max(axis=-1)
    assert np.array_equal(output.segments, np.ones((IMAGE_SIZE, IMAGE_SIZE), dtype=int))
    np.testing.assert_allclose(output.attribution_mask, attr_2d.mean())


def test_base_attribution(random_image) -> None:
    base_attribution = np.random.default_rng(8).random((IMAGE_SIZE, IMAGE_SIZE, 3))
    heatmap = XRAI().GetMask(random_image, _never_called, base_attribution=base_attribution)
    assert not np.array_equal(base_attribution.max(axis=2), heatmap)
    np.testing.assert_allclose(heatmap.sum(), base_attribution.max(axis=2).sum(), rtol=1e-10)
    reference = reference_xrai.XRAI().GetMask(random_image, None, base_attribution=base_attribution)
    assert np.array_equal(heatmap, reference)


def test_area_threshold_leaves_one_uncovered_region(images, attributions, reference_segments) -> None:
    attribution = attributions["coffee150x225"]
    output = XRAI().GetMaskWithDetails(
        images["coffee150x225"],
        _never_called,
        base_attribution=attribution,
        extra_parameters=_params(area_threshold=0.3),
    )
    reference_map, reference_ranks = reference_xrai.XRAI._xrai(
        attribution.max(axis=-1), reference_segments["coffee150x225"], area_perc_th=0.3, integer_segments=True
    )
    assert np.array_equal(output.attribution_mask, reference_map)
    assert np.array_equal(output.segments, reference_ranks)
    _assert_xrai_correctness(output, attribution.max(axis=-1), flatten=True)


def test_parameters_keep_the_reference_signature() -> None:
    positional = XRAIParameters(7, 0.5, False, True, True, False, "fast")
    assert (positional.steps, positional.area_threshold, positional.algorithm) == (7, 0.5, "fast")
    assert positional.return_ig_attributions and positional.return_xrai_segments
    assert not positional.flatten_xrai_segments
    defaults = XRAIParameters()
    assert (defaults.steps, defaults.area_threshold, defaults.algorithm) == (100, 1.0, "full")
    assert defaults.experimental_params == {"min_pixel_diff": 50} and defaults.min_pixel_diff == 50
    defaults.min_pixel_diff = 10
    assert defaults.experimental_params["min_pixel_diff"] == 10
    assert XRAIOutput(np.zeros(2)).segments is None


def test_min_pixel_diff_from_experimental_params(images, attributions, reference_segments) -> None:
    attribution = attributions["astronaut256x200"]
    parameters = _params(algorithm="fast")
    parameters.experimental_params["min_pixel_diff"] = 400
    output = XRAI().GetMaskWithDetails(
        images["astronaut256x200"], _never_called, base_attribution=attribution, extra_parameters=parameters
    )
    reference_map, reference_ranks = reference_xrai.XRAI._xrai_fast(
        attribution.max(axis=-1), reference_segments["astronaut256x200"], min_pixel_diff=400
    )
    assert np.array_equal(output.attribution_mask, reference_map)
    assert np.array_equal(output.segments, reference_ranks)


# --------------------------------------------------------------------------
# Bad or degenerate input.
# --------------------------------------------------------------------------


def test_base_attribution_shape_mismatch(random_image) -> None:
    wrong = np.zeros((IMAGE_SIZE, IMAGE_SIZE + 1, 3))
    with pytest.raises(ValueError, match="The base attribution shape should") as error:
        XRAI().GetMask(random_image, _never_called, base_attribution=wrong)
    message = str(error.value)
    assert "base_attribution" in message and "(64, 64, 3)" in message and "(64, 65, 3)" in message


def test_baseline_shape_mismatch(random_image, linear_weights) -> None:
    baselines = [np.zeros(random_image.shape), np.zeros((IMAGE_SIZE, IMAGE_SIZE))]
    with pytest.raises(ValueError, match=re.escape("baselines[1]")) as error:
        XRAI().GetMask(random_image, LinearModel(linear_weights), baselines=baselines)
    assert "(64, 64, 3)" in str(error.value) and "(64, 64)" in str(error.value)
    with pytest.raises(ValueError, match="at least one baseline"):
        XRAI().GetMask(random_image, LinearModel(linear_weights), baselines=[])


def test_segment_shape_mismatch(random_image) -> None:
    segments = [np.ones((IMAGE_SIZE, IMAGE_SIZE), dtype=bool), np.ones((IMAGE_SIZE, 10), dtype=bool)]
    with pytest.raises(ValueError, match=re.escape("segments[1]")) as error:
        XRAI().GetMask(random_image, _never_called, base_attribution=random_image, segments=segments)
    assert "(64, 64)" in str(error.value) and "(64, 10)" in str(error.value)
    with pytest.raises(ValueError, match="only 0 and 1"):
        XRAI().GetMask(
            random_image, _never_called, base_attribution=random_image, segments=[np.full((64, 64), 2)]
        )
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        XRAI().GetMask(
            random_image, _never_called, base_attribution=random_image, segments=np.ones((64, 64), bool)
        )


def test_segments_as_array_and_integer_masks(random_image) -> None:
    first = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    first[:20] = True
    as_list = XRAI().GetMask(random_image, _never_called, base_attribution=random_image, segments=[first])
    as_array = XRAI().GetMask(
        random_image,
        _never_called,
        base_attribution=random_image,
        segments=np.stack([first]).astype(np.uint8),
    )
    assert np.array_equal(as_list, as_array)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs(random_image, bad) -> None:
    attribution = random_image.copy()
    attribution[3, 4, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        XRAI().GetMask(random_image, _never_called, base_attribution=attribution)
    image = random_image.copy()
    image[0, 0, 0] = bad
    with pytest.raises(ValueError, match="x_value"):
        XRAI().GetMask(image, _never_called, base_attribution=random_image)


def test_bad_parameters(random_image, linear_weights) -> None:
    with pytest.raises(ValueError, match="Unknown algorithm type"):
        XRAI().GetMask(
            random_image,
            _never_called,
            base_attribution=random_image,
            extra_parameters=_params(algorithm="slow"),
        )
    with pytest.raises(ValueError, match="steps"):
        XRAI().GetMask(random_image, LinearModel(linear_weights), extra_parameters=_params(steps=0))
    with pytest.raises(TypeError, match="steps"):
        XRAI().GetMask(random_image, LinearModel(linear_weights), extra_parameters=_params(steps=2.5))
    with pytest.raises(ValueError, match="area_threshold"):
        XRAI().GetMask(
            random_image,
            _never_called,
            base_attribution=random_image,
            extra_parameters=_params(area_threshold=np.nan),
        )
    with pytest.raises(ValueError, match="without a batch dimension"):
        XRAI().GetMask(random_image[None], _never_called, base_attribution=random_image[None])
    with pytest.raises(ValueError, match="x_value"):
        XRAI().GetMask(random_image[0, :, 0], _never_called)


def test_model_returning_nan_is_an_error(random_image) -> None:
    model = LinearModel(np.full(random_image.shape, np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        XRAI().GetMask(random_image, model, extra_parameters=_params(steps=2))


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_empty_segment_list_gives_one_region(random_image, algorithm) -> None:
    output = XRAI().GetMaskWithDetails(
        random_image,
        _never_called,
        base_attribution=random_image,
        segments=[],
        extra_parameters=_params(algorithm=algorithm),
    )
    attr_2d = random_image.max(axis=-1)
    assert np.array_equal(output.segments, np.ones(attr_2d.shape, dtype=int))
    assert np.array_equal(output.attribution_mask, np.full(attr_2d.shape, attr_2d.mean()))
    if algorithm == "full":  # the reference's fast algorithm fails on an empty list (FIX)
        reference_map, _ = reference_xrai.XRAI._xrai(attr_2d, [], integer_segments=True)
        assert np.array_equal(output.attribution_mask, reference_map)


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_identical_segments(random_image, algorithm) -> None:
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    mask[5:40, 8:50] = True
    attr_2d = random_image.max(axis=-1)
    output = XRAI().GetMaskWithDetails(
        random_image,
        _never_called,
        base_attribution=random_image,
        segments=[mask] * 5,
        extra_parameters=_params(algorithm=algorithm, flatten_xrai_segments=False),
    )
    _assert_same_masks(output.segments, [mask, ~mask])
    search = reference_xrai.XRAI._xrai if algorithm == "full" else reference_xrai.XRAI._xrai_fast
    reference_map, _ = search(attr_2d, [mask] * 5, integer_segments=False)
    assert np.array_equal(output.attribution_mask, reference_map)


def test_constant_image_and_attribution() -> None:
    image = np.full((48, 48, 3), 0.25)
    attribution = np.full((48, 48, 3), 0.5, dtype=np.float32)
    output = XRAI().GetMaskWithDetails(
        image, _never_called, base_attribution=attribution, extra_parameters=_params()
    )
    assert np.isfinite(output.attribution_mask).all()
    np.testing.assert_allclose(output.attribution_mask, 0.5)
    # Felzenszwalb finds one segment per scale: one region covers the image.
    assert np.array_equal(output.segments, np.ones((48, 48), dtype=int))


def test_min_pixel_diff_zero_does_not_hang(random_image) -> None:
    """The reference's full search fails with min_pixel_diff=0 (FIX); ours drops masks adding nothing."""
    attribution = _smooth_attribution((IMAGE_SIZE, IMAGE_SIZE, 3), seed=9)
    segments = xrai_module._get_segments_felzenszwalb(random_image)
    output, expected = (
        XRAI().GetMaskWithDetails(
            random_image,
            _never_called,
            base_attribution=attribution,
            segments=segments,
            extra_parameters=_params(min_pixel_diff=min_pixel_diff),
        )
        for min_pixel_diff in (0, 1)
    )
    assert np.array_equal(output.attribution_mask, expected.attribution_mask)
    assert np.array_equal(output.segments, expected.segments)
    _assert_xrai_correctness(output, attribution.max(axis=-1), flatten=True)


def test_integer_image_segments_like_reference(images, reference_segments) -> None:
    image = images["camera_uint8_2d"]
    assert image.dtype == np.uint8 and image.ndim == 2
    attribution = _smooth_attribution(image.shape + (1,), seed=10)[..., 0].astype(np.float64)
    output = XRAI().GetMaskWithDetails(
        image, _never_called, base_attribution=attribution, extra_parameters=_params()
    )
    reference_map, reference_ranks = reference_xrai.XRAI._xrai(
        attribution, reference_segments["camera_uint8_2d"], integer_segments=True
    )
    assert np.array_equal(output.attribution_mask, reference_map)
    assert np.array_equal(output.segments, reference_ranks)


# --------------------------------------------------------------------------
# Logging, not printing.
# --------------------------------------------------------------------------


def test_progress_is_logged_at_debug_and_nothing_is_printed(random_image, caplog, capsys) -> None:
    segments = [np.eye(IMAGE_SIZE, dtype=bool), np.ones((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)]
    with caplog.at_level(logging.DEBUG, logger="saliencykit.core.xrai"):
        XRAI().GetMask(random_image, _never_called, base_attribution=random_image, segments=segments)
        XRAI().GetMask(
            random_image,
            _never_called,
            base_attribution=random_image,
            segments=segments,
            extra_parameters=_params(algorithm="fast"),
        )
    records = [record for record in caplog.records if record.name == "saliencykit.core.xrai"]
    assert records and all(record.levelno == logging.DEBUG for record in records)
    assert any("masks added" in record.getMessage() for record in records)
    assert any("masks processed" in record.getMessage() for record in records)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------
# Non-image inputs (issue 11, items 8 and 14).
# --------------------------------------------------------------------------


def _square_gradients(x_value_batch, call_model_args=None, expected_keys=None):
    """Gradients of f(x) = sum(x ** 2)."""
    return {INPUT_OUTPUT_GRADIENTS: 2 * np.asarray(x_value_batch, dtype=np.float64)}


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_one_dimensional_input_with_segments_like_reference(algorithm) -> None:
    # The reference accepts a sequence [L] with [L] masks: [3, 2, 3] with the
    # segments {0, 1} and {2} and the attribution [9, 10, 6] gives [9.5, 9.5, 6].
    x_value = np.array([3.0, 2.0, 3.0])
    segments = [np.array([True, True, False]), np.array([False, False, True])]
    attribution = np.array([9.0, 10.0, 6.0])
    parameters = _params(algorithm=algorithm)
    parameters.experimental_params["min_pixel_diff"] = 1
    reference_parameters = _reference_params(algorithm=algorithm)
    reference_parameters.experimental_params["min_pixel_diff"] = 1

    output = XRAI().GetMaskWithDetails(
        x_value, _never_called, segments=segments, base_attribution=attribution, extra_parameters=parameters
    )
    theirs = reference_xrai.XRAI().GetMaskWithDetails(
        x_value, None, segments=segments, base_attribution=attribution, extra_parameters=reference_parameters
    )
    np.testing.assert_array_equal(output.attribution_mask, [9.5, 9.5, 6.0])
    np.testing.assert_array_equal(output.attribution_mask, theirs.attribution_mask)
    np.testing.assert_array_equal(output.segments, theirs.segments)

    # Through Integrated Gradients (the default baselines) too.
    output = XRAI().GetMaskWithDetails(
        x_value, _square_gradients, segments=segments, extra_parameters=parameters
    )
    theirs = reference_xrai.XRAI().GetMaskWithDetails(
        x_value, _square_gradients, segments=segments, extra_parameters=reference_parameters
    )
    assert output.attribution_mask.shape == (3,)
    np.testing.assert_allclose(output.attribution_mask, theirs.attribution_mask, atol=1e-6)
    np.testing.assert_allclose(output.attribution_mask.sum(), 2.5)  # completeness: mean IG sums to 2.5


@pytest.mark.parametrize("shape", [(12, 4), (3, 5, 6, 2)], ids=["sequence-LC", "volume-DHWC"])
def test_other_ranks_with_segments_like_reference(shape) -> None:
    rng = np.random.default_rng(11)
    x_value = rng.random(shape)
    attribution = rng.normal(size=shape)
    attribution_shape = shape if len(shape) <= 2 else shape[:-1]
    labels = rng.integers(0, 4, size=attribution_shape)
    segments = [labels == label for label in range(4)] + [labels <= 1]
    parameters = _params(flatten_xrai_segments=False)
    parameters.min_pixel_diff = 1
    reference_parameters = _reference_params(flatten_xrai_segments=False)
    reference_parameters.experimental_params["min_pixel_diff"] = 1
    output = XRAI().GetMaskWithDetails(
        x_value, _never_called, segments=segments, base_attribution=attribution, extra_parameters=parameters
    )
    theirs = reference_xrai.XRAI().GetMaskWithDetails(
        x_value, None, segments=segments, base_attribution=attribution, extra_parameters=reference_parameters
    )
    assert output.attribution_mask.shape == attribution_shape
    np.testing.assert_array_equal(output.attribution_mask, theirs.attribution_mask)
    _assert_same_masks(output.segments, theirs.segments)


@pytest.mark.parametrize("shape", [(7,), (2, 6, 6, 3)])
def test_non_images_without_segments_are_refused_clearly(shape) -> None:
    x_value = np.random.default_rng(0).random(shape)
    with pytest.raises(ValueError, match=r"without segments, x_value must be one image") as error:
        XRAI().GetMask(x_value, _never_called, base_attribution=x_value)
    message = str(error.value)
    assert str(shape) in message and "segments=" in message


def test_segments_of_the_wrong_shape_for_a_sequence() -> None:
    with pytest.raises(ValueError, match=r"segments\[0\].*expected \(3,\), got \(4,\)"):
        XRAI().GetMask(
            np.ones(3), _never_called, segments=[np.ones(4, dtype=bool)], base_attribution=np.ones(3)
        )


def test_huge_steps_are_refused_before_any_allocation(random_image, linear_weights) -> None:
    with pytest.raises(ValueError, match=r"extra_parameters.steps must be an integer <= 10000000"):
        XRAI().GetMask(random_image, LinearModel(linear_weights), extra_parameters=_params(steps=10**10))


# --------------------------------------------------------------------------
# Performance, round 2 (issue 16): concurrent segmentations, a per-image cache,
# the same segments and maps bit for bit.
# --------------------------------------------------------------------------

felzenszwalb_module = importlib.import_module("saliencykit.core.xrai.felzenszwalb")


@pytest.fixture
def segmentation_calls(monkeypatch) -> list[float]:
    """The scale of every Felzenszwalb segmentation run while the test runs."""
    calls: list[float] = []
    segment = felzenszwalb_module.LabelImagesJob._segment

    def counting(self, scale, sigma):
        calls.append(scale)
        return segment(self, scale, sigma)

    monkeypatch.setattr(felzenszwalb_module.LabelImagesJob, "_segment", counting)
    return calls


def test_concurrent_segmentations_equal_the_serial_ones(images) -> None:
    serial = xrai_module.felzenszwalb_label_images(images["chelsea224"], workers=1)
    concurrent = xrai_module.felzenszwalb_label_images(images["chelsea224"], workers=4)
    assert len(concurrent) == len(serial) == 6
    for ours, expected in zip(concurrent, serial, strict=True):
        assert ours.dtype == expected.dtype == np.int64
        np.testing.assert_array_equal(ours, expected)
    # Each label image dilated on its own thread, then concatenated: the same pixel lists.
    together = xrai_module.dilated_segment_pixels(serial, 5)
    parts = xrai_module.concatenate_segment_pixels(
        [xrai_module.dilated_segment_pixels([s], 5) for s in serial]
    )
    for name in ("indptr", "indices"):
        assert getattr(parts, name).dtype == getattr(together, name).dtype
        np.testing.assert_array_equal(getattr(parts, name), getattr(together, name))


def test_segments_are_cached_per_image(images, attributions, segmentation_calls) -> None:
    """The same image again (another attribution, the other algorithm) is not segmented again."""
    image = images["coffee150x225"]
    xrai = XRAI()
    first = xrai.GetMaskWithDetails(image, _never_called, base_attribution=attributions["coffee150x225"])
    assert len(segmentation_calls) == 6
    other_attribution = _smooth_attribution(image.shape, seed=40)
    parameters = _params(algorithm="fast")
    cached = xrai.GetMaskWithDetails(
        image.copy(), _never_called, base_attribution=other_attribution, extra_parameters=parameters
    )
    fresh = XRAI()
    fresh.segmentation_threads = 1
    expected = fresh.GetMaskWithDetails(
        image, _never_called, base_attribution=other_attribution, extra_parameters=parameters
    )
    np.testing.assert_array_equal(cached.attribution_mask, expected.attribution_mask)
    np.testing.assert_array_equal(cached.segments, expected.segments)
    assert len(segmentation_calls) == 2 * 6  # the fresh instance only
    changed = image.copy()
    changed[0, 0, 0] += 1e-3
    xrai.GetMaskWithDetails(changed, _never_called, base_attribution=attributions["coffee150x225"])
    assert len(segmentation_calls) == 3 * 6  # one pixel changed: segmented again
    again = xrai.GetMaskWithDetails(image, _never_called, base_attribution=attributions["coffee150x225"])
    assert len(segmentation_calls) == 3 * 6
    np.testing.assert_array_equal(again.attribution_mask, first.attribution_mask)


def test_segmentation_beside_integrated_gradients_gives_the_serial_result(
    random_image, linear_weights, segmentation_calls
) -> None:
    """The segmentations start before the IG calls and run beside them: the same map, bit for bit."""
    model = LinearModel(linear_weights)
    parameters = _params(steps=4, return_ig_attributions=True)
    beside = XRAI().GetMaskWithDetails(random_image, model, batch_size=4, extra_parameters=parameters)
    serial_xrai = XRAI()
    serial_xrai.segmentation_threads = 1  # on the calling thread, after the attribution
    serial = serial_xrai.GetMaskWithDetails(
        random_image,
        _never_called,
        base_attribution=np.mean(beside.ig_attribution, axis=0),
        extra_parameters=parameters,
    )
    np.testing.assert_array_equal(beside.attribution_mask, serial.attribution_mask)
    np.testing.assert_array_equal(beside.segments, serial.segments)
    assert sorted(segmentation_calls) == sorted(2 * [50, 100, 150, 250, 500, 1200])
    # Many images in shared calls: each segmented once beside the calls.
    batch = np.stack([random_image, random_image[::-1].copy()])
    xrai = XRAI()
    maps = xrai.GetMaskBatch(batch, model, batch_size=8, extra_parameters=parameters)
    np.testing.assert_array_equal(maps[0], serial.attribution_mask)
    assert len(xrai._segments_cache) == 2 and len(segmentation_calls) == 4 * 6


def test_a_failing_model_leaves_no_segmentation_behind(random_image) -> None:
    def failing_model(x_value_batch, call_model_args=None, expected_keys=None):
        raise RuntimeError("the model failed")

    before = {thread.name for thread in threading.enumerate()}
    with pytest.raises(RuntimeError, match="the model failed"):
        XRAI().GetMask(random_image, failing_model, extra_parameters=_params(steps=2))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the segmentation already running ends by itself
        left = {t.name for t in threading.enumerate() if t.name.startswith("saliencykit-felzenszwalb")}
        if not left - before:
            break
        time.sleep(0.05)
    assert not left - before


def test_segment_cache_limits_and_read_only_entries() -> None:
    def segments(n_pixels: int) -> xrai_module.SegmentPixels:
        indptr = np.array([0, n_pixels], dtype=np.int32)
        return xrai_module.SegmentPixels((n_pixels,), indptr, np.arange(n_pixels, dtype=np.int32))

    cache = cache_module.SegmentCache(max_entries=2, max_bytes=10_000)
    keys = [cache_module.image_key(np.full((4, 4), value)) for value in range(4)]
    assert len(set(keys)) == 4 and cache_module.image_key(np.full((4, 4), 0)) == keys[0]
    assert cache_module.image_key(np.zeros((4, 4), np.float32)) != keys[0]  # dtype is in the key
    stored = cache.put(keys[0], segments(100))
    assert not stored.indices.flags.writeable and cache.get(keys[0]) is stored
    cache.put(keys[1], segments(100))
    cache.put(keys[2], segments(100))  # over max_entries: the least recently used goes
    assert cache.get(keys[0]) is None and len(cache) == 2
    cache.put(keys[3], segments(2400))  # 9.6 kB: the others go
    assert len(cache) == 1 and cache.get(keys[3]) is not None
    cache.put(keys[0], segments(5000))  # larger than the whole cache: not kept
    assert cache.get(keys[0]) is None and len(cache) == 1


def test_xrai_with_a_filled_cache_pickles_and_copies_without_it(random_image) -> None:
    xrai = XRAI()
    attribution = _smooth_attribution(random_image.shape, seed=41)
    expected = xrai.GetMask(random_image, _never_called, base_attribution=attribution)
    assert len(xrai._segments_cache) == 1
    assert len(copy_module.deepcopy(xrai)._segments_cache) == 0
    copy = pickle.loads(pickle.dumps(xrai))
    assert len(copy._segments_cache) == 0
    np.testing.assert_array_equal(
        copy.GetMask(random_image, _never_called, base_attribution=attribution), expected
    )
