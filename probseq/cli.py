"""The ``probseq`` command: a thin layer over the library (see DESIGN.md for the contract).

Anything a user can get wrong ends with one sentence on stderr and a non-zero exit status, never a
traceback: library code raises :class:`~probseq.errors.UserError` at the boundary and :func:`main`
turns it into ``probseq: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from probseq.errors import UserError

__all__ = ["main"]


# ---------------------------------------------------------------------------- helpers
def _parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _route_options(model_cls, dataset_name: str, options: dict[str, str]):
    """Split ``--set`` options into model hyperparameters, training options and dataset options."""
    from probseq.data.registry import dataset_infos
    from probseq.train.fit import TRAINING_DEFAULTS

    loader = {d.name: d.loader for d in dataset_infos()}.get(dataset_name)
    loader_params = ({name for name, p in inspect.signature(loader).parameters.items()
                      if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"data_file", "data_dir", "run_meta"}
                     if loader else set())
    training_keys = set(TRAINING_DEFAULTS) | set(getattr(model_cls, "training_defaults", {}))
    model_opts, train_opts, data_opts = {}, {}, {}
    for key, value in options.items():
        if key in model_cls.hyperparameters:
            model_opts[key] = value
        elif key in training_keys:
            train_opts[key] = value
        elif key in loader_params:
            data_opts[key] = _coerce(value)
        else:
            known = sorted(set(model_cls.hyperparameters) | training_keys | loader_params)
            raise UserError(f"unknown option {key!r} for model {model_cls.name!r} and dataset "
                            f"{dataset_name!r}; known options: {', '.join(known)}")
    return model_opts, train_opts, data_opts


def _coerce(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _load_data(name: str, data_file: str | None, data_dir: str | None, options: dict[str, Any],
               run_meta: dict[str, Any] | None = None):
    """Load a dataset; ``run_meta`` (a run's stored meta) goes to loaders that take it, which then
    reuse the preprocessing learnt at fit time (normalisation) instead of learning it again."""
    from probseq.data.registry import dataset_info, load_dataset

    if run_meta is not None and "run_meta" in inspect.signature(dataset_info(name).loader).parameters:
        options = {**options, "run_meta": run_meta}
    return load_dataset(name, data_file=data_file, data_dir=data_dir, **options)


def _abs(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).exists() and "," in path:   # --data-file a.mid,b.mid
        return ",".join(str(Path(p.strip()).resolve()) for p in path.split(",") if p.strip())
    return str(Path(path).resolve())


def _dataset_for_run(info: dict[str, Any], args) -> tuple[Any, str]:
    """The dataset named on the command line, or the run's own."""
    if getattr(args, "data", None):
        return _load_data(args.data, args.data_file, args.data_dir, {}), args.data
    if args.data_file or args.data_dir:
        d = info["dataset"]
        return _load_data(d["name"], args.data_file, args.data_dir, d.get("options") or {},
                          info.get("meta")), d["name"]
    d = info["dataset"]
    return _load_data(d["name"], d.get("data_file"), d.get("data_dir"), d.get("options") or {},
                      info.get("meta")), d["name"]


def _check_compatible(model, dataset) -> None:
    if dataset.spec != model.spec:
        raise UserError(
            f"dataset {dataset.name!r} has {dataset.spec.kind} frames of dimension {dataset.spec.dim}, "
            f"but the model was fitted to {model.spec.kind} frames of dimension {model.spec.dim}"
        )


# ---------------------------------------------------------------------------- commands
def cmd_fit(args) -> int:
    """``probseq fit``: a new run, or ``--resume`` of one, in a directory this process owns.

    The directory's lock is held from before it is inspected until training ends
    (:mod:`probseq.train.run_directory`); every option, budget, the model and the data are checked
    before ``run.json`` is written, and a start that fails before its first checkpoint leaves
    nothing behind.
    """
    from probseq.parallel import start
    from probseq.train.run_directory import check_budget, own_run_directory, run_state

    out = Path(args.out)
    check_budget(args.steps, args.epochs, args.minutes)
    device, job = start(args.device, command="fit", distributed=True)   # torchrun: joins the job
    with own_run_directory(out, job):
        state = run_state(out)
        job.barrier()                    # every process has looked before rank 0 changes anything
        if args.resume:
            summary, resumed = _resume_run(args, out, state, device, job)
        else:
            summary, resumed = _new_run(args, out, state, device, job), False
    if not job.is_main:
        return 0
    stop = {"patience": " (validation stopped improving)", "lr_floor": " (learning rate at its floor)",
            "minutes": " (time budget spent)"}.get(summary.stop_reason, "")
    if resumed and summary.wall_s == 0.0:      # the run had already reached its end
        print(f"nothing to train: the run in {out} had already ended at step {summary.steps}{stop}; "
              "a larger --steps, --epochs or --minutes extends it")
        return 0
    best = "" if summary.best_valid is None else (
        f"; best validation loss {summary.best_valid:.4f} at step {summary.best_step}")
    print(f"trained {args.model} for {summary.steps} steps{stop} in {summary.wall_s:.1f} s{best}; "
          f"run saved in {out}")
    return 0


def _notice(text: str) -> None:
    print(f"probseq: {text}", file=sys.stderr)


def _new_run(args, out: Path, state: str, device, job):
    """``fit`` without ``--resume``: a run from the command line's options."""
    from probseq.models.registry import model_class

    if state == "resumable":
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if state == "weights":
        raise UserError(f"{out} already holds a run's weights but no checkpoint to resume from; "
                        "choose another --out (or delete it to start over)")
    if state == "started" and job.is_main:
        _notice(f"{out} holds a run that stopped before its first checkpoint; starting it over")
    cls = model_class(args.model)
    model_opts, train_opts, data_opts = _route_options(cls, args.data, _parse_sets(args.set))
    dataset = _load_data(args.data, args.data_file, args.data_dir, data_opts)
    config = {"model": args.model, "hyperparameters": model_opts, "training": train_opts,
              "steps": args.steps, "epochs": args.epochs, "minutes": args.minutes,
              "seed": 0 if args.seed is None else args.seed,
              "dataset": {"name": args.data, "data_file": _abs(args.data_file),
                          "data_dir": _abs(args.data_dir), "options": data_opts}}
    return _start_run(config, dataset, out, device, job, quiet=args.quiet)


def _start_run(config: dict[str, Any], dataset, out: Path, device, job, *, quiet: bool):
    """Build, check, write ``run.json`` (only now: everything it says has been checked) and train."""
    import torch

    from probseq.models.registry import build_model
    from probseq.train.checkpoint import write_run_info
    from probseq.train.fit import fit, training_options

    torch.manual_seed(config["seed"])
    model = build_model(config["model"], dataset.spec, config["hyperparameters"])
    opts = training_options(model, config["training"])
    for split, examples in dataset.splits.items():
        model.validate_examples(examples, f"the {split} split")
    if job.is_main:
        (out / "log.jsonl").unlink(missing_ok=True)      # a failed start's log, when starting over
        write_run_info(out, {
            **config, "spec": dataset.spec.to_dict(), "hyperparameters": model.config, "training": opts,
            "meta": dataset.meta, "version": _version(),
        })
    return fit(model, dataset, out, steps=config["steps"], epochs=config["epochs"], minutes=config["minutes"],
               seed=config["seed"], options=opts, progress=not quiet, device=device)


def _resume_run(args, out: Path, state: str, device, job):
    """``fit --resume``: the run's own model, data, options and seed; a new budget if given.

    Returns ``(summary, resumed)``; ``resumed`` is false when the run had no checkpoint and
    started over from its ``run.json``.
    """
    from probseq.data.spec import DataSpec
    from probseq.models.registry import build_model
    from probseq.train.checkpoint import read_run_info, write_run_info
    from probseq.train.fit import fit

    info = read_run_info(out)
    if info["model"] != args.model:
        raise UserError(f"{out} holds a {info['model']!r} run, not {args.model!r}")
    _check_resume_options(args, info, out)
    d = info["dataset"]
    if args.steps is not None or args.epochs is not None:    # a new training length replaces the old
        info["steps"], info["epochs"] = args.steps, args.epochs
    if args.minutes is not None:
        info["minutes"] = args.minutes
    if state == "weights":
        raise UserError(f"{out} holds weights but no checkpoint.pt, so it cannot be resumed; "
                        "choose another --out to train again")
    dataset = _load_data(d["name"], d.get("data_file"), d.get("data_dir"), d.get("options") or {},
                         info.get("meta"))
    if state == "started":
        if job.is_main:
            _notice(f"{out} has no checkpoint (its run stopped before the first one); starting it over "
                    "with the settings in its run.json")
        config = {k: info.get(k) for k in ("model", "hyperparameters", "training", "steps", "epochs",
                                           "minutes", "seed", "dataset")}
        config["seed"] = config["seed"] or 0
        return _start_run(config, dataset, out, device, job, quiet=args.quiet), False
    model = build_model(info["model"], DataSpec.from_dict(info["spec"]), info["hyperparameters"])
    if job.is_main:
        write_run_info(out, {k: v for k, v in info.items() if k != "format"})   # the new budget
    summary = fit(model, dataset, out, steps=info.get("steps"), epochs=info.get("epochs"),
                  minutes=info.get("minutes"), seed=info.get("seed") or 0, options=info.get("training"),
                  resume=True, progress=not args.quiet, device=device)
    return summary, True


def _check_resume_options(args, info: dict[str, Any], out: Path) -> None:
    """Refuse, in one sentence, a ``--resume`` whose options would change the run.

    ``--data``, ``--data-file``/``--data-dir``, ``--set`` and ``--seed`` may be repeated as the run
    was set up (so the command that started a run, with ``--resume`` added, continues it); a
    different value is refused. The training length (``--steps``, ``--epochs``, ``--minutes``)
    may change: that is what extending a run means.
    """
    from probseq.models.registry import model_class, parse_option_value

    d = info["dataset"]
    again = "--resume continues a run as it was set up; start a new run (another --out) to change it"
    if args.data != d["name"]:
        raise UserError(f"{out} was fitted to --data {d['name']}, not {args.data}; {again}")
    for flag, key, given in (("--data-file", "data_file", args.data_file), ("--data-dir", "data_dir", args.data_dir)):
        if given is not None and _abs(given) != d.get(key):
            raise UserError(f"{out} was fitted to {flag} {d.get(key)}, not {_abs(given)}; {again}")
    if args.seed is not None and args.seed != info.get("seed", 0):
        raise UserError(f"{out} was fitted with --seed {info.get('seed', 0)}, not {args.seed}; {again}")
    model_opts, train_opts, data_opts = _route_options(model_class(info["model"]), d["name"],
                                                       _parse_sets(args.set))
    recorded = [(model_opts, info.get("hyperparameters") or {}), (train_opts, info.get("training") or {}),
                (data_opts, d.get("options") or {})]
    for given, stored in recorded:
        for key, text in given.items():
            before = stored.get(key)
            value = text if not isinstance(text, str) else parse_option_value(key, text, before)
            if value != before:
                raise UserError(f"--set {key}={text} differs from the run's {key}={before}; {again}")


def _version() -> str:
    from probseq import __version__

    return __version__


def cmd_evaluate(args) -> int:
    import torch

    from probseq.evaluate.prediction import next_frame_errors, starting_point_errors
    from probseq.evaluate.chunking import resolve_frame_budget
    from probseq.device import generator_for
    from probseq.evaluate.sharded import score_split_sharded
    from probseq.train.checkpoint import load_run
    from probseq.parallel import start

    device, job = start(args.device, command="evaluate", distributed=True)
    model, info = load_run(args.run, device=device)
    dataset, name = _dataset_for_run(info, args)
    _check_compatible(model, dataset)
    examples = dataset.split(args.split)
    model.validate_examples(examples, f"the {args.split} split")
    result: dict[str, Any] = {"model": info["model"], "dataset": name, "split": args.split}
    generator = generator_for(model, args.seed)
    if args.metric == "nll":
        # torchrun: batches spread over the processes, each seeded by its index; rank 0 prints
        scores = score_split_sharded(model, examples, estimator=args.estimator, samples=args.samples,
                                     batch_size=args.batch_size,
                                     frame_budget=resolve_frame_budget(args.frame_budget),
                                     seed=args.seed, job=job, progress=True)
        if scores is None:
            return 0
        result.update(scores.summary())
        if dataset.meta.get("unit") == "character":  # text: bits per character beside nats
            from probseq.data.sets.text import bits_per_character

            result["bits_per_char"] = bits_per_character(result["nll_per_frame"])
    elif not job.is_main:                # other metrics run on rank 0 alone
        return 0
    elif args.metric == "mse":
        result.update({"n_sequences": len(examples), "n_frames": int(sum(len(e) for e in examples))})
        result.update(next_frame_errors(model, examples, batch_size=args.batch_size,
                                        frame_budget=resolve_frame_budget(args.frame_budget)))
        # a model that starts from a fit to the data: that start, untrained, as a third baseline
        result.update(starting_point_errors(info, dataset, examples, batch_size=args.batch_size,
                                            frame_budget=resolve_frame_budget(args.frame_budget)))
    elif args.metric == "infill":        # hide values, fill them in, score (probseq.evaluate.infill)
        from probseq.evaluate.infill import infill_metrics

        result.update(infill_metrics(model, examples, dataset.split("train"), hide=args.hide,
                                     pattern=args.hide_pattern, particles=args.samples, draws=args.draws,
                                     seed=args.seed, batch_size=args.batch_size))
    elif args.metric in getattr(model, "extra_metrics", ()):
        result.update(model.evaluate_metric(args.metric, examples, generator=generator,
                                            batch_size=args.batch_size))
    else:
        known = ", ".join(("nll", "mse", "infill") + tuple(getattr(model, "extra_metrics", ())))
        raise UserError(f"unknown metric {args.metric!r} for model {info['model']!r}; known: {known}")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")
    return 0


def cmd_infill(args) -> int:
    from probseq.device import generator_for
    from probseq.missing.files import fill_file
    from probseq.train.checkpoint import load_run
    from probseq.parallel import start

    device, _ = start(args.device, command="infill", distributed=False)
    model, info = load_run(args.run, device=device)
    print(fill_file(model, info.get("meta") or {}, args.input, args.out, draws=args.samples,
                    particles=args.particles, mode=args.mode, missing_seconds=args.missing_seconds,
                    missing_frames=args.missing_frames, generator=generator_for(model, args.seed)))
    return 0


def cmd_sample(args) -> int:
    import torch

    from probseq.device import generator_for
    from probseq.io.media import read_prime, write_samples
    from probseq.train.checkpoint import load_run
    from probseq.parallel import start

    device, _ = start(args.device, command="sample", distributed=False)
    model, info = load_run(args.run, device=device)
    meta = info.get("meta") or {}
    generator = generator_for(model, args.seed)
    prefix = None
    if args.prime:
        if not Path(args.prime).is_file():
            raise UserError(f"no such file: {args.prime}")
        text = model.sample_from_prime_file(args.prime, n=args.n, temperature=args.temperature,
                                            generator=generator, meta=meta, max_length=args.max_length)
        if text is not None:
            print(text)
            if args.out:
                Path(args.out).write_text(text + "\n")
                print(f"wrote {args.out}")
            return 0
        prefix = read_prime(args.prime, meta).unsqueeze(0)
        if model.spec.kind == "categorical":
            model.validate_examples([prefix[0]], f"the prime {args.prime}")
        elif prefix.shape[-1] != model.spec.dim:
            raise UserError(f"the prime has frames of dimension {prefix.shape[-1]}, the model expects "
                            f"{model.spec.dim}")
    from probseq.data.sets.text import format_samples, is_text

    if not args.out and not is_text(meta):
        raise UserError("give an output file with --out (its extension picks the format)")
    samples = model.sample(args.n, length=args.length, max_length=args.max_length, prefix=prefix,
                           temperature=args.temperature, generator=generator)
    samples = samples.to("cpu") if hasattr(samples, "to") else samples   # files are written from the CPU
    if is_text(meta):  # text is printed; --out FILE.txt also writes it
        print(format_samples(samples, meta))
        if not args.out:
            return 0
    paths = write_samples(samples, Path(args.out), meta)
    lengths = ", ".join(str(int(n)) for n in samples.lengths)
    print(f"sampled {args.n} sequence(s) of length {lengths}; wrote {', '.join(str(p) for p in paths)}")
    return 0


#: dataset options and meta keys that do not change what the frames are (not preprocessing)
_NOT_PREPROCESSING = {"cache", "source", "title", "files"}


def _refuse_mixed_preprocessing(runs, infos) -> None:
    """One sentence when runs on one dataset were fitted on different preprocessing (resolution,
    pitch range, normalisation, ...): their likelihoods are of different data."""
    def preprocessing(info):
        d = info["dataset"]
        options = {k: v for k, v in (d.get("options") or {}).items() if k not in _NOT_PREPROCESSING}
        meta = {k: v for k, v in (info.get("meta") or {}).items() if k not in _NOT_PREPROCESSING}
        return d["name"], json.dumps(options, sort_keys=True, default=str), json.dumps(meta, sort_keys=True, default=str)

    first = preprocessing(infos[0])
    for run, info in zip(runs[1:], infos[1:]):
        other = preprocessing(info)
        if other[0] == first[0] and other != first:
            what = (f"options {other[1]} against {first[1]}" if other[1] != first[1] else
                    "the same options, but settings learnt from different data, e.g. normalisation")
            raise UserError(f"{run} was fitted on different preprocessing of dataset {first[0]!r} than "
                            f"{runs[0]} ({what}), so their likelihoods are not comparable")


def cmd_compare(args) -> int:
    import torch

    from probseq.evaluate.compare import comparison_table, format_table
    from probseq.evaluate.chunking import resolve_frame_budget
    from probseq.evaluate.sharded import score_split_sharded
    from probseq.train.checkpoint import load_run
    from probseq.parallel import start

    if len(args.runs) < 2:
        raise UserError("compare needs at least two run directories")
    device, job = start(args.device, command="compare", distributed=True)
    loaded = [load_run(r, device=device) for r in args.runs]
    if not args.data:
        _refuse_mixed_preprocessing(args.runs, [info for _, info in loaded])
    dataset_cache: dict[tuple, Any] = {}
    names = set()
    named = []
    for run, (model, info) in zip(args.runs, loaded):
        d = info["dataset"]
        key = ((args.data, args.data_file, args.data_dir) if args.data else
               (d["name"], args.data_file or d.get("data_file"), args.data_dir or d.get("data_dir"),
                json.dumps(d.get("options") or {}, sort_keys=True)))
        if key not in dataset_cache:
            dataset_cache[key] = _dataset_for_run(info, args)
        dataset, name = dataset_cache[key]
        names.add(name)
        _check_compatible(model, dataset)
        scores = score_split_sharded(model, dataset.split(args.split), estimator=None, samples=args.samples,
                                     batch_size=args.batch_size,
                                     frame_budget=resolve_frame_budget(args.frame_budget),
                                     seed=args.seed, job=job, progress=True)
        named.append((str(run), scores, info["model"]))
    if not job.is_main:                  # torchrun: rank 0 prints the table
        return 0
    if len(names) > 1:
        raise UserError(f"the runs were fitted to different datasets ({', '.join(sorted(names))}); "
                        "pass --data to score them all on one")
    rows = comparison_table([(label, scores) for label, scores, _ in named],
                            allow_mixed_length=args.allow_mixed_length)
    models = {label: m for label, _, m in named}
    for row in rows:
        row["model"] = models[row["run"]]
        row["dataset"], row["split"] = next(iter(names)), args.split
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows))
    return 0


def cmd_datasets(args) -> int:
    from probseq.data.catalogue import print_catalogue

    return print_catalogue()


def cmd_download(args) -> int:
    from probseq.data.download import download

    paths = download(args.name, mirror=args.mirror, progress=not args.quiet, force=args.force, report=_notice)
    print(f"{args.name}: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_plot(args) -> int:
    from probseq.evaluate.run_plots import kind_label, plot_runs, read_training_log

    labels = [Path(r).name or str(r) for r in args.runs]
    logs = [(label, read_training_log(run)) for label, run in zip(labels, args.runs)]
    for run, (_, log) in zip(args.runs, logs):
        if log.skipped:
            _notice(f"warning: skipped {len(log.skipped)} unreadable line(s) of {Path(run) / 'log.jsonl'} "
                    f"({'; '.join(log.skipped[:3])}{'; ...' if len(log.skipped) > 3 else ''})")
    per_sequence = None
    if args.per_sequence:
        import torch

        from probseq.evaluate.scoring import score_split
        from probseq.train.checkpoint import load_run

        if len(args.runs) < 2:
            raise UserError("--per-sequence compares runs: give at least two run directories")
        per_sequence = []
        for label, run in zip(labels, args.runs):
            model, info = load_run(run)
            dataset, _ = _dataset_for_run(info, args)
            _check_compatible(model, dataset)
            scores = score_split(model, dataset.split(args.split), samples=args.samples,
                                 generator=torch.Generator().manual_seed(args.seed), progress=True)
            per_sequence.append((label, scores.nll / scores.n_frames, kind_label(scores.kind, scores.estimator)))
    print(f"wrote {plot_runs(args.out, logs, per_sequence=per_sequence, split=args.split)}")
    return 0


def run_in_process(argv: list[str]) -> str:
    """Run ``probseq ARGV`` in this process and return its standard output (errors raise)."""
    args = build_parser().parse_args(argv)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        args.func(args)
    return buffer.getvalue()


def cmd_reproduce(args) -> int:
    from probseq.reproduce import PROTOCOLS, format_result, reproduce

    if args.name == "list":
        for name, (summary, _) in PROTOCOLS.items():
            print(f"{name:26s} {summary}")
        return 0
    out = Path(args.out or f"reproduce-{args.name}")
    summary = reproduce(args.name, args.args, run_command=run_in_process, out=out, run=args.run, minutes=args.minutes,
                        device=args.device, steps=args.steps, sets=args.set, data_file=args.data_file,
                        data_dir=args.data_dir, seed=args.seed, threads=args.threads, quiet=args.quiet)
    print(format_result(summary))
    print(f"wrote {out / 'result.json'}")
    return 0


def cmd_demo(args) -> int:
    from probseq.demo import run_demo
    from probseq.parallel import start

    device, _ = start(args.device, command="demo", distributed=False)
    return run_demo(Path(args.out), steps=args.steps, quiet=args.quiet, device=device)


# ---------------------------------------------------------------------------- parser
class _JoinFiles(argparse.Action):
    """``--data-file a --data-file b`` is ``--data-file a,b`` (the form datasets of files accept)."""

    def __call__(self, parser, namespace, values, option_string=None):
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if not before else f"{before},{values}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probseq", description=(
        "Probabilistic sequence models: fit, evaluate (with an honest label: exact / bound / "
        "estimate), sample and compare."))
    sub = parser.add_subparsers(dest="command", required=True)

    def device_arg(p):
        p.add_argument("--device", default="auto", metavar="DEVICE",
                       help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps")
        threads_arg(p)

    def threads_arg(p):
        p.add_argument("--threads", type=int, default=0, metavar="N",
                       help="CPU threads (default 0: the cores the load average leaves free, at most 4; "
                            "OMP_NUM_THREADS when set)")

    def data_args(p, required=False):
        p.add_argument("--data", required=required, help="dataset name (see `probseq datasets`)")
        p.add_argument("--data-file", action=_JoinFiles,
                       help="the dataset's file (your own copy); datasets of several files (midi, "
                            "arrays, bvh, ...) take a comma-separated list or the option repeated")
        p.add_argument("--data-dir", help="the dataset's directory (your own copy)")

    p = sub.add_parser("fit", help="train a model and save it in a run directory")
    p.add_argument("model", help="model name: rnn, gru, lstm, independent, trbm, rtrbm, rnn-rbm, nade, "
                                 "rnn-nade, vrnn, vhred, ctc, ...")
    data_args(p, required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimisation steps")
    g.add_argument("--epochs", type=float, help="passes over the training set (default: until "
                                                "validation stops improving)")
    p.add_argument("--minutes", type=float, help="wall-clock budget for training (with --resume: a new budget)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model hyperparameter, training option or dataset option (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with its own data, options and "
                        "seed (repeating them is allowed, changing them is refused); --steps, --epochs "
                        "and --minutes set a new training length")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    device_arg(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="score a split: NLL (with its kind) or a metric")
    p.add_argument("run")
    data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--estimator", help="exact, elbo, iwae, is, ais, raise, filtered (what the model "
                                        "supports; the JSON says what the number is and which way it can err)")
    p.add_argument("--samples", type=int, help="samples / chains / particles for the estimator")
    p.add_argument("--metric", default="nll", help="nll (default), mse, infill, or a model-specific metric")
    p.add_argument("--hide", type=float, default=0.1, metavar="P",
                   help="--metric infill: the fraction of the test values hidden (seeded by --seed)")
    p.add_argument("--hide-pattern", default="random", choices=("random", "frames", "gap"),
                   help="--metric infill: random values, whole frames, or one contiguous gap per sequence")
    p.add_argument("--draws", type=int, default=8,
                   help="--metric infill: completions drawn per sequence (--samples: particles)")
    p.add_argument("--batch-size", type=int, default=64, help="at most this many sequences per model call")
    p.add_argument("--frame-budget", type=int, metavar="FRAMES",
                   help="at most this many frames (sequences x time steps) per model call, which bounds "
                        "memory; long sequences are scored in windows carrying the model's state "
                        "(default 8192; 0: whole sequences, --batch-size at a time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    device_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="draw sequences (or continue a prime) and write them to a file")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=1, help="number of sequences")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--length", type=int, help="fixed total length")
    g.add_argument("--max-length", type=int, help="cap when the model decides the length")
    p.add_argument("--prime", help="a file to continue (MIDI, .npz, ...) or condition on (wav, text)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output file; its extension picks the format (.mid, .png, .npz, .gif, .bvh)")
    device_arg(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("infill", help="fill in the missing values of a file (NaN, or a marked time range) "
                                      "given everything observed before and after them")
    p.add_argument("run")
    p.add_argument("--input", required=True, help=".npz/.npy with NaN where values are missing, or a "
                                                  "file --prime reads (.mid, .bvh, ...) with a range marked below")
    p.add_argument("--out", required=True, help="output file; its extension picks the format")
    p.add_argument("--samples", type=int, default=1, help="completions to draw")
    p.add_argument("--particles", type=int, help="particles / proposals of the sampler (default 32)")
    p.add_argument("--mode", action="store_true", help="the most probable completion where computable")
    p.add_argument("--missing-seconds", metavar="A:B", help="mark the frames from A to B seconds missing")
    p.add_argument("--missing-frames", metavar="A:B", help="mark the frames A..B-1 missing")
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    p.set_defaults(func=cmd_infill)

    p = sub.add_parser("compare", help="score several runs on the same data in one table")
    p.add_argument("runs", nargs="+")
    p.add_argument("--allow-mixed-length", action="store_true",
                   help="rank runs whose length conventions differ (log p(x, T) vs log p(x | T)), "
                        "labelling each row")
    data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--samples", type=int)
    p.add_argument("--batch-size", type=int, default=64, help="at most this many sequences per model call")
    p.add_argument("--frame-budget", type=int, metavar="FRAMES",
                   help="at most this many frames (sequences x time steps) per model call, which bounds "
                        "memory; long sequences are scored in windows carrying the model's state "
                        "(default 8192; 0: whole sequences, --batch-size at a time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    device_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="fit models with exact, bounded and estimated likelihoods to the JSB "
                                    "chorales, compare them in one table, sample MIDI")
    p.add_argument("--out", default="probseq-demo")
    p.add_argument("--steps", type=int, default=300, help="training steps of the GRU, VRNN and RNN-RBM")
    p.add_argument("--quiet", action="store_true")
    device_arg(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reproduce", help="a published protocol: train, score, print our figure beside "
                                         "the paper's (`probseq reproduce list` names them)")
    p.add_argument("name", help="sutskever-bouncing-balls, sutskever-mocap, bl2012-polyphonic, dmm-jsb, "
                                "fsdd-ctc, or list")
    p.add_argument("args", nargs="*", help="the protocol's arguments (bl2012-polyphonic: DATASET MODEL)")
    p.add_argument("--out", help="directory for the run and result.json (default reproduce-NAME)")
    p.add_argument("--run", help="score this existing run directory instead of training")
    p.add_argument("--minutes", type=float, help="wall-clock budget for training (the result says if partial)")
    p.add_argument("--steps", type=int, help="replace the protocol's training length (the result is partial)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for probseq fit, after the protocol's own")
    p.add_argument("--data-file", help="the dataset's file (your own copy)")
    p.add_argument("--data-dir", help="the dataset's directory (your own copy)")
    p.add_argument("--device", help="passed to probseq fit and evaluate")
    p.add_argument("--seed", type=int, default=0)
    threads_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar while training")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("datasets", help="list the datasets probseq knows, present or missing, and where")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("download", help="fetch a public dataset into the data home ($PROBSEQ_DATA), checksummed")
    p.add_argument("name", help="jsb, piano-midi, nottingham, musedata, mocap-mit, cmu or fsdd")
    p.add_argument("--mirror", help="a base URL holding the same file names (checksums still apply)")
    p.add_argument("--force", action="store_true", help="fetch again even if the files are there")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("plot", help="learning curves of runs (log.jsonl), and per-sequence NLL comparisons")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True, help="figure file: .png, .svg or .pdf")
    p.add_argument("--per-sequence", action="store_true",
                   help="also score every run on --split and plot each sequence's NLL per frame against the first run's")
    data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--samples", type=int, help="samples / chains for estimators (as in evaluate)")
    p.add_argument("--seed", type=int, default=0)
    threads_arg(p)
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    restore_threads = None
    try:
        if getattr(args, "threads", None) is not None:   # every command that computes
            import torch

            from probseq.threads import use_threads

            restore_threads = torch.get_num_threads()    # for callers in the same process (tests)
            use_threads(args.threads)
        return args.func(args)
    except UserError as exc:
        print(f"probseq: error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"probseq: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"probseq: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("probseq: interrupted (a checkpoint was written; `probseq fit ... --resume` continues)",
              file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
        if restore_threads is not None:
            import torch

            torch.set_num_threads(restore_threads)


def _leave_process_group() -> None:
    """Under torchrun: leave the process group the command joined (a no-op otherwise)."""
    if "torch.distributed" in sys.modules:
        from probseq.parallel import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
