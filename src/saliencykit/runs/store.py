"""The stored run: one map and one manifest row per (image, method), written atomically.

Layout of an output folder ``out/``:

- ``out/maps/<method>/<key>.npz``: one map, ``np.savez_compressed(file, map=array)``
  (float16 when asked);
- ``out/rows/<key>.json``: the manifest row of that (image, method), written
  after its map, so that a row never claims a map that is not there; a failed
  item has a row with status ``"failed"``, a one-line error and no map;
- ``out/manifest.csv`` (and ``out/manifest.parquet`` when pyarrow is
  installed): every row of ``rows/``, rebuilt at the end of each run, readable
  with one ``pandas.read_csv``; columns :data:`COLUMNS`.

Every file is written to a temporary file in its own folder (named
``.<name>.<pid>.<random>.tmp``), flushed and fsynced, then renamed onto its
name with ``os.replace``: a process killed at any moment leaves the previous
file or the new one, never half of one. The temporary files of a killed
process are removed by :meth:`RunStore.remove_stale_temporaries` (which
:func:`saliencykit.runs.explain_dataset` calls when a run starts); those of a
process still running are left alone.

A map's key is the first 32 hex digits of the sha256 of the canonical JSON of
``{"image_sha256", "model", "method", "parameters", "float16"}`` (see
:meth:`RunStore.key`): the same image (by content), model, method and
parameters always have the same key, so a rerun finds what is already done.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "COLUMNS",
    "RunStore",
    "atomic_write_bytes",
    "atomic_write_with",
    "canonical_json",
    "file_sha256",
]

#: The manifest's columns, in order.
COLUMNS = (
    "image_path",
    "image_sha256",
    "model",
    "class_index",
    "label",
    "probability",
    "method",
    "parameters",
    "key",
    "map_path",
    "seconds",
    "status",
    "error",
)
#: Length of a key in hex digits.
KEY_DIGITS = 32
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
_KEY = re.compile(rf"^[0-9a-f]{{{KEY_DIGITS}}}$")


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks.

    Raises:
      OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (where the platform can open folders)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], object]) -> Path:
    """Writes ``path`` with ``writer(binary file)``, atomically.

    ``writer`` writes into a temporary file in the same folder
    (``.<name>.<pid>.<random>.tmp``), which is flushed, fsynced and renamed onto
    ``path`` with ``os.replace``. On any error (or interrupt) the temporary
    file is removed and ``path`` keeps its previous contents. The folder is
    created when missing.

    Returns:
      ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_write_with`); returns ``path``."""
    return atomic_write_with(path, lambda file: file.write(data))


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts as running)."""
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill(pid, 0) would send CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _one_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


class RunStore:
    """The maps and manifest rows of runs under one output folder (see the module's docstring).

    Only one process should write to a store at a time (the driver of a run):
    engines compute, the driver writes.

    Args:
      out: the output folder; created (with ``maps/`` and ``rows/``) when missing.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out: expected a folder for the run's files, got the file {str(self.out)!r}")
        self.maps_folder = self.out / "maps"
        self.rows_folder = self.out / "rows"
        self.maps_folder.mkdir(parents=True, exist_ok=True)
        self.rows_folder.mkdir(parents=True, exist_ok=True)

    # Keys and paths.

    @staticmethod
    def key(image_sha256: str, model: Any, method: str, parameters: Any, float16: bool, **extra: Any) -> str:
        """The key of one (image, model, method, parameters, float16) map.

        The first 32 hex digits of the sha256 of the canonical JSON
        (:func:`canonical_json`) of ``{"image_sha256", "model", "method",
        "parameters", "float16"}`` and of ``extra`` entries that are not
        ``None`` (e.g. an explicit ``class_index``); ``model`` and
        ``parameters`` are any JSON values.
        """
        fields = {
            "image_sha256": image_sha256,
            "model": model,
            "method": method,
            "parameters": parameters,
            "float16": bool(float16),
        }
        fields.update({name: value for name, value in extra.items() if value is not None})
        return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()[:KEY_DIGITS]

    @staticmethod
    def _check_key(key: str) -> str:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"key: expected {KEY_DIGITS} lowercase hex digits, got {key!r}")
        return key

    @staticmethod
    def _check_method(method: str) -> str:
        if not isinstance(method, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", method):
            raise ValueError(f"method: expected a method name (letters, digits, - _ .), got {method!r}")
        return method

    def map_relative_path(self, key: str, method: str) -> str:
        """``maps/<method>/<key>.npz``, relative to the output folder (with ``/``)."""
        return f"maps/{self._check_method(method)}/{self._check_key(key)}.npz"

    def row_path(self, key: str) -> Path:
        """The file of the row of ``key``: ``rows/<key>.json``."""
        return self.rows_folder / f"{self._check_key(key)}.json"

    # Writing.

    def write_map(self, key: str, method: str, array: np.ndarray, float16: bool = False) -> str:
        """Stores a map atomically (float16 when asked); returns its path relative to the folder.

        Raises:
          ValueError: a malformed key or method name, or a map that is not numeric.
        """
        relative = self.map_relative_path(key, method)
        values = np.asarray(array)
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise ValueError(f"array: expected a numeric saliency map, got dtype {values.dtype}")
        if float16:
            values = values.astype(np.float16)
        atomic_write_with(self.out / relative, lambda file: np.savez_compressed(file, map=values))
        return relative

    def write_row(self, row: dict[str, Any]) -> Path:
        """Stores one manifest row atomically as ``rows/<key>.json``; returns the file.

        Only the :data:`COLUMNS` are kept (missing ones are empty); ``parameters``
        given as a dict is stored as canonical JSON text; ``error`` is cut to
        its first line. Write the map first: a row with status ``"ok"`` claims it.

        Raises:
          ValueError: no valid ``key``, or a ``status`` other than "ok" and "failed".
        """
        key = self._check_key(row.get("key", ""))
        if row.get("status") not in ("ok", "failed"):
            raise ValueError(f"row: expected status 'ok' or 'failed', got {row.get('status')!r}")
        stored: dict[str, Any] = {column: row.get(column) for column in COLUMNS}
        for column in ("image_path", "image_sha256", "model", "label", "method", "map_path", "error"):
            stored[column] = "" if stored[column] is None else str(stored[column])
        if not isinstance(stored["parameters"], str):
            stored["parameters"] = canonical_json(stored["parameters"] or {})
        stored["error"] = _one_line(stored["error"])
        text = json.dumps(stored, sort_keys=False, allow_nan=False) + "\n"
        return atomic_write_bytes(self.row_path(key), text.encode("utf-8"))

    def remove_map(self, key: str, method: str) -> None:
        """Deletes a stored map, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            (self.out / self.map_relative_path(key, method)).unlink()

    # Reading.

    def row(self, key: str) -> dict[str, Any] | None:
        """The stored row of ``key``, or ``None`` when there is none (or it cannot be read)."""
        try:
            row = json.loads(self.row_path(key).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return row if isinstance(row, dict) and row.get("key") == key else None

    def load_map(self, key: str) -> np.ndarray:
        """The map of ``key``, as it was stored (float16 when it was asked for).

        Raises:
          KeyError: no row with status "ok" for ``key``, or a file without a ``map`` array.
          OSError, ValueError, zipfile.BadZipFile: the map file is missing or damaged.
        """
        row = self.row(key)
        if row is None or row.get("status") != "ok" or not row.get("map_path"):
            raise KeyError(f"no stored map with key {key!r} in {str(self.out)!r}")
        with np.load(self.out / row["map_path"], allow_pickle=False) as stored:
            return np.asarray(stored["map"])

    def status(self, key: str) -> str | None:
        """``"ok"``, ``"failed"`` or ``None`` (never computed).

        ``"ok"`` only when the row says so AND its map file exists and loads;
        a row that claims a missing or damaged map counts as never computed.
        """
        row = self.row(key)
        if row is None:
            return None
        if row.get("status") == "failed":
            return "failed"
        if row.get("status") != "ok":
            return None
        try:
            self.load_map(key)
        except Exception:  # missing, truncated or damaged (zipfile.BadZipFile, OSError, ValueError...)
            return None
        return "ok"

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, sorted by image path, method and key (unreadable row files are skipped)."""
        found = []
        for path in self.rows_folder.glob("*.json"):
            row = self.row(path.stem) if _KEY.match(path.stem) else None
            if row is not None:
                found.append({column: row.get(column) for column in COLUMNS})
        return sorted(found, key=lambda r: (str(r["image_path"]), str(r["method"]), str(r["key"])))

    # The manifest.

    def write_manifest(self) -> Path:
        """Rebuilds ``manifest.csv`` (and ``manifest.parquet`` with pyarrow) from ``rows/``, atomically.

        Returns:
          The CSV's path.
        """
        rows = self.rows()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: "" if row[column] is None else row[column] for column in COLUMNS})
        path = atomic_write_bytes(self.out / "manifest.csv", text.getvalue().encode("utf-8"))
        self._write_parquet(rows)
        return path

    def _write_parquet(self, rows: list[dict[str, Any]]) -> None:
        try:
            pa = importlib.import_module("pyarrow")  # optional (saliencykit[runs])
            pq = importlib.import_module("pyarrow.parquet")
        except ImportError:
            return
        schema = pa.schema(
            [
                (column, pa.int64())
                if column == "class_index"
                else (column, pa.float64())
                if column in ("probability", "seconds")
                else (column, pa.string())
                for column in COLUMNS
            ]
        )
        table = pa.Table.from_pylist(rows, schema=schema)
        atomic_write_with(self.out / "manifest.parquet", lambda file: pq.write_table(table, file))

    # Housekeeping.

    def temporaries(self) -> Iterator[Path]:
        """The temporary files of atomic writes under the folder (``.<name>.<pid>.<random>.tmp``)."""
        for folder in (self.out, self.rows_folder, *self.maps_folder.iterdir()):
            if folder.is_dir():
                yield from (p for p in folder.iterdir() if _TEMPORARY.match(p.name))

    def remove_stale_temporaries(self) -> int:
        """Removes the temporary files left by killed processes (not those of running ones).

        Returns:
          How many were removed.
        """
        removed = 0
        for path in list(self.temporaries()):
            match = _TEMPORARY.match(path.name)
            if match and not _process_alive(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed
