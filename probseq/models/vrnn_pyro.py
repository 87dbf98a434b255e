"""The VRNN written as a Pyro program: a model and a guide over the sites ``z_t``, ``x_t``, ``halt_t``, ``length``.

The same model as :class:`~probseq.models.vrnn.VRNN`'s fast path (``elbo_terms``), built from the
same network pieces, so any Pyro inference algorithm applies:
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
import torch.nn.functional as F
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
            loc, log_std = frame._split(p)
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

    ``kl_scale`` scales the ``z`` sites (``poutine.scale``); with the same scale in the guide
    this weights ``log p(z) - log q(z)``, i.e. KL annealing.
    """
    pyro.module("vrnn", vrnn)
    x = vrnn._frames(batch)
    lengths, mask = batch.lengths, batch.mask
    n, steps = mask.shape
    phi_x = vrnn.phi_x(vrnn.frame.encode(x).to(vrnn._dtype()))
    gates_x = vrnn._x_inputs(phi_x, vrnn._remaining(lengths, steps))
    h = vrnn.initial_hidden.expand(n, -1)
    with pyro.plate("sequences", n):
        for t in pyro.markov(range(steps)):
            m = mask[:, t]
            p_loc, p_scale = vrnn._prior(h)
            with poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(p_loc, p_scale).to_event(1).mask(m))
            z_feat = vrnn.phi_z(z)
            x_dist = observation_distribution(vrnn.frame, vrnn._decode(z_feat, h))
            pyro.sample(f"x_{t + 1}", x_dist.mask(m), obs=x[:, t])
            gates_h = F.linear(h, vrnn.rnn.weight_hh, vrnn.rnn.bias_hh)
            h = vrnn._gru(gates_x[:, t] + vrnn._z_inputs(z_feat), gates_h, h)
            if vrnn.halt is not None:
                pyro.sample(f"halt_{t + 1}", dist.Bernoulli(logits=vrnn.halt(h).squeeze(-1)).mask(m),
                            obs=(lengths == t + 1).to(h.dtype))
        if vrnn.length_features:
            pyro.sample("length", dist.Categorical(logits=vrnn.length_model.logits), obs=lengths - 1)


def pyro_guide(vrnn: VRNN, batch: Batch, kl_scale: float = 1.0) -> None:
    """The inference network ``q(z_t | x_t, h_{t-1})`` as a Pyro guide (same ``z_t`` sites)."""
    pyro.module("vrnn", vrnn)
    x = vrnn._frames(batch)
    lengths, mask = batch.lengths, batch.mask
    n, steps = mask.shape
    phi_x = vrnn.phi_x(vrnn.frame.encode(x).to(vrnn._dtype()))
    enc_x = vrnn.encoder_x(phi_x)
    gates_x = vrnn._x_inputs(phi_x, vrnn._remaining(lengths, steps))
    h = vrnn.initial_hidden.expand(n, -1)
    with pyro.plate("sequences", n):
        for t in pyro.markov(range(steps)):
            q_loc, q_scale = vrnn._posterior(enc_x[:, t], F.linear(h, vrnn.encoder_h))
            with poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(q_loc, q_scale).to_event(1).mask(mask[:, t]))
            gates_h = F.linear(h, vrnn.rnn.weight_hh, vrnn.rnn.bias_hh)
            h = vrnn._gru(gates_x[:, t] + vrnn._z_inputs(vrnn.phi_z(z)), gates_h, h)
