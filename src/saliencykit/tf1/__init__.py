"""Saliency methods for TensorFlow-1-style graphs (placeholders and sessions).

``import saliencykit.tf1 as saliency`` is a drop-in replacement for
``import saliency.tf1 as saliency``: every class takes
``(graph, session, y, x)`` (Grad-CAM also ``conv_layer``), with
``GetMask(x_value, feed_dict=None, ...)`` and ``GetSmoothedMask(x_value,
feed_dict=None, stdev_spread=.15, nsamples=25, magnitude=True, ...)``. The
work is done by the methods of :mod:`saliencykit.core` through
:func:`create_tf1_call_model_function`.

Importing this package imports TensorFlow (``pip install saliencykit[tf1]``);
the graphs run through ``tf.compat.v1``. The session may be a
``tf.compat.v1.Session`` or anything with a ``run`` method (a
``MonitoredSession``, a debugging wrapper, a proxy). The reference's message
constants (``X_SHAPE_ERROR_MESSAGE``, ``Y_SHAPE_ERROR_MESSAGE`` of
:mod:`.base`, ``MISSING_Y_ERROR_MESSAGE``, ``MISSING_CONV_LAYER_ERROR_MESSAGE``
of :mod:`.utils`) are here too.
"""

from ..core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)
from .base import X_SHAPE_ERROR_MESSAGE, Y_SHAPE_ERROR_MESSAGE, TF1CoreSaliency, TF1Saliency
from .blur_ig import BlurIG
from .grad_cam import GradCam
from .gradients import GradientSaliency
from .guided_backprop import GuidedBackprop
from .guided_grad_cam import GuidedGradCam
from .guided_ig import GuidedIG
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .utils import (
    MISSING_CONV_LAYER_ERROR_MESSAGE,
    MISSING_Y_ERROR_MESSAGE,
    GraphFinalizedError,
    MissingTensorError,
    NotDifferentiableError,
    create_tf1_call_model_function,
)
from .visualization import VisualizeImageDiverging, VisualizeImageGrayscale
from .xrai import XRAI, XRAIOutput, XRAIParameters

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GUIDED_INPUT_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "MISSING_CONV_LAYER_ERROR_MESSAGE",
    "MISSING_Y_ERROR_MESSAGE",
    "OUTPUT_LAYER_VALUES",
    "X_SHAPE_ERROR_MESSAGE",
    "Y_SHAPE_ERROR_MESSAGE",
    "BlurIG",
    "GradCam",
    "GradientSaliency",
    "GraphFinalizedError",
    "GuidedBackprop",
    "GuidedGradCam",
    "GuidedIG",
    "IntegratedGradients",
    "MissingTensorError",
    "NotDifferentiableError",
    "Occlusion",
    "TF1CoreSaliency",
    "TF1Saliency",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "XRAI",
    "XRAIOutput",
    "XRAIParameters",
    "create_tf1_call_model_function",
]
