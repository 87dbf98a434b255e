"""One-step-ahead prediction error (``probseq evaluate --metric mse``).

For each sequence and each frame ``t >= 2``, the model predicts ``x_t`` from ``x_{1:t-1}`` with
``model.predict_next`` (its expected next frame; each model documents how it forms it). Frame 1
has no history and is excluded, for the model and the baseline alike, so both are averaged over
the same ``sum_i (T_i - 1)`` frames. Two conventions are reported:

* ``next_frame_mse_per_dim = sum (x - xhat)^2 / (n_predicted_frames * D)`` — per dimension, the
  convention of the RTRBM thesis (Sutskever 2013, §3.11);
* ``next_frame_se_per_frame = sum (x - xhat)^2 / n_predicted_frames`` — summed over dimensions,
  the convention of some later papers.

Two baselines are scored on the same frames, in both conventions:

* copy the last frame, ``xhat_t = x_{t-1}`` (``baseline_copy_last_*``);
* linear extrapolation, ``xhat_t = 2 x_{t-1} - x_{t-2}`` (constant velocity; ``baseline_linear_*``).
  Frame 2 has a single predecessor, so there it copies the last frame.

A model worth using beats both: copy-last wins where frames change little or noisily, linear
extrapolation where the motion is smooth (:func:`linear_extrapolation`). Errors are computed in the
space the model is fitted in (e.g. normalised motion capture).

A model that starts from a fit to the data (``autoregressive_start``: the TRBM and RTRBM on
real-valued frames, whose ``prepare`` sets their visible taps to a ridge autoregression) gets a
third baseline, its **starting point** (:func:`starting_point_errors`, ``ar_start_*``): the same
model rebuilt with the run's hyperparameters and seed and ``prepare``-d on the training split of
the data evaluated, without a single training step. Training must beat it to have added anything.
"""

from __future__ import annotations

from typing import Any

import torch

from probseq.errors import UserError
from probseq.evaluate.chunking import DEFAULT_FRAME_BUDGET, example_frames, plan_batches

__all__ = ["next_frame_errors", "linear_extrapolation", "starting_point_errors"]


def linear_extrapolation(x: torch.Tensor) -> torch.Tensor:
    """Constant-velocity predictions of every frame from its two predecessors, ``(B, T, D)`` -> same.

    ``out[:, t] = 2 x[:, t-1] - x[:, t-2]`` for ``t >= 2``, ``out[:, 1] = x[:, 0]`` (one
    predecessor: copy it) and ``out[:, 0] = x[:, 0]`` (no predecessor; never scored).
    """
    out = x.clone()
    if x.shape[1] >= 2:
        out[:, 1] = x[:, 0]
    if x.shape[1] >= 3:
        out[:, 2:] = 2 * x[:, 1:-1] - x[:, :-2]
    return out


def next_frame_errors(model, examples: list[Any], *, batch_size: int = 64,
                      frame_budget: int | None = DEFAULT_FRAME_BUDGET) -> dict[str, Any]:
    """The errors and baselines of the module docstring; batches are whole sequences packed to at
    most ``frame_budget`` frames (``None``: ``batch_size`` at a time, see
    :func:`probseq.evaluate.chunking.plan_batches`)."""
    if model.spec.kind == "categorical":
        raise UserError("--metric mse needs binary or real-valued frames, not categorical ones")
    sq_model = sq_copy = sq_linear = 0.0
    n_pred = 0
    dim = model.spec.dim
    model.eval()
    with torch.no_grad():
        sizes = [example_frames(e) if frame_budget is not None else None for e in examples]
        for indices in plan_batches(sizes, frame_budget=frame_budget or 1, batch_size=batch_size,
                                    windows=False):
            batch = model.collate([examples[i] for i in indices])
            pred = model.predict_next(batch)
            x = batch.padded_with_zeros()
            mask = batch.mask[:, 1:]
            err = ((pred[:, 1:] - x[:, 1:]) ** 2).sum(-1)
            copy = ((x[:, :-1] - x[:, 1:]) ** 2).sum(-1)
            linear = ((linear_extrapolation(x)[:, 1:] - x[:, 1:]) ** 2).sum(-1)
            sq_model += float(torch.where(mask, err, torch.zeros_like(err)).sum())
            sq_copy += float(torch.where(mask, copy, torch.zeros_like(copy)).sum())
            sq_linear += float(torch.where(mask, linear, torch.zeros_like(linear)).sum())
            n_pred += int(mask.sum())
    if n_pred == 0:
        raise UserError("every sequence has a single frame; there is nothing to predict")
    return {
        "n_predicted_frames": n_pred,
        "next_frame_mse_per_dim": sq_model / (n_pred * dim),
        "next_frame_se_per_frame": sq_model / n_pred,
        "baseline_copy_last_mse_per_dim": sq_copy / (n_pred * dim),
        "baseline_copy_last_se_per_frame": sq_copy / n_pred,
        "baseline_linear_mse_per_dim": sq_linear / (n_pred * dim),
        "baseline_linear_se_per_frame": sq_linear / n_pred,
    }


def starting_point_errors(info: dict[str, Any], dataset, examples: list[Any], *, batch_size: int = 64,
                          frame_budget: int | None = DEFAULT_FRAME_BUDGET) -> dict[str, Any]:
    """The next-frame errors of a run's model as ``prepare`` leaves it, before any training step.

    ``info`` is the run's ``run.json`` (model name, hyperparameters, training options, seed); the
    model is rebuilt and prepared as ``probseq fit`` does it (seed, build, seed, ``prepare`` on
    ``dataset``'s training split, ``init``), then scored on ``examples`` like the trained model.
    Returns ``{}`` for a model without ``autoregressive_start``, else ``ar_start_mse_per_dim``,
    ``ar_start_se_per_frame`` and ``ar_start_choice`` (the autoregression validation chose).
    """
    from probseq.data.spec import DataSpec
    from probseq.models.registry import build_model
    from probseq.optim.training import initialise

    seed = int(info.get("seed") or 0)
    torch.manual_seed(seed)
    model = build_model(info["model"], DataSpec.from_dict(info["spec"]), dict(info.get("hyperparameters") or {}))
    if not getattr(model, "autoregressive_start", False):
        return {}
    torch.manual_seed(seed)
    model.prepare(dataset)
    # run.json holds the run's merged training options (defaults, recipe, --set), init included
    initialise(model, dict(info.get("training") or {}), seed)
    errors = next_frame_errors(model, examples, batch_size=batch_size, frame_budget=frame_budget)
    out = {"ar_start_mse_per_dim": errors["next_frame_mse_per_dim"],
           "ar_start_se_per_frame": errors["next_frame_se_per_frame"]}
    fit = getattr(model, "autoregressive_fit", None)
    if fit is not None:
        out["ar_start_choice"] = f"{fit.structure} around {fit.anchor}, ridge {fit.ridge:g}"
    return out
