"""Guided Backpropagation for a TF1 graph (Springenberg et al. 2014, arXiv 1412.6806).

Guided backpropagation changes the backward pass of every ReLU: it lets a
gradient through only where the ReLU's forward output was positive *and* the
gradient arriving from above is positive. TF1 graphs fix an op's gradient
function when the op is created, so the graph is copied with its ReLUs
re-labelled:

1. ``graph.as_graph_def()`` is taken (this adds nothing to ``graph``); every
   ``Relu`` and ``Relu6`` node gets the ``_gradient_op_type`` attribute that
   points ``tf.gradients`` to the guided rule registered here, and the device
   placements are cleared (the copy runs in a local session).
2. The def is imported into a new ``tf.Graph`` under the same names, and a
   new ``tf.compat.v1.Session`` is opened on it.
3. The values of the variables that ``y`` depends on are read from the user's
   session by fetching tensors that already exist in ``graph`` (a ref
   variable's own output; a resource variable's existing ``ReadVariableOp``)
   and written into the copy through placeholders fed to assign ops built in
   the copy. Nothing is written to disk (the reference saves a checkpoint to
   a fixed path in ``/tmp``) and no op is added to ``graph``, so a
   finalized graph is fine. The values are read with one
   ``session.run(list_of_tensors)``, so any session proxy works (a
   ``MonitoredSession``, a debugging wrapper) as long as its ``run`` returns
   the list of values a ``tf.compat.v1.Session`` returns.
4. The guided gradient ``d sum(y) / dx`` is built in the copy, which is then
   finalized.

The copy holds a second copy of those variables (memory). It is a snapshot:
variables changed in the user's session later (training) are not seen; build
a new ``GuidedBackprop`` then. Only variables are copied: other session state
(lookup tables, queues, iterators) is not, and ReLUs inside graph functions
(``graph_def.library``) keep their plain gradient. ``close()`` (or a ``with``
block, or garbage collection) closes the copy's session.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core import gradients as core_gradients
from ..core.base import GUIDED_INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, CallModelFunction
from ._tensorflow import tf, tf1
from .base import TF1Saliency
from .utils import NotDifferentiableError, checked_expected_keys, feed_dict_with_input, gradient_tensor

__all__ = ["GuidedBackprop", "copy_graph_with_guided_relus"]

#: Op type -> name of its guided gradient function (registered below).
GUIDED_GRADIENT_OF_OP = {"Relu": "SaliencykitGuidedRelu", "Relu6": "SaliencykitGuidedRelu6"}
#: Op types holding a variable's value.
VARIABLE_OP_TYPES = ("VariableV2", "Variable", "VarHandleOp")
#: The keys the guided graph's call_model_function answers.
GUIDED_KEYS = (GUIDED_INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES)


def _guided_relu_gradient(op: Any, gradient: Any) -> Any:
    """ReLU's gradient with negative incoming gradients zeroed: ``grad * (grad > 0) * (out > 0)``."""
    return tf.raw_ops.ReluGrad(gradients=tf.nn.relu(gradient), features=op.outputs[0])


def _guided_relu6_gradient(op: Any, gradient: Any) -> Any:
    """ReLU6's gradient with negative incoming gradients zeroed: ``grad * (grad > 0) * (0 < in < 6)``."""
    return tf.raw_ops.Relu6Grad(gradients=tf.nn.relu(gradient), features=op.inputs[0])


for _op_type, _function in (("Relu", _guided_relu_gradient), ("Relu6", _guided_relu6_gradient)):
    try:
        tf.RegisterGradient(GUIDED_GRADIENT_OF_OP[_op_type])(_function)
    except KeyError:  # already registered: this module was reloaded
        pass


def _ancestor_ops(tensor: Any) -> list[Any]:
    """Every op ``tensor`` depends on (data and control inputs), its own op included."""
    seen: dict[str, Any] = {}
    stack = [tensor.op]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        stack.extend(input_tensor.op for input_tensor in op.inputs)
        stack.extend(op.control_inputs)
    return list(seen.values())


def _value_tensor(variable_op: Any) -> Any:
    """A tensor already in the graph whose value is the variable's value (fetching it adds no op).

    Raises:
      ValueError: a resource variable without a plain ``ReadVariableOp``.
    """
    if variable_op.type != "VarHandleOp":
        return variable_op.outputs[0]
    reads = [
        consumer
        for consumer in variable_op.outputs[0].consumers()
        if consumer.type == "ReadVariableOp" and not consumer.control_inputs
    ]
    if not reads:
        raise ValueError(
            f"cannot read resource variable {variable_op.name!r} without adding an op to graph: it has "
            "no ReadVariableOp without control dependencies"
        )
    reads.sort(key=lambda read: not read.name.endswith("/Read/ReadVariableOp"))
    return reads[0].outputs[0]


def copy_graph_with_guided_relus(graph: Any, session: Any, y: Any) -> tuple[Any, Any]:
    """Copies ``graph`` with guided ReLU gradients, and the variable values ``y`` needs.

    See the module docstring for the steps. ``graph`` and ``session`` are only read.

    Args:
      graph: the user's ``tf.Graph``.
      session: a session running ``graph`` (or any object whose
        ``run(list_of_tensors)`` returns their values, as a session's does),
        the variables ``y`` needs initialised.
      y: the explained output tensor of ``graph``.

    Returns:
      ``(guided_graph, guided_session)``: the copy (same op names) and an open
      session on it with the variables set. The caller closes the session.

    Raises:
      ValueError: a resource variable whose value cannot be read (see
        :func:`_value_tensor`).
      TypeError: ``session.run`` did not return one array per variable.
      tf.errors.FailedPreconditionError: a variable ``y`` needs is not initialised.
    """
    ancestors = _ancestor_ops(y)
    if not any(op.type in GUIDED_GRADIENT_OF_OP for op in ancestors):
        warnings.warn(
            f"y ({y.name}) depends on no Relu or Relu6 op: guided backpropagation gives plain gradients",
            stacklevel=3,
        )
    variable_ops = sorted((op for op in ancestors if op.type in VARIABLE_OP_TYPES), key=lambda op: op.name)
    values = session.run([_value_tensor(op) for op in variable_ops]) if variable_ops else []
    values = _checked_variable_values(values, variable_ops, session)

    graph_def = graph.as_graph_def()
    for node in graph_def.node:
        node.device = ""
        if node.op in GUIDED_GRADIENT_OF_OP:
            node.attr["_gradient_op_type"].s = GUIDED_GRADIENT_OF_OP[node.op].encode()

    guided_graph = tf.Graph()
    with guided_graph.as_default():
        tf1.import_graph_def(graph_def, name="")
        feed, assign_ops = {}, []
        with tf1.name_scope("saliencykit_copied_variable_values"):
            for variable_op, value in zip(variable_ops, values, strict=True):
                placeholder = tf1.placeholder(variable_op.get_attr("dtype"), value.shape)
                copied = guided_graph.get_operation_by_name(variable_op.name).outputs[0]
                if variable_op.type == "VarHandleOp":
                    assign_ops.append(tf.raw_ops.AssignVariableOp(resource=copied, value=placeholder))
                else:
                    assign_ops.append(tf1.assign(copied, placeholder, validate_shape=False).op)
                feed[placeholder] = value
    guided_session = tf1.Session(graph=guided_graph)
    try:
        if assign_ops:
            guided_session.run(assign_ops, feed_dict=feed)
    except BaseException:
        guided_session.close()
        raise
    return guided_graph, guided_session


def _checked_variable_values(values: Any, variable_ops: Sequence[Any], session: Any) -> list[np.ndarray]:
    """The values ``session.run`` returned for ``variable_ops``, as arrays of the variables' dtypes.

    Raises:
      TypeError: not one numeric array per variable (a session proxy whose
        ``run`` does not return what a ``tf.compat.v1.Session`` returns).
    """
    reason = None
    arrays: list[np.ndarray] = []
    if not isinstance(values, (list, tuple)) or len(values) != len(variable_ops):
        reason = f"got {type(values).__name__} {values!r:.100}"
    else:
        for variable_op, value in zip(variable_ops, values, strict=True):
            array = np.asarray(value)
            if array.dtype == object:
                reason = f"got {type(value).__name__} {value!r:.100} for variable {variable_op.name!r}"
                break
            arrays.append(array)
    if reason is not None:
        raise TypeError(
            "GuidedBackprop copies the values of the graph's variables through session.run, which "
            f"must return a list of {len(variable_ops)} arrays for a list of {len(variable_ops)} "
            f"variable tensors (as a tf.compat.v1.Session does); session ({type(session).__name__}) "
            f"{reason}"
        )
    return arrays


class GuidedBackprop(TF1Saliency):
    """Guided Backpropagation on a private copy of the graph; ``graph`` and ``session`` stay untouched.

    ``GuidedBackprop(graph, session, y, x)``; see
    :class:`~saliencykit.tf1.base.TF1Saliency` for the arguments and the module
    docstring for the copy. The masks come from
    :class:`saliencykit.core.GuidedBackprop` through a ``call_model_function``
    on the copy answering ``GUIDED_INPUT_OUTPUT_GRADIENTS``, so
    ``GetSmoothedMask(..., batch_size=n)`` runs ``n`` noisy samples at once.

    The session may be a proxy (see the module docstring). When ``y`` does
    not depend differentiably on ``x``, the first call asking for the guided
    gradient raises :class:`~saliencykit.tf1.utils.NotDifferentiableError`.

    Attributes:
      guided_graph: the copy of ``graph`` with guided ReLU gradients (finalized).
      guided_sess: the session on ``guided_graph``.
      guided_grads_node: the guided ``d sum(y) / dx`` tensor of ``guided_graph``
        (None when ``y`` does not depend differentiably on ``x``).
    """

    core_instance: core_gradients.GuidedBackprop
    call_model_function: CallModelFunction

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, tmp_ckpt_path: str | None = None) -> None:
        """Copies the graph with guided ReLUs and the variable values ``y`` needs.

        Args:
          graph, session, y, x: see :class:`~saliencykit.tf1.base.TF1Saliency`.
          tmp_ckpt_path: accepted for code written for the reference, which
            saved a checkpoint there; ignored: nothing is written to disk.

        Raises:
          TypeError, ValueError: see :class:`~saliencykit.tf1.base.TF1Saliency`;
            TypeError also when ``session.run`` does not return the variables'
            values as a ``tf.compat.v1.Session`` would.
        """
        super().__init__(graph, session, y, x)
        self.guided_graph, self.guided_sess = copy_graph_with_guided_relus(graph, session, y)
        self._close_session = weakref.finalize(self, self.guided_sess.close)
        self._guided_y = self.guided_graph.get_tensor_by_name(y.name)
        self._guided_x = self.guided_graph.get_tensor_by_name(x.name)
        try:
            self.guided_grads_node = gradient_tensor(self.guided_graph, self._guided_y, self._guided_x, "x")
        except NotDifferentiableError:  # raised again by the first call asking for the gradient
            self.guided_grads_node = None
        self.guided_graph.finalize()
        self.core_instance = core_gradients.GuidedBackprop()
        self.call_model_function = self._call_guided_graph

    def GetMask(  # noqa: N802
        self, x_value: np.ndarray, feed_dict: Mapping[Any, Any] | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Returns the guided-backpropagation gradient of ``y`` with respect to ``x`` at ``x_value``.

        Args:
          x_value: the input, without the batch dimension (``x.shape[1:]``).
          feed_dict: further entries, keyed by tensors of ``graph`` (or their
            names); they are fed to the same tensors of the copy.
          **kwargs: passed to :meth:`saliencykit.core.GuidedBackprop.GetMask`.

        Returns:
          The guided gradient, ``x_value``'s shape.

        Raises:
          TypeError: a ``feed_dict`` key that is not a tensor or a tensor name.
          ValueError: a ``feed_dict`` key not in ``graph``, or a bad input.
          NotDifferentiableError: ``y`` does not depend differentiably on ``x``
            (a ``ValueError`` and a ``TypeError``).
        """
        return self.core_instance.GetMask(
            x_value, self.call_model_function, call_model_args=feed_dict, **kwargs
        )

    def close(self) -> None:
        """Closes the copy's session (also done when the object is garbage-collected)."""
        self._close_session()

    def __enter__(self) -> GuidedBackprop:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """One input per ``GetMask``; SmoothGrad sends ``nsamples`` in batches of ``batch_size``."""
        batch_size = arguments.get("batch_size", 1)
        if nsamples is not None and batch_size != 1:
            self.validate_xy_tensor_shape(nsamples, batch_size, steps_name="nsamples")

    def _guided_tensor(self, key: Any) -> Any:
        """The tensor of the copy standing for a feed_dict key (a tensor of ``graph`` or a tensor name).

        Raises:
          TypeError: a key of another kind.
          ValueError: a tensor of another graph, or a name not in the graph.
        """
        if isinstance(key, tf.Tensor) and hasattr(key, "graph"):
            if key.graph is not self.graph:
                raise ValueError(
                    f"feed_dict key {key.name} must be a tensor of graph, it belongs to another graph"
                )
            name = key.name
        elif isinstance(key, str):
            name = key
        else:
            raise TypeError(
                f"feed_dict keys must be tensors of graph or tensor names, got {type(key).__name__}"
            )
        try:
            return self.guided_graph.as_graph_element(name, allow_tensor=True, allow_operation=False)
        except (KeyError, ValueError) as error:
            raise ValueError(f"feed_dict key {name!r} is not a tensor of graph: {error}") from None

    def _call_guided_graph(
        self,
        x_value_batch: np.ndarray,
        call_model_args: Any = None,
        expected_keys: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """The copy's ``call_model_function``, answering the keys in :data:`GUIDED_KEYS`."""
        keys = checked_expected_keys(expected_keys, GUIDED_KEYS, default_key=GUIDED_INPUT_OUTPUT_GRADIENTS)
        fetch_of_key = {OUTPUT_LAYER_VALUES: self._guided_y}
        if GUIDED_INPUT_OUTPUT_GRADIENTS in keys:
            # Raises NotDifferentiableError when y does not depend differentiably on x (cached outcome).
            fetch_of_key[GUIDED_INPUT_OUTPUT_GRADIENTS] = gradient_tensor(
                self.guided_graph, self._guided_y, self._guided_x, "x"
            )
        feed = feed_dict_with_input(call_model_args, self.x, x_value_batch)
        guided_feed = {self._guided_tensor(key): value for key, value in feed.items()}
        return self.guided_sess.run({key: fetch_of_key[key] for key in keys}, feed_dict=guided_feed)
