"""The PyTorch models being called: their state across concurrent calls, and each call's hooks.

Every submodule's ``training`` flag (and, for calls that run the model as it
is, its buffers) is held per submodule by the calls in flight
(:data:`_MODES`, a :class:`saliencykit._adapter.Holds`): the first call in
saves and switches, the last call out restores. The forward hooks a call
installs (guided ReLUs, the Grad-CAM layer's capture) act only on that call's
own forward pass (:func:`saliencykit._adapter.current_call`). The models
that cannot take a channels-last view are remembered here too
(:data:`_NEEDS_CONTIGUOUS`). Private to :mod:`saliencykit.torch`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from . import _adapter
from ._adapter import Holds

#: Activations whose backward pass guided backpropagation changes.
RELU_TYPES = (nn.ReLU, nn.ReLU6)


class _GuidedGradient(torch.autograd.Function):
    """Identity forward; backward keeps only positive gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output.clamp(min=0)


#: The adapter calls in flight on each submodule (eval-mode and as-is calls exclude each other).
_MODES = Holds()
#: Models whose forward pass needs contiguous (not channels-last) input.
_NEEDS_CONTIGUOUS: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _save_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    with torch.inference_mode(False), torch.no_grad():
        return [
            (name, buffer, buffer.detach().clone())
            for name, buffer in module._buffers.items()
            if buffer is not None
        ]


def _restore_buffers(module: nn.Module, saved: list[tuple[str, torch.Tensor, torch.Tensor]]) -> None:
    with torch.inference_mode(False), torch.no_grad():
        for name, original, values in saved:
            if original.is_inference():  # cannot be written outside inference mode: put the copy back
                module._buffers[name] = values
            else:
                original.copy_(values)
                module._buffers[name] = original


def _training_flag(module: nn.Module) -> bool:
    return module.training


def _restore_training(module: nn.Module, training: bool) -> None:
    if module.training != training:  # nn.Module.__setattr__ is slow: only where eval() changed it
        module.training = training


def _model_mode(model: nn.Module, eval_mode: bool) -> contextlib.AbstractContextManager[Any]:
    """Runs the block with ``model`` in eval mode (``eval_mode``) or as it is, restoring it afterwards.

    Every submodule's ``training`` flag is saved when the first call that
    holds it begins and restored exactly, module by module, when the last one
    ends; with ``eval_mode=False`` its buffers are restored too. A call of the
    other kind on an overlapping module waits (see :class:`saliencykit._adapter.Holds`).
    """
    if not eval_mode:
        return _MODES.hold(model.modules(), "as is", save=_save_buffers, restore=_restore_buffers)

    def switch(modules: list[nn.Module]) -> None:
        if any(module.training for module in modules):
            model.eval()

    return _MODES.hold(model.modules(), "eval", _training_flag, _restore_training, then=switch)


def _acts_for(token: object, module: nn.Module) -> bool:
    """Whether a hook installed by the call ``token`` on ``module`` acts on the running forward pass.

    It does in the call's own thread; in a thread that runs no adapter call
    (one the model's forward started itself, e.g. ``nn.DataParallel``'s
    replicas) only while this call is the only one in flight on the module.
    """
    current = _adapter.current_call()
    return current is token or (current is None and _MODES.users(module) == 1)


@contextlib.contextmanager
def _guided_relus(model: nn.Module) -> Iterator[None]:
    """Makes every ReLU/ReLU6 module of ``model`` guided for the running call; hooks removed on exit."""
    relus = [module for module in model.modules() if isinstance(module, RELU_TYPES)]
    if not relus:
        raise ValueError(
            "guided backpropagation needs nn.ReLU / nn.ReLU6 modules; this model has none "
            "(a functional relu cannot be hooked)"
        )
    token = _adapter.current_call()

    # The ReLU's own backward multiplies by (input > 0); clamping the gradient
    # that reaches it makes that the guided rule.
    def make_hook(relu: nn.Module) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> Any:
            return _GuidedGradient.apply(output) if _acts_for(token, relu) else None

        return hook

    handles = [relu.register_forward_hook(make_hook(relu)) for relu in relus]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _capturing(layer: nn.Module, captured: list[torch.Tensor]) -> Iterator[None]:
    """Records the layer's output in the running call's forward pass and hands the model a copy.

    The copy keeps the recorded activation intact when an in-place operation
    (``nn.ReLU(inplace=True)``) follows the layer, and gradients still flow to it.
    """
    token = _adapter.current_call()

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if _adapter.current_call() is not token:
            return None
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        captured.append(tensor)
        copy = tensor.clone()
        if isinstance(output, (tuple, list)):
            return type(output)([copy, *output[1:]])
        return copy

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
