"""Writing the command line's output files safely: all or nothing, never half a file.

Every file is first written to a temporary file in the output folder
(``.NAME.XXXX.part``), then moved onto its final name with ``os.replace``, which
is atomic on one file system. The moves happen only once every file of the run
is written, the JSON summary last: a run that fails or is interrupted while
writing leaves the previous run's files as they were, and no temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import CliError

__all__ = ["StagedFiles", "prepare_output_folder", "staged_outputs", "write_atomically"]

TEMPORARY_SUFFIX = ".part"


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def prepare_output_folder(out: str | os.PathLike[str]) -> Path:
    """Creates the output folder (and its parents) and checks that files can be written in it.

    Called before any model work, so that an unwritable ``--out`` fails in a
    fraction of a second rather than after the maps are computed.

    Raises:
      CliError: ``out`` is a file, lies under a file, or cannot be created or written to.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"--out: cannot write to {str(out)!r}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(
            dir=folder, prefix=".saliencykit-probe.", suffix=TEMPORARY_SUFFIX
        )
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise CliError(f"--out: cannot write to {str(out)!r}: {_reason(error)}") from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedFiles:
    """Files written to temporary names in one folder, moved onto their final names by :meth:`commit`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final), in the order of the moves
        self._mode = 0o666 & ~_umask()  # what open() would have given the file (mkstemp gives 0o600)

    def write_with(self, name: str, writer: Callable[[BinaryIO], object]) -> Path:
        """Stages ``name``: ``writer(file)`` writes its bytes to a temporary file. Returns the final path."""
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=TEMPORARY_SUFFIX)
        self._staged.append((Path(temporary), self.folder / name))
        with os.fdopen(descriptor, "wb") as file:
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), self._mode)
            writer(file)
            file.flush()
            os.fsync(file.fileno())
        return self.folder / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Stages ``name`` with ``data``. Returns the final path."""
        return self.write_with(name, lambda file: file.write(data))

    def write_text(self, name: str, text: str) -> Path:
        """Stages ``name`` with ``text`` in UTF-8. Returns the final path."""
        return self.write_bytes(name, text.encode("utf-8"))

    def commit(self) -> None:
        """Moves every staged file onto its final name, in the order they were staged."""
        while self._staged:
            temporary, final = self._staged[0]
            os.replace(temporary, final)
            self._staged.pop(0)

    def discard(self) -> None:
        """Removes the staged files that were not moved."""
        for temporary, _ in self._staged:
            with contextlib.suppress(OSError):
                temporary.unlink()
        self._staged.clear()


@contextlib.contextmanager
def staged_outputs(folder: Path) -> Iterator[StagedFiles]:
    """Stages files in ``folder`` and commits them when the block ends without an error.

    On any error or interrupt (``KeyboardInterrupt`` too) the staged files are
    removed and the folder's previous files are left untouched.
    """
    staged = StagedFiles(folder)
    try:
        yield staged
        staged.commit()
    finally:
        staged.discard()


def write_atomically(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_outputs(path.parent) as staged:
        staged.write_bytes(path.name, data)
    return path
