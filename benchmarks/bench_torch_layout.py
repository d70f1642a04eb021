"""PyTorch memory layout: does the adapter feed EfficientNet-Lite0 the faster of NCHW and channels-last?

EfficientNet-Lite0 forward+backward at batch 20 on an N x C x H x W tensor with
channels-last memory (what permuting an N x H x W x C NumPy batch gives, which
is what the adapter feeds) and on an N x C x H x W contiguous one; per-image
times, and the layout the adapter actually hands the model's first
convolution (seen by a forward pre-hook). Also timed: the adapter itself, and
channels-last input on a copy of the model with channels-last weights.
Target: the adapter uses the faster layout.

Timing, waiting for a quiet machine and the table: see ``_adapters_common.py``.

Usage::

    python benchmarks/bench_torch_layout.py [--repeat 5] [--quick] [--max-wait-s 600]
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

import saliencykit.torch as saliency_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adapters_common import (  # noqa: E402 (the benchmarks folder is not a package)
    GRADIENT_KEYS,
    Context,
    LayoutResult,
    layout_name,
    normalise,
    run_benchmark,
    stem_input_layout,
)
from _common import DEFAULT_CLASS_INDEX, load_text, measure_interleaved  # noqa: E402

TITLE = "bench_torch_layout: the PyTorch adapter's input memory layout"


def torch_tensor_gradients(model: nn.Module, images_nchw: torch.Tensor) -> np.ndarray:
    """By hand, on a prepared N x C x H x W tensor (whatever its memory layout)."""
    leaf = images_nchw.detach().requires_grad_(True)
    logits = model(normalise(leaf))
    (gradients,) = torch.autograd.grad(logits[:, DEFAULT_CLASS_INDEX].sum(), leaf)
    return gradients.numpy()


def memory_layout(
    model: nn.Module, image: np.ndarray, batch_size: int, repeats: int, min_sample_s: float
) -> LayoutResult:
    batch = np.ascontiguousarray(np.repeat(image[None], batch_size, axis=0))
    channels_last_view = torch.from_numpy(batch).permute(0, 3, 1, 2)
    nchw_contiguous = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
    assert layout_name(channels_last_view) == "channels-last"
    assert layout_name(nchw_contiguous) == "NCHW-contiguous"
    call = saliency_torch.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=normalise)
    adapter_layout = stem_input_layout(model, lambda: call(batch, expected_keys=GRADIENT_KEYS))
    channels_last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    timings = measure_interleaved(
        {
            "channels-last": lambda: torch_tensor_gradients(model, channels_last_view),
            "NCHW-contiguous": lambda: torch_tensor_gradients(model, nchw_contiguous),
            "adapter": lambda: call(batch, expected_keys=GRADIENT_KEYS),
            "channels-last input + channels-last weights": lambda: torch_tensor_gradients(
                channels_last_model, channels_last_view
            ),
        },
        repeats,
        min_sample_s,
    )
    faster = min(("channels-last", "NCHW-contiguous"), key=lambda name: timings[name].median_s)
    print(f"  layout batch {batch_size}: done ({load_text()})", flush=True)
    return LayoutResult(batch_size, timings, adapter_layout, faster)


def layout_section(context: Context) -> None:
    context.report.layout = memory_layout(
        context.model, context.image, context.layout_batch, context.repeats, context.min_sample_s
    )


SECTIONS = {"layout": layout_section}


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(
        "bench_torch_layout", TITLE, __doc__.split("\n\n")[0], SECTIONS, argv, model_sections=("layout",)
    )


if __name__ == "__main__":
    sys.exit(main())
