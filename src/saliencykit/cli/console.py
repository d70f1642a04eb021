"""Where the command line's messages go.

- results for people: stdout, unless ``--json`` (then stderr, so that stdout is only JSON);
- notes (an alpha channel dropped, a method left out) and the progress bar: stderr;
- ``--quiet`` silences everything but errors and the ``--json`` output; the
  progress bar shows only when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Console", "progress_bar"]


@dataclass
class Console:
    """The output settings of one command: ``quiet`` and ``json``."""

    quiet: bool = False
    json: bool = False

    def info(self, message: str) -> None:
        """A result for people: stdout (stderr under ``--json``); nothing under ``--quiet``."""
        if not self.quiet:
            print(message, file=sys.stderr if self.json else sys.stdout, flush=True)

    def note(self, message: str) -> None:
        """A remark on the input or the run, on stderr; nothing under ``--quiet``."""
        if not self.quiet:
            print(f"note: {message}", file=sys.stderr, flush=True)

    def print_json(self, summary: dict[str, Any]) -> None:
        """The machine-readable summary, alone on stdout."""
        print(json.dumps(summary, indent=2), flush=True)

    @property
    def show_progress(self) -> bool:
        """Whether progress bars are drawn: not quiet, and stderr is a terminal."""
        return not self.quiet and sys.stderr.isatty()


class _NoBar:
    """Stands in for a tqdm bar when there is none to draw."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass


@contextlib.contextmanager
def progress_bar(console: Console, **options: Any) -> Iterator[Any]:
    """A tqdm progress bar on stderr, or a silent stand-in (quiet, not a terminal, or no tqdm)."""
    if not console.show_progress:
        yield _NoBar()
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield _NoBar()
        return
    with tqdm(file=sys.stderr, dynamic_ncols=True, **options) as bar:
        yield bar
