"""PIC metric: saliencykit.metrics against the reference (saliency 0.2.1), same run, same inputs.

Measures ``compute_pic_metric`` on 224 x 224 photos with the reference notebook's
13 saliency thresholds, the pretrained EfficientNet-Lite0 as the SIC model
(softmax probability of the top class) and a Guided-IG-like structured saliency
map. The two libraries alternate within every repeat so that they share the
machine's load. It checks that both give the same AUC (target: identical to
1e-6) and prints the wall time of each, the ratio (target: ours >= 3x faster),
and the time spent inside the model.

A second section times the pieces on one image with no model at all: the
blurred images (griddata per channel against one triangulation for all
channels) and the WebP sizes, serial and in 2 threads,
to show where the time goes and the floor for identical results.

Usage::

    python benchmarks/bench_pic.py [--repeat 3] [--images chelsea,coffee] [--n-jobs N]

The reference calls ``np.trapz``, removed in NumPy 2; the script puts it back.
Run it on a quiet machine: on 2 cores, another process using the CPU changes the
timings (PyTorch's threads especially) by large factors.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    environment_header,
    load_model,
    median,
    time_call,
)

if not hasattr(np, "trapz"):  # the reference needs it
    np.trapz = np.trapezoid

from saliency.metrics import pic as reference_pic  # noqa: E402
from scipy import interpolate  # noqa: E402
from skimage import data, filters, transform  # noqa: E402

from saliencykit import metrics as pic  # noqa: E402

SPEEDUP_TARGET = 3.0
AUC_TOLERANCE = 1e-6


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo resized to 224 x 224, uint8."""
    return (
        (transform.resize(getattr(data, name)(), (224, 224), anti_aliasing=True) * 255)
        .round()
        .astype(np.uint8)
    )


def structured_saliency(image: np.ndarray) -> np.ndarray:
    """A saliency map with the spatial structure of a real one: smoothed edge strength."""
    gray = image.mean(axis=-1) / 255
    return filters.gaussian(filters.sobel(gray), sigma=3)


class TimedPredictor:
    """SIC ``pred_func`` for the top class of EfficientNet-Lite0; accumulates its own seconds."""

    def __init__(self, model: torch.nn.Module, class_index: int | slice) -> None:
        self.model, self.class_index, self.seconds, self.calls = model, class_index, 0.0, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            logits = self.model((batch / 255 - IMAGENET_MEAN) / IMAGENET_STD)
        probabilities = torch.softmax(logits, dim=1)[:, self.class_index].numpy()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return probabilities


def compare_end_to_end(model: torch.nn.Module, names: list[str], repeat: int, n_jobs: int | None) -> bool:
    thresholds = list(pic.DEFAULT_SALIENCY_THRESHOLDS)
    all_met = True
    print("\n## compute_pic_metric, 224x224, 13 thresholds, EfficientNet-Lite0 SIC\n")
    print("| image | reference s | ours s | ref / ours | model s (ref, ours) | |AUC diff| | AUC |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        image = load_photo(name)
        class_index = int(np.argmax(TimedPredictor(model, slice(None))(image[None])))
        saliency_map = structured_saliency(image)
        random_mask = pic.generate_random_mask(224, 224, seed=0)
        arguments = (image, saliency_map, random_mask)
        reference_times, our_times, reference_model, our_model = [], [], [], []
        for index in range(repeat):
            order = ("ours", "reference") if index % 2 else ("reference", "ours")
            for variant in order:
                predictor = TimedPredictor(model, class_index)
                compute = (
                    reference_pic.compute_pic_metric if variant == "reference" else pic.compute_pic_metric
                )
                # batch_size=None: all thresholds in one call (opt-in; the default is one image per call)
                options = {} if variant == "reference" else {"n_jobs": n_jobs, "batch_size": None}
                start = time.perf_counter()
                outcome = compute(*arguments, predictor, thresholds, min_pred_value=0.0, **options)
                seconds = time.perf_counter() - start
                if variant == "reference":
                    expected = outcome
                    reference_times.append(seconds)
                    reference_model.append(predictor.seconds)
                else:
                    result = outcome
                    our_times.append(seconds)
                    our_model.append(predictor.seconds)
        auc_difference = abs(float(result.auc) - float(expected.auc))
        ratio = median(reference_times) / median(our_times)
        all_met &= ratio >= SPEEDUP_TARGET and auc_difference <= AUC_TOLERANCE
        print(
            f"| {name} | {median(reference_times):.2f} | {median(our_times):.2f} | {ratio:.2f}x |"
            f" {median(reference_model):.2f}, {median(our_model):.2f} | {auc_difference:.1e} |"
            f" {float(result.auc):.4f} |"
        )
    return all_met


def time_pieces(name: str, repeat: int) -> None:
    image = load_photo(name)
    saliency_map = structured_saliency(image)
    random_mask = pic.generate_random_mask(224, 224, seed=0)
    quantiles = np.quantile(saliency_map, 1 - np.asarray(pic.DEFAULT_SALIENCY_THRESHOLDS))
    masks = [random_mask] + [(saliency_map >= quantile) | random_mask for quantile in quantiles]

    def griddata_per_channel(mask: np.ndarray) -> None:
        known, unknown = np.argwhere(mask), np.argwhere(~mask)
        for channel in range(3):
            interpolate.griddata(known, image[..., channel][mask], unknown, method="linear")

    blurred = [pic.create_blurred_image(image, mask) for mask in masks] + [image]
    pieces = {
        "griddata, 3 channels x 14 masks (reference)": lambda: [griddata_per_channel(m) for m in masks],
        "one triangulation x 14 masks, serial": lambda: [pic.create_blurred_image(image, m) for m in masks],
        "WebP size x 15 images, serial": lambda: [pic.estimate_image_entropy(b) for b in blurred],
    }
    with ThreadPoolExecutor(2) as executor:
        pieces["one triangulation x 14 masks, 2 threads"] = lambda: list(
            executor.map(lambda m: pic.create_blurred_image(image, m), masks)
        )
        pieces["WebP size x 15 images, 2 threads"] = lambda: list(
            executor.map(pic.estimate_image_entropy, blurred)
        )
        print(f"\n## Where the time goes ({name}, no model; median of {repeat})\n")
        print("| piece | seconds |")
        print("|---|---|")
        for label, function in pieces.items():
            seconds = median([time_call(function)[1] for _ in range(repeat)])
            print(f"| {label} | {seconds:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", default="chelsea,coffee")
    parser.add_argument(
        "--n-jobs", type=int, default=None, help="threads for saliencykit (default: all cores)"
    )
    args = parser.parse_args()
    print("\n".join(environment_header()))
    torch.set_num_threads(2)
    model = load_model()
    names = args.images.split(",")
    print(f"saliencykit: n_jobs={args.n_jobs or 'all cores'} threads")
    met = compare_end_to_end(model, names, args.repeat, args.n_jobs)
    time_pieces(names[0], args.repeat)
    verdict = "met" if met else "NOT met"
    print(f"\nTarget (>= {SPEEDUP_TARGET}x faster, |AUC diff| <= {AUC_TOLERANCE}): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
