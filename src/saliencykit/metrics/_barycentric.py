"""The barycentric transforms of a 2-D Delaunay triangulation, vectorised and bit-identical to SciPy's.

``scipy.interpolate.griddata(..., method='linear')`` (the reference's blur) locates
every unknown pixel in the Delaunay triangulation of the kept pixels and
interpolates with barycentric weights. Both steps read the triangulation's
``transform``: per triangle, the inverse of its 2 x 2 edge matrix ``T`` and its
last vertex. SciPy computes it with one LAPACK factorisation per triangle
(``dgetrf``, ``dgecon``, ``dgetrs``: three library calls for a 2 x 2 matrix), which
costs more than the interpolation itself, and far more where the BLAS library
starts its threads for every call (OpenBLAS's default on a multi-core machine:
measured 0.07 s single-threaded against 8.6 s CPU with its 2 threads on a loaded
2-core machine, for the 75,000 triangles of a 224 x 224 image keeping 75% of its
pixels).

:func:`barycentric_transforms` computes the same numbers with a few NumPy array
operations over all triangles at once, replaying the arithmetic of the LAPACK
routines operation by operation: partial pivoting on the larger first-column
entry, the multiplier as the entry times the pivot's reciprocal, the solve
against the identity with reciprocal diagonals, and a fused multiply-add in the
back substitution (emulated exactly: :func:`_fused_multiply_add`). Which of these
variants the installed LAPACK uses (OpenBLAS's kernels on CPUs with FMA fuse the
back substitution; the reference LAPACK divides) is found once per process by
comparing every variant with SciPy's own transforms on a probe triangulation
(:func:`_matching_variant`); the first that matches bit for bit is used, and if
none does, SciPy computes the transforms as before. Degenerate triangles (three
collinear pixels, which Qhull's triangulated output can hold) get NaN, as in
SciPy.

Valid for integer coordinates below :data:`MAX_COORDINATE` (pixel indices): a
triangle is then degenerate exactly when its integer determinant is zero, which
is when LAPACK reports it singular or its condition estimate falls below SciPy's
limit (``1000 * eps``; a non-degenerate triangle's reciprocal condition is at
least ``1 / (2 * MAX_COORDINATE) ** 2``, far above it).

Private to :mod:`saliencykit.metrics` (``_blur``).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial import Delaunay

#: The largest pixel coordinate handled here; larger triangulations keep SciPy's transforms.
MAX_COORDINATE = 2**18

#: Veltkamp's splitting constant for float64: 2**27 + 1.
_SPLITTER = 134217729.0


class _Variant(NamedTuple):
    """How a LAPACK implementation computes the 2 x 2 inverse (see :func:`barycentric_transforms`)."""

    fused_substitution: bool  # the back substitution's multiply-subtract is one fused operation
    reciprocal_solve: bool  # the solve multiplies by the diagonal's reciprocal (else divides by it)
    fused_elimination: bool  # the elimination's multiply-subtract is one fused operation


#: In the order tried: OpenBLAS on x86-64 with FMA (measured), then the others.
_VARIANTS = tuple(
    _Variant(fused_substitution, reciprocal_solve, fused_elimination)
    for fused_elimination in (False, True)
    for reciprocal_solve in (True, False)
    for fused_substitution in (True, False)
)


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``values == high + low`` exactly, each with at most 26 significant bits."""
    scaled = _SPLITTER * values
    high = scaled - (scaled - values)
    return high, values - high


def _two_sum(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``total + error == first + second`` exactly, ``total`` the rounded sum."""
    total = first + second
    second_part = total - first
    error = (first - (total - second_part)) + (second - second_part)
    return total, error


def _fused_multiply_add(first: np.ndarray, second: np.ndarray, addend: np.ndarray) -> np.ndarray:
    """``first * second + addend`` rounded once (an FMA instruction), on float64 arrays.

    Boldo and Melquiond's emulation ("Emulation of FMA and correctly rounded sums:
    proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008):
    the exact product as a sum of two doubles (Dekker's TwoProduct), the addend
    added exactly (TwoSum), the two low parts added with rounding to odd, and one
    final rounded addition. Exact for finite values away from overflow and
    underflow (here: pixel coordinates and their ratios).
    """
    product = first * second
    first_high, first_low = _split(first)
    second_high, second_low = _split(second)
    product_error = (
        ((first_high * second_high - product) + first_high * second_low) + first_low * second_high
    ) + first_low * second_low
    high, low = _two_sum(addend, product)
    odd, rest = _two_sum(low, product_error)
    # Rounding to odd: an inexact sum with an even last bit moves one step towards the exact value.
    inexact_even = (rest != 0) & ((odd.view(np.int64) & 1) == 0)
    towards = np.where(rest > 0, np.inf, -np.inf)
    odd = np.where(inexact_even, np.nextafter(odd, towards), odd)
    result: np.ndarray = high + odd
    return result


def _multiply_subtract(minuend: np.ndarray, factor: np.ndarray, other: np.ndarray, fused: bool) -> np.ndarray:
    """``minuend - factor * other``, rounded once (``fused``) or after the product too."""
    if fused:
        return _fused_multiply_add(-factor, other, minuend)
    result: np.ndarray = minuend - factor * other
    return result


def _divide(values: np.ndarray, divisor: np.ndarray, reciprocal: np.ndarray, variant: _Variant) -> np.ndarray:
    """``values / divisor`` as the solve computes it: times the reciprocal, or divided."""
    result: np.ndarray = values * reciprocal if variant.reciprocal_solve else values / divisor
    return result


def barycentric_transforms(points: np.ndarray, simplices: np.ndarray, variant: _Variant) -> np.ndarray:
    """The ``transform`` of a 2-D Delaunay triangulation as ``variant`` of LAPACK computes it.

    For triangle ``s`` with vertices ``r0, r1, r2``, ``T[i, j] = r_j[i] - r2[i]``;
    ``transform[s, :2, :2]`` is ``T``'s inverse and ``transform[s, 2]`` is ``r2``,
    all NaN when the triangle is degenerate. SciPy hands ``T`` to LAPACK in
    C order, which LAPACK reads as ``A = T`` transposed, factorises as
    ``P A = L U`` (``dgetrf``: the first column's larger entry as pivot, the
    multiplier as the other entry times the pivot's reciprocal), and solves
    ``A X = I`` (``dgetrs``); ``X``, written back in C order, is ``T``'s inverse.

    Args:
      points: ``[n_points, 2]`` float64 integer coordinates, at most
        :data:`MAX_COORDINATE` in absolute value.
      simplices: ``[n_simplices, 3]`` vertex indices.
      variant: the LAPACK implementation's arithmetic (:func:`_matching_variant`).

    Returns:
      ``[n_simplices, 3, 2]`` float64.
    """
    corners = points[simplices]
    last = corners[:, 2, :]
    # A's first column (a, b) = T[0, :], its second column (c, d) = T[1, :].
    a = corners[:, 0, 0] - last[:, 0]
    b = corners[:, 1, 0] - last[:, 0]
    c = corners[:, 0, 1] - last[:, 1]
    d = corners[:, 1, 1] - last[:, 1]
    swap = np.abs(b) > np.abs(a)  # the first largest entry is the pivot
    degenerate = a * d - b * c == 0  # exact: integer coordinates
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pivot = np.where(swap, b, a)
        below = np.where(swap, a, b)
        upper_right = np.where(swap, d, c)
        lower_right = np.where(swap, c, d)
        pivot_reciprocal = 1.0 / pivot
        multiplier = below * pivot_reciprocal
        corner = _multiply_subtract(lower_right, multiplier, upper_right, variant.fused_elimination)
        # L Y = P I: the identity's rows swapped (or not), then the multiplier eliminated
        # (0 - multiplier: a zero multiplier gives +0, as LAPACK's subtraction does).
        minus_multiplier = 0.0 - multiplier
        corner_reciprocal = 1.0 / corner
        # U X = Y, column by column; Y's first row is (1, 0) or, swapped, (0, 1).
        second_row = [
            _divide(np.where(swap, 1.0, minus_multiplier), corner, corner_reciprocal, variant),
            _divide(np.where(swap, minus_multiplier, 1.0), corner, corner_reciprocal, variant),
        ]
        first_row = [
            _divide(
                _multiply_subtract(
                    np.where(swap == (column == 1), 1.0, 0.0),
                    upper_right,
                    second_row[column],
                    variant.fused_substitution,
                ),
                pivot,
                pivot_reciprocal,
                variant,
            )
            for column in (0, 1)
        ]
    transforms = np.empty((len(simplices), 3, 2), dtype=np.float64)
    # transform[s, i, j] = X[j, i]
    transforms[:, 0, 0], transforms[:, 1, 0] = first_row
    transforms[:, 0, 1], transforms[:, 1, 1] = second_row
    transforms[:, 2, :] = last
    transforms[degenerate] = np.nan
    return transforms


def _probe_triangulation() -> Delaunay:
    """A triangulation of integer points in many configurations, degenerate triangles included."""
    generator = np.random.default_rng(20240531)
    groups = []
    for fraction, side in ((0.02, 300), (0.3, 90), (0.9, 40)):
        mask = generator.random((side, side)) < fraction
        groups.append(np.argwhere(mask) + generator.integers(0, 400, 2))
    line = np.stack([np.arange(0, 120, 3), np.full(40, 7)], axis=1)  # collinear: degenerate triangles
    points = np.unique(np.concatenate([*groups, line, line + [1, 5]]), axis=0).astype(np.float64)
    return Delaunay(points)


def _same_bits(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal bit for bit, any NaN equal to any NaN."""
    nan = np.isnan(first)
    return bool(
        np.array_equal(nan, np.isnan(second))
        and np.array_equal(first[~nan].view(np.int64), second[~nan].view(np.int64))
    )


_lock = threading.Lock()
_found: list[_Variant | None] = []


def _matching_variant() -> _Variant | None:
    """The variant that reproduces SciPy's transforms bit for bit here, found once (None: none does)."""
    with _lock:
        if not _found:
            probe = _probe_triangulation()
            expected = np.asarray(probe.transform)
            matching = (
                variant
                for variant in _VARIANTS
                if _same_bits(barycentric_transforms(probe.points, probe.simplices, variant), expected)
            )
            _found.append(next(matching, None))
        return _found[0]


def set_transforms(triangulation: Any) -> bool:
    """Gives a fresh 2-D ``Delaunay`` of pixel coordinates its ``transform``, computed here.

    Interpolators built on ``triangulation`` (``LinearNDInterpolator``,
    ``CloughTocher2DInterpolator``) and its ``find_simplex`` then use these,
    bit-identical to what SciPy would compute. Does nothing (SciPy computes them
    when first needed) when no variant matches this machine's LAPACK, the
    coordinates are too large, or SciPy no longer keeps them where expected.

    Returns:
      Whether the transforms were set.
    """
    if getattr(triangulation, "_transform", False) is not None:  # computed already, or not SciPy's cache
        return False
    points = triangulation.points
    if points.shape[1] != 2 or np.abs(points).max(initial=0.0) > MAX_COORDINATE:
        return False
    variant = _matching_variant()
    if variant is None:
        return False
    transforms = barycentric_transforms(points, triangulation.simplices, variant)
    triangulation._transform = transforms
    return triangulation.transform is transforms
