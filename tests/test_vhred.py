"""HRED and VHRED (probseq.models.vhred): likelihoods against oracles, samplers, beam search.

The dialogue models are conditional (``conditional = True``), so the generic frame-sequence contract
tests skip them; this file holds their equivalents (padding invariance, batched == per-dialogue,
save/load round trip including the vocabulary) plus oracles on a 4-symbol vocabulary
(``<pad> <unk> <eot> a``):

* HRED: the probabilities of all responses up to a length, plus the mass of the longer ones, sum to
  one; teacher-forced ``log_prob`` equals the step-by-step decoder the samplers use; seeded
  chi-square tests of the sampler (also at temperature 0.5); beam search with a beam wider than the
  hypothesis space equals exhaustive search.
* VHRED with a 1-d latent: Gauss-Hermite quadrature gives the exact ``log p(w_n | c_{n-1})``, the exact
  ELBO and the exact KL; the closed-form KL, the ELBO estimator, the IWAE bound and the sampler are
  checked against them.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model, model_class
from probseq.models.gaussian import gaussian_kl, gaussian_log_density
from probseq.text import EOT_ID, PAD_ID, UNK_ID, Dialogue, DialogueBatch, Vocabulary

VOCAB = ["<pad>", "<unk>", "<eot>", "a"]
WORDS = (UNK_ID, 3)                 # the symbols a turn can contain besides <eot>
CHI2_ALPHA = 1e-3                   # each seeded chi-square test fails with probability 0.1% under H0


def tiny(name: str, seed: int = 0, scale: float = 3.0, **hyper):
    """A float64 model over VOCAB with weights scaled up so its distributions are far from uniform."""
    torch.manual_seed(seed)
    cfg = {"embedding": 3, "encoder_hidden": 4, "context_hidden": 4, "decoder_hidden": 4,
           "vocab": VOCAB, "word_dropout": 0.0}
    if name == "vhred":
        cfg["latent"] = 1
    cfg.update(hyper)
    model = build_model(name, DataSpec("categorical", len(VOCAB)), cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.double().eval()


def turn(*ids: int) -> torch.Tensor:
    return torch.tensor(list(ids) + [EOT_ID])


def random_dialogues(n: int, seed: int, max_turns: int = 4, max_words: int = 4) -> list[Dialogue]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        turns = int(torch.randint(1, max_turns + 1, (1,), generator=g))
        out.append(Dialogue([turn(*[WORDS[int(i)] for i in torch.randint(0, 2, (int(
            torch.randint(0, max_words + 1, (1,), generator=g)),), generator=g)]) for _ in range(turns)]))
    return out


@torch.no_grad()
def step_log_prob(model, context, tokens, z=None, temperature=1.0):
    """``log p(tokens | context[, z])`` by the step-by-step decoder (the samplers' path).

    ``z``: ``(Z,)`` (returns a float) or ``(R, Z)`` (returns ``(R,)``, one value per latent).
    """
    ctx = model._context_after(context)
    if z is None or z.dim() == 1:
        cond = ctx.unsqueeze(0) if z is None else torch.cat([ctx, z]).unsqueeze(0)
    else:
        cond = torch.cat([ctx.expand(z.shape[0], -1), z], -1)
    hidden = model._decoder_state(cond)
    prev = torch.full((cond.shape[0],), EOT_ID)
    total = torch.zeros(cond.shape[0], dtype=cond.dtype)
    for tok in tokens:
        lp, hidden = model._step(prev, hidden, cond, temperature)
        total += lp[:, tok]
        prev = torch.full((cond.shape[0],), tok)
    return float(total[0]) if z is None or z.dim() == 1 else total


def all_responses(max_length: int):
    """Every outcome of generating at most ``max_length`` tokens: (ids, finished)."""
    out = []
    for m in range(max_length):
        out += [(list(w) + [EOT_ID], True) for w in itertools.product(WORDS, repeat=m)]
    out += [(list(w), False) for w in itertools.product(WORDS, repeat=max_length)]
    return out


def garbage(batch: DialogueBatch) -> DialogueBatch:
    tokens = batch.tokens.clone()
    tokens[~batch.token_mask] = 10 ** 6
    lengths = batch.turn_lengths.clone()
    lengths[~batch.turn_mask] = 10 ** 6
    return DialogueBatch(tokens, lengths, batch.n_turns)


# ============================================================================ shared contract
@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_declared_as_conditional_with_kinds(name):
    cls = model_class(name)
    assert cls.conditional and cls.data_kinds == ("categorical",)
    assert cls.likelihood_kind == {"hred": "exact", "vhred": "bound"}[name]


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_padding_never_changes_the_result(name):
    model = tiny(name)
    batch = model.collate(random_dialogues(5, seed=1))
    for estimator in model.estimators:
        clean = model.log_prob(batch, estimator=estimator, generator=torch.Generator().manual_seed(3))
        dirty = model.log_prob(garbage(batch), estimator=estimator, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(dirty.values, clean.values, rtol=0, atol=1e-10)


def test_hred_batched_equals_per_dialogue_and_is_a_probability():
    model = tiny("hred")
    dialogues = random_dialogues(6, seed=2)
    batched = model.log_prob(model.collate(dialogues)).values
    singles = torch.cat([model.log_prob(model.collate([d])).values for d in dialogues])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-10)
    assert (batched < 0).all()


@torch.no_grad()
def test_vhred_batched_equals_per_dialogue_given_the_same_latents():
    """The stochastic estimators draw different noise per batch; with z fixed to the posterior mean the
    per-turn ELBO terms of a batch equal those of each dialogue alone."""
    model = tiny("vhred")
    dialogues = random_dialogues(5, seed=3)

    def terms(batch):
        enc = model._encode(batch)
        mu_q, std_q = model.posterior(enc.context, enc.encoding)
        mu_p, std_p = model.prior(enc.context)
        inputs = model._decoder_inputs(enc.turns, enc.lengths, 0.0, None)
        recon = model._turn_log_probs(enc.turns, enc.lengths, inputs, model._conditioning(enc, mu_q))
        return recon - gaussian_kl(mu_q, std_q, mu_p, std_p).sum(-1)

    batched = terms(model.collate(dialogues))
    singles = torch.cat([terms(model.collate([d])) for d in dialogues])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_teacher_forcing_equals_the_step_by_step_decoder(name):
    model = tiny(name)
    dialogue = random_dialogues(1, seed=4, max_turns=4)[0]
    z = torch.tensor([0.7], dtype=torch.float64) if name == "vhred" else None
    batch = model.collate([dialogue])
    enc = model._encode(batch)
    cond = enc.context if z is None else torch.cat([enc.context, z.expand(len(dialogue), 1)], -1)
    inputs = model._decoder_inputs(enc.turns, enc.lengths, 0.0, None)
    forced = model._turn_log_probs(enc.turns, enc.lengths, inputs, cond)
    stepped = [step_log_prob(model, list(dialogue[:n]), dialogue[n].tolist(), z) for n in range(len(dialogue))]
    np.testing.assert_allclose(forced.detach().numpy(), stepped, rtol=0, atol=1e-10)


def test_hred_response_probabilities_sum_to_one():
    """sum over finished responses of length <= 4 + mass of unfinished 4-token prefixes = 1."""
    model = tiny("hred")
    context = [turn(3, 1), turn()]
    base = float(model.log_prob(model.collate([Dialogue(context)])).values.detach())
    total = 0.0
    for ids, finished in all_responses(4):
        if finished:   # through the likelihood of the whole dialogue
            batch = model.collate([Dialogue(context + [torch.tensor(ids)])])
            total += math.exp(float(model.log_prob(batch).values.detach()) - base)
        else:
            total += math.exp(step_log_prob(model, context, ids))
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_save_load_round_trip_keeps_the_vocabulary(name, tmp_path):
    model = tiny(name, seed=0, vocab=VOCAB)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    fresh = build_model(name, DataSpec("categorical", 4), {"embedding": 3, "encoder_hidden": 4,
                        "context_hidden": 4, "decoder_hidden": 4, **({"latent": 1} if name == "vhred" else {})})
    assert fresh.vocabulary is None
    fresh.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    fresh = fresh.double().eval()
    assert fresh.vocabulary == Vocabulary(VOCAB)
    batch = model.collate(random_dialogues(3, seed=5))
    for est in model.estimators:
        a = model.log_prob(batch, estimator=est, generator=torch.Generator().manual_seed(1)).values
        b = fresh.log_prob(batch, estimator=est, generator=torch.Generator().manual_seed(1)).values
        torch.testing.assert_close(a, b)
    ra = model.respond(["a a", "a"], n=3, generator=torch.Generator().manual_seed(2))
    rb = fresh.respond(["a a", "a"], n=3, generator=torch.Generator().manual_seed(2))
    assert [r.text for r in ra] == [r.text for r in rb]


def test_collate_reencodes_dialogues_from_another_vocabulary():
    model = tiny("hred")                                   # vocab: <pad> <unk> <eot> a
    other = Vocabulary(["<pad>", "<unk>", "<eot>", "b", "a"])
    text = ["a b a", "b"]
    foreign = Dialogue([torch.tensor(other.encode(t)) for t in text], text=text,
                       vocab_fingerprint=other.fingerprint)
    batch = model.collate([foreign])
    assert [t.tolist() for t in batch.dialogues()[0]] == [[3, UNK_ID, 3, EOT_ID], [UNK_ID, EOT_ID]]


@pytest.mark.parametrize("bad, message", [
    ([torch.tensor([3, 9, EOT_ID])], "ids must lie"),
    ([torch.tensor([3, PAD_ID, EOT_ID])], "<pad>"),
    ([torch.tensor([EOT_ID, 3, EOT_ID])], "inside a turn"),
])
def test_invalid_dialogues_are_user_errors(bad, message):
    model = tiny("hred")
    with pytest.raises(UserError, match=message):
        model.log_prob(DialogueBatch.from_dialogues([bad]))
    with pytest.raises(UserError, match="DialogueBatch"):
        model.log_prob(torch.zeros(2, 3))


@pytest.mark.parametrize("bad, message", [
    ([torch.tensor([3, 9, EOT_ID])], "outside"),
    ([torch.tensor([3, PAD_ID, EOT_ID])], "outside"),
    ([torch.tensor([3, 3])], "end with <eot>"),
    ([torch.tensor([EOT_ID, 3, EOT_ID])], "end with <eot>"),
    ([torch.tensor([1.0, 2.0])], "integer ids"),
    ([], "non-empty list"),
])
def test_validate_examples_names_the_offending_turn(bad, message):
    model = tiny("hred")
    good = random_dialogues(3, seed=0)
    model.validate_examples(good)
    with pytest.raises(UserError, match=message):
        model.validate_examples(good + [bad], "the test split")


def test_text_generation_needs_a_vocabulary():
    model = build_model("hred", DataSpec("categorical", 5), {"embedding": 3, "encoder_hidden": 4,
                        "context_hidden": 4, "decoder_hidden": 4})
    with pytest.raises(UserError, match="vocabulary"):
        model.respond(["hello"])
    with pytest.raises(UserError, match="built for"):
        build_model("hred", DataSpec("categorical", 5), {"vocab": VOCAB})


# ============================================================================ HRED generation
def _chi_square(counts: dict, probs: dict) -> float:
    keys = sorted(probs)
    observed = np.array([counts.get(k, 0) for k in keys], dtype=float)
    expected = np.array([probs[k] for k in keys]) * observed.sum()
    assert sum(counts.values()) == observed.sum(), "the sampler produced an impossible outcome"
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_hred_sampler_matches_the_model_chi_square(temperature):
    model = tiny("hred", scale=1.5)
    context = [turn(3)]
    probs = {tuple(ids): math.exp(step_log_prob(model, context, ids, temperature=temperature))
             for ids, _ in all_responses(2)}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)
    responses = model.respond(context, n=20000, temperature=temperature, max_length=2,
                              generator=torch.Generator().manual_seed(11))
    counts: dict = {}
    for r in responses:
        counts[tuple(r.ids)] = counts.get(tuple(r.ids), 0) + 1
        assert r.cut == (r.ids[-1] != EOT_ID)
    assert _chi_square(counts, probs) > CHI2_ALPHA


def _ranked(model, context, max_length, alpha):
    hyps = [(ids, step_log_prob(model, context, ids), not finished) for ids, finished in all_responses(max_length)]
    return sorted(hyps, key=lambda h: (h[2], -h[1] / len(h[0]) ** alpha))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_wider_than_the_space_is_exhaustive(alpha):
    model = tiny("hred", length_penalty=alpha)
    context = [turn(1, 3), turn(3)]
    space = all_responses(3)                       # 7 finished + 8 unfinished hypotheses
    hyps = model.respond(context, n=len(space), method="beam", beam_size=len(space), max_length=3)
    expected = _ranked(model, context, 3, alpha)
    assert [h.ids for h in hyps] == [ids for ids, _, _ in expected]
    np.testing.assert_allclose([h.log_prob for h in hyps], [lp for _, lp, _ in expected], atol=1e-10)
    assert [h.cut for h in hyps] == [cut for _, _, cut in expected]


def test_beam_of_one_is_greedy_and_scores_are_likelihoods():
    model = tiny("hred")
    context = [turn(3, 3)]
    (best,) = model.respond(context, method="beam", beam_size=1, max_length=6)
    ids, prev_ids = [], []
    for _ in range(6):
        scores = [step_log_prob(model, context, prev_ids + [t]) for t in range(4)]
        tok = int(np.argmax(scores))
        ids.append(tok)
        prev_ids.append(tok)
        if tok == EOT_ID:
            break
    assert best.ids == ids
    assert best.log_prob == pytest.approx(step_log_prob(model, context, ids), abs=1e-10)
    with pytest.raises(UserError, match="at most"):
        model.respond(context, n=3, method="beam", beam_size=2)


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_whole_dialogue_sampling(name):
    model = tiny(name)
    a = model.sample(4, length=3, max_length=5, generator=torch.Generator().manual_seed(6))
    b = model.sample(4, length=3, max_length=5, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.tokens, b.tokens) and a.n_turns.tolist() == [3] * 4
    assert int(a.turn_lengths.max()) <= 6         # 5 tokens, then a closing <eot> if cut
    values = model.log_prob(a, generator=torch.Generator().manual_seed(0)).values
    assert torch.isfinite(values).all()
    assert len(model.decode_dialogues(a)[0]) == 3
    with pytest.raises(UserError, match="--length"):
        model.sample(2)
    with pytest.raises(UserError, match="--prime"):
        model.sample(2, length=2, prefix=torch.zeros(1, 2))


# ============================================================================ VHRED: latent machinery
def test_gaussian_helpers_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p, z = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    std_q, std_p = (torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    q, p = torch.distributions.Normal(mu_q, std_q), torch.distributions.Normal(mu_p, std_p)
    torch.testing.assert_close(gaussian_kl(mu_q, std_q, mu_p, std_p).sum(-1),
                               torch.distributions.kl_divergence(q, p).sum(-1))
    torch.testing.assert_close(gaussian_log_density(z, mu_q, std_q), q.log_prob(z).sum(-1))
    assert torch.autograd.gradcheck(gaussian_kl, (mu_q.requires_grad_(), std_q.requires_grad_(), mu_p, std_p))


class Quadrature:
    """Per-turn exact quantities of a 1-d-latent VHRED by Gauss-Hermite quadrature (80 nodes)."""

    def __init__(self, model, batch, nodes: int = 80):
        x, w = np.polynomial.hermite.hermgauss(nodes)
        x, logw = torch.tensor(x), torch.tensor(np.log(w / math.sqrt(math.pi)))
        with torch.no_grad():
            enc = model._encode(batch)
            mu_p, std_p = model.prior(enc.context)
            mu_q, std_q = model.posterior(enc.context, enc.encoding)
            inputs = model._decoder_inputs(enc.turns, enc.lengths, 0.0, None)

            def loglik(z):  # (nodes, M, 1) -> (nodes, M), all nodes decoded in one batch
                n, m = z.shape[:2]
                cond = torch.cat([enc.context.expand(n, -1, -1), z], -1).reshape(n * m, -1)
                return model._turn_log_probs(enc.turns.repeat(n, 1), enc.lengths.repeat(n),
                                             inputs.repeat(n, 1), cond).view(n, m)

            zp = mu_p + math.sqrt(2) * std_p * x.view(-1, 1, 1)
            zq = mu_q + math.sqrt(2) * std_q * x.view(-1, 1, 1)
            self.log_p = torch.logsumexp(logw.view(-1, 1) + loglik(zp), 0)             # (M,)
            weights = logw.exp().view(-1, 1)
            self.recon = (weights * loglik(zq)).sum(0)
            self.kl = (weights * (gaussian_log_density(zq, mu_q, std_q)
                                  - gaussian_log_density(zq, mu_p, std_p))).sum(0)
            self.kl_closed = gaussian_kl(mu_q, std_q, mu_p, std_p).sum(-1)
            self.elbo = self.recon - self.kl_closed
            self.mu_p, self.std_p, self.context = mu_p, std_p, enc.context


@pytest.fixture(scope="module")
def latent_case():
    model = tiny("vhred", scale=2.0)
    dialogue = Dialogue([turn(3, 1, 3), turn(1), turn(3, 3)])
    batch = model.collate([dialogue])
    return model, batch, Quadrature(model, batch)


def test_closed_form_kl_equals_quadrature(latent_case):
    _, _, quad = latent_case
    torch.testing.assert_close(quad.kl_closed, quad.kl, rtol=1e-9, atol=1e-12)
    assert (quad.kl > 1e-3).all(), "the oracle case is degenerate (q == p)"


def test_elbo_is_below_the_exact_log_likelihood(latent_case):
    _, _, quad = latent_case
    assert (quad.elbo < quad.log_p - 1e-4).all()


def test_elbo_estimator_matches_quadrature_within_its_stderr(latent_case):
    """Seeded; |z| > 4 happens with probability 6e-5 under a correct estimator."""
    model, batch, quad = latent_case
    result = model.log_prob(batch, estimator="elbo", samples=4000,
                            generator=torch.Generator().manual_seed(0)).detach()
    assert result.kind == "bound" and result.estimator == "elbo"
    assert abs(float(result.values) - float(quad.elbo.sum())) < 4 * float(result.stderr)
    assert float(result.stderr) < 0.05


def test_iwae_tightens_toward_the_exact_log_likelihood(latent_case):
    """With a wide proposal q = N(0, 2^2) covering the posterior, IWAE-K climbs to log p quickly."""
    model, batch, _ = latent_case
    model = copy.deepcopy(model)
    with torch.no_grad():
        last = model.posterior_net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, math.log(math.expm1(2.0))]))
    quad = Quadrature(model, batch)
    exact = float(quad.log_p.sum())

    def iwae(k, reps=20):
        vals = [float(model.log_prob(batch, estimator="iwae", samples=k,
                                     generator=torch.Generator().manual_seed(100 + r)).values.detach())
                for r in range(reps)]
        return float(np.mean(vals)), float(np.std(vals, ddof=1) / math.sqrt(reps))

    m1, s1 = iwae(1, reps=50)
    m10, s10 = iwae(10)
    m500, s500 = iwae(500, reps=6)
    # seeded; each 4-sigma check fails with probability 6e-5 for a correct estimator
    assert abs(m1 - float(quad.elbo.sum())) < 4 * s1          # IWAE-1 is an unbiased ELBO estimate
    assert m1 + 4 * s1 < m10 < exact + 4 * s10                 # bounds, increasing in K
    assert m10 < m500 + 4 * (s10 + s500)
    assert abs(m500 - exact) < 4 * s500 + 0.01 and s500 < 0.05


def test_importance_sampled_estimate_is_labelled_with_its_stderr(latent_case):
    """``is``: the IWAE number, a bound like every ``is`` in probseq, with a stderr combining the turns."""
    model, batch, quad = latent_case
    est = model.log_prob(batch, estimator="is", samples=200, generator=torch.Generator().manual_seed(4)).detach()
    bound = model.log_prob(batch, estimator="iwae", samples=200,
                           generator=torch.Generator().manual_seed(4)).detach()
    assert (est.kind, est.estimator, bound.kind, bound.estimator) == ("bound", "is-200", "bound", "iwae-200")
    torch.testing.assert_close(est.values, bound.values)
    assert est.stderr is not None and float(est.stderr) > 0
    assert float(est.values) < float(quad.log_p.sum()) + 4 * float(est.stderr)


def test_vhred_sampler_matches_the_quadrature_marginal(latent_case):
    """Responses drawn with z ~ p(z | c) follow p(w | c) = int p(w | z, c) p(z | c) dz (chi-square)."""
    model, _, _ = latent_case
    context = [turn(3, 1)]
    ctx = model._context_after(context)
    mu, std = model.prior(ctx)
    x, w = np.polynomial.hermite.hermgauss(60)
    probs = {}
    for ids, _ in all_responses(2):
        nodes = mu + math.sqrt(2) * std * torch.tensor(x).unsqueeze(1)              # (60, 1)
        lik = step_log_prob(model, context, ids, z=nodes).exp().numpy()
        probs[tuple(ids)] = float(np.dot(w / math.sqrt(math.pi), lik))
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-10)
    responses = model.respond(context, n=20000, max_length=2, generator=torch.Generator().manual_seed(12))
    counts: dict = {}
    for r in responses:
        counts[tuple(r.ids)] = counts.get(tuple(r.ids), 0) + 1
    assert _chi_square(counts, probs) > CHI2_ALPHA


def test_beam_search_with_the_prior_mean_is_deterministic_and_scored_given_z(latent_case):
    model, _, _ = latent_case
    context = [turn(3)]
    a = model.respond(context, n=2, method="beam", latent="mean", beam_size=3, max_length=4,
                      generator=torch.Generator().manual_seed(0))
    b = model.respond(context, n=2, method="beam", latent="mean", beam_size=3, max_length=4,
                      generator=torch.Generator().manual_seed(1))
    assert [r.ids for r in a] == [r.ids for r in b]
    mu, _ = model.prior(model._context_after(context))
    assert a[0].log_prob == pytest.approx(step_log_prob(model, context, a[0].ids, z=mu), abs=1e-10)


# ============================================================================ VHRED: training objective
def test_kl_annealing_schedule():
    model = tiny("vhred", kl_warmup=0.1)
    for step, weight in [(0, 0.0), (50, 0.5), (100, 1.0), (999, 1.0)]:
        model.on_train_step(step, 1000)
        assert model.kl_weight == pytest.approx(weight)
    model = tiny("vhred", kl_schedule="constant")
    model.on_train_step(0, 10)
    assert model.kl_weight == 1.0
    with pytest.raises(UserError, match="schedule"):
        tiny("vhred", kl_schedule="sometimes")


@torch.no_grad()
def test_loss_is_the_negative_annealed_elbo_per_token():
    model = tiny("vhred")
    batch = model.collate(random_dialogues(4, seed=7))
    elbo = model.log_prob(batch, estimator="elbo", samples=1, generator=torch.Generator().manual_seed(5))
    loss = model.loss(batch, generator=torch.Generator().manual_seed(5))     # eval mode: no word dropout
    assert float(loss) == pytest.approx(-float(elbo.values.sum()) / batch.n_frames, rel=1e-10)
    _, recon, kl = model._terms(batch, 0.0, torch.Generator().manual_seed(5))
    model.kl_weight = 0.25
    assert float(model.loss(batch, generator=torch.Generator().manual_seed(5))) == pytest.approx(
        -float(recon.sum() - 0.25 * kl.sum()) / batch.n_frames, rel=1e-10)
    model.config["free_bits"] = 50.0
    assert float(model.loss(batch, generator=torch.Generator().manual_seed(5))) == pytest.approx(
        -float(recon.sum() - 0.25 * 50.0 * kl.shape[0]) / batch.n_frames, rel=1e-10)


@torch.no_grad()
def test_word_dropout_replaces_inputs_after_the_first_by_unk_in_training_only():
    model = tiny("vhred", word_dropout=0.5)
    turns = torch.full((200, 6), 3)
    inputs = model._decoder_inputs(turns, torch.full((200,), 6), 0.5, torch.Generator().manual_seed(0))
    assert (inputs[:, 0] == EOT_ID).all()
    frac = float((inputs[:, 1:] == UNK_ID).double().mean())
    assert 0.45 < frac < 0.55                      # 1000 draws: 5 sigma is 0.079
    batch = model.collate(random_dialogues(4, seed=8))
    model.eval()
    clean = model.loss(batch, generator=torch.Generator().manual_seed(1))
    model.train()
    dropped = model.loss(batch, generator=torch.Generator().manual_seed(1))
    assert float(clean) != float(dropped)
    model.eval()
    assert float(model.loss(batch, generator=torch.Generator().manual_seed(1))) == float(clean)


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_loss_trains_every_part(name):
    model = tiny(name).train()
    batch = model.collate(random_dialogues(4, seed=9, max_turns=3))
    model.loss(batch, generator=torch.Generator().manual_seed(0)).backward()
    for pname, p in model.named_parameters():
        if pname == "embed.weight" or pname.startswith("readout"):
            continue   # rows of symbols absent from the batch legitimately get no gradient
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, pname


def test_kl_metric_and_diagnostics():
    model = tiny("vhred")
    dialogues = random_dialogues(10, seed=10)
    out = model.evaluate_metric("kl", dialogues, generator=torch.Generator().manual_seed(0), batch_size=4)
    assert out["n_sequences"] == 10 and out["n_turns"] == sum(len(d) for d in dialogues)
    assert out["kl_per_turn"] > 0 and 0 <= out["active_units"] <= 1
    assert out["elbo_nll_per_frame"] == pytest.approx(out["reconstruction_nll_per_frame"] + out["kl_per_frame"])
    diag = model.diagnostics(model.collate(dialogues))
    assert set(diag) == {"kl_per_turn", "recon_per_token", "kl_weight"}
    with pytest.raises(UserError):
        model.evaluate_metric("mse", dialogues, generator=torch.Generator(), batch_size=4)
