"""Data-set runs: the maps of many images, stored so that a killed run resumes where it stopped.

    from saliencykit.runs import explain_dataset, ModelSpec

    table = explain_dataset("photos/*.jpg", ModelSpec("net.pt", input_size=128), ["ig", "gradcam"], "out")

:func:`explain_dataset` expands the images (files, folders, globs, ``.txt``
lists), skips the maps already stored under ``out`` (same image content,
model, method and parameters), computes the others with an engine
(``"local"``: this process; ``"ray"``: Ray workers, ``pip install
"saliencykit[ray]"``), stores each map and its manifest row atomically, and
rebuilds ``out/manifest.csv`` (and ``.parquet`` with pyarrow). It returns the
rows as a ``pandas.DataFrame`` when pandas is installed, else a list of dicts.
:func:`write_gallery` writes an HTML page of the first images and their maps.
:func:`evaluate_dataset` scores the stored maps with the PIC metrics (SIC, AIC),
computing missing maps first, with bootstrap intervals over images, a seeded
random-map baseline and paired differences between methods.

Importing this package imports no deep-learning framework, Ray or pandas.
"""

from __future__ import annotations

from .api import expand_images, explain_dataset
from .engines import Engine, EngineUnavailableError, ModelSpec, WorkItem, WorkResult, get_engine
from .evaluate import evaluate_dataset
from .gallery import write_gallery
from .local import LocalEngine
from .store import COLUMNS, RunStore

__all__ = [
    "COLUMNS",
    "Engine",
    "EngineUnavailableError",
    "LocalEngine",
    "ModelSpec",
    "RunStore",
    "WorkItem",
    "WorkResult",
    "evaluate_dataset",
    "expand_images",
    "explain_dataset",
    "get_engine",
    "write_gallery",
]
