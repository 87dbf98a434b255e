"""The one ancestral-sampling loop shared by every model.

.. code-block:: text

    state <- model.initial_state(n, target_length=tau)      # tau drawn first for explicit P(tau)
    for x_t in prefix:      state <- model.advance(state, x_t)
    repeat:
        x_t, state <- model.draw_frame(state, temperature, generator)
        state      <- model.advance(state, x_t)
        stop        ~ Bernoulli(sigmoid(model.stop_logit(state)))  # halting / end-symbol
    until every sequence stopped, reached its length, or reached max_length

**Temperature applies to frames, never to stop decisions.** ``draw_frame`` samples each frame
from its distribution at ``temperature`` (``P(x_t | .)^{1/T}``, renormalised); the stop draw always
uses the model's own ``P(stop | history)``. Tempering the halting Bernoulli would not make frames
cleaner, it would change the length distribution wholesale: a per-step stop probability of 0.05
becomes 0.00005 at ``T = 0.3`` (samples run to ``max_length``) and 0.27 at ``T = 3``; the length of a
tempered sample instead follows the model's stopping rule given the tempered frames
(``tests/test_likelihood_defects.py`` pins this).

The loop is batched over the ``n`` sequences (a stopped sequence keeps being stepped, its frames
discarded), and reproducible: every random draw goes through ``generator``, which must live on the
model's device (:func:`probseq.device.generator_for`); the loop's own tensors are made there too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.device import model_device
from probseq.errors import UserError

__all__ = ["sample_sequences", "DEFAULT_MAX_LENGTH"]

#: cap on sampled length when the model decides when to stop and the caller gives no maximum
DEFAULT_MAX_LENGTH = 1000


def _prefix_tensor(prefix: Batch | Tensor, n: int, device: torch.device) -> Tensor:
    values = prefix.values if isinstance(prefix, Batch) else prefix
    values = torch.as_tensor(values, device=device)
    if isinstance(prefix, Batch) and not bool((prefix.lengths == prefix.max_length).all()):
        raise UserError("all prefix sequences must have the same length")
    if values.shape[0] == 1 and n > 1:
        values = values.expand(n, *values.shape[1:])
    if values.shape[0] != n:
        raise UserError(f"prefix holds {values.shape[0]} sequences; expected 1 or {n}")
    return values


@torch.no_grad()
def sample_sequences(model, n: int, *, length: int | None = None, max_length: int | None = None,
                     prefix: Batch | Tensor | None = None, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Batch:
    """Draw ``n`` sequences from ``model`` (any :class:`~probseq.models.base.SequenceModel`).

    Args:
        n: number of sequences.
        length: total length of every sequence (prefix included); overrides the length model.
        max_length: cap on the total length when the model's length model decides when to stop.
        prefix: ``(1 or n, T_p, *event)`` frames (or a :class:`Batch` of equal lengths) to continue;
            the returned sequences start with it.
        temperature: > 0; scales the frame distributions' randomness (1 = the model itself);
            stop decisions are not tempered (module docstring).
        generator: the source of randomness; pass a seeded one for reproducible samples.

    Returns:
        A :class:`Batch` of ``n`` sequences with their lengths.
    """
    if n < 1:
        raise UserError(f"number of samples must be positive, got {n}")
    if temperature <= 0:
        raise UserError(f"temperature must be positive, got {temperature}")
    lm = model.length_model
    device = model_device(model)
    prefix_values = None if prefix is None else _prefix_tensor(prefix, n, device)
    prefix_len = 0 if prefix_values is None else prefix_values.shape[1]
    if length is None and not lm.models_length:
        raise UserError(f"model {model.name!r} does not model length; give a length to sample")
    if length is not None and length <= prefix_len:
        raise UserError(f"length {length} must exceed the prefix length {prefix_len}")
    cap = length if length is not None else (max_length or DEFAULT_MAX_LENGTH)
    if cap <= prefix_len:
        raise UserError(f"maximum length {cap} must exceed the prefix length {prefix_len}")

    target = None
    if length is not None:
        target = torch.full((n,), length, dtype=torch.long, device=device)
    else:
        target = lm.sample_target_length(n, min_length=prefix_len + 1, max_length=cap, generator=generator)

    was_training = model.training
    model.eval()
    try:
        state = model.initial_state(n, target_length=target)
        frames: list[Tensor] = []
        if prefix_values is not None:
            for x_t in prefix_values.unbind(1):
                frames.append(x_t)
                state = model.advance(state, x_t)
        lengths = torch.full((n,), prefix_len, dtype=torch.long, device=device)
        alive = torch.ones(n, dtype=torch.bool, device=device)
        for t in range(prefix_len + 1, cap + 1):
            x_t, state = model.draw_frame(state, temperature=temperature, generator=generator)
            frames.append(x_t)
            lengths += alive.long()
            if target is not None:
                alive &= lengths < target
            if not alive.any():
                break
            state = model.advance(state, x_t)
            if target is None:
                stop_logit = model.stop_logit(state)
                stop = torch.bernoulli(torch.sigmoid(stop_logit.float()), generator=generator).bool()
                alive &= ~stop
                if not alive.any():
                    break
    finally:
        model.train(was_training)
    values = torch.stack(frames, 1)
    if torch.is_floating_point(values) and not torch.isfinite(values).all():
        raise FloatingPointError("the model produced a NaN or infinite frame while sampling")
    return Batch(values, lengths)
