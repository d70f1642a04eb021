"""Tests of saliencykit.metrics.pic: analytic cases, the reference's behaviours, parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import interpolate
from skimage import data, transform

from saliencykit import metrics as pic

reference_pic = pytest.importorskip("saliency.metrics.pic")

SIZE = 96


def photo(name: str, size: int = SIZE) -> np.ndarray:
    """A scikit-image sample photo resized to ``size`` x ``size``, uint8."""
    image = getattr(data, name)()
    return (transform.resize(image, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)


def smooth_saliency(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A saliency map with structure (a blob) plus noise so that quantiles are not tied."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-((rows - 0.45) ** 2 + (cols - 0.55) ** 2) / 0.05)
    return blob + 0.01 * np.random.default_rng(seed).random((size, size))


def centre_detail(images: np.ndarray) -> list[float]:
    """A deterministic 'model': the detail (mean absolute horizontal difference) in the centre.

    Blurring removes detail, so the fully blurred image scores lower than the original and
    revealing the centre's pixels brings the score back.
    """
    size = images.shape[1]
    centre = images[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4].astype(np.float64)
    detail = np.abs(np.diff(centre, axis=2)).reshape(len(images), -1).mean(axis=1)
    return [float(value) for value in detail / 255]


def entropy_prediction(images: np.ndarray) -> list[float]:
    """The reference's test model: the image's entropy (more information, higher score)."""
    return [float(pic.estimate_image_entropy(image)) for image in images]


@pytest.fixture
def reference_with_trapz(monkeypatch):
    """The reference calls np.trapz, removed in NumPy 2: put it back for the comparison."""
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return reference_pic


# --------------------------------------------------------------------------
# generate_random_mask
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 1.0])
def test_random_mask_has_the_fraction_of_true_pixels(fraction: float) -> None:
    mask = pic.generate_random_mask(40, 30, fraction, seed=1)
    assert mask.shape == (40, 30) and mask.dtype == bool
    assert mask.sum() == int(40 * 30 * fraction)


def test_random_mask_seed_is_reproducible_and_independent_of_global_state() -> None:
    first = pic.generate_random_mask(50, 50, 0.1, seed=7)
    np.random.seed(123)
    second = pic.generate_random_mask(50, 50, 0.1, seed=7)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, pic.generate_random_mask(50, 50, 0.1, seed=8))
    generator = np.random.default_rng(7)
    assert np.array_equal(first, pic.generate_random_mask(50, 50, 0.1, seed=generator))


def test_random_mask_without_seed_matches_the_reference() -> None:
    np.random.seed(5)
    expected = reference_pic.generate_random_mask(64, 48, 0.05)
    np.random.seed(5)
    assert np.array_equal(pic.generate_random_mask(64, 48, 0.05), expected)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, 10), {}, ValueError, "image_height"),
        ((10, 2.5), {}, TypeError, "image_width"),
        ((10, 10, 1.5), {}, ValueError, "fraction"),
        ((10, 10, -0.1), {}, ValueError, "fraction"),
        ((10, 10), {"seed": "abc"}, TypeError, "seed"),
    ],
)
def test_random_mask_bad_arguments(args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        pic.generate_random_mask(*args, **kwargs)


# --------------------------------------------------------------------------
# create_blurred_image
# --------------------------------------------------------------------------


def test_full_mask_returns_the_image() -> None:
    image = photo("chelsea")
    blurred = pic.create_blurred_image(image, np.ones(image.shape[:2], dtype=bool))
    assert np.array_equal(blurred, image) and blurred.dtype == image.dtype
    assert blurred is not image


def test_full_mask_keeps_a_grayscale_image_two_dimensional() -> None:
    image = photo("camera")
    blurred = pic.create_blurred_image(image, np.ones(image.shape, dtype=bool))
    assert blurred.shape == image.shape  # the reference returns [H, W, 1] here


def test_corners_are_always_kept() -> None:
    # The reference's case: only corners (and one pixel) known; the centre is the
    # mean of the two pixels on its triangle's edge.
    image = np.asarray([[0.0, 0.0, 0.0], [1.0, 8.0, 1.0], [0.0, 0.0, 0.0]])
    mask = np.asarray([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    blurred = pic.create_blurred_image(image, mask)
    np.testing.assert_array_equal(blurred, [[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])


def test_only_corners_with_equal_values_fill_the_image() -> None:
    image = np.asarray([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    blurred = pic.create_blurred_image(image, np.zeros((3, 3), dtype=bool))
    np.testing.assert_array_equal(blurred, np.ones((3, 3)))


def test_linear_interpolation_of_a_plane_is_exact() -> None:
    # A linear ramp is reproduced exactly by linear interpolation from any points.
    rows, cols = np.mgrid[0:20, 0:30]
    image = np.stack([2.0 * rows + cols, 100.0 - cols, 3.0 * rows], axis=-1)
    mask = np.random.default_rng(0).random((20, 30)) < 0.1
    np.testing.assert_allclose(pic.create_blurred_image(image, mask), image, atol=1e-9)


def test_uint8_images_are_rounded_not_truncated() -> None:
    image = np.zeros((3, 3), dtype=np.uint8)
    image[0, 2] = image[2, 2] = 3  # right column: 3, left column: 0 -> middle is 1.5
    blurred = pic.create_blurred_image(image, np.zeros((3, 3), dtype=bool))
    assert blurred.dtype == np.uint8
    assert blurred[1, 1] == 2  # round(1.5) = 2 (round half to even); truncation would give 1


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera"])
@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.7])
def test_blurred_image_equals_the_reference(name: str, fraction: float) -> None:
    image = photo(name)
    mask = np.random.default_rng(int(fraction * 100)).random(image.shape[:2]) < fraction
    expected = reference_pic.create_blurred_image(image, mask)
    blurred = pic.create_blurred_image(image, mask)
    assert blurred.dtype == expected.dtype
    assert np.array_equal(blurred, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_blurred_image_of_other_dtypes_equals_the_reference(dtype) -> None:
    image = (photo("coffee", 48).astype(np.float64) * 3.7).astype(dtype)
    mask = np.random.default_rng(3).random((48, 48)) < 0.15
    expected = reference_pic.create_blurred_image(image, mask)
    blurred = pic.create_blurred_image(image, mask)
    assert blurred.dtype == expected.dtype == dtype
    assert np.array_equal(blurred, expected)


@pytest.mark.parametrize("method", ["nearest", "cubic"])
def test_other_methods_equal_griddata_channel_by_channel(method: str) -> None:
    image = photo("astronaut", 48).astype(np.float64)
    mask = np.random.default_rng(4).random((48, 48)) < 0.2
    mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    known, unknown = np.argwhere(mask), np.argwhere(~mask)
    blurred = pic.create_blurred_image(image, mask, method=method)
    for channel in range(3):
        values = interpolate.griddata(known, image[..., channel][mask], unknown, method=method)
        np.testing.assert_array_equal(blurred[..., channel][~mask], values)
        np.testing.assert_array_equal(blurred[..., channel][mask], image[..., channel][mask])


@pytest.mark.parametrize(
    ("image", "mask", "kwargs", "error", "match"),
    [
        (np.zeros((8, 8, 3)), np.zeros((8, 7), dtype=bool), {}, ValueError, "pixel_mask"),
        (np.zeros((8, 8, 3)), np.full((8, 8), 0.5), {}, ValueError, "pixel_mask"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8), dtype=bool), {"method": "spline"}, ValueError, "method"),
        (np.zeros((1, 8)), np.zeros((1, 8), dtype=bool), {}, ValueError, "2x2"),
        (np.zeros((8,)), np.zeros((8,), dtype=bool), {}, ValueError, "full_img"),
        (np.full((4, 4), "a"), np.zeros((4, 4), dtype=bool), {}, TypeError, "full_img"),
    ],
)
def test_blurred_image_bad_input(image, mask, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        pic.create_blurred_image(image, mask, **kwargs)


# --------------------------------------------------------------------------
# estimate_image_entropy
# --------------------------------------------------------------------------


def test_entropy_grows_with_the_revealed_fraction() -> None:
    image = photo("chelsea")
    entropies = []
    for fraction in [0.0, 0.01, 0.05, 0.2, 1.0]:
        mask = pic.generate_random_mask(SIZE, SIZE, fraction, seed=0)
        entropies.append(pic.estimate_image_entropy(pic.create_blurred_image(image, mask)))
    assert entropies == sorted(entropies) and entropies[0] < entropies[-1]


@pytest.mark.parametrize("name", ["chelsea", "camera"])
def test_entropy_equals_the_reference(name: str) -> None:
    image = photo(name)
    assert pic.estimate_image_entropy(image) == reference_pic.estimate_image_entropy(image)


def test_entropy_accepts_a_single_channel_axis() -> None:
    image = photo("camera")
    assert pic.estimate_image_entropy(image[:, :, None]) == pic.estimate_image_entropy(image)


def test_entropy_bad_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        pic.estimate_image_entropy(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        pic.estimate_image_entropy(np.zeros((8, 8, 2), dtype=np.uint8))


# --------------------------------------------------------------------------
# compute_pic_metric
# --------------------------------------------------------------------------

THRESHOLDS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.34, 0.5, 0.75]


def run_pic(**overrides):
    arguments = {
        "img": photo("chelsea"),
        "saliency_map": smooth_saliency(),
        "random_mask": pic.generate_random_mask(SIZE, SIZE, seed=0),
        "pred_func": centre_detail,
        "saliency_thresholds": THRESHOLDS,
        "min_pred_value": 0.0,
    }
    arguments.update(overrides)
    return pic.compute_pic_metric(**arguments)


def test_curve_shape_and_auc_range() -> None:
    result = run_pic(pred_func=entropy_prediction, min_pred_value=0.0, num_data_points=200)
    assert len(result.curve_x) == len(result.curve_y) == 201
    assert result.curve_x[0] == 0.0 and result.curve_x[-1] == 1.0 and result.curve_y[-1] == 1.0
    assert 0.0 < result.auc < 1.0
    assert np.all(np.diff(result.curve_y) >= 0)  # kept monotonous
    assert (
        len(result.blurred_images) == len(result.predictions) == len(result.thresholds) == len(THRESHOLDS) + 2
    )
    assert result.thresholds == [0.0, *THRESHOLDS, 1.0]
    assert np.array_equal(result.blurred_images[-1], photo("chelsea"))
    np.testing.assert_allclose(result.auc, np.trapezoid(result.curve_y, result.curve_x), rtol=1e-12)


def test_a_saliency_map_on_the_model_s_evidence_beats_a_map_away_from_it() -> None:
    # The "model" looks at the centre: a map that ranks the centre first must score higher.
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    distance = np.hypot(rows - SIZE / 2, cols - SIZE / 2)
    good = run_pic(saliency_map=-distance + 1e-3 * np.random.default_rng(0).random((SIZE, SIZE)))
    bad = run_pic(saliency_map=distance + 1e-3 * np.random.default_rng(0).random((SIZE, SIZE)))
    assert good.auc > bad.auc


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera"])
def test_result_equals_the_reference(reference_with_trapz, name: str) -> None:
    image = photo(name)
    saliency_map = smooth_saliency(seed=len(name))
    random_mask = pic.generate_random_mask(SIZE, SIZE, seed=len(name))
    arguments = (image, saliency_map, random_mask, centre_detail, list(pic.DEFAULT_SALIENCY_THRESHOLDS))
    expected = reference_with_trapz.compute_pic_metric(*arguments, min_pred_value=0.0)
    result = pic.compute_pic_metric(*arguments, min_pred_value=0.0, batch_size=5)
    np.testing.assert_array_equal(result.curve_x, expected.curve_x)
    np.testing.assert_allclose(result.curve_y, expected.curve_y, rtol=0, atol=1e-6)
    assert abs(result.auc - expected.auc) < 1e-6
    assert np.allclose(result.predictions, expected.predictions, rtol=0, atol=0)
    assert result.thresholds == expected.thresholds
    for ours, theirs in zip(result.blurred_images, expected.blurred_images, strict=True):
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("keep_monotonous", [True, False])
def test_float32_predictions_and_non_monotonous_curves_equal_the_reference(
    reference_with_trapz, keep_monotonous: bool
) -> None:
    def float32_prediction(images):
        return np.asarray(centre_detail(images), dtype=np.float32) ** 3

    arguments = (photo("coffee"), smooth_saliency(seed=3), pic.generate_random_mask(SIZE, SIZE, seed=3))
    kwargs = {"min_pred_value": 0.0, "keep_monotonous": keep_monotonous, "num_data_points": 300}
    expected = reference_with_trapz.compute_pic_metric(*arguments, float32_prediction, THRESHOLDS, **kwargs)
    result = pic.compute_pic_metric(*arguments, float32_prediction, THRESHOLDS, **kwargs)
    np.testing.assert_allclose(result.curve_y, expected.curve_y, rtol=0, atol=1e-6)
    assert abs(result.auc - expected.auc) < 1e-6


def test_threads_and_the_calling_thread_give_the_same_result() -> None:
    in_parallel = run_pic(n_jobs=2)
    inline = run_pic(n_jobs=1)
    np.testing.assert_array_equal(in_parallel.curve_y, inline.curve_y)
    for ours, theirs in zip(in_parallel.blurred_images, inline.blurred_images, strict=True):
        assert np.array_equal(ours, theirs)


def test_batches_give_the_same_result() -> None:
    calls: list[int] = []

    def counting(images):
        calls.append(len(images))
        return centre_detail(images)

    threaded = run_pic(pred_func=counting, batch_size=3, n_jobs=2)
    # The original and the fully blurred image alone, then the thresholds in batches of 3.
    assert calls == [1, 1, 3, 3, 2]
    calls.clear()
    inline = run_pic(pred_func=counting, batch_size=None, n_jobs=1)
    assert calls == [1, 1, len(THRESHOLDS)]
    calls.clear()
    default = run_pic(pred_func=counting)
    assert calls == [1] * (len(THRESHOLDS) + 2)  # the reference's one image per call
    np.testing.assert_array_equal(threaded.curve_y, inline.curve_y)
    np.testing.assert_array_equal(default.curve_y, inline.curve_y)
    assert threaded.auc == inline.auc == default.auc


def test_a_pred_func_written_for_the_reference_works_with_the_defaults(reference_with_trapz) -> None:
    # Written like code for saliency 0.2.1, whose pred_func always gets image[np.newaxis, ...]:
    # it looks at images[0] only, and returns a list of one score.
    seen: list[np.ndarray] = []

    def one_image_per_call(images):
        assert isinstance(images, np.ndarray) and images.shape == (1, SIZE, SIZE, 3)
        assert images.dtype == np.uint8
        seen.append(images.copy())
        return [centre_detail(images[0][np.newaxis])[0]]

    image = photo("coffee")
    arguments = (image, smooth_saliency(seed=2), pic.generate_random_mask(SIZE, SIZE, seed=2))
    thresholds = list(pic.DEFAULT_SALIENCY_THRESHOLDS)
    result = pic.compute_pic_metric(*arguments, one_image_per_call, thresholds, min_pred_value=0.0)
    ours = seen.copy()
    seen.clear()
    expected = reference_with_trapz.compute_pic_metric(
        *arguments, one_image_per_call, thresholds, min_pred_value=0.0
    )
    # The same images, one per call, in the same order as the reference sends them.
    assert len(ours) == len(seen) == len(thresholds) + 2
    for our_batch, their_batch in zip(ours, seen, strict=True):
        assert np.array_equal(our_batch, their_batch)
    np.testing.assert_array_equal(result.curve_y, expected.curve_y)
    assert result.auc == pytest.approx(expected.auc, abs=1e-12)
    assert list(result.predictions) == list(expected.predictions)


def test_low_prediction_is_skipped_after_one_model_call() -> None:
    calls: list[int] = []

    def low(images):
        calls.append(len(images))
        return [0.3] * len(images)

    with pytest.raises(pic.ComputePicMetricError, match="min_pred_value"):
        run_pic(pred_func=low, min_pred_value=0.8)
    assert calls == [1]


def test_blurred_image_with_a_higher_prediction_is_skipped() -> None:
    def prefers_blur(images):  # the blurred image has less contrast: score it higher
        return [1.0 - float(image.std()) / 255 for image in images]

    with pytest.raises(
        pic.ComputePicMetricError, match="completely blurred image is not lower than the score"
    ):
        run_pic(pred_func=prefers_blur)


def test_constant_image_is_skipped_for_entropy() -> None:
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    with pytest.raises(pic.ComputePicMetricError, match="entropy"):
        run_pic(img=image)


def test_a_threshold_without_new_information_equals_the_reference(reference_with_trapz) -> None:
    # A map that is high only on the random mask's pixels makes the first threshold's image
    # the fully blurred one: normalised entropy 0, the x of the (0, 0) anchor too.
    image = photo("chelsea")
    random_mask = pic.generate_random_mask(SIZE, SIZE, 0.05, seed=2)
    saliency_map = random_mask.astype(float) + 1e-3 * smooth_saliency()
    arguments = (image, saliency_map, random_mask, centre_detail, [0.01, 0.3, 0.6])
    expected = reference_with_trapz.compute_pic_metric(*arguments, min_pred_value=0.0)
    result = pic.compute_pic_metric(*arguments, min_pred_value=0.0)
    assert np.array_equal(result.blurred_images[1], result.blurred_images[0])
    assert np.isfinite(result.curve_y).all() and 0.0 < result.auc < 1.0
    np.testing.assert_array_equal(result.curve_y, expected.curve_y)
    assert result.auc == pytest.approx(expected.auc, abs=1e-12)


def test_grayscale_image() -> None:
    result = run_pic(img=photo("camera"), saliency_map=smooth_saliency(seed=5))
    assert result.blurred_images[0].shape == (SIZE, SIZE)
    assert 0.0 < result.auc < 1.0


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"img": photo("chelsea").astype(np.float32)}, TypeError, "uint8"),
        ({"saliency_map": np.zeros((SIZE, SIZE, 3))}, ValueError, "saliency_map must have shape"),
        ({"saliency_map": np.full((SIZE, SIZE), np.nan)}, ValueError, "saliency_map must be finite"),
        ({"random_mask": np.zeros((SIZE, SIZE + 1), dtype=bool)}, ValueError, "random_mask"),
        ({"saliency_thresholds": [0.5, 0.1]}, ValueError, "strictly increasing"),
        ({"saliency_thresholds": [0.0, 0.1]}, ValueError, r"\(0, 1\)"),
        ({"saliency_thresholds": [0.5, 1.0]}, ValueError, r"\(0, 1\)"),
        ({"saliency_thresholds": []}, ValueError, "non-empty"),
        ({"num_data_points": 0}, ValueError, "num_data_points"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"pred_func": "model"}, TypeError, "pred_func must be callable"),
        ({"pred_func": lambda images: [0.9, 0.1]}, ValueError, "one prediction per image"),
        ({"pred_func": lambda images: [float("nan")] * len(images)}, ValueError, "NaN"),
    ],
)
def test_bad_input(overrides, error, match) -> None:
    with pytest.raises(error, match=match):
        run_pic(**overrides)


def test_nan_prediction_on_a_blurred_image_is_an_error() -> None:
    def nan_after_first(images):
        values = centre_detail(images)
        return (
            values
            if images.shape[0] == 1 and np.array_equal(images[0], photo("chelsea"))
            else [np.nan] * len(images)
        )

    with pytest.raises(ValueError, match="NaN"):
        run_pic(pred_func=nan_after_first)


# --------------------------------------------------------------------------
# aggregate_individual_pic_results
# --------------------------------------------------------------------------


def make_result(curve_x, curve_y) -> pic.PicMetricResult:
    return pic.PicMetricResult(curve_x, curve_y, blurred_images=[], predictions=[], thresholds=[], auc=0.0)


def test_aggregate_mean_and_median() -> None:
    curve_x = [0.0, 0.25, 0.5, 0.75, 1.0]
    results = [
        make_result(curve_x, [0.0, 0.2, 0.4, 0.6, 1.0]),
        make_result(curve_x, [0.0, 0.4, 0.4, 0.4, 1.0]),
        make_result(curve_x, [0.0, 0.9, 0.9, 0.9, 1.0]),
    ]
    mean = pic.aggregate_individual_pic_results(results[:2], method="mean")
    np.testing.assert_allclose(mean.curve_y, [0.0, 0.3, 0.4, 0.5, 1.0])
    assert mean.auc == pytest.approx((0 + 0.3) / 8 + (0.3 + 0.4) / 8 + (0.4 + 0.5) / 8 + (0.5 + 1.0) / 8)
    median = pic.aggregate_individual_pic_results(results)
    np.testing.assert_allclose(median.curve_y, [0.0, 0.4, 0.4, 0.6, 1.0])
    np.testing.assert_array_equal(median.curve_x, curve_x)


def test_aggregate_of_real_results_has_the_curves_x() -> None:
    results = [run_pic(saliency_map=smooth_saliency(seed=seed), num_data_points=50) for seed in range(2)]
    aggregate = pic.aggregate_individual_pic_results(results, method="mean")
    assert len(aggregate.curve_x) == 51 and 0.0 < aggregate.auc < 1.0


def test_aggregate_rejects_different_x_points() -> None:
    # The reference's check (np.unique over columns) never fires for this.
    first = make_result([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    second = make_result([0.0, 0.25, 1.0], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="different x-axis"):
        pic.aggregate_individual_pic_results([first, second])
    with pytest.raises(ValueError, match="different x-axis"):
        pic.aggregate_individual_pic_results([first, make_result([0.0, 1.0], [0.0, 1.0])])


def test_aggregate_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pic.aggregate_individual_pic_results([])
    with pytest.raises(ValueError, match="method"):
        pic.aggregate_individual_pic_results([make_result([0.0, 1.0], [0.0, 1.0])], method="max")
    with pytest.raises(ValueError, match="curve_y"):
        pic.aggregate_individual_pic_results([make_result([0.0, 0.5, 1.0], [0.0, 1.0])])
