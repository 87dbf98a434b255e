"""NADE: the neural autoregressive distribution estimator for binary vectors, and its frame distribution.

For a binary vector :math:`v \\in \\{0,1\\}^D` and an ordering :math:`o` (a permutation of
``0..D-1``), NADE (Larochelle & Murray 2011, eqs. 2-3) factorises

.. math::

    p(v \\mid o) = \\prod_{k=1}^{D} p(v_{o_k} \\mid v_{o_{<k}}), \\qquad
    p(v_{o_k} = 1 \\mid v_{o_{<k}}) = \\sigma\\big(b_{o_k} + V_{o_k,:}\\, h_k\\big), \\qquad
    h_k = \\sigma(a_k),\\quad a_k = c + \\sum_{j<k} W_{:, o_j}\\, v_{o_j},

with shared weights ``W`` ``(H, D)`` (input to hidden), ``V`` ``(D, H)`` (hidden to output), visible
bias ``b`` ``(D,)`` and hidden bias ``c`` ``(H,)``. Because :math:`a_{k+1} = a_k + W_{:,o_k} v_{o_k}`,
all ``D`` pre-activations come from one running (cumulative) sum over the ordering (the
"shared-weight trick"), so :math:`\\log p(v)` and its gradient cost :math:`O(DH)` per vector instead
of the :math:`O(D^2 H)` of ``D`` separate passes. Here the forward and the backward are written by
hand (:class:`_NADELogProb`; checked with ``gradcheck`` in float64 and against autograd of the plain
formula in ``tests/test_nade.py``): Larochelle & Murray's Algorithm 1 vectorised over the batch, a
loop over the ``D`` positions of O(N H) steps forward and the reverse recursion backward. A second
exact implementation for sparse binary data runs the cumulative sum over the ones only and reads all
logits from one matrix product (:func:`_segment_log_prob`, ``impl="segments"``).

**Conditional use.** ``b`` and ``c`` may be given per example (``(..., D)`` and ``(..., H)``); this
is how an RNN sets a NADE's biases at every time step in RNN-NADE (Boulanger-Lewandowski, Bengio &
Vincent 2012, §4): :class:`NADEFrame` reads ``theta_t = [b_t, c_t]`` from the backbone.

**Orderings.** Every call accepts ``ordering``: ``None`` (the module's own, a buffer saved with the
weights), one ``(D,)`` permutation, or one per example ``(..., D)``.

**Order-agnostic training** (Uria, Murray & Larochelle 2014). probseq uses the *direct random-order
objective*: each example gets a uniformly random ordering and its full log-likelihood under that
ordering is computed exactly, in :math:`O(DH)`, with the cumulative trick
(:meth:`NADE.order_agnostic_loss`). Its expectation is :math:`-\\mathbb{E}_o \\log p(v \\mid o)`, the
same objective Uria et al. estimate with their masked-input estimator (one random ordering and one
random split point per example, needing a network that reads the mask); for a one-hidden-layer NADE
the direct form uses all ``D`` conditionals of the drawn ordering at the cost of one pass, so it is
the lower-variance estimate. No mask input is used (Uria et al. add one for deep NADEs).

**Ensembles over orderings.** ``K`` fixed orderings define the mixture
:math:`p(v) = \\frac1K \\sum_k p(v \\mid o^{(k)})`, an exact, normalised distribution; its
log-likelihood is the log-mean-exp of the per-ordering log-likelihoods (:meth:`NADE.log_prob_ensemble`),
never an average of per-dimension logits or probabilities (which would not be normalised). Sampling
from the ensemble picks one ordering per example uniformly, then samples ancestrally.

**Temperature** divides every conditional's logit: :math:`p_T(v_{o_k}=1 \\mid \\cdot) =
\\sigma(\\ell_k / T)`. This is not :math:`p(v)^{1/T}` (which NADE cannot sample exactly); ``T -> 0``
gives greedy per-conditional decoding.

References:
    [1] H. Larochelle, I. Murray. The Neural Autoregressive Distribution Estimator. AISTATS 2011.
    [2] B. Uria, I. Murray, H. Larochelle. A Deep and Tractable Density Estimator. ICML 2014.
    [3] N. Boulanger-Lewandowski, Y. Bengio, P. Vincent. Modeling Temporal Dependencies in
        High-Dimensional Sequences: Application to Polyphonic Music Generation and
        Transcription. ICML 2012.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.errors import UserError
from probseq.frames.base import FrameDistribution
from probseq.precision import full_precision

__all__ = ["NADE", "NADEFrame", "make_ordering", "ORDERING_NAMES"]

#: names accepted by :func:`make_ordering`
ORDERING_NAMES = ("natural", "reversed", "random")


def make_ordering(name: str, dim: int, *, seed: int = 0) -> Tensor:
    """A ``(dim,)`` permutation: ``natural`` (0..D-1; low to high pitch for a piano-roll),
    ``reversed``, or ``random`` (uniform, from ``seed``)."""
    if name == "natural":
        return torch.arange(dim)
    if name == "reversed":
        return torch.arange(dim - 1, -1, -1)
    if name == "random":
        return torch.randperm(dim, generator=torch.Generator().manual_seed(int(seed)))
    raise UserError(f"unknown ordering {name!r}; expected one of {', '.join(ORDERING_NAMES)}")


class _NADELogProb(torch.autograd.Function):
    """Fused ``log p(v | o)`` for vectors already permuted into their ordering, hand-written backward.

    Inputs (``N`` examples): ``xp`` ``(N, D)`` permuted data; ``Wp`` ``(D, H)`` or ``(N, D, H)``
    (rows ``W[:, o_k]``); ``Vp`` same shape (rows ``V[o_k]``); ``bp`` ``(N, D)``; ``c`` ``(N, H)``.
    Output ``(N,)``.

    Larochelle & Murray's Algorithm 1, vectorised over the batch: a loop over the ``D`` positions
    whose every step is O(N H) work on ``(N, H)`` slabs that stay in cache,
    :math:`a_{k+1} = a_k + W_{o_k} v_{o_k}`, :math:`h_k = \\sigma(a_k)`,
    :math:`\\ell_k = b_{o_k} + V_{o_k} \\cdot h_k`. (``torch.cumsum`` over the position axis of a
    ``(N, D, H)`` tensor does the same arithmetic but is memory-bound and measured ~3x slower
    here.) ``h`` is kept, ``(D, N, H)``, for the backward, which runs the positions in reverse with
    the running sum :math:`S_k = \\sum_{j>k} \\delta a_j`:

    .. math::

        \\delta\\ell_k = g\\,(v_k - \\sigma(\\ell_k)),\\quad
        \\delta a_k = \\delta\\ell_k\\, V_k \\odot h_k \\odot (1-h_k),\\quad
        \\nabla c = \\textstyle\\sum_k \\delta a_k,\\quad
        \\nabla W_k = v_k S_k,\\quad
        \\nabla V_k = \\delta\\ell_k\\, h_k,\\quad \\nabla b_k = \\delta\\ell_k,\\quad
        \\nabla v_k = W_k \\cdot S_k + g\\,\\ell_k .

    Under autocast both passes run in float32 (:func:`~probseq.precision.full_precision`, the
    equivalent of ``torch.amp.custom_fwd(cast_inputs=torch.float32)`` and ``custom_bwd``).
    """

    @staticmethod
    @full_precision
    def forward(ctx, xp: Tensor, Wp: Tensor, Vp: Tensor, bp: Tensor, c: Tensor) -> Tensor:
        N, D = xp.shape
        shared = Wp.dim() == 2
        hs = torch.empty(D, N, c.shape[-1], dtype=c.dtype, device=c.device)
        logits = torch.empty(D, N, dtype=c.dtype, device=c.device)
        a = c.clone()
        xt = xp.t()
        for k in range(D):
            if k > 0:
                if shared:
                    a.addr_(xt[k - 1], Wp[k - 1])
                else:
                    a.addcmul_(xt[k - 1].unsqueeze(-1), Wp[:, k - 1])
            h = torch.sigmoid(a, out=hs[k])
            if shared:
                torch.mv(h, Vp[k], out=logits[k])
            else:
                torch.sum(h * Vp[:, k], -1, out=logits[k])
        logits = logits.t() + bp                                          # (N, D)
        lp = (xp * logits - F.softplus(logits)).sum(-1)
        ctx.save_for_backward(xp, Wp, Vp, hs, logits)
        return lp

    @staticmethod
    @full_precision
    def backward(ctx, g: Tensor):
        xp, Wp, Vp, hs, logits = ctx.saved_tensors
        need_x, need_W, need_V, need_b, need_c = ctx.needs_input_grad
        N, D = xp.shape
        shared = Wp.dim() == 2
        dl = g.unsqueeze(-1) * (xp - torch.sigmoid(logits))              # (N, D)
        dlt, xt = dl.t(), xp.t()
        grad_W = torch.empty_like(Wp) if need_W else None
        grad_V = torch.empty_like(Vp) if need_V else None
        grad_x = torch.empty_like(xp) if need_x else None
        S = torch.zeros_like(hs[0])                                       # sum_{j>k} da_j, (N, H)
        for k in range(D - 1, -1, -1):
            h = hs[k]
            if need_W:
                if shared:
                    torch.mv(S.t(), xt[k], out=grad_W[k])
                else:
                    grad_W[:, k] = xt[k].unsqueeze(-1) * S
            if need_x:
                Wk = Wp[k] if shared else Wp[:, k]
                grad_x[:, k] = (S * Wk).sum(-1)
            Vk = Vp[k] if shared else Vp[:, k]
            if need_V:
                if shared:
                    torch.mv(h.t(), dlt[k], out=grad_V[k])
                else:
                    grad_V[:, k] = dlt[k].unsqueeze(-1) * h
            # da_k = dl_k V_k h_k (1 - h_k), accumulated into S after W_k used S_k
            S.add_(torch.sub(1.0, h).mul_(h).mul_(Vk).mul_(dlt[k].unsqueeze(-1)))
        if need_x:
            grad_x += g.unsqueeze(-1) * logits
        return grad_x, grad_W, grad_V, dl if need_b else None, S if need_c else None


def _segment_log_prob(xp: Tensor, Wp: Tensor, Vp: Tensor, bp: Tensor, c: Tensor) -> Tensor:
    r"""``log p(v | o)`` for exactly binary ``xp``, exploiting that ``a_k`` only changes at ones.

    With ``m`` ones in a vector, :math:`a_k` takes ``m + 1`` distinct values: :math:`A_s = c + \sum`
    of the ``W`` rows of the first ``s`` ones, ``s = 0..m``. So the cumulative sum runs over the ones
    only (``(N, S, H)`` with ``S = 1 + max m``), and all logits come from one matrix product
    ``sigmoid(A) V^T`` ``(N, S, D)`` from which position ``k`` picks segment ``seg_k`` = number of
    ones before it. Cost O(N S D H) in dense matrix products and O(N S (D + H)) memory, against
    O(N D H) memory-bound element-wise work for the plain cumulative sum: for sparse data (a
    piano-roll frame has ~4 notes of 88) it ties with :class:`_NADELogProb`. Autograd differentiates it
    (matmuls, gathers); ``xp`` gets no gradient (it is used as an index).
    Shapes as :class:`_NADELogProb`.
    """
    N, D = xp.shape
    active = xp > 0.5
    n_active = active.sum(1)
    S = int(n_active.max()) + 1 if N else 1
    # positions of the ones, in ordering order, padded (stable sort puts ones first, in order)
    pos = torch.sort((~active).to(torch.uint8), dim=1, stable=True).indices[:, : S - 1]
    valid = torch.arange(S - 1, device=xp.device).unsqueeze(0) < n_active.unsqueeze(1)
    if Wp.dim() == 2:
        inc = Wp[pos]                                                   # (N, S-1, H)
    else:
        inc = Wp.gather(1, pos.unsqueeze(-1).expand(-1, -1, Wp.shape[-1]))
    inc = inc * valid.unsqueeze(-1).to(inc.dtype)
    A = torch.cat([c.unsqueeze(1), c.unsqueeze(1) + inc.cumsum(1)], 1)  # (N, S, H)
    hs = torch.sigmoid(A)
    seg = active.long().cumsum(1) - active.long()                        # (N, D): ones before k
    if Vp.dim() == 2:
        table = hs @ Vp.t()                                              # (N, S, D)
        picked = table.gather(1, seg.unsqueeze(1)).squeeze(1)
    else:
        table = torch.bmm(Vp, hs.transpose(1, 2))                        # (N, D, S)
        picked = table.gather(2, seg.unsqueeze(-1)).squeeze(-1)
    logits = bp + picked
    return (xp * logits - F.softplus(logits)).sum(-1)


def _ordered_logits(xp: Tensor, Wp: Tensor, Vp: Tensor, bp: Tensor, c: Tensor) -> Tensor:
    """Logits ``l_k = b_{o_k} + V_{o_k} . sigmoid(c + sum_{j<k} W_{o_j} x_{o_j})``, ``(N, D)`` in
    ordering order, with plain tensor ops (one ``cumsum`` over positions; autograd differentiates it).

    Keeps ``(N, D, H)`` intermediates; the fused :class:`_NADELogProb` is the memory-light path.
    """
    contrib = xp.unsqueeze(-1) * Wp
    a = c.unsqueeze(1) + torch.cat([torch.zeros_like(contrib[:, :1]),
                                    contrib[:, :-1].cumsum(1)], 1)
    return bp + (torch.sigmoid(a) * Vp).sum(-1)


#: implementations of :meth:`NADE.log_prob`
IMPLEMENTATIONS = ("auto", "cumsum", "segments", "autograd")


class NADE(nn.Module):
    """Neural autoregressive distribution estimator over ``{0,1}^D`` (see the module docstring).

    Args:
        n_visible: ``D``. n_hidden: ``H``.
        ordering: the default ordering, a ``(D,)`` permutation or a name from :data:`ORDERING_NAMES`.
        bias: whether the module owns ``b`` and ``c``; without them every call must pass
            ``visible_bias`` and ``hidden_bias`` (the conditional use in :class:`NADEFrame`).
        init_scale: standard deviation of the initial ``W``; ``V`` gets ``init_scale`` too.

    Cost: ``log_prob`` and its gradient O(N D H) time and memory; ``sample`` O(N D H) time in ``D``
    sequential steps.
    """

    def __init__(self, n_visible: int, n_hidden: int, *, ordering: Tensor | str = "natural",
                 bias: bool = True, init_scale: float = 0.05, ordering_seed: int = 0) -> None:
        super().__init__()
        if int(n_visible) < 1 or int(n_hidden) < 1:
            raise UserError(f"NADE needs positive sizes, got n_visible={n_visible}, n_hidden={n_hidden}")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        D, H = self.n_visible, self.n_hidden
        self.weight = nn.Parameter(torch.randn(H, D) * init_scale)          # W: visible -> hidden
        self.output_weight = nn.Parameter(torch.randn(D, H) * init_scale)   # V: hidden -> visible
        if bias:
            self.visible_bias = nn.Parameter(torch.zeros(D))
            self.hidden_bias = nn.Parameter(torch.zeros(H))
        else:
            self.register_parameter("visible_bias", None)
            self.register_parameter("hidden_bias", None)
        if isinstance(ordering, str):
            ordering = make_ordering(ordering, D, seed=ordering_seed)
        self.register_buffer("ordering", self.check_ordering(torch.as_tensor(ordering)))

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    # ------------------------------------------------------------------ argument handling
    def check_ordering(self, ordering: Tensor) -> Tensor:
        """Validate a ``(D,)`` or ``(..., D)`` tensor of permutations and return it as int64."""
        D = self.n_visible
        if ordering.dim() < 1 or ordering.shape[-1] != D:
            raise UserError(f"an ordering must have shape (..., {D}), got {tuple(ordering.shape)}")
        ordering = ordering.long()
        if not torch.equal(ordering.sort(-1).values,
                           torch.arange(D, device=ordering.device).expand_as(ordering)):
            raise UserError(f"an ordering must be a permutation of 0..{D - 1}")
        return ordering

    def random_orderings(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, D)`` independent uniformly random permutations (argsort of uniform noise)."""
        return torch.rand(n, self.n_visible, generator=generator, device=self.weight.device).argsort(-1)

    def _biases(self, visible_bias: Tensor | None, hidden_bias: Tensor | None) -> tuple[Tensor, Tensor]:
        b = self.visible_bias if visible_bias is None else visible_bias
        c = self.hidden_bias if hidden_bias is None else hidden_bias
        if b is None or c is None:
            raise UserError("this NADE has no biases of its own; pass visible_bias and hidden_bias")
        if b.shape[-1:] != (self.n_visible,):
            raise UserError(f"visible_bias must have shape (..., {self.n_visible}), got {tuple(b.shape)}")
        if c.shape[-1:] != (self.n_hidden,):
            raise UserError(f"hidden_bias must have shape (..., {self.n_hidden}), got {tuple(c.shape)}")
        return b, c

    def _prepare(self, x: Tensor | None, visible_bias, hidden_bias, ordering, batch_shape=()):
        """Broadcast everything to ``N`` flat examples and permute into the ordering.

        Returns ``(batch_shape, xp or None, Wp, Vp, bp, c, o)`` where ``o`` is ``(D,)`` (shared) or
        ``(N, D)`` and ``Wp``/``Vp`` are ``(D, H)`` or ``(N, D, H)`` accordingly.
        """
        b, c = self._biases(visible_bias, hidden_bias)
        o = (self.ordering if ordering is None
             else self.check_ordering(torch.as_tensor(ordering, device=self.weight.device)))
        shapes = [tuple(batch_shape), b.shape[:-1], c.shape[:-1], o.shape[:-1]]
        if x is not None:
            if x.shape[-1:] != (self.n_visible,):
                raise UserError(f"NADE expects vectors of size {self.n_visible}, got shape {tuple(x.shape)}")
            shapes.append(x.shape[:-1])
        try:
            batch = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise UserError(f"cannot broadcast the batch shapes {shapes} of data, biases and ordering") from None
        N, D, H = math.prod(batch), self.n_visible, self.n_hidden
        dtype = self.weight.dtype
        b = b.to(dtype).expand(*batch, D).reshape(N, D)
        c = c.to(dtype).expand(*batch, H).reshape(N, H)
        W_rows = self.weight.t()                                   # (D, H): row d = W[:, d]
        if o.dim() == 1:
            Wp, Vp, bp = W_rows[o], self.output_weight[o], b[:, o]
            xp = None if x is None else x.to(dtype).expand(*batch, D).reshape(N, D)[:, o]
        else:
            o = o.expand(*batch, D).reshape(N, D)
            Wp, Vp, bp = W_rows[o], self.output_weight[o], b.gather(1, o)
            xp = None if x is None else x.to(dtype).expand(*batch, D).reshape(N, D).gather(1, o)
        return batch, xp, Wp, Vp, bp, c, o

    # ------------------------------------------------------------------ likelihood
    @full_precision
    def log_prob(self, x: Tensor, *, visible_bias: Tensor | None = None,
                 hidden_bias: Tensor | None = None, ordering: Tensor | None = None,
                 impl: str = "auto") -> Tensor:
        """Exact :math:`\\log p(x \\mid o)` in nats, shape the broadcast batch shape.

        Args:
            x: ``(..., D)`` binary vectors (any float or integer dtype holding 0/1).
            visible_bias, hidden_bias: per-example ``(..., D)`` / ``(..., H)`` biases replacing the
                module's own.
            ordering: ``(D,)`` or ``(..., D)`` permutations; default the module's ``ordering``.
            impl: ``cumsum`` (O(DH), hand-written forward and backward, :class:`_NADELogProb`),
                ``segments`` (cumulative sum over the ones only, :func:`_segment_log_prob`; needs
                exactly binary ``x``), ``autograd`` (:meth:`log_prob_autograd`); ``auto`` is
                ``cumsum``, the fastest measured (``benchmarks/nade_speed.py``; ``segments`` only
                ties it on piano-roll-sparse data). All four give the same numbers and gradients (tested).
        """
        if impl not in IMPLEMENTATIONS:
            raise UserError(f"unknown NADE implementation {impl!r}; expected one of {', '.join(IMPLEMENTATIONS)}")
        if impl == "autograd":
            return self.log_prob_autograd(x, visible_bias=visible_bias, hidden_bias=hidden_bias,
                                          ordering=ordering)
        batch, xp, Wp, Vp, bp, c, _ = self._prepare(x, visible_bias, hidden_bias, ordering)
        if impl == "auto":
            impl = "cumsum"
        if impl == "segments":
            if not bool(((xp == 0) | (xp == 1)).all()):
                raise UserError("the segments implementation of NADE needs exactly binary data")
            return _segment_log_prob(xp, Wp, Vp, bp, c).reshape(batch)
        return _NADELogProb.apply(xp, Wp, Vp, bp, c).reshape(batch)

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        """Same as :meth:`log_prob` (so ``torch.func.functional_call`` works on a NADE)."""
        return self.log_prob(x, **kwargs)

    @full_precision
    def log_prob_autograd(self, x: Tensor, *, visible_bias: Tensor | None = None,
                          hidden_bias: Tensor | None = None, ordering: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`, written with plain tensor ops and differentiated by autograd.

        The reference the fused :meth:`log_prob` is tested against (values and gradients); also
        O(DH), but it keeps about three ``(N, D, H)`` intermediates alive for the backward.
        """
        batch, xp, Wp, Vp, bp, c, _ = self._prepare(x, visible_bias, hidden_bias, ordering)
        logits = _ordered_logits(xp, Wp, Vp, bp, c)
        return (xp * logits - F.softplus(logits)).sum(-1).reshape(batch)

    def conditional_logits(self, x: Tensor, *, visible_bias: Tensor | None = None,
                           hidden_bias: Tensor | None = None, ordering: Tensor | None = None) -> Tensor:
        """Logits :math:`\\ell_d` of :math:`p(x_d = 1 \\mid x_{\\text{before } d})`, ``(..., D)``,
        indexed by dimension (not by position in the ordering)."""
        batch, xp, Wp, Vp, bp, c, o = self._prepare(x, visible_bias, hidden_bias, ordering)
        logits_p = _ordered_logits(xp, Wp, Vp, bp, c)                   # (N, D) in ordering order
        o = o.expand_as(logits_p) if o.dim() == 1 else o
        return torch.empty_like(logits_p).scatter_(1, o, logits_p).reshape(*batch, self.n_visible)

    @full_precision
    def log_prob_ensemble(self, x: Tensor, orderings: Tensor, *, visible_bias: Tensor | None = None,
                          hidden_bias: Tensor | None = None) -> Tensor:
        """Exact log-likelihood of the mixture of ``K`` orderings ``(K, D)``:
        ``logsumexp_k log p(x | o_k) - log K``, shape the batch shape of ``x`` and the biases."""
        orderings = self.check_ordering(torch.as_tensor(orderings, device=self.weight.device))
        if orderings.dim() != 2:
            raise UserError(f"orderings for an ensemble must have shape (K, {self.n_visible})")
        per = torch.stack([self.log_prob(x, visible_bias=visible_bias, hidden_bias=hidden_bias,
                                         ordering=o) for o in orderings.unbind(0)], 0)
        return torch.logsumexp(per, 0) - math.log(orderings.shape[0])

    def order_agnostic_loss(self, x: Tensor, *, visible_bias: Tensor | None = None,
                            hidden_bias: Tensor | None = None,
                            generator: torch.Generator | None = None) -> Tensor:
        """``-log p(x | o)`` with an independent uniformly random ``o`` per example, shape the batch
        shape: an unbiased estimate of :math:`-\\mathbb{E}_o \\log p(x \\mid o)` (Uria et al. 2014)."""
        b, c = self._biases(visible_bias, hidden_bias)
        batch = torch.broadcast_shapes(x.shape[:-1], b.shape[:-1], c.shape[:-1])
        o = self.random_orderings(math.prod(batch), generator=generator).reshape(*batch, self.n_visible)
        return -self.log_prob(x, visible_bias=visible_bias, hidden_bias=hidden_bias, ordering=o)

    # ------------------------------------------------------------------ missing values
    def observed_first(self, observed: Tensor, ordering: Tensor | None = None) -> Tensor:
        """Orderings ``(..., D)`` that put each example's observed dimensions first, both groups kept
        in the order of ``ordering`` (default the module's): the ordering under which
        :math:`\\log p(x_{obs} \\mid o')` is a prefix of the chain rule, so exact (Uria et al. 2014)."""
        o = self.ordering if ordering is None else self.check_ordering(torch.as_tensor(ordering))
        o = o.to(observed.device).expand(*observed.shape[:-1], self.n_visible)
        D = self.n_visible
        missing_at = (~observed.gather(-1, o)).long()            # by position in o
        key = missing_at * D + torch.arange(D, device=o.device)
        return o.gather(-1, key.argsort(-1))

    def observed_is_prefix(self, observed: Tensor, ordering: Tensor | None = None) -> Tensor:
        """Whether the observed dimensions of each example are the first ones of ``ordering``
        (then :meth:`observed_log_prob` is the model's own exact marginal), shape the batch shape."""
        o = self.ordering if ordering is None else self.check_ordering(torch.as_tensor(ordering))
        seen = observed.gather(-1, o.to(observed.device).expand(*observed.shape[:-1], self.n_visible))
        return (seen[..., 1:] <= seen[..., :-1]).all(-1)

    @full_precision
    def observed_log_prob(self, x: Tensor, observed: Tensor, *, visible_bias: Tensor | None = None,
                          hidden_bias: Tensor | None = None, ordering: Tensor | None = None) -> Tensor:
        """:math:`\\log p(x_{obs} \\mid o')` with :math:`o'` = :meth:`observed_first` of ``ordering``:
        the product of the conditionals of the observed dimensions, which come first in :math:`o'`.

        Exact marginal of the NADE with ordering :math:`o'`; of the NADE with ordering ``o`` itself
        only where :meth:`observed_is_prefix` (an order-agnostically trained NADE makes the
        orderings agree approximately, never exactly). Computed as the full :math:`\\log p(x_0 \\mid o')`
        of ``x`` with zeros at the missing dimensions minus their terms: after the observed
        dimensions the hidden pre-activation stays :math:`a_0 = c + W x_0` (zeros add nothing), so
        each missing term is :math:`\\log\\sigma(-(b_d + V_d \\sigma(a_0)))`. O(N D H).
        """
        observed = observed.bool()
        xo = torch.where(observed, x.to(self.weight.dtype), torch.zeros((), dtype=self.weight.dtype,
                                                                        device=x.device))
        o = self.observed_first(observed, ordering)
        full = self.log_prob(xo, visible_bias=visible_bias, hidden_bias=hidden_bias, ordering=o)
        b, c = self._biases(visible_bias, hidden_bias)
        a0 = c + xo @ self.weight.t()
        logits = b + torch.sigmoid(a0) @ self.output_weight.t()          # l_d at a_0, (..., D)
        missing_terms = torch.where(observed, torch.zeros_like(logits), F.logsigmoid(-logits)).sum(-1)
        return full - missing_terms

    @torch.no_grad()
    def sample_missing(self, x: Tensor, observed: Tensor, *, visible_bias: Tensor | None = None,
                       hidden_bias: Tensor | None = None, ordering: Tensor | None = None,
                       temperature: float = 1.0, generator: torch.Generator | None = None
                       ) -> tuple[Tensor, Tensor]:
        """Draw the missing dimensions from their conditionals under :meth:`observed_first` of
        ``ordering``: ``(filled, log_q)``, ``filled`` equal to ``x`` where observed and ``log_q`` the
        log-probability of the drawn values under this (tempered) proposal, batch shape.

        The exact conditional :math:`p(x_{mis} \\mid x_{obs})` of the NADE with ordering
        :math:`o'`. Cost: one ``(N, D) x (D, H)`` product for :math:`a_0 = c + W x_{obs}`, then one
        O(N H) step per missing dimension (the longest example's count).
        """
        if temperature <= 0:
            raise UserError(f"temperature must be positive, got {temperature}")
        observed = observed.bool()
        b, c = self._biases(visible_bias, hidden_bias)
        batch = torch.broadcast_shapes(x.shape[:-1], observed.shape[:-1], b.shape[:-1], c.shape[:-1])
        D, H = self.n_visible, self.n_hidden
        N = math.prod(batch)
        dtype = self.weight.dtype
        obs = observed.expand(*batch, D).reshape(N, D)
        xo = torch.where(obs, x.to(dtype).expand(*batch, D).reshape(N, D), torch.zeros((), dtype=dtype,
                                                                                       device=x.device))
        b = b.to(dtype).expand(*batch, D).reshape(N, D)
        c = c.to(dtype).expand(*batch, H).reshape(N, H)
        o = self.ordering if ordering is None else self.check_ordering(torch.as_tensor(ordering))
        o = o.to(x.device).expand(*batch, D).reshape(N, D)
        missing_at = (~obs.gather(1, o)).long()                            # by position in o
        key = (1 - missing_at) * D + torch.arange(D, device=x.device)     # missing first, in order
        missing_dims = o.gather(1, key.argsort(1))
        counts = missing_at.sum(1)
        a = c + xo @ self.weight.t()
        filled, log_q = xo.clone(), torch.zeros(N, dtype=dtype, device=x.device)
        rows = torch.arange(N, device=x.device)
        for j in range(int(counts.max()) if N else 0):
            d = missing_dims[:, j]
            active = j < counts
            logit = (b.gather(1, d[:, None])[:, 0] + (torch.sigmoid(a) * self.output_weight[d]).sum(-1)) / temperature
            v = torch.bernoulli(torch.sigmoid(logit), generator=generator)
            v = torch.where(active, v, torch.zeros_like(v))
            log_q = log_q + torch.where(active, v * logit - F.softplus(logit), torch.zeros_like(logit))
            filled[rows, d] = torch.where(active, v, filled[rows, d])
            a = a + v.unsqueeze(-1) * self.weight.t()[d]
        return filled.reshape(*batch, D), log_q.reshape(batch)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] | int = (), *, visible_bias: Tensor | None = None,
               hidden_bias: Tensor | None = None, ordering: Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral samples, shape ``sample_shape + batch_shape + (D,)`` (batch shape from the biases
        and ``ordering``), in ``D`` sequential steps of O(N H) each.

        Each conditional's logit is divided by ``temperature`` (> 0).
        """
        if temperature <= 0:
            raise UserError(f"temperature must be positive, got {temperature}")
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        b, c = self._biases(visible_bias, hidden_bias)
        o_shape = () if ordering is None else torch.as_tensor(ordering).shape[:-1]
        inner = torch.broadcast_shapes(b.shape[:-1], c.shape[:-1], o_shape)
        batch, _, Wp, Vp, bp, c, o = self._prepare(None, visible_bias, hidden_bias, ordering,
                                                   tuple(sample_shape) + tuple(inner))
        N, D = bp.shape
        a = c.clone()
        xp = torch.empty(N, D, dtype=bp.dtype, device=bp.device)
        for k in range(D):
            Wk = Wp[k] if Wp.dim() == 2 else Wp[:, k]
            Vk = Vp[k] if Vp.dim() == 2 else Vp[:, k]
            hk = torch.sigmoid(a)
            logit = bp[:, k] + (hk @ Vk if Vk.dim() == 1 else (hk * Vk).sum(-1))
            v = torch.bernoulli(torch.sigmoid(logit / temperature), generator=generator)
            xp[:, k] = v
            a = a + v.unsqueeze(-1) * Wk
        o = o.expand(N, D) if o.dim() == 1 else o
        return torch.empty_like(xp).scatter_(1, o, xp).reshape(*batch, D)


class NADEFrame(FrameDistribution):
    """A NADE per frame whose biases are the backbone's output: ``theta_t = [b_t (D), c_t (H)]``.

    The shared weights ``W``, ``V`` live here as parameters; ``param_dim = D + H``. With
    ``n_orderings = K > 1`` the frame is the exact mixture over ``K`` fixed orderings (buffers,
    saved with the weights): ``log_prob`` is their log-mean-exp and ``sample`` picks one ordering per
    frame uniformly. ``order_agnostic=True`` makes :meth:`loss` the direct random-order objective
    (a fresh ordering per frame); :meth:`log_prob` stays the exact likelihood of the ``K``-mixture.

    ``mean`` (the one-step-ahead prediction for ``--metric mse``) has no closed form for NADE: it is a
    Monte-Carlo estimate from :attr:`mean_samples` ancestral samples drawn with a fixed seed, so it
    is deterministic but carries MC error of order ``0.5 / sqrt(mean_samples)`` per dimension.
    """

    data_kind = "binary"
    likelihood_kind = "exact"
    mean_samples = 64

    def __init__(self, dim: int, hidden: int, *, ordering: str = "natural", n_orderings: int = 1,
                 order_agnostic: bool = False, seed: int = 0, init_scale: float = 0.05) -> None:
        super().__init__()
        if int(n_orderings) < 1:
            raise UserError(f"n_orderings must be at least 1, got {n_orderings}")
        self.param_dim = int(dim) + int(hidden)
        self.input_dim = int(dim)
        self.event_shape = torch.Size([int(dim)])
        self.order_agnostic = bool(order_agnostic)
        self.nade = NADE(dim, hidden, ordering=ordering, bias=False, init_scale=init_scale,
                         ordering_seed=seed)
        first = self.nade.ordering.unsqueeze(0)
        rest = torch.rand(int(n_orderings) - 1, int(dim),
                          generator=torch.Generator().manual_seed(int(seed) + 1)).argsort(-1)
        self.register_buffer("orderings", torch.cat([first, rest], 0))

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        D = self.input_dim
        return params[..., :D], params[..., D:]

    @full_precision
    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        b, c = self._split(params)
        if self.orderings.shape[0] == 1:
            return self.nade.log_prob(x, visible_bias=b, hidden_bias=c, ordering=self.orderings[0])
        return self.nade.log_prob_ensemble(x, self.orderings, visible_bias=b, hidden_bias=c)

    @full_precision
    def loss(self, params: Tensor, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        if not self.order_agnostic:
            return -self.log_prob(params, x)
        b, c = self._split(params)
        return self.nade.order_agnostic_loss(x, visible_bias=b, hidden_bias=c, generator=generator)

    def sample(self, params, *, temperature=1.0, generator=None):
        b, c = self._split(params)
        K = self.orderings.shape[0]
        if K == 1:
            ordering = self.orderings[0]
        else:
            pick = torch.randint(K, params.shape[:-1], generator=generator, device=params.device)
            ordering = self.orderings[pick]
        return self.nade.sample(visible_bias=b.detach(), hidden_bias=c.detach(), ordering=ordering,
                                temperature=temperature, generator=generator)

    #: exact marginal of the observed dimensions when they come first in the ordering(s)
    observed_marginal = "prefix"

    def observed_is_prefix(self, observed: Tensor) -> Tensor:
        """Whether the observed dimensions come first in every ordering of the frame (batch shape):
        there :meth:`observed_log_prob` is the frame's own exact marginal."""
        return torch.stack([self.nade.observed_is_prefix(observed, o) for o in self.orderings], 0).all(0)

    @full_precision
    def observed_log_prob(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        """:math:`\\log \\frac1K \\sum_k p(x_{obs} \\mid o'_k)`, each ordering :math:`o_k` with the
        observed dimensions moved first (:meth:`NADE.observed_log_prob`): the exact marginal where
        :meth:`observed_is_prefix`, otherwise the marginal of the NADE(s) with the reordered orderings."""
        b, c = self._split(params)
        per = torch.stack([self.nade.observed_log_prob(x, observed, visible_bias=b, hidden_bias=c,
                                                       ordering=o) for o in self.orderings], 0)
        return torch.logsumexp(per, 0) - math.log(per.shape[0])

    @full_precision
    def observed_loss(self, params, x, observed, *, generator=None):
        """``-observed_log_prob``; under ``order_agnostic`` the observed dimensions of each frame are
        taken in a fresh uniformly random order (the random-order objective of the observed part)."""
        if not self.order_agnostic:
            return -self.observed_log_prob(params, x, observed)
        b, c = self._split(params)
        batch = torch.broadcast_shapes(x.shape[:-1], b.shape[:-1], observed.shape[:-1])
        o = self.nade.random_orderings(math.prod(batch), generator=generator).reshape(*batch, self.input_dim)
        return -self.nade.observed_log_prob(x, observed, visible_bias=b, hidden_bias=c, ordering=o)

    def fill_missing(self, params, x, observed, *, temperature=1.0, generator=None):
        """Proposal: the exact conditional of the NADE with the first ordering's observed dimensions
        moved first (:meth:`NADE.sample_missing`); weight ``log p(filled) - log q``. Where the
        observed dimensions are a prefix of a single ordering the weight is the exact marginal."""
        b, c = self._split(params.detach())
        filled, log_q = self.nade.sample_missing(x, observed, visible_bias=b, hidden_bias=c,
                                                 ordering=self.orderings[0], temperature=temperature,
                                                 generator=generator)
        filled = filled.to(x.dtype)
        return filled, self.log_prob(params, filled) - log_q.to(params.dtype)

    def curvature_logits(self, params: Tensor, x: Tensor) -> Tensor | None:
        """The Bernoulli logits of every conditional :math:`p(x_d \\mid x_{<d})`, ``params.shape[:-1] + (D,)``.

        With one ordering ``log_prob(params, x)`` is the Bernoulli log-likelihood of ``x`` under these
        logits, a loss convex in them; Hessian-free optimisation (:mod:`probseq.optim`) uses them as
        the outputs of its Gauss-Newton matrix. ``None`` for a mixture of orderings (not convex).
        """
        if self.orderings.shape[0] != 1:
            return None
        b, c = self._split(params)
        return self.nade.conditional_logits(x, visible_bias=b, hidden_bias=c, ordering=self.orderings[0])

    @torch.no_grad()
    def mean(self, params):
        gen = torch.Generator(device=params.device).manual_seed(0)
        draws = [self.sample(params, generator=gen) for _ in range(self.mean_samples)]
        return torch.stack(draws, 0).mean(0)

    def validate(self, x):
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise UserError("the data contains NaN or infinite values")
        if not ((x == 0) | (x == 1)).all():
            raise UserError("NADE frames must contain only 0 and 1")
