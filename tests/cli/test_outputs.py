"""Output files are all or nothing: a failed or interrupted run leaves the previous run's files as they were.

Each file is written to a temporary name in --out, then renamed (the JSON
summary last); --out is checked before any model work.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TIMEOUT_S, assert_one_line_error, run_cli, run_main, tiny_model_args


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (temporary files included) and its bytes."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def command(kind: str, tiny_model: Path, photo: Path) -> list[str]:
    """A quick ``explain`` or ``evaluate`` run of the tiny model writing to ``out``."""
    return [kind, str(photo), *tiny_model_args(tiny_model), "--methods", "gradients", "--out", "out", "-q"]


OUTPUTS = {
    "explain": ["explain.json", "panel.png", "report.html"],
    "evaluate": ["pic-curves.png", "pic.json"],
}


@pytest.mark.parametrize("kind", ["explain", "evaluate"])
def test_interrupted_picture_write_keeps_the_previous_outputs(
    kind: str, tiny_model: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while matplotlib writes the PNG: no truncated picture, no temporary file, exit 130."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    arguments = command(kind, tiny_model, photo)
    assert run_main(monkeypatch, *arguments, cwd=tmp_path) == 0
    before = snapshot(tmp_path / "out")
    assert sorted(before) == OUTPUTS[kind]

    def interrupted_savefig(self: Figure, target: object, *args: object, **kwargs: object) -> None:
        partial = b"\x89PNG\r\n\x1a\n" + bytes(64)  # the start of a PNG, then the interrupt
        if hasattr(target, "write"):
            target.write(partial)
        else:
            Path(target).write_bytes(partial)
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted_savefig)
    assert run_main(monkeypatch, *arguments, cwd=tmp_path) == 130
    assert snapshot(tmp_path / "out") == before


def run_with_file_size_limit(limit: int, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m saliencykit ARGS`` where no file may grow beyond ``limit`` bytes (a full disk: EFBIG)."""
    code = (
        "import resource, runpy, signal, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "  # write() then fails with EFBIG
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['saliencykit', *sys.argv[1:]]; "
        "runpy.run_module('saliencykit', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_failed_write_keeps_the_previous_outputs(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """The report cannot be written (the disk is full): the panel must not be replaced either."""
    pytest.importorskip("resource")  # POSIX
    arguments = command("explain", tiny_model, photo)
    first = run_cli(*arguments, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "out")
    panel, report = len(before["panel.png"]), len(before["report.html"])
    assert report > 1.3 * panel  # the report holds the panel, base64-encoded: room for a limit between
    failed = run_with_file_size_limit((panel + report) // 2, arguments, tmp_path)
    assert failed.returncode == 2, failed.stderr
    assert "--out: cannot write to 'out'" in failed.stderr and "Traceback" not in failed.stderr
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("kind", ["explain", "evaluate"])
def test_unwritable_out_fails_before_any_model_work(kind: str, tmp_path: Path) -> None:
    """--out is checked first: the broken model file is never loaded, the image never read."""
    (tmp_path / "taken").write_text("a file, not a folder")
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    for out, reason in (("taken", "it is a file, not a folder"), ("taken/sub", "Not a directory")):
        run = run_cli(kind, "missing.png", "--model", "broken.pt", "--out", out, cwd=tmp_path)
        assert_one_line_error(run, f"--out: cannot write to {out!r}", reason)


def test_staged_files_are_moved_in_order_or_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from saliencykit.cli.outputs import staged_outputs

    (tmp_path / "a.txt").write_text("old a")
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (moves.append(Path(dst).name), real_replace(src, dst))
    )
    with staged_outputs(tmp_path) as staged:
        staged.write_text("a.txt", "new a")
        staged.write_bytes("b.bin", b"\x00\x01")
        staged.write_text("summary.json", "{}")
        assert len([path for path in tmp_path.iterdir() if path.name.endswith(".part")]) == 3
        assert (tmp_path / "a.txt").read_text() == "old a"  # nothing moved before the end
    assert moves == ["a.txt", "b.bin", "summary.json"]  # the summary last
    assert snapshot(tmp_path) == {"a.txt": b"new a", "b.bin": b"\x00\x01", "summary.json": b"{}"}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o666 & ~mask  # as open() makes them

    with pytest.raises(OSError, match="disk full"), staged_outputs(tmp_path) as staged:
        staged.write_text("a.txt", "newer a")

        def fail(file: object) -> None:
            raise OSError("disk full")

        staged.write_with("b.bin", fail)
    assert snapshot(tmp_path) == {"a.txt": b"new a", "b.bin": b"\x00\x01", "summary.json": b"{}"}


def test_prepare_output_folder(tmp_path: Path) -> None:
    from saliencykit.cli.errors import CliError
    from saliencykit.cli.outputs import prepare_output_folder

    created = prepare_output_folder(tmp_path / "new" / "folder")
    assert created.is_dir() and list(created.iterdir()) == []  # the write probe is removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(CliError, match="--out: cannot write to .*it is a file, not a folder"):
        prepare_output_folder(tmp_path / "file")
    with pytest.raises(CliError, match="--out: cannot write to .*file/sub"):
        prepare_output_folder(tmp_path / "file" / "sub")
