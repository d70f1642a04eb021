"""``explain_dataset``: the maps of many images, stored so that a run killed at any point resumes.

    from saliencykit.runs import explain_dataset

    table = explain_dataset("photos/", "net.pt", ["ig", "xrai"], "run-out", parameters={"ig": {"x_steps": 9}})
    table[table.status == "failed"]

See :mod:`saliencykit.runs.store` for the folder's layout.
"""

from __future__ import annotations

import glob
import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .engines import Engine, ModelSpec, WorkItem, WorkResult, get_engine
from .store import COLUMNS, RunStore, canonical_json, file_sha256

__all__ = ["LIST_SUFFIXES", "expand_images", "explain_dataset", "resolve_methods", "resolve_parameters"]

#: A file with one of these endings lists image paths, one per line.
LIST_SUFFIXES = (".txt", ".lst")
_GLOB_CHARACTERS = ("*", "?", "[")


def _image_files_in(folder: Path, recursive: bool) -> list[Path]:
    from ..cli.images import IMAGE_SUFFIXES

    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _listed(list_file: Path) -> list[Path]:
    """The paths a list file names, one per line (blank lines and ``#`` comments skipped).

    Relative paths are relative to the list file's folder. Paths that do not
    exist are kept: the run records them as failed.
    """
    try:
        text = list_file.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"images: cannot read the list file {str(list_file)!r}: {error}") from None
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            path = Path(entry).expanduser()
            paths.append(path if path.is_absolute() else list_file.parent / path)
    return paths


def expand_images(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, recursive: bool = False
) -> list[Path]:
    """The image files that ``inputs`` names, in order, each once.

    Each input is a file (an image, or a ``.txt``/``.lst`` file listing image
    paths one per line, relative to the list's folder; ``#`` starts a comment),
    a folder (its image files, sorted; ``recursive`` includes sub-folders), or
    a glob pattern (``photos/*.jpg``, ``data/**/*.png``; sorted matches).

    Raises:
      ValueError: an input that is not a file, a folder or a pattern with a match,
        a folder without images, or no image at all.
      TypeError: ``inputs`` is not a path or an iterable of paths.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    elif not isinstance(inputs, Iterable):
        raise TypeError(f"images: expected a path or an iterable of paths, got {type(inputs).__name__}")
    found: list[Path] = []
    for entry in inputs:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"images: expected paths (str or os.PathLike), got {type(entry).__name__}")
        path = Path(entry).expanduser()
        if path.is_dir():
            files = _image_files_in(path, recursive)
            if not files:
                raise ValueError(f"images: the folder {str(path)!r} holds no image file")
            found.extend(files)
        elif path.is_file():
            found.extend(_listed(path) if path.suffix.lower() in LIST_SUFFIXES else [path])
        elif any(character in str(entry) for character in _GLOB_CHARACTERS):
            matches = sorted(Path(match) for match in glob.glob(os.fspath(path), recursive=True))
            files = [match for match in matches if match.is_file()]
            if not files:
                raise ValueError(f"images: the pattern {os.fspath(entry)!r} matches no file")
            found.extend(files)
        else:
            raise ValueError(f"images: no such file, folder or pattern: {os.fspath(entry)!r}")
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.abspath(path), path)
    if not unique:
        raise ValueError("images: expected at least one image, got none")
    return list(unique.values())


def resolve_methods(methods: str | Sequence[str] | None, spec: ModelSpec) -> list[str]:
    """The method names to run: ``None`` is every default method this kind of model supports.

    ``methods`` is a comma-separated string or a sequence of names (``blur_ig``
    is ``blur-ig``); ``"all"`` is every method this kind of model supports,
    those run only on request (Score-CAM, RISE) included.

    Raises:
      ValueError: an unknown name, or none.
      TypeError: not a string or a sequence of strings.
    """
    from ..cli.methods import METHODS

    lacking = spec.known_unsupported()
    if methods is None:
        return [name for name, method in METHODS.items() if method.by_default and not method.needs & lacking]
    if isinstance(methods, str):
        names = methods.split(",")
    elif isinstance(methods, Sequence) and all(isinstance(name, str) for name in methods):
        names = list(methods)
    else:
        raise TypeError(f"methods: expected a string or a sequence of method names, got {methods!r}")
    chosen: list[str] = []
    for name in (part.strip().lower().replace("_", "-") for part in names):
        if name == "all":
            return [name for name, method in METHODS.items() if not method.needs & lacking]
        if name not in METHODS:
            raise ValueError(f"methods: unknown method {name!r}; expected some of: {', '.join(METHODS)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"methods: expected at least one method name, got {methods!r}")
    return chosen


def resolve_parameters(
    names: Sequence[str],
    input_size: tuple[int, int],
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Each method's parameters: the command line's defaults, then ``batch_size``, then ``parameters``.

    Args:
      names: the methods.
      input_size: ``(height, width)`` of the model's input (some defaults depend on it).
      parameters: ``{method: {name: value}}`` overrides (JSON values).
      batch_size: the most inputs per model call, for every method with a ``batch_size``.

    Raises:
      ValueError: overrides of a method that is not run, or of a parameter it does not have.
      TypeError: a value that is not JSON (numbers, strings, booleans, lists, dicts).
    """
    from ..cli.methods import method_parameters

    resolved = method_parameters(names, input_size, batch_size=batch_size)
    for method, values in (parameters or {}).items():
        name = str(method).strip().lower().replace("_", "-")
        if name not in resolved:
            raise ValueError(f"parameters: method {method!r} is not among the methods run: {list(resolved)}")
        for parameter, value in values.items():
            if parameter not in resolved[name]:
                known = ", ".join(resolved[name]) or "none"
                raise ValueError(f"parameters: {name} has no parameter {parameter!r}; it has: {known}")
            try:
                canonical_json(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"parameters: expected a JSON value for {name}.{parameter}, got {value!r}"
                ) from None
            resolved[name][parameter] = value
    return resolved


def _input_size(spec: ModelSpec) -> tuple[int, int]:
    """The model's input size without loading it where possible (a Keras file without one is loaded)."""
    size = spec.size
    if size is not None:
        return size
    if spec.is_file and Path(spec.model).suffix.lower() in (".keras", ".h5"):
        return spec.load().input_size
    return (224, 224)


def _class_of(class_index: int | Mapping[str, int] | None, path: Path) -> int | None:
    if class_index is None or isinstance(class_index, int):
        return class_index
    for name in (os.fspath(path), os.path.abspath(path), path.name):
        if name in class_index:
            return int(class_index[name])
    return None


def _table(rows: list[dict[str, Any]]) -> Any:
    try:
        pandas = importlib.import_module("pandas")  # optional (saliencykit[runs])
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=list(COLUMNS))


def explain_dataset(
    images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: ModelSpec | str | None = None,
    methods: str | Sequence[str] | None = None,
    out: str | os.PathLike[str] = "saliencykit-run",
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    engine: str | Engine = "local",
    force: bool = False,
    retry_failed: bool = False,
    float16: bool = False,
    batch_size: int | None = None,
    class_index: int | Mapping[str, int] | None = None,
    recursive: bool = False,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    **engine_options: Any,
) -> Any:
    """Computes and stores each image's maps, skipping those already stored; returns the manifest rows.

    Each (image, method) map is stored under ``out`` with its manifest row
    (:mod:`saliencykit.runs.store`), keyed by the image's content hash, the
    model, the method, its parameters and ``float16``. A rerun computes only
    what is missing; an image that cannot be read or explained gets
    ``"failed"`` rows with a one-line error and the run goes on. Only this
    process writes to ``out`` (engines compute): one run per folder at a time.

    Args:
      images: files, folders, glob patterns or ``.txt`` lists of paths (:func:`expand_images`).
      model: a :class:`ModelSpec`, or a model name or file (default: EfficientNet-Lite0).
      methods: method names (a list or ``"ig,xrai"``); default every method
        this kind of model supports.
      out: the output folder.
      parameters: ``{method: {parameter: value}}`` over the defaults of the
        command line (:func:`resolve_parameters`).
      engine: ``"local"``, ``"ray"`` (``pip install "saliencykit[ray]"``) or an
        :class:`Engine` object.
      force: recompute maps already stored.
      retry_failed: recompute the items that failed before (else they keep their failed rows).
      float16: store the maps as float16 (a different key from float32 maps).
      batch_size: the most inputs per model call (default: each method's own, else 32).
      class_index: the class to explain: one index for every image, or
        ``{image path or file name: index}``; default each image's top class.
      recursive: folders include their sub-folders.
      progress: ``progress(row, done, total)`` after each stored row.
      engine_options: the engine's keyword arguments, e.g. ``images_per_batch``
        (local), ``workers`` (Ray); only with an engine given by name.

    Returns:
      One row per (image, method) of this call, in image then method order,
      with the :data:`~saliencykit.runs.store.COLUMNS`: a ``pandas.DataFrame``
      when pandas is installed, else a list of dicts. ``out/manifest.csv``
      (and ``.parquet`` with pyarrow) holds every row stored in ``out``,
      those of earlier runs too; it is rebuilt even when the run is interrupted
      by an exception. Images with the same content share their rows.

    Raises:
      ValueError, TypeError: bad images, methods, parameters or engine.
      CliError: the model cannot be loaded (from :meth:`ModelSpec.load`).
      EngineUnavailableError: ``engine="ray"`` without Ray.
    """
    from ..core.base import DEFAULT_BATCH_SIZE

    spec = ModelSpec.of(model)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size: expected an integer >= 1 or None, got {batch_size!r}")
    paths = expand_images(images, recursive=recursive)
    names = resolve_methods(methods, spec)
    every_parameter = resolve_parameters(names, _input_size(spec), parameters, batch_size)
    if isinstance(engine, str):
        runner = get_engine(engine, **engine_options)
    elif isinstance(engine, Engine):
        if engine_options:
            raise TypeError(f"engine options {sorted(engine_options)} need an engine given by name")
        runner = engine
    else:
        raise TypeError(f"engine: expected 'local', 'ray' or an Engine object, got {type(engine).__name__}")
    store = RunStore(out)
    store.remove_stale_temporaries()
    identity = spec.identity()

    requested: list[tuple[Path, str]] = []  # (image, key) of every row returned
    planned: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (method, parameters)
    items: list[WorkItem] = []
    unreadable: list[dict[str, Any]] = []

    def wanted(key: str) -> bool:
        if key in planned:
            return False
        status = None if force else store.status(key)
        return status is None or (status == "failed" and retry_failed)

    for path in paths:
        chosen_class = _class_of(class_index, path)
        try:
            sha256 = file_sha256(path)
        except OSError as error:
            sha256, reason = "", f"cannot read the image {os.fspath(path)!r}: {error.strerror or error}"
        else:
            reason = ""
        missing = []
        for name in names:
            image_id = sha256 or f"unreadable:{os.path.abspath(path)}"
            key = store.key(
                image_id, identity, name, every_parameter[name], float16, class_index=chosen_class
            )
            requested.append((path, key))
            if not wanted(key):
                continue
            planned[key] = (name, every_parameter[name])
            if reason:
                unreadable.append(
                    {"image_path": os.fspath(path), "method": name, "key": key, "error": reason}
                )
            else:
                missing.append((name, key, every_parameter[name]))
        if missing:
            items.append(WorkItem(os.fspath(path), sha256, tuple(missing), chosen_class))

    total, done = len(planned), 0
    written: set[str] = set()

    def store_row(row: dict[str, Any]) -> None:
        nonlocal done
        store.write_row(row)
        written.add(row["key"])
        done += 1
        if progress is not None:
            progress(row, done, total)

    def on_result(result: WorkResult) -> None:
        if result.key not in planned or result.key in written:
            return  # not asked for, or already stored: each map is written once
        row: dict[str, Any] = {
            "image_path": result.image_path,
            "image_sha256": result.image_sha256,
            "model": spec.model,
            "class_index": result.class_index,
            "label": result.label,
            "probability": result.probability,
            "method": result.method,
            "parameters": canonical_json(result.parameters),
            "key": result.key,
            "map_path": "",
            "seconds": float(result.seconds),
            "status": result.status,
            "error": result.error,
        }
        if result.status == "ok" and result.saliency_map is not None:
            row["map_path"] = store.write_map(result.key, result.method, result.saliency_map, float16)
        else:
            row["status"] = "failed"
            row["error"] = result.error or "the engine returned no map for this image and method"
            store.remove_map(result.key, result.method)
        store_row(row)

    try:
        for failure in unreadable:
            name = failure["method"]
            store.remove_map(failure["key"], name)
            store_row(
                {
                    **failure,
                    "model": spec.model,
                    "parameters": canonical_json(every_parameter[name]),
                    "status": "failed",
                }
            )
        if items:
            runner.run(spec, items, int(batch_size or DEFAULT_BATCH_SIZE), on_result)
            for item in items:  # an engine that skipped an item must not leave it unrecorded
                for name, key, method_parameters in item.methods:
                    if key not in written:
                        lost = WorkResult(
                            item.image_path, item.image_sha256, name, key, method_parameters, "failed"
                        )
                        on_result(lost)
    finally:
        store.write_manifest()
    rows = []
    for path, key in requested:
        row = store.row(key)
        if row is not None:
            rows.append({**{column: row.get(column) for column in COLUMNS}, "image_path": os.fspath(path)})
    return _table(rows)
