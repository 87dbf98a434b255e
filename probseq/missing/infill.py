"""Infilling: draw the missing values of partly observed sequences from the model, given everything
observed, before *and after* each gap.

Each model family answers with the method its structure allows, and says how exact it is
(:attr:`Infilled.exact`, :attr:`Infilled.method`):

* **Independent frames** (``infill_method = "frames"``: ``independent``, ``nade``): the frames are
  independent, so only a frame's own observed values matter. Factorial frames: the missing values
  are drawn from their own marginals, the **exact** conditional. NADE frames: exact conditional
  sampling where the observed dimensions come first in the ordering; otherwise
  sampling-importance-resampling (Rubin 1988) from ``K`` proposals with the observed dimensions
  moved first, weighted by ``p / q`` — approximate, exact as ``K -> infinity``.
* **Recurrent models** (``"particles"``: ``rnn``, ``gru``, ``lstm``, ``rnn-nade``): the particle
  filter of :mod:`probseq.missing.particles` with ``K`` particles, and whole trajectories drawn
  from the final weights (which carry the observations after each gap): approximate, consistent
  as ``K -> infinity``.
* **RNN-RBM, TRBM, RTRBM** (``"gibbs"``): frame by frame, block Gibbs sampling ``h | v``,
  ``v_mis | h`` with the observed visible units clamped, given the frames before (the model's
  state); the frames after a gap do not inform it (each later RBM's partition function would
  change with the filled values): an approximation. Models that generate Gaussian frames
  noise-free (``sample_visible``) use the visible means in the ``v`` step, as when they sample.

``mode=True`` returns one completion per sequence: the most probable value of each missing unit for
factorial independent frames (exact: their conditional is a product), otherwise the
highest-weight particle or proposal (an approximation of the mode, labelled so).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError
from probseq.missing.particles import particle_filter
from probseq.missing.scoring import DEFAULT_PARTICLES

__all__ = ["Infilled", "infill", "INFILL_METHODS"]

#: what ``model.infill_method`` may say
INFILL_METHODS = ("none", "frames", "particles", "gibbs")


@dataclass
class Infilled:
    """Completions of a batch and how they were drawn.

    Attributes:
        completions: ``(B, S, T, ...)``; observed values are the batch's own, padding is zero.
        lengths: ``(B,)``.
        exact: whether the draws follow the model's exact conditional of the missing values.
        method: one phrase on how they were drawn.
        posterior_mean: ``(B, T, ...)`` an estimate of :math:`E[x \\mid x^{obs}]` better than the
            mean of the draws where the model gives one (factorial independent frames: exact;
            recurrent models: all particles' paths weighted by their final weights; NADE frames:
            the self-normalised importance-sampling average of all the proposals), else ``None``.
    """

    completions: Tensor
    lengths: Tensor
    exact: bool
    method: str
    posterior_mean: Tensor | None = None

    def as_batch(self, index: int = 0) -> Batch:
        """The ``S`` completions of sequence ``index`` as a batch of full sequences."""
        n = int(self.lengths[index])
        values = self.completions[index, :, :n]
        return Batch(values, torch.full((values.shape[0],), n, dtype=torch.long, device=values.device))


def infill(model, batch: Batch, *, draws: int = 1, particles: int | None = None, mode: bool = False,
           generator: torch.Generator | None = None) -> Infilled:
    """Fill in the missing values of ``batch`` (its ``observed`` mask); see the module docstring.

    Args:
        draws: ``S`` completions per sequence (ignored with ``mode``).
        particles: ``K`` particles / proposals (default :data:`~probseq.missing.scoring.DEFAULT_PARTICLES`).
        mode: one most-probable completion instead of draws.
    """
    method = getattr(model, "infill_method", "none")
    if method == "none":
        raise UserError(f"model {model.name!r} cannot fill in missing values; models that can: "
                        "independent, nade, rnn, gru, lstm, rnn-nade, rnn-rbm, trbm, rtrbm")
    if draws < 1:
        raise UserError(f"the number of completions must be positive, got {draws}")
    K = int(particles or DEFAULT_PARTICLES)
    if K < 1:
        raise UserError(f"the number of particles must be positive, got {K}")
    if mode and method == "gibbs":
        raise UserError(f"--mode is not computable for model {model.name!r} (its frames' partition "
                        "functions are intractable); draw completions with --samples instead")
    S = 1 if mode else int(draws)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if method == "frames":
                return _infill_frames(model, batch, S, K, mode, generator)
            if method == "particles":
                result = particle_filter(model, batch, particles=K, draws=S, mode=mode, generator=generator,
                                         posterior_mean=True)
                what = ("the highest-weight trajectory of" if mode else "trajectories drawn from")
                average = None
                if result.posterior_mean is not None:
                    average = _clean(result.posterior_mean.unsqueeze(1), batch)[:, 0]
                return Infilled(_clean(result.completions, batch), batch.lengths, False,
                                f"{what} a particle filter with {K} particles (SMC smoothing by "
                                "resampling whole trajectories; uses the observations after each gap; "
                                "approximate, exact as the particles grow)", average)
            return _infill_gibbs(model, batch, S, generator)
    finally:
        model.train(was_training)


def _clean(completions: Tensor, batch: Batch) -> Tensor:
    """Observed values exactly as given, padding zero."""
    B, S = completions.shape[:2]
    observed = batch.observed_or_all.unsqueeze(1)
    values = batch.padded_with_zeros().unsqueeze(1).to(completions.dtype)
    out = torch.where(observed, values, completions)
    mask = batch.mask.reshape(B, 1, -1, *([1] * (completions.dim() - 3)))
    return torch.where(mask, out, torch.zeros_like(out))


def _infill_frames(model, batch: Batch, S: int, K: int, mode: bool,
                   generator: torch.Generator | None) -> Infilled:
    """Independent frames: exact conditionals (factorial; NADE with observed dims first) or SIR."""
    frame = model.frame
    x = model.frames_of(batch)
    observed = batch.observed_or_all
    B, T = x.shape[:2]
    params = model.frame_params_of(B * T).reshape(B, T, -1)
    exact_marginal = getattr(frame, "observed_marginal", "none") == "exact"
    if exact_marginal:
        if mode:
            most = frame.mean(params)
            if frame.data_kind == "binary":
                most = (most > 0.5).to(x.dtype)
            elif frame.data_kind == "categorical":
                most = params.argmax(-1)
            filled = torch.where(observed, x, most.to(x.dtype)).unsqueeze(1)
            return Infilled(_clean(filled, batch), batch.lengths, True,
                            "the most probable value of every missing unit (exact: the frames are "
                            "factorial)")
        shape = (S, B, T)
        filled, _ = frame.fill_missing(params.expand(*shape, -1), x.expand(*shape, *x.shape[2:]),
                                       observed.expand(*shape, *observed.shape[2:]), generator=generator)
        average = None
        if frame.data_kind != "categorical":
            average = _clean(torch.where(observed, x, frame.mean(params).to(x.dtype)).unsqueeze(1), batch)[:, 0]
        return Infilled(_clean(filled.transpose(0, 1), batch), batch.lengths, True,
                        "exact conditional sampling (the frames are factorial and independent)", average)
    if not hasattr(frame, "observed_is_prefix"):
        raise UserError(f"model {model.name!r} cannot fill in missing values")
    prefix = bool((frame.observed_is_prefix(observed) | ~batch.mask).all())
    draws = 1 if mode else S
    shape = (K, B, T)
    chosen, averages = [], []
    for _ in range(draws):          # one draw at a time: memory K B T D, not K S B T D
        filled, log_w = frame.fill_missing(params.expand(*shape, -1), x.expand(*shape, *x.shape[2:]),
                                           observed.expand(*shape, *observed.shape[2:]), generator=generator)
        # one proposal out of K per frame, in proportion to its weight (or the best one)
        flat_w = log_w.reshape(K, -1).t()                                 # (B T, K)
        pick = (flat_w.argmax(1) if mode else
                torch.multinomial(torch.softmax(flat_w.double(), 1), 1, generator=generator)[:, 0].to(flat_w.device))
        flat = filled.reshape(K, -1, *filled.shape[3:])
        chosen.append(flat[pick, torch.arange(pick.shape[0], device=pick.device)].reshape(B, T, *filled.shape[3:]))
        # the self-normalised importance-sampling estimate of E[x | x_obs] from these K proposals
        weights = torch.softmax(log_w.double(), 0).to(filled.dtype)        # (K, B, T)
        averages.append((weights.unsqueeze(-1) * filled).sum(0))          # (B, T, D)
    chosen = torch.stack(chosen, 1)                                       # (B, draws, T, D)
    average = torch.stack(averages, 0).mean(0)
    if prefix and not mode:
        how = "exact conditional sampling (the observed notes of every frame come first in the NADE's ordering)"
    elif mode:
        how = f"the highest-weight of {K} proposals per frame (an approximation of the mode)"
    else:
        how = (f"sampling-importance-resampling from {K} proposals per frame with the observed "
               "dimensions moved first in the NADE's ordering (approximate, exact as the proposals grow)")
    return Infilled(_clean(chosen, batch), batch.lengths, prefix and not mode, how,
                    _clean(average.unsqueeze(1), batch)[:, 0])


def _infill_gibbs(model, batch: Batch, S: int, generator: torch.Generator | None) -> Infilled:
    """Frame by frame clamped block Gibbs sampling of an RBM frame given the past (module docstring)."""
    own = getattr(model, "next_frame_rbm", None)       # TRBM, RTRBM: the biases come from their state
    frame = getattr(model, "frame", None)
    steps = max(int(frame.sample_steps if own is None else model.config["sample_steps"]), 1)
    mean_visible = bool(getattr(model, "sample_visible_mean", False))
    x = model.frames_of(batch)
    observed = batch.observed_or_all
    B, T = x.shape[:2]
    owner = torch.arange(B, device=x.device).repeat_interleave(S)
    lm = model.length_model
    state = model.initial_state(B * S, target_length=batch.lengths[owner] if lm.input_dim else None)
    frames = []
    for t in range(T):
        if own is None:
            rbm = frame.rbm
            vb, hb = frame.biases(model.frame_params_of(state))
        else:
            rbm, vb, hb = own(state)
        x_t, obs_t = x[owner, t], observed[owner, t]
        start = rbm.sample(steps=1, visible_bias=vb, hidden_bias=hb, generator=generator,
                           mean_visible=mean_visible)
        v = torch.where(obs_t, x_t, start.to(x.dtype))
        for _ in range(steps):
            h, _ = rbm.sample_hidden(v, hb, generator=generator)
            draw, mean = rbm.sample_visible(h, vb, generator=generator)
            v = torch.where(obs_t, x_t, (mean if mean_visible else draw).to(x.dtype))
        frames.append(v)
        if t + 1 < T:
            state = model.advance(state, v)
    filled = torch.stack(frames, 1).reshape(B, S, T, *x.shape[2:])
    return Infilled(_clean(filled, batch), batch.lengths, False,
                    f"block Gibbs sampling of each frame's missing units ({steps} rounds) with its "
                    "observed units clamped, given the frames before it; the frames after a gap are not "
                    "used (an approximation)")
