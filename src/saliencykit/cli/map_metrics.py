"""``saliencykit evaluate --metrics``: deletion, insertion and model-parameter randomisation beside PIC.

- ``deletion`` / ``insertion`` (Petsiuk et al. 2018): the explained class's
  probability as the most salient pixels are set to black (deletion, lower AUC
  is better) or revealed in a blurred copy (insertion, higher is better);
  ``n_steps`` + 1 predictions per image and method, in calls of
  ``--batch-size`` (default 34). The curves are averaged over images and drawn
  in ``deletion-insertion.png``.
- ``randomisation`` (Adebayo et al. 2018): each method's map of each image on
  the trained model and on copies whose top layers are randomised one more at
  a time (cascading, :data:`RANDOMISATION_LAYERS` steps, seeded by ``--seed``);
  the mean over images of the Spearman rank correlation of the absolute maps
  and of their SSIM, per step, drawn in ``randomisation.png``. A method whose
  map barely changes (correlation near 1) does not depend on what the model
  learned. Needs a PyTorch or Keras model (not TorchScript).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core.base import CallModelFunction
from .display import saliency_2d
from .errors import CliError
from .methods import METHODS
from .models import LoadedModel, RandomisedCalls

__all__ = [
    "DELETION_STEPS",
    "MAP_METRICS",
    "RANDOMISATION_LAYERS",
    "parse_metrics",
    "deletion_insertion_scores",
    "plot_map_metrics_png",
    "randomisation_scores",
    "score_map_metrics",
    "write_map_metric_plots",
]

#: Every ``--metrics`` name; ``pic`` is SIC and AIC.
MAP_METRICS = ("pic", "deletion", "insertion", "randomisation")
#: Steps of the deletion and insertion curves (the fraction of pixels moves by 1 / steps).
DELETION_STEPS = 100
#: Layers randomised, from the output down, by ``--metrics randomisation``.
RANDOMISATION_LAYERS = 3


def parse_metrics(text: str | None) -> list[str]:
    """``"pic, deletion"`` -> ``["pic", "deletion"]``; ``None`` -> ``["pic"]``; ``all`` -> every metric.

    Raises:
      CliError: an unknown name, or none (the message lists the known ones).
    """
    if text is None:
        return ["pic"]
    wanted: list[str] = []
    for name in (part.strip().lower() for part in text.split(",")):
        if not name:
            continue
        if name == "all":
            return list(MAP_METRICS)
        if name == "randomization":
            name = "randomisation"
        if name not in MAP_METRICS:
            raise CliError(
                f"--metrics: unknown metric {name!r}; expected some of: all, {', '.join(MAP_METRICS)}"
            )
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise CliError(f"--metrics: expected some of: all, {', '.join(MAP_METRICS)}; got {text!r}")
    return wanted


def deletion_insertion_scores(
    metrics: Any,
    kind: str,
    name: str,
    images: list[np.ndarray],
    maps: np.ndarray,
    classes: list[int],
    predict_probabilities: Callable[[np.ndarray], np.ndarray],
    batch_size: int | None,
) -> tuple[list[float], Any]:
    """One method's deletion (or insertion) AUC of every image, and the curve averaged over them.

    Args:
      metrics: :mod:`saliencykit.metrics`.
      kind: ``"deletion"`` or ``"insertion"``.
      name: the method (its display rule turns a map into one value per pixel).
      images: the images, ``[H, W, 3]`` in [0, 255].
      maps: the method's maps of them, in order.
      classes: the class each map explains.
      predict_probabilities: the model's ``[N, H, W, 3] -> [N, classes]``.
      batch_size: images per prediction call (``None``: ``DELETION_STEPS + 1`` / 3, rounded up).
    """
    compute = metrics.compute_deletion_metric if kind == "deletion" else metrics.compute_insertion_metric
    size = batch_size or -(-(DELETION_STEPS + 1) // 3)
    results = []
    for image, saliency_map, class_index in zip(images, maps, classes, strict=True):

        def probability(batch: np.ndarray, class_index: int = class_index) -> np.ndarray:
            return predict_probabilities(batch)[:, class_index]

        importance = saliency_2d(saliency_map, METHODS[name].display)
        results.append(compute(image, importance, probability, n_steps=DELETION_STEPS, batch_size=size))
    return [float(result.auc) for result in results], metrics.aggregate_deletion_insertion_results(results)


def randomisation_scores(
    metrics: Any,
    name: str,
    images: list[np.ndarray],
    classes: list[int],
    parameters: dict[str, Any],
    randomised_calls: RandomisedCalls,
    make_call: Callable[[int], CallModelFunction],
    seed: int,
) -> dict[str, Any]:
    """One method's cascading randomisation test, averaged over images.

    Returns:
      ``{"layers": [...], "rank_correlation_abs": [...], "ssim": [...]}``: per
      step, the mean over images (NaN steps, where a map is constant, left out;
      ``None`` when every image's is NaN).
    """
    spec = METHODS[name]

    def explain(x_value: np.ndarray, call: CallModelFunction, call_model_args: Any = None) -> np.ndarray:
        return saliency_2d(spec.compute(x_value, call, parameters), spec.display)

    correlations, similarities = [], []
    layers: list[str] = []
    for image, class_index in zip(images, classes, strict=True):
        layers.clear()

        def models(class_index: int = class_index) -> Iterator[CallModelFunction]:
            yield make_call(class_index)  # the trained model first, then one randomised copy at a time
            for layer, make_randomised in randomised_calls(RANDOMISATION_LAYERS, seed):
                layers.append(layer)
                yield make_randomised(class_index)

        result = metrics.compute_model_randomisation(explain, image.astype(np.float32), models())
        correlations.append(result.rank_correlation_abs)
        similarities.append(result.ssim)

    def mean(values: list[np.ndarray]) -> list[float | None]:
        stacked = np.asarray(values, dtype=np.float64)
        return [None if np.isnan(column).all() else float(np.nanmean(column)) for column in stacked.T]

    return {"layers": layers, "rank_correlation_abs": mean(correlations), "ssim": mean(similarities)}


def plot_map_metrics_png(
    metrics: Any, kind: str, curves: dict[str, Any], randomisation: dict[str, dict[str, Any]]
) -> bytes:
    """``deletion-insertion.png`` (kind ``"deletion-insertion"``) or ``randomisation.png``, as PNG bytes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    if kind == "deletion-insertion":
        for axes, metric in zip(figure.subplots(1, 2), ("deletion", "insertion"), strict=True):
            by_title = {
                METHODS[name].title: curve[metric] for name, curve in curves.items() if metric in curve
            }
            if by_title:
                metrics.plot_deletion_insertion_curves(
                    by_title, ax=axes, title=f"{metric} (mean over images)"
                )
            else:
                axes.axis("off")
    else:
        for axes, key, label in zip(
            figure.subplots(1, 2),
            ("rank_correlation_abs", "ssim"),
            ("Spearman rank correlation (absolute maps)", "SSIM"),
            strict=True,
        ):
            for name, scores in randomisation.items():
                values = [np.nan if value is None else value for value in scores[key]]
                axes.plot(range(1, len(values) + 1), values, marker="o", label=METHODS[name].title)
            layers = next(iter(randomisation.values()))["layers"] if randomisation else []
            axes.set_xticks(range(1, len(layers) + 1), layers, rotation=30, ha="right")
            axes.set_ylim(-1.05 if key == "rank_correlation_abs" else -0.05, 1.05)
            axes.set_xlabel("randomised down to layer (cascading)")
            axes.set_title(label)
            axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def score_map_metrics(
    metrics: Any,
    wanted: list[str],
    name: str,
    images: list[np.ndarray],
    classes: list[int],
    records: list[dict[str, Any]],
    maps: np.ndarray,
    model: LoadedModel,
    parameters: dict[str, Any],
    batch_size: int | None,
    seed: int,
    scores: dict[str, Any],
) -> None:
    """Deletion, insertion and randomisation of method ``name`` (those in ``wanted``) into ``scores``.

    Each image's record gets its deletion and insertion AUC (``record["auc"][name]``);
    ``scores`` the method's AUC of the mean curve, the curves
    (``scores["curves"]``) and the randomisation summary.
    """
    for kind in ("deletion", "insertion"):
        if kind not in wanted:
            continue
        aucs, curve = deletion_insertion_scores(
            metrics, kind, name, images, maps, classes, model.predict_probabilities, batch_size
        )
        for record, auc in zip(records, aucs, strict=True):
            record["auc"].setdefault(name, {})[kind] = auc
        scores[kind] = float(curve.auc)
        scores.setdefault("curves", {})[kind] = curve
    if "randomisation" in wanted and model.randomised_calls is not None:
        scores["randomisation"] = randomisation_scores(
            metrics,
            name,
            images,
            classes,
            parameters,
            model.randomised_calls,
            model.make_call_model_function,
            seed,
        )


def write_map_metric_plots(
    metrics: Any, staged: Any, wanted: list[str], extra: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Writes deletion-insertion.png and randomisation.png when asked for; returns ``key -> path``."""
    plots = {}
    curves = {name: scores.get("curves", {}) for name, scores in extra.items()}
    if {"deletion", "insertion"} & set(wanted) and any(curves.values()):
        png = plot_map_metrics_png(metrics, "deletion-insertion", curves, {})
        plots["deletion_insertion_plot"] = str(staged.write_bytes("deletion-insertion.png", png))
    randomisation = {
        name: scores["randomisation"] for name, scores in extra.items() if "randomisation" in scores
    }
    if randomisation:
        png = plot_map_metrics_png(metrics, "randomisation", {}, randomisation)
        plots["randomisation_plot"] = str(staged.write_bytes("randomisation.png", png))
    return plots
