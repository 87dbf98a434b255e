"""Opt-in reduced precision for training, and the guard that keeps sensitive numerics in float32.

Training runs in float32 by default. ``--set precision=bf16`` or ``--set precision=fp16`` (the
training option ``precision``, :func:`check_precision`) makes the trainer compute each step's
forward pass, ``model.loss``, under :func:`torch.autocast` on the model's device
(:class:`TrainingPrecision`): matrix products, linear and convolution layers and the recurrent
cells that autocast lists for that device run in the low-precision type, while the weights, the
gradients and the optimiser state stay float32 (mixed precision, Micikevicius et al. 2018).
``fp16`` scales the loss by a :class:`torch.amp.GradScaler` so small gradients do not underflow
(the gradients are unscaled before clipping, and a step whose gradients overflowed is skipped);
``bf16`` has float32's range and needs no scaler. Evaluation and sampling never use autocast.

**What never runs in low precision.** A log-space dynamic program or a log-partition function
adds up terms of very different sizes; bfloat16 keeps 8 significant bits (about 2-3 decimal
digits), so a sum over 100 frames or a ``logsumexp`` over 2^12 RBM states would lose most of its
digits. Every such computation is decorated with :func:`full_precision`, which switches autocast
off for the duration of the call and casts floating-point inputs below float32 up to float32
(float64 stays float64). Its outputs are float32 (or float64), and the backward pass of those
operations runs in that type too. The guarded entry points are the frame distributions'
log-likelihoods (Bernoulli, Gaussian, categorical, mixture, NADE, RBM free energies, log-partition
and CD surrogate), the length models' log-probabilities, the CTC dynamic program and ``ctc_loss``,
AIS / RAISE and their log-mean-exp, the latent-variable estimators (ELBO, IWAE, importance
sampling), the Gaussian KL and log-densities of VRNN and VHRED, and the RBM sequence models'
per-frame likelihood sums. A guarded function called with no autocast active runs unchanged.

On the CPU, ``nn.GRU`` and ``nn.RNN`` under autocast return float32 states, but the matrix
products inside them run in the low-precision type; ``nn.LSTM`` under CPU autocast needs oneDNN's
low-precision kernels, which many CPUs lack, so :class:`AutocastSafeLSTM` keeps it in float32 there.

Reference: P. Micikevicius et al., "Mixed precision training", ICLR 2018.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from probseq.errors import UserError

__all__ = ["PRECISIONS", "check_precision", "autocast_dtype", "autocast_supported",
           "check_precision_on_device", "TrainingPrecision", "full_precision", "upcast",
           "autocast_active", "AutocastSafeLSTM"]

#: the values of the training option ``precision``
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: device types whose autocast state :func:`full_precision` checks
_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")

F = TypeVar("F", bound=Callable[..., Any])


def check_precision(name: Any) -> str:
    """``name`` if it is one of :data:`PRECISIONS`, else :class:`~probseq.errors.UserError`."""
    text = str(name).strip().lower()
    if text not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)} (fp32 unless you opt in to "
                        f"bf16 or fp16 autocast for training), got {name!r}")
    return text


def autocast_dtype(name: str) -> torch.dtype | None:
    """The autocast type of a precision name (``None`` for ``fp32``: no autocast)."""
    return _DTYPES.get(check_precision(name))


def autocast_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether this torch build can autocast to ``dtype`` on ``device_type`` (tried, not assumed).

    For CUDA, bfloat16 also needs a GPU that computes in it natively (compute capability 8.0,
    Ampere, or later).
    """
    try:
        if not torch.amp.autocast_mode.is_autocast_available(device_type):
            return False
        if device_type == "cuda" and dtype is torch.bfloat16:
            try:
                if not torch.cuda.is_bf16_supported(including_emulation=False):
                    return False
            except TypeError:                     # older signature, no emulation argument
                if not torch.cuda.is_bf16_supported():
                    return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # torch warns and disables autocast for a bad dtype
            with torch.autocast(device_type, dtype=dtype):
                return bool(torch.is_autocast_enabled(device_type)
                            and torch.get_autocast_dtype(device_type) == dtype)
    except (RuntimeError, ValueError, AssertionError):
        return False


def check_precision_on_device(name: str, device: torch.device | str) -> None:
    """Raise :class:`UserError` (one sentence) if ``name`` cannot train on ``device``."""
    name = check_precision(name)
    dtype = _DTYPES.get(name)
    if dtype is None:
        return
    device_type = torch.device(device).type
    if not autocast_supported(device_type, dtype):
        if device_type == "cuda" and dtype is torch.bfloat16:
            raise UserError("precision=bf16 needs a GPU that computes in bfloat16 (compute capability "
                            "8.0, Ampere, or later); this one does not, so use precision=fp16 or fp32")
        raise UserError(f"precision={name} is not supported on {device_type} by this torch "
                        f"({torch.__version__}): it cannot autocast to {dtype} there; use "
                        f"precision=fp32{' or bf16' if name == 'fp16' else ''}")
    if dtype is torch.float16:
        try:
            torch.amp.GradScaler(device_type)
        except (RuntimeError, ValueError, AttributeError):
            raise UserError(f"precision=fp16 needs a gradient scaler on {device_type}, which this torch "
                            f"({torch.__version__}) does not have; use precision=bf16 or fp32") from None


class TrainingPrecision:
    """The trainer's side of ``precision``: autocast for the forward pass, gradient scaling for fp16.

    ``fp32`` makes every method the plain float32 operation (no autocast, ``loss.backward()``,
    ``optimizer.step()``). The training step is::

        with precision.autocast():
            loss = model.loss(batch)
        precision.backward(loss)
        precision.unscale_(optimizer)       # before clipping the gradient norm
        clip_grad_norm_(...)
        precision.step(optimizer)           # fp16: skipped when the gradients overflowed

    Args:
        name: ``fp32``, ``bf16`` or ``fp16``.
        device: where the model lives; the autocast and the scaler act on its device type.
    """

    def __init__(self, name: str, device: torch.device | str) -> None:
        self.name = check_precision(name)
        self.device_type = torch.device(device).type
        self.dtype = _DTYPES.get(self.name)
        check_precision_on_device(self.name, device)
        self.scaler = torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None

    @property
    def enabled(self) -> bool:
        """Whether the forward pass runs under autocast."""
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass runs in (a no-op for ``fp32``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, of the scaled loss for ``fp16``."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (``fp16``), so clipping sees the true gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; for ``fp16`` through the scaler, which then updates the scale."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def upcast(x: Any) -> Any:
    """A floating-point tensor below float32 as float32; anything else unchanged (float64 stays)."""
    if isinstance(x, Tensor) and x.is_floating_point() and x.element_size() < 4:
        return x.float()
    return x


def _upcast_all(value: Any) -> Any:
    """:func:`upcast` applied to a tensor, or inside a (packed) list, tuple or dict of them."""
    if isinstance(value, Tensor):
        return upcast(value)
    if isinstance(value, PackedSequence):
        return value._replace(data=upcast(value.data))
    if type(value) in (list, tuple):
        return type(value)(_upcast_all(v) for v in value)
    if type(value) is dict:
        return {k: _upcast_all(v) for k, v in value.items()}
    return value


def autocast_active() -> tuple[str, ...]:
    """The device types on which autocast is enabled right now (empty outside autocast)."""
    return tuple(t for t in _AUTOCAST_DEVICE_TYPES if torch.is_autocast_enabled(t))


@contextlib.contextmanager
def _autocast_off(device_types: tuple[str, ...]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for device_type in device_types:
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def full_precision(fn: F | None = None) -> F | contextlib.AbstractContextManager:
    """Keep a numerically sensitive computation out of autocast.

    As a decorator, ``@full_precision`` runs the function with autocast switched off on every
    device type where it is on, and its floating-point arguments (tensors, also inside lists,
    tuples, dicts and packed sequences) below float32 cast up to float32; float64 stays float64,
    and everything else (modules, generators, numbers) passes unchanged. Use it on log-space
    dynamic programs, log-partition functions, log-likelihoods and estimator sums, and on the
    ``forward`` and ``backward`` of hand-written :class:`torch.autograd.Function` s (it then does
    what ``torch.amp.custom_fwd(cast_inputs=torch.float32)`` / ``custom_bwd`` do, for every device
    type at once). With no autocast active the call goes straight through.

    Called without a function, ``with full_precision():`` switches autocast off for a block;
    cast its inputs with :func:`upcast` yourself.
    """
    if fn is None:
        return _autocast_off(autocast_active())

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        active = autocast_active()
        if not active:
            return fn(*args, **kwargs)
        with _autocast_off(active):
            return fn(*_upcast_all(args), **_upcast_all(kwargs))

    return guarded  # type: ignore[return-value]


class AutocastSafeLSTM(nn.LSTM):
    """:class:`torch.nn.LSTM` that runs in float32 under CPU autocast (elsewhere it is ``nn.LSTM``).

    Under CPU autocast torch sends an LSTM to oneDNN's low-precision kernel, which fails on CPUs
    without native bfloat16/float16 support ("could not create a primitive descriptor"). Same
    parameters and state dict as ``nn.LSTM``; under CUDA autocast it runs in the low-precision
    type (cuDNN).
    """

    def forward(self, input: Any, hx: Any = None) -> Any:  # noqa: A002 - nn.LSTM's argument name
        if "cpu" in autocast_active() and self.weight_ih_l0.device.type == "cpu":
            with _autocast_off(autocast_active()):
                return super().forward(_upcast_all(input), _upcast_all(hx))
        return super().forward(input, hx)
