"""``saliencykit explain`` on many images: a thin layer over :func:`saliencykit.runs.explain_dataset`.

    saliencykit explain photos/ --model net.pt --methods ig,gradcam --out run
    saliencykit explain "photos/*.jpg" list.txt --out run --engine ray --workers 2

Runs when ``explain`` is given more than one image, a folder, a glob pattern or
a ``.txt``/``.lst`` file listing paths, or any of the data-set options
(``--force``, ``--retry-failed``, ``--float16``, ``--engine``, ``--workers``,
``--gpus-per-worker``, ``--ray-address``, ``--gallery-limit``). The maps, their
manifest (``manifest.csv``) and ``gallery.html`` go to ``--out``; a rerun
computes only the maps that are missing. Exit status: 0 when every map is
stored, :data:`FAILED_STATUS` when some images failed (the summary counts them),
2 for bad input, 3 without an optional package (``--engine ray`` without Ray).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .console import Console
from .errors import CliError
from .methods import STEP_PARAMETERS, method_parameters, parse_method_names
from .options import integer_in, number_in, parameter_options, parse_input_size

__all__ = [
    "DEFAULT_RUN_FOLDER",
    "FAILED_STATUS",
    "add_dataset_arguments",
    "add_run_arguments",
    "check_run_options",
    "is_dataset_run",
    "run_dataset",
    "run_stored_evaluation",
]

#: The exit status of a data-set run in which some images failed (the others are stored).
FAILED_STATUS = 4
#: ``--out`` of a data-set run when none is given.
DEFAULT_RUN_FOLDER = "saliencykit-run"
_LIST_SUFFIXES = (".txt", ".lst")
_GLOB_CHARACTERS = ("*", "?", "[")
#: The options that only data-set runs have, with their defaults.
_DATASET_DEFAULTS: dict[str, Any] = {
    "force": False,
    "retry_failed": False,
    "float16": False,
    "engine": None,
    "workers": None,
    "gpus_per_worker": None,
    "ray_address": None,
    "gallery_limit": None,
}


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--force``, ``--retry-failed``, ``--float16``, ``--engine`` and its options, ``--gallery-limit``."""
    group = parser.add_argument_group("many images (a folder, a glob, a .txt list or several files)")
    group.add_argument("--force", action="store_true", help="recompute the maps already stored in --out")
    group.add_argument(
        "--retry-failed", action="store_true", help="recompute the images that failed in an earlier run"
    )
    group.add_argument("--float16", action="store_true", help="store the maps as float16 (half the space)")
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="local: this process (default); ray: Ray workers (pip install 'saliencykit[ray]')",
    )
    group.add_argument("--workers", type=integer_in(1), help="Ray workers, each loads the model once")
    group.add_argument(
        "--gpus-per-worker", type=number_in(0, 64), help="GPUs of each Ray worker (default: 0)"
    )
    group.add_argument(
        "--ray-address", help="join this Ray cluster, e.g. auto or ray://host:10001 (default: a local one)"
    )
    group.add_argument(
        "--gallery-limit",
        type=integer_in(1),
        help="the most images gallery.html shows (default: 24)",
    )


def _names_several_images(entry: str) -> bool:
    path = Path(entry).expanduser()
    if path.is_dir():
        return True
    if path.is_file():
        return path.suffix.lower() in _LIST_SUFFIXES
    return any(character in entry for character in _GLOB_CHARACTERS)


def is_dataset_run(args: argparse.Namespace) -> bool:
    """Whether ``explain``'s arguments ask for a data-set run rather than today's one-image run."""
    images = args.images or []
    if len(images) > 1 or any(_names_several_images(entry) for entry in images):
        return True
    return any(getattr(args, name) != default for name, default in _DATASET_DEFAULTS.items())


def _engine_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The engine's name and keyword arguments; Ray's options without ``--engine ray`` are errors."""
    name = args.engine or "local"
    ray_options = {
        "workers": args.workers,
        "gpus_per_worker": args.gpus_per_worker,
        "address": args.ray_address,
    }
    given = {key: value for key, value in ray_options.items() if value is not None}
    if name != "ray" and given:
        flags = ", ".join("--" + key.replace("_", "-").replace("address", "ray-address") for key in given)
        raise CliError(f"{flags}: only with --engine ray")
    return name, given


def _parameter_overrides(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    """The parameters the options set (``--steps``, ``--samples``, ``--param``), checked, per method.

    Only what the options set: the defaults (some depend on the model's input
    size) are :func:`saliencykit.runs.api.resolve_parameters`'s.
    """
    options = parameter_options(args)
    checked = method_parameters(names, parse_input_size(args.input_size) or (224, 224), **options)
    overrides: dict[str, dict[str, Any]] = {}
    for name in names:
        touched = set()
        if args.steps is not None and name in STEP_PARAMETERS:
            touched.add(STEP_PARAMETERS[name])
        if args.samples is not None and name == "smoothgrad":
            touched.add("nsamples")
        for override in args.param:
            target = override.partition("=")[0].strip().lower()
            method, _, parameter = target.partition(".")
            if method.replace("_", "-") == name:
                touched.add(parameter)
        if touched:
            overrides[name] = {parameter: checked[name][parameter] for parameter in touched}
    return overrides


def run_dataset(args: argparse.Namespace, console: Console) -> int:
    """Runs ``saliencykit explain`` on many images; returns 0, or :data:`FAILED_STATUS` if any failed."""
    from ..runs import ModelSpec, expand_images, explain_dataset, get_engine, write_gallery
    from ..runs.api import resolve_methods
    from .outputs import prepare_output_folder

    input_size = parse_input_size(args.input_size)
    spec = ModelSpec(
        args.model,
        input_size=input_size,
        preprocess=args.preprocess or "imagenet",
        layer=args.layer,
        labels=args.labels.path if args.labels is not None else None,
        device=args.device,
    )
    requested = parse_method_names(args.methods)
    try:  # --methods all: parse_method_names gives None, resolve_methods wants "all"
        names = resolve_methods(requested or ("all" if args.methods else None), spec)
    except (TypeError, ValueError) as error:
        raise CliError(f"--methods: {error}") from None
    overrides = _parameter_overrides(args, names)
    engine_name, engine_options = _engine_options(args)
    if args.save_maps:
        console.note("--save-maps: a run on many images always stores its maps under --out/maps")
    try:
        paths = expand_images(args.images)
    except (TypeError, ValueError) as error:
        raise CliError(str(error)) from None
    try:
        engine = get_engine(engine_name, **engine_options)  # no Ray: one line and exit status 3
    except (TypeError, ValueError) as error:
        raise CliError(f"--engine {engine_name}: {error}") from None
    out = prepare_output_folder(args.out or DEFAULT_RUN_FOLDER)
    counts = {"computed": 0}

    def progress(row: dict[str, Any], done: int, total: int) -> None:
        counts["computed"] += 1
        if row.get("status") != "ok":
            console.note(f"failed: {row.get('image_path')} ({row.get('method')}): {row.get('error')}")

    table = explain_dataset(
        paths,
        spec,
        names,
        out,
        parameters=overrides,
        engine=engine,
        force=args.force,
        retry_failed=args.retry_failed,
        float16=args.float16,
        batch_size=args.batch_size,
        class_index=args.class_index,
        progress=progress,
    )
    rows: list[dict[str, Any]] = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    gallery = write_gallery(out, rows, **({"limit": args.gallery_limit} if args.gallery_limit else {}))
    failed_images = sorted({row["image_path"] for row in rows if row.get("status") != "ok"})
    summary = {
        "images": len(paths),
        "methods": names,
        "maps": len(rows),
        "computed": counts["computed"],
        "reused": len(rows) - counts["computed"],
        "failed_maps": sum(row.get("status") != "ok" for row in rows),
        "failed_images": len(failed_images),
        "failed": failed_images,
        "engine": engine_name,
        "outputs": {"manifest": os.fspath(out / "manifest.csv"), "gallery": os.fspath(gallery)},
    }
    if console.json:
        console.print_json(summary)
    else:
        _print_summary(console, summary)
    return FAILED_STATUS if failed_images else 0


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    lines = [
        f"images:     {summary['images']} ({', '.join(summary['methods'])}; engine {summary['engine']})",
        f"maps:       {summary['maps']}: {summary['computed']} computed, {summary['reused']} reused",
        f"failed:     {summary['failed_images']} of {summary['images']} images "
        f"({summary['failed_maps']} maps)"
        + ("; rerun with --retry-failed to retry them" if summary["failed_images"] else ""),
        *(f"wrote {kind}: {path}" for kind, path in summary["outputs"].items()),
    ]
    console.info("\n".join(lines))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``evaluate``'s ``--run OUT`` and the options of a stored-run evaluation."""
    group = parser.add_argument_group("a stored run (saliencykit explain on many images)")
    group.add_argument(
        "--run",
        dest="run_folder",  # args.run is the sub-command's function
        metavar="OUT",
        help="score the maps stored in this folder (computing the missing ones); the images default to "
        "the run's, the methods and their parameters to those stored; give the run's model options again",
    )
    group.add_argument(
        "--n-bootstrap", type=integer_in(1), default=1000, help="bootstrap resamples (default: %(default)s)"
    )
    group.add_argument(
        "--confidence",
        type=number_in(0.5, 0.999),
        default=0.95,
        help="confidence of the intervals (default: %(default)s)",
    )
    group.add_argument("--no-baseline", action="store_true", help="do not score the random-map baseline")
    group.add_argument("--force", action="store_true", help="recompute the stored maps and PIC results")
    group.add_argument("--retry-failed", action="store_true", help="recompute the maps that failed")
    group.add_argument(
        "--float16", action="store_true", help="the run's maps are float16 (explain --float16)"
    )
    group.add_argument("--engine", choices=["local", "ray"], help="as explain's (default: local)")
    group.add_argument("--workers", type=integer_in(1), help="as explain's")
    group.add_argument("--gpus-per-worker", type=number_in(0, 64), help="as explain's")
    group.add_argument("--ray-address", help="as explain's")


_RUN_ONLY = ("n_bootstrap", "confidence", "no_baseline", "force", "retry_failed", "float16", "engine")


def check_run_options(args: argparse.Namespace) -> None:
    """Without ``--run``, its options are errors (``evaluate`` without ``--run`` stores nothing)."""
    defaults = {"n_bootstrap": 1000, "confidence": 0.95, **_DATASET_DEFAULTS, "no_baseline": False}
    given = [name for name in (*_RUN_ONLY, "workers", "gpus_per_worker", "ray_address")]
    given = [name for name in given if getattr(args, name) != defaults[name]]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CliError(f"{flags}: only with --run OUT")


def _stored(out: Path) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """The image paths, methods and (when one per method) parameters of the rows stored under ``out``."""
    from ..runs import RunStore

    rows = RunStore(out).rows() if (out / "rows").is_dir() else []
    images = list(dict.fromkeys(str(row["image_path"]) for row in rows))
    methods = list(dict.fromkeys(str(row["method"]) for row in rows))
    parameters: dict[str, dict[str, Any]] = {}
    for method in methods:
        texts = {str(row["parameters"]) for row in rows if row["method"] == method}
        if len(texts) == 1:
            parameters[method] = json.loads(texts.pop())
    return images, methods, parameters


def run_stored_evaluation(args: argparse.Namespace, console: Console) -> int:
    """``saliencykit evaluate --run OUT``: :func:`saliencykit.runs.evaluate_dataset` and its table.

    Returns 0, or :data:`FAILED_STATUS` when some maps or PIC results failed.
    """
    from ..runs import ModelSpec, evaluate_dataset, get_engine

    out = Path(args.run_folder)
    if not out.is_dir():
        raise CliError(
            f"--run: expected the output folder of a run, got {args.run_folder!r} (no such folder)"
        )
    stored_images, stored_methods, stored_parameters = _stored(out)
    images = args.images or stored_images
    if not images:
        raise CliError(f"--run: {args.run_folder!r} holds no stored rows; give the images")
    spec = ModelSpec(
        args.model,
        input_size=parse_input_size(args.input_size),
        preprocess=args.preprocess or "imagenet",
        layer=args.layer,
        labels=args.labels.path if args.labels is not None else None,
        device=args.device,
    )
    from ..runs.api import resolve_methods

    requested = parse_method_names(args.methods)
    names = resolve_methods(requested or stored_methods or ("all" if args.methods else None), spec)
    custom = any([args.steps is not None, args.samples is not None, args.batch_size is not None, args.param])
    parameters = (
        _parameter_overrides(args, names)
        if custom
        else {name: values for name, values in stored_parameters.items() if name in names}
    )
    engine_name, engine_options = _engine_options(args)
    if engine_name != "local":
        get_engine(engine_name, **engine_options)  # no Ray: one line and exit status 3, before any work
    try:
        summary = evaluate_dataset(
            images,
            spec,
            names,
            out,
            parameters=parameters,
            engine=engine_name,
            force=args.force,
            retry_failed=args.retry_failed,
            min_pred_value=args.min_pred_value,
            n_bootstrap=args.n_bootstrap,
            confidence=args.confidence,
            seed=args.seed,
            random_baseline=not args.no_baseline,
            batch_size=args.batch_size,
            n_jobs=args.n_jobs,
            float16=args.float16,
            **engine_options,
        )
    except (TypeError, ValueError) as error:
        raise CliError(str(error)) from None
    if console.json:
        console.print_json(summary)
    else:
        console.info(_evaluation_table(summary))
    return FAILED_STATUS if summary["failed"] else 0


def _interval(entry: dict[str, Any], value: str) -> str:
    if entry.get(value) is None:
        return "-"
    return f"{entry[value]:+.4f} [{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}]"


def _evaluation_table(summary: dict[str, Any]) -> str:
    """Each method's AUC per metric with its interval, the random row, the paired differences."""
    confidence = summary["bootstrap"]["confidence"]
    lines = [
        f"images:     {summary['images']}; PIC results {summary['counts']['computed']} computed, "
        f"{summary['counts']['reused']} reused, {summary['counts']['skipped']} skipped, "
        f"{summary['counts']['failed']} failed",
        f"AUC [{confidence:.0%} bootstrap interval over images]:",
    ]
    for method, by_metric in summary["methods"].items():
        for metric, entry in by_metric.items():
            lines.append(
                f"  {method:14s} {metric.upper()}  {_interval(entry, 'auc')}  "
                f"({entry['images']} images, {entry['skipped']} skipped)"
            )
    if summary["differences"]:
        lines.append("paired differences (a - b) on the images both scored:")
        for entry in summary["differences"]:
            mark = "  *" if entry["excludes_zero"] else ""
            lines.append(
                f"  {entry['a']} - {entry['b']} {entry['metric'].upper()}  "
                f"{_interval(entry, 'difference')}  ({entry['images']} images){mark}"
            )
        lines.append("  (* the interval excludes 0)")
    lines.append(f"wrote: {Path(summary['out']) / 'evaluation.json'}")
    return "\n".join(lines)
