"""Sensitivity-max and infidelity: how stable a saliency map is, and how well it predicts the model.

Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (In)fidelity and Sensitivity
of Explanations", NeurIPS 2019, https://arxiv.org/abs/1901.09392.

- :func:`sensitivity_max`: the largest relative change of the map over small
  random perturbations of the input, ``max_k ||e(x + d_k) - e(x)|| / ||e(x)||``
  (lower is more robust).
- :func:`infidelity`: the mean squared error between the change of the
  model's output under random perturbations ``I_k`` and what the map
  predicts for it, ``mean_k (sum(e(x) * I_k) - (f(x) - f(x - I_k)))^2``
  (lower is more faithful), optionally with the map rescaled by its best
  factor (``normalize=True``).

Both give the numbers of Captum's ``captum.metrics.sensitivity_max`` and
``captum.metrics.infidelity`` for the same perturbations (tested). The
perturbations come from a function the user may replace (``perturb_func``)
and a seeded NumPy generator (``seed``), so a run is reproducible. The model
is reached through a ``call_model_function``: the maps are computed with a
saliency method of :mod:`saliencykit.core` (the perturbed inputs' model
evaluations packed into shared calls by ``GetMaskBatch``), the outputs with
``OUTPUT_LAYER_VALUES`` in calls of ``batch_size`` inputs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..core.base import (
    DEFAULT_BATCH_SIZE,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    as_float_array,
    call_model_in_batches_with_extra,
    check_evaluation_count,
    check_int,
    check_number,
    scalar_outputs,
)

__all__ = ["InfidelityResult", "SensitivityResult", "infidelity", "sensitivity_max"]

#: ``perturb_func(x_values, rng) -> perturbed`` of :func:`sensitivity_max`: ``x_values`` is
#: ``[n, *x_shape]`` (n copies of the input), the result has the same shape.
SensitivityPerturbFunc = Callable[[np.ndarray, np.random.Generator], Any]
#: ``perturb_func(x_values, rng) -> (perturbations, perturbed)`` of :func:`infidelity`, both
#: ``[n, *x_shape]``; the paper's convention is ``perturbed = x - perturbations``.
InfidelityPerturbFunc = Callable[[np.ndarray, np.random.Generator], tuple[Any, Any]]
#: A saliency method: a :class:`CoreSaliency`, or a function with ``GetMask``'s signature.
Explainer = CoreSaliency | Callable[..., Any]


class SensitivityResult(NamedTuple):
    """What :func:`sensitivity_max` measured.

    Attributes:
      sensitivity_max: the largest of ``sensitivities``.
      sensitivities: ``[n_perturb_samples]``: ``||e(x_k) - e(x)|| / ||e(x)||``
        for each perturbed input ``x_k`` (``||e(x)||`` taken as 1 when it is 0).
      explanation: the map ``e(x)`` of the unperturbed input.
    """

    sensitivity_max: float
    sensitivities: np.ndarray
    explanation: np.ndarray


class InfidelityResult(NamedTuple):
    """What :func:`infidelity` measured.

    Attributes:
      infidelity: ``mean_k (beta * a_k - b_k)^2``.
      attribution_dot_perturbation: ``a_k = sum(attribution * I_k)``, ``[n_perturb_samples]``.
      output_differences: ``b_k = f(x) - f(x_k)`` for each perturbed input ``x_k``.
      beta: the map's scale, ``sum(a * b) / sum(a^2)`` with ``normalize`` (0 when every
        ``a_k`` is 0, as in Captum); 1 without.
    """

    infidelity: float
    attribution_dot_perturbation: np.ndarray
    output_differences: np.ndarray
    beta: float


def _generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(None if seed is None else int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def _check_callable(name: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def _perturbed(name: str, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != shape:
        raise ValueError(f"perturb_func must return {name} of shape {shape}, got {array.shape}")
    return as_float_array(f"perturb_func's {name}", array)


def _norm_function(norm_ord: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The per-row vector norm of ``[n, d]`` rows: ``"fro"`` (Euclidean), ``inf`` or ``p`` > 0."""
    if isinstance(norm_ord, str):
        if norm_ord != "fro":
            raise ValueError(f"norm_ord must be 'fro', a number > 0 or inf, got {norm_ord!r}")
        order = 2.0
    else:
        if isinstance(norm_ord, bool) or not isinstance(norm_ord, numbers.Real):
            raise TypeError(f"norm_ord must be 'fro', a number > 0 or inf, got {type(norm_ord).__name__}")
        order = float(norm_ord)
        if not order > 0:
            raise ValueError(f"norm_ord must be 'fro', a number > 0 or inf, got {norm_ord}")
    return lambda rows: np.linalg.norm(rows, ord=order, axis=1)


def _explanations(
    method: Explainer,
    x_values: np.ndarray,
    call_model_function: CallModelFunction,
    call_model_args: Any,
    batch_size: int,
    method_kwargs: Mapping[str, Any],
) -> np.ndarray:
    """The maps of every row of ``x_values``: one ``GetMaskBatch``, or one call of ``method`` per row."""
    if isinstance(method, CoreSaliency):
        # One call_model_args object per example, so that a list or tuple is never split.
        per_example = [call_model_args] * len(x_values)
        return np.asarray(
            method.GetMaskBatch(
                x_values, call_model_function, per_example, batch_size=batch_size, **method_kwargs
            )
        )
    _check_callable("method", method)
    return np.stack(
        [np.asarray(method(x, call_model_function, call_model_args, **method_kwargs)) for x in x_values]
    )


def sensitivity_max(
    method: Explainer,
    x_value: np.ndarray,
    call_model_function: CallModelFunction,
    call_model_args: Any = None,
    *,
    n_perturb_samples: int = 10,
    perturb_radius: float = 0.02,
    perturb_func: SensitivityPerturbFunc | None = None,
    norm_ord: str | float = "fro",
    seed: int | np.random.Generator | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    method_kwargs: Mapping[str, Any] | None = None,
) -> SensitivityResult:
    """The max-sensitivity of a saliency method at one input (Yeh et al. 2019, eq. 4).

    Computes the map ``e(x)`` and the maps ``e(x_k)`` of ``n_perturb_samples``
    perturbed inputs, and returns ``max_k ||e(x_k) - e(x)|| / ||e(x)||``,
    norms over the flattened maps (``||e(x)||`` = 0 is taken as 1). The same
    number as Captum's ``sensitivity_max`` (Monte-Carlo estimate of the sup
    over the ball) for the same perturbed inputs.

    Args:
      method: the saliency method: a :class:`saliencykit.core.CoreSaliency`
        instance (its ``GetMaskBatch`` computes all ``n_perturb_samples + 1``
        maps, their model evaluations packed into calls of ``batch_size``), or
        a function with ``GetMask``'s signature, ``method(x_value,
        call_model_function, call_model_args, **method_kwargs) -> map`` (e.g.
        a bound ``GetSmoothedMask``), called once per input (give a random
        method a fixed seed, or its noise counts as sensitivity).
      x_value: the un-batched input, e.g. ``[H, W, C]``; integers become floats.
      call_model_function: the model, as the method needs it.
      call_model_args: passed to every model call unchanged.
      n_perturb_samples: the number of perturbed inputs, >= 1.
      perturb_radius: the default perturbation: noise uniform in
        ``[-perturb_radius, perturb_radius]`` added to every element (an
        L-infinity ball; Captum's default), in ``x_value``'s units (scale it
        for images in [0, 255]). Ignored with ``perturb_func``.
      perturb_func: ``perturb_func(x_values, rng) -> perturbed``: gets
        ``[n_perturb_samples, *x_shape]`` copies of ``x_value`` and the
        generator made from ``seed``, returns the perturbed inputs, same shape.
      norm_ord: ``"fro"`` (Euclidean, the default), ``np.inf`` or a number > 0.
      seed: an int, a ``np.random.Generator`` or ``None`` (fresh entropy);
        the perturbations' only source of randomness.
      batch_size: the most model inputs per call (a :class:`CoreSaliency` method).
      method_kwargs: the method's own ``GetMask`` parameters, by name (a dict,
        so that they never clash with this function's: a method's ``seed``
        goes here, the perturbations' ``seed`` above).

    Returns:
      A :class:`SensitivityResult`: the max, each perturbed input's
      sensitivity and ``e(x)``.

    Cost:
      ``n_perturb_samples + 1`` maps: that many times the method's model
      inputs, in calls of ``batch_size`` inputs for a :class:`CoreSaliency`.

    Raises:
      TypeError, ValueError: a bad ``x_value``, count, radius, ``norm_ord``,
        ``seed`` or method; a ``perturb_func`` whose result is not of the
        expected shape or not finite; maps of different shapes; or any error
        of the method.
    """
    x_value = as_float_array("x_value", x_value)
    n_perturb_samples = check_evaluation_count("n_perturb_samples", n_perturb_samples)
    batch_size = check_int("batch_size", batch_size)
    norm = _norm_function(norm_ord)
    rng = _generator(seed)
    shape = (n_perturb_samples, *x_value.shape)
    copies = np.broadcast_to(x_value, shape).copy()
    if perturb_func is None:
        radius = check_number("perturb_radius", perturb_radius, minimum=0.0)
        perturbed = copies + rng.uniform(-radius, radius, size=shape).astype(x_value.dtype)
    else:
        _check_callable("perturb_func", perturb_func)
        perturbed = _perturbed("perturbed inputs", perturb_func(copies, rng), shape)
    x_values = np.concatenate([x_value[None], perturbed.astype(x_value.dtype, copy=False)])
    maps = _explanations(
        method, x_values, call_model_function, call_model_args, batch_size, dict(method_kwargs or {})
    )
    if maps.ndim < 1 or len(maps) != len(x_values):
        raise ValueError(f"method must return one map per input, got an array of shape {maps.shape}")
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    explanation_norm = float(norm(flat[:1])[0]) or 1.0
    sensitivities = norm(flat[1:] - flat[:1]) / explanation_norm
    return SensitivityResult(float(sensitivities.max()), sensitivities, maps[0])


def infidelity(
    x_value: np.ndarray,
    attribution: np.ndarray,
    call_model_function: CallModelFunction,
    call_model_args: Any = None,
    *,
    n_perturb_samples: int = 10,
    noise_stdev: float = 0.02,
    perturb_func: InfidelityPerturbFunc | None = None,
    normalize: bool = False,
    seed: int | np.random.Generator | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> InfidelityResult:
    """The infidelity of a saliency map at one input (Yeh et al. 2019, eq. 2).

    For random perturbations ``I_k`` and perturbed inputs ``x_k`` (by default
    ``x_k = x - I_k``), ``a_k = sum(attribution * I_k)`` is what the map
    predicts for the change of the model's output and ``b_k = f(x) - f(x_k)``
    the change; the infidelity is ``mean_k (beta * a_k - b_k)^2``, with
    ``beta = 1``, or with ``normalize`` the least-squares scale
    ``sum(a * b) / sum(a^2)`` that makes the value independent of the map's
    scale. The same number as Captum's ``infidelity`` for the same
    perturbations.

    Args:
      x_value: the un-batched input, e.g. ``[H, W, C]``; integers become floats.
      attribution: the saliency map of ``x_value``, the same shape.
      call_model_function: answers ``OUTPUT_LAYER_VALUES``: the explained
        output ``f``, one scalar per input (an adapter's target).
      call_model_args: passed to every model call unchanged.
      n_perturb_samples: the number of perturbations, >= 1.
      noise_stdev: the default perturbation: ``I_k`` Gaussian, zero mean, this
        standard deviation in ``x_value``'s units (scale it for images in
        [0, 255]), and ``x_k = x - I_k``. Ignored with ``perturb_func``.
      perturb_func: ``perturb_func(x_values, rng) -> (perturbations,
        perturbed)``: gets ``[m, *x_shape]`` copies of ``x_value`` (m at most
        ``batch_size``: it is called once per model call, in order, so memory
        stays bounded) and the generator made from ``seed``, returns ``I``
        and the perturbed inputs, both ``[m, *x_shape]`` (e.g. binary masks
        ``I`` of squares to remove and ``x - I * (x - baseline)``).
      normalize: rescale the map by ``beta`` (Captum's ``normalize``).
      seed: an int, a ``np.random.Generator`` or ``None`` (fresh entropy).
      batch_size: the most inputs per model call, >= 1.

    Returns:
      An :class:`InfidelityResult`: the value, the ``a_k``, the ``b_k`` and ``beta``.

    Cost:
      ``n_perturb_samples + 1`` model inputs (the unperturbed one first),
      forward only, in ``ceil((n_perturb_samples + 1) / batch_size)`` calls.

    Raises:
      TypeError, ValueError: a bad ``x_value``, an ``attribution`` of another
        shape, a bad count, stdev, ``seed`` or ``batch_size``; a
        ``perturb_func`` whose results are not of the expected shape or not
        finite; a model answer that is not one finite scalar per input.
    """
    x_value = as_float_array("x_value", x_value)
    attribution = as_float_array("attribution", attribution)
    if attribution.shape != x_value.shape:
        raise ValueError(f"attribution must have x_value's shape {x_value.shape}, got {attribution.shape}")
    n_perturb_samples = check_evaluation_count("n_perturb_samples", n_perturb_samples)
    batch_size = check_int("batch_size", batch_size)
    stdev = check_number("noise_stdev", noise_stdev, minimum=0.0)
    if perturb_func is not None:
        _check_callable("perturb_func", perturb_func)
    rng = _generator(seed)
    weights = attribution.astype(np.float64)

    def make_batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs ``start..stop-1`` (0: ``x_value``, k: the k-th perturbed one) and their ``a_k``."""
        first = max(start, 1)
        shape = (stop - first, *x_value.shape)
        if stop == 1:  # the unperturbed input alone (batch_size 1)
            return x_value[None], np.zeros(0)
        if perturb_func is None:
            perturbations = rng.normal(0.0, stdev, size=shape).astype(x_value.dtype)
            perturbed = x_value - perturbations
        else:
            answer = perturb_func(np.broadcast_to(x_value, shape).copy(), rng)
            if not isinstance(answer, tuple) or len(answer) != 2:
                raise TypeError(
                    "perturb_func must return a tuple (perturbations, perturbed inputs), got "
                    f"{type(answer).__name__}"
                )
            perturbations = _perturbed("perturbations", answer[0], shape)
            perturbed = _perturbed("perturbed inputs", answer[1], shape)
        dots = (perturbations.reshape(len(perturbations), -1) @ weights.ravel()).astype(np.float64)
        inputs = perturbed.astype(x_value.dtype, copy=False)
        return (np.concatenate([x_value[None], inputs]) if start == 0 else inputs), dots

    outputs, dot_products = [], []
    for _, _, answer, dots in call_model_in_batches_with_extra(
        call_model_function,
        make_batch,
        n_perturb_samples + 1,
        batch_size,
        call_model_args,
        [OUTPUT_LAYER_VALUES],
    ):
        outputs.append(scalar_outputs(answer[OUTPUT_LAYER_VALUES]))
        dot_products.append(dots)
    values = np.concatenate(outputs)
    a = np.concatenate(dot_products)
    b = values[0] - values[1:]
    beta = 1.0
    if normalize:
        denominator = float(np.sum(a * a))
        beta = float(np.sum(a * b)) / (denominator if denominator != 0 else 1.0)
    return InfidelityResult(float(np.mean((beta * a - b) ** 2)), a, b, beta)
