"""Blur IG's own cost: library time at 224 x 224 and peak memory up to 2048 x 2048.

What is measured
----------------
The model is left out: ``call_model_function`` answers zero gradients at once
(no allocation beyond the answer itself), so every second and every byte is the
library's own work (building the blur path, weighting the gradients).

1. Time: ``GetMask`` at the defaults (``max_sigma=50``, ``steps=100``) on
   ``chelsea()`` resized to 224 x 224 (float32), with ``batch_size`` 1 and 20,
   ours and the reference ``saliency.core.BlurIG`` alternately; wall and CPU
   seconds (CPU time is the steadier figure on a shared machine), medians over
   ``--repeat`` runs, and the speed-up (reference / ours).
2. Memory: the peak of ``tracemalloc`` (which sees NumPy's allocations) during
   ``GetMask`` with ``steps=16`` (``--memory-steps``; the old dense blurs
   took 16 path points at a time) for each ``--sizes`` entry and ``batch_size``
   1 and 4, in MB and as a multiple of the image's bytes. Ours is linear in
   the image and grows with ``batch_size`` by a few images per path point;
   ``--reference-memory`` adds the reference's peak (scipy's filter: linear too).
3. The error for an absurd ``max_sigma`` (``1e12``).

How to run
----------
::

    . .venv/bin/activate
    python benchmarks/bench_blur_ig_memory.py                      # ~1 minute
    python benchmarks/bench_blur_ig_memory.py --repeat 5 --sizes 224x224x3 512x512x3 4096x4x1

To compare with another checkout of saliencykit, run the script with that
checkout's ``src`` first on ``PYTHONPATH`` (the header prints which one ran).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import saliency.core as reference

import saliencykit
import saliencykit.core as ours

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import INPUT_OUTPUT_GRADIENTS, environment_header, load_image, median  # noqa: E402

DEFAULT_SIZES = ("224x224x3", "512x512x3", "1024x1024x3", "2048x2048x3", "4096x4x1")
MEMORY_STEPS = 16


def zero_gradients(
    x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """A free model: zero gradients, so that only the library's work is measured."""
    return {INPUT_OUTPUT_GRADIENTS: np.zeros_like(x_value_batch)}


def timed(function: Callable[[], Any]) -> tuple[float, float]:
    """Returns ``(wall seconds, CPU seconds of this process)`` of ``function()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_bytes(function: Callable[[], Any]) -> int:
    """The peak of ``tracemalloc`` during ``function()``."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def parse_size(text: str) -> tuple[int, ...]:
    """``"512x512x3"`` -> ``(512, 512, 3)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a size is H x W or H x W x C, e.g. 512x512x3; got {text!r}")
    return shape


def time_table(repeat: int) -> None:
    image = load_image()
    print("1. library time, 224 x 224 x 3 float32, max_sigma=50, steps=100 (zero-gradient model)")
    header = ("batch", "ours wall", "ours cpu", "ref wall", "ref cpu", "speed-up (cpu)")
    print(
        "   " + "  ".join(f"{name:>{width}}" for name, width in zip(header, (5, 9, 8, 8, 8, 14), strict=True))
    )
    for batch_size in (1, 20):
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "ref": []}
        for index in range(repeat):
            order = ("ours", "ref") if index % 2 == 0 else ("ref", "ours")
            for name in order:
                method = ours.BlurIG() if name == "ours" else reference.BlurIG()
                times[name].append(
                    timed(lambda m=method, b=batch_size: m.GetMask(image, zero_gradients, batch_size=b))
                )
        ours_wall, ours_cpu = (median([t[i] for t in times["ours"]]) for i in (0, 1))
        ref_wall, ref_cpu = (median([t[i] for t in times["ref"]]) for i in (0, 1))
        print(
            f"   {batch_size:>5}  {ours_wall:>8.3f}s  {ours_cpu:>7.3f}s  {ref_wall:>7.3f}s  {ref_cpu:>7.3f}s"
            f"  {ref_cpu / ours_cpu:>13.1f}x"
        )


def memory_table(sizes: Sequence[tuple[int, ...]], with_reference: bool, steps: int) -> None:
    print(f"\n2. peak memory (tracemalloc) of GetMask, float32, steps={steps}, max_sigma=50")
    columns = ["ours bs=1", "ours bs=4"] + (["ref bs=1"] if with_reference else [])
    print(f"   {'size':>12}  {'image':>9}  " + "  ".join(f"{c:>20}" for c in columns) + f"  {'s/point':>7}")
    for shape in sizes:
        image = np.random.default_rng(0).random(shape).astype(np.float32)
        cells = []
        seconds_per_point = 0.0
        for batch_size in (1, 4):
            start = time.perf_counter()
            peak = peak_bytes(
                lambda x=image, b=batch_size: ours.BlurIG().GetMask(
                    x, zero_gradients, steps=steps, batch_size=b
                )
            )
            seconds_per_point = (time.perf_counter() - start) / steps
            cells.append(f"{peak / 1e6:9.1f} MB ({peak / image.nbytes:5.1f}x)")
        if with_reference:
            peak = peak_bytes(lambda x=image: reference.BlurIG().GetMask(x, zero_gradients, steps=steps))
            cells.append(f"{peak / 1e6:9.1f} MB ({peak / image.nbytes:5.1f}x)")
        size = "x".join(str(n) for n in shape)
        print(
            f"   {size:>12}  {image.nbytes / 1e6:7.1f}MB  "
            + "  ".join(f"{c:>20}" for c in cells)
            + f"  {seconds_per_point:7.3f}"
        )


def absurd_sigma() -> None:
    print("\n3. max_sigma=1e12 on a 224 x 224 x 3 image:")
    try:
        ours.BlurIG().GetMask(np.zeros((224, 224, 3), np.float32), zero_gradients, max_sigma=1e12)
    except (ValueError, MemoryError) as error:
        print(f"   {type(error).__name__}: {error}")
    else:
        print("   accepted")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant (median)")
    parser.add_argument("--sizes", type=parse_size, nargs="*", default=[parse_size(s) for s in DEFAULT_SIZES])
    parser.add_argument("--reference-memory", action="store_true", help="also the reference's peak memory")
    parser.add_argument("--memory-steps", type=int, default=MEMORY_STEPS, help="steps of the memory runs")
    parser.add_argument("--skip-time", action="store_true", help="memory only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    print("Blur IG: library time and memory, saliencykit.core vs reference saliency.core")
    for line in environment_header():
        print(line)
    print(f"ours    : {saliencykit.__file__}\n")
    if not arguments.skip_time:
        time_table(max(1, arguments.repeat))
    memory_table(arguments.sizes, arguments.reference_memory, max(1, arguments.memory_steps))
    absurd_sigma()
    return 0


if __name__ == "__main__":
    sys.exit(main())
