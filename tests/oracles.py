"""Other libraries used as test oracles, imported so that they work in this environment.

``pytorch-grad-cam`` (the ``grad-cam`` package, pinned at 1.5.7 in the test
extras) implements Grad-CAM++, Layer-CAM, HiRes-CAM and Score-CAM, our oracles
for those methods. ``import pytorch_grad_cam`` imports ``torchvision``, and the
``torchvision`` wheel installed here does not import against our CPU build of
torch (``RuntimeError: operator torchvision::nms does not exist``: the two
wheels are built for different torch versions). pytorch-grad-cam needs
torchvision only for names it imports at import time and the CAM mathematics
never calls: ``torchvision.transforms.Compose``, ``Normalize`` and
``ToTensor`` (its ``preprocess_image`` helper), ``torchvision.transforms.
functional.resize`` (its SESS method) and the ``torchvision`` module itself
(``torchvision.ops.box_iou`` in its detection targets). So
:func:`import_pytorch_grad_cam` puts a minimal stand-in ``torchvision`` package
in ``sys.modules`` (those names, each raising ``NotImplementedError`` if
called, and an attribute lookup that raises ``AttributeError`` for anything
else), imports ``pytorch_grad_cam``, and takes the stand-in out of
``sys.modules`` again, so that nothing else ever sees it. A torchvision already
imported is used as it is.

:func:`raw_cam` runs a pytorch-grad-cam method through its public call and
returns the map it computed *before* its post-processing (per-image min-max
scaling and ``cv2.resize`` to the input): the quantity our CAM methods return
with ``should_resize=False, three_dims=False``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import numpy as np
import pytest

#: The stand-in modules and the names each one must provide.
_STAND_IN_NAMES = {
    "torchvision": (),
    "torchvision.transforms": ("Compose", "Normalize", "ToTensor"),
    "torchvision.transforms.functional": ("resize",),
}


def _not_available(name: str) -> Any:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{name} is a stand-in installed by tests/oracles.py (torchvision does not import "
            "against this torch); the CAM oracles never call it"
        )

    stand_in.__name__ = name.rsplit(".", 1)[-1]
    return stand_in


def _stand_in_module(name: str, attributes: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(name, "A stand-in for torchvision, see tests/oracles.py.")
    for attribute in attributes:
        setattr(module, attribute, _not_available(f"{name}.{attribute}"))

    def missing(attribute: str) -> Any:
        raise AttributeError(f"{name}.{attribute} is not in the torchvision stand-in of tests/oracles.py")

    module.__getattr__ = missing  # type: ignore[method-assign]
    module.__path__ = []  # a package, so that its submodules import
    return module


def import_pytorch_grad_cam() -> types.ModuleType:
    """Returns the ``pytorch_grad_cam`` module (see the module docstring); skips the test without it."""
    if "pytorch_grad_cam" in sys.modules:
        return sys.modules["pytorch_grad_cam"]
    pytest.importorskip("torch")
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        pytest.skip("pytorch-grad-cam (the grad-cam package) is not installed")
    if "torchvision" in sys.modules:
        return importlib.import_module("pytorch_grad_cam")
    stand_ins = {name: _stand_in_module(name, names) for name, names in _STAND_IN_NAMES.items()}
    stand_ins["torchvision"].transforms = stand_ins["torchvision.transforms"]  # type: ignore[attr-defined]
    stand_ins["torchvision.transforms"].functional = stand_ins["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module("pytorch_grad_cam")
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)


def raw_cam(cam_class: Any, model: Any, layer: Any, input_tensor: Any, class_index: int, **options: Any):
    """pytorch-grad-cam's map before its scaling and resizing, and its final output.

    Runs ``cam_class(model, [layer])(input_tensor, targets)`` (the public call,
    explaining logit ``class_index`` of every image) and records what its
    ``get_cam_image`` returned: ``sum_c weights * activations`` (or the
    method's own element-wise map) per image, before the ReLU, the min-max
    scaling and ``cv2.resize`` that follow it.

    Args:
      cam_class: e.g. ``pytorch_grad_cam.GradCAMPlusPlus``.
      model, layer: the ``nn.Module`` and the layer module.
      input_tensor: the model's input, ``N x C x H x W``.
      class_index: the explained logit.
      **options: attributes set on the CAM object first (``batch_size`` for ``ScoreCAM``).

    Returns:
      ``(raw, final)``: ``ReLU`` of the recorded map ``[N, h, w]`` (float64),
      and the call's output ``[N, H, W]``.
    """
    pytorch_grad_cam = import_pytorch_grad_cam()
    targets = [pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget(class_index)] * len(input_tensor)
    recorded = []
    with cam_class(model=model, target_layers=[layer]) as cam:
        for name, value in options.items():
            setattr(cam, name, value)
        get_cam_image = cam.get_cam_image

        def recording(*args: Any, **kwargs: Any) -> np.ndarray:
            result = get_cam_image(*args, **kwargs)
            recorded.append(np.asarray(result))
            return result

        cam.get_cam_image = recording
        final = cam(input_tensor=input_tensor, targets=targets)
    (raw,) = recorded
    return np.maximum(raw.astype(np.float64), 0.0), final


def small_cnn(seed: int = 0, spatial_dims: int = 2) -> Any:
    """A small convolutional network (torch), randomly initialised with ``seed``, in eval mode.

    ``conv(3 -> 8) - ReLU - conv(8 -> 6, stride 2) - ReLU - global average
    pooling - linear(6 -> 5)``; 2-D or 3-D convolutions (``spatial_dims``).
    Module ``"2"`` (the second convolution) is the layer the CAM tests explain.
    """
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    conv = {2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[spatial_dims]
    pool = {2: torch.nn.AdaptiveAvgPool2d, 3: torch.nn.AdaptiveAvgPool3d}[spatial_dims]
    return torch.nn.Sequential(
        conv(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        conv(8, 6, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        pool(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 5),
    ).eval()
