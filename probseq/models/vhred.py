"""Hierarchical dialogue models: HRED and VHRED (Serban et al. 2016; Serban et al. 2017).

A dialogue is a sequence of turns ``w_1, ..., w_N``; turn ``w_n = (w_{n,1}, ..., w_{n,M_n})`` is a
sequence of word ids whose last one is the end-of-turn symbol ``<eot>``
(:mod:`probseq.text.vocab`). Three GRUs make the hierarchy:

* the **utterance encoder** reads the word embeddings of a turn; its last state is the turn's
  encoding ``e_n``;
* the **context RNN** reads the encodings turn by turn, ``c_n = GRU(c_{n-1}, e_n)``, with a learned
  ``c_0``; ``c_{n-1}`` summarises the dialogue before turn ``n``;
* the **decoder** generates turn ``n`` word by word from ``[c_{n-1}, z_n]`` (its initial state is
  ``tanh(W [c_{n-1}, z_n] + b)`` and ``[c_{n-1}, z_n]`` is appended to every input embedding); its
  first input is ``<eot>`` (the end of the previous turn acts as the begin symbol).

HRED (Serban et al., AAAI 2016) has no ``z``; its likelihood is exact:

.. math::

    \\log p(w_{1:N} \\mid N) = \\sum_{n=1}^N \\sum_{m=1}^{M_n}
        \\log p(w_{n,m} \\mid w_{n,<m}, c_{n-1}).

VHRED (Serban et al., AAAI 2017) adds a Gaussian latent ``z_n`` per turn with a learned prior
``p(z_n | c_{n-1}) = N(mu_p, diag sigma_p^2)`` and an approximate posterior
``q(z_n | c_{n-1}, e_n) = N(mu_q, diag sigma_q^2)`` (two-layer tanh networks; standard deviations
``softplus(.) + 1e-4``). The context RNN reads only the words, so given the words the ``z_n`` are
independent under both prior and posterior, and

.. math::

    \\log p(w_{1:N} \\mid N) = \\sum_n \\log p(w_n \\mid c_{n-1}) \\ge
        \\sum_n \\Big( \\mathbb{E}_{q(z_n)}[\\log p(w_n \\mid z_n, c_{n-1})]
        - \\mathrm{KL}(q(z_n) \\,\\|\\, p(z_n \\mid c_{n-1})) \\Big)

(the ELBO, with the Gaussian KL in closed form). The IWAE-``K`` bound (Burda et al. 2016) is taken
*per turn*, ``sum_n log (1/K) sum_k p(w_n, z_n^k | c_{n-1}) / q(z_n^k)``, which is a valid lower
bound (a sum of lower bounds of the ``N`` terms) and tighter than one ``K``-sample bound on the
whole dialogue. Both are labelled kind ``bound``; the ELBO's Monte-Carlo reconstruction term comes
with its standard error when ``samples >= 2``.

Length: the end of each turn is the ``<eot>`` symbol in the same softmax as the words (the
``end-symbol`` idea of :mod:`probseq.lengths`), so turn lengths are modelled. The number of turns
``N`` is *given*, not modelled, as in the papers. ``<pad>`` has no logit at all (the readout
covers ids ``1..V-1``), so the softmax is over exactly the symbols that can occur.

Training (:meth:`VHRED.loss`): the negative ELBO per predicted token, with one reparameterised
sample per turn, KL annealing (:mod:`probseq.models.objectives.kl_annealing`; by default the weight rises
linearly from 0 to 1 over the first 30% of the steps, Bowman et al. 2016), optional free bits
(per latent unit and turn, Kingma et al. 2016) and word dropout (decoder inputs replaced by
``<unk>`` with probability ``word_dropout``, 0.25 by default, Bowman et al. 2016). The estimators
of ``log_prob`` are the shared ones of :mod:`probseq.estimators.latent` applied per turn.

Generation: :meth:`HRED.respond` answers a context by ancestral sampling (with temperature) or
beam search; VHRED draws ``z`` from the prior first. :meth:`HRED.sample` generates whole
dialogues of a given number of turns. ``probseq sample RUN --prime context.txt`` (one turn per line)
prints both (:meth:`HRED.sample_from_prime_file`).

Vocabulary: the model keeps its :class:`~probseq.text.vocab.Vocabulary` in the buffer
``vocab_bytes`` (UTF-8, newline-separated; :mod:`probseq.text.stored_vocab`), filled by
:meth:`HRED.prepare` from the dataset, so ``model.pt`` alone tokenises a context exactly as training
did. Beam search is :mod:`probseq.text.beam_search`; the ``--prime`` report is
:mod:`probseq.text.responses`.

References:
    [1] I. V. Serban, A. Sordoni, Y. Bengio, A. Courville, J. Pineau. Building end-to-end dialogue
        systems using generative hierarchical neural network models. AAAI 2016.
    [2] I. V. Serban, A. Sordoni, R. Lowe, L. Charlin, J. Pineau, A. Courville, Y. Bengio. A
        hierarchical latent variable encoder-decoder model for generating dialogues. AAAI 2017.
    [3] S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio. Generating sentences
        from a continuous space. CoNLL 2016.
    [4] Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016.
    [5] D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling. Improved
        variational inference with inverse autoregressive flow. NeurIPS 2016 (free bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from probseq.data.spec import DataSpec
from probseq.device import generator_for, model_device
from probseq.errors import UserError
from probseq.estimators import latent as latent_estimators
from probseq.models.base import LogProb, SequenceModel
from probseq.models.gaussian import gaussian_kl, gaussian_log_density, loc_scale
from probseq.models.registry import register_model
from probseq.precision import full_precision
from probseq.text.batch import DialogueBatch
from probseq.text.beam_search import beam_search
from probseq.text.responses import Response, format_responses, read_context_file
from probseq.text.stored_vocab import StoredVocabulary
from probseq.text.vocab import EOT_ID, PAD_ID, UNK_ID, Vocabulary
from probseq.models.objectives.kl_annealing import KLAnnealing, free_bits_kl

__all__ = ["HRED", "VHRED", "Response"]

#: cap on (tokens x samples x vocabulary) logits held at once by the estimators (bounds memory: 80 MB)
_LOGITS_PER_CHUNK = 20_000_000


@full_precision
def _token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """``log softmax(logits)[target]`` per token, in float32 even under autocast (summed per turn)."""
    return -F.cross_entropy(logits, targets, reduction="none")


@dataclass
class _Encoded:
    """Teacher-forcing view of a batch, flattened to its ``M`` real turns (dialogue-major order)."""

    turns: Tensor           # (M, L) ids, padding set to <pad>
    lengths: Tensor         # (M,) tokens per turn, <eot> included
    dialogue: Tensor        # (M,) index of each turn's dialogue in the batch
    context: Tensor         # (M, Hc) c_{n-1}
    encoding: Tensor        # (M, He) e_n
    batch_size: int


# ---------------------------------------------------------------------------- HRED
@register_model
class HRED(StoredVocabulary, SequenceModel):
    """Hierarchical recurrent encoder-decoder for dialogues (Serban et al. 2016); exact likelihood.

    Hyperparameters:
        embedding: word embedding size. encoder_hidden / context_hidden / decoder_hidden: GRU sizes.
        word_dropout: training-time probability of replacing a decoder input word by ``<unk>``.
        beam_size: beam width of :meth:`respond` with ``method="beam"`` (and of ``--prime``).
        length_penalty: ``alpha`` of the final beam ranking ``log p / M^alpha`` (0 = plain log p).
        response_length: default cap on generated tokens per turn.
        vocab: the vocabulary as a list of strings (normally set by :meth:`prepare` from the data).
    """

    name = "hred"
    likelihood_kind = "exact"
    estimators = ("exact",)
    data_kinds = ("categorical",)
    #: the generic frame-sequence contract tests do not apply; see ``tests/test_vhred*.py``
    conditional: ClassVar[bool] = True
    hyperparameters: ClassVar[dict[str, Any]] = {
        "embedding": 128, "encoder_hidden": 256, "context_hidden": 256, "decoder_hidden": 256,
        "word_dropout": 0.0, "beam_size": 5, "length_penalty": 0.0, "response_length": 40,
        "vocab": None,
    }
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 16, "clip": 1.0}
    contract_example = {"spec": DataSpec("categorical", 7),
                        "hyper": {"embedding": 5, "encoder_hidden": 6, "context_hidden": 6,
                                  "decoder_hidden": 6}}
    #: size of ``z`` (0 for HRED)
    latent_dim: int = 0

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        vocab_size = int(spec.dim)
        if vocab_size < 3:
            raise UserError(f"a dialogue model needs a vocabulary of at least 3 symbols (<pad>, <unk>, "
                            f"<eot>), got {vocab_size}")
        if not 0.0 <= float(cfg["word_dropout"]) < 1.0:
            raise UserError(f"word_dropout must lie in [0, 1), got {cfg['word_dropout']}")
        if int(cfg["beam_size"]) < 1 or int(cfg["response_length"]) < 1:
            raise UserError("beam_size and response_length must be positive")
        emb, enc = int(cfg["embedding"]), int(cfg["encoder_hidden"])
        ctx, dec = int(cfg["context_hidden"]), int(cfg["decoder_hidden"])
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=PAD_ID)
        self.encoder = nn.GRU(emb, enc, batch_first=True)
        self.context_rnn = nn.GRU(enc, ctx, batch_first=True)
        self.context0 = nn.Parameter(torch.zeros(ctx))
        cond = ctx + self.latent_dim
        self.decoder_init = nn.Linear(cond, dec)
        self.decoder = nn.GRU(emb + cond, dec, batch_first=True)
        #: logits of ids 1..V-1; <pad> (id 0) has none, so it has probability zero
        self.readout = nn.Linear(dec, vocab_size - 1)
        self.init_vocabulary_buffer(cfg.get("vocab"))

    # ---------------------------------------------------------------- vocabulary
    def prepare(self, dataset: Any) -> None:
        """Take the dataset's vocabulary (``dataset.meta["vocab"]``)."""
        tokens = (getattr(dataset, "meta", None) or {}).get("vocab")
        if tokens is not None:
            self.set_vocabulary(Vocabulary.from_list(tokens))

    # ---------------------------------------------------------------- batches
    def collate(self, examples: list[Any]) -> DialogueBatch:
        """Pad dialogues into a :class:`~probseq.text.batch.DialogueBatch`.

        A :class:`~probseq.text.batch.Dialogue` encoded with another vocabulary than the model's
        (different fingerprint) is re-encoded from its text with the model's vocabulary.
        """
        vocab = self.vocabulary
        dialogues = []
        for ex in examples:
            fp = getattr(ex, "vocab_fingerprint", None)
            if vocab is not None and fp is not None and fp != vocab.fingerprint:
                if ex.text is None:
                    raise UserError("a dialogue was encoded with another vocabulary and carries no text "
                                    "to re-encode it")
                ex = [torch.tensor(vocab.encode(t, max_words=ex.max_turn_length)) for t in ex.text]
            dialogues.append(ex)
        return DialogueBatch.from_dialogues(dialogues).to(model_device(self))

    def validate_examples(self, examples: list[Any], where: str = "the data") -> None:
        """Check every dialogue once: non-empty turns of ids in ``[1, V)``, ``<eot>`` exactly at the end.

        Vectorised per dialogue; the per-turn loop runs only to name the first offending turn.
        """
        for i, dialogue in enumerate(examples):
            if isinstance(dialogue, torch.Tensor) or not isinstance(dialogue, (list, tuple)) or not dialogue:
                raise UserError(f"dialogue {i} of {where} is not a non-empty list of turns (id tensors)")
            try:
                turns = [torch.as_tensor(t) for t in dialogue]
                flat = torch.cat(turns)
                lengths = torch.tensor([t.numel() for t in turns])
                ends = lengths.cumsum(0) - 1
                ok = (all(t.dim() == 1 for t in turns) and not flat.is_floating_point()
                      and bool((lengths > 0).all()) and int(flat.min()) >= 1
                      and int(flat.max()) < self.vocab_size
                      and torch.equal((flat == EOT_ID).nonzero().flatten(), ends))
            except (RuntimeError, TypeError, ValueError):
                ok = False
            if not ok:
                self._explain_bad_dialogue(dialogue, f"dialogue {i} of {where}")

    def _explain_bad_dialogue(self, dialogue: Sequence[Any], what: str) -> None:
        for n, turn in enumerate(dialogue):
            try:
                t = torch.as_tensor(turn)
            except (RuntimeError, TypeError, ValueError):
                raise UserError(f"turn {n} of {what} is not a tensor of token ids") from None
            if t.dim() != 1 or t.numel() == 0 or t.is_floating_point():
                raise UserError(f"turn {n} of {what} must be a non-empty 1-d tensor of integer ids, "
                                f"got shape {tuple(t.shape)} ({t.dtype})")
            if int(t.min()) < 1 or int(t.max()) >= self.vocab_size:
                raise UserError(f"turn {n} of {what} has ids outside [1, {self.vocab_size})")
            if int(t[-1]) != EOT_ID or bool((t[:-1] == EOT_ID).any()):
                raise UserError(f"turn {n} of {what} must end with <eot> (id {EOT_ID}) and contain it "
                                "nowhere else")
        raise UserError(f"{what} is not a list of turns of token ids")

    def validate_batch(self, batch: Any) -> None:
        if not isinstance(batch, DialogueBatch):
            raise UserError(f"model {self.name!r} takes dialogues (a DialogueBatch from model.collate), "
                            f"got {type(batch).__name__}")
        mask = batch.token_mask
        real = batch.tokens[mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.vocab_size):
            raise UserError(f"token ids must lie in [0, {self.vocab_size}), got "
                            f"{int(real.min())}..{int(real.max())}")
        if bool((real == PAD_ID).any()):
            raise UserError("a dialogue contains <pad> (id 0) inside a turn")
        last = (torch.arange(batch.tokens.shape[2], device=batch.tokens.device).view(1, 1, -1)
                == (batch.turn_lengths - 1).unsqueeze(-1)) & mask
        is_eot = batch.tokens == EOT_ID
        if bool((last & ~is_eot).any()):
            raise UserError("every turn must end with <eot> (id 2)")
        if bool((is_eot & mask & ~last).any()):
            raise UserError("<eot> (id 2) may only end a turn, but one occurs inside a turn")

    # ---------------------------------------------------------------- encoders
    def _encode_turns(self, turns: Tensor, lengths: Tensor) -> Tensor:
        """Utterance encoder: the last GRU state of each turn, ``(M, L)`` ids -> ``(M, He)``."""
        packed = pack_padded_sequence(self.embed(turns), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.encoder(packed)
        return h[-1]

    def _encode(self, batch: DialogueBatch) -> _Encoded:
        """Encode every turn and run the context RNN; padding is replaced before anything reads it."""
        self.validate_batch(batch)
        mask = batch.token_mask
        tokens = torch.where(mask, batch.tokens, torch.full_like(batch.tokens, PAD_ID))
        turn_mask = batch.turn_mask
        b_idx, n_idx = turn_mask.nonzero(as_tuple=True)
        turns, lengths = tokens[b_idx, n_idx], batch.turn_lengths[b_idx, n_idx]
        turns = turns[:, : int(lengths.max())]
        encoding = self._encode_turns(turns, lengths)
        bsz, n_max = turn_mask.shape
        grid = encoding.new_zeros(bsz, n_max, encoding.shape[-1]).index_put((b_idx, n_idx), encoding)
        h0 = self.context0.view(1, 1, -1).expand(1, bsz, -1).contiguous()
        states, _ = self.context_rnn(grid, h0)
        before = torch.cat([h0.transpose(0, 1), states[:, :-1]], 1)  # c_{n-1}
        return _Encoded(turns, lengths, b_idx, before[b_idx, n_idx], encoding, bsz)

    def _context_after(self, turns: Sequence[Tensor]) -> Tensor:
        """``c_N`` after reading ``turns`` (a list of id tensors, each ending with <eot>), shape ``(Hc,)``."""
        h = self.context0.view(1, 1, -1)
        if len(turns):
            device = self.context0.device
            lengths = torch.tensor([len(t) for t in turns], device=device)
            padded = torch.full((len(turns), int(lengths.max())), PAD_ID, dtype=torch.long, device=device)
            for i, t in enumerate(turns):
                padded[i, : len(t)] = torch.as_tensor(t, device=device)
            enc = self._encode_turns(padded, lengths)
            _, h = self.context_rnn(enc.unsqueeze(0), h)
        return h[0, 0]

    # ---------------------------------------------------------------- decoder
    def _decoder_inputs(self, turns: Tensor, lengths: Tensor, word_dropout: float,
                        generator: torch.Generator | None) -> Tensor:
        """Inputs ``[<eot>, w_1, ..., w_{M-1}]``; words become <unk> with probability ``word_dropout``."""
        inputs = torch.cat([torch.full_like(turns[:, :1], EOT_ID), turns[:, :-1]], 1)
        if word_dropout > 0:
            drop = torch.rand(inputs.shape, generator=generator, device=inputs.device) < word_dropout
            drop[:, 0] = False
            inputs = torch.where(drop, torch.full_like(inputs, UNK_ID), inputs)
        return inputs

    def _turn_log_probs(self, turns: Tensor, lengths: Tensor, inputs: Tensor, cond: Tensor) -> Tensor:
        """``log p(w_n | cond_n)`` per turn: teacher-forced decoder, ``(M,)``.

        Only real tokens reach the readout (packed sequences), so padding costs nothing.
        """
        order = torch.argsort(lengths, descending=True, stable=True)
        turns, lengths, inputs, cond = turns[order], lengths[order], inputs[order], cond[order]
        steps = int(lengths[0])
        x = torch.cat([self.embed(inputs[:, :steps]),
                       cond.unsqueeze(1).expand(-1, steps, -1)], -1)
        h0 = torch.tanh(self.decoder_init(cond)).unsqueeze(0)
        out, _ = self.decoder(pack_padded_sequence(x, lengths.cpu(), batch_first=True), h0)
        targets = pack_padded_sequence(turns[:, :steps], lengths.cpu(), batch_first=True).data
        owner = pack_padded_sequence(
            torch.arange(len(order), device=turns.device).unsqueeze(1).expand(-1, steps), lengths.cpu(),
            batch_first=True).data
        token_lp = _token_log_probs(self.readout(out.data), targets - 1)
        sorted_lp = token_lp.new_zeros(len(order)).index_add(0, owner, token_lp)
        return sorted_lp.new_zeros(len(order)).index_copy(0, order, sorted_lp)

    def _step(self, prev: Tensor, hidden: Tensor, cond: Tensor, temperature: float = 1.0
              ) -> tuple[Tensor, Tensor]:
        """One decoder step: ``(R,)`` previous ids -> ``(R, V)`` next-token log-probs (``<pad>``: -inf)."""
        x = torch.cat([self.embed(prev), cond], -1).unsqueeze(1)
        out, hidden = self.decoder(x, hidden)
        logits = self.readout(out[:, 0]) / temperature
        lp = torch.log_softmax(logits, -1)
        return F.pad(lp, (1, 0), value=-math.inf), hidden

    def _decoder_state(self, cond: Tensor) -> Tensor:
        return torch.tanh(self.decoder_init(cond)).unsqueeze(0)

    # ---------------------------------------------------------------- likelihood
    def _conditioning(self, enc: _Encoded, z: Tensor | None) -> Tensor:
        return enc.context if z is None else torch.cat([enc.context, z], -1)

    def _per_dialogue(self, per_turn: Tensor, enc: _Encoded) -> Tensor:
        """Sum ``(..., M)`` per-turn values into ``(..., B)`` per-dialogue values."""
        out = per_turn.new_zeros(per_turn.shape[:-1] + (enc.batch_size,))
        return out.index_add(-1, enc.dialogue, per_turn)

    def log_prob(self, batch: DialogueBatch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
        """Exact ``log p(w_{1:N} | N)`` per dialogue (nats), ``(B,)``."""
        estimator = self.check_estimator(estimator)
        enc = self._encode(batch)
        inputs = self._decoder_inputs(enc.turns, enc.lengths, 0.0, None)
        per_turn = self._turn_log_probs(enc.turns, enc.lengths, inputs, self._conditioning(enc, None))
        return LogProb(self._per_dialogue(per_turn, enc), "exact", "exact")

    def loss(self, batch: DialogueBatch, *, generator: torch.Generator | None = None) -> Tensor:
        """Negative log-likelihood per predicted token (word dropout applied to the inputs)."""
        enc = self._encode(batch)
        drop = float(self.config["word_dropout"]) if self.training else 0.0
        inputs = self._decoder_inputs(enc.turns, enc.lengths, drop, generator)
        per_turn = self._turn_log_probs(enc.turns, enc.lengths, inputs, self._conditioning(enc, None))
        return -per_turn.sum() / batch.n_frames

    def validation_loss(self, batch: DialogueBatch) -> float:
        with torch.no_grad():
            values = self.log_prob(batch, generator=generator_for(self, 0)).values
        return float(-values.sum() / batch.n_frames)

    # ---------------------------------------------------------------- generation
    def _latent_for_response(self, context: Tensor, n: int, how: str,
                             generator: torch.Generator | None) -> Tensor | None:
        """``z`` for ``n`` responses after context state ``context (Hc,)``; None for HRED."""
        return None

    def _cond_rows(self, context: Tensor, z: Tensor | None, n: int) -> Tensor:
        rows = context.unsqueeze(0).expand(n, -1)
        return rows if z is None else torch.cat([rows, z], -1)

    def _sample_turns(self, cond: Tensor, max_length: int, temperature: float,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """Ancestral sampling of one turn per row of ``cond (R, C)``.

        Returns ``(ids (R, max_length) padded with <pad>, lengths (R,), log p (R,) at temperature 1)``;
        a turn without ``<eot>`` within ``max_length`` tokens is cut there.
        """
        rows = cond.shape[0]
        hidden = self._decoder_state(cond)
        prev = torch.full((rows,), EOT_ID, dtype=torch.long, device=cond.device)
        out = torch.full((rows, max_length), PAD_ID, dtype=torch.long, device=cond.device)
        lengths = torch.zeros(rows, dtype=torch.long, device=cond.device)
        log_p = cond.new_zeros(rows)
        alive = torch.ones(rows, dtype=torch.bool, device=cond.device)
        for t in range(max_length):
            lp, hidden = self._step(prev, hidden, cond)
            probs = torch.softmax(lp / temperature, -1) if temperature != 1.0 else lp.exp()
            tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
            log_p += torch.where(alive, lp.gather(1, tok[:, None])[:, 0], lp.new_zeros(()))
            out[:, t] = torch.where(alive, tok, torch.full_like(tok, PAD_ID))
            lengths += alive.long()
            alive &= tok != EOT_ID
            if not alive.any():
                break
            prev = tok
        return out, lengths, log_p

    def _beam_search(self, cond: Tensor, beam_size: int, max_length: int, length_penalty: float
                     ) -> list[list[tuple[list[int], float, bool]]]:
        """Beam search for each row of ``cond (R, C)`` (:func:`~probseq.text.beam_search.beam_search`)."""
        return beam_search(self._step, self._decoder_state, cond, vocab_size=self.vocab_size,
                           beam_size=beam_size, max_length=max_length, length_penalty=length_penalty)

    def _encode_context(self, context: Sequence[str] | Sequence[Tensor]) -> list[Tensor]:
        turns = []
        for t in context:
            if isinstance(t, str):
                ids = self._require_vocabulary().encode(t)
                turns.append(torch.tensor(ids, device=self.context0.device))
            else:
                t = torch.as_tensor(t, dtype=torch.long, device=self.context0.device)
                turns.append(t if int(t[-1]) == EOT_ID else torch.cat([t, t.new_tensor([EOT_ID])]))
        return turns

    def _text(self, ids: Sequence[int]) -> str:
        vocab = self.vocabulary
        return vocab.decode(ids) if vocab is not None else " ".join(str(i) for i in ids)

    @torch.no_grad()
    def respond(self, context: Sequence[str] | Sequence[Tensor], *, n: int = 1, method: str = "sample",
                temperature: float = 1.0, beam_size: int | None = None, max_length: int | None = None,
                latent: str = "sample", generator: torch.Generator | None = None) -> list[Response]:
        """Generate ``n`` responses to ``context`` (turns as strings, or id tensors).

        Args:
            method: ``"sample"`` (ancestral, at ``temperature``) or ``"beam"`` (beam search).
            latent: VHRED only: ``"sample"`` draws ``z ~ p(z | context)`` per response, ``"mean"``
                uses the prior mean. With ``method="beam"``, HRED returns the ``n`` best hypotheses of
                one search (``n <= beam_size``), VHRED the best hypothesis for each of ``n`` draws of ``z``.
        """
        if n < 1:
            raise UserError(f"number of responses must be positive, got {n}")
        if temperature <= 0:
            raise UserError(f"temperature must be positive, got {temperature}")
        if method not in ("sample", "beam"):
            raise UserError(f"method must be 'sample' or 'beam', got {method!r}")
        if latent not in ("sample", "mean"):
            raise UserError(f"latent must be 'sample' or 'mean', got {latent!r}")
        max_length = int(max_length or self.config["response_length"])
        beam_size = int(beam_size or self.config["beam_size"])
        was_training = self.training
        self.eval()
        try:
            ctx = self._context_after(self._encode_context(context))
            if method == "sample":
                z = self._latent_for_response(ctx, n, latent, generator)
                ids, lengths, log_p = self._sample_turns(self._cond_rows(ctx, z, n), max_length,
                                                         temperature, generator)
                out = []
                for i in range(n):
                    row = ids[i, : int(lengths[i])].tolist()
                    out.append(Response(row, self._text(row), float(log_p[i]), row[-1] != EOT_ID))
                return out
            if self.latent_dim == 0:
                if n > beam_size:
                    raise UserError(f"beam search keeps {beam_size} hypotheses; ask for at most that many "
                                    f"(got n={n}) or raise beam_size")
                hyps = self._beam_search(self._cond_rows(ctx, None, 1), beam_size, max_length,
                                         float(self.config["length_penalty"]))[0][:n]
            else:
                z = self._latent_for_response(ctx, n, latent, generator)
                hyps = [h[0] for h in self._beam_search(self._cond_rows(ctx, z, n), beam_size, max_length,
                                                        float(self.config["length_penalty"]))]
            return [Response(ids, self._text(ids), lp, cut) for ids, lp, cut in hyps]
        finally:
            self.train(was_training)

    def sample_from_prime_file(self, path: str, *, n: int, temperature: float,
                               generator: torch.Generator, meta: dict[str, Any],
                               max_length: int | None = None) -> str:
        """Answer the dialogue context in ``path`` (one turn per line, blank lines ignored).

        Prints ``n`` sampled responses at ``temperature`` and ``n`` beam-search responses (see
        :meth:`respond`; HRED shows at most ``beam_size`` of them).
        """
        context = read_context_file(path)
        self._require_vocabulary()
        sampled = self.respond(context, n=n, method="sample", temperature=temperature,
                               max_length=max_length, generator=generator)
        beam_n = n if self.latent_dim else min(n, int(self.config["beam_size"]))
        beamed = self.respond(context, n=beam_n, method="beam", max_length=max_length, generator=generator)
        return format_responses(context, sampled, beamed, temperature=temperature,
                                beam_size=int(self.config["beam_size"]), latent=bool(self.latent_dim))

    @torch.no_grad()
    def sample(self, n: int, *, length: int | None = None, max_length: int | None = None,
               prefix: Any = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> DialogueBatch:
        """Generate ``n`` whole dialogues of ``length`` turns, turn by turn.

        ``max_length`` caps the tokens per turn (default ``response_length``); a turn that reaches it
        is cut and closed with ``<eot>``. VHRED draws each ``z_n`` from its prior. To answer a given
        context use :meth:`respond` (``probseq sample --prime context.txt``).
        """
        if prefix is not None:
            raise UserError(f"model {self.name!r} continues a dialogue from a context file: "
                            "use --prime context.txt (one turn per line)")
        if length is None:
            raise UserError(f"model {self.name!r} generates whole dialogues of a given number of turns: "
                            "give it with --length N (or answer a context with --prime context.txt)")
        if n < 1 or length < 1:
            raise UserError(f"number of dialogues and turns must be positive, got n={n}, length={length}")
        if temperature <= 0:
            raise UserError(f"temperature must be positive, got {temperature}")
        cap = int(max_length or self.config["response_length"])
        was_training = self.training
        self.eval()
        try:
            ctx_h = self.context0.view(1, 1, -1).expand(1, n, -1).contiguous()
            dialogues: list[list[Tensor]] = [[] for _ in range(n)]
            for _ in range(length):
                ctx = ctx_h[0]
                z = self._prior_sample(ctx, generator) if self.latent_dim else None
                cond = ctx if z is None else torch.cat([ctx, z], -1)
                ids, lengths, _ = self._sample_turns(cond, cap, temperature, generator)
                turns = []
                for i in range(n):
                    turn = ids[i, : int(lengths[i])]
                    if int(turn[-1]) != EOT_ID:
                        turn = torch.cat([turn, turn.new_tensor([EOT_ID])])
                    turns.append(turn)
                    dialogues[i].append(turn)
                width = max(len(t) for t in turns)
                padded = torch.full((n, width), PAD_ID, dtype=torch.long, device=self.context0.device)
                for i, t in enumerate(turns):
                    padded[i, : len(t)] = t
                widths = torch.tensor([len(t) for t in turns], device=self.context0.device)
                enc = self._encode_turns(padded, widths)
                _, ctx_h = self.context_rnn(enc.unsqueeze(1), ctx_h)
        finally:
            self.train(was_training)
        return DialogueBatch.from_dialogues(dialogues)

    def _prior_sample(self, context: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def decode_dialogues(self, batch: DialogueBatch) -> list[list[str]]:
        """The text of each dialogue of ``batch``, turn by turn (needs the vocabulary)."""
        vocab = self._require_vocabulary()
        return [[vocab.decode(t.tolist()) for t in d] for d in batch.dialogues()]


# ---------------------------------------------------------------------------- VHRED
@register_model
class VHRED(HRED):
    """Latent variable hierarchical encoder-decoder (Serban et al. 2017); likelihood is a bound.

    Hyperparameters (besides HRED's):
        latent: size of ``z_n``.
        kl_schedule / kl_warmup / kl_start: KL annealing (:class:`~probseq.models.objectives.kl_annealing.KLAnnealing`;
            by default the weight rises linearly from 0 to 1 over the first 30% of training).
        free_bits: nats per latent unit per turn below which the KL is not penalised
            (:func:`~probseq.models.objectives.kl_annealing.free_bits_kl`; 0 = off).
    """

    name = "vhred"
    likelihood_kind = "bound"
    estimators = latent_estimators.LATENT_ESTIMATORS
    hyperparameters: ClassVar[dict[str, Any]] = {
        **HRED.hyperparameters, "latent": 64, "word_dropout": 0.25,
        "kl_schedule": "linear", "kl_warmup": 0.3, "kl_start": 0.0, "free_bits": 0.0,
    }
    contract_example = {"spec": DataSpec("categorical", 7),
                        "hyper": {"embedding": 5, "encoder_hidden": 6, "context_hidden": 6,
                                  "decoder_hidden": 6, "latent": 2}}
    extra_metrics: ClassVar[tuple[str, ...]] = ("kl",)
    #: default number of samples per turn of each estimator
    default_samples: ClassVar[dict[str, int]] = {"elbo": 1, "iwae": 10, "is": 10}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        latent = int({**self.hyperparameters, **hyper}["latent"])
        if latent < 1:
            raise UserError(f"latent must be positive, got {latent}")
        self.latent_dim = latent
        super().__init__(spec, **hyper)
        cfg = self.config
        self.annealing = KLAnnealing(str(cfg["kl_schedule"]), float(cfg["kl_warmup"]), float(cfg["kl_start"]))
        if float(cfg["free_bits"]) < 0:
            raise UserError(f"free_bits must be non-negative, got {cfg['free_bits']}")
        ctx, enc = int(cfg["context_hidden"]), int(cfg["encoder_hidden"])
        self.prior_net = nn.Sequential(nn.Linear(ctx, ctx), nn.Tanh(), nn.Linear(ctx, 2 * latent))
        self.posterior_net = nn.Sequential(nn.Linear(ctx + enc, ctx), nn.Tanh(),
                                           nn.Linear(ctx, 2 * latent))
        #: current KL weight of the training loss (set by :meth:`on_train_step`; 1 outside training)
        self.kl_weight = 1.0

    # ---------------------------------------------------------------- distributions
    def prior(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """``p(z_n | c_{n-1})``: mean and standard deviation, ``(..., Hc) -> 2 x (..., Z)``."""
        return loc_scale(self.prior_net(context))

    def posterior(self, context: Tensor, encoding: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z_n | c_{n-1}, e_n)``: mean and standard deviation."""
        return loc_scale(self.posterior_net(torch.cat([context, encoding], -1)))

    def _prior_sample(self, context, generator):
        mu, std = self.prior(context)
        return mu + std * torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)

    def _latent_for_response(self, context, n, how, generator):
        mu, std = self.prior(context.unsqueeze(0).expand(n, -1))
        return mu if how == "mean" else mu + std * torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                                                                  device=mu.device)

    # ---------------------------------------------------------------- training
    def on_train_step(self, step: int, total_steps: int) -> None:
        """KL annealing: ``beta`` from :attr:`annealing` (Bowman et al. 2016; Serban et al. 2017)."""
        self.kl_weight = self.annealing(step, total_steps)

    def _terms(self, batch: DialogueBatch, word_dropout: float, generator: torch.Generator | None):
        """One reparameterised sample per turn: ``(encoded, reconstruction (M,), KL per unit (M, Z))``."""
        enc = self._encode(batch)
        mu_q, std_q = self.posterior(enc.context, enc.encoding)
        mu_p, std_p = self.prior(enc.context)
        noise = torch.randn(mu_q.shape, generator=generator, dtype=mu_q.dtype, device=mu_q.device)
        z = mu_q + std_q * noise
        inputs = self._decoder_inputs(enc.turns, enc.lengths, word_dropout, generator)
        recon = self._turn_log_probs(enc.turns, enc.lengths, inputs, self._conditioning(enc, z))
        return enc, recon, gaussian_kl(mu_q, std_q, mu_p, std_p)

    def loss(self, batch: DialogueBatch, *, generator: torch.Generator | None = None) -> Tensor:
        """Negative annealed ELBO per token: ``-(sum_n recon_n - beta * M * KL_fb) / tokens``.

        ``KL_fb = sum_u max(free_bits, mean_n KL_{n,u})`` is the KL per turn with the free-bits
        floor per latent unit (the plain mean KL per turn when ``free_bits = 0``); word dropout is
        applied to the decoder inputs in training mode.
        """
        drop = float(self.config["word_dropout"]) if self.training else 0.0
        _, recon, kl_units = self._terms(batch, drop, generator)
        turns = kl_units.shape[0]
        every_turn = torch.ones(1, turns, dtype=torch.bool, device=recon.device)
        kl_per_turn = free_bits_kl(kl_units.unsqueeze(0), every_turn, turns,
                                   float(self.config["free_bits"]))
        return -(recon.sum() - self.kl_weight * turns * kl_per_turn) / batch.n_frames

    @torch.no_grad()
    def diagnostics(self, batch: DialogueBatch) -> dict[str, float]:
        """Logged by the trainer at each validation: KL per turn and the current KL weight."""
        _, recon, kl = self._terms(batch, 0.0, generator_for(self, 0))
        return {"kl_per_turn": float(kl.sum(-1).mean()), "recon_per_token": float(-recon.sum() / batch.n_frames),
                "kl_weight": float(self.kl_weight)}

    # ---------------------------------------------------------------- likelihood
    def _draw(self, enc: _Encoded, k: int, estimator: str, generator: torch.Generator | None) -> Tensor:
        """``(k, M)`` per-turn terms for ``k`` draws ``z ~ q``: ELBO terms (closed-form KL) or log weights."""
        mu_q, std_q = self.posterior(enc.context, enc.encoding)
        mu_p, std_p = self.prior(enc.context)
        m = mu_q.shape[0]
        z = mu_q + std_q * torch.randn((k,) + tuple(mu_q.shape), generator=generator, dtype=mu_q.dtype,
                                      device=mu_q.device)
        inputs = self._decoder_inputs(enc.turns, enc.lengths, 0.0, None)
        cond = torch.cat([enc.context.expand(k, -1, -1), z], -1).reshape(k * m, -1)
        recon = self._turn_log_probs(enc.turns.repeat(k, 1), enc.lengths.repeat(k),
                                     inputs.repeat(k, 1), cond).view(k, m)
        if estimator == "elbo":
            return recon - gaussian_kl(mu_q, std_q, mu_p, std_p).sum(-1)
        return recon + gaussian_log_density(z, mu_p, std_p) - gaussian_log_density(z, mu_q, std_q)

    def log_prob(self, batch: DialogueBatch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
        """A bound on (or estimate of) ``log p(w_{1:N} | N)`` per dialogue, ``K = samples`` draws per turn.

        ``elbo`` (default, K = 1): closed-form KL, Monte-Carlo reconstruction term averaged over K
        draws (stderr of that average when K >= 2). ``iwae`` (K = 10): the per-turn IWAE-K bound
        summed over turns. ``is`` (K = 10, kind ``estimate``): the same number read as an estimate of
        ``log p`` (the product of the per-turn importance-sampling estimates of ``p(w_n | c_{n-1})``
        is unbiased for ``p(w_{1:N} | N)``), with stderr ``sqrt(sum_n se_n^2)`` over the independent
        turns. All from :mod:`probseq.estimators.latent`.
        """
        estimator = self.check_estimator(estimator)
        k = int(samples or self.default_samples[estimator])
        if k < 1:
            raise UserError(f"the number of samples must be positive, got {k}")
        enc = self._encode(batch)
        logits_per_draw = max(int(enc.lengths.sum()), 1) * self.vocab_size
        terms = latent_estimators.collect_log_weights(
            lambda j: self._draw(enc, j, estimator, generator), k,
            chunk=max(1, _LOGITS_PER_CHUNK // logits_per_draw))              # (K, M)
        if estimator == "elbo":
            return latent_estimators.elbo(self._per_dialogue(terms, enc))
        per_turn = latent_estimators.estimate(terms, estimator)
        values = self._per_dialogue(per_turn.values, enc)
        stderr = None
        if per_turn.stderr is not None:
            stderr = self._per_dialogue(per_turn.stderr ** 2, enc).sqrt()
        return LogProb(values, per_turn.kind, per_turn.estimator, stderr)

    def validation_loss(self, batch: DialogueBatch) -> float:
        """Negative ELBO per token (one sample per turn, fixed seed), without annealing or dropout."""
        return super().validation_loss(batch)

    def evaluate_metric(self, metric: str, examples: list[Any], *, generator: torch.Generator,
                        batch_size: int) -> dict[str, Any]:
        """``kl``: mean KL(q || p) per turn and per token, the reconstruction and ELBO per token, and the
        number of active latent units (Burda et al. 2016: ``Var_n E_q[z_{n,d}] > 0.01``)."""
        if metric not in self.extra_metrics:
            raise UserError(f"model {self.name!r} has no metric {metric!r}")
        kl_sum = recon_sum = 0.0
        turns = tokens = 0
        means = []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(examples), batch_size):
                    batch = self.collate(examples[start:start + batch_size])
                    enc, recon, kl = self._terms(batch, 0.0, generator)
                    means.append(self.posterior(enc.context, enc.encoding)[0])
                    kl_sum += float(kl.sum())
                    recon_sum += float(recon.sum())
                    turns += int(kl.shape[0])
                    tokens += batch.n_frames
        finally:
            self.train(was_training)
        mu = torch.cat(means)
        active = int((mu.var(0, unbiased=True) > 0.01).sum()) if mu.shape[0] > 1 else 0
        return {"n_sequences": len(examples), "n_turns": turns, "n_frames": tokens,
                "kl_per_turn": kl_sum / turns, "kl_per_frame": kl_sum / tokens,
                "reconstruction_nll_per_frame": -recon_sum / tokens,
                "elbo_nll_per_frame": (kl_sum - recon_sum) / tokens,
                "active_units": active, "latent": self.latent_dim,
                "note": "kind bound; one posterior sample per turn for the reconstruction term"}
