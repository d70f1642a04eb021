"""The saliencykit command's entry points: the console script, ``python -m saliencykit``, lazy imports.

The commands themselves are tested in the other files of this folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import saliencykit

HEAVY_MODULES = ("torch", "tensorflow", "keras", "jax", "matplotlib", "tqdm")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=120, check=False)


def test_console_script_is_installed() -> None:
    """``pip install`` puts ``saliencykit`` beside the interpreter (``[project.scripts]``)."""
    script = Path(sys.executable).with_name("saliencykit")
    found = str(script) if script.exists() else shutil.which("saliencykit")
    assert found, "the saliencykit console script is not installed: pip install -e ."
    completed = run(found, "--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"saliencykit {saliencykit.__version__}"


def test_python_dash_m_lists_the_commands() -> None:
    completed = run(sys.executable, "-m", "saliencykit", "--help")
    assert completed.returncode == 0, completed.stderr
    assert "explain" in completed.stdout and "evaluate" in completed.stdout


def test_subcommand_help() -> None:
    for command in ("explain", "evaluate"):
        completed = run(sys.executable, "-m", "saliencykit", command, "--help")
        assert completed.returncode == 0, completed.stderr
        assert (
            "--methods" in completed.stdout and "--model" in completed.stdout and "--json" in completed.stdout
        )


def test_imports_stay_light() -> None:
    """The library, its core and the command's parser import no framework, matplotlib or tqdm."""
    code = (
        "import sys, saliencykit, saliencykit.core, saliencykit.cli; saliencykit.cli.build_parser(); "
        f"print([name for name in {HEAVY_MODULES!r} if name in sys.modules])"
    )
    completed = run(sys.executable, "-c", code)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_the_command_sets_thread_variables_before_numpy_loads() -> None:
    """``import saliencykit.cli`` loads no NumPy, so main() can still set OPENBLAS_NUM_THREADS and friends."""
    code = (
        "import os, sys, saliencykit.cli as cli; assert 'numpy' not in sys.modules; cli._calm_libraries(); "
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'])"
    )
    unset = ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "PASSIVE"]


def test_plot_extra_is_enough_for_the_command_with_your_own_model() -> None:
    """Keras users install saliencykit[tensorflow,plot]: the pictures and the progress bar come with plot.

    (tests/cli/test_explain.py::test_keras_model runs the command with PyTorch hidden.)
    """
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    names = {requirement.split(">")[0].split("=")[0].strip() for requirement in extras["plot"]}
    assert {"matplotlib", "tqdm"} <= names
    assert not any("torch" in requirement for requirement in extras["plot"])
