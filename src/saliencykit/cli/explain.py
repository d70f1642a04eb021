"""saliencykit explain: every saliency method on one image, side by side.

    saliencykit explain                       # scikit-image's cat, pretrained EfficientNet-Lite0
    saliencykit explain photo.jpg --methods ig,xrai,gradcam --steps 50
    saliencykit explain photo.jpg --model net.pt --input-size 128 --class-index 3 --json

Writes panel.png (all maps side by side), report.html (self-contained:
prediction, pictures, parameters and times) and explain.json (the summary
--json prints) to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.base import CallModelFunction
from .console import Console, progress_bar
from .errors import CliError, missing_dependency
from .images import DEFAULT_IMAGE, InputImage, load_image, load_sample_image, resize_image
from .methods import (
    METHODS,
    MethodResult,
    choose_methods,
    counting_calls,
    method_parameters,
    parse_method_names,
    run_method,
)
from .models import LoadedModel, Prediction, load_model, predict
from .options import add_method_arguments, add_model_arguments, parameter_options, parse_input_size

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``explain``'s arguments to its sub-parser."""
    parser.add_argument(
        "image", nargs="?", help="a PNG or JPEG file (default: scikit-image's chelsea(), a cat)"
    )
    add_model_arguments(parser)
    parser.add_argument("--class-index", type=int, help="the class to explain (default: the top prediction)")
    add_method_arguments(parser, "all that the model supports")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="saliencykit-out", help="output folder (default: %(default)s)")
    output.add_argument("--dpi", type=int, default=100, help="resolution of panel.png (default: %(default)s)")
    output.add_argument("--save-maps", action="store_true", help="also write the raw maps to maps.npz")


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


def _write_pictures(
    out: Path,
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
    """Writes panel.png and report.html; returns their paths."""
    try:
        from .display import pictures_of
        from .panel import save_panel
        from .report import save_report

        pictures = [pictures_of(result.saliency_map, result.display, image) for result in results]
        panel = save_panel(out / "panel.png", image, source.name, prediction, results, pictures, dpi)
        report = save_report(
            out / "report.html",
            image=image,
            image_name=source.name,
            model_description=model.description,
            prediction=prediction,
            results=results,
            pictures=pictures,
            panel_png=panel.read_bytes(),
            skipped=skipped,
            notes=notes,
        )
    except ImportError as error:
        raise missing_dependency(error, "the panel (matplotlib)", "demo") from None
    except OSError as error:
        raise CliError(f"--out: cannot write to {str(out)!r}: {error}") from None
    return {"panel": str(panel), "report": str(report)}


def run(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit explain`` with parsed arguments; returns the exit status."""
    started = time.perf_counter()
    requested = parse_method_names(args.methods)
    input_size = parse_input_size(args.input_size)
    # Parameters are checked before anything slow is loaded (the size only changes defaults).
    method_parameters(requested or list(METHODS), input_size or (224, 224), **parameter_options(args))
    source = load_image(args.image, "image") if args.image else load_sample_image(DEFAULT_IMAGE)
    model, model_notes = load_model(
        args.model, input_size=input_size, preprocess=args.preprocess, layer=args.layer, labels=args.labels
    )
    notes = [*source.notes, *model_notes]
    for note in notes:
        console.note(note)
    image = resize_image(source.pixels, model.input_size)
    prediction = predict(model, image, args.class_index)
    call = model.make_call_model_function(prediction.class_index)
    chosen, skipped = choose_methods(
        requested, list(METHODS), model.unsupported, lambda keys: call(image[None], None, keys), console.note
    )
    every_parameter = method_parameters(
        requested or list(METHODS), model.input_size, **parameter_options(args)
    )
    parameters = {name: every_parameter[name] for name in chosen}
    results = _compute_maps(chosen, image, call, parameters, model.input_size, console)

    out = Path(args.out)
    outputs = _write_pictures(
        out,
        image=image,
        source=source,
        model=model,
        prediction=prediction,
        results=results,
        skipped=skipped,
        notes=notes,
        dpi=args.dpi,
    )
    outputs["summary"] = str(out / "explain.json")
    if args.save_maps:
        outputs["maps"] = str(out / "maps.npz")
        np.savez_compressed(outputs["maps"], **{r.name.replace("-", "_"): r.saliency_map for r in results})
    summary = {
        "image": source.name,
        "image_size": list(source.pixels.shape[:2]),
        "model": model.description,
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
    Path(outputs["summary"]).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if console.json:
        console.print_json(summary)
    else:
        _print_summary(console, summary)
    return 0


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    """The human-readable summary: image, model, prediction, each method's time, the files written."""
    height, width = summary["image_size"]
    lines = [
        f"image:      {summary['image']} ({width}x{height})",
        f"model:      {summary['model']}",
        f"prediction: class {summary['class_index']} {summary['label']!r}, p = {summary['probability']:.4f}",
        *(f"  {method['title']:22s} {method['seconds']:6.2f} s" for method in summary["methods"]),
        *(f"wrote {kind}: {path}" for kind, path in summary["outputs"].items()),
    ]
    console.info("\n".join(lines))
