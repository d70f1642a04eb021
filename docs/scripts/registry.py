"""The methods the documentation site shows: one entry per method page.

Both the figure script (``docs/scripts/make_figures.py``) and the site's build
hooks (``docs/scripts/hooks.py``) read this list, so adding a method to the
site is three small steps:

1. an entry below (its class, its page, the variants its figure shows side by
   side: usually the main parameter at three values);
2. its page, ``docs/methods/<slug>.md`` (what it computes, when to use it, its
   cost, its paper; the hooks fill in the figure, the parameter table from the
   ``GetMask`` docstring, and the model inputs of each variant);
3. ``python docs/scripts/make_figures.py --methods <slug>`` to draw its figure.

An entry whose class is not (yet) in :mod:`saliencykit.core` is skipped by the
figure script, and its page says that the figure is missing instead of showing
a broken image. Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The pretrained model's Grad-CAM layers shown side by side: the last one (7 x 7, 1280 channels),
#: a middle block (14 x 14, 112 channels) and an early one (28 x 28, 40 channels).
LAST_LAYER = "_bn1"
MIDDLE_LAYER = "_blocks.10"
EARLY_LAYER = "_blocks.4"

#: Nav groups, in order.
GROUPS = ("Gradients", "Path integrals", "Class activation maps", "Perturbation", "Regions")


@dataclass(frozen=True)
class Variant:
    """One column of a method's figure: a label and what differs from the entry's defaults.

    Attributes:
      label: the column's title (``"x_steps=25"``).
      kwargs: keyword arguments of ``GetMask`` (or ``GetSmoothedMask``).
      layer: the Grad-CAM layer of the call model function (``None``: the entry's).
      class_name: another class of :mod:`saliencykit.core` (a comparison column).
      smoothed: run ``GetSmoothedMask`` (``None``: the entry's choice).
      display: ``"grayscale"``, ``"diverging"`` or ``"heatmap"`` (``None``: the entry's).
      cost_kwargs: what ``n_model_inputs`` needs beyond ``kwargs`` to count the model inputs
        (Score-CAM: the layer's ``layer_channels``).
    """

    label: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    class_name: str | None = None
    smoothed: bool | None = None
    display: str | None = None
    cost_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One method page of the site.

    Attributes:
      slug: the page is ``methods/<slug>.md``, the figure ``figures/methods/<slug>.jpg``.
      title: the page's title.
      class_name: the class in :mod:`saliencykit.core`.
      group: the nav group (one of :data:`GROUPS`).
      paper: the paper, as cited on the page.
      variants: the figure's columns (after the photo).
      display: how maps are drawn (see :class:`Variant`).
      layer: the Grad-CAM layer of the call model function, for methods that need one.
      smoothed: run ``GetSmoothedMask`` (SmoothGrad) instead of ``GetMask``.
      arguments: turns a variant's flat keyword arguments into ``GetMask``'s
        (XRAI takes its steps in an ``XRAIParameters``).
      references: scikit-image photos (names of ``skimage.data``) given as the method's
        ``references`` (a baseline distribution, Expected Gradients), at the figure's size.
      requires: the names this entry needs beyond ``class_name``, checked by
        :func:`is_available` (``"GetSmoothedMask.aggregation"``: a keyword of a
        method of the class).
      issue: the issue that adds the class, while it may be missing.
    """

    slug: str
    title: str
    class_name: str
    group: str
    paper: str
    variants: tuple[Variant, ...]
    display: str = "grayscale"
    layer: str | None = None
    smoothed: bool = False
    arguments: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    references: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    issue: int | None = None

    @property
    def page(self) -> str:
        """The page's path inside ``docs/``."""
        return f"methods/{self.slug}.md"

    @property
    def figure(self) -> str:
        """The figure's path inside ``docs/``."""
        return f"figures/methods/{self.slug}.jpg"

    def method_kwargs(self, variant: Variant) -> dict[str, Any]:
        """The keyword arguments the variant's ``GetMask`` (``GetSmoothedMask``) call gets."""
        kwargs = dict(variant.kwargs)
        return self.arguments(kwargs) if self.arguments is not None else kwargs


def _xrai_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """XRAI's ``steps`` and ``algorithm`` go in an ``XRAIParameters``."""
    from saliencykit.core import XRAIParameters

    options = dict(kwargs)
    extra = XRAIParameters(steps=options.pop("steps", 100), algorithm=options.pop("algorithm", "full"))
    return {**options, "extra_parameters": extra}


def _layers(steps: Mapping[str, Any] | None = None) -> tuple[Variant, ...]:
    """The three Grad-CAM layers side by side."""
    kwargs = dict(steps or {})
    return (
        Variant(f"layer {EARLY_LAYER} (28x28)", kwargs, layer=EARLY_LAYER),
        Variant(f"layer {MIDDLE_LAYER} (14x14)", kwargs, layer=MIDDLE_LAYER),
        Variant(f"layer {LAST_LAYER} (7x7)", kwargs, layer=LAST_LAYER),
    )


METHODS: tuple[Method, ...] = (
    Method(
        "vanilla-gradients",
        "Vanilla gradients",
        "GradientSaliency",
        "Gradients",
        "Simonyan, Vedaldi and Zisserman 2013, *Deep Inside Convolutional Networks*, arXiv:1312.6034",
        (
            Variant("signed gradient", display="diverging"),
            Variant("|gradient| (grayscale)"),
        ),
    ),
    Method(
        "smoothgrad",
        "SmoothGrad",
        "GradientSaliency",
        "Gradients",
        "Smilkov, Thorat, Kim, Viégas and Wattenberg 2017, *SmoothGrad: removing noise by adding noise*, "
        "arXiv:1706.03825",
        tuple(
            Variant(
                f"stdev_spread={spread}",
                {"stdev_spread": spread, "nsamples": 25, "batch_size": 25, "seed": 0},
            )
            for spread in (0.05, 0.15, 0.3)
        ),
        smoothed=True,
    ),
    Method(
        "smoothgrad-aggregation",
        "SmoothGrad variants: SmoothGrad², VarGrad",
        "GradientSaliency",
        "Gradients",
        "Smilkov et al. 2017, arXiv:1706.03825; Adebayo et al. 2018, *Local Explanation Methods for Deep "
        "Neural Networks Lack Sensitivity to Parameter Values*, arXiv:1810.03307 (VarGrad)",
        tuple(
            Variant(
                f'aggregation="{aggregation}"',
                {"aggregation": aggregation, "nsamples": 25, "batch_size": 25, "seed": 0},
            )
            for aggregation in ("mean", "square", "variance")
        ),
        smoothed=True,
        requires=("GetSmoothedMask.aggregation",),
        issue=17,
    ),
    Method(
        "gradient-x-input",
        "Gradient × Input",
        "GradientXInput",
        "Gradients",
        "Shrikumar, Greenside, Shcherbina and Kundaje 2016, *Not Just a Black Box*, arXiv:1605.01713",
        (
            Variant("gradient (comparison)", class_name="GradientSaliency", display="diverging"),
            Variant("gradient × input", display="diverging"),
            Variant("|gradient × input|"),
        ),
        issue=17,
    ),
    Method(
        "guided-backprop",
        "Guided Backprop",
        "GuidedBackprop",
        "Gradients",
        "Springenberg, Dosovitskiy, Brox and Riedmiller 2014, *Striving for Simplicity: The All "
        "Convolutional Net*, arXiv:1412.6806",
        (
            Variant("vanilla gradient (comparison)", class_name="GradientSaliency"),
            Variant("Guided Backprop"),
            Variant(
                "Guided Backprop + SmoothGrad",
                {"nsamples": 10, "batch_size": 10, "seed": 0},
                smoothed=True,
            ),
        ),
    ),
    Method(
        "integrated-gradients",
        "Integrated Gradients",
        "IntegratedGradients",
        "Path integrals",
        "Sundararajan, Taly and Yan 2017, *Axiomatic Attribution for Deep Networks*, arXiv:1703.01365",
        tuple(Variant(f"x_steps={steps}", {"x_steps": steps, "batch_size": 25}) for steps in (5, 25, 100)),
    ),
    Method(
        "expected-gradients",
        "Expected Gradients",
        "ExpectedGradients",
        "Path integrals",
        "Erion, Janizek, Sturmfels, Lundberg and Lee 2021, *Improving performance of deep learning models "
        "with axiomatic attribution priors and expected gradients*, Nature Machine Intelligence 3, "
        "arXiv:1906.10670",
        tuple(
            Variant(f"n_samples={n}", {"n_samples": n, "batch_size": 25, "seed": 0}) for n in (10, 50, 200)
        ),
        references=("astronaut", "rocket", "clock", "immunohistochemistry", "hubble_deep_field", "coins"),
        issue=17,
    ),
    Method(
        "blur-ig",
        "Blur IG",
        "BlurIG",
        "Path integrals",
        "Xu, Venugopalan and Sundararajan 2020, *Attribution in Scale and Space*, CVPR, arXiv:2004.03383",
        tuple(
            Variant(f"max_sigma={sigma}", {"max_sigma": sigma, "steps": 25, "batch_size": 25})
            for sigma in (10, 50, 150)
        ),
    ),
    Method(
        "guided-ig",
        "Guided IG",
        "GuidedIG",
        "Path integrals",
        "Kapishnikov, Venugopalan, Avci, Wedin, Terry and Birdal 2021, *Guided Integrated Gradients: an "
        "Adaptive Path Method for Removing Noise*, CVPR, arXiv:2106.09788",
        tuple(
            Variant(label, {"x_steps": 50, "fraction": 0.25, "max_dist": dist})
            for label, dist in (("max_dist=0 (= IG)", 0.0), ("max_dist=0.02", 0.02), ("max_dist=0.1", 0.1))
        ),
    ),
    Method(
        "grad-cam",
        "Grad-CAM",
        "GradCam",
        "Class activation maps",
        "Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra 2017, *Grad-CAM: Visual Explanations from "
        "Deep Networks via Gradient-based Localization*, ICCV, arXiv:1610.02391",
        _layers(),
        display="heatmap",
        layer=LAST_LAYER,
    ),
    Method(
        "guided-grad-cam",
        "Guided Grad-CAM",
        "GuidedGradCam",
        "Class activation maps",
        "Selvaraju et al. 2017, arXiv:1610.02391 (section 3.2)",
        _layers(),
        layer=LAST_LAYER,
    ),
    Method(
        "grad-cam-plus-plus",
        "Grad-CAM++",
        "GradCamPlusPlus",
        "Class activation maps",
        "Chattopadhay, Sarkar, Howlader and Balasubramanian 2018, *Grad-CAM++: Generalized Gradient-based "
        "Visual Explanations for Deep Convolutional Networks*, WACV, arXiv:1710.11063",
        _layers(),
        display="heatmap",
        layer=LAST_LAYER,
        issue=17,
    ),
    Method(
        "layer-cam",
        "Layer-CAM",
        "LayerCam",
        "Class activation maps",
        "Jiang, Zhang, Hou, Cheng and Wei 2021, *LayerCAM: Exploring Hierarchical Class Activation Maps "
        "for Localization*, IEEE Transactions on Image Processing 30",
        _layers(),
        display="heatmap",
        layer=LAST_LAYER,
        issue=17,
    ),
    Method(
        "hires-cam",
        "HiRes-CAM",
        "HiResCam",
        "Class activation maps",
        "Draelos and Carin 2020, *Use HiResCAM instead of Grad-CAM for faithful explanations of "
        "convolutional neural networks*, arXiv:2011.08891",
        _layers(),
        display="heatmap",
        layer=LAST_LAYER,
        issue=17,
    ),
    Method(
        "score-cam",
        "Score-CAM",
        "ScoreCam",
        "Class activation maps",
        "Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu 2020, *Score-CAM: Score-Weighted Visual "
        "Explanations for Convolutional Neural Networks*, CVPR workshops, arXiv:1910.01279",
        (
            Variant(
                f"{MIDDLE_LAYER}, 112 channels",
                {"batch_size": 64},
                layer=MIDDLE_LAYER,
                cost_kwargs={"layer_channels": 112},
            ),
            Variant(
                f"{LAST_LAYER}, top_k=128",
                {"batch_size": 64, "top_k": 128},
                layer=LAST_LAYER,
                cost_kwargs={"layer_channels": 1280},
            ),
            Variant(
                f"{LAST_LAYER}, 1280 channels",
                {"batch_size": 64},
                layer=LAST_LAYER,
                cost_kwargs={"layer_channels": 1280},
            ),
        ),
        display="heatmap",
        layer=LAST_LAYER,
        issue=17,
    ),
    Method(
        "occlusion",
        "Occlusion",
        "Occlusion",
        "Perturbation",
        "Zeiler and Fergus 2014, *Visualizing and Understanding Convolutional Networks*, ECCV, "
        "arXiv:1311.2901",
        tuple(
            Variant(f"size={size}, stride={size // 2}", {"size": size, "stride": size // 2, "batch_size": 64})
            for size in (16, 32, 64)
        ),
        display="diverging",
    ),
    Method(
        "rise",
        "RISE",
        "RISE",
        "Perturbation",
        "Petsiuk, Das and Saenko 2018, *RISE: Randomized Input Sampling for Explanation of Black-box "
        "Models*, BMVC, arXiv:1806.07421",
        tuple(
            Variant(f"n_masks={n}", {"n_masks": n, "p_keep": 0.5, "batch_size": 64, "seed": 0})
            for n in (250, 1000, 2000)
        ),
        display="heatmap",
        issue=17,
    ),
    Method(
        "xrai",
        "XRAI",
        "XRAI",
        "Regions",
        "Kapishnikov, Bolukbasi, Viégas and Terry 2019, *XRAI: Better Attributions Through Regions*, "
        "ICCV, arXiv:1906.02825",
        (
            Variant('algorithm="full"', {"steps": 25, "batch_size": 25, "algorithm": "full"}),
            Variant('algorithm="fast"', {"steps": 25, "batch_size": 25, "algorithm": "fast"}),
        ),
        display="heatmap",
        arguments=_xrai_arguments,
    ),
)

#: The entries by slug.
BY_SLUG: dict[str, Method] = {method.slug: method for method in METHODS}


def method_class(name: str) -> type | None:
    """The class ``saliencykit.core.<name>``, or ``None`` while it does not exist."""
    import saliencykit.core

    found = getattr(saliencykit.core, name, None)
    return found if isinstance(found, type) else None


def is_available(method: Method) -> bool:
    """Whether the library has what the entry needs: its classes and its ``requires``."""
    classes = {method.class_name} | {v.class_name for v in method.variants if v.class_name}
    if any(method_class(name) is None for name in classes):
        return False
    for requirement in method.requires:
        function_name, _, keyword = requirement.partition(".")
        function = getattr(method_class(method.class_name), function_name, None)
        if function is None or keyword not in inspect.signature(function).parameters:
            return False
    return True
