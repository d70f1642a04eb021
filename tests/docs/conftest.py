"""The documentation site, built once per test session with ``mkdocs build --strict``.

Needs the ``docs`` extra (MkDocs, Material, mkdocstrings, mkdocs-jupyter, latex2mathml); the tests
that use the site are skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: What ``mkdocs build`` needs beyond MkDocs itself (module names).
DOCS_PACKAGES = (
    "mkdocs",
    "material",
    "mkdocstrings_handlers.python",
    "mkdocs_jupyter",
    "latex2mathml",
    "griffe",
)


@dataclass(frozen=True)
class BuiltSite:
    """A site built from the working tree: its folder and what ``mkdocs build`` printed."""

    path: Path
    log: str


def require_docs_packages() -> None:
    for name in DOCS_PACKAGES:
        pytest.importorskip(name, reason=f"the docs extra is not installed (no {name})")


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """``mkdocs build --strict`` of the repository's site into a temporary folder (never ``site/``)."""
    require_docs_packages()
    out = tmp_path_factory.mktemp("site") / "site"
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # no banner about MkDocs 2 on stderr
        check=False,
    )
    log = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    return BuiltSite(out, log)


def load_docs_module(name: str) -> Any:
    """Imports ``docs/scripts/<name>.py`` (the folder is not a package)."""
    sys.path.insert(0, str(DOCS / "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(DOCS / "scripts"))
