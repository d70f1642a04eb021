"""JAX adapter: a ready ``call_model_function`` from a JAX function.

>>> import saliencykit.core as saliency
>>> from saliencykit.jax import make_call_model_function
>>> call = make_call_model_function(model.apply, target=285, params=variables,
...                                 layer=(features_fn, head_fn), preprocess=normalize)
>>> mask = saliency.IntegratedGradients().GetMask(image, call, x_steps=25, batch_size=25)

The model is any JAX function of a batch: ``apply_fn(params, x)`` when
``params`` is given (Flax's ``model.apply``, Haiku's ``transformed.apply`` with
its ``rng`` bound, a hand-written network), ``apply_fn(x)`` otherwise. The
NumPy batch is handed over as a ``jnp`` array **exactly in its own layout**:
methods of :mod:`saliencykit.core` use channel-last batches (``N x H x W x C``),
which is also the default layout of JAX and Flax convolutions (``NHWC`` with
``HWIO`` kernels), so nothing is permuted (unlike the PyTorch adapter, which
moves the channel axis for ``nn.Conv2d``). The array is ``float32``, or
``float64`` when the batch is ``float64`` and ``jax_enable_x64`` is on;
integer images (``uint8``) become ``float32``. Gradients are taken with respect
to that array, so any ``preprocess`` (scaling from [0, 255], normalisation) is
differentiated through.

Only the keys asked for are computed: ``OUTPUT_LAYER_VALUES`` alone runs the
forward function only; gradients come from one ``jax.vjp`` of the target's sum.
Each (target, keys) combination is ``jax.jit``-compiled once and cached (a new
batch shape retraces once, as ``jax.jit`` always does). Targets passed per call
through ``call_model_args`` are cached too, but only the most recent
:data:`OVERRIDE_CACHE_SIZE` of them, so a fresh ``lambda`` on every call cannot
grow memory without bound (it only costs a retrace each time). Per-row targets
are arguments of the compiled function, not constants in it: per-row class
indices compile once whatever the classes (once more when callables, or
``"predicted"``, join them, and when the rows they take change in number).
Their range is checked before the call, against the output shape found once
per input shape with ``jax.eval_shape``. The functions
are pure and the caches locked, so several threads may call one adapter (or
several adapters of one model) at once.

Grad-CAM needs a layer, and functions have no layers: ``layer`` is a pair
``(features_fn, head_fn)`` that splits the model, ``apply_fn(x) ==
head_fn(features_fn(x))`` (each taking ``params`` first when ``params`` is
given). ``CONVOLUTION_LAYER_VALUES`` is ``features_fn``'s output as returned
(it must be channel-last, ``[N, ..spatial.., C]``, like Flax's convolutions) and
``CONVOLUTION_OUTPUT_GRADIENTS`` the target's gradient with respect to it.

``GUIDED_INPUT_OUTPUT_GRADIENTS`` is not answered: guided backpropagation
changes the backward pass of every ReLU, and the ReLUs inside an arbitrary,
traced JAX function cannot be found and replaced from outside (a PyTorch or
Keras model exposes them as modules or layers). Put the guided rule into the
model itself (a ReLU written with ``jax.custom_vjp`` whose backward pass keeps
only positive gradients where its input was positive) and ask for
``INPUT_OUTPUT_GRADIENTS`` instead.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _adapter
from ._adapter import Adapter, Gradients, RowTargets, check_target_type
from ._jax_compiled import (
    _GRADIENT_FIELDS,
    _asks,
    _bound,
    _Compiled,
    _outputs_reached,
    _Request,
    _row_arrays,
    _target_key,
)
from .core.base import CallModelFunction

__all__ = ["OVERRIDE_CACHE_SIZE", "make_call_model_function", "select_target"]

#: A class index, a callable, ``"predicted"``, or per-row targets (an integer array, a list/tuple).
Target = int | str | Callable[[jax.Array], jax.Array] | np.ndarray | Sequence[Any]
LayerPair = tuple[Callable[..., jax.Array], Callable[..., jax.Array]]

#: How many compiled functions are kept for targets given per call through
#: ``call_model_args`` (least recently used first out). The default target's
#: compiled functions are always kept.
OVERRIDE_CACHE_SIZE = 16

#: Relative tolerance when checking, on the first Grad-CAM call, that the
#: layer pair reproduces ``apply_fn``'s target.
LAYER_PAIR_RTOL = 1e-3

GUIDED_NOT_SUPPORTED = (
    "GUIDED_INPUT_OUTPUT_GRADIENTS is not supported by the JAX adapter: guided backpropagation "
    "replaces the backward pass of every ReLU, and the ReLUs inside a traced JAX function cannot "
    "be found and intercepted from outside (PyTorch and Keras models expose them as modules or "
    "layers). Write the guided rule into the model (a jax.custom_vjp ReLU whose backward pass "
    "keeps only positive gradients where its input was positive) and ask for INPUT_OUTPUT_GRADIENTS."
)


# --------------------------------------------------------------------------
# Targets.
# --------------------------------------------------------------------------


def _take_classes(outputs: jax.Array, classes: Any) -> jax.Array:
    """``outputs[i, classes[i]]`` for every row i."""
    return jnp.take_along_axis(outputs, jnp.asarray(classes)[:, None], axis=1)[:, 0]


#: The JAX operations for ``"predicted"`` and per-row targets (gathers, so gradients flow).
_ROW_OPS = _adapter.RowOps(
    take_rows=lambda values, rows: jnp.take(values, jnp.asarray(rows), axis=0),
    take_classes=_take_classes,
    argmax=lambda outputs: jnp.argmax(outputs, axis=1),
    concat=jnp.concatenate,
)


def select_target(outputs: Any, target: Target) -> jax.Array:
    """Returns one scalar per example: ``outputs[:, target]`` or ``target(outputs)``.

    Works on concrete arrays and inside ``jax.jit`` / ``jax.vjp`` traces.
    ``"predicted"`` is each row's own top class; per-row targets explain row
    i through its own (see :func:`saliencykit._adapter.select_target`).

    Args:
      outputs: the model's output batch, ``[batch, classes]`` for a class
        index, any ``[batch, ...]`` array for a callable; a tuple or list
        means its first element (e.g. Flax's ``(output, state)``).
      target: a class index (negative counts from the end), a callable
        mapping the output batch to one scalar per example, shape
        ``[batch]`` or ``[batch, 1]``, ``"predicted"``, or per-row targets
        (an integer array ``[batch]``, a list/tuple of ``batch`` of those).

    Returns:
      A ``[batch]`` array.

    Raises:
      ValueError: a class index out of range, an output that is not
        ``[batch, classes]`` for an index, an output without a batch axis, or
        a callable that does not return one scalar per example.
      TypeError: a target that is neither an integer nor a callable.
    """
    return _adapter.select_target(
        outputs,
        target,
        is_array=lambda value: hasattr(value, "shape"),
        flatten=lambda selected, batch: jnp.reshape(selected, (batch,)),
        ops=_ROW_OPS,
    )


# --------------------------------------------------------------------------
# The adapter.
# --------------------------------------------------------------------------


def _check_layer_pair(layer: Any) -> LayerPair | None:
    """Returns ``layer`` as a ``(features_fn, head_fn)`` tuple, or ``None``.

    Raises:
      TypeError: ``layer`` is not a tuple/list, or an element is not callable.
      ValueError: it does not have exactly two elements.
    """
    if layer is None:
        return None
    if not isinstance(layer, (tuple, list)):
        raise TypeError(
            "layer must be a pair (features_fn, head_fn) with apply_fn(x) == head_fn(features_fn(x)) "
            f"(a JAX function has no named layers), got {type(layer).__name__}"
        )
    if len(layer) != 2:
        raise ValueError(f"layer must be a pair (features_fn, head_fn), got {len(layer)} element(s)")
    for name, function in zip(("features_fn", "head_fn"), layer, strict=True):
        if not callable(function):
            raise TypeError(f"layer's {name} must be callable, got {type(function).__name__}")
    return tuple(layer)


def _as_model_input(x_value_batch: Any) -> jax.Array:
    """The NumPy batch as a ``jnp`` array: float32, or float64 for float64 input under x64.

    Raises:
      TypeError: a non-numeric batch.
      ValueError: a batch without a leading batch axis (a scalar).
    """
    array = np.asarray(x_value_batch)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"x_value_batch must be a real numeric array, got dtype {array.dtype}")
    if array.ndim < 1:
        raise ValueError(f"x_value_batch must have a leading batch axis, got shape {array.shape}")
    # jax's Config defines its flags as attributes at run time (setattr), unknown to its type hints.
    keep_float64 = array.dtype == np.float64 and jax.config.jax_enable_x64  # type: ignore[attr-defined]
    return jnp.asarray(array.astype(np.float64 if keep_float64 else np.float32, copy=False))


def _writable_copy(value: jax.Array) -> np.ndarray:
    """A writable NumPy copy of a JAX array.

    ``np.asarray`` first (on a CPU device a view of the array's buffer), then one
    NumPy copy: about half the time of ``np.array(value)``, which copies through
    JAX's own ``__array__`` (4 ms against 1.6-2 ms for a 32 x 224 x 224 x 3
    float32 batch).
    """
    return np.asarray(value).copy()


#: Elements of a gradient looked at first, evenly spread, when checking whether it is all zero.
ZERO_CHECK_SAMPLE = 1024


def _all_zero(values: np.ndarray) -> bool:
    """Whether every element of ``values`` is zero.

    An evenly spread sample first: a nonzero element there (a real model's
    gradient) settles it in microseconds instead of a pass over the whole array
    (0.55 ms for a 32 x 224 x 224 x 3 float32 batch); only a sample of zeros
    leads to the full check.
    """
    flat = values.reshape(-1)
    return not flat[:: flat.size // ZERO_CHECK_SAMPLE + 1].any() and not flat.any()


def _require_floating(selected: jax.Array) -> None:
    """Raises ValueError at trace time if the explained output cannot be differentiated."""
    if not jnp.issubdtype(selected.dtype, jnp.floating):
        raise ValueError(
            f"the model's output does not depend differentiably on its input: the target has dtype "
            f"{selected.dtype} (does the function cast to integers or booleans?); gradients need a "
            "floating-point output"
        )


class _JaxCallModelFunction(Adapter):
    """The ``call_model_function`` that :func:`make_call_model_function` returns.

    ``call(x_value_batch, call_model_args=None, expected_keys=None)`` returns a
    dict key -> ``np.ndarray``; see :func:`make_call_model_function`.
    """

    guided_unsupported = GUIDED_NOT_SUPPORTED
    layer_needed = (
        "CONVOLUTION_* keys need the layer=(features_fn, head_fn) argument of make_call_model_function"
    )

    def __init__(
        self,
        apply_fn: Callable[..., Any],
        target: Target,
        params: Any,
        layer: LayerPair | None,
        preprocess: Callable[[jax.Array], jax.Array] | None,
    ) -> None:
        super().__init__(target, has_layer=layer is not None)
        self._apply_fn = apply_fn
        self._default_key = _target_key(target)
        self._has_params = params is not None
        self._params = params
        self._layer = layer
        self._preprocess = preprocess
        self._default_cache: dict[Any, _Compiled] = {}
        self._override_cache: collections.OrderedDict[Any, _Compiled] = collections.OrderedDict()
        # Guards the caches' bookkeeping (the LRU order, evictions); compiled functions run outside it.
        self._cache_lock = threading.Lock()
        self._layer_pair_verified = False
        #: The model's output shape per (input shape, dtype), for the range of per-row class indices.
        self._output_shapes: dict[tuple[tuple[int, ...], str], tuple[int, ...]] = {}

    # ---- the template's operations -----------------------------------------

    def convert(self, x_value_batch: Any) -> jax.Array:
        return _as_model_input(x_value_batch)

    def to_numpy(self, value: Any) -> np.ndarray:
        """A writable NumPy copy (arrays from :meth:`gradients` are NumPy copies already)."""
        return value if isinstance(value, np.ndarray) else _writable_copy(value)

    def forward(self, inputs: jax.Array, target: Target) -> jax.Array:
        self._check_row_classes(inputs, target)
        return self._compiled(target, None).function(self._params, inputs, _row_arrays(target))

    def gradients(
        self, inputs: jax.Array, target: Target, *, want_input: bool, want_layer: bool
    ) -> Gradients:
        """One compiled pass; the target's values come with every gradient computation.

        Raises:
          ValueError: a gradient that is zero by construction, or (on the
            first Grad-CAM call) a layer pair that does not reproduce ``apply_fn``.
        """
        self._check_row_classes(inputs, target)
        request = _Request(want_input, want_layer)
        entry = self._compiled(target, request)
        computed = Gradients(
            *(
                None if value is None else _writable_copy(value)
                for value in entry.function(self._params, inputs, _row_arrays(target))
            )
        )
        all_zero = [
            name for name in _GRADIENT_FIELDS if _asks(request, name) and _all_zero(getattr(computed, name))
        ]
        if all_zero and (dead := self._structurally_zero(entry, inputs, target, request, all_zero)):
            what = "its input" if "input_gradients" in dead else "the Grad-CAM layer's features"
            raise ValueError(
                f"the model's output does not depend differentiably on {what}: its gradient is zero "
                "by construction (does the function cast to integers, round, take an argmax, or use "
                "jax.lax.stop_gradient?)"
            )
        if want_layer and not self._layer_pair_verified:
            self._verify_layer_pair(inputs, target, computed.selected)
        return computed

    def _check_row_classes(self, x: jax.Array, target: Target) -> None:
        """ValueError for a per-row class index out of the model's range (checked before the compiled call).

        Inside the compiled function the indices are tracers, whose values
        cannot be checked (and an out-of-range gather does not fail in JAX).
        """
        if not isinstance(target, RowTargets) or target.classes is None:
            return
        key = (tuple(x.shape), str(x.dtype))
        shape = self._output_shapes.get(key)
        if shape is None:
            outputs = jax.eval_shape(
                lambda params, x_: self._call(self._apply_fn, params, self._model_input(x_)), self._params, x
            )
            if isinstance(outputs, (tuple, list)):
                outputs = outputs[0] if outputs else None
            shape = tuple(getattr(outputs, "shape", ()))
            self._output_shapes[key] = shape
        if len(shape) == 2:
            _adapter.check_row_classes(target, shape[1])

    # ---- the model, as pure functions of (params, x) ----------------------

    def _call(self, function: Callable[..., Any], params: Any, value: jax.Array) -> Any:
        """``function(params, value)``, or ``function(value)`` when the adapter has no params."""
        return function(params, value) if self._has_params else function(value)

    def _model_input(self, x: jax.Array) -> jax.Array:
        """The batch after ``preprocess`` (unchanged without one)."""
        return self._preprocess(x) if self._preprocess is not None else x

    def _forward(self, params: Any, x: jax.Array, target: Target) -> jax.Array:
        """The explained output ``[N]`` of ``apply_fn`` for the ``[N, ...]`` batch ``x``."""
        return select_target(self._call(self._apply_fn, params, self._model_input(x)), target)

    def _features(self, params: Any, x: jax.Array) -> jax.Array:
        """``features_fn``'s output for the batch ``x``, checked to be one floating ``[N, ..., C]`` array.

        Raises:
          ValueError: anything else (a tuple, a lost batch axis, integers).
        """
        features_fn, _ = self.required_layer(self._layer)
        features = self._call(features_fn, params, self._model_input(x))
        if not isinstance(features, jax.Array) or features.ndim < 2 or features.shape[0] != x.shape[0]:
            shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise ValueError(
                "layer's features_fn must return one channel-last array [batch, ..spatial.., channels] "
                f"with the input's batch size {x.shape[0]}, got {shape}"
            )
        if not jnp.issubdtype(features.dtype, jnp.floating):
            raise ValueError(
                f"layer's features_fn returned dtype {features.dtype}: gradients with respect to the "
                "layer need floating-point features"
            )
        return features

    def _differentiate(
        self, params: Any, x: jax.Array, target: Target, request: _Request, cotangent: jax.Array | None
    ) -> Gradients:
        """The requested gradients of ``sum(cotangent * target)`` (``cotangent`` = ones by default)."""

        def weights_like(selected: jax.Array) -> jax.Array:
            if cotangent is None:
                return jnp.ones_like(selected)
            return cotangent.astype(selected.dtype)

        if not request.layer:
            selected, model_vjp = jax.vjp(lambda x_: self._forward(params, x_, target), x)
            _require_floating(selected)
            (input_gradients,) = model_vjp(weights_like(selected))
            return Gradients(selected, input_gradients)
        _, head_fn = self.required_layer(self._layer)
        features_vjp: Callable[..., Any] | None = None
        if request.input_gradients:
            features, features_vjp = jax.vjp(lambda x_: self._features(params, x_), x)
        else:
            features = self._features(params, x)
        selected, head_vjp = jax.vjp(
            lambda features_: select_target(self._call(head_fn, params, features_), target),
            features,
        )
        _require_floating(selected)
        (feature_gradients,) = head_vjp(weights_like(selected))
        input_gradients = features_vjp(feature_gradients)[0] if features_vjp is not None else None
        return Gradients(selected, input_gradients, features, feature_gradients)

    # ---- compiled functions, cached per (target, request) -----------------

    def _compiled(self, target: Target, request: _Request | None) -> _Compiled:
        """The jitted forward (``request`` None) or gradient function for ``target``.

        Thread-safe: concurrent calls share one entry per key, and an entry
        evicted while another thread still runs it stays valid for that run.
        """
        target_key = _target_key(target)
        key: Any
        if target_key == self._default_key:
            cache, key = self._default_cache, request
        else:
            cache, key = self._override_cache, (target_key, request)
        with self._cache_lock:
            entry = cache.get(key)
            if entry is not None:
                if cache is self._override_cache:
                    self._override_cache.move_to_end(key)
                return entry
            if request is None:
                function = jax.jit(lambda params, x, arrays: self._forward(params, x, _bound(target, arrays)))
            else:
                function = jax.jit(
                    lambda params, x, arrays: self._differentiate(
                        params, x, _bound(target, arrays), request, None
                    )
                )
            entry = _Compiled(function, {})
            cache[key] = entry
            if cache is self._override_cache and len(cache) > OVERRIDE_CACHE_SIZE:
                cache.popitem(last=False)
            return entry

    def _structurally_zero(
        self, entry: _Compiled, x: jax.Array, target: Target, request: _Request, names: Sequence[str]
    ) -> list[str]:
        """Which gradients among ``names`` (:class:`Gradients` fields) are identically zero by construction.

        A gradient is linear in the output's cotangent; if the program computing
        it does not read the cotangent at all, it is zero whatever the input
        (an integer cast, ``round``, ``stop_gradient``...), as opposed to a
        gradient that merely happens to be zero at this input (dead ReLUs).
        """
        memo_key = (tuple(x.shape), str(x.dtype))
        if memo_key not in entry.zero_checks:
            present = [name for name in _GRADIENT_FIELDS if _asks(request, name)]

            def probe(params: Any, x_: jax.Array, cotangent: jax.Array) -> list[jax.Array]:
                answer = self._differentiate(params, x_, target, request, cotangent)
                return [getattr(answer, name) for name in present]

            cotangent = jax.ShapeDtypeStruct((x.shape[0],), x.dtype)
            closed = jax.make_jaxpr(probe)(self._params, x, cotangent)
            reached = _outputs_reached(closed.jaxpr, [False] * (len(closed.jaxpr.invars) - 1) + [True])
            entry.zero_checks[memo_key] = [
                name for name, flag in zip(present, reached, strict=True) if not flag
            ]
        return [name for name in entry.zero_checks[memo_key] if name in names]

    # ---- the Grad-CAM layer pair --------------------------------------------

    def _verify_layer_pair(self, x: jax.Array, target: Target, head_values: np.ndarray) -> None:
        """Checks (on the first Grad-CAM call) that head_fn(features_fn(x)) gives apply_fn(x)'s target.

        Raises:
          ValueError: the two differ by more than :data:`LAYER_PAIR_RTOL` (relative).
        """
        direct = np.asarray(self._compiled(target, None).function(self._params, x, _row_arrays(target)))
        scale = float(np.max(np.abs(direct))) if direct.size else 0.0
        if direct.shape != head_values.shape or not np.allclose(
            head_values, direct, rtol=LAYER_PAIR_RTOL, atol=LAYER_PAIR_RTOL * max(scale, 1e-6)
        ):
            difference = (
                float(np.max(np.abs(head_values - direct)))
                if direct.shape == head_values.shape
                else f"shapes {head_values.shape} vs {direct.shape}"
            )
            raise ValueError(
                "layer (features_fn, head_fn) does not reproduce apply_fn: head_fn(features_fn(x)) "
                f"differs from apply_fn(x) on the target by {difference}"
            )
        self._layer_pair_verified = True


def make_call_model_function(
    apply_fn: Callable[..., Any],
    target: Target,
    *,
    params: Any = None,
    layer: LayerPair | None = None,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
) -> CallModelFunction:
    """Returns a ``call_model_function`` for a JAX model.

    Args:
      apply_fn: the model, ``apply_fn(params, x)`` when ``params`` is given and
        ``apply_fn(x)`` otherwise; ``x`` is the batch as a ``jnp`` array in the
        NumPy batch's own (channel-last) layout, ``float32`` (``float64`` for a
        ``float64`` batch when ``jax_enable_x64`` is on). It returns
        ``[N, classes]`` (or anything a callable ``target`` understands; a tuple
        or list means its first element). It must be traceable by ``jax.jit``.
      target: what is explained, one scalar per example: a class index
        (``outputs[:, target]``), a callable, ``"predicted"`` (each row's top
        class) or per-row targets, as :func:`select_target` takes them;
        ``call_model_args`` overrides it per call (one of these, or a dict
        with a ``"target"`` entry).
      params: the model's parameters, a pytree of arrays passed to every
        function as its first argument (and as an argument of the jitted
        functions, not baked into them as constants); gradients are never taken
        with respect to them. ``None``: the functions take ``x`` only.
      layer: for the ``CONVOLUTION_*`` (Grad-CAM) keys only: a pair
        ``(features_fn, head_fn)`` splitting the model at the layer,
        ``apply_fn(x) == head_fn(features_fn(x))`` (checked on the first
        Grad-CAM call). ``features_fn`` must return one channel-last array
        ``[N, ..spatial.., C]``, returned as it is as ``CONVOLUTION_LAYER_VALUES``.
      preprocess: applied to the ``jnp`` batch before the model (and before
        ``features_fn``), e.g. ``lambda x: (x / 255 - mean) / std``;
        differentiated through.

    Returns:
      ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``
      answering ``INPUT_OUTPUT_GRADIENTS``, ``OUTPUT_LAYER_VALUES`` (the
      target, shape [N]), ``CONVOLUTION_LAYER_VALUES`` and
      ``CONVOLUTION_OUTPUT_GRADIENTS`` as writable NumPy arrays (copies, so a
      caller may modify a mask in place). It is an instance of the shared
      template, :class:`saliencykit._adapter.Adapter`, with its batch-scheduler
      methods ``pack_call_model_args`` and ``resolve_call_model_args``.

    Raises:
      TypeError, ValueError: at construction for a non-callable ``apply_fn`` or
        ``preprocess``, a bad target type or a bad ``layer`` pair; in calls for
        a bad or out-of-range target, an output that is not one scalar per
        example, an unknown key, ``GUIDED_INPUT_OUTPUT_GRADIENTS`` (see the
        module's docstring), ``CONVOLUTION_*`` keys without ``layer``, a layer
        pair that does not reproduce ``apply_fn``, or a model whose output does
        not depend differentiably on its input (integer outputs, or a gradient
        that is zero by construction).
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a callable JAX function, got {type(apply_fn).__name__}")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess must be callable or None, got {type(preprocess).__name__}")
    check_target_type(target)
    layer_pair = _check_layer_pair(layer)
    if params is not None:
        try:
            params = jax.device_put(params)
        except (TypeError, ValueError) as error:
            raise TypeError(f"params must be a pytree of arrays: {error}") from None
    return _JaxCallModelFunction(apply_fn, target, params, layer_pair, preprocess)
