"""saliencykit evaluate: score saliency methods with the PIC metrics over a set of images.

    saliencykit evaluate                         # five scikit-image photos, pretrained EfficientNet-Lite0
    saliencykit evaluate photos/ --methods ig,xrai,gradcam --json

For each image the model's top class is explained by each method; the
Softmax and Accuracy Information Curves (SIC, AIC; Kapishnikov et al. 2019)
measure how fast the prediction comes back as the most salient pixels are
revealed in a blurred image. Prints the AUC of the aggregate curves (SIC:
median over images, AIC: mean) and writes them to pic-curves.png.
Images the metric must skip (prediction below --min-pred-value, or a
blurred image that is not less informative) are counted and listed; they do
not stop the run.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .console import Console, progress_bar
from .display import saliency_2d
from .errors import CliError, missing_dependency
from .images import InputImage, images_in, load_image, load_sample_image, resize_image
from .methods import METHODS, choose_methods, method_parameters, parse_method_names, run_method
from .models import LoadedModel, load_model, predict
from .options import add_method_arguments, add_model_arguments, parameter_options, parse_input_size

__all__ = ["DEFAULT_EVALUATE_IMAGES", "DEFAULT_EVALUATE_METHODS", "add_arguments", "run"]

#: scikit-image photos scored by default: three the model is sure of, two it is not (skipped by SIC).
DEFAULT_EVALUATE_IMAGES = ("chelsea", "coffee", "camera", "astronaut", "rocket")
DEFAULT_EVALUATE_METHODS = ("ig", "gradcam", "xrai")
METRICS = {"sic": "SIC", "aic": "AIC"}
#: How each metric's curves are aggregated over images (the paper's choices).
AGGREGATION = {"sic": "median", "aic": "mean"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``evaluate``'s arguments to its sub-parser."""
    parser.add_argument(
        "images",
        nargs="*",
        help="image files or folders of images (default: scikit-image's "
        f"{', '.join(DEFAULT_EVALUATE_IMAGES)})",
    )
    add_model_arguments(parser)
    add_method_arguments(parser, ",".join(DEFAULT_EVALUATE_METHODS))
    pic = parser.add_argument_group("PIC")
    pic.add_argument(
        "--min-pred-value",
        type=float,
        default=0.5,
        help="skip images whose prediction is below this (default: %(default)s)",
    )
    pic.add_argument("--seed", type=int, default=0, help="seed of the random masks (default: %(default)s)")
    pic.add_argument("--n-jobs", type=int, help="parallel workers blurring images (default: every core)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="saliencykit-out", help="output folder (default: %(default)s)")


def _load_images(paths: list[str], console: Console) -> tuple[list[InputImage], dict[str, str]]:
    """The readable images, and ``name -> reason`` for the files that could not be read."""
    if not paths:
        return [load_sample_image(name) for name in DEFAULT_EVALUATE_IMAGES], {}
    images, unreadable = [], {}
    for path in images_in(paths):
        try:
            images.append(load_image(path, "images"))
        except CliError as error:
            unreadable[str(path)] = str(error)
            console.note(f"skipping {path}: {error}")
    if not images:
        raise CliError(f"images: none of the {len(unreadable)} files could be read as an image")
    return images, unreadable


def _aggregate(pic: Any, results: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, Any]]:
    """``method -> metric -> AggregateMetricResult or None`` (no image left)."""
    return {
        method: {
            metric: pic.aggregate_individual_pic_results(curves, method=AGGREGATION[metric])
            if curves
            else None
            for metric, curves in by_metric.items()
        }
        for method, by_metric in results.items()
    }


def _save_plot(pic: Any, path: Path, aggregates: dict[str, dict[str, Any]], counts: dict[str, int]) -> Path:
    """Draws the aggregate SIC and AIC curves side by side (AUCs in the legends) and saves the PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    for axes, (metric, title) in zip(figure.subplots(1, 2), METRICS.items(), strict=True):
        curves = {
            METHODS[name].title: by_metric[metric]
            for name, by_metric in aggregates.items()
            if by_metric[metric] is not None
        }
        heading = f"{title} ({AGGREGATION[metric]} over {counts[metric]} images)"
        if curves:
            pic.plot_pic_curves(curves, ax=axes, title=heading)
        else:
            axes.set_title(f"{title}: every image was skipped")
            axes.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _score_image(
    pic: Any,
    source: InputImage,
    seed: int,
    model: LoadedModel,
    names: list[str],
    parameters: dict[str, dict[str, Any]],
    pic_options: dict[str, Any],
    results: dict[str, dict[str, list[Any]]],
    skipped: dict[str, dict[str, str]],
    bar: Any,
) -> dict[str, Any]:
    """Explains one image's top class with each method and computes SIC and AIC for each map.

    Appends each curve to ``results[method][metric]``; an image the metric must
    skip goes to ``skipped[metric][image name]`` with the reason.

    Returns:
      The image's record for the summary: its prediction and its AUCs.
    """
    pixels = np.round(resize_image(source.pixels, model.input_size)).astype(np.uint8)
    prediction = predict(model, pixels.astype(np.float32))
    call = model.make_call_model_function(prediction.class_index)
    random_mask = pic.generate_random_mask(*model.input_size, fraction=0.01, seed=seed)
    aucs: dict[str, dict[str, float]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for name in names:
        bar.set_postfix_str(f"{source.name} {METHODS[name].title}")
        result = run_method(name, pixels.astype(np.float32), call, parameters[name])
        importance = saliency_2d(result.saliency_map, result.display)
        bar.update(1)
        pic_started = time.perf_counter()
        for metric, compute in (("sic", pic.compute_sic), ("aic", pic.compute_aic)):
            try:
                curve = compute(
                    pixels,
                    importance,
                    random_mask,
                    model.predict_probabilities,
                    prediction.class_index,
                    **pic_options,
                )
            except pic.ComputePicMetricError as error:
                skipped[metric][source.name] = str(error)
                continue
            finally:
                bar.update(1)
            results[name][metric].append(curve)
            aucs.setdefault(name, {})[metric] = float(curve.auc)
        seconds[name] = {"map": result.seconds, "pic": time.perf_counter() - pic_started}
    return {
        "image": source.name,
        "class_index": prediction.class_index,
        "label": prediction.label,
        "probability": prediction.probability,
        "auc": aucs,
        "seconds": seconds,
    }


def run(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit evaluate`` with parsed arguments; returns the exit status."""
    started = time.perf_counter()
    try:
        from .. import metrics as pic
    except ImportError as error:
        raise missing_dependency(error, "the PIC metrics", "demo") from None
    requested = parse_method_names(args.methods)
    # --methods all: every method the model supports, like the default of explain.
    default = list(METHODS) if args.methods else list(DEFAULT_EVALUATE_METHODS)
    input_size = parse_input_size(args.input_size)
    # Parameters are checked before anything slow is loaded (the size only changes defaults).
    method_parameters(requested or default, input_size or (224, 224), **parameter_options(args))
    images, unreadable = _load_images(args.images, console)
    model, notes = load_model(
        args.model,
        input_size=input_size,
        preprocess=args.preprocess,
        layer=args.layer,
        labels=args.labels,
    )
    for note in notes:
        console.note(note)
    first_image = resize_image(images[0].pixels, model.input_size)[None]
    first_call = model.make_call_model_function(0)
    names, skipped_methods = choose_methods(
        requested,
        default,
        model.unsupported,
        lambda keys: first_call(first_image, None, keys),
        console.note,
    )
    parameters = method_parameters(names, model.input_size, **parameter_options(args))
    pic_options = {
        "min_pred_value": args.min_pred_value,
        "batch_size": args.batch_size,
        "n_jobs": args.n_jobs,
    }
    results: dict[str, dict[str, list[Any]]] = {name: {metric: [] for metric in METRICS} for name in names}
    skipped: dict[str, dict[str, str]] = {metric: {} for metric in METRICS}
    steps = len(images) * len(names) * (1 + len(METRICS))  # each map, then each metric
    with progress_bar(console, total=steps, unit="step", desc="evaluate") as bar:
        per_image = [
            _score_image(
                pic, source, args.seed + number, model, names, parameters, pic_options, results, skipped, bar
            )
            for number, source in enumerate(images)
        ]
    counts = {metric: len(images) - len(skipped[metric]) for metric in METRICS}
    aggregates = _aggregate(pic, results)
    out = Path(args.out)
    try:
        plot_path = _save_plot(pic, out / "pic-curves.png", aggregates, counts)
    except ImportError as error:
        raise missing_dependency(error, "the PIC plot (matplotlib)", "demo") from None
    except OSError as error:
        raise CliError(f"--out: cannot write to {args.out!r}: {error}") from None
    summary = {
        "model": model.description,
        "images": per_image,
        "unreadable": unreadable,
        "methods_left_out": skipped_methods,
        "skipped": skipped,
        "images_used": counts,
        "methods": {
            name: {
                "parameters": parameters[name],
                "map_seconds": sum(record["seconds"][name]["map"] for record in per_image),
                "pic_seconds": sum(record["seconds"][name]["pic"] for record in per_image),
                **{
                    metric: None if aggregate is None else float(aggregate.auc)
                    for metric, aggregate in aggregates[name].items()
                },
            }
            for name in names
        },
        "pic": {"aggregation": AGGREGATION, **pic_options, "seed": args.seed},
        "outputs": {"plot": str(plot_path), "summary": str(out / "pic.json")},
        "total_seconds": time.perf_counter() - started,
    }
    Path(summary["outputs"]["summary"]).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if console.json:
        console.print_json(summary)
    else:
        console.info(_table(summary, len(images)))
    return 0


def _table(summary: dict[str, Any], n_images: int) -> str:
    text = io.StringIO()
    print(f"PIC over {n_images} images, model: {summary['model']}", file=text)
    print(f"{'method':22s} {'SIC AUC':>8s} {'AIC AUC':>8s}", file=text)
    for name, scores in summary["methods"].items():
        cells = ["     n/a" if scores[m] is None else f"{scores[m]:8.3f}" for m in METRICS]
        print(f"{METHODS[name].title:22s} {' '.join(cells)}", file=text)
    for metric, title in METRICS.items():
        reasons = summary["skipped"][metric]
        used = summary["images_used"][metric]
        line = f"{title}: {used} of {n_images} images used"
        if reasons:
            line += f", {len(reasons)} skipped: " + "; ".join(
                f"{name} ({_first_sentence(why)})" for name, why in reasons.items()
            )
        print(line, file=text)
    if summary["unreadable"]:
        print(f"unreadable files: {len(summary['unreadable'])}", file=text)
    print(f"wrote plot: {summary['outputs']['plot']}", file=text)
    print(f"wrote summary: {summary['outputs']['summary']}", file=text)
    return text.getvalue().rstrip("\n")


def _first_sentence(text: str) -> str:
    """The first sentence of a (long) PIC error message, without its full stop."""
    return text.split(". ")[0].rstrip(".").replace("`", "")
