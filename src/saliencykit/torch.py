"""PyTorch adapter: a ready ``call_model_function`` from an ``nn.Module``.

>>> import saliencykit.core as saliency
>>> from saliencykit.torch import make_call_model_function
>>> call = make_call_model_function(model, target=285, layer="_conv_head",
...                                 preprocess=normalize)
>>> mask = saliency.IntegratedGradients().GetMask(image, call, x_steps=25, batch_size=25)

The adapter takes H x W x C (channel-last) NumPy batches, the convention of
every method in :mod:`saliencykit.core`, and hands the model an N x C x H x W
view of them with channels-last memory (no copy, and the faster layout for
convolutions on CPU). Gradients are taken with respect to that NumPy input, so
any ``preprocess`` (scaling from [0, 255], normalisation) is differentiated
through. Only the keys asked for are computed: ``OUTPUT_LAYER_VALUES`` alone
runs the model under ``torch.inference_mode`` with no backward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._adapter_checks import (
    GRADIENT_KEYS,
    check_class_index,
    check_one_scalar_per_example,
    checked_keys,
    target_from_call_model_args,
)
from .core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
)

__all__ = ["make_call_model_function", "select_target"]

Target = int | Callable[[torch.Tensor], torch.Tensor]
#: Activations whose backward pass guided backpropagation changes.
RELU_TYPES = (nn.ReLU, nn.ReLU6)


def select_target(outputs: torch.Tensor, target: Target) -> torch.Tensor:
    """Returns one scalar per example: ``outputs[:, target]`` or ``target(outputs)``.

    Raises:
      ValueError: a class index out of range, an output that is not
        ``[batch, classes]`` for an index, or a callable that does not return
        one scalar per example.
      TypeError: a target that is neither an integer nor a callable.
    """
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    batch = outputs.shape[0]
    if callable(target):
        selected = target(outputs)
        is_tensor = isinstance(selected, torch.Tensor)
        check_one_scalar_per_example(selected.shape if is_tensor else None, type(selected).__name__, batch)
        return selected.reshape(batch)
    check_class_index(target, tuple(outputs.shape))
    return outputs[:, target]


def _channels_first(tensor: torch.Tensor) -> torch.Tensor:
    """N x ... x C -> N x C x ... as a view (rank >= 3); unchanged otherwise."""
    return tensor.movedim(-1, 1) if tensor.ndim >= 3 else tensor


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.movedim(1, -1) if tensor.ndim >= 3 else tensor


def _find_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            close = [name for name in modules if layer.split(".")[-1] in name][:5]
            raise ValueError(
                f"layer {layer!r} is not a module of the model" + (f"; similar: {close}" if close else "")
            )
        return modules[layer]
    if isinstance(layer, nn.Module):
        if not any(module is layer for module in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a module of the model")
        return layer
    raise TypeError(f"layer must be an nn.Module of the model or its name, got {type(layer).__name__}")


class _GuidedGradient(torch.autograd.Function):
    """Identity forward; backward keeps only positive gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output.clamp(min=0)


@contextlib.contextmanager
def _guided_relus(model: nn.Module) -> Iterator[None]:
    """Makes every ReLU/ReLU6 module of ``model`` guided for the duration; hooks removed on exit."""
    relus = [module for module in model.modules() if isinstance(module, RELU_TYPES)]
    if not relus:
        raise ValueError(
            "guided backpropagation needs nn.ReLU / nn.ReLU6 modules; this model has none "
            "(a functional relu cannot be hooked)"
        )
    # The ReLU's own backward multiplies by (input > 0); clamping the gradient
    # that reaches it makes that the guided rule.
    handles = [
        relu.register_forward_hook(lambda m, i, output: _GuidedGradient.apply(output)) for relu in relus
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _capture_into(captured: list[torch.Tensor]) -> Callable[..., Any]:
    """A forward hook that records the layer's output and hands the model a copy.

    The copy keeps the recorded activation intact when an in-place operation
    (``nn.ReLU(inplace=True)``) follows the layer, and gradients still flow to it.
    """

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        captured.append(tensor)
        copy = tensor.clone()
        if isinstance(output, (tuple, list)):
            return type(output)([copy, *output[1:]])
        return copy

    return hook


@contextlib.contextmanager
def _eval_mode(model: nn.Module, enabled: bool) -> Iterator[None]:
    was_training = model.training
    if enabled and was_training:
        model.eval()
    try:
        yield
    finally:
        if enabled and was_training:
            model.train()


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
      model: the ``nn.Module``; its parameters are never changed and its
        ``.grad`` fields never touched.
      target: what is explained: a class index (``outputs[:, target]``) or a
        callable mapping the output batch to one scalar per example (a softmax
        probability, a regression output). ``call_model_args`` overrides it per
        call: an int, a callable, or a dict with a ``"target"`` entry.
      layer: the module (or its name in ``model.named_modules()``) whose output
        Grad-CAM uses; needed only for the ``CONVOLUTION_*`` keys, which come
        back channel-last (``N x ... x C``) whatever the layer's rank.
      preprocess: applied to the model-layout float tensor before the model
        (e.g. ``lambda x: (x / 255 - mean) / std``); differentiated through.
      channels_last_input: the NumPy batch is N x ... x C and the model wants
        N x C x ... (PyTorch's convention), so the channel axis is moved (as a
        view) for inputs of rank >= 3. False passes the batch as it is.
      eval_mode: run the model in eval mode during calls (dropout off, batch
        norm statistics frozen) and restore its mode afterwards.
      device: where to run; default the device of the model's first parameter.

    Returns:
      ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``
      answering ``INPUT_OUTPUT_GRADIENTS``, ``OUTPUT_LAYER_VALUES`` (the
      target, shape [N]), ``CONVOLUTION_LAYER_VALUES``,
      ``CONVOLUTION_OUTPUT_GRADIENTS`` and ``GUIDED_INPUT_OUTPUT_GRADIENTS``.

    Raises:
      TypeError, ValueError: at construction for a bad layer, and in calls for
        a bad target, an unknown key, or a model whose output does not depend
        differentiably on its input.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layer_module = _find_layer(model, layer) if layer is not None else None
    if device is None:
        first_parameter = next(model.parameters(), None)
        device = first_parameter.device if first_parameter is not None else torch.device("cpu")
        dtype = first_parameter.dtype if first_parameter is not None else torch.float32
    else:
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
    device = torch.device(device)

    def to_model_layout(x_batch: np.ndarray, requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        array = np.asarray(x_batch)
        if not array.flags.writeable:  # torch warns on read-only NumPy memory
            array = array.copy()
        if array.dtype.kind not in "biuf":
            raise TypeError(f"x_value_batch must be a real numeric array, got dtype {array.dtype}")
        leaf = torch.as_tensor(array).to(device=device, dtype=dtype)
        leaf.requires_grad_(requires_grad)
        model_input = _channels_first(leaf) if channels_last_input else leaf
        if preprocess is not None:
            model_input = preprocess(model_input)
        return leaf, model_input

    def forward_and_gradients(
        x_batch: np.ndarray, chosen: Target, keys: Sequence[str], guided: bool
    ) -> dict[str, np.ndarray]:
        captured: list[torch.Tensor] = []
        want_layer = any(key in keys for key in (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS))
        if want_layer and layer_module is None:
            raise ValueError("CONVOLUTION_* keys need the layer= argument of make_call_model_function")
        handle = layer_module.register_forward_hook(_capture_into(captured)) if want_layer else None
        try:
            # Gradients are needed even when the caller runs under no_grad/inference_mode.
            with (
                torch.inference_mode(False),
                torch.enable_grad(),
                _guided_relus(model) if guided else contextlib.nullcontext(),
            ):
                leaf, model_input = to_model_layout(x_batch, requires_grad=True)
                selected = select_target(model(model_input), chosen)
                sources = [leaf] if guided or INPUT_OUTPUT_GRADIENTS in keys else []
                if want_layer:
                    if not captured:
                        raise ValueError("the Grad-CAM layer was not called in the model's forward pass")
                    sources.append(captured[-1])
                if not selected.requires_grad:
                    raise ValueError(
                        "the model's output does not depend differentiably on its input "
                        "(is it detached, computed under torch.no_grad, or cast to integers?)"
                    )
                gradients = torch.autograd.grad(selected.sum(), sources, allow_unused=True)
        finally:
            if handle is not None:
                handle.remove()
        if any(gradient is None for gradient in gradients):
            raise ValueError("the target does not depend on the input (or on the Grad-CAM layer)")
        answer: dict[str, np.ndarray] = {}
        gradients = list(gradients)
        if guided:
            answer[GUIDED_INPUT_OUTPUT_GRADIENTS] = gradients.pop(0).cpu().numpy()
            return answer
        if INPUT_OUTPUT_GRADIENTS in keys:
            answer[INPUT_OUTPUT_GRADIENTS] = gradients.pop(0).cpu().numpy()
        if want_layer:
            answer[CONVOLUTION_OUTPUT_GRADIENTS] = _channels_last(gradients.pop(0)).cpu().numpy()
            answer[CONVOLUTION_LAYER_VALUES] = _channels_last(captured[-1].detach()).cpu().numpy()
        if OUTPUT_LAYER_VALUES in keys:
            answer[OUTPUT_LAYER_VALUES] = selected.detach().cpu().numpy()
        return answer

    def call_model_function(
        x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        keys = checked_keys(expected_keys)
        chosen = target_from_call_model_args(call_model_args, target)
        answer: dict[str, np.ndarray] = {}
        with _eval_mode(model, eval_mode):
            if any(key in GRADIENT_KEYS for key in keys):
                answer.update(forward_and_gradients(x_value_batch, chosen, keys, guided=False))
            elif OUTPUT_LAYER_VALUES in keys:
                with torch.inference_mode():
                    _, model_input = to_model_layout(x_value_batch, requires_grad=False)
                    answer[OUTPUT_LAYER_VALUES] = select_target(model(model_input), chosen).cpu().numpy()
            if GUIDED_INPUT_OUTPUT_GRADIENTS in keys:
                answer.update(forward_and_gradients(x_value_batch, chosen, keys, guided=True))
        return answer

    return call_model_function
