"""saliencykit explain: every saliency method on one image, side by side, or on many images.

    saliencykit explain                       # scikit-image's cat, pretrained EfficientNet-Lite0
    saliencykit explain photo.jpg --methods ig,xrai,gradcam --steps 50
    saliencykit explain photo.jpg --model net.pt --input-size 128 --class-index 3 --json
    saliencykit explain photos/ --model net.pt --methods ig,gradcam --out run   # many images

Writes panel.png (all maps side by side), report.html (self-contained:
prediction, pictures, parameters and times) and explain.json (the summary
--json prints) to --out. Each file is written to a temporary name and then
renamed, explain.json last: a failed or interrupted run leaves the previous
run's files as they were. --out is checked before anything is computed.

Several images, a folder, a glob pattern or a .txt list of paths (or any
of the options --force, --retry-failed, --float16, --engine, --workers,
--gpus-per-worker, --ray-address, --gallery-limit) make a data-set run
instead: each map is stored under --out (default saliencykit-run) with
manifest.csv and gallery.html; a rerun computes only the missing maps
(--force: all); an image that fails is recorded and the run goes on, and
the exit status is 4 when any failed (--retry-failed retries them).

A --model file is code (TorchScript and Keras files can run code): use only
files you trust.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from ..core.base import CallModelFunction
from .console import Console, progress_bar
from .dataset import DEFAULT_RUN_FOLDER, add_dataset_arguments, is_dataset_run, run_dataset
from .errors import CliError, missing_dependency
from .images import DEFAULT_IMAGE, InputImage, load_image, load_sample_image, resize_image
from .methods import (
    DEFAULT_METHODS,
    METHODS,
    MethodResult,
    choose_methods,
    counting_calls,
    method_parameters,
    parse_method_names,
    run_method,
)
from .models import LoadedModel, Prediction, load_model, predict
from .options import (
    add_method_arguments,
    add_model_arguments,
    integer_in,
    parameter_options,
    parse_input_size,
)
from .outputs import StagedFiles, prepare_output_folder, staged_outputs

__all__ = ["DEFAULT_OUT", "DPI_RANGE", "add_arguments", "run"]

#: ``--out`` of a one-image run when none is given.
DEFAULT_OUT = "saliencykit-out"
#: ``--dpi``: the panel is about 13 x 9 inches, so 600 dpi is about 8000 x 5600 pixels.
DPI_RANGE = (20, 600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``explain``'s arguments to its sub-parser."""
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="a PNG or JPEG file (default: scikit-image's chelsea(), a cat); several files, folders, "
        "glob patterns or .txt lists of paths make a data-set run",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--class-index", type=integer_in(0), help="the class to explain (default: the top prediction)"
    )
    add_method_arguments(parser, "all that the model supports but scorecam and rise")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", help=f"output folder (default: {DEFAULT_OUT}; many images: {DEFAULT_RUN_FOLDER})"
    )
    output.add_argument(
        "--dpi",
        type=integer_in(*DPI_RANGE),
        default=100,
        help=f"resolution of panel.png, {DPI_RANGE[0]} to {DPI_RANGE[1]} (default: %(default)s)",
    )
    output.add_argument("--save-maps", action="store_true", help="also write the raw maps to maps.npz")
    add_dataset_arguments(parser)


def _compute_maps(
    names: list[str],
    image: np.ndarray,
    call: CallModelFunction,
    parameters: dict[str, dict[str, Any]],
    input_size: tuple[int, int],
    console: Console,
) -> list[MethodResult]:
    """Runs each method on the image, with a progress bar counting the images the model evaluates."""
    total = sum(METHODS[name].evaluations(parameters[name], input_size) for name in names)
    results = []
    with progress_bar(console, total=total, unit="image", desc="explain") as bar:
        counted_call = counting_calls(call, bar.update)
        for name in names:
            bar.set_postfix_str(METHODS[name].title)
            results.append(run_method(name, image, counted_call, parameters[name]))
    return results


def _require_matplotlib() -> None:
    """Imports matplotlib, which the pictures need, before any model work.

    Raises:
      MissingDependencyError: it is not installed (``saliencykit[plot]``).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise missing_dependency(error, "the panel (matplotlib)", "plot") from None


def _stage_pictures(
    staged: StagedFiles,
    *,
    image: np.ndarray,
    source: InputImage,
    model: LoadedModel,
    prediction: Prediction,
    results: list[MethodResult],
    skipped: dict[str, str],
    notes: list[str],
    dpi: int,
) -> dict[str, str]:
    """Stages panel.png and report.html; returns their final paths."""
    from .display import pictures_of
    from .panel import panel_png
    from .report import report_html

    pictures = [pictures_of(result.saliency_map, result.display, image) for result in results]
    panel = panel_png(image, source.name, prediction, results, pictures, dpi)
    report = report_html(
        image=image,
        image_name=source.name,
        model_description=model.description,
        prediction=prediction,
        results=results,
        pictures=pictures,
        panel_png=panel,
        skipped=skipped,
        notes=notes,
        gradcam_layer=model.gradcam_layer,
        device=model.device,
    )
    return {
        "panel": str(staged.write_bytes("panel.png", panel)),
        "report": str(staged.write_text("report.html", report)),
    }


def run(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit explain`` with parsed arguments; returns the exit status.

    Many images (:func:`saliencykit.cli.dataset.is_dataset_run`) go to
    :func:`saliencykit.cli.dataset.run_dataset`.
    """
    if is_dataset_run(args):
        return run_dataset(args, console)
    image_path = args.images[0] if args.images else None
    started = time.perf_counter()
    requested = parse_method_names(args.methods)
    # --methods all: every method the model supports; none given: the default ones.
    default = list(METHODS) if args.methods else list(DEFAULT_METHODS)
    input_size = parse_input_size(args.input_size)
    # Parameters are checked before anything slow is loaded (the size only changes defaults).
    method_parameters(requested or default, input_size or (224, 224), **parameter_options(args))
    out = prepare_output_folder(args.out or DEFAULT_OUT)
    _require_matplotlib()
    source = load_image(image_path, "image") if image_path else load_sample_image(DEFAULT_IMAGE)
    model, model_notes = load_model(
        args.model,
        input_size=input_size,
        preprocess=args.preprocess,
        layer=args.layer,
        labels=args.labels,
        device=args.device,
    )
    notes = [*source.notes, *model_notes]
    for note in notes:
        console.note(note)
    image = resize_image(source.pixels, model.input_size)
    prediction = predict(model, image, args.class_index)
    call = model.make_call_model_function(prediction.class_index)
    chosen, skipped = choose_methods(
        requested, default, model.unsupported, lambda keys: call(image[None], None, keys), console.note
    )
    every_parameter = method_parameters(requested or default, model.input_size, **parameter_options(args))
    parameters = {name: every_parameter[name] for name in chosen}
    results = _compute_maps(chosen, image, call, parameters, model.input_size, console)

    try:
        with staged_outputs(out) as staged:  # moved onto their names only once all are written
            outputs = _stage_pictures(
                staged,
                image=image,
                source=source,
                model=model,
                prediction=prediction,
                results=results,
                skipped=skipped,
                notes=notes,
                dpi=args.dpi,
            )
            if args.save_maps:
                # Any: numpy's stub would also match these keywords to savez_compressed's allow_pickle.
                maps: dict[str, Any] = {r.name.replace("-", "_"): r.saliency_map for r in results}
                outputs["maps"] = str(
                    staged.write_with("maps.npz", lambda file: np.savez_compressed(file, **maps))
                )
            outputs["summary"] = str(out / "explain.json")
            summary = _summary(started, source, model, prediction, results, skipped, notes, outputs)
            staged.write_text("explain.json", json.dumps(summary, indent=2) + "\n")  # last
    except ImportError as error:
        raise missing_dependency(error, "the panel (matplotlib)", "plot") from None
    except OSError as error:
        raise CliError(f"--out: cannot write to {str(out)!r}: {error.strerror or error}") from None
    if console.json:
        console.print_json(summary)
    else:
        _print_summary(console, summary)
    return 0


def _summary(
    started: float,
    source: InputImage,
    model: LoadedModel,
    prediction: Prediction,
    results: list[MethodResult],
    skipped: dict[str, str],
    notes: list[str],
    outputs: dict[str, str],
) -> dict[str, Any]:
    """The summary explain.json holds and --json prints."""
    return {
        "image": source.name,
        "image_size": list(source.pixels.shape[:2]),
        "model": model.description,
        "device": model.device,
        "gradcam_layer": model.gradcam_layer,
        "input_size": list(model.input_size),
        "class_index": prediction.class_index,
        "label": prediction.label,
        "probability": prediction.probability,
        "top5": [{"class_index": i, "label": label, "probability": p} for i, label, p in prediction.top],
        "methods": [
            {"name": r.name, "title": r.title, "parameters": r.parameters, "seconds": r.seconds}
            for r in results
        ],
        "skipped": skipped,
        "notes": notes,
        "outputs": outputs,
        "total_seconds": time.perf_counter() - started,
    }


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    """The human-readable summary: image, model, prediction, each method's time, the files written."""
    height, width = summary["image_size"]
    lines = [
        f"image:      {summary['image']} ({width}x{height})",
        f"model:      {summary['model']}" + (f" on {summary['device']}" if summary["device"] else ""),
        *([f"Grad-CAM:   layer {summary['gradcam_layer']}"] if summary["gradcam_layer"] else []),
        f"prediction: class {summary['class_index']} {summary['label']!r}, p = {summary['probability']:.4f}",
        *(f"  {method['title']:22s} {method['seconds']:6.2f} s" for method in summary["methods"]),
        *(f"wrote {kind}: {path}" for kind, path in summary["outputs"].items()),
    ]
    console.info("\n".join(lines))
