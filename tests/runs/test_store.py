"""The stored run's files (issue 14): atomic writes, keys, rows, status, the manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saliencykit.runs.store import COLUMNS, RunStore, atomic_write_bytes, atomic_write_with, canonical_json


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    assert atomic_write_bytes(target, b"first version, long") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def half_then_fail(file) -> None:  # noqa: ANN001
        file.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_removed_not_those_of_live_ones(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "out")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    folder = store.maps_folder / "ig"
    folder.mkdir()
    stale = folder / f".abc.npz.{dead_pid}.x1y2z3.tmp"
    live = store.rows_folder / f".abc.json.{os.getpid()}.q9w8e7.tmp"
    other = store.rows_folder / "notes.tmp"  # not a temporary of ours
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    assert sorted(p.name for p in store.temporaries()) == sorted([stale.name, live.name])
    assert store.remove_stale_temporaries() == 1
    assert not stale.exists() and live.exists() and other.exists()


def test_keys_are_canonical_and_change_with_each_field() -> None:
    key = RunStore.key("ab" * 32, {"model": "m", "size": 32}, "ig", {"x_steps": 3, "batch_size": 10}, False)
    assert len(key) == 32 and int(key, 16) >= 0
    same = RunStore.key("ab" * 32, {"size": 32, "model": "m"}, "ig", {"batch_size": 10, "x_steps": 3}, False)
    assert same == key
    fields = {
        "image_sha256": "cd" * 32,
        "model": {"model": "n", "size": 32},
        "method": "xrai",
        "parameters": {"x_steps": 4, "batch_size": 10},
        "float16": True,
    }
    base = {
        "image_sha256": "ab" * 32,
        "model": {"model": "m", "size": 32},
        "method": "ig",
        "parameters": {"x_steps": 3, "batch_size": 10},
        "float16": False,
    }
    for name, value in fields.items():
        assert RunStore.key(**{**base, name: value}) != key, name
    assert RunStore.key(**base, class_index=None) == key
    assert RunStore.key(**base, class_index=2) != key
    expected = canonical_json(base)
    import hashlib

    assert key == hashlib.sha256(expected.encode()).hexdigest()[:32]


def test_status_is_ok_only_for_a_row_whose_map_loads(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    key = RunStore.key("00" * 32, "m", "ig", {}, True)
    assert store.status(key) is None
    relative = store.write_map(key, "ig", np.linspace(0, 1, 12).reshape(2, 2, 3), float16=True)
    assert relative == f"maps/ig/{key}.npz"
    assert store.status(key) is None  # a map without its row is not done
    store.write_row(
        {"key": key, "method": "ig", "map_path": relative, "status": "ok", "parameters": {"a": 1}}
    )
    assert store.status(key) == "ok"
    assert store.load_map(key).dtype == np.float16
    assert store.row(key)["parameters"] == '{"a":1}'
    (tmp_path / relative).write_bytes(b"PK\x03\x04 damaged")
    assert store.status(key) is None
    (tmp_path / relative).unlink()
    assert store.status(key) is None
    store.write_row({"key": key, "method": "ig", "status": "failed", "error": "boom\nTraceback..."})
    assert store.status(key) == "failed"
    assert store.row(key)["error"] == "boom"
    with pytest.raises(KeyError):
        store.load_map(key)


def test_rows_are_checked(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    key = RunStore.key("00" * 32, "m", "ig", {}, False)
    with pytest.raises(ValueError, match="status"):
        store.write_row({"key": key, "status": "done"})
    with pytest.raises(ValueError, match="key"):
        store.write_row({"key": "../../etc/passwd", "status": "ok"})
    with pytest.raises(ValueError, match="method"):
        store.write_map(key, "../x", np.zeros(3))
    (tmp_path / "rows" / f"{key}.json").write_text("{not json")
    assert store.row(key) is None and store.rows() == []
    with pytest.raises(ValueError, match="folder"):
        RunStore(tmp_path / "rows" / f"{key}.json")


def test_the_manifest_holds_every_row_in_csv_and_parquet(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    store = RunStore(tmp_path)
    for number, status in enumerate(["ok", "failed", "ok"]):
        key = RunStore.key(f"{number:064d}", "m", "ig", {}, False)
        row = {"key": key, "image_path": f"img, {number}.png", "method": "ig", "status": status}
        if status == "ok":
            row.update(
                map_path=store.write_map(key, "ig", np.ones((2, 2))), class_index=number, probability=0.5
            )
        else:
            row["error"] = 'cannot read "it", really'
        store.write_row(row)
    path = store.write_manifest()
    table = pd.read_csv(path)
    assert list(table.columns) == list(COLUMNS)
    assert list(table.image_path) == ["img, 0.png", "img, 1.png", "img, 2.png"]
    assert list(table.status) == ["ok", "failed", "ok"]
    assert table.error[1] == 'cannot read "it", really'
    if pytest.importorskip("pyarrow"):
        parquet = pd.read_parquet(tmp_path / "manifest.parquet")
        assert list(parquet.key) == list(table.key)
    assert json.loads((tmp_path / "rows" / f"{table.key[0]}.json").read_text())["status"] == "ok"
    assert leftovers(tmp_path) == []
