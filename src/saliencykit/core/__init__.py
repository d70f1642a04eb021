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
from .examples import SMOOTHING_AGGREGATIONS
from .expected_gradients import ExpectedGradients
from .grad_cam import GradCam
from .grad_cam_plus_plus import GradCamPlusPlus
from .gradient_x_input import GradientXInput
from .gradients import GradientSaliency, GuidedBackprop
from .guided_grad_cam import GuidedGradCam
from .guided_ig import GuidedIG
from .hires_cam import HiResCam
from .integrated_gradients import IntegratedGradients, IntegratedGradientsOutput
from .integration import INTEGRATION_RULES
from .layer_cam import LayerCam
from .occlusion import Occlusion
from .rise import RISE
from .score_cam import ScoreCam
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
    "SMOOTHING_AGGREGATIONS",
    "RISE",
    "BaselineShapeError",
    "BlurIG",
    "CoreSaliency",
    "ExpectedGradients",
    "GradCam",
    "GradCamPlusPlus",
    "GradientSaliency",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCam",
    "GuidedIG",
    "HiResCam",
    "IntegratedGradients",
    "IntegratedGradientsOutput",
    "LayerCam",
    "MissingKeyError",
    "Occlusion",
    "ScoreCam",
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
