"""The vectorised barycentric transforms of PIC's blur: bit for bit SciPy's, and the blur griddata's."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import interpolate
from scipy.spatial import Delaunay

from saliencykit import metrics as pic
from saliencykit.metrics import _barycentric, _blur
from tests.metrics.test_pic import SIZE, photo, smooth_saliency


def same_bits(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal bit for bit (signed zeros included), NaN where the other is NaN."""
    nan = np.isnan(first)
    return bool(
        np.array_equal(nan, np.isnan(second))
        and np.array_equal(first[~nan].view(np.int64), second[~nan].view(np.int64))
    )


def pic_masks() -> list[np.ndarray]:
    """The masks PIC blurs (a smooth map's thresholds plus a random mask), and random masks of any density."""
    random_mask = pic.generate_random_mask(SIZE, SIZE, seed=3)
    saliency_map = smooth_saliency(seed=3)
    quantiles = np.quantile(saliency_map, 1 - np.asarray(pic.DEFAULT_SALIENCY_THRESHOLDS))
    masks = [random_mask] + [(saliency_map >= quantile) | random_mask for quantile in quantiles[::3]]
    generator = np.random.default_rng(11)
    masks += [generator.random((70, 130)) < fraction for fraction in (0.003, 0.05, 0.5, 0.97)]
    grid = np.zeros((60, 60), dtype=bool)
    grid[::4, ::3] = True  # cocircular and collinear pixels everywhere
    masks.append(grid)
    for mask in masks:
        mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    return masks


def test_a_variant_reproduces_this_machine_s_lapack() -> None:
    assert _barycentric._matching_variant() is not None, (
        "no variant of the vectorised transforms reproduces SciPy's LAPACK here: PIC falls back to "
        "SciPy's slower transforms (same results)"
    )


def test_transforms_are_bit_identical_to_scipy_s() -> None:
    variant = _barycentric._matching_variant()
    assert variant is not None
    for mask in pic_masks():
        triangulation = Delaunay(np.argwhere(mask).astype(np.float64))
        expected = triangulation.transform  # SciPy's, by LAPACK
        ours = _barycentric.barycentric_transforms(triangulation.points, triangulation.simplices, variant)
        assert same_bits(ours, expected)


def test_degenerate_triangles_get_nan_as_in_scipy() -> None:
    qhull = pytest.importorskip("scipy.spatial._qhull")
    if not hasattr(qhull, "_get_barycentric_transforms"):
        pytest.skip("SciPy no longer exposes _get_barycentric_transforms")
    points = np.asarray([[0, 0], [2, 2], [5, 5], [0, 7], [3, 1], [9, 4], [6, 0]], dtype=np.float64)
    simplices = np.asarray([[0, 1, 2], [0, 3, 4], [2, 1, 0], [4, 5, 6], [3, 3, 1], [6, 5, 2]], dtype=np.intc)
    expected = qhull._get_barycentric_transforms(points, simplices, np.finfo(float).eps)
    assert np.isnan(expected[[0, 2, 4]]).all() and not np.isnan(expected[[1, 3, 5]]).any()
    variant = _barycentric._matching_variant()
    assert variant is not None
    assert same_bits(_barycentric.barycentric_transforms(points, simplices, variant), expected)


def test_fused_multiply_add_is_rounded_once() -> None:
    generator = np.random.default_rng(5)
    first = generator.integers(-16383, 16384, 3000).astype(np.float64)
    second = generator.standard_normal(3000) * 10.0 ** generator.integers(-6, 4, 3000)
    addend = np.where(generator.random(3000) < 0.5, 1.0, 0.0)
    addend[:1000] = -np.round(first[:1000] * second[:1000]) + generator.standard_normal(1000)  # cancellation
    exact = [
        float(Fraction(a) * Fraction(b) + Fraction(c)) for a, b, c in zip(first, second, addend, strict=True)
    ]
    assert same_bits(_barycentric._fused_multiply_add(first, second, addend), np.asarray(exact))


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_blur_on_the_vectorised_transforms_equals_griddata_bit_for_bit(monkeypatch, method: str) -> None:
    used: list[bool] = []
    set_transforms = _blur.set_transforms
    monkeypatch.setattr(
        _blur, "set_transforms", lambda triangulation: used.append(set_transforms(triangulation))
    )
    image = photo("astronaut").astype(np.float64) / 7.0  # no rounding to hide a last-bit difference
    for mask in pic_masks()[:5]:
        blurred = pic.create_blurred_image(image, mask, method=method)
        known, unknown = np.argwhere(mask), np.argwhere(~mask)
        for channel in range(3):
            values = interpolate.griddata(known, image[..., channel][mask], unknown, method=method)
            assert same_bits(blurred[..., channel][~mask], values)
    assert used == [True] * 5


def test_without_a_matching_variant_scipy_computes_the_transforms(monkeypatch) -> None:
    monkeypatch.setattr(_barycentric, "_found", [None])
    mask = pic_masks()[2]
    triangulation = Delaunay(np.argwhere(mask).astype(np.float64))
    assert not _barycentric.set_transforms(triangulation)
    image = photo("coffee")
    expected = [
        interpolate.griddata(np.argwhere(mask), image[..., channel][mask], np.argwhere(~mask))
        for channel in range(3)
    ]
    blurred = pic.create_blurred_image(image.astype(np.float64), mask)
    for channel in range(3):
        assert same_bits(blurred[..., channel][~mask], expected[channel])


def test_transforms_are_set_once_and_kept() -> None:
    triangulation = Delaunay(np.argwhere(pic_masks()[1]).astype(np.float64))
    assert _barycentric.set_transforms(triangulation)
    transforms = triangulation.transform
    assert not _barycentric.set_transforms(triangulation)  # already there: left alone
    assert triangulation.transform is transforms
    far = Delaunay(np.asarray([[0.0, 0.0], [2.0**19, 0.0], [0.0, 3.0]]))
    assert not _barycentric.set_transforms(far)  # beyond MAX_COORDINATE: SciPy's own
