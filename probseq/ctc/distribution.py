"""The CTC distribution over label sequences, given per-frame symbol distributions.

Generative story (Graves et al. 2006; Sutskever 2013, §2.6): for each frame :math:`t \\le T` draw a
symbol :math:`\\pi_t \\sim \\mathrm{Cat}(y_t)` independently, then map the path to labels,
:math:`l = \\mathcal{B}(\\pi)`: collapse repeats and drop blanks (``collapse_repeats=True``), or only
drop blanks (the thesis variant, eq. 2.46). So

.. math:: p(l \\mid x) = \\sum_{\\pi:\\, \\mathcal{B}(\\pi) = l} \\prod_{t=1}^{T} y_t(\\pi_t),

computed exactly by the lattice DP of :mod:`probseq.ctc.dp`. The alignment :math:`\\pi` is the
latent variable; its posterior :math:`p(\\pi \\mid l, x)` is a chain over lattice states, whose
marginals are the gradient of :math:`\\log p(l \\mid x)` w.r.t. :math:`\\log y`, whose mode is the
Viterbi alignment (max semiring) and from which the sample semiring draws exact samples.

Shapes follow ``torch.distributions``: ``logits`` is ``batch_shape + (T, C)``; a label sequence
is an ``(S,)`` row padded with :data:`~probseq.ctc.decode.PAD` past its length, so a batch of them
is ``sample_shape + batch_shape + (S,)`` with lengths ``sample_shape + batch_shape``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from probseq.ctc.decode import PAD, best_path, collapse, prefix_beam_search
from probseq.ctc.dp import Lattice, log_partition, partition
from probseq.ctc.loss import check_labels
from probseq.ctc.semiring import MaxSemiring, SampleSemiring
from probseq.errors import UserError
from probseq.precision import full_precision

__all__ = ["CTC"]


class CTC:
    """:math:`p(l \\mid x)` for a batch of inputs with per-frame log-probabilities.

    Args:
        logits: ``batch_shape + (T, C)`` unnormalised per-frame scores (normalised here with
            ``log_softmax``; log-probabilities pass through unchanged).
        lengths: ``batch_shape`` frames of each input, each in ``[1, T]``; default ``T``.
        blank: index of the blank symbol.
        collapse_repeats: the usual CTC (``True``) or the thesis variant (``False``).

    Under autocast, ``logits`` below float32 are cast up to float32 first
    (:func:`~probseq.precision.full_precision`), so every dynamic program here runs in float32.
    """

    @full_precision
    def __init__(self, logits: Tensor, lengths: Tensor | Sequence[int] | None = None, *,
                 blank: int = 0, collapse_repeats: bool = True) -> None:
        if not isinstance(logits, Tensor) or logits.dim() < 2 or not logits.dtype.is_floating_point:
            raise UserError("CTC logits must be a floating-point tensor of shape batch_shape + (T, C)")
        *batch_shape, steps, n_classes = logits.shape
        if steps < 1:
            raise UserError("CTC needs at least one frame")
        if not 0 <= blank < n_classes:
            raise UserError(f"blank must lie in [0, {n_classes - 1}], got {blank}")
        self.batch_shape = torch.Size(batch_shape)
        self.logits = logits.log_softmax(-1)
        if lengths is None:
            lengths = torch.full(self.batch_shape, steps, dtype=torch.long, device=logits.device)
        lengths = torch.as_tensor(lengths, device=logits.device).long()
        if lengths.shape != self.batch_shape:
            raise UserError(f"lengths must have shape {tuple(self.batch_shape)}, got {tuple(lengths.shape)}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise UserError(f"every length must lie in [1, {steps}]")
        self.lengths = lengths
        self.blank = blank
        self.collapse_repeats = collapse_repeats

    @property
    def n_classes(self) -> int:
        return self.logits.shape[-1]

    @property
    def n_frames(self) -> int:
        return self.logits.shape[-2]

    # ------------------------------------------------------------------ helpers
    def _flat(self, sample_shape: torch.Size = torch.Size()) -> tuple[Tensor, Tensor]:
        """Time-major ``(T, N, C)`` log-probs and ``(N,)`` lengths, ``N = prod(sample + batch)``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        lp = self.logits.expand(shape + self.logits.shape[-2:]).reshape(-1, *self.logits.shape[-2:])
        return lp.transpose(0, 1), self.lengths.expand(shape).reshape(-1)

    def _lattice(self, labels: Tensor, label_lengths: Tensor | None) -> tuple[Lattice, Tensor, torch.Size]:
        """The lattices of ``labels`` (``sample_shape + batch_shape + (S,)``), the time-major
        log-probabilities they are scored against, and ``sample_shape + batch_shape``."""
        labels = torch.as_tensor(labels, device=self.logits.device).long()
        outer = labels.shape[:-1]
        n_sample_dims = len(outer) - len(self.batch_shape)
        if labels.dim() < 1 or n_sample_dims < 0 or outer[n_sample_dims:] != self.batch_shape:
            raise UserError(f"labels must have shape sample_shape + {tuple(self.batch_shape)} + (S,), "
                            f"got {tuple(labels.shape)}")
        if label_lengths is None:
            label_lengths = torch.full(outer, labels.shape[-1], dtype=torch.long, device=labels.device)
        label_lengths = torch.as_tensor(label_lengths, device=labels.device).long()
        if label_lengths.shape != outer:
            raise UserError(f"label_lengths must have shape {tuple(outer)}, got {tuple(label_lengths.shape)}")
        if label_lengths.numel() and (int(label_lengths.min()) < 0 or int(label_lengths.max()) > labels.shape[-1]):
            raise UserError(f"every label length must lie in [0, {labels.shape[-1]}]")
        flat_labels = labels.reshape(outer.numel(), labels.shape[-1])
        flat_lengths = label_lengths.reshape(-1)
        check_labels(flat_labels, flat_lengths, self.n_classes, self.blank)
        log_probs, input_lengths = self._flat(outer[:n_sample_dims])
        lattice = Lattice.build(flat_labels, flat_lengths, input_lengths, blank=self.blank,
                                collapse_repeats=self.collapse_repeats, dtype=self.logits.dtype)
        return lattice, log_probs, outer

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, labels: Tensor, label_lengths: Tensor | None = None) -> Tensor:
        """:math:`\\log p(l \\mid x)` of ``labels (sample_shape + batch_shape + (S,))``; ``-inf`` when
        no alignment exists. Differentiable w.r.t. ``logits``."""
        lattice, lp, outer = self._lattice(labels, label_lengths)
        return log_partition(lattice.emissions(lp), lattice).reshape(outer)

    def marginals(self, labels: Tensor, label_lengths: Tensor | None = None) -> Tensor:
        """Posterior symbol marginals :math:`P(\\pi_t = c \\mid l, x)`, ``batch_shape + (T, C)``.

        The gradient of :math:`\\log p(l \\mid x)` w.r.t. the per-frame log-probabilities (each row
        sums to 1 inside the input, 0 past its end; all zero for an impossible ``l``).
        """
        lattice, lp, outer = self._lattice(labels, label_lengths)
        lp = lp.detach().requires_grad_(True)
        with torch.enable_grad():
            log_z = log_partition(lattice.emissions(lp), lattice)
            (grad,) = torch.autograd.grad(log_z.sum(), lp)
        return grad.transpose(0, 1).reshape(*outer, self.n_frames, self.n_classes)

    # ------------------------------------------------------------------ alignments
    def _path(self, semiring, labels: Tensor, label_lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        lattice, lp, outer = self._lattice(labels, label_lengths)
        input_lengths = lattice.input_lengths
        emissions = lattice.emissions(lp.detach()).requires_grad_(True)
        with torch.enable_grad():
            score = partition(semiring, emissions, lattice)
            (indicator,) = torch.autograd.grad(score.sum(), emissions)
        states = indicator.argmax(-1)                                       # (T, N)
        frames = lattice.symbols.gather(1, states.transpose(0, 1))          # (N, T)
        valid = (torch.arange(self.n_frames, device=frames.device) < input_lengths.unsqueeze(1)) \
            & torch.isfinite(score.detach()).unsqueeze(1)
        frames = torch.where(valid, frames, torch.full_like(frames, PAD))
        return frames.reshape(*outer, self.n_frames), score.detach().reshape(outer)

    def align(self, labels: Tensor, label_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The most likely alignment :math:`\\arg\\max_{\\pi:\\, \\mathcal{B}(\\pi) = l} p(\\pi \\mid x)`
        (Viterbi: max semiring, path read from the gradient).

        Returns:
            ``frames (..., T)``, the symbol of every frame (:data:`PAD` past the input's end and for
            impossible labels), and the path's log-probability ``(...)`` (``-inf`` if impossible).
        """
        return self._path(MaxSemiring(), labels, label_lengths)

    def sample_alignment(self, labels: Tensor, label_lengths: Tensor | None = None, *,
                         generator: torch.Generator | None = None) -> Tensor:
        """One alignment drawn from the posterior :math:`p(\\pi \\mid l, x)` per label sequence
        (sample semiring: forward filtering, backward sampling); ``(..., T)`` as in :meth:`align`."""
        return self._path(SampleSemiring(generator), labels, label_lengths)[0]

    # ------------------------------------------------------------------ sampling and decoding
    def sample_frames(self, sample_shape: Sequence[int] = (), *, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
        """Per-frame symbols :math:`\\pi_t \\sim \\mathrm{Cat}(\\mathrm{softmax}(\\log y_t / \\tau))`,
        ``sample_shape + batch_shape + (T,)``."""
        if temperature <= 0:
            raise UserError(f"temperature must be positive, got {temperature}")
        sample_shape = torch.Size(sample_shape)
        lp, _ = self._flat(sample_shape)
        probs = torch.softmax(lp.detach() / temperature, -1).reshape(-1, self.n_classes)
        frames = torch.multinomial(probs, 1, generator=generator).view(self.n_frames, -1)
        return frames.transpose(0, 1).reshape(*sample_shape, *self.batch_shape, self.n_frames)

    def sample(self, sample_shape: Sequence[int] = (), *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Label sequences from the generative story: a symbol per frame, then the label map.

        Returns:
            ``labels (sample_shape + batch_shape + (T,))`` padded with :data:`PAD`, and their
            lengths ``sample_shape + batch_shape``.
        """
        frames = self.sample_frames(sample_shape, temperature=temperature, generator=generator)
        outer = frames.shape[:-1]
        lengths = self.lengths.expand(outer).reshape(-1)
        labels, label_lengths = collapse(frames.reshape(-1, self.n_frames), lengths,
                                         blank=self.blank, collapse_repeats=self.collapse_repeats)
        return labels.reshape(*outer, -1), label_lengths.reshape(outer)

    def best_path(self) -> tuple[Tensor, Tensor]:
        """Best-path decoding: the label map of the frame-wise argmax (``labels``, ``lengths``)."""
        lp, lengths = self._flat()
        labels, label_lengths = best_path(lp.transpose(0, 1), lengths, blank=self.blank,
                                          collapse_repeats=self.collapse_repeats)
        return labels.reshape(*self.batch_shape, -1), label_lengths.reshape(self.batch_shape)

    def beam_search(self, beam_width: int = 16, *, n_best: int = 1,
                    symbol_threshold: float | None = None) -> list[list[tuple[tuple[int, ...], float]]]:
        """Prefix beam search (:func:`~probseq.ctc.decode.prefix_beam_search`) for each input.

        Returns:
            A list over the flattened batch of up to ``n_best`` ``(labels, log_prob)`` pairs, best
            first; ``log_prob`` is the exact :math:`\\log p(l \\mid x)` (rescored by the DP), and
            the list is ordered by it.
        """
        if beam_width < 1 or n_best < 1:
            raise UserError("beam_width and n_best must be positive")
        lp, lengths = self._flat()
        lp = lp.detach()
        results = []
        for b in range(lp.shape[1]):
            steps = int(lengths[b])
            hyps = prefix_beam_search(lp[:steps, b], beam_width=beam_width, blank=self.blank,
                                      collapse_repeats=self.collapse_repeats, n_best=n_best,
                                      symbol_threshold=symbol_threshold)
            results.append([labels for labels, _ in hyps])
        return self._rescore(results)

    def _rescore(self, hypotheses: list[list[tuple[int, ...]]]) -> list[list[tuple[tuple[int, ...], float]]]:
        """Exact log-probabilities of each input's hypotheses, in one batched DP."""
        lp, lengths = self._flat()
        owners = [b for b, hyps in enumerate(hypotheses) for _ in hyps]
        flat = [h for hyps in hypotheses for h in hyps]
        if not flat:
            return [[] for _ in hypotheses]
        width = max(1, max(len(h) for h in flat))
        labels = torch.full((len(flat), width), PAD, dtype=torch.long, device=lp.device)
        for i, h in enumerate(flat):
            labels[i, : len(h)] = torch.tensor(h, dtype=torch.long, device=lp.device)
        label_lengths = torch.tensor([len(h) for h in flat], dtype=torch.long, device=lp.device)
        index = torch.tensor(owners, dtype=torch.long, device=lp.device)
        input_lengths = lengths[index]
        lattice = Lattice.build(labels, label_lengths, input_lengths, blank=self.blank,
                                collapse_repeats=self.collapse_repeats, dtype=lp.dtype)
        with torch.no_grad():
            scores = log_partition(lattice.emissions(lp.detach()[:, index]), lattice).tolist()
        out: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in hypotheses]
        for b, h, s in zip(owners, flat, scores):
            out[b].append((h, s))
        return [sorted(hyps, key=lambda kv: kv[1], reverse=True) for hyps in out]
