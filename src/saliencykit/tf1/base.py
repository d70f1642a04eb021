"""Base classes of the TF1 wrappers: ``TF1Saliency`` and ``TF1CoreSaliency``.

A TF1 method is a thin wrapper: it builds a ``call_model_function`` from
``(graph, session, y, x)`` once, in its constructor, and hands every
``GetMask`` / ``GetSmoothedMask`` to the matching :mod:`saliencykit.core`
method, with the ``feed_dict`` as ``call_model_args``. Before a method sends
batches of several inputs to the model it checks that the static shapes of
``x`` and ``y`` allow such batches (:meth:`TF1Saliency.validate_xy_tensor_shape`);
its errors start with the reference library's messages
(:data:`Y_SHAPE_ERROR_MESSAGE`, :data:`X_SHAPE_ERROR_MESSAGE`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from ..core.base import CallModelFunction, CoreSaliency, check_int
from .utils import _create_call_model_function, check_gradient_can_be_built, check_graph_session_tensors

__all__ = ["X_SHAPE_ERROR_MESSAGE", "Y_SHAPE_ERROR_MESSAGE", "TF1CoreSaliency", "TF1Saliency"]

#: The reference library's message (``saliency.tf1.base``) for an ``x`` whose first dimension cannot
#: take the batches; formatted with the expected and the actual dimension.
X_SHAPE_ERROR_MESSAGE = (
    "Unexpected outermost dimension for x tensor. Expected {} for outermost dimension, actual {}"
)
#: The reference library's message (``saliency.tf1.base``) for a ``y`` whose shape cannot take the
#: batches; formatted with the expected and the actual shape.
Y_SHAPE_ERROR_MESSAGE = "Unexpected shape for y tensor. Expected shape {}, actual {}"


class TF1Saliency:
    """Base class of every TF1 saliency method. Alone, it computes nothing.

    Subclasses implement :meth:`GetMask`. Those built on a core method set
    ``core_instance`` and ``call_model_function``; :meth:`GetSmoothedMask`
    then runs the core method's SmoothGrad (which batches noisy samples where
    the method allows it). A subclass that only implements ``GetMask`` (as
    user code written for the reference may) gets SmoothGrad around its
    ``GetMask``.

    Attributes:
      graph, session, y, x: as given to the constructor.
      core_instance: the :mod:`saliencykit.core` method doing the work, or None.
      call_model_function: how ``core_instance`` reaches the model, or None.
    """

    core_instance: CoreSaliency | None = None
    call_model_function: CallModelFunction | None = None

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        """Stores the model's graph, session and tensors.

        Args:
          graph: the ``tf.Graph`` of the model.
          session: what runs ``graph``, variables initialised: a
            ``tf.compat.v1.Session``, or anything with a callable ``run``
            (``MonitoredSession``, a debugging wrapper, a proxy).
          y: the explained output, one scalar per example: shape ``[None]``
            (``[batch_size]`` for a fixed batch, ``[]`` for a batch of one),
            e.g. ``logits[:, class_index]``.
          x: the input tensor, batch dimension first, e.g. a placeholder of
            shape ``[None, H, W, C]``.

        Raises:
          TypeError: ``graph`` not a ``tf.Graph``, ``session`` without ``run``,
            ``x`` or ``y`` not a graph tensor.
          ValueError: a tensor of another graph, or a ``tf.compat.v1.Session``
            of another graph.
        """
        check_graph_session_tensors(graph, session, y=y, x=x)
        self.graph = graph
        self.session = session
        self.y = y
        self.x = x

    # Ends in ``*args: Any, **kwargs: Any``: every method has its own parameters after
    # ``feed_dict`` (the reference API), so no override narrows this signature.
    def GetMask(  # noqa: N802
        self, x_value: np.ndarray, feed_dict: Mapping[Any, Any] | None = None, *args: Any, **kwargs: Any
    ) -> np.ndarray:
        """Returns the mask of the single, un-batched ``x_value``.

        Args:
          x_value: the input, without the batch dimension.
          feed_dict: further entries for ``session.run`` (other placeholders).
          *args, **kwargs: the method's own arguments.
        """
        raise NotImplementedError("A derived class should implement GetMask()")

    def GetSmoothedMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool | None = None,
        seed: int | np.random.Generator | None = None,
        aggregation: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the mask smoothed with SmoothGrad (Smilkov et al. 2017, arXiv 1706.03825).

        The mask is averaged over ``nsamples`` copies of ``x_value`` plus
        Gaussian noise of standard deviation ``stdev_spread * (max(x) - min(x))``.

        Args:
          x_value: the input, without the batch dimension.
          feed_dict: further entries for ``session.run``; copied, never changed.
          stdev_spread: noise level as a fraction of the input's range (>= 0).
          nsamples: number of noisy samples (>= 1).
          magnitude: average the squared masks (True) or the masks (False);
            ``None``: True unless ``aggregation`` is given.
          seed: ``None`` draws the noise from NumPy's global random state, like
            the reference; an ``int`` or ``np.random.Generator`` makes it
            reproducible (new).
          aggregation: ``"mean"`` (SmoothGrad), ``"square"`` (SmoothGrad²,
            ``magnitude=True``) or ``"variance"`` (VarGrad); see
            :meth:`saliencykit.core.CoreSaliency.GetSmoothedMask` (new).
          **kwargs: the arguments of :meth:`GetMask`; for gradient methods
            ``batch_size`` sends that many noisy samples to ``session.run`` at once.

        Returns:
          An array of the shape :meth:`GetMask` returns.

        Raises:
          TypeError: an argument :meth:`GetMask` does not take, or of a wrong type.
          ValueError: bad arguments, or ``x``/``y`` shapes that do not allow the
            batches asked for.
        """
        if self.core_instance is None:
            return _MaskOfTF1Method(self).GetSmoothedMask(
                x_value,
                _unused_call_model_function,
                feed_dict,
                stdev_spread,
                nsamples,
                magnitude,
                seed=seed,
                aggregation=aggregation,
                **kwargs,
            )
        self._check_batching(self._mask_arguments(kwargs), nsamples=nsamples)
        return self.core_instance.GetSmoothedMask(
            x_value,
            # Set with core_instance (TF1CoreSaliency, GuidedBackprop).
            cast(CallModelFunction, self.call_model_function),
            call_model_args=feed_dict,
            stdev_spread=stdev_spread,
            nsamples=nsamples,
            magnitude=magnitude,
            seed=seed,
            aggregation=aggregation,
            **kwargs,
        )

    def validate_xy_tensor_shape(
        self, x_steps: int | None = 1, batch_size: int = 1, steps_name: str = "x_steps"
    ) -> None:
        """Checks that ``x`` and ``y`` can take ``x_steps`` inputs in batches of ``batch_size``.

        The batches all hold ``batch_size`` inputs when ``batch_size`` divides
        ``x_steps``; otherwise the last one is smaller. So ``x``'s first
        dimension must be ``None`` (or ``batch_size`` when every batch is
        full), and ``y`` must hold one value per example: a shape with one
        unknown (batch) dimension and otherwise size 1 (``[None]``,
        ``[None, 1]``), or a fixed shape of ``batch_size`` elements when every
        batch is full (``[]`` or ``[1]`` for batches of one). Unknown ranks
        are not checked.

        Args:
          x_steps: how many inputs the method sends to the model; ``None`` when
            that is not known in advance (batches may then differ in size).
          batch_size: the most inputs in one ``session.run``.
          steps_name: the name of ``x_steps`` in the caller's API, for messages.

        Raises:
          TypeError, ValueError: ``x_steps`` or ``batch_size`` not an integer >= 1.
          ValueError: ``x`` or ``y`` has a shape that cannot take these batches;
            the message starts with the reference's :data:`X_SHAPE_ERROR_MESSAGE`
            or :data:`Y_SHAPE_ERROR_MESSAGE`, formatted as the reference did.
        """
        batch_size = check_int("batch_size", batch_size)
        if x_steps is not None:
            x_steps = check_int(steps_name, x_steps)
        full_batches = x_steps is not None and x_steps % batch_size == 0
        fixed_size = batch_size if full_batches else None
        batches = (
            f"{x_steps} model inputs ({steps_name}) in batches of {batch_size}"
            if x_steps is not None
            else f"batches of up to {batch_size} model inputs"
        )

        y_dims = self.y.shape.as_list() if self.y.shape.rank is not None else None
        if y_dims is not None:
            known_size = math.prod(dim for dim in y_dims if dim is not None)
            has_batch_dim = None in y_dims
            if not ((has_batch_dim and known_size == 1) or (not has_batch_dim and known_size == fixed_size)):
                reference_expected = "[None]"
                expected = "one value per example: shape [None] (or [None, 1])"
                if fixed_size is not None:
                    reference_expected += f" or tensor with size {fixed_size}"
                    expected += f", or a fixed shape of {fixed_size} element(s)"
                raise ValueError(
                    Y_SHAPE_ERROR_MESSAGE.format(reference_expected, y_dims)
                    + f". y must hold {expected} for {batches}; got y of shape {y_dims} "
                    "(explain one output per example, e.g. logits[:, class_index])"
                )

        x_dims = self.x.shape.as_list() if self.x.shape.rank else None
        if x_dims is not None and x_dims[0] not in (None, fixed_size):
            expected = "None" if fixed_size is None else f"None or {fixed_size}"
            raise ValueError(
                X_SHAPE_ERROR_MESSAGE.format(expected, x_dims[0])
                + f". x must have a first (batch) dimension of {expected} for {batches}; "
                f"got x of shape {x_dims}"
            )

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """Checks ``x`` and ``y`` for the batches a call with ``arguments`` makes.

        The default suits methods whose ``GetMask`` sends its inputs in batches
        of ``batch_size`` (a number not known in advance): with a
        ``batch_size`` other than 1 both need a ``None`` batch dimension.
        Methods without ``batch_size`` check nothing, as in the reference.

        Args:
          arguments: every argument of :meth:`GetMask` by name, defaults filled in.
          nsamples: the number of noisy samples in :meth:`GetSmoothedMask`, else None.
        """
        batch_size = arguments.get("batch_size", 1)
        if batch_size != 1:
            self.validate_xy_tensor_shape(None, batch_size)

    def _mask_arguments(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Binds ``kwargs`` to :meth:`GetMask`'s signature: every argument by name, defaults filled in.

        Raises:
          TypeError: ``kwargs`` holds an argument :meth:`GetMask` does not take.
        """
        signature = inspect.signature(self.GetMask)
        try:
            bound = signature.bind(None, None, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}.GetSmoothedMask: {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(parameter.name, {}))
        return arguments


class TF1CoreSaliency(TF1Saliency):
    """Base class of the TF1 methods built on a :mod:`saliencykit.core` method.

    The constructor builds ``call_model_function`` with
    :func:`~saliencykit.tf1.utils.create_tf1_call_model_function` (its
    gradient ops are added to ``graph`` once per tensors and shared). It adds
    only the gradients the method needs (:attr:`gradients_needed`), and
    checks that they can be added (a finalized graph raises
    :class:`~saliencykit.tf1.utils.GraphFinalizedError`, a ``RuntimeError`` as
    in the reference). Whether ``y`` is differentiable is checked at the first
    call that needs a gradient.

    Attributes:
      gradients_needed: the tensors (``"x"``, ``"conv_layer"``) with respect
        to which the method differentiates ``y``: class attribute, ``("x",)``
        by default, empty for forward-only methods (Occlusion).
    """

    gradients_needed: tuple[str, ...] = ("x",)
    call_model_function: CallModelFunction

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None) -> None:
        """Builds the ``call_model_function`` of the graph.

        Args:
          graph, session, y, x: see :class:`TF1Saliency`.
          conv_layer: a channel-last activation tensor ``[batch, ..., C]`` of the
            graph, needed by Grad-CAM only.

        Raises:
          TypeError, ValueError: see :class:`TF1Saliency`.
          GraphFinalizedError: ``graph`` is finalized and lacks a gradient the
            method needs (a ``RuntimeError``, as in the reference, and a ``ValueError``).
        """
        super().__init__(graph, session, y, x)
        self.conv_layer = conv_layer
        self.call_model_function = _create_call_model_function(
            graph, session, y, x, conv_layer, self.gradients_needed
        )
        wrt_of_name = {"x": x, "conv_layer": conv_layer}
        for name in self.gradients_needed:
            if wrt_of_name[name] is not None:
                check_gradient_can_be_built(graph, y, wrt_of_name[name], name)


def _unused_call_model_function(*args: Any, **kwargs: Any) -> Mapping[str, Any]:
    """The ``call_model_function`` given to :class:`_MaskOfTF1Method`, whose ``GetMask`` never calls it."""
    raise AssertionError("_MaskOfTF1Method calls the TF1 method's GetMask, not a call_model_function")


class _MaskOfTF1Method(CoreSaliency):
    """A core view of a TF1 method that only has ``GetMask``: SmoothGrad calls that ``GetMask``."""

    def __init__(self, method: TF1Saliency) -> None:
        self.method = method

    def GetMask(  # noqa: N802
        self, x_value: np.ndarray, call_model_function: Any, call_model_args: Any = None, **kwargs: Any
    ) -> np.ndarray:
        return np.asarray(self.method.GetMask(x_value, call_model_args, **kwargs))
