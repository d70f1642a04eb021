"""Checks shared by the framework adapters (saliencykit.torch, .keras, .jax).

Pure Python: each adapter does the framework-specific tensor work and calls
these for the rules every framework follows identically.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from .core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)

#: Keys that need a backward pass through the plain (not guided) model.
GRADIENT_KEYS = (INPUT_OUTPUT_GRADIENTS, CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS)
#: Every key an adapter answers.
KNOWN_KEYS = (*GRADIENT_KEYS, OUTPUT_LAYER_VALUES, GUIDED_INPUT_OUTPUT_GRADIENTS)


def check_target_type(target: Any) -> None:
    """Raises TypeError unless ``target`` is an integer (not a bool) or a callable."""
    if callable(target):
        return
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"target must be a class index (int) or a callable, got {type(target).__name__}")


def check_class_index(target: int, output_shape: Sequence[int]) -> None:
    """Raises ValueError unless ``output_shape`` is ``[batch, classes]`` and ``target`` indexes a class."""
    check_target_type(target)
    if len(output_shape) != 2:
        raise ValueError(
            f"a class-index target needs a [batch, classes] model output, got shape {tuple(output_shape)}; "
            "pass a callable target instead"
        )
    if not -output_shape[1] <= target < output_shape[1]:
        raise ValueError(f"target class {target} is out of range for a model with {output_shape[1]} outputs")


def check_one_scalar_per_example(selected_shape: Sequence[int] | None, what: str, batch: int) -> None:
    """Raises ValueError unless a callable target's result has shape ``[batch]`` or ``[batch, 1]``.

    ``selected_shape`` is None when the result is not a tensor; ``what`` names
    what came back (its type) for the message.
    """
    if selected_shape is None or tuple(selected_shape) not in ((batch,), (batch, 1)):
        returned = tuple(selected_shape) if selected_shape is not None else what
        raise ValueError(
            f"target must map the model's output batch to one scalar per example, "
            f"shape ({batch},); it returned {returned}"
        )


def target_from_call_model_args(call_model_args: Any, default: Any) -> Any:
    """The target of one call.

    ``call_model_args`` itself when it is an int or a callable, its
    ``"target"`` entry when it is a dict, else ``default``.
    """
    if call_model_args is None:
        return default
    if isinstance(call_model_args, dict):
        return call_model_args.get("target", default)
    return call_model_args


def checked_keys(expected_keys: Sequence[str] | None) -> list[str]:
    """``expected_keys`` as a list (default ``[INPUT_OUTPUT_GRADIENTS]``); ValueError for unknown keys."""
    keys = list(expected_keys) if expected_keys is not None else [INPUT_OUTPUT_GRADIENTS]
    unknown = [key for key in keys if key not in KNOWN_KEYS]
    if unknown:
        raise ValueError(f"unknown expected_keys {unknown}; this adapter answers {list(KNOWN_KEYS)}")
    return keys
