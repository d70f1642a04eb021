"""Keys, the ``CoreSaliency`` base class, output checks and the scheduler of model calls.

The pieces live in their own files and are importable from here too: the
argument checks in :mod:`.arguments`, the keys and answer checks in
:mod:`.model_calls`, the scheduler in :mod:`.scheduler`, and the handling of
many examples (per-example arguments, seeds, SmoothGrad samples) in
:mod:`.examples`. This file holds :class:`CoreSaliency`.

Every method in :mod:`saliencykit.core` talks to the model only through this
module. A method's computation of one mask is a generator (:data:`Steps`)
that yields :class:`Request` objects (inputs to evaluate, built lazily, and
how to use the answers) or :class:`Fork` objects (child computations, such as
SmoothGrad's noisy samples); :func:`run_steps` runs many such computations and
packs their requests into shared calls of at most ``batch_size`` inputs,
checking every answer once with :func:`check_call_model_output`.
``GetMask`` is a batch of one and ``GetMaskBatch`` a batch of many, so a
method file holds nothing but its mathematics, once. :func:`call_model` (one
call) and :func:`call_model_in_batches` (one input sequence in calls of
``batch_size``) remain for code that calls a model directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# The argument checks, importable from here as before they moved to .arguments.
from .arguments import MAX_MODEL_EVALUATIONS as MAX_MODEL_EVALUATIONS
from .arguments import BaselineShapeError as BaselineShapeError
from .arguments import as_float_array as as_float_array
from .arguments import baseline_like as baseline_like
from .arguments import check_evaluation_count as check_evaluation_count
from .arguments import check_int as check_int
from .arguments import check_number as check_number
from .arguments import make_rng as make_rng

# The parts of this module that live in their own files (.examples, .model_calls,
# .scheduler), importable from here.
from .examples import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from .examples import SMOOTHING_AGGREGATIONS as SMOOTHING_AGGREGATIONS
from .examples import NoiseSource as NoiseSource
from .examples import _noisy_samples as _noisy_samples
from .examples import _SmoothedSum as _SmoothedSum
from .examples import _smoothing_setup as _smoothing_setup
from .examples import batch_examples as batch_examples
from .examples import example_seeds as example_seeds
from .examples import packed_samples_steps
from .examples import per_example_values as per_example_values
from .examples import resolve_call_model_args as resolve_call_model_args
from .examples import smoothing_aggregation as smoothing_aggregation
from .model_calls import CONVOLUTION_LAYER_VALUES as CONVOLUTION_LAYER_VALUES
from .model_calls import CONVOLUTION_OUTPUT_GRADIENTS as CONVOLUTION_OUTPUT_GRADIENTS
from .model_calls import FULL_SHAPE_KEYS as FULL_SHAPE_KEYS
from .model_calls import GUIDED_INPUT_OUTPUT_GRADIENTS as GUIDED_INPUT_OUTPUT_GRADIENTS
from .model_calls import INPUT_OUTPUT_GRADIENTS as INPUT_OUTPUT_GRADIENTS
from .model_calls import OUTPUT_LAYER_VALUES as OUTPUT_LAYER_VALUES
from .model_calls import RETURN_NUMPY_HINT as RETURN_NUMPY_HINT
from .model_calls import SHAPE_ERROR_MESSAGE as SHAPE_ERROR_MESSAGE
from .model_calls import CallModelFunction as CallModelFunction
from .model_calls import MissingKeyError as MissingKeyError
from .model_calls import call_model as call_model
from .model_calls import call_model_in_batches as call_model_in_batches
from .model_calls import call_model_in_batches_with_extra as call_model_in_batches_with_extra
from .model_calls import check_call_model_output as check_call_model_output
from .model_calls import scalar_outputs as scalar_outputs
from .scheduler import Fork as Fork
from .scheduler import Request as Request
from .scheduler import Steps as Steps
from .scheduler import run_steps as run_steps
from .scheduler import same_call_model_args as same_call_model_args

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GUIDED_INPUT_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "MAX_MODEL_EVALUATIONS",
    "OUTPUT_LAYER_VALUES",
    "SMOOTHING_AGGREGATIONS",
    "BaselineShapeError",
    "CoreSaliency",
    "Fork",
    "MissingKeyError",
    "Request",
    "Steps",
    "call_model",
    "call_model_in_batches",
    "call_model_in_batches_with_extra",
    "check_call_model_output",
    "run_steps",
    "scalar_outputs",
]


class CoreSaliency:
    """Base class of every saliency method. Alone, it computes nothing.

    ``call_model_function(x_value_batch, call_model_args=None,
    expected_keys=None)`` receives a batch (dimension 0 is the batch) and
    returns a dict with the asked-for keys:

    - ``INPUT_OUTPUT_GRADIENTS``: gradients of the explained output with
      respect to the input, the batch's exact shape;
    - ``GUIDED_INPUT_OUTPUT_GRADIENTS``: the same with guided backpropagation;
    - ``OUTPUT_LAYER_VALUES``: the explained output, one entry per example;
    - ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``: a conv
      layer's activations and the output's gradients with respect to them,
      channel-last, one entry per example.

    A method says what callers (the command line, a progress bar, a check
    that a model can serve it) need to know about it, so that they ask
    instead of knowing:

    - ``expected_keys`` (class attribute): the keys :meth:`GetMask` asks
      ``call_model_function`` for;
    - :meth:`n_model_inputs`: how many inputs :meth:`GetMask` sends to
      ``call_model_function`` for given parameters
      (:meth:`n_smoothed_model_inputs` for :meth:`GetSmoothedMask`).

    How a method computes: its mathematics for one input is one generator,
    ``_mask_steps(x_value, **parameters)`` (:data:`Steps`), that yields
    :class:`Request` objects (the inputs it needs evaluated and how it uses
    the answers) and returns the mask; it never calls the model. :func:`run_steps`
    runs such computations and packs their requests into calls. :meth:`GetMask`
    is the batch of one; :meth:`GetMaskBatch` runs many examples, their
    evaluations sharing calls; :meth:`GetSmoothedMask` and
    :meth:`GetSmoothedMaskBatch` fork one computation per noisy sample.
    ``_mask_steps`` takes :meth:`GetMask`'s parameters after
    ``call_model_args``, less ``batch_size``. A class that implements only
    :meth:`GetMask` (as code written for the reference does) still gets
    SmoothGrad and the batch methods, one :meth:`GetMask` call per sample or
    example.
    """

    expected_keys: Sequence[str] = ()

    #: :meth:`GetMask` parameters that :meth:`GetMaskBatch` takes per example:
    #: an array ``[N, *x_shape]`` (one per example) or of the example's shape
    #: (the same for all); see :meth:`_split_argument`.
    per_example_arguments: tuple[str, ...] = ()

    #: Whether :meth:`GetSmoothedMask` packs its noisy samples into calls of
    #: ``batch_size`` (methods of one model input per mask, whose own
    #: ``batch_size`` has nothing else to group); otherwise it runs one sample
    #: after the other with ``batch_size`` grouping each sample's evaluations,
    #: as the reference does.
    smoothing_packs_samples: bool = False

    # The base signatures end in ``*args: Any, **kwargs: Any``: every method
    # has its own parameters after ``call_model_args`` (the reference API).

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the saliency mask of the single, un-batched ``x_value``."""
        raise NotImplementedError("A derived class should implement GetMask()")

    def _mask_steps(self, x_value: Any, *args: Any, **parameters: Any) -> Steps:
        """The method's computation of one mask (see the class docstring); none here."""
        raise NotImplementedError("A derived class should implement GetMask()")

    def _has_steps(self) -> bool:
        """Whether ``_mask_steps`` computes what :meth:`GetMask` returns.

        False for a class without ``_mask_steps``, or one that overrides
        :meth:`GetMask` below the class that defines ``_mask_steps``: its
        ``GetMask`` is then called once per mask.
        """
        mro = type(self).__mro__
        steps_owner = next(kind for kind in mro if "_mask_steps" in vars(kind))
        mask_owner = next(kind for kind in mro if "GetMask" in vars(kind))
        return steps_owner is not CoreSaliency and issubclass(steps_owner, mask_owner)

    def _run_one(
        self,
        steps: Steps,
        x_value: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        batch_size: int,
    ) -> Any:
        """Runs one computation (a batch of one) and returns its result."""
        batch_size = check_int("batch_size", batch_size)
        if hasattr(call_model_function, "resolve_call_model_args"):
            resolved = resolve_call_model_args(
                call_model_function, np.asarray(x_value)[None], [call_model_args], batch_size
            )
            call_model_args = resolved[0]
        return run_steps(call_model_function, [steps], [call_model_args], batch_size)[0]

    def _mask_parameters(self, kwargs: Mapping[str, Any], caller: str) -> tuple[dict[str, Any], Any]:
        """Binds ``kwargs`` to :meth:`GetMask`'s parameters after ``call_model_args``, defaults filled in.

        Returns:
          ``(parameters, batch_size)``: the parameters less ``batch_size``, and
          ``batch_size`` (``None`` when :meth:`GetMask` has none and it was not given).

        Raises:
          TypeError: a parameter :meth:`GetMask` does not take.
        """
        signature = inspect.signature(self.GetMask)
        try:
            bound = signature.bind(None, None, None, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}.{caller}: {error}") from None
        bound.apply_defaults()
        names = list(signature.parameters)[:3]
        parameters: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name in names:
                continue
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                parameters.update(value)
            else:
                parameters[name] = value
        return parameters, parameters.pop("batch_size", None)

    def _split_argument(
        self, name: str, value: Any, n_examples: int, x_shape: tuple[int, ...]
    ) -> list[Any] | None:
        """One ``value`` per example (a list of ``n_examples``), or None when it is the same for all.

        The rule for an argument of the example's shape (a baseline): ``None``
        or an array of ``x_shape`` is the same for every example;
        ``[n_examples, *x_shape]`` is one per example.

        Raises:
          BaselineShapeError: (a ``ValueError``) any other shape.
        """
        if value is None:
            return None
        array = np.asarray(value)
        if array.shape == tuple(x_shape):
            return None
        if array.shape == (n_examples, *x_shape):
            return list(array)
        raise BaselineShapeError(
            f"{name} must have the shape of one example {tuple(x_shape)} (the same for every example) "
            f"or {(n_examples, *x_shape)} (one per example), got {array.shape}"
        )

    def _run_batch(
        self,
        caller: str,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        batch_size: int,
        kwargs: Mapping[str, Any],
        make_steps: Callable[..., Steps],
        one_by_one: Callable[[int, Any, Any], Any],
    ) -> list[Any]:
        """Checks a batch's arguments and runs one computation per example (see :meth:`GetMaskBatch`).

        ``make_steps(index, x_value, **parameters)`` gives example ``index``'s
        computation; a class without ``_mask_steps`` calls
        ``one_by_one(index, x_value, call_model_args)`` for each example instead.

        Returns:
          One result per example, in order.
        """
        examples, x_shape = batch_examples(x_values)
        n_examples = len(examples)
        batch_size = check_int("batch_size", batch_size)
        example_args = per_example_values("call_model_args", call_model_args, n_examples)
        if not self._has_steps():
            return [one_by_one(index, examples[index], example_args[index]) for index in range(n_examples)]
        parameters, _ = self._mask_parameters(kwargs, caller)
        split = {}
        for name in self.per_example_arguments:
            values = self._split_argument(name, parameters.get(name), n_examples, x_shape)
            if values is not None:
                split[name] = values
        example_args = resolve_call_model_args(call_model_function, x_values, example_args, batch_size)

        def computations() -> Iterator[Steps]:
            for index in range(n_examples):
                own = {name: values[index] for name, values in split.items()}
                yield make_steps(index, examples[index], **{**parameters, **own})

        return run_steps(call_model_function, computations(), example_args, batch_size)

    def GetMaskBatch(  # noqa: N802
        self,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the masks of many examples, their model evaluations packed into shared calls.

        Each mask equals :meth:`GetMask` on that example (up to floating-point
        rounding: the model sees other batches). The evaluations of all
        examples go to ``call_model_function`` in calls of at most
        ``batch_size`` inputs: a call is filled across example boundaries
        (for IG, ``ceil(N * x_steps / batch_size)`` calls instead of ``N *
        ceil(x_steps / batch_size)``); sequential methods (Guided IG) send
        step ``k`` of up to ``batch_size`` examples in one call.

        Memory stays bounded by about ``batch_size`` inputs (and the state of
        about ``batch_size`` examples in flight) whatever N is: inputs are
        built lazily, one call's worth at a time, and examples start only
        when a call has room for them. The output, ``[N, ...]``, is the only
        thing that grows with N.

        Args:
          x_values: the examples: an array ``[N, ...]`` or a list or tuple of N
            arrays of one shape (converted to one dtype), N >= 1.
          call_model_function: as for :meth:`GetMask`. If it has
            ``pack_call_model_args(row_args)`` (the adapters), rows of
            examples with different ``call_model_args`` share calls: it gets
            one ``call_model_args`` per row and returns the call's. If it has
            ``resolve_call_model_args(x_values, example_args, batch_size)``,
            that is called once first (an adapter's ``target="predicted"``
            becomes each example's top class). A plain function (the
            reference's contract) shares calls only among examples whose
            ``call_model_args`` are the same object or equal plain values
            (``None``, numbers, strings); others get calls of their own.
          call_model_args: one value for every example, or a ``list`` or
            ``tuple`` of one per example (a list or tuple is always read as
            per example: wrap a tuple meant for all examples in a list of N).
          batch_size: the most inputs in one call, across examples (>= 1).
          **kwargs: :meth:`GetMask`'s parameters. Those in
            :attr:`per_example_arguments` (``x_baseline``...) are either of the
            example's shape (the same for all) or ``[N, ...]`` (one per example).

        Returns:
          ``[N, ...]``: mask ``i`` at index ``i``.

        Raises:
          ValueError: no example, examples of different shapes,
            ``call_model_args`` or a per-example argument of the wrong length
            or shape (the message names the argument, the expected and the
            actual), or any error :meth:`GetMask` raises.
          TypeError: a parameter :meth:`GetMask` does not take, or of a wrong type.
        """
        masks = self._run_batch(
            "GetMaskBatch",
            x_values,
            call_model_function,
            call_model_args,
            batch_size,
            kwargs,
            lambda index, x_value, **parameters: self._mask_steps(x_value, **parameters),
            lambda index, x_value, args: self.GetMask(x_value, call_model_function, args, **kwargs),
        )
        return np.stack(masks)

    def n_model_inputs(self, x_shape: tuple[int, ...], *args: Any, **kwargs: Any) -> int:
        """How many inputs :meth:`GetMask` sends to ``call_model_function`` for these parameters.

        The sum of the lengths of the batches handed to the model (the
        number of calls is about this divided by ``batch_size``), for an
        ``x_value`` of shape ``x_shape``; a progress bar's total.

        Args:
          x_shape: the shape of the un-batched input.
          **kwargs: :meth:`GetMask`'s own parameters (those after
            ``call_model_args``), by name; left out ones take their defaults.
            A method may accept and ignore those that do not change the count.

        Returns:
          The number of model inputs, >= 0 (0: the model is not called).

        Raises:
          TypeError, ValueError: a parameter that the count depends on and
            that :meth:`GetMask` would refuse, with :meth:`GetMask`'s message.
          NotImplementedError: the method does not say.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement n_model_inputs()")

    def n_smoothed_model_inputs(
        self,
        x_shape: tuple[int, ...],
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool | None = None,
        seed: int | np.random.Generator | None = None,
        *,
        aggregation: str | None = None,
        **kwargs: Any,
    ) -> int:
        """How many inputs :meth:`GetSmoothedMask` sends to ``call_model_function``.

        ``nsamples`` times :meth:`n_model_inputs` with ``**kwargs`` (the noise
        parameters and the aggregation do not change the count).

        Raises:
          TypeError, ValueError: a bad ``nsamples`` or ``aggregation`` (or one
            that ``magnitude`` contradicts), or see :meth:`n_model_inputs`.
        """
        smoothing_aggregation(magnitude, aggregation)
        nsamples = check_evaluation_count("nsamples", nsamples)
        return nsamples * self.n_model_inputs(x_shape, **kwargs)

    def _smoothed_steps(
        self,
        x_value: Any,
        stdev_spread: float,
        nsamples: int,
        aggregation: str,
        noise: NoiseSource,
        sequential: bool,
        **parameters: Any,
    ) -> Steps:
        """SmoothGrad around ``_mask_steps``: one child computation per noisy sample.

        A method with a ``seed`` of its own (``ExpectedGradients``, ``RISE``) draws from the noise's
        generator when there is one: one seed fixes every draw (sample ``k``'s noise, then its method's).
        """
        x_value, stdev, stdev_spread, nsamples = _smoothing_setup(x_value, stdev_spread, nsamples)
        total = _SmoothedSum(aggregation)
        samples = _noisy_samples(x_value, stdev, stdev_spread, nsamples, noise)
        if noise.generator is not None and parameters.get("seed", False) is None:
            parameters = {**parameters, "seed": noise.generator}
        if self.smoothing_packs_samples and noise.generator is not None:  # see packed_samples_steps
            return (yield from packed_samples_steps(self, samples, nsamples, total, parameters))
        yield Fork((self._mask_steps(sample, **parameters) for sample in samples), total.add, sequential)
        return total.mean(nsamples)

    def GetSmoothedMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool | None = None,
        seed: int | np.random.Generator | None = None,
        *,
        aggregation: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the mask smoothed over noisy copies of the input: SmoothGrad, SmoothGrad², VarGrad.

        The masks of ``nsamples`` copies of ``x_value`` with Gaussian noise of
        standard deviation ``stdev_spread * (max(x) - min(x))`` are combined
        by ``aggregation``: their mean (SmoothGrad, Smilkov et al. 2017, arXiv
        1706.03825), the mean of their squares (SmoothGrad², the reference's
        default ``magnitude=True``) or their variance, ``mean(m**2) -
        mean(m)**2`` (VarGrad, Adebayo et al. 2018, arXiv 1810.03307). Works
        for every method. Cost: ``nsamples`` times :meth:`GetMask`'s model inputs.

        Args:
          x_value: the un-batched input; integers are converted to floating point.
          call_model_function, call_model_args: as for :meth:`GetMask`.
          stdev_spread: noise level as a fraction of the input's range (>= 0;
            the resulting standard deviation must be finite; it is computed in
            ``x_value``'s dtype like the reference, float32 for float16 inputs).
          nsamples: number of noisy samples, between 1 and
            :data:`MAX_MODEL_EVALUATIONS`.
          magnitude: the reference's switch: average the squared masks (True,
            or ``None``: the default) or the masks (False). Give ``aggregation``
            instead; both only where they agree.
          seed: ``None`` draws from NumPy's global random state exactly like the
            reference (``x + np.random.normal(0, stdev, x.shape)`` per sample);
            an ``int`` or ``np.random.Generator`` makes the noise reproducible
            and independent of global state (float32 standard normals for
            float32 and float16 inputs, see :class:`~.examples.NoiseSource`).
            A method with a ``seed`` of its own (``ExpectedGradients``)
            draws from the same generator.
          aggregation: ``"mean"``, ``"square"`` or ``"variance"`` (see
            :data:`SMOOTHING_AGGREGATIONS`); ``None`` follows ``magnitude``.
          **kwargs: passed to :meth:`GetMask`. For methods whose mask is a
            single model call (vanilla gradients), ``batch_size`` sends that
            many noisy samples to the model in one call; for the others it
            groups each sample's evaluations, the samples one after the other.

        Returns:
          An array of ``x_value``'s shape, in the masks' dtype or float32,
          whichever is wider (float16 masks give float32).

        Raises:
          TypeError, ValueError: for bad arguments (an unknown
            ``aggregation``, or one that ``magnitude`` contradicts) or a bad
            model answer.

        FIX over the reference: noise from a seedable generator, and integer
        inputs are converted to floating point before noise is added.
        """
        aggregation = smoothing_aggregation(magnitude, aggregation)
        x_array, stdev, stdev_spread, nsamples = _smoothing_setup(x_value, stdev_spread, nsamples)
        noise = NoiseSource(seed)
        if not self._has_steps():  # a GetMask of its own: one call per sample
            if noise.generator is not None and "seed" in inspect.signature(self.GetMask).parameters:
                kwargs = {"seed": noise.generator, **kwargs}
            total = _SmoothedSum(aggregation)
            for index, sample in enumerate(_noisy_samples(x_array, stdev, stdev_spread, nsamples, noise)):
                total.add(index, self.GetMask(sample, call_model_function, call_model_args, **kwargs))
            return total.mean(nsamples)
        parameters, batch_size = self._mask_parameters(kwargs, "GetSmoothedMask")
        sequential = not self.smoothing_packs_samples
        steps = self._smoothed_steps(
            x_array, stdev_spread, nsamples, aggregation, noise, sequential, **parameters
        )
        return self._run_one(
            steps, x_array, call_model_function, call_model_args, 1 if batch_size is None else batch_size
        )

    def GetSmoothedMaskBatch(  # noqa: N802
        self,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool | None = None,
        seed: Any = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        aggregation: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the smoothed masks of many examples, all their evaluations packed into shared calls.

        Each mask equals :meth:`GetSmoothedMask` on that example with the seed
        the example gets (see ``seed``), up to floating-point rounding. The
        ``N * nsamples`` noisy samples' evaluations share calls of at most
        ``batch_size`` inputs (``ceil(N * nsamples * evaluations per mask /
        batch_size)`` calls for the methods whose evaluations all go at once),
        and memory stays bounded by about ``batch_size`` inputs whatever N and
        ``nsamples`` are: samples are drawn when a call has room for them.

        Args:
          x_values, call_model_function, call_model_args, batch_size, **kwargs:
            as for :meth:`GetMaskBatch`.
          stdev_spread, nsamples, magnitude, aggregation: as for :meth:`GetSmoothedMask`.
          seed: ``None`` (NumPy's global state, shared by all examples); an
            ``int`` ``s``: example ``i`` gets the noise of
            ``GetSmoothedMask(x_values[i], seed=s + i)``; a
            ``np.random.Generator`` ``g``: example 0 draws from ``g``, example
            ``i >= 1`` from ``g.spawn(N - 1)[i - 1]``; or a list or tuple of N
            of those, one per example. So a batch of one with a given seed
            equals :meth:`GetSmoothedMask` with that seed.

        Returns:
          ``[N, ...]``: the smoothed mask of example ``i`` at index ``i``.

        Raises:
          TypeError, ValueError: as for :meth:`GetMaskBatch` and
            :meth:`GetSmoothedMask`; a ``seed`` list of the wrong length.
        """
        aggregation = smoothing_aggregation(magnitude, aggregation)
        stdev_spread = check_number("stdev_spread", stdev_spread, minimum=0.0)
        nsamples = check_evaluation_count("nsamples", nsamples)
        seeds = example_seeds(seed, len(batch_examples(x_values)[0]))

        def smoothed_steps(index: int, x_value: Any, **parameters: Any) -> Steps:
            noise = NoiseSource(seeds[index])
            return self._smoothed_steps(
                x_value, stdev_spread, nsamples, aggregation, noise, False, **parameters
            )

        def smoothed_one_by_one(index: int, x_value: Any, args: Any) -> Any:
            return self.GetSmoothedMask(
                x_value,
                call_model_function,
                args,
                stdev_spread,
                nsamples,
                seed=seeds[index],
                aggregation=aggregation,
                **kwargs,
            )

        masks = self._run_batch(
            "GetSmoothedMaskBatch",
            x_values,
            call_model_function,
            call_model_args,
            batch_size,
            kwargs,
            smoothed_steps,
            smoothed_one_by_one,
        )
        return np.stack(masks)

    def format_and_check_call_model_output(
        self, output: dict[str, Any], input_shape: Sequence[int], expected_keys: Sequence[str]
    ) -> None:
        """Reference API: converts ``output``'s expected keys to arrays in place and checks them.

        Raises:
          ValueError: if a key is missing, has the wrong shape or holds NaN/inf.
        """
        output.update(check_call_model_output(output, input_shape, expected_keys))
