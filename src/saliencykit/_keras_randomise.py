"""Randomised copies of a Keras model, for the model-parameter randomisation test.

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (arXiv 1810.03292):
:func:`saliencykit.metrics.compute_model_randomisation` compares a method's
map on the trained model with its maps on copies whose layers are
re-initialised. This module makes those copies (``keras.models.clone_model``
and the trained weights, then new weights for the chosen layers); the user's
model, its weights and ``trainable`` flags are never changed.

Exposed by :mod:`saliencykit.keras`: :func:`randomisation_layers`,
:func:`randomised_copy`, :func:`randomised_models`. The PyTorch counterpart,
with the same arguments and seeding rule, is :mod:`saliencykit._torch_randomise`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from . import _adapter
from ._keras_state import _all_layers
from .metrics.randomisation import _base_seed, _check_mode, _layer_seed

__all__ = ["randomisation_layers", "randomised_copy", "randomised_models"]


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.weights:
        raise ValueError("model has no weights: build it first (call it on an input, or give it an Input)")


def _units(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """The layers holding weights, in order: nested models are opened, other layers kept whole."""
    for sub in getattr(layer, "layers", ()):
        if isinstance(sub, keras.Model):
            yield from _units(sub)
        elif sub.weights:
            yield sub


def randomisation_layers(model: keras.Model) -> list[str]:
    """The names of the layers that hold weights, from the output end down.

    The layers of ``model.layers`` (nested models opened) that have weights,
    last first: the order of a cascading randomisation for a sequential or
    functional model. Check it, or pass your own list.

    Raises:
      TypeError, ValueError: ``model`` is not a built ``keras.Model``.
    """
    _check_model(model)
    return [layer.name for layer in _units(model)][::-1]


def _find(
    model: keras.Model, layers: Sequence[keras.layers.Layer | str] | keras.layers.Layer | str
) -> list[keras.layers.Layer]:
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(
            f"layers must be a non-empty sequence of layers of the model or names, got {layers!r}"
        )
    named = [(layer.name, layer) for layer in _all_layers(model)]
    found = []
    for layer in layers:
        obj = _adapter.find_layer(layer, named, keras.layers.Layer, kind="a Keras layer", member="layer")
        if not obj.weights:
            raise ValueError(f"layer {obj.name!r} has no weights to randomise")
        found.append(obj)
    return found


def _clone(model: keras.Model) -> keras.Model:
    try:
        duplicate = keras.models.clone_model(model)
    except Exception as error:  # a subclassed model without a usable get_config()
        first_line = (str(error).splitlines() or [""])[0]
        raise ValueError(
            f"cannot copy model {model.name!r} with keras.models.clone_model ({type(error).__name__}: "
            f"{first_line}); build it with the functional or Sequential API, or give it a "
            "get_config/from_config that rebuilds it"
        ) from error
    if not duplicate.weights and model.weights:
        duplicate.build(model.input_shape)
    duplicate.set_weights(model.get_weights())
    return duplicate


def _counterparts(model: keras.Model, duplicate: keras.Model, layers: list[keras.layers.Layer]) -> list[Any]:
    """The clone's layers at the positions of ``layers`` in the original (names may repeat)."""
    originals, copies = _all_layers(model), _all_layers(duplicate)
    index = {id(layer): position for position, layer in enumerate(originals)}
    return [copies[index[id(layer)]] for layer in layers]


def _initializer(layer: keras.layers.Layer, variable_name: str) -> Any:
    short = variable_name.removesuffix("_kernel")
    for attribute in (f"{variable_name}_initializer", f"{short}_initializer", "depthwise_initializer"):
        initializer = getattr(layer, attribute, None)
        if initializer is not None and (attribute != "depthwise_initializer" or variable_name == "kernel"):
            return keras.initializers.get(initializer)
    return None


def _randomise(layer: keras.layers.Layer, seed: int) -> None:
    """New values, in place, for every weight of ``layer`` and its sublayers.

    A weight whose layer has an initializer for it (``kernel_initializer``,
    ``gamma_initializer``...) is drawn with that initializer, seeded; any
    other a normal draw with its trained values' mean and standard deviation.
    """
    for depth, sub in enumerate(layer._flatten_layers(include_self=True, recursive=True)):
        nested = {
            id(w) for inner in sub._flatten_layers(include_self=False, recursive=True) for w in inner.weights
        }
        own = [weight for weight in sub.weights if id(weight) not in nested]
        for position, weight in enumerate(own):
            variable_seed = int(np.random.SeedSequence([seed, depth, position]).generate_state(1)[0] >> 1)
            initializer = _initializer(sub, weight.name)
            if initializer is not None:
                config = initializer.get_config()
                if "seed" in config:
                    initializer = type(initializer).from_config({**config, "seed": variable_seed})
                values = keras.ops.convert_to_numpy(initializer(shape=weight.shape, dtype=weight.dtype))
            else:
                trained = keras.ops.convert_to_numpy(weight).astype(np.float64)
                scale = trained.std() if trained.size > 1 else float(np.abs(trained).mean())
                values = np.random.default_rng(variable_seed).normal(trained.mean(), scale, trained.shape)
            weight.assign(np.asarray(values).astype(keras.backend.standardize_dtype(weight.dtype)))


def randomised_copy(
    model: keras.Model,
    layers: Sequence[keras.layers.Layer | str] | keras.layers.Layer | str,
    *,
    seed: int | None = None,
) -> keras.Model:
    """A copy of ``model`` (``clone_model`` with the trained weights) with ``layers`` re-initialised.

    Every weight of each listed layer (and its sublayers) is drawn anew with
    the layer's own initializer (``kernel_initializer``, ``bias_initializer``,
    a batch normalisation's ``gamma``/``beta``/moving statistics
    initializers...) seeded from ``seed`` and the layer's position i in
    ``layers``; a weight without one gets a normal draw with its trained
    values' mean and standard deviation. The model itself is not changed.

    Args:
      model: a built functional or Sequential ``keras.Model``.
      layers: layers of ``model`` (nested included) or their names, or one.
      seed: an integer >= 0 for reproducible weights; ``None`` draws fresh entropy.

    Returns:
      The randomised copy.

    Raises:
      TypeError, ValueError: not a built ``keras.Model``, a model
        ``clone_model`` cannot copy (a subclassed model without ``get_config``),
        a layer not in it or without weights, or a bad ``seed``.
    """
    _check_model(model)
    chosen = _find(model, layers)
    base = _base_seed(seed)
    duplicate = _clone(model)
    for position, layer in enumerate(_counterparts(model, duplicate, chosen)):
        _randomise(layer, _layer_seed(base, position))
    return duplicate


def randomised_models(
    model: keras.Model,
    layers: Sequence[keras.layers.Layer | str] | None = None,
    *,
    mode: str = "cascading",
    seed: int | None = None,
) -> Iterator[tuple[str, keras.Model]]:
    """The randomised models of Adebayo et al.'s test, one at a time: ``(layer name, copy)``.

    As :func:`saliencykit.torch.randomised_models`: ``"cascading"`` randomises
    ``layers[0..k]`` at step k (list them from the output down, as
    :func:`randomisation_layers` does), ``"independent"`` ``layers[k]`` alone;
    each step is a new copy and a layer gets the same weights in both modes
    for one ``seed``. Made lazily.

    Args:
      model: a built functional or Sequential ``keras.Model``, never changed.
      layers: layers or names, in randomisation order; default :func:`randomisation_layers`.
      mode: ``"cascading"`` or ``"independent"``.
      seed: an integer >= 0, or ``None`` for fresh entropy.

    Returns:
      An iterator of ``(name, randomised copy)``, one per layer.

    Raises:
      TypeError, ValueError: at once, for a bad model, layer, mode or seed.
    """
    _check_model(model)
    _check_mode(mode)
    chosen = _find(model, randomisation_layers(model) if layers is None else layers)
    base = _base_seed(seed)
    return _steps(model, chosen, mode, base)


def _steps(
    model: keras.Model, chosen: list[keras.layers.Layer], mode: str, base: int
) -> Iterator[tuple[str, keras.Model]]:
    running = _clone(model) if mode == "cascading" else None
    for position, layer in enumerate(chosen):
        duplicate = _clone(model) if running is None else running
        (target,) = _counterparts(model, duplicate, [layer])
        _randomise(target, _layer_seed(base, position))
        yield layer.name, duplicate if running is None else _clone(running)
