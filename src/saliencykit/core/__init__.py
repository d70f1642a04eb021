"""Framework-agnostic saliency methods (the reference's ``saliency.core``).

``import saliencykit.core as saliency`` is a drop-in replacement for
``import saliency.core as saliency``. Nothing here imports a deep-learning
framework: the model is reached only through a ``call_model_function``.
"""

from .base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    MAX_MODEL_EVALUATIONS,
    OUTPUT_LAYER_VALUES,
    BaselineShapeError,
    CoreSaliency,
    MissingKeyError,
    call_model,
    call_model_in_batches,
    call_model_in_batches_with_extra,
    check_call_model_output,
)
from .blur_ig import BlurIG
from .grad_cam import GradCam
from .gradients import GradientSaliency, GuidedBackprop
from .guided_grad_cam import GuidedGradCam
from .guided_ig import GuidedIG
from .integrated_gradients import IntegratedGradients, IntegratedGradientsOutput
from .integration import INTEGRATION_RULES
from .occlusion import Occlusion
from .visualization import VisualizeImageDiverging, VisualizeImageGrayscale
from .xrai import XRAI, XRAIOutput, XRAIParameters

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GUIDED_INPUT_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "INTEGRATION_RULES",
    "MAX_MODEL_EVALUATIONS",
    "OUTPUT_LAYER_VALUES",
    "BaselineShapeError",
    "BlurIG",
    "CoreSaliency",
    "GradCam",
    "GradientSaliency",
    "GuidedBackprop",
    "GuidedGradCam",
    "GuidedIG",
    "IntegratedGradients",
    "IntegratedGradientsOutput",
    "MissingKeyError",
    "Occlusion",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "XRAI",
    "XRAIOutput",
    "XRAIParameters",
    "call_model",
    "call_model_in_batches",
    "call_model_in_batches_with_extra",
    "check_call_model_output",
]
