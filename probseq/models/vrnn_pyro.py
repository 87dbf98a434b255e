"""The VRNN written as a Pyro program: a model and a guide over the sites ``z_t``, ``x_t``, ``halt_t``, ``length``.

The same model as :class:`~probseq.models.vrnn.VRNN`'s fast path (``elbo_terms``), composed from the
same public pieces (:mod:`probseq.models.vrnn_parts`: ``prior``, ``posterior``, ``emitter``,
``transition``; the shape of Pyro's ``examples/dmm.py``), so any Pyro inference algorithm applies:
``SVI(vrnn.pyro_model, vrnn.pyro_guide, optim, Trace_ELBO())`` (the methods call
:func:`pyro_model` and :func:`pyro_guide`). A ``pyro.plate`` runs over sequences and
``pyro.markov`` over time; ragged batches are masked with ``.mask(...)``; ``kl_scale`` scales the
``z`` sites by ``poutine.scale`` (KL annealing). ``tests/test_vrnn_pyro.py`` checks that both
paths give the same ELBO on the same latent draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor

from probseq.data.batch import Batch
from probseq.frames.base import FrameDistribution
from probseq.frames.factorial import BernoulliFrame, CategoricalFrame, GaussianFrame
from probseq.frames.mixture import MixtureFrame

if TYPE_CHECKING:
    from probseq.models.vrnn import VRNN

__all__ = ["observation_distribution", "pyro_model", "pyro_guide"]


def observation_distribution(frame: FrameDistribution, params: Tensor) -> dist.Distribution:
    """``p(x_t | theta_t)`` as a Pyro distribution with one event per frame (mixtures included)."""

    def factorial(frame, p):
        if isinstance(frame, BernoulliFrame):
            return dist.Bernoulli(logits=p).to_event(1)
        if isinstance(frame, GaussianFrame):
            loc, log_std = frame.split(p)
            return dist.Normal(loc, torch.exp(log_std)).to_event(1)
        if isinstance(frame, CategoricalFrame):
            return dist.Categorical(logits=p)
        raise TypeError(f"no Pyro distribution for {type(frame).__name__}")

    if isinstance(frame, MixtureFrame):
        logits, comp = frame.split(params)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits),
                                      factorial(frame.component, comp))
    return factorial(frame, params)


def pyro_model(vrnn: VRNN, batch: Batch, kl_scale: float = 1.0) -> None:
    """The generative model as a Pyro program (sites ``z_t``, ``x_t``, ``halt_t``, ``length``).

    Per step: ``z_t ~ prior(h_{t-1})``, ``x_t ~ p(x_t | emitter(phi_z(z_t), h_{t-1}))``,
    ``h_t = transition(h_{t-1}, x_t, z_t)``, then the halting unit on ``h_t``. ``kl_scale`` scales the
    ``z`` sites (``poutine.scale``); with the same scale in the guide this weights
    ``log p(z) - log q(z)``, i.e. KL annealing.
    """
    pyro.module("vrnn", vrnn)
    inputs = vrnn.sequence_inputs(batch)
    x, lengths, mask = inputs.x, inputs.lengths, inputs.mask
    n, steps = mask.shape
    h = vrnn.initial_hidden.expand(n, -1)
    with pyro.plate("sequences", n):
        for t in pyro.markov(range(steps)):
            m = mask[:, t]
            p_loc, p_scale = vrnn.prior(h)
            with poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(p_loc, p_scale).to_event(1).mask(m))
            z_feat = vrnn.phi_z(z)
            x_dist = observation_distribution(vrnn.frame, vrnn.emitter(z_feat, h))
            pyro.sample(f"x_{t + 1}", x_dist.mask(m), obs=x[:, t])
            h = vrnn.transition(inputs.transition_inputs[:, t], z_feat, h)
            if vrnn.halt is not None:
                pyro.sample(f"halt_{t + 1}", dist.Bernoulli(logits=vrnn.halt(h).squeeze(-1)).mask(m),
                            obs=(lengths == t + 1).to(h.dtype))
        if vrnn.length_features:
            pyro.sample("length", dist.Categorical(logits=vrnn.length_model.logits), obs=lengths - 1)


def pyro_guide(vrnn: VRNN, batch: Batch, kl_scale: float = 1.0) -> None:
    """The inference network as a Pyro guide (same ``z_t`` sites): ``z_t ~ posterior(x_t, h_{t-1})``,
    then the same ``transition`` as the model, so ``h`` follows the guide's draws."""
    pyro.module("vrnn", vrnn)
    inputs = vrnn.sequence_inputs(batch)
    mask = inputs.mask
    n, steps = mask.shape
    h = vrnn.initial_hidden.expand(n, -1)
    with pyro.plate("sequences", n):
        for t in pyro.markov(range(steps)):
            q_loc, q_scale = vrnn.posterior(inputs.posterior_frame_part[:, t], h)
            with poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(q_loc, q_scale).to_event(1).mask(mask[:, t]))
            h = vrnn.transition(inputs.transition_inputs[:, t], vrnn.phi_z(z), h)
