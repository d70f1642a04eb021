"""Model-parameter randomisation: does a saliency map change when the model's weights are destroyed?

Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for
Saliency Maps", NeurIPS 2018, https://arxiv.org/abs/1810.03292 (section 3).

A method whose map stays the same when the trained weights are replaced by
random ones cannot be explaining what the model learned. The test computes
the method's map on the trained model and on copies whose layers are
re-initialised, from the top (output) layer down, cumulatively (*cascading*),
or one layer at a time (*independent*), and compares each map with the
trained model's: Spearman's rank correlation of the maps (signed, and of
their absolute values) and the structural similarity (SSIM) of the maps as
:func:`saliencykit.core.VisualizeImageGrayscale` shows them. High values
after randomisation are the warning sign (the paper's finding for Guided
Backprop); vanilla gradients and Integrated Gradients drop.

This module is framework-agnostic: it takes one ``call_model_function`` per
model, the trained one first. The randomised copies of a PyTorch or Keras
model are made by ``randomised_models`` in :mod:`saliencykit.torch` and
:mod:`saliencykit.keras` (the user's model is never changed), e.g.::

    from saliencykit.torch import make_call_model_function, randomisation_layers, randomised_models

    layers = randomisation_layers(model)[:5]  # the five top layers
    calls = [make_call_model_function(model, target=285)] + [
        make_call_model_function(copy, target=285) for _, copy in randomised_models(model, layers, seed=0)
    ]
    result = compute_model_randomisation(saliency.GradientSaliency(), image, calls, layers)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from skimage.metrics import structural_similarity

from ..core.base import CallModelFunction, CoreSaliency, check_number
from ..core.visualization import VisualizeImageGrayscale
from .robustness import Explainer

__all__ = [
    "RANDOMISATION_MODES",
    "MapSimilarity",
    "RandomisationResult",
    "compare_saliency_maps",
    "compute_model_randomisation",
]

#: ``"cascading"``: step k randomises the layers 1..k (top down, cumulatively);
#: ``"independent"``: step k randomises layer k alone. The modes of the adapters'
#: ``randomised_models`` (:mod:`saliencykit.torch`, :mod:`saliencykit.keras`).
RANDOMISATION_MODES = ("cascading", "independent")

#: SSIM's window side (skimage's default), made smaller (odd, >= 3) for smaller maps.
_SSIM_WINDOW = 7


class MapSimilarity(NamedTuple):
    """How alike two saliency maps are (:func:`compare_saliency_maps`).

    Attributes:
      rank_correlation: Spearman's rank correlation of the signed maps (channels summed).
      rank_correlation_abs: the same for the absolute maps (absolute values summed over channels).
      ssim: the structural similarity of the two maps shown as grayscale images in [0, 1].
    """

    rank_correlation: float
    rank_correlation_abs: float
    ssim: float


class RandomisationResult(NamedTuple):
    """The model-parameter randomisation test of one method on one input.

    Attributes:
      layer_names: the name of each randomised model's step (the layer
        randomised last), in order.
      rank_correlation: ``[n_steps]``: Spearman's rank correlation between the
        trained model's map and each randomised model's, signed maps.
      rank_correlation_abs: ``[n_steps]``: the same for the absolute maps.
      ssim: ``[n_steps]``: the SSIM of the maps as grayscale images.
      original_mask: the trained model's map.
      masks: each randomised model's map, in order.

    A correlation is NaN where one of the two maps is constant (all zeros,
    for example: nothing to rank).
    """

    layer_names: list[str]
    rank_correlation: np.ndarray
    rank_correlation_abs: np.ndarray
    ssim: np.ndarray
    original_mask: np.ndarray
    masks: list[np.ndarray]


def _as_map(name: str, mask: Any) -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 3:
        raise ValueError(f"{name} must be a map [H, W] or [H, W, C] with H, W >= 3, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, but it holds NaN or inf values")
    return array.astype(np.float64)


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    return float(stats.spearmanr(first.ravel(), second.ravel())[0])


def compare_saliency_maps(first: np.ndarray, second: np.ndarray, percentile: float = 99) -> MapSimilarity:
    """The three similarities of Adebayo et al. 2018 between two saliency maps of one input.

    A map ``[H, W, C]`` is reduced over its channels: summed for the signed
    rank correlation, summed in absolute value for the absolute one; a map
    ``[H, W]`` is used as it is. SSIM (``skimage.metrics.structural_similarity``,
    data range 1, a 7 x 7 window or the largest odd one that fits) compares the
    maps as :func:`saliencykit.core.VisualizeImageGrayscale` shows them
    (absolute values summed, scaled from their minimum to their
    ``percentile``-th percentile, clipped to [0, 1]).

    Args:
      first, second: the maps, ``[H, W]`` or ``[H, W, C]``, the same shape, H, W >= 3.
      percentile: the grayscale images' percentile mapped to 1, in [0, 100].

    Returns:
      A :class:`MapSimilarity`; a rank correlation is NaN when either map is constant.

    Raises:
      TypeError, ValueError: maps that are not numeric, finite, 2-D or 3-D,
        of different shapes, or a bad ``percentile``.
    """
    first, second = _as_map("first", first), _as_map("second", second)
    if first.shape != second.shape:
        raise ValueError(f"the two maps must have one shape, got {first.shape} and {second.shape}")
    percentile = check_number("percentile", percentile, minimum=0.0, maximum=100.0)
    if first.ndim == 2:
        first, second = first[..., None], second[..., None]
    signed = [first.sum(axis=-1), second.sum(axis=-1)]
    absolute = [np.abs(first).sum(axis=-1), np.abs(second).sum(axis=-1)]
    window = min(_SSIM_WINDOW, *(side - 1 + side % 2 for side in first.shape[:2]))
    ssim = structural_similarity(
        VisualizeImageGrayscale(first, percentile),
        VisualizeImageGrayscale(second, percentile),
        data_range=1.0,
        win_size=window,
    )
    return MapSimilarity(_spearman(*signed), _spearman(*absolute), float(ssim))


def compute_model_randomisation(
    method: Explainer,
    x_value: np.ndarray,
    call_model_functions: Iterable[CallModelFunction],
    layer_names: Sequence[str] | None = None,
    call_model_args: Any = None,
    *,
    percentile: float = 99,
    method_kwargs: Mapping[str, Any] | None = None,
) -> RandomisationResult:
    """Adebayo et al.'s model-parameter randomisation test of a saliency method on one input.

    Computes the method's map of ``x_value`` with each model in
    ``call_model_functions`` (the trained model first, then the randomised
    ones, one at a time: a generator of call functions keeps one randomised
    model in memory at a time) and compares every randomised model's map with
    the trained model's (:func:`compare_saliency_maps`).

    Args:
      method: the saliency method: a :class:`saliencykit.core.CoreSaliency`
        (its ``GetMask``), or a function with ``GetMask``'s signature,
        ``method(x_value, call_model_function, call_model_args, **method_kwargs)``
        (e.g. a bound ``GetSmoothedMask``).
      x_value: the un-batched input, e.g. ``[H, W, C]``.
      call_model_functions: an iterable of at least two ``call_model_function``:
        the trained model's, then one per randomisation step (from
        ``saliencykit.torch.randomised_models`` or ``saliencykit.keras.randomised_models``,
        cascading or independent).
      layer_names: a name per randomised model (the layer randomised at that
        step), for the report; default ``"step 1"``, ``"step 2"``...
      call_model_args: passed to every model call unchanged (the same target
        for every model: the trained model's class, as in the paper).
      percentile: of the grayscale images compared by SSIM.
      method_kwargs: the method's own ``GetMask`` parameters by name, e.g.
        ``{"batch_size": 16}`` (a random method's ``seed`` too: fix it, or
        its noise counts as a change).

    Returns:
      A :class:`RandomisationResult`.

    Cost:
      One map per model: (number of models) x the method's model inputs.

    Raises:
      TypeError, ValueError: fewer than two models, a ``layer_names`` whose
        length is not the number of randomised models, maps that are not
        ``[H, W]`` / ``[H, W, C]`` or that change shape, a bad
        ``percentile``, or any error of the method.
    """
    percentile = check_number("percentile", percentile, minimum=0.0, maximum=100.0)
    if isinstance(method, CoreSaliency):
        explain = method.GetMask
    elif callable(method):
        explain = method
    else:
        raise TypeError(f"method must be a CoreSaliency or callable, got {type(method).__name__}")
    if isinstance(layer_names, str):
        raise TypeError("layer_names must be a sequence of names, got a single string")
    names = None if layer_names is None else [str(name) for name in layer_names]
    if isinstance(call_model_functions, Sequence) and names is not None:
        _check_names(names, len(call_model_functions) - 1)
    kwargs = dict(method_kwargs or {})
    masks: list[np.ndarray] = []
    similarities: list[MapSimilarity] = []
    original = np.zeros(0)
    for index, call_model_function in enumerate(call_model_functions):
        mask = np.asarray(explain(x_value, call_model_function, call_model_args, **kwargs))
        if index == 0:
            _as_map("the trained model's map", mask)
            original = mask
            continue
        if mask.shape != original.shape:
            raise ValueError(
                f"the map of randomised model {index} has shape {mask.shape}, the trained model's "
                f"{original.shape}"
            )
        similarities.append(compare_saliency_maps(original, mask, percentile))
        masks.append(mask)
    if not masks:
        raise ValueError("call_model_functions must hold the trained model and at least one randomised model")
    if names is None:
        names = [f"step {step}" for step in range(1, len(masks) + 1)]
    _check_names(names, len(masks))
    table = np.asarray(similarities, dtype=np.float64)
    return RandomisationResult(names, table[:, 0], table[:, 1], table[:, 2], original, masks)


def _check_names(names: list[str], n_randomised: int) -> None:
    if len(names) != n_randomised:
        raise ValueError(
            f"layer_names must name each randomised model: expected {n_randomised} names, got {len(names)}"
        )


def _check_mode(mode: Any) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`RANDOMISATION_MODES`."""
    if mode not in RANDOMISATION_MODES:
        raise ValueError(f"mode must be one of {RANDOMISATION_MODES}, got {mode!r}")


def _base_seed(seed: Any) -> int:
    """The randomised models' seed: ``seed`` checked, or fresh entropy for ``None``."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None or an integer >= 0, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0, got {seed}")
    return int(seed)


def _layer_seed(base: int, position: int) -> int:
    """The seed of the layer at ``position`` in the list: the same layer, the same weights in every mode."""
    return int(np.random.SeedSequence([base, position]).generate_state(1)[0])
