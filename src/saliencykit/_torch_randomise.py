"""Randomised copies of a PyTorch model, for the model-parameter randomisation test.

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (arXiv 1810.03292):
:func:`saliencykit.metrics.compute_model_randomisation` compares a method's
map on the trained model with its maps on copies whose layers are
re-initialised. This module makes those copies; the user's model is never
changed (its parameters, their ``.grad``, its buffers, every submodule's
train/eval flag) and neither is torch's global random state.

Exposed by :mod:`saliencykit.torch`: :func:`randomisation_layers`,
:func:`randomised_copy`, :func:`randomised_models`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from . import _adapter
from .metrics.randomisation import _base_seed, _check_mode, _layer_seed

__all__ = ["randomisation_layers", "randomised_copy", "randomised_models"]

Layer = nn.Module | str


def randomisation_layers(model: nn.Module) -> list[str]:
    """The names of the modules that own parameters, from the output end down.

    The modules of ``model.named_modules()`` holding parameters of their own
    (not only through submodules), in reverse registration order: for most
    models (``nn.Sequential``, torchvision's, EfficientNet) the last layer
    first, the order of a cascading randomisation. Check it, or pass your
    own list (whole blocks, e.g. ``"layer4"``, are fine too).

    Raises:
      TypeError: ``model`` is not an ``nn.Module``.
    """
    _check_model(model)
    return [
        name
        for name, module in model.named_modules()
        if next(module.parameters(recurse=False), None) is not None
    ][::-1]


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _layer_names(model: nn.Module, layers: Sequence[Layer] | Layer) -> list[str]:
    """The names, in ``model``, of ``layers`` (modules or names); checked, in order."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(
            f"layers must be a non-empty sequence of modules of the model or names, got {layers!r}"
        )
    named = list(model.named_modules())
    names_of = {id(module): name for name, module in named}
    names = []
    for layer in layers:
        module = _adapter.find_layer(layer, named, nn.Module, kind="an nn.Module", member="module")
        if next(module.parameters(), None) is None:
            raise ValueError(f"layer {names_of[id(module)]!r} has no parameters to randomise")
        names.append(names_of[id(module)])
    return names


def _randomise(model: nn.Module, name: str, seed: int) -> None:
    """Re-initialises, in place, every parameter of the submodule ``name`` of ``model``.

    A module with ``reset_parameters`` (convolutions, linear and normalisation
    layers...) gets its own initialisation (a batch norm's running statistics
    are reset too); any other parameter a normal draw with its trained values'
    mean and standard deviation.
    """
    layer = model.get_submodule(name)
    devices = sorted({p.device.index or 0 for p in layer.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        # Seed only the generators this layer draws from (torch.manual_seed would also reseed,
        # lazily, every CUDA device, outside the fork).
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        for module in layer.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                continue
            for parameter in module.parameters(recurse=False):
                values = parameter.detach().float()
                scale = values.std() if values.numel() > 1 else values.abs().mean()
                parameter.normal_(float(values.mean()), float(scale))


def _fresh_copy(model: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(model)
    duplicate.zero_grad(set_to_none=True)
    return duplicate


def randomised_copy(
    model: nn.Module, layers: Sequence[Layer] | Layer, *, seed: int | None = None
) -> nn.Module:
    """A deep copy of ``model`` with the parameters of ``layers`` re-initialised.

    Every parameter of each listed module and its submodules is drawn anew
    (the module's own ``reset_parameters`` where it has one: PyTorch's default
    initialisation of convolutions, linear and normalisation layers; a normal
    draw with the trained values' mean and standard deviation otherwise). The
    layer at position i of ``layers`` is drawn from a seed made of ``seed``
    and i, so :func:`randomised_models` gives a layer the same random weights
    in every step and mode. ``model`` itself, its gradients, buffers and
    modes, and torch's global random state are left as they were.

    Args:
      model: the trained ``nn.Module``.
      layers: modules of ``model`` or their names (``model.named_modules()``), or one.
      seed: an integer >= 0 for reproducible weights; ``None`` draws fresh entropy.

    Returns:
      The randomised copy (on the model's devices, in its modes, ``.grad`` cleared).

    Raises:
      TypeError, ValueError: ``model`` is not an ``nn.Module``, a layer is not
        in it or has no parameters, or a bad ``seed``.
    """
    _check_model(model)
    names = _layer_names(model, layers)
    base = _base_seed(seed)
    duplicate = _fresh_copy(model)
    for position, name in enumerate(names):
        _randomise(duplicate, name, _layer_seed(base, position))
    return duplicate


def randomised_models(
    model: nn.Module,
    layers: Sequence[Layer] | None = None,
    *,
    mode: str = "cascading",
    seed: int | None = None,
) -> Iterator[tuple[str, nn.Module]]:
    """The randomised models of Adebayo et al.'s test, one at a time: ``(layer name, copy)``.

    ``"cascading"``: step k's copy has the layers ``layers[0..k]`` randomised
    (list them from the output down, as :func:`randomisation_layers` does);
    ``"independent"``: step k's copy has ``layers[k]`` alone randomised. Each
    step is a new copy (keep or drop it); a layer gets the same random
    weights in both modes for one ``seed`` (see :func:`randomised_copy`).
    Made lazily, so a loop holds one or two copies at a time. Feed them to
    :func:`saliencykit.metrics.compute_model_randomisation` through
    ``make_call_model_function``.

    Args:
      model: the trained ``nn.Module``, never changed.
      layers: modules or names, in randomisation order; default
        :func:`randomisation_layers` (every parameter-owning module, top down).
      mode: ``"cascading"`` or ``"independent"``.
      seed: an integer >= 0, or ``None`` for fresh entropy.

    Returns:
      An iterator of ``(name, randomised copy)``, one per layer.

    Raises:
      TypeError, ValueError: at once, for a bad model, layer, mode or seed.
    """
    _check_model(model)
    _check_mode(mode)
    names = _layer_names(model, randomisation_layers(model) if layers is None else layers)
    base = _base_seed(seed)
    return _steps(model, names, mode, base)


def _steps(model: nn.Module, names: list[str], mode: str, base: int) -> Iterator[tuple[str, nn.Module]]:
    running = _fresh_copy(model) if mode == "cascading" else None
    for position, name in enumerate(names):
        if running is not None:
            _randomise(running, name, _layer_seed(base, position))
            yield name, copy.deepcopy(running)
        else:
            duplicate = _fresh_copy(model)
            _randomise(duplicate, name, _layer_seed(base, position))
            yield name, duplicate
