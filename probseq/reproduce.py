"""Named published protocols: train with probseq's own commands, score, and print our figure beside
the paper's, with the convention spelled out (``probseq reproduce NAME [ARGS]``).

Each protocol is data: the model, the dataset, the ``--set`` options that encode the paper's recipe,
the training length, and the evaluations with the published figures and their sources
(:data:`PROTOCOLS`). :func:`reproduce` runs ``probseq fit`` (or takes an existing run directory),
then ``probseq evaluate --json`` once per evaluation, and writes ``result.json``: our figures, the
published ones, the gap, the convention, the exact commands, the wall time, and whether the
protocol ran as written (a ``--minutes`` budget that stopped it, a ``--steps`` override or extra
``--set`` options make it *partial*, and the result says so).

Published figures (every one is NLL per frame in nats, or a squared error; lower is better):

* ``sutskever-bouncing-balls`` — Sutskever (2013, PhD thesis, §3.10; also Sutskever, Hinton & Taylor
  2008, §5): RTRBM next-frame squared error 0.007 per pixel (TRBM 0.04) on 30x30 videos of 3 balls.
* ``sutskever-mocap`` — the same thesis and paper, MIT motion capture (49 dims): RTRBM 0.42, TRBM 0.47
  squared error per dimension (their protocol predicts from a longer warm-up; see RESULTS.md).
* ``bl2012-polyphonic DATASET MODEL`` — Boulanger-Lewandowski, Bengio & Vincent (ICML 2012), Table 1
  (and Krishnan, Shalit & Sontag 2017, Table 2): test log-likelihood per time step, pooled over all
  frames of all test sequences (the paper's own evaluation note), length not modelled.
* ``dmm-jsb`` — Krishnan, Shalit & Sontag (AAAI 2017), Table 2, DMM on JSB: ELBO 6.926,
  importance-sampled 6.388; the Pyro DMM example reports a test ELBO of about 6.87.
* ``fsdd-ctc`` — no published figure: the project's goal, a label error rate below 3 % on spoken
  digit strings (Free Spoken Digit Dataset; CTC after Graves et al. 2006).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from probseq.errors import UserError

__all__ = ["Published", "Evaluation", "Protocol", "PROTOCOLS", "protocol", "reproduce", "check_run"]


@dataclass(frozen=True)
class Published:
    """One published figure: ``value`` of ``key`` in ``probseq evaluate --json``'s output."""

    value: float
    source: str


@dataclass(frozen=True)
class Evaluation:
    """One ``probseq evaluate`` of the trained run and the figure(s) it is compared with."""

    key: str                              # the field of evaluate's JSON that is our figure
    metric: str = "nll"
    estimator: str | None = None
    samples: int | None = None
    published: Published | None = None
    goal: float | None = None             # a target without a published source (fsdd-ctc)


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    model: str
    data: str
    convention: str
    evaluations: tuple[Evaluation, ...]
    settings: dict[str, Any] = field(default_factory=dict)   # --set key=value of probseq fit
    steps: int | None = None                                  # None: until validation stops improving
    needs_data: bool = False                                  # --data-file / --data-dir / data home


_POOLED = ("NLL in nats per frame, pooled: the sum over test sequences of -log p(x_{1:T} | T) divided "
           "by the total number of frames (length not modelled)")

#: Boulanger-Lewandowski et al. 2012, Table 1 (NLL per time step). RNN-NADE figures also in Krishnan
#: et al. 2017, Table 2; the RNN-RBM and RTRBM rows are this project's reading of Table 1 for JSB
#: (an earlier RESULTS.md quoted 7.27 for the RNN-RBM; the table reads 6.27)
BL2012_TABLE1: dict[str, dict[str, float]] = {
    "rnn-nade": {"jsb": 5.19, "piano-midi": 7.05, "nottingham": 2.31, "musedata": 5.60},
    "rnn-rbm": {"jsb": 6.27},
    "rtrbm": {"jsb": 6.35},
}
_BL_SOURCE = "Boulanger-Lewandowski, Bengio & Vincent, ICML 2012, Table 1"


def _sutskever_bouncing_balls(args: list[str]) -> Protocol:
    model = args[0] if args else "rtrbm"
    if model not in ("rtrbm", "trbm") or len(args) > 1:
        raise UserError("sutskever-bouncing-balls takes at most one argument, the model: rtrbm or trbm")
    figure = {"rtrbm": 0.007, "trbm": 0.04}[model]
    return Protocol(
        name="sutskever-bouncing-balls", model=model, data="bouncing-balls",
        title=f"{model.upper()} on bouncing balls, Sutskever 2013 thesis §3.10",
        convention=("next-frame squared error per pixel (mean over test frames 2..T and the 900 pixels), "
                    "predicting each frame from the true previous ones; 30x30 frames, 3 balls"),
        settings={"hidden": 400, "preset": "thesis", "cd_steps": 10, "cd_steps_late": 25,
                  "cd_switch": 0.01,          # CD-10 for the first 1,000 of 100,000 updates, then CD-25
                  "pretrain_cd": 5, "n_train": 30,   # W from static CD-5 on 30 sequences
                  "fresh": True, "batch_size": 1, "lr": 0.01, "lr_schedule": "linear",
                  "eval_every": 5000},
        steps=100_000,
        evaluations=(Evaluation("next_frame_mse_per_dim", metric="mse",
                                published=Published(figure, "Sutskever 2013, PhD thesis, §3.10")),))


def _sutskever_mocap(args: list[str]) -> Protocol:
    model = args[0] if args else "rtrbm"
    if model not in ("rtrbm", "trbm") or len(args) > 1:
        raise UserError("sutskever-mocap takes at most one argument, the model: rtrbm or trbm")
    figure = {"rtrbm": 0.42, "trbm": 0.47}[model]
    return Protocol(
        name="sutskever-mocap", model=model, data="mocap-mit", needs_data=True,
        title=f"{model.upper()} on MIT motion capture, Sutskever 2013 thesis §3.10",
        convention=("next-frame squared error per dimension on the held-out motion (49 normalised "
                    "dimensions), each frame predicted from the true previous ones; the thesis warms "
                    "the state up on a longer prefix, so the figures are close but not identical protocols"),
        settings={"hidden": 200, "preset": "thesis"},
        steps=None,
        evaluations=(Evaluation("next_frame_mse_per_dim", metric="mse",
                                published=Published(figure, "Sutskever 2013, PhD thesis, §3.10")),))


def _bl2012_polyphonic(args: list[str]) -> Protocol:
    if len(args) != 2:
        raise UserError("bl2012-polyphonic takes two arguments: DATASET (jsb, piano-midi, nottingham, "
                        "musedata) and MODEL (rnn-nade, rnn-rbm, rtrbm)")
    dataset, model = args
    if dataset not in BL2012_TABLE1["rnn-nade"]:
        raise UserError(f"unknown dataset {dataset!r} for bl2012-polyphonic; expected jsb, piano-midi, "
                        "nottingham or musedata")
    if model not in BL2012_TABLE1:
        raise UserError(f"unknown model {model!r} for bl2012-polyphonic; expected rnn-nade, rnn-rbm or rtrbm")
    figure = BL2012_TABLE1[model].get(dataset)
    settings: dict[str, Any] = {}        # the model's own recipe, unchanged on every set
    return Protocol(
        name="bl2012-polyphonic", model=model, data=dataset, needs_data=dataset != "jsb",
        title=f"{model} on {dataset}, Boulanger-Lewandowski et al. 2012",
        convention=_POOLED + ("; exact" if model == "rnn-nade" else "; AIS estimate of each step's log Z"),
        settings=settings,
        evaluations=(Evaluation("nll_per_frame", published=None if figure is None else
                                Published(figure, _BL_SOURCE)),))


def _dmm_jsb(args: list[str]) -> Protocol:
    if args:
        raise UserError("dmm-jsb takes no arguments")
    return Protocol(
        name="dmm-jsb", model="vrnn", data="jsb",
        title="VRNN on JSB chorales against the Deep Markov Model (Krishnan et al. 2017)",
        convention=_POOLED + "; the ELBO and IWAE-100 are upper bounds on the NLL",
        evaluations=(
            Evaluation("nll_per_frame", estimator="elbo",
                       published=Published(6.926, "Krishnan, Shalit & Sontag 2017, Table 2 (DMM, ELBO)")),
            Evaluation("nll_per_frame", estimator="iwae", samples=100,
                       published=Published(6.388, "Krishnan, Shalit & Sontag 2017, Table 2 "
                                                  "(DMM, importance sampled)")),
        ))


def _fsdd_ctc(args: list[str]) -> Protocol:
    if args:
        raise UserError("fsdd-ctc takes no arguments")
    return Protocol(
        name="fsdd-ctc", model="ctc", data="fsdd", needs_data=True,
        title="CTC recogniser on Free Spoken Digit Dataset strings",
        convention="label error rate: edit distance between decoded and true digit strings over the "
                   "total number of true labels, test speakers' recordings",
        evaluations=(Evaluation("ler", metric="ler", goal=0.03),))


#: every protocol: name -> (one-line summary, a builder taking the positional arguments)
PROTOCOLS: dict[str, tuple[str, Callable[[list[str]], Protocol]]] = {
    "sutskever-bouncing-balls": ("[rtrbm|trbm] thesis §3.10 recipe, 100,000 updates on fresh videos",
                                 _sutskever_bouncing_balls),
    "sutskever-mocap": ("[rtrbm|trbm] MIT motion capture, thesis recipe", _sutskever_mocap),
    "bl2012-polyphonic": ("DATASET MODEL  piano-roll NLL, Boulanger-Lewandowski et al. 2012",
                          _bl2012_polyphonic),
    "dmm-jsb": ("VRNN on JSB, ELBO and IWAE against the DMM", _dmm_jsb),
    "fsdd-ctc": ("CTC on spoken digit strings, label error rate", _fsdd_ctc),
}


def protocol(name: str, args: list[str] | None = None) -> Protocol:
    """Build protocol ``name`` with its positional arguments (a clear error for unknown ones)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name][1](list(args or []))


def reproduce(name: str, args: list[str] | None = None, *, run_command: Callable[[list[str]], str],
              out: str | Path, run: str | Path | None = None,
              minutes: float | None = None, device: str | None = None, steps: int | None = None,
              sets: list[str] | None = None, data_file: str | None = None, data_dir: str | None = None,
              seed: int = 0, threads: int = 0, quiet: bool = True,
              samples: int | None = None) -> dict[str, Any]:
    """Run protocol ``name``; return (and write to ``out/result.json``) the comparison.

    Args:
        run_command: runs ``probseq ARGV`` and returns its standard output
            (:func:`probseq.cli.run_in_process`); the protocol is a sequence of ``probseq`` commands,
            so what it prints is exactly what a user typing them would get.
        out: directory for the run (``out/run``, unless ``run`` is given) and ``result.json``.
        run: score this existing run directory instead of training.
        minutes / steps: a time budget / a step count replacing the protocol's (the result is then
            marked partial unless training ended on its own).
        sets: extra ``key=value`` options for ``probseq fit`` (after the protocol's own).
        device: passed to ``probseq fit`` and ``probseq evaluate``.
        samples: replaces the protocol's number of samples for its sampled estimators (IWAE-k).
    """
    proto = protocol(name, args)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_args = (["--data-file", str(data_file)] if data_file else []) + \
                (["--data-dir", str(data_dir)] if data_dir else [])
    device_args = ["--device", device] if device else []
    commands, fit_summary, train_wall = [], None, None
    if run is None:
        run = out / "run"
        settings = {**proto.settings}
        fit_argv = ["fit", proto.model, "--data", proto.data, *data_args, "--out", str(run),
                    "--seed", str(seed), *device_args]
        for key, value in settings.items():
            fit_argv += ["--set", f"{key}={value}"]
        for pair in sets or []:
            fit_argv += ["--set", pair]
        total = steps if steps is not None else proto.steps
        if total is not None:
            fit_argv += ["--steps", str(total)]
        if minutes is not None:
            fit_argv += ["--minutes", str(minutes)]
        if threads:
            fit_argv += ["--threads", str(threads)]
        if quiet:
            fit_argv += ["--quiet"]
        commands.append("probseq " + shlex.join(fit_argv))
        started = time.perf_counter()
        fit_summary = run_command(fit_argv).strip()
        train_wall = time.perf_counter() - started
    run = Path(run)
    stop = _stop_event(run)
    # an existing run must be the protocol's model, data and recipe (refused otherwise); a run
    # this command trained can only differ by the user's --set, which makes it partial
    reasons = check_run(proto, run, refuse=fit_summary is None)
    if steps is not None and steps != proto.steps:
        reasons.insert(0, f"--steps {steps} replaced the protocol's {proto.steps or 'open-ended'} training")
    if sets:
        reasons.insert(0, f"extra options {', '.join(sets)}")
    partial = bool(reasons)
    rows = []
    for ev in proto.evaluations:
        argv = ["evaluate", str(run), "--split", "test", "--json", "--metric", ev.metric, *device_args]
        if ev.estimator:
            argv += ["--estimator", ev.estimator]
        if ev.samples:
            argv += ["--samples", str(samples or ev.samples)]
        commands.append("probseq " + shlex.join(argv))
        started = time.perf_counter()
        result = json.loads(run_command(argv).strip().splitlines()[-1])
        ours = result.get(ev.key)
        target = ev.published.value if ev.published else ev.goal
        rows.append({
            "metric": ev.key, "estimator": result.get("estimator", ev.estimator), "kind": result.get("kind"),
            "ours": ours, "published": None if ev.published is None else asdict(ev.published),
            "goal": ev.goal, "gap": None if (ours is None or target is None) else ours - target,
            "eval_wall_s": round(time.perf_counter() - started, 1), "evaluate": result,
        })
    summary = {
        "protocol": proto.name, "arguments": list(args or []), "title": proto.title,
        "model": proto.model, "dataset": proto.data, "convention": proto.convention,
        "settings": proto.settings, "overrides": list(sets or []), "protocol_steps": proto.steps,
        "partial": bool(partial), "partial_reasons": list(dict.fromkeys(reasons)),
        "stop": stop, "run_dir": str(run), "train_wall_s": None if train_wall is None else round(train_wall, 1),
        "fit": fit_summary, "commands": commands, "results": rows,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _last_session(run: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(stop, end)``: the ``stop`` and ``end`` records of the run's last training session
    (``None`` where the log has none: a run still going, or killed)."""
    from probseq.evaluate.run_plots import read_log_records

    path = run / "log.jsonl"
    if not path.is_file():
        return None, None
    stop = end = None
    for _, record in read_log_records(path)[0]:
        event = record.get("event")
        if event in ("start", "resume"):
            stop = end = None
        elif event == "stop":
            stop = record
        elif event == "end":
            end = record
    return stop, end


def _stop_event(run: Path) -> dict[str, Any] | None:
    """The last ``stop``/``end`` event of a run's log (why and when training ended)."""
    stop, end = _last_session(run)
    return stop or end


#: trainer options that change no result (how often the run writes), left out of the comparison
_BOOKKEEPING = ("checkpoint_every", "log_every")


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), for comparing with ``run.json``."""
    return json.loads(json.dumps(value))


def check_run(proto: Protocol, run: str | Path, *, refuse: bool = True) -> list[str]:
    """Check a run directory against protocol ``proto``; return why it is partial (empty: complete).

    * Its model, its dataset and every option the protocol sets must be the protocol's: with
      ``refuse`` a difference is a :class:`UserError` sentence (the run is not this protocol),
      otherwise it is a reason for *partial* (the user's ``--set`` on a run this command trained).
    * Options the protocol leaves at the model's recipe but the run changed (``hidden=6``) make it
      partial.
    * How it ended: a protocol with a step count is partial when the run trained fewer steps; an
      open-ended one ("until validation stops improving") when the run was stopped by a step count,
      an epoch count or a time budget instead; a run whose log has no end is partial.
    """
    from probseq.data.spec import DataSpec
    from probseq.models.registry import build_model
    from probseq.train.checkpoint import read_run_info
    from probseq.train.fit import training_options

    run = Path(run)
    info = read_run_info(run)
    reasons: list[str] = []

    def differs(text: str) -> None:
        if refuse:
            raise UserError(f"{run} is not a run of {proto.name} ({proto.title}): {text}")
        reasons.append(text)

    if info["model"] != proto.model:
        differs(f"it holds a {info['model']} model, the protocol trains {proto.model}")
    if info["dataset"]["name"] != proto.data:
        differs(f"it was fitted to {info['dataset']['name']}, the protocol uses {proto.data}")
    recorded = {**(info["dataset"].get("options") or {}), **(info.get("training") or {}),
                **info["hyperparameters"]}
    for key, wanted in proto.settings.items():
        if key not in recorded or _plain(recorded[key]) != _plain(wanted):
            differs(f"it has {key}={recorded.get(key, 'unset')}, the protocol sets {key}={wanted}")
    if info["model"] == proto.model:     # options the recipe leaves alone
        model_settings = {k: v for k, v in proto.settings.items() if k in info["hyperparameters"]}
        model = build_model(proto.model, DataSpec.from_dict(info["spec"]), model_settings)
        training = training_options(model, {k: v for k, v in proto.settings.items()
                                            if k in (info.get("training") or {}) and k not in model_settings})
        for stored, expected in ((info["hyperparameters"], model.config), (info.get("training") or {}, training)):
            changed = sorted(k for k in stored if k not in _BOOKKEEPING and k in expected
                             and _plain(stored[k]) != _plain(expected[k]))
            if changed:
                reasons.append("options beyond the protocol: " + ", ".join(f"{k}={stored[k]}" for k in changed))
    stop, end = _last_session(run)
    reason = (stop or {}).get("reason", "steps")
    if end is None:
        reasons.append("its log records no end of training (still running, or killed)")
    elif proto.steps is not None and end["step"] < proto.steps:
        reasons.append(f"it trained {end['step']} of the protocol's {proto.steps} steps"
                       + (" (the time budget ran out)" if reason == "minutes" else ""))
    elif proto.steps is None and reason not in ("patience", "lr_floor"):
        cut = "the time budget" if reason == "minutes" else f"a training length ({reason})"
        reasons.append(f"{cut} ended it at step {end['step']}, before validation stopped improving")
    return reasons


def format_result(summary: dict[str, Any]) -> str:
    """Our figure beside the paper's, one line per evaluation, then the convention."""
    why = "; ".join(summary.get("partial_reasons") or []) or "the protocol did not run to its end"
    lines = [f"{summary['title']}" + (f" (PARTIAL: {why})" if summary["partial"] else "")]
    for row in summary["results"]:
        ours = "n/a" if row["ours"] is None else f"{row['ours']:.4f}"
        label = f"{row['metric']} [{row['kind'] or row['metric']}, {row['estimator'] or ''}]".replace(", ]", "]")
        if row["published"]:
            ref = f"published {row['published']['value']} ({row['published']['source']})"
        elif row["goal"] is not None:
            ref = f"goal {row['goal']} (no published figure)"
        else:
            ref = "no published figure recorded for this combination"
        gap = "" if row["gap"] is None else f", ours - reference = {row['gap']:+.4f}"
        lines.append(f"  {label}: ours {ours}; {ref}{gap}")
    lines.append(f"  convention: {summary['convention']}")
    return "\n".join(lines)
