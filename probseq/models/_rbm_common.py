"""Pieces shared by the sequence models whose frames are RBMs (RTRBM, RNN-RBM).

* choosing the likelihood estimator: ``exact`` (enumerating the smaller layer of every step's RBM)
  by default when that layer has at most ``exact_max_units`` units, otherwise ``ais``; a name may
  carry its own setting, ``ais-<chains>x<steps>`` or ``raise-<chains>x<steps>`` — the label the
  scores are printed with — so a quick default's output says how to ask for a tighter estimate
  (:func:`parse_estimator`, :func:`annealing_setting`; defaults: :data:`QUICK_AIS`);
* the per-sequence log-likelihood ``sum_t [-F_t(x_t) - log Z_t]`` over the real (unpadded) frames,
  with the AIS standard error ``sqrt(sum_t se_t^2)`` (the steps' chains are independent), or
  ``sum_t log P_t(x_t)`` by RAISE per step (:mod:`probseq.estimators.reverse_annealing`: each
  step's estimate is biased downward, so their sum is too; same standard error rule);
* the validation criterion for early stopping and ``keep=best``: the AIS-estimated NLL per frame
  where the frames have a likelihood (:func:`likelihood_validation_loss`), else the next-frame
  prediction score (:func:`prediction_loss`);
* the data-dependent start of the thesis recipe (:func:`initialise_from_frames`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.frames.rbm import RBM
from probseq.frames.rbm_annealing import rbm_raise_log_prob
from probseq.precision import full_precision

__all__ = ["QUICK_AIS", "TIGHT_AIS", "parse_estimator", "annealing_setting", "resolve_estimator", "estimator_label", "likelihood_kind", "sequence_log_prob",
           "VALIDATION_CRITERIA", "VALIDATION_HYPERPARAMETERS", "check_validation_criterion",
           "scores_likelihood", "likelihood_validation_loss", "prediction_loss",
           "initialise_from_frames", "thesis_cd_steps"]


#: the default AIS setting of the RBM sequence models (``ais_chains`` x ``ais_steps`` per frame):
#: chosen so that scoring the JSB test split (4,725 frames, 88 keys) with an RBM of 100-150 hidden
#: units takes about a minute on one CPU core (benchmarks/RESULTS.md, "evaluation at a cost a user
#: accepts"); the chain noise is negligible there, the bias of the short schedule is not, hence
#: few chains and more intermediate distributions
QUICK_AIS = {"ais_chains": 5, "ais_steps": 500}
#: the expensive, tighter setting the outputs point to (Salakhutdinov & Murray 2008 use more)
TIGHT_AIS = (20, 1000)


def parse_estimator(name: str) -> tuple[str, int | None, int | None]:
    """``"ais"`` -> ``("ais", None, None)``; ``"ais-20x1000"`` -> ``("ais", 20, 1000)``
    (chains x intermediate distributions per frame; also ``raise-...``); anything else is returned
    as the method with no setting."""
    method, _, setting = name.partition("-")
    if method in ("ais", "raise") and setting:
        chains, x, steps = setting.partition("x")
        if x and chains.isdigit() and steps.isdigit():
            return method, int(chains), int(steps)
        raise UserError(f"cannot read estimator {name!r}: expected {method}-CHAINSxSTEPS, e.g. {method}-20x1000")
    return name, None, None


def annealing_setting(estimator: str, samples: int | None, ais_steps: int | None, chains: int,
                      steps: int) -> tuple[str, int, int]:
    """``(method, chains, steps)`` of a (resolved) estimator name: ``samples`` / ``ais_steps`` when
    given, else the name's own ``-CxS`` setting, else the model's ``chains`` / ``steps``.

    ``samples`` that contradict the name's chains raise :class:`UserError` (one number, one meaning).
    """
    method, named_chains, named_steps = parse_estimator(estimator)
    if samples is not None and named_chains is not None and int(samples) != named_chains:
        raise UserError(f"--samples {samples} contradicts estimator {estimator!r} "
                        f"({named_chains} chains); give one of them")
    return (method, int(samples or named_chains or chains), int(ais_steps or named_steps or steps))


def resolve_estimator(model, estimator: str | None, exact_by_default: bool) -> str:
    """``None`` -> ``exact`` for tiny RBMs, else ``ais``; ``ais-CxS`` / ``raise-CxS`` are kept as
    given (:func:`parse_estimator`); unknown names raise :class:`UserError`."""
    if estimator is None:
        return "exact" if exact_by_default else "ais"
    if parse_estimator(estimator)[0] not in model.estimators:
        raise UserError(f"model {model.name!r} does not support estimator {estimator!r}; it supports "
                        f"{', '.join(model.estimators)} (ais and raise also as ais-CHAINSxSTEPS)")
    return estimator


def estimator_label(method: str, chains: int, steps: int) -> str:
    """``"exact"``, ``"ais-<chains>x<steps>"`` or ``"raise-<chains>x<steps>"`` (chains x intermediate
    distributions)."""
    return "exact" if method == "exact" else f"{method}-{chains}x{steps}"


def likelihood_kind(method: str) -> str:
    """The :class:`~probseq.likelihood.LogProb` kind of a per-step method: ``exact`` or ``estimate``
    (AIS biased upward, RAISE downward: the bias follows from the estimator's name)."""
    return "exact" if method == "exact" else "estimate"


@full_precision
def sequence_log_prob(rbm: RBM, x: Tensor, visible_bias: Tensor, hidden_bias: Tensor, mask: Tensor, *,
                      method: str, chains: int, steps: int, generator: torch.Generator | None
                      ) -> tuple[Tensor, Tensor | None]:
    """``sum_t log P_t(x_t)`` per sequence over the frames where ``mask`` is true.

    Args:
        x: ``(B, T, D)`` frames (padding already zeroed). visible_bias: ``(B, T, D)`` or ``(D,)``.
        hidden_bias: ``(B, T, H)`` or ``(H,)``. mask: ``(B, T)``.

    Returns ``(values (B,), stderr (B,) or None)``; only the real frames' RBMs are evaluated (AIS
    runs on all of them at once).
    """
    vb = visible_bias[mask] if visible_bias.dim() > 1 else visible_bias
    hb = hidden_bias[mask] if hidden_bias.dim() > 1 else hidden_bias
    frames = x[mask].to(rbm.weight.dtype)
    if method in ("ais", "raise") and chains < 2:
        raise UserError(f"{method.upper()} needs at least 2 chains (--samples), got {chains}")
    if method == "raise":
        per_frame, stderr = rbm_raise_log_prob(rbm, frames, visible_bias=vb, hidden_bias=hb, chains=chains,
                                               steps=steps, generator=generator)
    else:
        log_z = rbm.log_partition(method, visible_bias=vb, hidden_bias=hb, chains=chains, steps=steps,
                                  generator=generator)
        per_frame = -rbm.free_energy(frames, vb, hb) - log_z.value.expand(frames.shape[0])
        stderr = None if log_z.stderr is None else log_z.stderr.expand(frames.shape[0])
    values = per_frame.new_zeros(mask.shape).masked_scatter(mask, per_frame).sum(1)
    if stderr is None:
        return values, None
    var = per_frame.new_zeros(mask.shape).masked_scatter(mask, stderr ** 2)
    return values, var.sum(1).sqrt()


#: the validation criteria of the RBM sequence models (hyperparameter ``valid_criterion``)
VALIDATION_CRITERIA = ("auto", "nll", "prediction")
#: what the RBM sequence models add to their hyperparameters for the validation criterion: AIS
#: with 2 chains x 50 distributions per frame ranked RTRBM checkpoints on JSB exactly as the
#: reference (5 x 500) did, at a quarter of the cost of the 4 x 100 used before (1.5 s of one core
#: for JSB's 4,602 validation frames at 50 hidden units, about 20 training steps); the mean-field
#: next-frame score did not (benchmarks/RESULTS.md, "RBM
#: family: a cheap validation criterion", benchmarks/rbm_valid_criterion.py). The same 2 x 50 runs as
#: RAISE, the pessimistic side, for the models that offer it (likelihood_validation_loss)
VALIDATION_HYPERPARAMETERS = {"valid_criterion": "auto", "valid_chains": 2, "valid_ais_steps": 50,
                              "valid_seed": 0}


def check_validation_criterion(config: dict) -> None:
    if config["valid_criterion"] not in VALIDATION_CRITERIA:
        raise UserError(f"valid_criterion must be one of {', '.join(VALIDATION_CRITERIA)}, got "
                        f"{config['valid_criterion']!r}")
    if int(config["valid_chains"]) < 2 or int(config["valid_ais_steps"]) < 1:
        raise UserError("valid_chains must be at least 2 and valid_ais_steps at least 1")


def scores_likelihood(model, rbm: RBM, batch) -> bool:
    """Whether ``model.validation_loss`` uses :func:`likelihood_validation_loss` on ``batch``.

    ``valid_criterion=nll``: always; ``prediction``: never; ``auto``: when the likelihood of the
    frames exists and measures what is reported — Bernoulli visibles with 0/1 frames (intensities
    in (0, 1), e.g. bouncing balls, have no likelihood; real-valued frames are validated by their
    next-frame prediction, the figure motion models report).
    """
    criterion = model.config["valid_criterion"]
    if criterion != "auto":
        return criterion == "nll"
    if rbm.gaussian:
        return False
    frames = batch.values[batch.mask]
    return bool(((frames == 0) | (frames == 1)).all())


def likelihood_validation_loss(model, batch) -> float:
    """The validation criterion that measures what is reported: the estimated NLL per frame.

    ``-sum_i log P(x_i) / sum_i T_i`` (length term included when modelled) by the model's default
    estimator: ``exact`` enumeration for tiny RBMs, else AIS with ``valid_chains`` chains (the
    TRBM: hidden trajectories) and ``valid_ais_steps`` intermediate distributions per frame, from
    a generator seeded with ``valid_seed`` on every call, so the criterion is a deterministic
    function of the weights. Models that offer RAISE (RTRBM, RNN-RBM) are validated by RAISE, the
    pessimistic side of the AIS/RAISE sandwich (Burda, Grosse & Salakhutdinov 2015): AIS with few
    chains grows more optimistic as the RBMs sharpen, and selecting on it picks the weights where it
    is most wrong. The chains are few, so it is a selection criterion, not a figure to report. ``keep=best`` then selects by held-out likelihood, never by test data.
    """
    cfg = model.config
    method = model.check_estimator(None)       # exact / ais (RTRBM, RNN-RBM); is / ais (TRBM)
    if method == "ais" and "raise" in model.estimators:
        # select on the pessimistic side of the sandwich: with few chains, AIS's optimism grows as
        # the RBMs sharpen, and keep=best then picks exactly the weights whose estimate ran away
        # (an RNN-RBM trained 45 minutes with Adam 1e-2: kept weights at AIS 3.92 / RAISE 13.24 on
        # JSB test, benchmarks/RESULTS.md); RAISE errs the other way, so it never rewards that
        method = "raise"
    generator = torch.Generator(device=batch.values.device).manual_seed(int(cfg["valid_seed"]))
    with torch.no_grad():
        result = model.log_prob(batch, estimator=method, samples=int(cfg["valid_chains"]),
                                ais_steps=int(cfg["valid_ais_steps"]), generator=generator)
    return float(-result.values.sum() / batch.n_frames)


@full_precision
def prediction_loss(rbm: RBM, x: Tensor, prediction: Tensor, mask: Tensor) -> Tensor:
    """Per-frame score of one-step-ahead predictions, pooled over real frames (lower is better).

    Bernoulli visibles: the cross-entropy ``-sum_d [x log p + (1-x) log(1-p)]`` of the predicted
    probabilities (clamped to ``[1e-6, 1 - 1e-6]``); Gaussian: the squared error summed over
    dimensions. RBM sequence models use it as their validation loss: unlike the CD surrogate it is
    deterministic and comparable across steps, and unlike AIS it is cheap.
    """
    if rbm.gaussian:
        per = ((prediction - x) ** 2).sum(-1)
    else:
        p = prediction.clamp(1e-6, 1 - 1e-6)
        per = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(-1)
    per = torch.where(mask, per, torch.zeros_like(per))
    return per.sum() / max(int(mask.sum()), 1)


def initialise_from_frames(rbm: RBM, frames: Tensor, config: dict) -> Tensor:
    """Visible biases from the data, then static CD pre-training (Sutskever 2013, §3.10).

    Bernoulli visibles: ``b_i = logit(mean_i)`` (means clamped to ``[1e-3, 1 - 1e-3]``); Gaussian:
    ``b_i = mean_i``. Then ``config["pretrain_steps"]`` SGD steps (momentum 0.9, learning rate
    ``pretrain_lr``) of CD-``pretrain_cd`` on random minibatches of 100 of the ``frames``
    ``(N, D)``, treating them as independent; ``pretrain_steps=None`` means 2000 with
    ``preset=thesis`` and none otherwise. Returns the frames' mean ``(D,)``.
    """
    steps = config["pretrain_steps"]
    steps = (2000 if config.get("preset") == "thesis" else 0) if steps is None else int(steps)
    with torch.no_grad():
        mean = frames.mean(0)
        if rbm.gaussian:
            rbm.visible_bias.copy_(mean)
        else:
            p = mean.clamp(1e-3, 1 - 1e-3)
            rbm.visible_bias.copy_(torch.log(p) - torch.log1p(-p))
    if steps > 0:
        generator = torch.Generator(device=frames.device).manual_seed(int(torch.randint(2 ** 31, ())))
        # the momentum's velocity is this optimiser's state: it ends with the pre-training
        optimizer = torch.optim.SGD([p for p in rbm.parameters() if p.requires_grad],
                                    lr=float(config["pretrain_lr"]), momentum=0.9)
        for _ in range(steps):
            idx = torch.randint(frames.shape[0], (min(100, frames.shape[0]),), generator=generator,
                                device=frames.device)
            rbm.cd_step(frames[idx], optimizer=optimizer, k=int(config["pretrain_cd"]), generator=generator)
    return mean


def thesis_cd_steps(config: dict, step: int, total_steps: int, current: int) -> int:
    """``k`` of CD-k at ``step`` of ``total_steps``: with ``preset=thesis``, ``cd_steps`` for the
    first ``cd_switch`` fraction of training and ``cd_steps_late`` after (thesis §3.10: CD-10 then
    CD-25); otherwise ``current`` unchanged."""
    if config.get("preset") != "thesis":
        return current
    late = step >= float(config["cd_switch"]) * total_steps
    return int(config["cd_steps_late"] if late else config["cd_steps"])
