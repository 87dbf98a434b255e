"""PNG pictures of sequences: piano-rolls, frame heatmaps and video film strips.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), never through
``pyplot``: nothing opens a window and the caller's pyplot backend is left alone.
Needs matplotlib (``pip install probseq[media]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from probseq.data.batch import Batch
from probseq.io.pianoroll import LOWEST_NOTE
from probseq.errors import UserError

__all__ = ["plot_pianoroll", "plot_frames", "plot_ctc_alignment"]

SequencesLike = Batch | Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("PNG output needs matplotlib; install it with: pip install probseq[media]") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _sequences(data: SequencesLike, max_sequences: int, *,
               allow_1d: bool = False) -> tuple[list[np.ndarray], int]:
    """Up to ``max_sequences`` ``(T_i, ...)`` arrays and the total number given.

    A 2-D array or tensor is one sequence; with ``allow_1d`` a ``(T,)`` sequence (categorical
    symbols) becomes ``(T, 1)``.
    """
    if isinstance(data, Batch):
        seqs = data.sequences()
    elif isinstance(data, (Tensor, np.ndarray)):
        seqs = [data] if data.ndim == 2 else list(data)
    else:
        seqs = list(data)
    if not seqs:
        raise UserError("there are no sequences to plot")
    arrays = [np.asarray(s.detach().cpu().float() if isinstance(s, Tensor) else s, dtype=np.float32)
              for s in seqs[:max_sequences]]
    if allow_1d:
        arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    for i, a in enumerate(arrays):
        if a.ndim < 2 or a.shape[0] == 0:
            raise UserError(f"sequence {i} has shape {a.shape}; expected (time steps, ...) with at least one step")
    return arrays, len(seqs)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        fig.savefig(str(path), format="png")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _title(title: str | None, shown: int, total: int) -> str | None:
    if total > shown:
        extra = f"(first {shown} of {total} sequences)"
        return f"{title} {extra}" if title else extra
    return title


def plot_pianoroll(rolls: SequencesLike, path: str | Path, *, title: str | None = None,
                   lowest_note: int = LOWEST_NOTE, steps_per_beat: float | None = None,
                   max_sequences: int = 8) -> Path:
    """Draw piano-rolls as a PNG: one panel per sequence, time across, pitch up.

    Args:
        rolls: a :class:`Batch` ``(B, T, K)``, one ``(T, K)`` roll, a ``(B, T, K)`` tensor or a list
            of ``(T_i, K)`` rolls; column ``j`` is MIDI note ``lowest_note + j``. Values in [0, 1]
            (probabilities are shown as grey levels).
        path: the ``.png`` to write.
        title: figure title.
        lowest_note: MIDI number of column 0; the pitch axis is labelled at every C (C4 = 60).
        steps_per_beat: if given, the time axis is in beats instead of steps.
        max_sequences: draw at most this many panels (the title says how many were left out).

    Returns:
        ``path``.
    """
    seqs, total = _sequences(rolls, max_sequences)
    widths = {s.shape[1] for s in seqs}
    if any(s.ndim != 2 for s in seqs) or len(widths) != 1:
        raise UserError("piano-rolls must all have shape (time steps, keys) with the same keys")
    K = widths.pop()
    n = len(seqs)
    fig = _figure(10, 1.2 + 2.2 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    c_notes = [m for m in range(lowest_note, lowest_note + K) if m % 12 == 0]
    for i, (ax, roll) in enumerate(zip(axes, seqs)):
        T = roll.shape[0]
        scale = 1.0 / steps_per_beat if steps_per_beat else 1.0
        ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", vmin=0.0, vmax=1.0,
                  interpolation="nearest",
                  extent=(0, T * scale, lowest_note - 0.5, lowest_note + K - 0.5))
        ax.set_yticks(c_notes)
        ax.set_yticklabels([f"C{m // 12 - 1}" for m in c_notes], fontsize=7)
        ax.set_ylabel(f"seq {i}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("beat" if steps_per_beat else "time step")
    shown_title = _title(title, n, total)
    if shown_title:
        fig.suptitle(shown_title)
    fig.tight_layout()
    return _save(fig, path)


def plot_frames(sequences: SequencesLike, path: str | Path, *, title: str | None = None,
                frame_shape: Sequence[int] | None = None, max_sequences: int = 8,
                max_frames: int = 20) -> Path:
    """Draw any frame sequences as a PNG.

    With ``frame_shape = (H, W)`` (video, e.g. bouncing balls 30 x 30) each sequence is a film
    strip of up to ``max_frames`` evenly spaced frames (grey levels, 0 = black). Otherwise each
    sequence is a heatmap of its ``(T, D)`` frames, dimension up, time across (categorical
    ``(T,)`` sequences are drawn as one row of symbol indices).

    Returns:
        ``path``.
    """
    seqs, total = _sequences(sequences, max_sequences, allow_1d=True)
    n = len(seqs)
    if frame_shape is not None:
        H, W = (int(v) for v in frame_shape)
        cols = min(max_frames, max(s.shape[0] for s in seqs))
        fig = _figure(max(4.0, 0.8 * cols), 0.6 + 0.9 * n)
        axes = fig.subplots(n, cols, squeeze=False)
        for i, seq in enumerate(seqs):
            if seq[0].size != H * W:
                raise UserError(f"frames of {seq[0].size} values cannot be shown as {H}x{W} images")
            picks = np.unique(np.linspace(0, seq.shape[0] - 1, num=min(cols, seq.shape[0])).round().astype(int))
            for j in range(cols):
                ax = axes[i, j]
                ax.set_axis_off()
                if j < len(picks):
                    ax.imshow(seq[picks[j]].reshape(H, W), cmap="gray", vmin=0.0, vmax=1.0,
                              interpolation="nearest")
                    if i == 0:
                        ax.set_title(f"t={picks[j]}", fontsize=7)
    else:
        fig = _figure(10, 1.2 + 2.0 * n)
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for i, (ax, seq) in enumerate(zip(axes, seqs)):
            flat = seq.reshape(seq.shape[0], -1)
            image = ax.imshow(flat.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
            fig.colorbar(image, ax=ax, fraction=0.03)
            ax.set_ylabel(f"seq {i}: dim", fontsize=8)
        axes[-1].set_xlabel("time step")
    shown_title = _title(title, n, total)
    if shown_title:
        fig.suptitle(shown_title)
    fig.tight_layout()
    return _save(fig, path)


def plot_ctc_alignment(log_probs: Tensor, labels: Sequence[int], path: str | Path, *, blank: int = 0,
                       symbols: str | Sequence[str] | None = None, title: str | None = None) -> Path:
    """Draw what CTC makes of one input: per-frame probabilities and the posterior alignment.

    Left: the per-frame symbol probabilities :math:`y_t(c)`; right: the posterior marginals
    :math:`P(\\pi_t = c \\mid l, x)` of the alignment given the label sequence ``l``
    (:meth:`probseq.ctc.CTC.marginals`, the forward-backward occupation probabilities), with the
    Viterbi alignment (:meth:`probseq.ctc.CTC.align`) drawn over it.

    Args:
        log_probs: ``(T, C)`` per-frame log-probabilities (or logits).
        labels: the label sequence ``l`` (no blanks).
        symbols: a name per class (``symbols[blank]`` is shown as ``-``); default the class indices.

    Returns:
        ``path``.
    """
    import torch

    from probseq.ctc import CTC

    lp = torch.as_tensor(log_probs, dtype=torch.float64)
    if lp.dim() != 2:
        raise UserError(f"log_probs must have shape (T, C), got {tuple(lp.shape)}")
    target = torch.as_tensor(list(labels), dtype=torch.long)
    ctc = CTC(lp, blank=blank)
    marginals = ctc.marginals(target).numpy()
    path_symbols, _ = ctc.align(target)
    names = [str(c) for c in range(lp.shape[1])] if symbols is None else [str(c) for c in symbols]
    names[blank] = "-"
    fig = _figure(10, 3.2)
    axes = fig.subplots(1, 2)
    for ax, image, heading in ((axes[0], ctc.logits.exp().numpy(), "per-frame probabilities y_t(c)"),
                               (axes[1], marginals, "posterior alignment P(pi_t = c | l, x)")):
        ax.imshow(image.T, aspect="auto", origin="lower", cmap="Greys", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xlabel("frame t")
        ax.set_title(heading, fontsize=9)
    axes[1].plot(range(lp.shape[0]), path_symbols.numpy(), color="tab:red", lw=1, label="Viterbi")
    axes[1].legend(fontsize=7, loc="upper right")
    label_text = "".join(names[int(c)] for c in target) if all(len(names[int(c)]) == 1 for c in target) \
        else " ".join(names[int(c)] for c in target)
    fig.suptitle(title or f"l = {label_text}")
    fig.tight_layout()
    return _save(fig, path)
