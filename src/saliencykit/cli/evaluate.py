"""saliencykit evaluate: score saliency methods with the PIC metrics over a set of images.

    saliencykit evaluate                         # five scikit-image photos, pretrained EfficientNet-Lite0
    saliencykit evaluate photos/ --methods ig,xrai,gradcam --json

For each image the model's top class is explained by each method; the
Softmax and Accuracy Information Curves (SIC, AIC; Kapishnikov et al. 2019)
measure how fast the prediction comes back as the most salient pixels are
revealed in a blurred image. Prints the AUC of the aggregate curves (SIC:
median over images, AIC: mean) and writes them to pic-curves.png.
Images the metric must skip are counted and listed; they do not stop the
run. An image whose top prediction is below --min-pred-value is skipped by
both metrics before its maps are computed; one whose fully blurred image is
not less informative is skipped by the metric concerned. The model's
predictions on the blurred images are batched (--batch-size, default: all 13
thresholds at once). pic-curves.png and pic.json are written to temporary
names and then renamed, pic.json last; --out is checked before anything is
computed.

A --model file is code (TorchScript and Keras files can run code): use only
files you trust.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

import numpy as np

from .console import Console, progress_bar
from .display import saliency_2d
from .errors import CliError, missing_dependency
from .images import InputImage, images_in, load_image, load_sample_image, resize_image
from .methods import METHODS, choose_methods, method_parameters, parse_method_names, run_method
from .models import LoadedModel, load_model, predict
from .options import (
    add_method_arguments,
    add_model_arguments,
    integer_in,
    number_in,
    parameter_options,
    parse_input_size,
)
from .outputs import prepare_output_folder, staged_outputs

__all__ = [
    "DEFAULT_EVALUATE_IMAGES",
    "DEFAULT_EVALUATE_METHODS",
    "MAX_N_JOBS",
    "add_arguments",
    "pic_options",
    "run",
]

#: scikit-image photos scored by default: three the model is sure of, two it is not (skipped by SIC).
DEFAULT_EVALUATE_IMAGES = ("chelsea", "coffee", "camera", "astronaut", "rocket")
DEFAULT_EVALUATE_METHODS = ("ig", "gradcam", "xrai")
METRICS = {"sic": "SIC", "aic": "AIC"}
#: How each metric's curves are aggregated over images (the paper's choices).
AGGREGATION = {"sic": "median", "aic": "mean"}
#: The most ``--n-jobs`` (threads blurring images).
MAX_N_JOBS = 256


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
        type=number_in(0.0, 1.0),
        default=0.5,
        help="skip images whose top prediction is below this, from 0 to 1, before their maps are "
        "computed (default: %(default)s)",
    )
    pic.add_argument(
        "--seed", type=integer_in(0), default=0, help="seed of the random masks, >= 0 (default: %(default)s)"
    )
    pic.add_argument(
        "--n-jobs",
        type=integer_in(1, MAX_N_JOBS),
        help=f"parallel workers blurring images, 1 to {MAX_N_JOBS} (default: every core)",
    )
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


def _plot_png(pic: Any, aggregates: dict[str, dict[str, Any]], counts: dict[str, int]) -> bytes:
    """Draws the aggregate SIC and AIC curves side by side (AUCs in the legends); returns the PNG bytes."""
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
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def pic_options(args: argparse.Namespace, thresholds: int) -> dict[str, Any]:
    """The keywords ``evaluate`` passes to ``compute_sic`` / ``compute_aic``.

    ``batch_size`` is always given, so that the blurred images' predictions
    are batched whatever :func:`saliencykit.metrics.compute_pic_metric`'s
    default is (the original library calls ``pred_func`` on one image at a
    time): ``--batch-size``, else all ``thresholds`` images in one call.
    """
    return {
        "min_pred_value": args.min_pred_value,
        "batch_size": args.batch_size if args.batch_size is not None else thresholds,
        "n_jobs": args.n_jobs,
    }


def _low_confidence(probability: float, min_pred_value: float) -> str:
    """Why an image is skipped before its maps are computed (the words of PIC's own error)."""
    return (
        "The model prediction score on the original image is lower than `min_pred_value`. Skip this image"
        " or decrease the value of `min_pred_value` argument. min_pred_value ="
        f" {min_pred_value}, the image prediction = {probability}."
    )


def _score_image(
    pic: Any,
    source: InputImage,
    seed: int,
    model: LoadedModel,
    names: list[str],
    parameters: dict[str, dict[str, Any]],
    options: dict[str, Any],
    results: dict[str, dict[str, list[Any]]],
    skipped: dict[str, dict[str, str]],
    bar: Any,
) -> dict[str, Any]:
    """Explains one image's top class with each method and computes SIC and AIC for each map.

    Appends each curve to ``results[method][metric]``; an image the metric must
    skip goes to ``skipped[metric][image name]`` with the reason. An image whose
    top probability is below ``min_pred_value`` is skipped by both metrics at
    once, before any map is computed (PIC would refuse it after).

    Returns:
      The image's record for the summary: its prediction and its AUCs.
    """
    pixels = np.round(resize_image(source.pixels, model.input_size)).astype(np.uint8)
    prediction = predict(model, pixels.astype(np.float32))
    aucs: dict[str, dict[str, float]] = {}
    seconds: dict[str, dict[str, float]] = {}
    record = {
        "image": source.name,
        "class_index": prediction.class_index,
        "label": prediction.label,
        "probability": prediction.probability,
        "auc": aucs,
        "seconds": seconds,
    }
    if prediction.probability < options["min_pred_value"]:
        for metric in METRICS:
            skipped[metric][source.name] = _low_confidence(prediction.probability, options["min_pred_value"])
        bar.update(len(names) * (1 + len(METRICS)))
        return record
    call = model.make_call_model_function(prediction.class_index)
    random_mask = pic.generate_random_mask(*model.input_size, fraction=0.01, seed=seed)
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
                    **options,
                )
            except pic.ComputePicMetricError as error:
                skipped[metric][source.name] = str(error)
                continue
            finally:
                bar.update(1)
            results[name][metric].append(curve)
            aucs.setdefault(name, {})[metric] = float(curve.auc)
        seconds[name] = {"map": result.seconds, "pic": time.perf_counter() - pic_started}
    return record


def run(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit evaluate`` with parsed arguments; returns the exit status."""
    started = time.perf_counter()
    try:
        from .. import metrics as pic
    except ImportError as error:
        raise missing_dependency(error, "the PIC metrics", "plot") from None
    requested = parse_method_names(args.methods)
    # --methods all: every method the model supports, like the default of explain.
    default = list(METHODS) if args.methods else list(DEFAULT_EVALUATE_METHODS)
    input_size = parse_input_size(args.input_size)
    # Parameters are checked before anything slow is loaded (the size only changes defaults).
    method_parameters(requested or default, input_size or (224, 224), **parameter_options(args))
    out = prepare_output_folder(args.out)
    try:
        import matplotlib  # noqa: F401  (the plot needs it: fail before any model work)
    except ImportError as error:
        raise missing_dependency(error, "the PIC plot (matplotlib)", "plot") from None
    images, unreadable = _load_images(args.images, console)
    model, notes = load_model(
        args.model,
        input_size=input_size,
        preprocess=args.preprocess,
        layer=args.layer,
        labels=args.labels,
        device=args.device,
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
    options = pic_options(args, len(pic.DEFAULT_SALIENCY_THRESHOLDS))
    results: dict[str, dict[str, list[Any]]] = {name: {metric: [] for metric in METRICS} for name in names}
    skipped: dict[str, dict[str, str]] = {metric: {} for metric in METRICS}
    steps = len(images) * len(names) * (1 + len(METRICS))  # each map, then each metric
    with progress_bar(console, total=steps, unit="step", desc="evaluate") as bar:
        per_image = [
            _score_image(
                pic, source, args.seed + number, model, names, parameters, options, results, skipped, bar
            )
            for number, source in enumerate(images)
        ]
    counts = {metric: len(images) - len(skipped[metric]) for metric in METRICS}
    aggregates = _aggregate(pic, results)
    try:
        with staged_outputs(out) as staged:  # moved onto their names only once both are written
            plot_path = staged.write_bytes("pic-curves.png", _plot_png(pic, aggregates, counts))
            summary = _summary(
                started,
                model,
                per_image,
                unreadable,
                skipped_methods,
                skipped,
                counts,
                names,
                parameters,
                aggregates,
                {**options, "seed": args.seed},
                {"plot": str(plot_path), "summary": str(out / "pic.json")},
            )
            staged.write_text("pic.json", json.dumps(summary, indent=2) + "\n")  # last
    except ImportError as error:
        raise missing_dependency(error, "the PIC plot (matplotlib)", "plot") from None
    except OSError as error:
        raise CliError(f"--out: cannot write to {args.out!r}: {error.strerror or error}") from None
    if console.json:
        console.print_json(summary)
    else:
        console.info(_table(summary, len(images)))
    return 0


def _summary(
    started: float,
    model: LoadedModel,
    per_image: list[dict[str, Any]],
    unreadable: dict[str, str],
    skipped_methods: dict[str, str],
    skipped: dict[str, dict[str, str]],
    counts: dict[str, int],
    names: list[str],
    parameters: dict[str, dict[str, Any]],
    aggregates: dict[str, dict[str, Any]],
    options: dict[str, Any],
    outputs: dict[str, str],
) -> dict[str, Any]:
    """The summary pic.json holds and --json prints."""
    return {
        "model": model.description,
        "device": model.device,
        "gradcam_layer": model.gradcam_layer,
        "images": per_image,
        "unreadable": unreadable,
        "methods_left_out": skipped_methods,
        "skipped": skipped,
        "images_used": counts,
        "methods": {
            name: {
                "parameters": parameters[name],
                "map_seconds": sum(
                    record["seconds"][name]["map"] for record in per_image if name in record["seconds"]
                ),
                "pic_seconds": sum(
                    record["seconds"][name]["pic"] for record in per_image if name in record["seconds"]
                ),
                **{
                    metric: None if aggregate is None else float(aggregate.auc)
                    for metric, aggregate in aggregates[name].items()
                },
            }
            for name in names
        },
        "pic": {"aggregation": AGGREGATION, **options},
        "outputs": outputs,
        "total_seconds": time.perf_counter() - started,
    }


def _table(summary: dict[str, Any], n_images: int) -> str:
    text = io.StringIO()
    print(f"PIC over {n_images} images, model: {summary['model']}", file=text)
    if summary["gradcam_layer"] and "gradcam" in summary["methods"]:
        print(f"Grad-CAM layer: {summary['gradcam_layer']}", file=text)
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
