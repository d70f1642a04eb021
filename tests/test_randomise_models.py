"""Randomised copies of PyTorch and Keras models (model-parameter randomisation test, Adebayo et al. 2018).

The copies have exactly the chosen layers re-initialised; the user's model (parameters, gradients,
buffers, train/eval flags, trainable flags) and the global random state are left as they were.
"""

from __future__ import annotations

import numpy as np
import pytest

# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


@pytest.fixture
def torch_net():
    torch = pytest.importorskip("torch")
    from torch import nn

    class Scale(nn.Module):
        """A module with a parameter and no reset_parameters."""

        def __init__(self) -> None:
            super().__init__()
            self.factor = nn.Parameter(torch.linspace(0.5, 1.5, 4 * 4 * 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        Scale(),
        nn.Linear(4 * 4 * 4, 3),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 2.0)
    net.eval()
    net[1].train()  # mixed modes must survive
    net(torch.rand(2, 3, 8, 8)).sum().backward()  # and gradients
    return net


def torch_state(net) -> dict:
    return {
        "tensors": {name: value.detach().clone() for name, value in net.state_dict(keep_vars=True).items()},
        "grads": {name: p.grad.clone() for name, p in net.named_parameters()},
        "modes": {name: module.training for name, module in net.named_modules()},
    }


def assert_torch_state(net, state: dict) -> None:
    import torch

    now = torch_state(net)
    assert now["modes"] == state["modes"]
    for key in ("tensors", "grads"):
        assert now[key].keys() == state[key].keys()
        for name, value in state[key].items():
            assert torch.equal(now[key][name], value), name


def changed_modules(original, copy) -> list[str]:
    """The names of the modules whose own parameters differ between the two models."""
    import torch

    copies = dict(copy.named_modules())
    return [
        name
        for name, module in original.named_modules()
        if any(
            not torch.equal(parameter, getattr(copies[name], key))
            for key, parameter in module.named_parameters(recurse=False)
        )
    ]


def test_torch_default_layers_from_the_top(torch_net) -> None:
    from saliencykit.torch import randomisation_layers

    assert randomisation_layers(torch_net) == ["7", "6", "3", "1", "0"]


def test_torch_cascading_and_independent_copies(torch_net) -> None:
    import torch

    from saliencykit.torch import make_call_model_function, randomised_models

    before = torch_state(torch_net)
    rng_state = torch.get_rng_state()
    layers = ["7", "6", "3", "1"]
    cascading = list(randomised_models(torch_net, layers, seed=4))
    independent = list(randomised_models(torch_net, layers, mode="independent", seed=4))
    assert [name for name, _ in cascading] == layers == [name for name, _ in independent]
    for step, ((_, cascaded), (_, alone)) in enumerate(zip(cascading, independent, strict=True)):
        assert changed_modules(torch_net, cascaded) == sorted(layers[: step + 1])
        assert changed_modules(torch_net, alone) == [layers[step]]
        # The layer gets the same random weights in both modes.
        for key, value in alone.get_submodule(layers[step]).named_parameters():
            assert torch.equal(value, cascaded.get_submodule(layers[step]).get_parameter(key))
        assert all(parameter.grad is None for parameter in cascaded.parameters())
    assert len({id(model) for _, model in cascading}) == len(layers)
    assert_torch_state(torch_net, before)
    assert torch.equal(torch.get_rng_state(), rng_state)
    # A randomised model gives another answer.
    x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    key = ["OUTPUT_LAYER_VALUES"]
    trained = make_call_model_function(torch_net, 0)(x, expected_keys=key)[key[0]]
    randomised = make_call_model_function(cascading[0][1], 0)(x, expected_keys=key)[key[0]]
    assert not np.allclose(trained, randomised)
    assert_torch_state(torch_net, before)


def test_torch_initialisation_rules(torch_net) -> None:
    import torch

    from saliencykit.torch import randomised_copy

    copy = randomised_copy(torch_net, [torch_net[0], "1", "6"], seed=1)
    # reset_parameters: a convolution's kaiming-uniform bound, a batch norm's ones, zeros and statistics.
    bound = 1 / np.sqrt(3 * 3 * 3)
    assert float(copy[0].weight.detach().abs().max()) <= bound and not torch.equal(
        copy[0].weight, torch_net[0].weight
    )
    assert torch.equal(copy[1].weight, torch.ones(4)) and torch.equal(copy[1].running_var, torch.ones(4))
    assert torch.equal(copy[1].running_mean, torch.zeros(4))
    # No reset_parameters: a normal draw with the trained values' mean and standard deviation.
    factor = copy[6].factor.detach()
    assert not torch.equal(factor, torch_net[6].factor)
    assert abs(float(factor.mean()) - 1.0) < 0.15 and 0.15 < float(factor.std()) < 0.45
    assert copy[1].training and not copy[0].training  # the modes are copied


def test_torch_seeds(torch_net) -> None:
    import torch

    from saliencykit.torch import randomised_copy

    first = randomised_copy(torch_net, "7", seed=3)
    assert torch.equal(first[7].weight, randomised_copy(torch_net, ["7"], seed=3)[7].weight)
    assert not torch.equal(first[7].weight, randomised_copy(torch_net, "7", seed=4)[7].weight)
    assert not torch.equal(
        randomised_copy(torch_net, "7")[7].weight, randomised_copy(torch_net, "7")[7].weight
    )


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"layers": ["8"]}, ValueError, "layer '8' is not a module of the model"),
        ({"layers": ["2"]}, ValueError, "layer '2' has no parameters to randomise"),
        ({"layers": []}, ValueError, "layers must be a non-empty sequence"),
        ({"layers": [3]}, TypeError, "layer must be an nn.Module of the model or its name"),
        ({"seed": -1}, ValueError, "seed must be None or an integer >= 0"),
        ({"seed": 1.0}, TypeError, "seed must be None or an integer >= 0"),
        ({"mode": "top-down"}, ValueError, r"mode must be one of \('cascading', 'independent'\)"),
    ],
)
def test_torch_bad_input(torch_net, arguments, error, match) -> None:
    from saliencykit.torch import randomised_models

    arguments = {"layers": ["7"], **arguments}
    with pytest.raises(error, match=match):
        randomised_models(torch_net, arguments.pop("layers"), **arguments)


def test_torch_not_a_module() -> None:
    pytest.importorskip("torch")
    from saliencykit.torch import randomisation_layers, randomised_copy

    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        randomised_copy("net", ["fc"])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        randomisation_layers(None)


# --------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras adapter needs the TensorFlow backend")
    return keras


@pytest.fixture
def keras_net(keras):
    class Scale(keras.layers.Layer):
        """A layer whose weight has no ``<name>_initializer`` attribute."""

        def build(self, input_shape):
            self.factor = self.add_weight(name="factor", shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.factor

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = Scale(name="scale")(x)
    head = keras.Sequential(
        [keras.layers.Dense(6, name="dense1"), keras.layers.Dense(3, name="dense2")], name="head"
    )
    model = keras.Model(inputs, head(x))
    rng = np.random.default_rng(0)
    model.set_weights(
        [value + rng.normal(size=value.shape).astype(value.dtype) for value in model.get_weights()]
    )
    bn = model.get_layer("bn")  # "trained" statistics: a positive variance
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=4).astype(np.float32))
    model.get_layer("conv").trainable = False
    return model


def keras_weights(model) -> list[np.ndarray]:
    return [np.array(value) for value in model.get_weights()]


def layer_of(model, name: str):
    return model.get_layer("head").get_layer(name) if name.startswith("dense") else model.get_layer(name)


def changed_layers(original, copy) -> list[str]:
    changed = []
    for layer in original.get_layer("head").layers + original.layers:
        if not layer.weights or layer.name == "head":
            continue
        other = layer_of(copy, layer.name)
        if any(
            not np.array_equal(a, b) for a, b in zip(layer.get_weights(), other.get_weights(), strict=True)
        ):
            changed.append(layer.name)
    return sorted(changed)


def test_keras_default_layers_from_the_top(keras_net) -> None:
    from saliencykit.keras import randomisation_layers

    assert randomisation_layers(keras_net) == ["dense2", "dense1", "scale", "depthwise", "bn", "conv"]


def test_keras_cascading_and_independent_copies(keras, keras_net) -> None:
    from saliencykit.keras import randomised_models

    weights = keras_weights(keras_net)
    flags = {layer.name: layer.trainable for layer in keras_net.layers}
    x = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    outputs = np.asarray(keras_net(x))
    layers = ["dense2", "scale", "depthwise", "bn"]
    cascading = list(randomised_models(keras_net, layers, seed=2))
    independent = list(randomised_models(keras_net, layers, mode="independent", seed=2))
    for step, ((name, cascaded), (_, alone)) in enumerate(zip(cascading, independent, strict=True)):
        assert name == layers[step]
        assert changed_layers(keras_net, cascaded) == sorted(layers[: step + 1])
        assert changed_layers(keras_net, alone) == [layers[step]]
        # The layer gets the same random weights in both modes.
        for a, b in zip(
            layer_of(alone, name).get_weights(), layer_of(cascaded, name).get_weights(), strict=True
        ):
            assert np.array_equal(a, b)
        assert not np.allclose(np.asarray(cascaded(x)), outputs)
    for a, b in zip(keras_weights(keras_net), weights, strict=True):
        assert np.array_equal(a, b)
    assert {layer.name: layer.trainable for layer in keras_net.layers} == flags
    np.testing.assert_array_equal(np.asarray(keras_net(x)), outputs)


def test_keras_initialisation_rules(keras, keras_net) -> None:
    from saliencykit.keras import randomised_copy

    copy = randomised_copy(keras_net, ["conv", "bn", "scale", "depthwise"], seed=5)
    kernel, bias = copy.get_layer("conv").get_weights()
    limit = np.sqrt(6 / (3 * 3 * 3 + 3 * 3 * 4))  # Glorot uniform
    assert np.abs(kernel).max() <= limit and np.array_equal(bias, np.zeros(4))
    gamma, beta, mean, variance = copy.get_layer("bn").get_weights()
    assert np.array_equal(gamma, np.ones(4)) and np.array_equal(variance, np.ones(4))
    assert np.array_equal(beta, np.zeros(4)) and np.array_equal(mean, np.zeros(4))
    depthwise = copy.get_layer("depthwise").get_weights()[0]
    assert not np.array_equal(depthwise, keras_net.get_layer("depthwise").get_weights()[0])
    trained = keras_net.get_layer("scale").get_weights()[0]
    drawn = copy.get_layer("scale").get_weights()[0]
    assert not np.array_equal(drawn, trained)
    assert abs(drawn.mean() - trained.mean()) < 0.3 and 0.6 < drawn.std() / trained.std() < 1.4
    again = randomised_copy(keras_net, ["conv", "bn", "scale", "depthwise"], seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(keras_weights(copy), keras_weights(again), strict=True))
    other = randomised_copy(keras_net, ["conv"], seed=6)
    assert not np.array_equal(other.get_layer("conv").get_weights()[0], kernel)
    assert copy.get_layer("conv").trainable is False  # flags are copied


def test_keras_bad_input(keras, keras_net) -> None:
    from saliencykit.keras import randomisation_layers, randomised_copy, randomised_models

    with pytest.raises(ValueError, match="layer 'dense3' is not a layer of the model"):
        randomised_copy(keras_net, ["dense3"])
    with pytest.raises(ValueError, match="layer 'relu' has no weights to randomise"):
        randomised_copy(keras_net, "relu")
    with pytest.raises(ValueError, match="mode must be one of"):
        randomised_models(keras_net, mode="bottom-up")
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0"):
        randomised_models(keras_net, seed=-3)
    with pytest.raises(TypeError, match="model must be a keras.Model, got int"):
        randomisation_layers(3)
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="model has no weights: build it first"):
        randomised_copy(unbuilt, ["dense"])

    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3, name="dense")

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="cannot copy model .* with keras.models.clone_model"):
        randomised_copy(subclassed, ["dense"])


def test_keras_copies_through_the_adapter_into_the_metric(keras, keras_net) -> None:
    import saliencykit.core as saliency
    from saliencykit.keras import make_call_model_function, randomised_models
    from saliencykit.metrics.randomisation import compute_model_randomisation

    layers = ["dense2", "dense1"]
    calls = [make_call_model_function(keras_net, 0)] + [
        make_call_model_function(copy, 0) for _, copy in randomised_models(keras_net, layers, seed=0)
    ]
    image = np.random.default_rng(2).random((8, 8, 3), dtype=np.float32)
    result = compute_model_randomisation(saliency.GradientSaliency(), image, calls, layers)
    assert result.layer_names == layers and np.all(np.isfinite(result.rank_correlation))
    assert np.all(result.rank_correlation_abs < 0.99)
