"""Piano-roll <-> standard MIDI file.

Writing (:func:`write_pianoroll_midi`): each run of consecutive active steps of one key becomes one
note (a held note), unless ``rearticulate`` says where to strike it again. Time step ``t`` starts at
``t * TICKS_PER_STEP`` ticks, with ``steps_per_beat * TICKS_PER_STEP`` ticks per beat and a tempo
of ``tempo_bpm`` beats per minute, so one step lasts ``60 / (tempo_bpm * steps_per_beat)`` seconds.

Several sequences go into one file in one of two layouts:

* ``"concatenate"`` (default): one note track, the sequences played one after another with
  ``gap_steps`` silent steps between them (default: one 4/4 bar). This is what one wants to
  *listen* to.
* ``"tracks"``: one track per sequence, all starting at time 0. Players sound the tracks together,
  so this is for tools that split tracks (:func:`read_midi_pianoroll_tracks` does).

Every file is MIDI type 1: track 0 holds tempo, time signature and name; note tracks follow. Each
track ends (``end_of_track``) exactly at its sequence's last step, so trailing silence survives a
round trip.

Reading (:func:`read_midi_pianoroll`, :func:`read_midi_pianoroll_tracks`): any MIDI file, any
tempo map, is turned into a ``(T, n_keys)`` float32 0/1 roll sampled at ``steps_per_beat`` steps
per beat (musical time, tempo-independent) or ``fs`` steps per second (clock time, through the tempo
map). A note covering ticks ``[a, b)`` occupies steps ``round(a / L) .. round(b / L) - 1`` (at least
one step), ``L`` the step length. Roll -> MIDI -> roll is the identity at the resolution written.

Uses ``mido`` (``pip install probseq[media]``); files it writes are also read by ``pretty_midi``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.io.pianoroll import LOWEST_NOTE, N_KEYS
from probseq.io.safe_pickle import describe_exception
from probseq.errors import UserError

__all__ = ["write_pianoroll_midi", "read_midi_pianoroll", "read_midi_pianoroll_tracks",
           "TICKS_PER_STEP"]

#: MIDI ticks per piano-roll step in written files
TICKS_PER_STEP = 120
_DRUM_CHANNEL = 9


def _mido():
    try:
        import mido
    except ImportError:
        raise UserError("MIDI files need the mido package; install it with: pip install probseq[media]") from None
    return mido


def _as_rolls(rolls: Batch | Tensor | np.ndarray | Sequence[Tensor | np.ndarray]) -> list[np.ndarray]:
    """A list of ``(T_i, K)`` numpy arrays from a Batch, a (T, K)/(B, T, K) tensor or a list."""
    if isinstance(rolls, Batch):
        seqs = rolls.sequences()
    elif isinstance(rolls, (Tensor, np.ndarray)):
        seqs = [rolls] if rolls.ndim == 2 else list(rolls)
    else:
        seqs = list(rolls)
    if not seqs:
        raise UserError("there are no sequences to write")
    out = []
    for i, s in enumerate(seqs):
        arr = s.detach().cpu().numpy() if isinstance(s, Tensor) else np.asarray(s)
        if arr.ndim != 2:
            raise UserError(f"sequence {i} has shape {arr.shape}; a piano-roll must be (time steps, keys)")
        if arr.shape[0] == 0:
            raise UserError(f"sequence {i} has no time steps")
        if arr.dtype != np.bool_ and not np.isfinite(arr).all():
            raise UserError(f"sequence {i} contains NaN or infinite values")
        out.append(arr)
    widths = {a.shape[1] for a in out}
    if len(widths) != 1:
        raise UserError(f"sequences have different numbers of keys: {sorted(widths)}")
    return out


def _note_spans(active: np.ndarray, onsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes of a ``(T, K)`` bool roll: ``(key, start_step, end_step)`` arrays, end exclusive.

    A note starts where a key turns on, or where ``onsets`` re-strikes an active key; it ends
    where the key turns off or the next note of the same key starts.
    """
    T, K = active.shape
    off = np.zeros((1, K), dtype=bool)
    prev = np.concatenate([off, active[:-1]], axis=0)
    starts = active & ~prev
    if onsets is not None:
        starts |= active & onsets
    nxt_active = np.concatenate([active[1:], off], axis=0)
    nxt_start = np.concatenate([starts[1:], off], axis=0)
    ends = active & (~nxt_active | nxt_start)  # last step of each note
    # key-major order: for each key the starts and ends alternate, so they pair up one to one
    k_s, t_s = np.nonzero(starts.T)
    k_e, t_e = np.nonzero(ends.T)
    assert np.array_equal(k_s, k_e), "every note start has one end"
    return k_s, t_s, t_e + 1


def write_pianoroll_midi(rolls: Batch | Tensor | np.ndarray | Sequence[Tensor | np.ndarray],
                         path: str | Path, *, lowest_note: int = LOWEST_NOTE, steps_per_beat: float = 1,
                         tempo_bpm: float = 120.0, program: int = 0, velocity: int = 80,
                         layout: str = "concatenate", gap_steps: int | None = None,
                         rearticulate: bool | Sequence[Tensor | np.ndarray] = False) -> Path:
    """Write piano-rolls to a standard MIDI file.

    Args:
        rolls: a :class:`Batch` of ``(B, T, K)`` rolls (padding ignored), one ``(T, K)`` roll, a
            ``(B, T, K)`` tensor, or a list of ``(T_i, K)`` rolls. Entries ``> 0.5`` are notes;
            column ``j`` is MIDI note ``lowest_note + j``.
        path: the ``.mid`` file to write.
        lowest_note: MIDI number of column 0 (21 = A0 for 88-key rolls).
        steps_per_beat: steps per quarter-note beat (1 for JSB Chorales, 2 for the other
            Boulanger-Lewandowski sets); ``steps_per_beat * TICKS_PER_STEP`` must be an integer.
        tempo_bpm: beats per minute.
        program: General MIDI program (0 = acoustic grand piano).
        velocity: loudness of every note, 1..127.
        layout: ``"concatenate"`` (one track, sequences one after another) or ``"tracks"`` (one
            track per sequence); see the module docstring.
        gap_steps: silent steps between concatenated sequences (default ``4 * steps_per_beat``,
            one 4/4 bar).
        rearticulate: ``False``: consecutive active steps of a key are one held note. ``True``:
            every active step is struck anew. A list of ``(T_i, K)`` 0/1 arrays: strike where 1
            (an active key that is not marked continues the held note).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    mido = _mido()
    seqs = _as_rolls(rolls)
    K = seqs[0].shape[1]
    if not (0 <= lowest_note and lowest_note + K - 1 <= 127):
        raise UserError(f"{K} keys from MIDI note {lowest_note} go beyond the MIDI range 0..127")
    if not 1 <= int(velocity) <= 127:
        raise UserError(f"velocity must lie in 1..127, got {velocity}")
    if not 0 <= int(program) <= 127:
        raise UserError(f"program must lie in 0..127, got {program}")
    if not tempo_bpm > 0:
        raise UserError(f"tempo must be positive, got {tempo_bpm} bpm")
    ticks_per_beat = steps_per_beat * TICKS_PER_STEP
    if not (steps_per_beat > 0 and abs(ticks_per_beat - round(ticks_per_beat)) < 1e-9
            and 1 <= round(ticks_per_beat) <= 32767):
        raise UserError(
            f"steps_per_beat={steps_per_beat} is not supported; use a positive multiple of "
            f"1/{TICKS_PER_STEP} up to {32767 // TICKS_PER_STEP}"
        )
    ticks_per_beat = int(round(ticks_per_beat))
    if layout not in ("concatenate", "tracks"):
        raise UserError(f"unknown MIDI layout {layout!r}; use 'concatenate' or 'tracks'")
    gap = int(round(4 * steps_per_beat)) if gap_steps is None else int(gap_steps)
    if gap < 0:
        raise UserError(f"gap_steps must be >= 0, got {gap_steps}")

    if rearticulate is True:
        strikes: list[np.ndarray | None] = [np.ones(s.shape, dtype=bool) for s in seqs]
    elif rearticulate is False or rearticulate is None:
        strikes = [None] * len(seqs)
    else:
        strikes = [np.asarray(o.detach().cpu() if isinstance(o, Tensor) else o) > 0.5 for o in rearticulate]
        if len(strikes) != len(seqs) or any(o.shape != s.shape for o, s in zip(strikes, seqs)):
            raise UserError("rearticulate must hold one array of the same shape per sequence")

    # (tick, order, note): order 0 = note off, 1 = note on, so a re-strike at one tick is off-then-on
    def events_of(roll: np.ndarray, onsets: np.ndarray | None, offset_steps: int) -> list[tuple[int, int, int]]:
        keys, start, end = _note_spans(roll > 0.5, onsets)
        notes = keys + lowest_note
        ev = [((offset_steps + int(s)) * TICKS_PER_STEP, 1, int(n)) for n, s in zip(notes, start)]
        ev += [((offset_steps + int(e)) * TICKS_PER_STEP, 0, int(n)) for n, e in zip(notes, end)]
        return ev

    if layout == "concatenate":
        groups, offset, events = [], 0, []
        for roll, onsets in zip(seqs, strikes):
            events += events_of(roll, onsets, offset)
            offset += roll.shape[0] + gap
        groups.append((events, (offset - gap) * TICKS_PER_STEP, "probseq samples"))
    else:
        groups = [(events_of(roll, onsets, 0), roll.shape[0] * TICKS_PER_STEP, f"sequence {i}")
                  for i, (roll, onsets) in enumerate(zip(seqs, strikes))]

    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name="probseq", time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(conductor)
    channels = [c for c in range(16) if c != _DRUM_CHANNEL]
    for i, (events, end_tick, name) in enumerate(groups):
        channel = channels[i % len(channels)]
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        track.append(mido.Message("program_change", program=int(program), channel=channel, time=0))
        now = 0
        for tick, order, note in sorted(events):
            kind = "note_on" if order == 1 else "note_off"
            track.append(mido.Message(kind, note=note, velocity=int(velocity) if order else 0,
                                      channel=channel, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
        midi.tracks.append(track)
    path = Path(path)
    try:
        midi.save(str(path))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# --------------------------------------------------------------------------- reading
def _open_midi(path: str | Path):
    mido = _mido()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such MIDI file: {path}")
    try:
        return mido.MidiFile(str(path))
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError, ... on junk
        raise UserError(f"{path} is not a readable MIDI file ({describe_exception(exc)})") from None


class _Clock:
    """Maps absolute ticks to fractional roll steps, in beats or through the tempo map."""

    def __init__(self, midi, steps_per_beat: float | None, fs: float | None) -> None:
        self.tpb = midi.ticks_per_beat
        if self.tpb <= 0:
            raise UserError("the MIDI file uses SMPTE time division, which probseq does not read")
        self.steps_per_beat, self.fs = steps_per_beat, fs
        if fs is not None:
            changes: dict[int, int] = {}
            for track in midi.tracks:
                tick = 0
                for msg in track:
                    tick += msg.time
                    if msg.type == "set_tempo":
                        changes[tick] = msg.tempo
            ticks = sorted(changes)
            if not ticks or ticks[0] != 0:
                changes.setdefault(0, 500000)  # MIDI default: 120 bpm
                ticks = sorted(changes)
            self._ticks = np.array(ticks, dtype=np.float64)
            self._tempo = np.array([changes[t] for t in ticks], dtype=np.float64)  # us per beat
            seg = np.diff(self._ticks) * self._tempo[:-1] / (1e6 * self.tpb)
            self._seconds = np.concatenate([[0.0], np.cumsum(seg)])

    def steps(self, ticks: np.ndarray) -> np.ndarray:
        ticks = np.asarray(ticks, dtype=np.float64)
        if self.fs is None:
            return ticks / self.tpb * self.steps_per_beat
        i = np.searchsorted(self._ticks, ticks, side="right") - 1
        seconds = self._seconds[i] + (ticks - self._ticks[i]) * self._tempo[i] / (1e6 * self.tpb)
        return seconds * self.fs


def _track_notes(track, include_drums: bool) -> tuple[list[tuple[int, int, int]], int]:
    """``[(note, start_tick, end_tick)]`` of one track (FIFO pairing of on/off) and its end tick."""
    tick, open_notes, notes = 0, {}, []
    for msg in track:
        tick += msg.time
        if msg.type not in ("note_on", "note_off"):
            continue
        if msg.channel == _DRUM_CHANNEL and not include_drums:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault(key, []).append(tick)
        elif open_notes.get(key):
            notes.append((msg.note, open_notes[key].pop(0), tick))
    for (_, note), starts in open_notes.items():  # never released: hold to the end of the track
        notes.extend((note, s, tick) for s in starts)
    return notes, tick


def _roll_from_notes(notes: list[tuple[int, int, int]], end_tick: int, clock: _Clock,
                     lowest_note: int, n_keys: int, out_of_range: str, source: str) -> Tensor | None:
    arr = np.array(notes, dtype=np.int64).reshape(-1, 3)
    pitch = arr[:, 0]
    inside = (pitch >= lowest_note) & (pitch < lowest_note + n_keys)
    if not inside.all():
        bad = np.unique(pitch[~inside])
        message = (f"{source} has {int((~inside).sum())} note(s) outside MIDI "
                   f"{lowest_note}..{lowest_note + n_keys - 1} (pitches {bad.tolist()})")
        if out_of_range == "error":
            raise UserError(message)
        warnings.warn(message + "; they were dropped", stacklevel=3)
        arr = arr[inside]
    if arr.shape[0] == 0:
        return None
    start = np.floor(clock.steps(arr[:, 1]) + 0.5).astype(np.int64)
    end = np.floor(clock.steps(arr[:, 2]) + 0.5).astype(np.int64)
    end = np.maximum(end, start + 1)  # a note shorter than half a step still sounds for one step
    T = int(max(end.max(), math.floor(float(clock.steps(np.array([end_tick]))[0]) + 0.5)))
    # mark [start, end) per note with a difference array: +1 at start, -1 at end, cumulative sum
    diff = np.zeros((T + 1, n_keys), dtype=np.int64)
    cols = arr[:, 0] - lowest_note
    np.add.at(diff, (start, cols), 1)
    np.add.at(diff, (end, cols), -1)
    roll = np.cumsum(diff[:-1], axis=0) > 0
    return torch.from_numpy(roll.astype(np.float32))


def _check_resolution(steps_per_beat: float | None, fs: float | None) -> None:
    if (steps_per_beat is None) == (fs is None):
        raise UserError("give exactly one time resolution for reading MIDI: steps_per_beat or fs")
    value = steps_per_beat if fs is None else fs
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"the MIDI time resolution must be positive, got {value}")


def read_midi_pianoroll(path: str | Path, *, steps_per_beat: float | None = None,
                        fs: float | None = None, lowest_note: int = LOWEST_NOTE,
                        n_keys: int = N_KEYS, include_drums: bool = False,
                        out_of_range: str = "drop") -> Tensor:
    """Read any MIDI file as one piano-roll (all tracks and channels merged).

    Args:
        path: a standard MIDI file (type 0 or 1; the tracks of a rare type-2 file, which are
            separate songs, are read as if they played together).
        steps_per_beat: roll steps per quarter-note beat (musical time; ignores tempo). Give this
            or ``fs``.
        fs: roll steps per second (clock time through the file's tempo map).
        lowest_note, n_keys: the keyboard; column ``j`` is MIDI note ``lowest_note + j``.
        include_drums: also read channel 10 (General MIDI percussion; off by default, since drum
            "notes" are instruments, not pitches).
        out_of_range: ``"drop"`` notes outside the keyboard (with a warning) or ``"error"``.

    Returns:
        ``(T, n_keys)`` float32 0/1 roll; ``T`` covers the last note and the end of the longest track.

    Raises:
        UserError: missing, corrupt or non-MIDI file, or a file with no notes on the keyboard.
    """
    _check_resolution(steps_per_beat, fs)
    if out_of_range not in ("drop", "error"):
        raise UserError(f"out_of_range must be 'drop' or 'error', got {out_of_range!r}")
    midi = _open_midi(path)
    clock = _Clock(midi, steps_per_beat, fs)
    notes, end_tick = [], 0
    for track in midi.tracks:
        track_notes, track_end = _track_notes(track, include_drums)
        notes += track_notes
        end_tick = max(end_tick, track_end)
    roll = _roll_from_notes(notes, end_tick, clock, lowest_note, n_keys, out_of_range, str(path)) if notes else None
    if roll is None:
        raise UserError(f"{path} has no notes in MIDI {lowest_note}..{lowest_note + n_keys - 1}")
    return roll


def read_midi_pianoroll_tracks(path: str | Path, *, steps_per_beat: float | None = None,
                               fs: float | None = None, lowest_note: int = LOWEST_NOTE,
                               n_keys: int = N_KEYS, include_drums: bool = False,
                               out_of_range: str = "drop") -> list[Tensor]:
    """Read a MIDI file as one roll per track that has notes (e.g. a ``layout="tracks"`` file).

    Arguments as :func:`read_midi_pianoroll`; each roll is ``(T_i, n_keys)``, ``T_i`` covering the
    track's last note and its ``end_of_track``. Tempo changes in any track apply to all (type 1).
    """
    _check_resolution(steps_per_beat, fs)
    if out_of_range not in ("drop", "error"):
        raise UserError(f"out_of_range must be 'drop' or 'error', got {out_of_range!r}")
    midi = _open_midi(path)
    clock = _Clock(midi, steps_per_beat, fs)
    rolls = []
    for i, track in enumerate(midi.tracks):
        notes, end_tick = _track_notes(track, include_drums)
        if notes:
            roll = _roll_from_notes(notes, end_tick, clock, lowest_note, n_keys, out_of_range,
                                    f"{path}, track {i}")
            if roll is not None:
                rolls.append(roll)
    if not rolls:
        raise UserError(f"{path} has no notes in MIDI {lowest_note}..{lowest_note + n_keys - 1}")
    return rolls
