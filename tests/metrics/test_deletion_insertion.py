"""Tests of deletion and insertion: the published algorithm, analytic curves, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import data, transform

from saliencykit.metrics.deletion_insertion import (
    DeletionInsertionResult,
    aggregate_deletion_insertion_results,
    blurred_baseline,
    compute_deletion_metric,
    compute_insertion_metric,
    make_output_pred_func,
)

SIZE = 32


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """astronaut() at 32 x 32, float32 in [0, 1]."""
    return transform.resize(data.astronaut(), (SIZE, SIZE), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def saliency() -> np.ndarray:
    """A smooth blob plus noise (no ties)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    blob = np.exp(-((rows - 0.4) ** 2 + (cols - 0.6) ** 2) / 0.05)
    return blob + 0.01 * np.random.default_rng(0).random((SIZE, SIZE))


WEIGHTS = np.random.default_rng(1).normal(size=(SIZE, SIZE, 3))


def linear_model(images: np.ndarray) -> np.ndarray:
    """f(x) = sum(w * x): deleting a pixel removes exactly its contribution."""
    return np.einsum("bhwc,hwc->b", images.astype(np.float64), WEIGHTS)


def centre_red(images: np.ndarray) -> np.ndarray:
    """A nonlinear score: the squared mean red of the image's centre."""
    return images[:, 8:24, 8:24, 0].astype(np.float64).mean(axis=(1, 2)) ** 2


def published_causal_metric(
    image: np.ndarray, saliency: np.ndarray, pred_func, step: int, start: np.ndarray, finish: np.ndarray
) -> tuple[np.ndarray, float]:
    """The RISE paper's CausalMetric, step by step, one image per model call (the test's oracle).

    Pixels sorted by decreasing saliency; at each of the ``ceil(HW / step)`` steps the score of
    the current image is recorded, then the next ``step`` pixels are copied from ``finish`` into
    it; the AUC is ``(sum - first / 2 - last / 2) / (n - 1)``.
    """
    n_pixels = saliency.size
    n_steps = (n_pixels + step - 1) // step
    order = np.argsort(-saliency.ravel(), kind="stable")
    current = start.copy().reshape(n_pixels, -1)
    finish = finish.reshape(n_pixels, -1)
    scores = []
    for i in range(n_steps + 1):
        scores.append(float(pred_func(current.reshape(image.shape)[None])[0]))
        if i < n_steps:
            coords = order[step * i : step * (i + 1)]
            current[coords] = finish[coords]
    scores = np.asarray(scores)
    return scores, float((scores.sum() - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1))


@pytest.mark.parametrize("n_steps", [16, 64])
def test_deletion_matches_the_published_algorithm(photo, saliency, n_steps: int) -> None:
    step = SIZE * SIZE // n_steps
    expected, expected_auc = published_causal_metric(
        photo, saliency, centre_red, step, photo, np.zeros_like(photo)
    )
    result = compute_deletion_metric(photo, saliency, centre_red, n_steps=n_steps, batch_size=7)
    assert result.kind == "deletion"
    np.testing.assert_allclose(result.curve_x, np.arange(n_steps + 1) / n_steps)
    np.testing.assert_allclose(result.curve_y, expected, rtol=1e-12)
    assert result.auc == pytest.approx(expected_auc, rel=1e-12)


def test_insertion_matches_the_published_algorithm(photo, saliency) -> None:
    blurred = blurred_baseline(photo)
    expected, expected_auc = published_causal_metric(photo, saliency, centre_red, 16, blurred, photo)
    result = compute_insertion_metric(photo, saliency, centre_red, n_steps=64)
    assert result.kind == "insertion"
    np.testing.assert_allclose(result.curve_y, expected, rtol=1e-12)
    assert result.auc == pytest.approx(expected_auc, rel=1e-12)
    assert result.curve_y[0] == pytest.approx(centre_red(blurred[None])[0])
    assert result.curve_y[-1] == pytest.approx(centre_red(photo[None])[0])


def test_linear_model_curves_are_the_sorted_contributions(photo) -> None:
    """With a zero baseline, deleting pixel p removes s_p = sum_c w_pc x_pc from f; inserting adds it."""
    contributions = (WEIGHTS * photo).sum(axis=-1)
    n_steps = 32
    counts = np.arange(n_steps + 1) * SIZE * SIZE // n_steps
    cumulative = np.concatenate([[0.0], np.cumsum(np.sort(contributions.ravel())[::-1])])[counts]
    deletion = compute_deletion_metric(photo, contributions, linear_model, n_steps=n_steps)
    insertion = compute_insertion_metric(photo, contributions, linear_model, n_steps=n_steps, baseline=0.0)
    total = contributions.sum()
    np.testing.assert_allclose(deletion.curve_y, total - cumulative, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(insertion.curve_y, cumulative, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(deletion.curve_y + insertion.curve_y, total, rtol=1e-5)
    # The ideal order deletes the positive contributions first: no other map does better.
    reverse = compute_deletion_metric(photo, -contributions, linear_model, n_steps=n_steps)
    assert deletion.auc < reverse.auc


def test_odd_pixel_counts_and_a_2d_image() -> None:
    """H x W not divisible by n_steps: step k changes floor(k * HW / n_steps) pixels."""
    image = np.arange(35, dtype=np.float64).reshape(5, 7) + 1
    result = compute_deletion_metric(image, image, lambda batch: batch.sum(axis=(1, 2)), n_steps=3)
    order = np.sort(image.ravel())[::-1]
    expected = [image.sum() - order[:count].sum() for count in (0, 11, 23, 35)]
    np.testing.assert_array_equal(result.curve_y, expected)


def test_ties_are_deleted_in_raster_order() -> None:
    image = np.arange(1.0, 10.0).reshape(3, 3)
    seen = []
    compute_deletion_metric(
        image, np.zeros((3, 3)), lambda b: seen.extend(b.copy()) or b.sum((1, 2)), n_steps=9
    )
    for k, batch_image in enumerate(seen):
        assert np.array_equal(batch_image.ravel() == 0, np.arange(9) < k)


def test_model_calls_are_batched(photo, saliency) -> None:
    sizes: list[int] = []

    def counting(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return centre_red(images)

    batched = compute_deletion_metric(photo, saliency, counting, n_steps=10, batch_size=4)
    assert sizes == [4, 4, 3]
    sizes.clear()
    one_by_one = compute_deletion_metric(photo, saliency, counting, n_steps=10, batch_size=1)
    assert sizes == [1] * 11
    np.testing.assert_array_equal(batched.curve_y, one_by_one.curve_y)


def test_a_call_model_function_as_pred_func(photo, saliency) -> None:
    calls = []

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        calls.append((len(x_batch), call_model_args, expected_keys))
        return {"OUTPUT_LAYER_VALUES": centre_red(x_batch)[:, None]}

    pred_func = make_output_pred_func(call_model_function, {"target": 3})
    result = compute_deletion_metric(photo, saliency, pred_func, n_steps=8, batch_size=5)
    np.testing.assert_array_equal(
        result.curve_y, compute_deletion_metric(photo, saliency, centre_red, n_steps=8).curve_y
    )
    assert calls == [(5, {"target": 3}, ["OUTPUT_LAYER_VALUES"]), (4, {"target": 3}, ["OUTPUT_LAYER_VALUES"])]
    with pytest.raises(TypeError, match="call_model_function must be callable"):
        make_output_pred_func(None)


def test_uint8_images_keep_their_dtype_and_baselines_per_channel() -> None:
    image = (transform.resize(data.coffee(), (24, 24), anti_aliasing=True) * 255).round().astype(np.uint8)
    dtypes = set()

    def model(images: np.ndarray) -> np.ndarray:
        dtypes.add(images.dtype)
        return images.astype(np.float64).mean(axis=(1, 2, 3))

    saliency = np.random.default_rng(2).random((24, 24))
    insertion = compute_insertion_metric(image, saliency, model, n_steps=8)
    deletion = compute_deletion_metric(image, saliency, model, n_steps=8, baseline=[10, 20, 30])
    assert dtypes == {np.dtype(np.uint8)}
    assert deletion.curve_y[-1] == pytest.approx(20.0)
    blurred = blurred_baseline(image)
    assert blurred.dtype == np.uint8 and insertion.curve_y[0] == pytest.approx(blurred.mean())


def test_blurred_baseline_is_the_papers_11_tap_gaussian() -> None:
    impulse = np.zeros((31, 31, 2))
    impulse[15, 15, 0] = 1.0
    blurred = blurred_baseline(impulse)
    support = np.argwhere(blurred[..., 0] > 0)
    assert support.min(axis=0).tolist() == [10, 10] and support.max(axis=0).tolist() == [20, 20]
    assert np.all(blurred[..., 1] == 0)  # no blur across channels
    kernel = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 25.0))
    kernel /= kernel.sum()
    np.testing.assert_allclose(blurred[10:21, 10:21, 0], np.outer(kernel, kernel), rtol=1e-12)
    np.testing.assert_allclose(
        blurred_baseline(impulse, sigma=2.0)[..., 0],
        ndimage.gaussian_filter(impulse[..., 0], 2.0, truncate=1.0),
    )


def test_aggregation(photo, saliency) -> None:
    first = compute_deletion_metric(photo, saliency, centre_red, n_steps=8)
    second = compute_deletion_metric(photo, -saliency, centre_red, n_steps=8)
    mean = aggregate_deletion_insertion_results([first, second])
    np.testing.assert_allclose(mean.curve_y, (first.curve_y + second.curve_y) / 2)
    assert mean.auc == pytest.approx((first.auc + second.auc) / 2)
    assert mean.kind == "deletion"
    median = aggregate_deletion_insertion_results([first, second, second], method="median")
    np.testing.assert_allclose(median.curve_y, second.curve_y)
    insertion = compute_insertion_metric(photo, saliency, centre_red, n_steps=8)
    with pytest.raises(ValueError, match="one kind"):
        aggregate_deletion_insertion_results([first, insertion])
    with pytest.raises(ValueError, match="same n_steps"):
        aggregate_deletion_insertion_results(
            [first, compute_deletion_metric(photo, saliency, centre_red, n_steps=4)]
        )
    with pytest.raises(ValueError, match="at least one"):
        aggregate_deletion_insertion_results([])
    with pytest.raises(ValueError, match="method"):
        aggregate_deletion_insertion_results([first], method="max")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"saliency_map": np.zeros((SIZE, SIZE, 3))}, ValueError, r"saliency_map must have shape \[H, W\]"),
        ({"saliency_map": np.full((SIZE, SIZE), np.nan)}, ValueError, "saliency_map must be finite"),
        ({"saliency_map": np.full((SIZE, SIZE), "a")}, TypeError, "saliency_map must be a real"),
        ({"img": np.zeros((SIZE, SIZE, 3), complex)}, TypeError, "img must be a real"),
        ({"img": np.zeros((2, SIZE, SIZE, 3))}, ValueError, r"img must be a non-empty \[H, W\]"),
        ({"n_steps": 0}, ValueError, "n_steps must be an integer >= 1"),
        ({"n_steps": 2.5}, TypeError, "n_steps must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"baseline": np.zeros((5, 3))}, ValueError, "baseline must be a number or an array broadcastable"),
        ({"baseline": np.nan}, ValueError, "baseline must be finite"),
        ({"pred_func": "model"}, TypeError, "pred_func must be callable"),
        ({"pred_func": lambda images: np.zeros((len(images), 2))}, ValueError, "one prediction per image"),
        ({"pred_func": lambda images: np.full(len(images), np.nan)}, ValueError, "NaN or inf"),
    ],
)
def test_bad_input(photo, saliency, kwargs, error, match) -> None:
    arguments = {"img": photo, "saliency_map": saliency, "pred_func": centre_red, **kwargs}
    with pytest.raises(error, match=match):
        compute_deletion_metric(arguments.pop("img"), arguments.pop("saliency_map"), **arguments)


def test_bad_insertion_input(photo, saliency) -> None:
    with pytest.raises(ValueError, match="blur_sigma must be > 0"):
        compute_insertion_metric(photo, saliency, centre_red, blur_sigma=0.0)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"baseline must fit the image's dtype uint8 \(\[0, 255\]\)"):
        compute_insertion_metric(image, np.zeros((8, 8)), centre_red, baseline=-1.0)


def test_plot(photo, saliency, tmp_path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saliencykit.metrics.plotting import plot_deletion_insertion_curves

    good = compute_deletion_metric(photo, saliency, centre_red, n_steps=8)
    bad = compute_deletion_metric(photo, -saliency, centre_red, n_steps=8)
    ax = plot_deletion_insertion_curves({"blob": good, "reversed": bad})
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"blob, AUC={good.auc:.3f}", f"reversed, AUC={bad.auc:.3f}"]
    assert ax.get_title() == "Deletion" and ax.get_xlabel() == "Fraction of pixels deleted"
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), bad.curve_y)
    ax.figure.savefig(tmp_path / "deletion.png")
    insertion = compute_insertion_metric(photo, saliency, centre_red, n_steps=8)
    assert plot_deletion_insertion_curves(insertion).get_xlabel() == "Fraction of pixels inserted"
    with pytest.raises(ValueError, match="all deletion or all insertion"):
        plot_deletion_insertion_curves({"a": good, "b": insertion})
    with pytest.raises(ValueError, match="at least one"):
        plot_deletion_insertion_curves({})
    broken = DeletionInsertionResult(np.zeros(3), np.zeros(2), 0.0, "deletion")
    with pytest.raises(ValueError, match="curve_x has shape"):
        plot_deletion_insertion_curves({"broken": broken})
    plt.close("all")
