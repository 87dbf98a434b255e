"""The contract every probseq sequence model implements.

A model answers three questions (DESIGN.md):

1. **Sample**: :meth:`SequenceModel.sample` — ``n`` sequences of a fixed or maximum length, or a
   continuation of a prefix, at a temperature, from an explicit ``torch.Generator``. All models share
   one loop, :func:`probseq.sampling.sample_sequences`, driven by four hooks
   (:meth:`~SequenceModel.initial_state`, :meth:`~SequenceModel.draw_frame`,
   :meth:`~SequenceModel.advance`, :meth:`~SequenceModel.stop_logit`).
2. **Length**: a :class:`~probseq.lengths.LengthModel` in ``self.length_model``; when it models
   length, ``log_prob`` includes the length term and the sampler stops by it.
3. **Likelihood**: :meth:`SequenceModel.log_prob` returns a :class:`LogProb`: one value per
   sequence, the *kind* of number (``exact``, ``bound``, ``estimate``, ``approximation``), which way
   it can err, whether the length term is included, the estimator's name and a standard error
   where there is one (the taxonomy is :mod:`probseq.likelihood`). Evaluation code branches on
   ``kind``, never on the class.

Models are built from a :class:`~probseq.data.spec.DataSpec` and keyword hyperparameters declared
in the class attribute ``hyperparameters`` (name -> default); that dict plus the ``state_dict`` is
all a checkpoint needs (see :mod:`probseq.train.checkpoint`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.device import model_device
from probseq.errors import UserError
from probseq.lengths import LengthModel, NoLength
from probseq.likelihood import LogProb

__all__ = ["LogProb", "SequenceModel"]


class SequenceModel(nn.Module):
    """Base class of every generative sequence model in probseq.

    Class attributes a subclass sets:
        name: the registry name (``"gru"``, ``"rtrbm"``, ...).
        likelihood_kind: what :meth:`log_prob` returns by default.
        estimators: the estimator names :meth:`log_prob` accepts; the first is the default.
        data_kinds: the :class:`DataSpec` kinds the model can fit.
        hyperparameters: constructor keyword arguments and their defaults (``--set key=value``).
        training_defaults: overrides of the trainer's defaults (learning rate, batch size, ...).
        contract_example: a tiny configuration the generic tests build (a test fails without one).

    On the class, ``likelihood_kind`` and ``training_defaults`` answer for the family; where an
    instance's answer depends on its configuration (a TRBM small enough to enumerate, a thesis
    preset), the subclass declares them with
    :class:`~probseq.models.capabilities.instance_capability` so that ``model.likelihood_kind`` is
    this model's answer and ``Model.likelihood_kind`` still the family's. Never assign them on an
    instance (``tests/test_capabilities.py``).
    """

    name: ClassVar[str] = ""
    likelihood_kind: ClassVar[str] = "exact"
    estimators: ClassVar[tuple[str, ...]] = ("exact",)
    data_kinds: ClassVar[tuple[str, ...]] = ("binary", "real", "categorical")
    hyperparameters: ClassVar[dict[str, Any]] = {}
    training_defaults: ClassVar[dict[str, Any]] = {}
    #: a tiny instance for the generic contract tests (``tests/test_model_contract.py``):
    #: ``{"spec": DataSpec(...), "hyper": {...}}``; small enough that the default estimator is
    #: deterministic where the model allows it (e.g. exact log-partition for a tiny RBM)
    contract_example: ClassVar[dict[str, Any] | None] = None
    #: whether the model scores, trains on and fills in data with missing values (``Batch.observed``;
    #: NaN in the examples): see :mod:`probseq.missing` for what each model computes and how exactly
    supports_missing: ClassVar[bool] = False
    #: how ``probseq infill`` draws missing values (:mod:`probseq.missing.infill`): ``none``,
    #: ``frames`` (independent frames), ``particles`` (a particle filter), ``gibbs`` (clamped Gibbs)
    infill_method: ClassVar[str] = "none"

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__()
        if spec.kind not in self.data_kinds:
            raise UserError(
                f"model {self.name!r} cannot fit {spec.kind} data; it fits {', '.join(self.data_kinds)} data"
            )
        unknown = set(hyper) - set(self.hyperparameters)
        if unknown:
            raise UserError(
                f"model {self.name!r} has no hyperparameter {sorted(unknown)[0]!r}; it has "
                f"{', '.join(sorted(self.hyperparameters)) or 'none'}"
            )
        self.spec = spec
        #: the full hyperparameter set, defaults filled in; saved in checkpoints
        self.config: dict[str, Any] = {**self.hyperparameters, **hyper}
        #: the length model; subclasses that model length replace it (see :mod:`probseq.lengths`)
        self.length_model: LengthModel = NoLength()

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
        """Log-likelihood of each sequence in ``batch`` (see :class:`LogProb`)."""
        raise NotImplementedError

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """Scalar training loss: by default the pooled NLL per frame, ``-sum_i log p(x_i) / sum_i T_i``.

        Models trained by contrastive divergence or a variational bound override this with their
        surrogate; its gradient is the learning signal, its value need not be an NLL.
        """
        return -self.log_prob(batch, generator=generator).values.sum() / batch.n_frames

    def check_estimator(self, estimator: str | None) -> str:
        """Resolve ``None`` to the default estimator and reject unknown ones with a clear error."""
        if estimator is None:
            return self.estimators[0]
        if estimator not in self.estimators:
            raise UserError(
                f"model {self.name!r} does not support estimator {estimator!r}; it supports "
                f"{', '.join(self.estimators)}"
            )
        return estimator

    # ------------------------------------------------------------------ chunked likelihood
    #: whether :meth:`log_prob_window` is implemented; the scorer then bounds memory by cutting long
    #: batches into time windows (:mod:`probseq.evaluate.chunking`), otherwise only by packing
    #: whole sequences into batches of at most a frame budget
    supports_time_windows: ClassVar[bool] = False
    #: whether :meth:`validation_loss` is the exact pooled NLL per frame, ``-sum log p / sum T``;
    #: the trainer then validates with the frame-bounded (time-windowed) scorer
    validation_is_nll: ClassVar[bool] = False

    def window_state(self, batch: Batch) -> Any:
        """The state before the first frame of every sequence of ``batch``, for :meth:`log_prob_window`."""
        raise NotImplementedError

    def log_prob_window(self, window: Any, state: Any, *, estimator: str | None = None,
                        samples: int | None = None, generator: torch.Generator | None = None
                        ) -> tuple[LogProb, Any]:
        """The log-likelihood of the frames of a :class:`~probseq.data.window.TimeWindow` given the
        state after the frames before it, and the state after the window.

        ``state`` may hold more sequences than the window (those that ended earlier come last);
        the window's are its first ``window.batch_size``. Summed over consecutive windows (starting
        from :meth:`window_state`), the values equal :meth:`log_prob`'s, length term included once.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ truncated BPTT (training)
    #: whether :meth:`window_loss`, :meth:`join_window_states` and :meth:`window_state_rows` are
    #: implemented: the trainer can then train consecutive windows of a long sequence with the
    #: state carried from one to the next (``carry_state``, :mod:`probseq.train.streams`)
    carries_training_state: ClassVar[bool] = False

    def carry_problem(self) -> str | None:
        """Why this model, as configured, cannot carry its state between training windows (one
        clause, printed by the trainer when it trains on windows), or ``None`` when it can."""
        if not self.carries_training_state:
            return f"model {self.name!r} has no deterministic state to carry from one window to the next"
        return None

    def window_loss(self, window: Any, state: Any, *, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, Any]:
        """The training loss per frame of a :class:`~probseq.data.window.TimeWindow` given the state
        after the frames before it (the same objective as :meth:`loss`, so that on contiguous
        windows the frame-weighted mean of the values equals :meth:`loss` of the whole sequences),
        and the state after the window (not detached: the caller truncates the gradient)."""
        raise NotImplementedError

    def join_window_states(self, states: list[Any]) -> Any:
        """One window state holding the rows of ``states`` in order (a batch of carried streams)."""
        raise NotImplementedError

    def window_state_rows(self, state: Any, index: Tensor) -> Any:
        """The rows ``index`` ``(m,)`` of a window state."""
        raise NotImplementedError

    def frames_of(self, batch: Batch) -> Tensor:
        """The zero-padded frames ``(B, T, ...)`` in the dtype of the model's parameters: the one
        place a model casts its input (a float64 model scores float32 data; integer symbols of
        categorical data keep their type)."""
        x = batch.padded_with_zeros()
        param = next(self.parameters(), None)
        if x.is_floating_point() and param is not None and x.dtype != param.dtype:
            x = x.to(param.dtype)
        return x

    # ------------------------------------------------------------------ training hooks
    def prepare(self, dataset: Any) -> None:
        """Called once by ``probseq fit`` before training, with the :class:`~probseq.data.registry.Dataset`.

        Use it for data-dependent initialisation (biases from marginals, ``W`` from static CD).
        Anything needed after a reload must live in the ``state_dict`` (parameters or buffers).
        """

    def collate(self, examples: list[Any]) -> Batch:
        """Turn a list of dataset examples into what :meth:`log_prob` and :meth:`loss` take.

        By default examples are ``(T_i, ...)`` tensors padded into a :class:`Batch`; conditional
        models (CTC: audio plus labels) return their own batch type, which must have ``n_frames``,
        ``batch_size`` and ``to(device)``. This is the boundary where data meets the model: the batch
        is returned on the device of the model's parameters.
        """
        dtype = torch.long if self.spec.kind == "categorical" else torch.get_default_dtype()
        return Batch.from_sequences(examples, dtype=dtype).to(model_device(self))

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Called by the trainer before each optimisation step (KL annealing, CD-k schedules, ...)."""

    def validation_loss(self, batch: Any) -> float:
        """Per-frame score for early stopping (lower is better); the training loss by default."""
        with torch.no_grad():
            return float(self.loss(batch))

    # ------------------------------------------------------------------ prediction
    def predict_next(self, batch: Batch) -> Tensor:
        """One-step-ahead prediction ``E[x_t | x_{<t}]`` for every frame, shape of ``batch.values``."""
        raise UserError(f"model {self.name!r} does not make one-step-ahead predictions")

    # ------------------------------------------------------------------ command-line extensions
    #: metric names ``probseq evaluate --metric`` accepts beyond ``nll`` and ``mse``
    extra_metrics: ClassVar[tuple[str, ...]] = ()

    def evaluate_metric(self, metric: str, examples: list[Any], *, generator: torch.Generator,
                        batch_size: int) -> dict[str, Any]:
        """Compute ``metric`` (one of :attr:`extra_metrics`) on a split; a dict merged into the JSON."""
        raise UserError(f"model {self.name!r} has no metric {metric!r}")

    def sample_from_prime_file(self, path: str, *, n: int, temperature: float,
                               generator: torch.Generator, meta: dict[str, Any],
                               max_length: int | None = None) -> str | None:
        """Conditional models (CTC: audio; VHRED: a dialogue context) answer a ``--prime`` file here.

        Return the text to print, or ``None`` to let the CLI treat the file as a prefix of frames.
        """
        return None

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, length: int | None = None, max_length: int | None = None,
               prefix: Batch | Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Batch:
        """Draw ``n`` sequences; see :func:`probseq.sampling.sample_sequences`."""
        from probseq.sampling import sample_sequences

        return sample_sequences(self, n, length=length, max_length=max_length, prefix=prefix,
                                temperature=temperature, generator=generator)

    # Hooks of the shared sampling loop. ``state`` is any object the model likes.
    def initial_state(self, n: int, *, target_length: Tensor | None = None) -> Any:
        """State before the first frame; ``target_length`` is ``tau`` for explicit length models."""
        raise NotImplementedError

    def draw_frame(self, state: Any, *, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Any]:
        """Sample the next frame ``x_t ~ p(x_t | state)``; may stash latents in the returned state."""
        raise NotImplementedError

    def advance(self, state: Any, frame: Tensor) -> Any:
        """Condition the state on the frame just emitted (or read from a prefix)."""
        raise NotImplementedError

    def stop_logit(self, state: Any) -> Tensor | None:
        """Logit of stopping after the frames seen so far, ``(n,)``; ``None`` if length is not modelled."""
        return None

    # Hooks of the particle methods for missing values (:mod:`probseq.missing`), for models whose
    # next frame is ``frame``'s distribution at parameters read from the state.
    def frame_params_of(self, state: Any) -> Tensor:
        """The parameters ``theta`` ``(n, param_dim)`` of the next frame's distribution ``self.frame``."""
        raise UserError(f"model {self.name!r} cannot handle missing values")

    def select_states(self, state: Any, index: Tensor) -> Any:
        """The state of the sequences ``index`` ``(m,)`` (repeats allowed): particles are copied and
        resampled with it."""
        raise UserError(f"model {self.name!r} cannot handle missing values")

    # ------------------------------------------------------------------ validation
    def validate_examples(self, examples: list[Any], where: str = "the data") -> None:
        """Check a whole split once, at the boundary: shapes, NaN/inf, the frames' support.

        Raises :class:`UserError` naming the first offending sequence. Conditional models whose
        examples are not frame tensors override this.
        """
        frame = getattr(self, "frame", None)
        for i, example in enumerate(examples):
            x = torch.as_tensor(example)
            if x.is_floating_point() and bool(torch.isnan(x).any()):
                if not self.supports_missing:
                    raise UserError(
                        f"sequence {i} of {where} has missing values (NaN), and model {self.name!r} "
                        "cannot handle them; models that can: see docs/missing-data.md"
                    )
                x = torch.where(torch.isnan(x), torch.zeros_like(x), x)   # 0 is valid in every frame
            expected = (1,) if self.spec.kind == "categorical" else (2, self.spec.dim)
            if x.dim() != expected[0] or (len(expected) == 2 and x.shape[-1] != expected[1]):
                want = "(time,)" if self.spec.kind == "categorical" else f"(time, {self.spec.dim})"
                raise UserError(f"sequence {i} of {where} has shape {tuple(x.shape)}; the model expects {want}")
            if frame is not None:
                try:
                    frame.validate(x)
                except UserError as exc:
                    raise UserError(f"sequence {i} of {where}: {exc}") from None

    def validate_batch(self, batch: Batch) -> None:
        """Raise :class:`UserError` if ``batch`` is not data this model was built for."""
        if getattr(batch, "observed", None) is not None and not self.supports_missing and batch.has_missing:
            raise UserError(f"model {self.name!r} cannot handle missing values; models that can: "
                            "see docs/missing-data.md")
        if self.spec.kind == "categorical":
            if batch.values.dim() != 2:
                raise UserError(
                    f"categorical data must have shape (batch, time), got {tuple(batch.values.shape)}"
                )
        elif batch.values.dim() != 3 or batch.values.shape[-1] != self.spec.dim:
            raise UserError(
                f"model expects frames of dimension {self.spec.dim}, got data of shape "
                f"{tuple(batch.values.shape)}"
            )
