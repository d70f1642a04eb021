"""The Grad-CAM layer of a model, looked up by object or by name, with one "did you mean" rule."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any


def find_layer(
    layer: Any,
    named: Sequence[tuple[str, Any]],
    layer_type: type | tuple[type, ...],
    *,
    kind: str,
    member: str,
) -> Any:
    """The layer of a model given as an object or a name.

    Args:
      layer: the caller's ``layer`` argument: one of the objects in ``named``,
        or the name of exactly one of them.
      named: the model's (name, layer) pairs, nested layers included.
      layer_type: the framework's layer type(s), for the type check.
      kind: the expected type in words, e.g. ``"an nn.Module"``.
      member: what a layer is called in the framework, e.g. ``"module"``.

    Raises:
      ValueError: no such layer (with the closest names, by
        :func:`difflib.get_close_matches`), or a name shared by several layers.
      TypeError: ``layer`` is neither a string nor of ``layer_type``.
    """
    if isinstance(layer, str):
        matches = list({id(obj): obj for name, obj in named if name == layer}.values())
        if not matches:
            close = difflib.get_close_matches(layer, [name for name, _ in named if name], n=5)
            similar = f"; similar: {close}" if close else ""
            raise ValueError(f"layer {layer!r} is not a {member} of the model{similar}")
        if len(matches) > 1:
            raise ValueError(f"layer name {layer!r} is shared by {len(matches)} {member}s; pass the object")
        return matches[0]
    if isinstance(layer, layer_type):
        if not any(obj is layer for _, obj in named):
            name = getattr(layer, "name", None)
            what = f"{name!r} ({type(layer).__name__})" if isinstance(name, str) else type(layer).__name__
            raise ValueError(f"layer {what} is not a {member} of the model")
        return layer
    raise TypeError(f"layer must be {kind} of the model or its name, got {type(layer).__name__}")
