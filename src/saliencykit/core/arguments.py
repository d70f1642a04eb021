"""Argument checks shared by every method: integers, counts, numbers, input arrays, seeds.

Every check raises a ``TypeError`` or ``ValueError`` whose message names the
argument, what was expected and what was given.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "MAX_MODEL_EVALUATIONS",
    "BaselineShapeError",
    "as_float_array",
    "baseline_like",
    "check_evaluation_count",
    "check_int",
    "check_number",
    "make_generator",
    "make_rng",
]

#: The most model evaluations (inputs sent to ``call_model_function``) that one
#: count argument may ask for: ``x_steps``, ``nsamples``, the number of
#: occlusion windows... At a few milliseconds per evaluation, 10**7 is already
#: hours of model time; larger values are refused up front with a
#: ``ValueError`` instead of an attempt to allocate their path or sample arrays.
MAX_MODEL_EVALUATIONS = 10**7


class BaselineShapeError(ValueError, AssertionError):
    """A baseline whose shape is not the input's.

    A ``ValueError`` like every argument error here, and an ``AssertionError``
    because that is what the original raised (``assert x_baseline.shape ==
    x_value.shape``), so code that caught it keeps working.
    """


def check_int(
    name: str, value: Any, minimum: int = 1, maximum: int | None = None, limit_reason: str = ""
) -> int:
    """Returns ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``.

    Args:
      name: the argument's name, for the error message.
      value: the value to check.
      minimum: the smallest value allowed.
      maximum: the largest value allowed (``None``: no upper bound).
      limit_reason: words appended to the message when ``value > maximum``,
        saying where the bound comes from.

    Raises:
      TypeError: if ``value`` is not an integer (``bool`` is refused too).
      ValueError: if ``value < minimum`` or ``value > maximum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    number = int(value)
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and number > maximum:
        reason = f" ({limit_reason})" if limit_reason else ""
        raise ValueError(f"{name} must be an integer <= {maximum}{reason}, got {value}")
    return number


def check_evaluation_count(name: str, value: Any) -> int:
    """Checks a count of model evaluations: an integer in ``[1, MAX_MODEL_EVALUATIONS]``.

    Raises:
      TypeError: if ``value`` is not an integer.
      ValueError: if it is < 1 or > :data:`MAX_MODEL_EVALUATIONS`.
    """
    return check_int(
        name,
        value,
        minimum=1,
        maximum=MAX_MODEL_EVALUATIONS,
        limit_reason="the most model evaluations one mask may ask for",
    )


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_inclusive: bool = True,
) -> float:
    """Returns ``value`` as a finite ``float`` within the given bounds.

    Raises:
      TypeError: if ``value`` is not a real number.
      ValueError: if it is NaN, infinite or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be finite, got an integer too large for a float: {value}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        too_small = value < minimum if minimum_inclusive else value <= minimum
        if too_small:
            relation = ">=" if minimum_inclusive else ">"
            raise ValueError(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def as_float_array(name: str, value: Any, min_ndim: int = 0) -> np.ndarray:
    """Returns ``value`` as a floating-point array, checked for use as a model input.

    Floating-point inputs keep their dtype; integer and boolean inputs become
    ``float32`` when every value fits exactly (``uint8``, ``int16``...) and
    ``float64`` otherwise, so that no arithmetic on them can wrap around.

    Raises:
      TypeError: if ``value`` is not numeric (strings, objects, complex).
      ValueError: if it has fewer than ``min_ndim`` dimensions, no elements, or
        holds NaN or inf.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if array.dtype.kind != "f":
        array = array.astype(np.result_type(array.dtype, np.float32))
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, but it holds NaN or inf values")
    return array


def baseline_like(name: str, x_baseline: Any, x_value: np.ndarray) -> np.ndarray:
    """Returns the baseline as an array of ``x_value``'s shape (zeros if ``None``).

    Raises:
      BaselineShapeError: (a ``ValueError`` and an ``AssertionError``, the
        original's type) if its shape differs from ``x_value``'s.
      ValueError: if it is not finite.
    """
    if x_baseline is None:
        return np.zeros_like(x_value)
    baseline = as_float_array(name, x_baseline, min_ndim=0)
    if baseline.shape != x_value.shape:
        raise BaselineShapeError(
            f"{name} must have the shape of x_value {x_value.shape}, got {baseline.shape}"
        )
    return baseline


def make_generator(seed: int | np.random.Generator | None) -> np.random.Generator | None:
    """Returns the ``np.random.Generator`` a ``seed`` argument stands for, or None for NumPy's global state.

    ``None`` gives ``None`` (the method then draws from NumPy's global random
    state, reproducible with ``np.random.seed``); an ``int`` gives
    ``np.random.default_rng(seed)``; a ``np.random.Generator`` is returned
    as it is (draws advance it).

    Raises:
      TypeError: a seed of another type (``bool`` too).
    """
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def make_rng(seed: int | np.random.Generator | None) -> Callable[..., np.ndarray]:
    """Returns a ``normal(loc, scale, size)`` function for ``seed``.

    ``None`` uses NumPy's global random state, exactly like the reference
    library (so ``np.random.seed`` reproduces its noise); an ``int`` or a
    ``np.random.Generator`` gives an independent, reproducible stream.
    """
    if seed is None:
        return np.random.normal
    if isinstance(seed, np.random.Generator):
        return seed.normal
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed)).normal
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")
