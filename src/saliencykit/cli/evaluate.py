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
not less informative is skipped by the metric concerned. Each method
computes the maps of all the images kept at once (GetMaskBatch): the model
evaluations of different images, each explained through its own top class,
share calls of at most the method's batch size (its batch_size parameter,
else --batch-size, else 16); the maps are those of one image at a time. The
model's predictions on the blurred images are batched (--batch-size, default:
all 13 thresholds at once). pic-curves.png and pic.json are written to temporary
names and then renamed, pic.json last; --out is checked before anything is
computed.

With --run OUT, the maps stored by "saliencykit explain" on many images in
OUT are scored instead (the missing ones computed; the images, methods and
parameters default to the run's; give the run's --model options again):
each method's AUC with a bootstrap interval over images (--n-bootstrap,
--confidence), a seeded random-map baseline (unless --no-baseline) and the
paired differences between methods; each PIC result is stored under
OUT/pic so a rerun computes nothing twice, and OUT/evaluation.json holds
the summary. The exit status is 4 when some maps or PIC results failed.

--metrics adds deletion and insertion (Petsiuk et al. 2018: AUC per method,
mean curves in deletion-insertion.png) and model-parameter randomisation
(Adebayo et al. 2018: rank correlation and SSIM of each method's maps with
the model's top layers randomised, randomisation.png) to PIC, or replaces it.

A --model file is code (TorchScript and Keras files can run code): use only
files you trust.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .console import Console, progress_bar
from .dataset import add_run_arguments, check_run_options, run_stored_evaluation
from .display import saliency_2d
from .errors import CliError, missing_dependency
from .images import InputImage, images_in, load_image, load_sample_image, resize_image
from .map_metrics import (
    MAP_METRICS,
    parse_metrics,
    score_map_metrics,
    write_map_metric_plots,
)
from .methods import (
    METHODS,
    BatchResult,
    batch_size_of,
    choose_methods,
    counting_calls,
    method_parameters,
    parse_method_names,
    run_method_batch,
)
from .models import LoadedModel, Prediction, load_model, predict
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
    pic = parser.add_argument_group("metrics")
    pic.add_argument(
        "--metrics",
        metavar="NAMES",
        help=f"comma-separated metrics: all, {','.join(MAP_METRICS)} (default: pic, i.e. SIC and AIC); "
        "deletion and insertion: the explained class's probability as the most salient pixels are "
        "removed or revealed (deletion-insertion.png); randomisation: maps on the model with its top "
        "layers randomised (randomisation.png; PyTorch and Keras models)",
    )
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
    add_run_arguments(parser)


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


@dataclass
class _Scored:
    """An image the methods explain: its pixels, its prediction, its random mask and its summary record."""

    pixels: np.ndarray
    prediction: Prediction
    random_mask: np.ndarray
    record: dict[str, Any]


def _predict_images(
    pic: Any,
    images: list[InputImage],
    seed: int,
    model: LoadedModel,
    min_pred_value: float,
    skipped: dict[str, dict[str, str]],
) -> tuple[list[dict[str, Any]], list[_Scored]]:
    """Predicts every image; returns every image's summary record, and the images confident enough.

    An image whose top probability is below ``min_pred_value`` is skipped by
    both metrics at once (``skipped[metric][image name]``), before any map is
    computed (PIC would refuse it after). Image ``number`` gets the random mask
    of seed ``seed + number``, whether or not others are skipped.
    """
    records, kept = [], []
    for number, source in enumerate(images):
        pixels = np.round(resize_image(source.pixels, model.input_size)).astype(np.uint8)
        prediction = predict(model, pixels.astype(np.float32))
        record = {
            "image": source.name,
            "class_index": prediction.class_index,
            "label": prediction.label,
            "probability": prediction.probability,
            "auc": {},
            "seconds": {},
        }
        records.append(record)
        if prediction.probability < min_pred_value:
            for metric in METRICS:
                skipped[metric][source.name] = _low_confidence(prediction.probability, min_pred_value)
            continue
        random_mask = pic.generate_random_mask(*model.input_size, fraction=0.01, seed=seed + number)
        kept.append(_Scored(pixels, prediction, random_mask, record))
    return records, kept


def _method_maps(
    name: str,
    kept: list[_Scored],
    model: LoadedModel,
    parameters: dict[str, Any],
    batch_size: int | None,
    console: Console,
) -> tuple[BatchResult, int]:
    """One method's maps of the kept images: one ``GetMaskBatch`` over all of them.

    Each image's map explains its own top class (the per-image targets go to
    the adapter through ``call_model_args``, one class index per image), so
    the evaluations of different images share model calls of at most the
    method's batch size (:func:`~.methods.batch_size_of`). The progress bar
    counts the images the model evaluates, out of the method's
    ``n_model_inputs`` per image.

    Returns:
      The maps, and the number of model calls they took.
    """
    spec = METHODS[name]
    classes = [scored.prediction.class_index for scored in kept]
    call = model.make_call_model_function(classes[0])
    images = np.stack([scored.pixels.astype(np.float32) for scored in kept])
    total = len(kept) * spec.evaluations(parameters, model.input_size)
    calls = 0
    with progress_bar(console, total=total, unit="image", desc=f"{spec.title} maps") as bar:

        def on_batch(size: int) -> None:
            nonlocal calls
            calls += 1
            bar.update(size)

        maps = run_method_batch(
            name,
            images,
            counting_calls(call, on_batch),
            parameters,
            classes,
            batch_size_of(name, parameters, batch_size),
        )
    return maps, calls


def _score_method(
    pic: Any,
    name: str,
    kept: list[_Scored],
    maps: BatchResult,
    predict_probabilities: Any,
    options: dict[str, Any],
    results: dict[str, dict[str, list[Any]]],
    skipped: dict[str, dict[str, str]],
    console: Console,
) -> None:
    """Computes SIC and AIC for each kept image's map of method ``name``.

    Appends each curve to ``results[name][metric]`` (in image order); an image
    the metric must skip goes to ``skipped[metric][image name]`` with the
    reason. Each image's record gets its AUCs, and its seconds: ``map`` is its
    share of the method's batch (the batch's time over the images), ``pic``
    its own curves' time.
    """
    spec = METHODS[name]
    with progress_bar(console, total=len(kept) * len(METRICS), unit="curve", desc=f"{spec.title} PIC") as bar:
        for scored, saliency_map in zip(kept, maps.maps, strict=True):
            record, prediction = scored.record, scored.prediction
            bar.set_postfix_str(record["image"])
            importance = saliency_2d(saliency_map, spec.display)
            pic_started = time.perf_counter()
            for metric, compute in (("sic", pic.compute_sic), ("aic", pic.compute_aic)):
                try:
                    curve = compute(
                        scored.pixels,
                        importance,
                        scored.random_mask,
                        predict_probabilities,
                        prediction.class_index,
                        **options,
                    )
                except pic.ComputePicMetricError as error:
                    skipped[metric][record["image"]] = str(error)
                    continue
                finally:
                    bar.update(1)
                results[name][metric].append(curve)
                record["auc"].setdefault(name, {})[metric] = float(curve.auc)
            record["seconds"][name] = {
                "map": maps.seconds / len(kept),
                "pic": time.perf_counter() - pic_started,
            }


def run(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit evaluate`` with parsed arguments; returns the exit status.

    With ``--run OUT``: :func:`saliencykit.cli.dataset.run_stored_evaluation`.
    """
    if args.run_folder is not None:
        return run_stored_evaluation(args, console)
    check_run_options(args)
    started = time.perf_counter()
    try:
        from .. import metrics as pic
    except ImportError as error:
        raise missing_dependency(error, "the PIC metrics", "plot") from None
    requested = parse_method_names(args.methods)
    wanted = parse_metrics(args.metrics)
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
    per_image, kept = _predict_images(pic, images, args.seed, model, args.min_pred_value, skipped)
    if "randomisation" in wanted and model.randomised_calls is None:
        raise CliError(f"--metrics randomisation: needs a PyTorch or Keras model, not {model.description}")
    batches: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {name: {} for name in names}
    for name in names if kept else []:
        maps, calls = _method_maps(name, kept, model, parameters[name], args.batch_size, console)
        batches[name] = {"batch_size": maps.batch_size, "model_calls": calls}
        if "pic" in wanted:
            _score_method(
                pic, name, kept, maps, model.predict_probabilities, options, results, skipped, console
            )
        score_map_metrics(
            pic,
            wanted,
            name,
            [scored.pixels for scored in kept],
            [scored.prediction.class_index for scored in kept],
            [scored.record for scored in kept],
            maps.maps,
            model,
            parameters[name],
            args.batch_size,
            args.seed,
            extra[name],
        )
    # In the images' order, whichever step skipped them.
    order = [source.name for source in images]
    skipped = {
        metric: {image: reasons[image] for image in dict.fromkeys(order) if image in reasons}
        for metric, reasons in skipped.items()
    }
    counts = {metric: len(images) - len(skipped[metric]) for metric in METRICS}
    aggregates = _aggregate(pic, results)
    try:
        with staged_outputs(out) as staged:  # moved onto their names only once all are written
            plots = write_map_metric_plots(pic, staged, wanted, extra)
            if "pic" in wanted:
                plots["plot"] = str(staged.write_bytes("pic-curves.png", _plot_png(pic, aggregates, counts)))
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
                batches,
                aggregates,
                {**options, "seed": args.seed},
                {**plots, "summary": str(out / "pic.json")},
            )
            summary["metrics"] = wanted
            for name, scores in extra.items():
                summary["methods"][name].update(
                    {key: value for key, value in scores.items() if key != "curves"}
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
    batches: dict[str, dict[str, Any]],
    aggregates: dict[str, dict[str, Any]],
    options: dict[str, Any],
    outputs: dict[str, str],
) -> dict[str, Any]:
    """The summary pic.json holds and --json prints.

    Each method's ``map_batch_size`` and ``map_model_calls`` say how its maps
    were computed (one batch over the images kept; ``None`` when every image
    was skipped before its maps).
    """
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
                "map_batch_size": batches.get(name, {}).get("batch_size"),
                "map_model_calls": batches.get(name, {}).get("model_calls", 0),
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
    columns = _table_columns(summary["metrics"])
    print(f"{'method':28s} " + " ".join(f"{title:>9s}" for _, title in columns), file=text)
    for name, scores in summary["methods"].items():
        cells = [_cell(scores, key) for key, _ in columns]
        print(f"{METHODS[name].title:28s} {' '.join(cells)}", file=text)
    for metric, title in METRICS.items() if "pic" in summary["metrics"] else ():
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
    for key, path in summary["outputs"].items():
        print(f"wrote {'summary' if key == 'summary' else 'plot'}: {path}", file=text)
    return text.getvalue().rstrip("\n")


def _first_sentence(text: str) -> str:
    """The first sentence of a (long) PIC error message, without its full stop."""
    return text.split(". ")[0].rstrip(".").replace("`", "")


def _table_columns(metrics: list[str]) -> list[tuple[str, str]]:
    """The table's ``(summary key, heading)`` columns for the metrics asked for."""
    columns = []
    if "pic" in metrics:
        columns += [("sic", "SIC AUC"), ("aic", "AIC AUC")]
    columns += [
        (metric, metric[:3].title() + ". AUC") for metric in ("deletion", "insertion") if metric in metrics
    ]
    if "randomisation" in metrics:
        columns.append(("randomisation", "Rand. rho"))
    return columns


def _cell(scores: dict[str, Any], key: str) -> str:
    """One table cell: an AUC, or randomisation's mean rank correlation at its last step."""
    value = scores.get(key)
    if isinstance(value, dict):
        value = (value.get("rank_correlation_abs") or [None])[-1]
    return "      n/a" if value is None else f"{value:9.3f}"
