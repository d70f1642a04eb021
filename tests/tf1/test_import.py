"""saliencykit.tf1 imports TensorFlow; saliencykit and saliencykit.core never do."""

from __future__ import annotations

import subprocess
import sys

import pytest

REFERENCE_NAMES = [
    "BlurIG",
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GradCam",
    "GradientSaliency",
    "GuidedBackprop",
    "GuidedIG",
    "INPUT_OUTPUT_GRADIENTS",
    "IntegratedGradients",
    "OUTPUT_LAYER_VALUES",
    "Occlusion",
    "TF1CoreSaliency",
    "TF1Saliency",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "XRAI",
    "XRAIParameters",
    "create_tf1_call_model_function",
]

SCRIPT = """
import sys
import saliencykit, saliencykit.core
assert "tensorflow" not in sys.modules, "saliencykit.core imported tensorflow"
sys.modules["tensorflow"] = None  # as if TensorFlow were not installed
try:
    import saliencykit.tf1
except ImportError as error:
    print(error)
else:
    raise SystemExit("import saliencykit.tf1 did not fail")
"""


def test_core_never_imports_tensorflow_and_tf1_says_how_to_install_it():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install saliencykit[tf1]" in result.stdout


def test_the_reference_api_is_there():
    pytest.importorskip("tensorflow")
    import saliencykit.tf1 as saliency

    missing = [name for name in REFERENCE_NAMES if not hasattr(saliency, name)]
    assert not missing
    assert set(saliency.__all__) >= set(REFERENCE_NAMES)
