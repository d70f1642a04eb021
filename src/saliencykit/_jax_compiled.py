"""The JAX adapter's compiled functions: what keys and feeds them, and what their programs depend on.

:mod:`saliencykit.jax` compiles one function per (target, request) and caches
it. Here: the cache key of a target (:func:`_target_key`: an int as itself, a
callable by identity, per-row targets by their structure), the arrays of
per-row targets, which are arguments of the compiled function rather than
constants in it (:func:`_row_arrays`, :func:`_bound`), what one compiled
gradient function computes (:class:`_Request`) and its cache entry
(:class:`_Compiled`), and the dependency analysis of a traced program
(:func:`_outputs_reached`) that tells a gradient zero by construction from one
that merely happens to be zero. Private to :mod:`saliencykit.jax`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from . import _adapter
from ._adapter import TOP_CLASS, RowTargets, _SameObject, check_target_type

#: Primitives that call a sub-jaxpr once, its inputs and outputs matching the
#: equation's one to one; the dependency analysis looks inside them.
_CALL_PRIMITIVES = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "remat",
        "remat2",
        "checkpoint",
    }
)


def _target_key(target: Any) -> Any:
    """A hashable cache key for ``target``.

    An int as itself, a callable (or per-row targets not yet grouped) by
    identity, ``"predicted"`` and :data:`~saliencykit._adapter.TOP_CLASS` as
    themselves, :class:`~saliencykit._adapter.RowTargets` by their structure
    (their arrays are arguments of the compiled function: :func:`_row_arrays`).
    """
    if isinstance(target, RowTargets):
        return target.key
    if target is TOP_CLASS or _adapter.is_predicted(target):
        return target
    check_target_type(target)
    return _SameObject(target) if callable(target) or _adapter.is_per_row(target) else int(target)


def _row_arrays(target: Any) -> Any:
    """The arguments a compiled function takes for ``target``: a RowTargets' arrays (int32), else ()."""
    if not isinstance(target, RowTargets):
        return ()
    classes, position, rows = target.arrays
    as_int32 = lambda array: None if array is None else np.asarray(array, np.int32)  # noqa: E731
    return as_int32(classes), as_int32(position), tuple(as_int32(group) for group in rows)


def _bound(target: Any, arrays: Any) -> Any:
    """``target`` with the compiled function's ``arrays`` (a RowTargets' tracers), else ``target``."""
    return target.with_arrays(arrays) if isinstance(target, RowTargets) else target


class _Request(NamedTuple):
    """What one compiled gradient function computes."""

    input_gradients: bool
    layer: bool


#: The :class:`Gradients` fields checked for gradients that are zero by construction.
_GRADIENT_FIELDS = ("input_gradients", "layer_gradients")


def _asks(request: _Request, name: str) -> bool:
    """Whether ``request`` computes the gradient field ``name``."""
    return request.input_gradients if name == "input_gradients" else request.layer


class _Compiled(NamedTuple):
    """A jitted function and the memo of its structural-zero checks (shape, dtype) -> names."""

    function: Callable[..., Any]
    zero_checks: dict[tuple[tuple[int, ...], str], list[str]]


def _outputs_reached(jaxpr: Jaxpr, reached_inputs: Sequence[bool]) -> list[bool]:
    """Which outputs of ``jaxpr`` depend (structurally) on the flagged inputs.

    An over-approximation: an equation's outputs all count as reached when any
    of its inputs is, except for plain call primitives (:data:`_CALL_PRIMITIVES`),
    whose sub-jaxpr is analysed the same way. It never misses a real dependency.

    Args:
      jaxpr: the program.
      reached_inputs: one flag per ``jaxpr.invars``.

    Returns:
      One flag per ``jaxpr.outvars``.
    """
    reached = {var for var, flag in zip(jaxpr.invars, reached_inputs, strict=True) if flag}

    def is_reached(var: Any) -> bool:
        return not isinstance(var, Literal) and var in reached

    for equation in jaxpr.eqns:
        input_flags = [is_reached(var) for var in equation.invars]
        if not any(input_flags):
            continue
        output_flags = [True] * len(equation.outvars)
        if equation.primitive.name in _CALL_PRIMITIVES:
            for name in ("jaxpr", "call_jaxpr"):
                inner = equation.params.get(name)
                if isinstance(inner, ClosedJaxpr):
                    inner = inner.jaxpr
                if (
                    isinstance(inner, Jaxpr)
                    and len(inner.invars) == len(equation.invars)
                    and len(inner.outvars) == len(equation.outvars)
                ):
                    output_flags = _outputs_reached(inner, input_flags)
                    break
        reached.update(var for var, flag in zip(equation.outvars, output_flags, strict=True) if flag)
    return [is_reached(var) for var in jaxpr.outvars]
