"""A run killed with SIGKILL mid-way, then rerun (issue 14): only the missing maps are computed.

The killed run is ``explain_dataset`` in a child process whose model calls
are slowed down (a sleep after each), killed as soon as its first rows are
stored. Whatever moment the kill hits, the folder must hold no half-written
map, no row without its map, and the rerun must compute exactly what is
missing and leave no temporary file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from saliencykit.runs import ModelSpec, RunStore, explain_dataset

from .conftest import Counts, RecordingEngine, write_images

pd = pytest.importorskip("pandas")

#: The child: the slowed-down run, one image at a time.
CHILD = """
import sys, time
from saliencykit.cli.methods import counting_calls
from saliencykit.runs import ModelSpec, explain_dataset

original = ModelSpec.load

def slow_load(self):
    model = original(self)
    make = model.make_call_model_function
    model.make_call_model_function = lambda c: counting_calls(make(c), lambda n: time.sleep(0.25))
    return model

ModelSpec.load = slow_load
images, model, out = sys.argv[1:]
explain_dataset(images, ModelSpec(model, input_size=32, device="cpu"), ["gradients", "ig"], out,
                parameters={"ig": {"x_steps": 3}}, images_per_batch=1)
"""


def wait_for_rows(folder: Path, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and any(folder.glob("*.json")):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it was killed: {process.stderr.read()!r}")  # type: ignore[union-attr]
        time.sleep(0.005)
    raise AssertionError("no row appeared")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_run_killed_mid_way_resumes_with_only_the_missing_maps(
    tmp_path: Path, tiny_model: Path, counted: Counts
) -> None:
    images = write_images(tmp_path / "images", 6)
    out = tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(images[0].parent), str(tiny_model), str(out)],
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for_rows(out / "rows", process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    store = RunStore(out)
    done_before = {row["key"] for row in store.rows()}
    assert 0 < len(done_before) < 2 * 5  # 12 maps (two images are the same smooth ramp): not all done
    for row in store.rows():  # every row has its map, and every map loads
        assert row["status"] == "ok" and store.status(row["key"]) == "ok"
    for path in (out / "maps").rglob("*.npz"):
        with np.load(path) as stored:
            assert stored["map"].shape == (32, 32, 3)

    # What a kill during a map's write leaves: a temporary file of the dead process.
    (out / "maps" / "ig").mkdir(exist_ok=True)
    (out / "maps" / "ig" / f".{'0' * 32}.npz.{process.pid}.abc123.tmp").write_bytes(b"PK\x03\x04 partial")

    engine = RecordingEngine()
    spec = ModelSpec(str(tiny_model), input_size=32, device="cpu")
    table = explain_dataset(
        images[0].parent, spec, ["gradients", "ig"], out, parameters={"ig": {"x_steps": 3}}, engine=engine
    )
    assert set(table.status) == {"ok"}
    assert set(engine.keys) == set(table.key) - done_before  # only the missing ones
    assert len(engine.keys) == len(set(engine.keys))
    assert counted.loads == 1
    assert list(store.temporaries()) == []
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == len(set(table.key)) == 10 and set(manifest.status) == {"ok"}
    assert len(list((out / "maps").rglob("*.npz"))) == 10
    for key in manifest.key:
        assert store.status(key) == "ok"
