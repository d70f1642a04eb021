"""PyTorch adapter: a ready ``call_model_function`` from an ``nn.Module``.

>>> import saliencykit.core as saliency
>>> from saliencykit.torch import make_call_model_function, normalize
>>> call = make_call_model_function(model, target=285, layer="_conv_head",
...                                 preprocess=normalize(mean, std, scale=1 / 255))
>>> mask = saliency.IntegratedGradients().GetMask(image, call, x_steps=25, batch_size=25)

The adapter takes H x W x C (channel-last) NumPy batches, the convention of
every method in :mod:`saliencykit.core`, and hands the model an N x C x H x W
view of them with channels-last memory (no copy, and the faster layout for
convolutions on CPU). A model that cannot take such a view (one that flattens
with ``x.view(x.size(0), -1)`` after a convolution) is detected on its first
failing call, which is retried once with contiguous input; that model then
always gets contiguous input. Gradients are taken with respect to the NumPy
input, so any ``preprocess`` (scaling from [0, 255], normalisation) is
differentiated through. Only the keys asked for are computed:
``OUTPUT_LAYER_VALUES`` alone runs the model under ``torch.inference_mode``
with no backward pass.

The model is left as it was found: its parameters, their ``.grad``, every
submodule's ``training`` flag (saved one by one and restored exactly, so a
frozen BatchNorm inside a model in train mode stays frozen), and, with
``eval_mode=False``, its buffers (batch-norm running statistics). The caller's
NumPy batch is never written to, even by a ``preprocess`` (or a model) that
works in place on its input.

Calls are thread-safe, also several threads calling one model through one or
several adapters: the guided-ReLU and Grad-CAM hooks act only on the forward
pass of the call that installed them, and the switch to eval mode is
reference-counted per submodule (the first call in switches, the last call out
restores), so concurrent calls run in parallel. Calls with ``eval_mode=True``
and calls with ``eval_mode=False`` on one model wait for each other. (That
state and those hooks live in :mod:`saliencykit._torch_state`.)

Devices and precision: the batch is moved to ``device`` (default: the device
of the model's first parameter); the model is never moved. Tensors a
``preprocess`` uses must be on that device too: :func:`normalize` builds a
normalisation whose constants follow the input. Half-precision models
(``float16``/``bfloat16`` parameters) are differentiated with a ``float32``
input (cast to the model's dtype after ``preprocess``), a ``float32`` target
sum and, for ``float16``, a gradient scale lowered when the backward pass
overflows; every answer is ``float32``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _adapter
from ._adapter import Adapter, Gradients
from ._torch_randomise import randomisation_layers, randomised_copy, randomised_models
from ._torch_state import _NEEDS_CONTIGUOUS, _capturing, _guided_relus, _model_mode
from ._torch_state import RELU_TYPES as RELU_TYPES  # the ReLUs made guided, named here as before
from .core.base import CallModelFunction

__all__ = [
    "DeviceMismatchError",
    "make_call_model_function",
    "normalize",
    "randomisation_layers",
    "randomised_copy",
    "randomised_models",
    "select_target",
]

#: A class index, a callable, ``"predicted"``, or per-row targets (an integer array, a list/tuple).
Target = int | str | Callable[[torch.Tensor], torch.Tensor] | np.ndarray | Sequence[Any]
#: Parameter dtypes computed with a float32 input and float32 answers.
HALF_DTYPES = (torch.float16, torch.bfloat16)
#: Gradient scales tried, in order, when a float16 model's backward pass overflows.
FLOAT16_GRADIENT_SCALES = (1.0, 2.0**-8, 2.0**-16)

#: torch's message when ``.view`` meets a tensor whose strides do not allow it.
_VIEW_ERROR = "view size is not compatible with input tensor's size and stride"
#: torch's messages for tensors of one operation on different devices.
_DEVICE_ERROR = re.compile(r"same device|expected device|\btorch\.(?:cuda|mps|xpu)\.\w*Tensor")


class DeviceMismatchError(ValueError, RuntimeError):
    """The model, its input or a ``preprocess`` constant are on different devices.

    A ``ValueError`` (the adapter's convention) and a ``RuntimeError`` (what
    torch raises for this), so either ``except`` catches it.
    """


def _long_index(indices: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long, device=device)


#: The torch operations for ``"predicted"`` and per-row targets (gathers, so gradients flow).
_ROW_OPS = _adapter.RowOps(
    take_rows=lambda values, rows: values.index_select(0, _long_index(rows, values.device)),
    take_classes=lambda outputs, classes: outputs.gather(
        1, _long_index(classes, outputs.device).reshape(-1, 1)
    ).reshape(-1),
    argmax=lambda outputs: outputs.argmax(dim=1),
    concat=torch.cat,
)


def select_target(outputs: torch.Tensor, target: Target) -> torch.Tensor:
    """Returns one scalar per example: ``outputs[:, target]`` or ``target(outputs)``.

    The rule of every adapter on torch tensors; a tuple or list of outputs
    means its first element. ``"predicted"`` is each row's own top class;
    per-row targets (an integer array ``[N]``, a list/tuple of N ints,
    callables or ``"predicted"``) explain row i through its own, gathered in
    torch (a callable gets the rows that share it).

    Raises:
      ValueError, TypeError: a bad target or output, as
        :func:`saliencykit._adapter.select_target` says (an index out of
        range, not one scalar per example, neither an int nor a callable).
    """
    return _adapter.select_target(
        outputs,
        target,
        is_array=lambda value: isinstance(value, torch.Tensor),
        flatten=lambda selected, batch: selected.reshape(batch),
        ops=_ROW_OPS,
    )


def _per_channel(values: Any, name: str) -> np.ndarray:
    """``mean`` or ``std`` of :func:`normalize` as a float array, checked to be finite, 0-D or 1-D."""
    array = np.asarray(values.detach().cpu() if torch.is_tensor(values) else values, float)
    if array.ndim > 1:
        raise ValueError(f"{name} must be a scalar or one value per channel, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def normalize(
    mean: Sequence[float] | np.ndarray | torch.Tensor,
    std: Sequence[float] | np.ndarray | torch.Tensor,
    *,
    scale: float = 1.0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``preprocess`` computing ``(x * scale - mean) / std`` per channel, on any device.

    ``mean`` and ``std`` (one value per channel, or scalars) are moved to the
    input's device and dtype on first use there (and cached), so the same
    ``preprocess`` serves a model on the CPU, a GPU or in half precision,
    unlike a closure over ``torch.tensor([...])`` constants created on the
    CPU. The channel axis is axis 1, the model's layout (N x C x ...).

    Args:
      mean: per-channel means (after ``scale``).
      std: per-channel standard deviations (after ``scale``); all non-zero.
      scale: multiplies the input first, e.g. ``1 / 255`` for ``uint8`` images.

    Returns:
      The ``preprocess`` callable; differentiable, never in place.

    Raises:
      ValueError: ``mean`` or ``std`` that is not a scalar or a 1-D sequence,
        ``std`` with a zero, or non-finite values.
    """
    mean_array, std_array = _per_channel(mean, "mean"), _per_channel(std, "std")
    if (std_array == 0).any():
        raise ValueError(f"std must be non-zero, got {std_array.tolist()}")
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
    lock = threading.Lock()

    def constants(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        key = (x.device, dtype)
        # Outside inference mode: constants first made during a forward-only call
        # (inference mode) would otherwise be inference tensors, which a later
        # gradient call cannot save for its backward pass.
        with lock, torch.inference_mode(False):
            if key not in cache:
                cache[key] = tuple(  # type: ignore[assignment]
                    torch.as_tensor(values, dtype=dtype, device=x.device)
                    for values in (mean_array, std_array)
                )
            return cache[key]

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        mean_t, std_t = constants(x)
        shape = (1, -1) + (1,) * (x.ndim - 2) if mean_t.ndim and x.ndim >= 2 else ()
        if shape:
            mean_t, std_t = mean_t.reshape(shape), std_t.reshape(shape)
        return (x * scale - mean_t) / std_t

    return preprocess


def _channels_first(tensor: torch.Tensor) -> torch.Tensor:
    """N x ... x C -> N x C x ... as a view (rank >= 3); unchanged otherwise."""
    return tensor.movedim(-1, 1) if tensor.ndim >= 3 else tensor


def _channels_first_is_contiguous(array: np.ndarray) -> bool:
    """Whether the N x C x ... view of the N x ... x C ``array`` is contiguous already."""
    return (np.moveaxis(array, -1, 1) if array.ndim >= 3 else array).flags.c_contiguous


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.movedim(1, -1) if tensor.ndim >= 3 else tensor


def _find_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    named = list(model.named_modules())
    return _adapter.find_layer(layer, named, nn.Module, kind="an nn.Module", member="module")


# --------------------------------------------------------------------------
# Devices and dtypes.
# --------------------------------------------------------------------------


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Same type and index (a device without an index matches any index of its type)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _model_devices(model: nn.Module) -> list[torch.device]:
    devices: list[torch.device] = []
    for tensor in (*model.parameters(), *model.buffers()):
        if not any(tensor.device == known for known in devices):
            devices.append(tensor.device)
    return devices


def _resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device`` (default: the model's first parameter's); ValueError if the model is not there."""
    model_devices = _model_devices(model)
    if device is None:
        first_parameter = next(model.parameters(), None)
        if first_parameter is not None:
            device = first_parameter.device
        else:
            device = model_devices[0] if model_devices else "cpu"
    device = torch.device(device)
    if model_devices and not any(_same_device(device, known) for known in model_devices):
        raise ValueError(
            f"device={str(device)!r} but the model's parameters are on {[str(d) for d in model_devices]}; "
            f"move the model first (model.to({str(device)!r})) or pass device= its device "
            "(the adapter never moves the model)"
        )
    return device


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (or buffer); float32 without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _as_array(x_batch: Any) -> np.ndarray:
    """The batch as a NumPy array torch can wrap (a copy only when read-only or with negative strides)."""
    array = np.asarray(x_batch)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"x_value_batch must be a real numeric array, got dtype {array.dtype}")
    if not array.flags.writeable or any(stride < 0 for stride in array.strides):
        array = np.array(array, order="C")  # torch warns on read-only memory, refuses negative strides
    return array


def _float_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached tensor as NumPy, half precision widened to float32."""
    tensor = tensor.detach()
    if tensor.dtype in HALF_DTYPES:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _device_error(error: RuntimeError, model: nn.Module, device: torch.device) -> DeviceMismatchError:
    return DeviceMismatchError(
        f"the model's input and a tensor it meets are on different devices (torch: {error}). "
        f"The batch is moved to {str(device)!r}; the model's parameters are on "
        f"{[str(d) for d in _model_devices(model)]}. Put the model on the device= given to "
        "make_call_model_function (the adapter never moves it), and create any tensor that "
        "preprocess uses on that device (or use saliencykit.torch.normalize(mean, std), whose "
        "constants follow the input)"
    )


# --------------------------------------------------------------------------
# The adapter: the PyTorch operations of the template.
# --------------------------------------------------------------------------


class _TorchAdapter(Adapter):
    """The ``call_model_function`` of :func:`make_call_model_function` (see there)."""

    def __init__(
        self,
        model: nn.Module,
        target: Target,
        layer: nn.Module | str | None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
        channels_last_input: bool,
        eval_mode: bool,
        device: torch.device | str | None,
    ) -> None:
        self.layer = _find_layer(model, layer) if layer is not None else None
        super().__init__(target, has_layer=self.layer is not None)
        self.model = model
        self.device = _resolve_device(model, device)
        self.model_dtype = _model_dtype(model)
        self.half = self.model_dtype in HALF_DTYPES
        self.input_dtype = torch.float32 if self.half else self.model_dtype
        self.preprocess = preprocess
        self.channels_last_input = channels_last_input
        self.eval_mode = eval_mode

    def convert(self, x_value_batch: Any) -> np.ndarray:
        return _as_array(x_value_batch)

    def holding(self) -> contextlib.AbstractContextManager[Any]:
        return _model_mode(self.model, self.eval_mode)

    def guided(self) -> contextlib.AbstractContextManager[Any]:
        return _guided_relus(self.model)

    def to_numpy(self, value: torch.Tensor) -> np.ndarray:
        return _float_numpy(value)

    def layer_to_numpy(self, value: torch.Tensor) -> np.ndarray:
        return _float_numpy(_channels_last(value))

    def forward(self, inputs: np.ndarray, target: Target) -> torch.Tensor:
        with torch.inference_mode():
            _, outputs = self._run(inputs, requires_grad=False, captured=[])
            return select_target(outputs, target)

    def gradients(
        self, inputs: np.ndarray, target: Target, *, want_input: bool, want_layer: bool
    ) -> Gradients:
        captured: list[torch.Tensor] = []
        layer = self.required_layer(self.layer) if want_layer else None
        # Gradients are needed even when the caller runs under no_grad/inference_mode.
        with torch.inference_mode(False), torch.enable_grad():
            with _capturing(layer, captured) if layer is not None else contextlib.nullcontext():
                leaf, outputs = self._run(inputs, requires_grad=True, captured=captured)
                selected = select_target(outputs, target)
            if want_layer and not captured:
                raise ValueError("the Grad-CAM layer was not called in the model's forward pass")
            if not selected.requires_grad:
                raise ValueError(
                    "the model's output does not depend differentiably on its input "
                    "(is it detached, computed under torch.no_grad, or cast to integers?)"
                )
            sources = [leaf] * want_input + captured[-1:] * want_layer
            gradients = iter(self._backward(selected, sources))
        input_gradients = next(gradients) if want_input else None
        layer_gradients = next(gradients) if want_layer else None
        return Gradients(selected, input_gradients, captured[-1] if want_layer else None, layer_gradients)

    def _model_input(
        self, array: np.ndarray, requires_grad: bool, contiguous: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The leaf tensor differentiated against, and the model's input computed from it."""
        leaf = torch.as_tensor(array).to(device=self.device, dtype=self.input_dtype)
        shares_caller_memory = leaf.device.type == "cpu" and leaf.data_ptr() == array.ctypes.data
        leaf.requires_grad_(requires_grad)
        model_input = _channels_first(leaf) if self.channels_last_input else leaf
        if contiguous:
            model_input = model_input.contiguous()
        # An in-place preprocess (or first operation of the model) must neither
        # write into the caller's batch nor into the leaf differentiated against.
        if model_input.data_ptr() == leaf.data_ptr() and (requires_grad or shares_caller_memory):
            model_input = model_input.clone()  # keeps the channels-last strides
        if self.preprocess is not None:
            model_input = self.preprocess(model_input)
        if self.half and isinstance(model_input, torch.Tensor) and model_input.is_floating_point():
            model_input = model_input.to(self.model_dtype)
        return leaf, model_input

    def _run(self, array: np.ndarray, requires_grad: bool, captured: list[torch.Tensor]) -> Any:
        """The leaf and the model's output for the batch; retries once with contiguous input."""
        contiguous = self.model in _NEEDS_CONTIGUOUS
        try:
            try:
                leaf, model_input = self._model_input(array, requires_grad, contiguous)
                return leaf, self.model(model_input)
            except RuntimeError as error:
                if contiguous or not self.channels_last_input or _VIEW_ERROR not in str(error):
                    raise
                if _channels_first_is_contiguous(array):
                    raise  # contiguous input would fail the same way
                _NEEDS_CONTIGUOUS.add(self.model)
                captured.clear()
                leaf, model_input = self._model_input(array, requires_grad, contiguous=True)
                return leaf, self.model(model_input)
        except RuntimeError as error:
            if isinstance(error, DeviceMismatchError) or not _DEVICE_ERROR.search(str(error)):
                raise
            raise _device_error(error, self.model, self.device) from error

    def _backward(self, selected: torch.Tensor, sources: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The gradients of ``sum(selected)``, summed in float32; float16 overflow lowers the scale."""
        total = selected.float().sum() if self.half else selected.sum()
        if self.model_dtype != torch.float16:
            return list(torch.autograd.grad(total, sources, allow_unused=True))
        for attempt, scale in enumerate(FLOAT16_GRADIENT_SCALES):
            last = attempt == len(FLOAT16_GRADIENT_SCALES) - 1
            gradients = torch.autograd.grad(total * scale, sources, allow_unused=True, retain_graph=not last)
            finite = all(g is None or bool(torch.isfinite(g).all()) for g in gradients)
            if finite or last or not bool(torch.isfinite(selected).all()):
                return [None if g is None else g.float() / scale for g in gradients]
        raise AssertionError("unreachable")  # pragma: no cover


def make_call_model_function(
    model: nn.Module,
    target: Target,
    *,
    layer: nn.Module | str | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    channels_last_input: bool = True,
    eval_mode: bool = True,
    device: torch.device | str | None = None,
) -> CallModelFunction:
    """Returns a ``call_model_function`` for a PyTorch model.

    Args:
      model: the ``nn.Module``; its parameters are never changed, their
        ``.grad`` fields never touched, and every submodule's train/eval flag
        is restored exactly after each call. It is never moved to another
        device: put it where it should run first (``model.to(device)``).
      target: what is explained, one scalar per example: a class index
        (``outputs[:, target]``), a callable, ``"predicted"`` (each row's top
        class) or per-row targets, as :func:`select_target` takes them;
        ``call_model_args`` overrides it per call (one of these, or a dict
        with a ``"target"`` entry).
      layer: the module (or its name in ``model.named_modules()``) whose output
        Grad-CAM uses; needed only for the ``CONVOLUTION_*`` keys, which come
        back channel-last (``N x ... x C``) whatever the layer's rank.
      preprocess: applied to the model-layout float tensor before the model
        (e.g. ``lambda x: (x / 255 - mean) / std``, or :func:`normalize`);
        differentiated through. It gets a tensor on ``device`` (float32, or
        float64 for a float64 model), so any tensor it uses must be on that
        device too: :func:`normalize` takes care of that, or create the
        constants with ``device=``. It may work in place (so may the model
        on its input): they get a copy where the tensor would share memory
        with the caller's batch.
      channels_last_input: the NumPy batch is N x ... x C and the model wants
        N x C x ... (PyTorch's convention), so the channel axis is moved (as a
        view, channels-last memory) for inputs of rank >= 3; a model that
        cannot take that view gets contiguous input instead (see the module
        docstring). False passes the batch as it is.
      eval_mode: run the model in eval mode during calls (dropout off, batch
        norm statistics frozen) and restore every submodule's mode afterwards.
        False runs it as it is (e.g. dropout on for Monte-Carlo estimates);
        buffers a train-mode forward pass changes (batch-norm running
        statistics) are then restored after the call.
      device: where the input goes and the model runs, e.g. ``"cuda:1"``;
        default the device of the model's first parameter. The model must
        already be there (for a model split over devices: the device of its
        first layer); answers always come back as CPU NumPy arrays.

    Returns:
      ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``
      answering ``INPUT_OUTPUT_GRADIENTS``, ``OUTPUT_LAYER_VALUES`` (the
      target, shape [N]), ``CONVOLUTION_LAYER_VALUES``,
      ``CONVOLUTION_OUTPUT_GRADIENTS`` and ``GUIDED_INPUT_OUTPUT_GRADIENTS``
      (float32 for a half-precision model), exactly the keys asked for. Safe
      to call from several threads. It is an instance of the shared template,
      :class:`saliencykit._adapter.Adapter`, with its batch-scheduler methods
      ``pack_call_model_args`` and ``resolve_call_model_args``.

    Raises:
      TypeError, ValueError: at construction for a bad layer, or a ``device``
        that holds none of the model's parameters; in calls for a bad target,
        an unknown key, or a model whose output does not depend differentiably
        on its input.
      DeviceMismatchError: (a ValueError and a RuntimeError) in calls, when the
        model or a ``preprocess`` constant is on another device than the input.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return _TorchAdapter(model, target, layer, preprocess, channels_last_input, eval_mode, device)
