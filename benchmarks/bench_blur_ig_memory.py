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
4. The blur engine (issue 16): our zero-padded FFT against the discrete cosine
   transform route, both exact. SciPy's ``reflect`` boundary is the one a
   type-II DCT diagonalises, but the reference blurs with ``mode="constant"``
   (zero padding): the DCT then needs the image zero-padded on both sides by
   half the kernel radius, so its transforms are as long as the FFT's. The
   table gives the thread CPU time per path point (blur and derivative, the
   default path: 100 sigmas up to 50 on chelsea 224 x 224 x 3, float32; best
   of ``--repeat``) and each engine's largest error against
   ``scipy.ndimage.gaussian_filter`` (float64, sigmas 0.1 to 50, odd and even
   sizes), relative to the image's largest value.

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
import scipy.fft
from scipy import ndimage

import saliencykit
import saliencykit.core as ours
from saliencykit.core import blur_ig

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


class _DctBlur(blur_ig._SpectralBlur):
    """The DCT route, for comparison only: ``blur_ig._SpectralBlur`` with type-II DCTs.

    The image sits in the middle of a zero buffer padded by ``ceil(m / 2)`` on
    each side (``m`` the kernel taps that matter, as for the FFT): its
    half-sample symmetric extension then keeps every mirror image out of the
    kernel's reach, and the zero-padded blur is a per-frequency product with
    ``h_0 + 2 sum_j h_j cos(pi j k / L)``. The same paddings (levels) as the FFT.
    """

    def _use_level(self, sigma: float) -> None:
        needed = min(blur_ig._radius(sigma), self._longest_radius)
        if self._level_radius >= needed:
            return
        radius = next((level for level in self._level_radii if level >= needed), needed)
        self._level_radius = radius
        self.pad_h = -(-min(radius, self.height - 1) // 2)
        self.pad_w = -(-min(radius, self.width - 1) // 2)
        self.length_h = scipy.fft.next_fast_len(self.height + 2 * self.pad_h, real=True)
        self.length_w = scipy.fft.next_fast_len(self.width + 2 * self.pad_w, real=True)
        padded = np.zeros((self.channels, self.length_h, self.length_w), self.dtype)
        padded[:, self.pad_h : self.pad_h + self.height, self.pad_w : self.pad_w + self.width] = (
            self.image.transpose(2, 0, 1)
        )
        self.spectrum = scipy.fft.dctn(padded, axes=(1, 2), workers=1, overwrite_x=True)
        self._buffer = np.empty_like(self.spectrum[0])

    @staticmethod
    def _eigenvalues(taps: np.ndarray, length: int) -> np.ndarray:
        folded = np.zeros(2 * length)
        folded[: len(taps)] = taps
        if len(taps) > 1:
            folded[2 * length - len(taps) + 1 :] = taps[:0:-1]
        return np.fft.rfft(folded).real[:length]

    def _multipliers(self, taps: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self._eigenvalues(taps[0], self.length_h), self._eigenvalues(taps[1], self.length_w)

    def _apply(self, multiplier: np.ndarray, out: np.ndarray) -> None:
        rows = slice(self.pad_h, self.pad_h + self.height)
        columns = slice(self.pad_w, self.pad_w + self.width)
        for channel, spectrum in enumerate(self.spectrum):
            np.multiply(spectrum, multiplier, out=self._buffer)
            blurred_rows = scipy.fft.idct(self._buffer, axis=0, workers=1, overwrite_x=True)[rows]
            out[:, :, channel] = scipy.fft.idct(blurred_rows, axis=1, workers=1)[:, columns]


def blur_engines(repeat: int) -> None:
    print("\n4. blur engine: CPU ms per path point (blur + derivative), and the error against scipy")
    image = load_image()
    sigmas = np.arange(100) * 0.5
    rows = []
    for name, engine in (
        ("FFT, zero-padded (ours)", blur_ig._SpectralBlur),
        ("DCT-II, padded both sides", _DctBlur),
    ):
        best = float("inf")
        for _ in range(max(repeat, 3)):
            blur = engine(image, 50.01, np.float32)
            point, derivative = np.empty_like(image), np.empty_like(image)
            start = time.thread_time()
            for sigma in sigmas:
                blur.blur_and_derivative(float(sigma), 0.01, point, derivative)
            best = min(best, time.thread_time() - start)
        error = 0.0
        for shape in ((31, 20, 2), (64, 64, 1), (224, 224, 3)):
            x = np.random.default_rng(1).normal(size=shape)
            blur = engine(x, 50.01, np.float64)
            point, derivative = np.empty(shape), np.empty(shape)
            for sigma in (0.1, 0.7, 3.3, 12.0, 31.7, 50.0):
                blur.blur_and_derivative(sigma, 0.01, point, derivative)
                expected = ndimage.gaussian_filter(x, [sigma, sigma, 0], mode="constant")
                error = max(error, float(np.abs(point - expected).max() / np.abs(x).max()))
        rows.append((name, 1e3 * best / len(sigmas), error))
    for name, milliseconds, error in rows:
        print(f"   {name:28s} {milliseconds:6.2f} ms/point   max error {error:.1e}")
    print(f"   DCT / FFT time: {rows[1][1] / rows[0][1]:.2f}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant (median)")
    parser.add_argument("--sizes", type=parse_size, nargs="*", default=[parse_size(s) for s in DEFAULT_SIZES])
    parser.add_argument("--reference-memory", action="store_true", help="also the reference's peak memory")
    parser.add_argument("--memory-steps", type=int, default=MEMORY_STEPS, help="steps of the memory runs")
    parser.add_argument("--skip-time", action="store_true", help="memory only")
    parser.add_argument("--skip-engines", action="store_true", help="no FFT / DCT comparison")
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
    if not arguments.skip_engines:
        blur_engines(max(1, arguments.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
