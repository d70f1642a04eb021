"""PIC on input it cannot handle as given: sizes beyond WebP, boolean maps, memory, Qhull failures.

Nothing here allocates a large image: a 2 x 16384 image is 98 kB, and the memory plan is tested
on its own, with estimates, instead of running a 2048 x 2048 blur.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import QhullError

from saliencykit import metrics as pic
from saliencykit.metrics import _parallel
from saliencykit.metrics import pic as pic_module
from tests.metrics.test_pic import SIZE, THRESHOLDS, centre_detail, photo, run_pic

reference_pic = pytest.importorskip("saliency.metrics.pic")


class Recorder:
    """A pred_func that records its calls (and is sure of every image)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, images: np.ndarray) -> list[float]:
        self.calls.append(images.shape)
        return [1.0] * len(images)


# --------------------------------------------------------------------------
# The image size: WebP encodes at most 16383 pixels per side.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 16384, 3), (16384, 2), (2, 20000, 4)])
def test_an_image_larger_than_webp_allows_is_refused_before_any_work(monkeypatch, shape) -> None:
    def no_blur(*args):
        raise AssertionError("blurred an image that must be refused first")

    monkeypatch.setattr(pic_module, "_blur_and_measure", no_blur)
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    pred_func = Recorder()
    with pytest.raises(ValueError, match=r"img must be at most 16383 pixels .* got \d+x\d+; resize"):
        pic.compute_pic_metric(
            image,
            np.random.default_rng(1).random(shape[:2]),
            np.zeros(shape[:2], dtype=bool),
            pred_func,
            THRESHOLDS,
            min_pred_value=0.0,
        )
    assert pred_func.calls == []  # refused before the model was called


def test_entropy_of_an_image_larger_than_webp_allows_is_a_clear_error() -> None:
    assert pic.estimate_image_entropy(np.zeros((2, 16383, 3), dtype=np.uint8)) > 0
    with pytest.raises(ValueError, match=r"image must be at most 16383 pixels .* got 16384x2"):
        pic.estimate_image_entropy(np.zeros((16384, 2), dtype=np.uint8))


# --------------------------------------------------------------------------
# Boolean saliency maps: 0/1.
# --------------------------------------------------------------------------


def test_a_boolean_saliency_map_is_taken_as_zero_and_one(monkeypatch) -> None:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    boolean_map = np.hypot(rows - SIZE / 2, cols - SIZE / 2) < SIZE / 4  # the centre, 20% of the pixels
    result = run_pic(saliency_map=boolean_map)
    as_float = run_pic(saliency_map=boolean_map.astype(np.float64))
    np.testing.assert_array_equal(result.curve_y, as_float.curve_y)
    assert 0.0 < result.auc < 1.0
    # The reference on the 0/1 float map (it raises NumPy's TypeError on the boolean one).
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    arguments = (photo("chelsea"), boolean_map, pic.generate_random_mask(SIZE, SIZE, seed=0), centre_detail)
    with pytest.raises(TypeError):
        reference_pic.compute_pic_metric(*arguments, THRESHOLDS, min_pred_value=0.0)
    expected = reference_pic.compute_pic_metric(
        arguments[0], boolean_map.astype(np.float64), *arguments[2:], THRESHOLDS, min_pred_value=0.0
    )
    np.testing.assert_array_equal(result.curve_y, expected.curve_y)


# --------------------------------------------------------------------------
# Memory: fewer blurs at once on large images.
# --------------------------------------------------------------------------


def test_plan_n_jobs_keeps_the_largest_jobs_within_the_budget() -> None:
    estimates = [1, 5, 2, 4, 3]
    assert _parallel.plan_n_jobs(estimates, 4, 100) == 4  # n_jobs bounds it
    assert _parallel.plan_n_jobs(estimates, 4, 9) == 2  # 5 + 4 fit, 5 + 4 + 3 do not
    assert _parallel.plan_n_jobs(estimates, 4, 8) == 1  # 5 alone
    assert _parallel.plan_n_jobs(estimates, 4, 1) == 1  # one job always runs
    assert _parallel.plan_n_jobs([], 4, 1) == 1


def _default_threshold_estimates(side: int, channels: int = 3) -> list[int]:
    """The memory estimates of the reference notebook's 13 blurs of a side x side image (no allocation)."""
    kept = [int(side * side * min(t + 0.01, 1.0)) for t in pic.DEFAULT_SALIENCY_THRESHOLDS]
    return [pic_module._blur_memory_estimate(side, side, channels, n_kept) for n_kept in kept]


def test_a_large_image_runs_fewer_blurs_at_once() -> None:
    two_gib = 2 * 2**30
    large = _default_threshold_estimates(2048)
    # One 2048 x 2048 blur at the largest threshold: about 6.7 GB, as measured (see pic.py).
    assert 6.0e9 < max(large) < 7.5e9
    assert _parallel.plan_n_jobs(large, 8, two_gib) == 1
    assert _parallel.plan_n_jobs(large, 8, 12 * 2**30) == 2  # 6.7 + 4.3 GB fit, + 3.0 GB do not
    assert _parallel.plan_n_jobs(large, 8, 64 * 2**30) == 8
    assert _parallel.plan_n_jobs(_default_threshold_estimates(1024), 8, two_gib) == 1
    assert _parallel.plan_n_jobs(_default_threshold_estimates(512), 8, two_gib) == 8
    assert _parallel.plan_n_jobs(_default_threshold_estimates(224), 8, two_gib) == 8


def test_compute_pic_metric_runs_as_many_jobs_as_memory_limit_allows(monkeypatch) -> None:
    seen: list[int] = []
    run_jobs = pic_module.run_jobs

    def recording_run_jobs(jobs, n_jobs):
        seen.append(n_jobs)
        return run_jobs(jobs, n_jobs)

    monkeypatch.setattr(pic_module, "run_jobs", recording_run_jobs)
    roomy = run_pic(n_jobs=4, memory_limit=2**40)
    assert seen == [2, 4]  # two jobs first (the original's WebP size, the fully blurred image)
    seen.clear()
    tight = run_pic(n_jobs=4, memory_limit=1)
    assert seen == [1, 1]
    np.testing.assert_array_equal(roomy.curve_y, tight.curve_y)
    seen.clear()
    # The 0.75 threshold's blur keeps 76% of the pixels (about 14.8 MB by estimate), the 0.5 one's
    # 51% (10.2 MB), the 0.34 one's 35% (7.3 MB): the first two fit in twice the largest, not three.
    largest = pic_module._blur_memory_estimate(SIZE, SIZE, 3, int(SIZE * SIZE * 0.76))
    run_pic(n_jobs=4, memory_limit=2 * largest)
    assert seen[1] == 2


def test_default_memory_limit_is_part_of_the_free_memory() -> None:
    limit = _parallel.default_memory_limit()
    available = _parallel.available_memory()
    if available is None:
        assert limit == _parallel.FALLBACK_MEMORY_LIMIT
    else:
        assert 0 < limit <= available
    total = _parallel.total_memory()
    assert total is None or total >= limit


def test_bad_memory_limit() -> None:
    with pytest.raises(ValueError, match="memory_limit"):
        run_pic(memory_limit=0)
    with pytest.raises(TypeError, match="memory_limit"):
        run_pic(memory_limit=2.5e9)


def test_an_image_too_large_for_the_machine_is_refused_before_any_work(monkeypatch) -> None:
    monkeypatch.setattr(pic_module, "total_memory", lambda: 10**6)  # a 1 MB machine
    pred_func = Recorder()
    with pytest.raises(pic.PicMemoryError, match=r"96x96x3 image .* more than its 1\.0 MiB .* resize"):
        run_pic(pred_func=pred_func)
    assert pred_func.calls == []


# --------------------------------------------------------------------------
# MemoryError and QhullError become errors that say what happened and what to do.
# --------------------------------------------------------------------------


def _failing_interpolator(error: BaseException):
    def interpolator(*args, **kwargs):
        raise error

    return interpolator


def test_a_qhull_error_is_a_clear_value_error(monkeypatch) -> None:
    qhull_message = "QH6154 Qhull precision error: initial simplex is flat (facet 1 is coplanar)\n\nWhile..."
    monkeypatch.setitem(pic_module._INTERPOLATORS, "linear", _failing_interpolator(QhullError(qhull_message)))
    mask = pic.generate_random_mask(SIZE, SIZE, seed=0)
    with pytest.raises(
        ValueError, match=r"96x96x3 image \(QH6154 Qhull precision error: .*coplanar\)\)"
    ) as info:
        pic.create_blurred_image(photo("chelsea"), mask)
    assert isinstance(info.value, QhullError)  # what the reference let through: still caught as such
    assert isinstance(info.value, pic.PicInterpolationError)
    with pytest.raises(pic.PicInterpolationError, match="96x96x3"):
        run_pic()


def test_a_memory_error_names_the_image_and_what_to_do(monkeypatch) -> None:
    monkeypatch.setitem(pic_module._INTERPOLATORS, "linear", _failing_interpolator(MemoryError()))
    mask = pic.generate_random_mask(SIZE, SIZE, seed=0)
    with pytest.raises(
        MemoryError, match=r"96x96 image that keeps 92 of its pixels .* smaller image"
    ) as info:
        pic.create_blurred_image(photo("camera"), mask)
    assert isinstance(info.value, pic.PicMemoryError)
    with pytest.raises(pic.PicMemoryError, match=r"96x96x3 image .*MiB.* fewer threads \(n_jobs"):
        run_pic(n_jobs=1)


def test_sic_and_aic_together_refuse_an_image_too_large_before_any_work(monkeypatch) -> None:
    from saliencykit.metrics.sic_aic import compute_pic_metrics

    monkeypatch.setattr(pic_module, "total_memory", lambda: 10**6)  # a 1 MB machine
    calls: list[int] = []

    def probabilities(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return np.full((len(images), 3), 1 / 3)

    with pytest.raises(pic.PicMemoryError, match=r"96x96x3 image .* more than its 1\.0 MiB"):
        compute_pic_metrics(
            photo("chelsea"),
            np.random.default_rng(0).random((SIZE, SIZE)),
            np.zeros((SIZE, SIZE), bool),
            probabilities,
            0,
        )
    assert calls == []
