"""``evaluate_dataset``: PIC (SIC, AIC) of the stored maps of a data set, with bootstrap intervals.

    from saliencykit.runs import evaluate_dataset

    summary = evaluate_dataset("photos/", "net.pt", ["ig", "gradcam"], "run-out")
    summary["methods"]["ig"]["sic"]           # {"auc": ..., "ci_low": ..., "ci_high": ..., ...}
    [d for d in summary["differences"] if d["excludes_zero"]]

The maps come from :func:`~saliencykit.runs.explain_dataset` (only the missing
ones are computed). Each (map, metric) PIC result is stored atomically as
``out/pic/<metric>/<key>.json`` (its curve and AUC, or ``"skipped"`` with the
reason when PIC must skip the image), keyed by the map's key, the metric and
the PIC options, so a rerun computes no curve twice. A ``random`` baseline
(a seeded random map per image, from ``seed`` and the image's content hash)
is scored the same way, as the original library's PIC notebook does.

The summary, also written to ``out/evaluation.json``, holds each method's
aggregate curve (SIC: median over images, AIC: mean) with its AUC and a
percentile bootstrap interval over images, and the paired difference of
every two methods on the images both scored.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .api import explain_dataset
from .bootstrap import aggregate_aucs, bootstrap_aucs, percentile_interval
from .engines import Engine, ModelSpec, WorkItem, WorkResult
from .store import KEY_DIGITS, RunStore, atomic_write_bytes, canonical_json

if TYPE_CHECKING:
    from ..cli.models import LoadedModel

__all__ = [
    "AGGREGATION",
    "RANDOM_METHOD",
    "bootstrap_aucs",
    "evaluate_dataset",
    "percentile_interval",
    "random_saliency_map",
]

#: How each metric's curves are aggregated over images (the paper's choices, as ``saliencykit evaluate``).
AGGREGATION = {"sic": "median", "aic": "mean"}
#: The name of the random-map baseline in the summary and under ``out/pic/``.
RANDOM_METHOD = "random"
#: Version of the stored PIC records' layout (part of their keys).
PIC_FORMAT = 1
#: The fraction of pixels of each image's random blur mask (as ``saliencykit evaluate``).
RANDOM_MASK_FRACTION = 0.01
_EXPLAIN_OPTIONS = ("class_index", "recursive", "float16", "progress")


# Checks.


def _check_number(name: str, value: Any, low: float, high: float, *, open_interval: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    inside = low < value < high if open_interval else low <= value <= high
    if not inside:
        bounds = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {bounds}, got {value!r}")
    return float(value)


def _check_integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_metrics(metrics: str | Iterable[str]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    chosen: list[str] = []
    for name in names:
        if not isinstance(name, str) or name.lower() not in AGGREGATION:
            raise ValueError(f"metrics: expected some of {', '.join(AGGREGATION)}, got {name!r}")
        if name.lower() not in chosen:
            chosen.append(name.lower())
    if not chosen:
        raise ValueError("metrics: expected at least one of sic, aic, got none")
    return chosen


# The model, loaded once and shared.


class _Model:
    """Loads the model on first use, once (the local engine of the maps shares it)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._loaded: LoadedModel | None = None
        self._last: tuple[bytes, np.ndarray] | None = None

    def get(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = self.spec.load()
        return self._loaded

    def predict_probabilities(self, images: np.ndarray) -> np.ndarray:
        """The model's probabilities; the last batch is remembered (AIC repeats SIC's blurred images)."""
        batch = np.ascontiguousarray(images)
        digest = hashlib.sha256(batch.tobytes()).digest() + repr((batch.shape, batch.dtype.str)).encode()
        if self._last is not None and self._last[0] == digest:
            return self._last[1]
        probabilities = np.asarray(self.get().predict_probabilities(batch))
        self._last = (digest, probabilities)
        return probabilities


class _SharedLocalEngine:
    """The local engine, with the model :func:`evaluate_dataset` also uses for PIC (loaded once)."""

    def __init__(self, model: _Model, **options: Any) -> None:
        from .local import LocalEngine

        self.model = model
        self.engine = LocalEngine(**options)

    def run(
        self,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        if not items:
            return
        loaded = self.model.get()
        step = self.engine.images_per_batch
        for start in range(0, len(items), step):
            self.engine.run_loaded(loaded, items[start : start + step], batch_size, on_result)


# Stored PIC records.


def _pic_key(map_key: str, metric: str, options: Mapping[str, Any]) -> str:
    text = canonical_json({"map_key": map_key, "metric": metric, "options": options, "format": PIC_FORMAT})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]


def _read_record(path: Path, pic_key: str) -> dict[str, Any] | None:
    """A stored PIC record, or ``None`` when there is none or it cannot be read (it is then recomputed)."""
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("pic_key") != pic_key:
        return None
    if record.get("status") == "skipped":
        return record
    if record.get("status") != "ok" or not isinstance(record.get("curve_y"), list):
        return None
    return record


def _image_seed(seed: int, image_sha256: str, stream: int) -> np.random.SeedSequence:
    """A seed of one image's random draws: ``seed``, the image's content hash and the draw's stream."""
    return np.random.SeedSequence([seed, int(image_sha256[:32], 16), stream])


def random_saliency_map(image_sha256: str, size: tuple[int, int], seed: int) -> np.ndarray:
    """The random baseline's map of an image: uniform values from ``seed`` and its hash."""
    return np.random.default_rng(_image_seed(seed, image_sha256, 1)).random(size)


class _Image:
    """One image's pixels at the model's size (read once) and its blur mask."""

    def __init__(self, path: str, sha256: str, class_index: int) -> None:
        self.path, self.sha256, self.class_index = path, sha256, class_index
        self._pixels: np.ndarray | None = None

    def pixels(self, model: LoadedModel) -> np.ndarray:
        from ..cli.images import load_image, resize_image

        if self._pixels is None:
            image = resize_image(load_image(self.path, "image").pixels, model.input_size)
            self._pixels = np.round(image).clip(0, 255).astype(np.uint8)
        return self._pixels

    def mask(self, model: LoadedModel, seed: int) -> np.ndarray:
        from .. import metrics as pic

        generator = np.random.default_rng(_image_seed(seed, self.sha256, 0))
        return pic.generate_random_mask(*model.input_size, fraction=RANDOM_MASK_FRACTION, seed=generator)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def evaluate_dataset(
    images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: ModelSpec | str | None = None,
    methods: str | Sequence[str] | None = None,
    out: str | os.PathLike[str] = "saliencykit-run",
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: str | Sequence[str] = ("sic", "aic"),
    engine: str | Engine = "local",
    force: bool = False,
    retry_failed: bool = False,
    min_pred_value: float = 0.5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    random_baseline: bool = True,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    **engine_options: Any,
) -> dict[str, Any]:
    """Scores saliency methods with PIC over a data set, from the stored maps; returns the summary.

    First :func:`~saliencykit.runs.explain_dataset` computes the maps missing
    under ``out`` (same images, model, methods, parameters and resume rules).
    Then each ok (image, method) map is scored with SIC and/or AIC
    (:func:`saliencykit.metrics.compute_sic` / ``compute_aic``) on the image
    resized to the model's input, for the class the map explains. Each result
    is stored atomically as ``out/pic/<metric>/<key>.json``, keyed by the map's
    key, the metric and the PIC options (``min_pred_value``, ``seed``, the
    thresholds): a rerun reads it back and computes no curve. An image PIC must
    skip (:class:`~saliencykit.metrics.ComputePicMetricError`: its prediction is
    below ``min_pred_value``, or its fully blurred image is not less
    informative) is stored as skipped with the reason. The model is loaded
    once, only when something is computed (the local engine shares it).

    Each image's blur mask and its ``random`` baseline map are drawn from
    ``seed`` and the image's content hash: the same on every run, whatever the
    order of the images. Curves are aggregated over images (SIC: median, AIC:
    mean); each AUC gets a percentile bootstrap interval (images resampled with
    replacement ``n_bootstrap`` times, seeded with ``seed``), and every two
    methods their paired difference on the images both scored (the same
    resamples for both).

    Args:
      images, model, methods, out, parameters, engine, force, retry_failed:
        as for :func:`~saliencykit.runs.explain_dataset` (``force`` recomputes
        the maps and the PIC results).
      metrics: ``"sic"``, ``"aic"`` or both.
      min_pred_value: images whose explained class has a lower probability
        are skipped by PIC, in [0, 1].
      n_bootstrap: resamples of the bootstrap, >= 1.
      confidence: the intervals' confidence, in (0, 1).
      seed: seed of the blur masks, the random baseline and the bootstrap, >= 0.
      random_baseline: score the ``random`` baseline too.
      batch_size: the most images per model call, for the maps and for PIC's
        predictions (default: each method's own for the maps; all of PIC's
        thresholds of one image in one call).
      n_jobs: threads blurring images in PIC (default: every core).
      engine_options: ``explain_dataset``'s ``class_index``, ``recursive``,
        ``float16`` and ``progress``, and the engine's options (e.g.
        ``images_per_batch``, ``workers``).

    Returns:
      The summary (also written atomically to ``out/evaluation.json``):

      - ``out``, ``model`` (the model's identity), ``metrics``, ``aggregation``
        (``{"sic": "median", "aic": "mean"}``), ``pic_options`` (what the
        stored results' keys depend on), ``bootstrap`` (``n_bootstrap``,
        ``confidence``, ``seed``, ``"interval": "percentile"``);
      - ``images``: the number of distinct images (by content) with at least one map;
      - ``counts``: PIC results ``computed`` by this call, ``reused`` from
        ``out/pic``, ``skipped`` (computed or reused) and ``failed``;
      - ``methods``: ``{method: {metric: {"images", "skipped", "auc",
        "ci_low", "ci_high"}}}``, ``random`` included: the images scored and
        skipped, the AUC of the aggregate curve and its interval (``None``
        when no image was scored);
      - ``curves``: ``{metric: {"x": [...], method: [aggregate y...]}}``;
      - ``differences``: for every two methods and each metric, ``{"metric",
        "a", "b", "images" (scored by both), "difference" (AUC of a minus
        AUC of b on those images), "ci_low", "ci_high", "excludes_zero"}``;
      - ``skipped``: ``{"image_path", "method", "metric", "reason"}`` of each image PIC skipped;
      - ``failed``: ``{"image_path", "method", "metric", "error"}`` of each map
        that failed (``metric`` ``None``) or PIC result that failed (not stored:
        retried on the next run);
      - ``seconds``: the call's time.

    Raises:
      ValueError, TypeError: bad arguments (and those of ``explain_dataset``).
      CliError: the model cannot be loaded.
    """
    from .. import metrics as pic
    from ..cli.display import saliency_2d
    from ..cli.methods import METHODS

    started = time.perf_counter()
    chosen_metrics = _check_metrics(metrics)
    min_pred_value = _check_number("min_pred_value", min_pred_value, 0.0, 1.0)
    confidence = _check_number("confidence", confidence, 0.0, 1.0, open_interval=True)
    n_bootstrap = _check_integer("n_bootstrap", n_bootstrap, 1)
    seed = _check_integer("seed", seed, 0)
    if n_jobs is not None:
        n_jobs = _check_integer("n_jobs", n_jobs, 1)
    spec = ModelSpec.of(model)
    shared = _Model(spec)

    explain_options = {name: engine_options.pop(name) for name in _EXPLAIN_OPTIONS if name in engine_options}
    runner: str | Engine = engine
    if engine == "local":
        runner = _SharedLocalEngine(shared, **engine_options)
    elif engine_options:
        explain_options.update(engine_options)
    table = explain_dataset(
        images,
        spec,
        methods,
        out,
        parameters=parameters,
        engine=runner,
        force=force,
        retry_failed=retry_failed,
        batch_size=batch_size,
        **explain_options,
    )
    store = RunStore(out)
    manifest = table.to_dict("records") if hasattr(table, "to_dict") else list(table)

    options = {
        "min_pred_value": min_pred_value,
        "saliency_thresholds": list(pic.DEFAULT_SALIENCY_THRESHOLDS),
        "mask": {"fraction": RANDOM_MASK_FRACTION, "seed": seed},
    }
    identity = spec.identity()
    failed: list[dict[str, Any]] = []
    pictures: dict[str, _Image] = {}  # image sha256 -> image
    maps: list[tuple[str, str, _Image]] = []  # (method, map key, image), each map key once
    seen: set[str] = set()
    for listed in manifest:
        row = store.row(str(listed["key"]))
        if row is None or row.get("status") != "ok":
            error = (row or {}).get("error") or "no stored map"
            failed.append(
                {
                    "image_path": str(listed["image_path"]),
                    "method": listed["method"],
                    "metric": None,
                    "error": error,
                }
            )
            continue
        if row["key"] in seen:
            continue
        seen.add(row["key"])
        image = pictures.setdefault(
            row["image_sha256"],
            _Image(str(listed["image_path"]), row["image_sha256"], int(row["class_index"])),
        )
        maps.append((row["method"], row["key"], image))
    names = list(dict.fromkeys(method for method, _, _ in maps))
    if random_baseline:
        names.append(RANDOM_METHOD)
        for image in pictures.values():
            key = store.key(
                image.sha256, identity, RANDOM_METHOD, {"seed": seed}, False, class_index=image.class_index
            )
            maps.append((RANDOM_METHOD, key, image))

    pic_folder = store.out / "pic"
    counts = {"computed": 0, "reused": 0, "skipped": 0, "failed": 0}
    records: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        metric: {name: {} for name in names} for metric in chosen_metrics
    }  # metric -> method -> image sha256 -> record
    skipped: list[dict[str, Any]] = []
    compute = {"sic": pic.compute_sic, "aic": pic.compute_aic}
    for method, map_key, image in maps:
        for metric in chosen_metrics:
            pic_key = _pic_key(map_key, metric, options)
            path = pic_folder / metric / f"{pic_key}.json"
            record = None if force else _read_record(path, pic_key)
            if record is not None:
                counts["reused"] += 1
            else:
                try:
                    loaded = shared.get()
                    if method == RANDOM_METHOD:
                        importance = random_saliency_map(image.sha256, loaded.input_size, seed)
                    else:
                        importance = saliency_2d(store.load_map(map_key), METHODS[method].display)
                    record = {
                        "pic_key": pic_key,
                        "metric": metric,
                        "method": method,
                        "map_key": map_key,
                        "image_path": image.path,
                        "image_sha256": image.sha256,
                        "class_index": image.class_index,
                        "options": options,
                    }
                    try:
                        result = compute[metric](
                            image.pixels(loaded),
                            importance,
                            image.mask(loaded, seed),
                            shared.predict_probabilities,
                            image.class_index,
                            min_pred_value=min_pred_value,
                            batch_size=batch_size,
                            n_jobs=n_jobs,
                        )
                    except pic.ComputePicMetricError as error:
                        record.update(status="skipped", reason=str(error))
                    else:
                        record.update(
                            status="ok",
                            reason="",
                            auc=float(result.auc),
                            curve_x=np.asarray(result.curve_x, dtype=np.float64).tolist(),
                            curve_y=np.asarray(result.curve_y, dtype=np.float64).tolist(),
                        )
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as error:  # the image or map cannot be read, or PIC cannot run
                    counts["failed"] += 1
                    failed.append(
                        {
                            "image_path": image.path,
                            "method": method,
                            "metric": metric,
                            "error": _one_line(error),
                        }
                    )
                    continue
                text = json.dumps(record, allow_nan=False) + "\n"
                atomic_write_bytes(path, text.encode("utf-8"))
                counts["computed"] += 1
            if record["status"] == "skipped":
                counts["skipped"] += 1
                skipped.append(
                    {"image_path": image.path, "method": method, "metric": metric, "reason": record["reason"]}
                )
            else:
                records[metric][method][image.sha256] = record

    n_skipped = Counter((s["method"], s["metric"]) for s in skipped)
    summary_methods: dict[str, dict[str, Any]] = {name: {} for name in names}
    curves: dict[str, dict[str, Any]] = {}
    differences: list[dict[str, Any]] = []
    for metric in chosen_metrics:
        aggregation = AGGREGATION[metric]
        stacked: dict[str, tuple[list[str], np.ndarray]] = {}
        curve_x: np.ndarray | None = None
        for name in names:
            by_image = records[metric][name]
            order = sorted(by_image)  # by content hash: independent of the images' order
            entry: dict[str, Any] = {
                "images": len(order),
                "skipped": n_skipped[(name, metric)],
                "auc": None,
                "ci_low": None,
                "ci_high": None,
            }
            if order:
                results = [
                    pic.PicMetricResult(
                        by_image[h]["curve_x"], by_image[h]["curve_y"], [], [], [], by_image[h]["auc"]
                    )
                    for h in order
                ]
                aggregate = pic.aggregate_individual_pic_results(results, method=aggregation)
                curve_x = np.asarray(aggregate.curve_x, dtype=np.float64)
                stacked[name] = (order, np.asarray([r.curve_y for r in results], dtype=np.float64))
                aucs = bootstrap_aucs([stacked[name][1]], curve_x, aggregation, n_bootstrap, seed)[0]
                low, high = percentile_interval(aucs, confidence)
                entry.update(auc=float(aggregate.auc), ci_low=low, ci_high=high)
                curves.setdefault(metric, {})[name] = np.asarray(aggregate.curve_y).tolist()
            summary_methods[name][metric] = entry
        if curve_x is not None:
            curves[metric] = {"x": curve_x.tolist(), **curves.get(metric, {})}
        for a, b in combinations(names, 2):
            difference: dict[str, Any] = {
                "metric": metric,
                "a": a,
                "b": b,
                "images": 0,
                "difference": None,
                "ci_low": None,
                "ci_high": None,
                "excludes_zero": False,
            }
            if a in stacked and b in stacked and curve_x is not None:
                common = sorted(set(stacked[a][0]) & set(stacked[b][0]))
                if common:
                    position_a = {h: i for i, h in enumerate(stacked[a][0])}
                    position_b = {h: i for i, h in enumerate(stacked[b][0])}
                    rows_a = [position_a[h] for h in common]
                    rows_b = [position_b[h] for h in common]
                    pair = [stacked[a][1][rows_a], stacked[b][1][rows_b]]
                    point = aggregate_aucs(np.stack(pair), curve_x, aggregation)
                    aucs = bootstrap_aucs(pair, curve_x, aggregation, n_bootstrap, seed)
                    low, high = percentile_interval(aucs[0] - aucs[1], confidence)
                    difference.update(
                        images=len(common),
                        difference=float(point[0] - point[1]),
                        ci_low=low,
                        ci_high=high,
                        excludes_zero=bool(low > 0.0 or high < 0.0),
                    )
            differences.append(difference)

    summary = {
        "out": os.fspath(out),
        "model": identity,
        "metrics": chosen_metrics,
        "aggregation": {metric: AGGREGATION[metric] for metric in chosen_metrics},
        "pic_options": options,
        "bootstrap": {
            "n_bootstrap": n_bootstrap,
            "confidence": confidence,
            "seed": seed,
            "interval": "percentile",
        },
        "images": len(pictures),
        "counts": counts,
        "methods": summary_methods,
        "curves": curves,
        "differences": differences,
        "skipped": skipped,
        "failed": failed,
        "seconds": time.perf_counter() - started,
    }
    text = json.dumps(summary, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(store.out / "evaluation.json", text.encode("utf-8"))
    return summary
