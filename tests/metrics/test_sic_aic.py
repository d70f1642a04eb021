"""Tests of the SIC / AIC helpers."""

from __future__ import annotations

import numpy as np
import pytest

from saliencykit import metrics as pic
from saliencykit.metrics.sic_aic import PicMetrics, compute_pic_metrics
from tests.metrics.test_pic import SIZE, photo, smooth_saliency


def detail_probabilities(images: np.ndarray) -> np.ndarray:
    """A 3-class 'classifier': class 1's probability grows with the detail in the image."""
    detail = np.abs(np.diff(images.astype(np.float64), axis=2)).reshape(len(images), -1).mean(axis=1)
    logits = np.stack([np.full_like(detail, 3.0), detail / 2, np.full_like(detail, 0.5)], axis=1)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def test_sic_pred_func_returns_the_class_probability() -> None:
    images = np.stack([photo("chelsea"), photo("coffee")])
    pred_func = pic.make_sic_pred_func(detail_probabilities, 1)
    np.testing.assert_array_equal(pred_func(images), detail_probabilities(images)[:, 1])


def test_aic_pred_func_returns_one_where_the_class_is_on_top() -> None:
    flat = np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)
    images = np.stack([photo("chelsea"), flat])
    assert np.argmax(detail_probabilities(images), axis=1).tolist() == [1, 0]
    np.testing.assert_array_equal(pic.make_aic_pred_func(detail_probabilities, 1)(images), [1.0, 0.0])
    np.testing.assert_array_equal(pic.make_aic_pred_func(detail_probabilities, 0)(images), [0.0, 1.0])


def test_compute_sic_equals_compute_pic_metric_with_the_sic_pred_func() -> None:
    arguments = (photo("chelsea"), smooth_saliency(), pic.generate_random_mask(SIZE, SIZE, seed=0))
    sic = pic.compute_sic(*arguments, detail_probabilities, 1, num_data_points=100)
    expected = pic.compute_pic_metric(
        *arguments,
        pic.make_sic_pred_func(detail_probabilities, 1),
        pic.DEFAULT_SALIENCY_THRESHOLDS,
        min_pred_value=0.5,
        num_data_points=100,
    )
    np.testing.assert_array_equal(sic.curve_y, expected.curve_y)
    assert 0.0 < sic.auc < 1.0


def test_compute_aic_is_a_step_curve_between_zero_and_one() -> None:
    arguments = (photo("chelsea"), smooth_saliency(), pic.generate_random_mask(SIZE, SIZE, seed=0))
    aic = pic.compute_aic(*arguments, detail_probabilities, 1, num_data_points=100)
    assert set(np.unique(aic.predictions)) <= {0.0, 1.0}
    assert aic.predictions[0] == 0.0 and aic.predictions[-1] == 1.0
    assert 0.0 < aic.auc < 1.0


def test_aic_skips_an_image_whose_class_is_not_on_top() -> None:
    arguments = (photo("chelsea"), smooth_saliency(), pic.generate_random_mask(SIZE, SIZE, seed=0))
    with pytest.raises(pic.ComputePicMetricError, match="min_pred_value"):
        pic.compute_aic(*arguments, detail_probabilities, 2)


@pytest.mark.parametrize(
    ("predict_probabilities", "class_index", "error", "match"),
    [
        (detail_probabilities, 3, ValueError, "class_index must be < the number of classes 3"),
        (lambda images: detail_probabilities(images)[:, 0], 0, ValueError, r"\[batch, n_classes\]"),
        (lambda images: np.ones((len(images), 3), dtype=int), 0, TypeError, "floats"),
        (lambda images: np.full((len(images), 3), np.nan), 0, ValueError, "NaN"),
    ],
)
def test_bad_probabilities_or_class(predict_probabilities, class_index, error, match) -> None:
    images = photo("chelsea")[None]
    for make in (pic.make_sic_pred_func, pic.make_aic_pred_func):
        with pytest.raises(error, match=match):
            make(predict_probabilities, class_index)(images)


def test_negative_class_index_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="class_index"):
        pic.make_sic_pred_func(detail_probabilities, -1)
    with pytest.raises(TypeError, match="class_index"):
        pic.make_aic_pred_func(detail_probabilities, 1.5)


def test_sic_and_aic_batch_by_default_and_take_batch_size() -> None:
    # New names: predict_probabilities takes batches, so every threshold goes in one call; an
    # explicit batch_size bounds the calls (compute_pic_metric alone keeps the reference's 1).
    calls: list[int] = []

    def counting(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return detail_probabilities(images)

    arguments = (photo("chelsea"), smooth_saliency(), pic.generate_random_mask(SIZE, SIZE, seed=0))
    n_thresholds = len(pic.DEFAULT_SALIENCY_THRESHOLDS)
    for compute in (pic.compute_sic, pic.compute_aic):
        calls.clear()
        batched = compute(*arguments, counting, 1, num_data_points=100)
        assert calls == [1, 1, n_thresholds]
        calls.clear()
        one_by_one = compute(*arguments, counting, 1, num_data_points=100, batch_size=1)
        assert calls == [1] * (n_thresholds + 2)
        np.testing.assert_allclose(one_by_one.curve_y, batched.curve_y, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# compute_pic_metrics: SIC and AIC from one set of blurred images and model calls.
# --------------------------------------------------------------------------


def float32_probabilities(images: np.ndarray) -> np.ndarray:
    """detail_probabilities in float32, like a real model's: the curves' arithmetic stays in float32."""
    return detail_probabilities(images).astype(np.float32)


def pic_arguments() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return photo("chelsea"), smooth_saliency(), pic.generate_random_mask(SIZE, SIZE, seed=0)


def assert_same_result(ours: pic.PicMetricResult, theirs: pic.PicMetricResult) -> None:
    """Equal bit for bit: curve, AUC, predictions (values and types), thresholds and blurred images."""
    np.testing.assert_array_equal(ours.curve_x, theirs.curve_x)
    assert np.asarray(ours.curve_y).tobytes() == np.asarray(theirs.curve_y).tobytes()
    assert ours.auc == theirs.auc
    assert [(type(value), value) for value in ours.predictions] == [
        (type(value), value) for value in theirs.predictions
    ]
    assert ours.thresholds == theirs.thresholds
    for our_image, their_image in zip(ours.blurred_images, theirs.blurred_images, strict=True):
        assert np.array_equal(our_image, their_image)


@pytest.mark.parametrize("batch_size", [None, 4])
def test_pic_metrics_equal_compute_sic_and_compute_aic_bit_for_bit(batch_size) -> None:
    calls: list[int] = []

    def counting(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return float32_probabilities(images)

    options = {"num_data_points": 200, "batch_size": batch_size}
    both = compute_pic_metrics(*pic_arguments(), counting, 1, **options)
    joint_calls = calls.copy()
    calls.clear()
    sic = pic.compute_sic(*pic_arguments(), counting, 1, **options)
    aic = pic.compute_aic(*pic_arguments(), counting, 1, **options)
    assert calls == joint_calls * 2  # the same batches, each sent once instead of twice
    assert isinstance(both, PicMetrics) and both.skipped == {}
    assert both.sic is not None and both.aic is not None
    assert_same_result(both.sic, sic)
    assert_same_result(both.aic, aic)
    assert set(np.unique(both.aic.predictions)) == {0.0, 1.0}


def test_a_curve_that_skips_the_image_is_none_with_compute_sic_s_reason() -> None:
    # Class 1 is chelsea's top class at probability 0.85: below 0.9 SIC skips the image, AIC does not.
    both = compute_pic_metrics(
        *pic_arguments(), detail_probabilities, 1, min_pred_value=0.9, num_data_points=100
    )
    assert both.sic is None and list(both.skipped) == ["sic"]
    with pytest.raises(pic.ComputePicMetricError) as error:
        pic.compute_sic(*pic_arguments(), detail_probabilities, 1, min_pred_value=0.9, num_data_points=100)
    assert str(both.skipped["sic"]) == str(error.value)
    aic = pic.compute_aic(*pic_arguments(), detail_probabilities, 1, min_pred_value=0.9, num_data_points=100)
    assert both.aic is not None
    assert_same_result(both.aic, aic)


def test_both_curves_skipping_raise_after_one_call_with_both_reasons() -> None:
    calls: list[int] = []

    def counting(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return detail_probabilities(images)

    # Class 2 is never on top and its probability is 0.01.
    with pytest.raises(
        pic.ComputePicMetricError, match=r"^SIC: The model prediction score .*; AIC: The model prediction"
    ):
        compute_pic_metrics(*pic_arguments(), counting, 2)
    assert calls == [1]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"class_index": -1}, ValueError, "class_index"),
        ({"class_index": 3}, ValueError, "class_index must be < the number of classes 3"),
        ({"predict_probabilities": "model"}, TypeError, "predict_probabilities must be callable"),
        ({"min_pred_value": "high"}, TypeError, "min_pred_value"),
        ({"img": photo("chelsea").astype(np.float32)}, TypeError, "uint8"),
        ({"saliency_thresholds": [0.5, 0.1]}, ValueError, "strictly increasing"),
        ({"predict_probabilities": lambda images: np.ones((2, 3))}, ValueError, r"\(1, n_classes\)"),
    ],
)
def test_pic_metrics_bad_input(overrides, error, match) -> None:
    image, saliency_map, random_mask = pic_arguments()
    arguments = {
        "img": image,
        "saliency_map": saliency_map,
        "random_mask": random_mask,
        "predict_probabilities": detail_probabilities,
        "class_index": 1,
    }
    arguments.update(overrides)
    with pytest.raises(error, match=match):
        compute_pic_metrics(**arguments)
