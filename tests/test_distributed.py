"""Multi-process training and evaluation on torch.distributed (gloo, 2 CPU processes).

* A 2-process ``probseq.fit`` of a GRU (per-process batch 4) ends with the same parameters and the
  same logged training losses as one process with the global batch 8 (float tolerance), its log
  records the world size, its validation (sharded over the processes) scores the same, and a run
  started with 2 processes resumes with 1.
* For models whose loss draws noise (contrastive divergence for the RTRBM, the ELBO's latent
  samples for the VRNN) and for RNN-NADE, the gradient the job sums equals the oracle
  ``sum_r (n_r / N) grad L_r`` computed in this process from the same shards and the same
  per-rank generators.
* Sharded evaluation gives the same per-sequence values on 2 processes as on 1, for an exact model
  and for a stochastic estimator (IWAE), because each batch's random stream is seeded by its index.

Workers live in :mod:`probseq.testing.ddp` and are started with ``torch.multiprocessing``.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.distributed as dist

from probseq.data.spec import DataSpec
from probseq.device import generator_for
from probseq.models.registry import build_model
from probseq.testing import ddp
from probseq.parallel import Distributed
from probseq.train.fit import fit

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="this torch build has no torch.distributed gloo backend")]

BINARY = DataSpec("binary", 4)
GRU = ("gru", BINARY, {"hidden": 6, "length": "halting"})
OPTIONS = {"keep": "last", "patience": 0, "log_every": 1, "checkpoint_every": 1, "eval_every": 2}


# The tests that read the 2-process job's outputs are marked slow: one start of two gloo processes
# (each imports torch and probseq) for all of them takes several seconds.
@pytest.fixture(scope="module")
def job_outputs(tmp_path_factory):
    """One start of 2 gloo processes runs every multi-process case; the tests compare its outputs."""
    tmp = tmp_path_factory.mktemp("ddp")
    name, spec, hyper = GRU
    ddp.spawn(ddp.run_all, 2, tmp, [
        (ddp.fit_worker, (name, spec, hyper, {**OPTIONS, "batch_size": 4}, 4, str(tmp / "two"))),
        (ddp.fit_worker, (name, spec, hyper, {**OPTIONS, "batch_size": 4}, 2, str(tmp / "run"))),
        (ddp.gradient_worker, (CASES, 3, str(tmp))),
        (ddp.score_worker, (SCORE_CASES, 2, str(tmp))),
    ])
    return tmp


def _train_losses(run_dir):
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return events, [e["loss"] for e in events if e.get("event") == "train"]


def _fit_one_process(run_dir, steps, batch_size, resume=False):
    name, spec, hyper = GRU
    torch.manual_seed(0)
    model = build_model(name, spec, dict(hyper))
    fit(model, ddp.toy_dataset(spec), run_dir, steps=steps, seed=0, resume=resume, progress=False,
        options={**OPTIONS, "batch_size": batch_size})
    return model.state_dict()


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_global_batch(job_outputs, tmp_path):
    two = torch.load(job_outputs / "two" / "final.pt", weights_only=True)
    one = _fit_one_process(tmp_path / "one", 4, 8)
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    events, losses_two = _train_losses(job_outputs / "two")
    _, losses_one = _train_losses(tmp_path / "one")
    assert events[0]["world_size"] == 2 and len(losses_two) == 4
    torch.testing.assert_close(torch.tensor(losses_two), torch.tensor(losses_one), rtol=1e-5, atol=1e-5)
    # validation is sharded over the two processes and all-reduced: the same scores as one process
    valid_two = [e["valid_loss"] for e in events if e.get("event") == "valid"]
    valid_one = [e["valid_loss"] for e in _train_losses(tmp_path / "one")[0] if e.get("event") == "valid"]
    assert len(valid_two) == 2
    torch.testing.assert_close(torch.tensor(valid_two), torch.tensor(valid_one), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_two_process_run_resumes_with_one_process(job_outputs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(job_outputs / "run", run)
    resumed = _fit_one_process(run, 4, 8, resume=True)   # same global batch, half the processes
    straight = _fit_one_process(tmp_path / "straight", 4, 8)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-4, atol=1e-5, msg=key)
    starts = [e for e in _train_losses(run)[0] if e.get("event") in ("start", "resume")]
    assert [e["world_size"] for e in starts] == [2, 1]


CASES = [
    ("rtrbm", BINARY, {"hidden": 3, "cd_steps": 2, "length": "halting"}),      # contrastive divergence
    ("vrnn", BINARY, {"hidden": 5, "latent": 2, "length": "halting"}),         # ELBO, sampled latents
    ("rnn-nade", BINARY, {"hidden": 5, "nade_hidden": 3, "length": "halting", "input_dropout": 0.0,
                          "output_dropout": 0.0, "weight_drop": 0.0}),           # exact likelihood
]


def _oracle_gradient(name, spec, hyper, batch_size, world):
    """``sum_r (n_r / N) grad L_r`` over the ranks' shards, each with its rank's generator."""
    torch.manual_seed(0)
    model = build_model(name, spec, dict(hyper)).train()
    examples = ddp.toy_dataset(spec).split("train")[: batch_size * world]
    shards = [Distributed(rank=r, world_size=world).shard(examples) for r in range(world)]
    batches = [model.collate(s) for s in shards]
    total = sum(b.n_frames for b in batches)
    pooled = 0.0
    for r, batch in enumerate(batches):
        loss = model.loss(batch, generator=generator_for(model, 100 + r))
        (loss * batch.n_frames / total).backward()
        pooled += float(loss.detach()) * batch.n_frames / total
    return pooled, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.slow
def test_summed_gradients_equal_the_pooled_loss_gradient(job_outputs):
    for i, (name, spec, hyper) in enumerate(CASES):
        saved = torch.load(job_outputs / f"grads-{i}.pt", weights_only=True)
        pooled, grads = _oracle_gradient(name, spec, hyper, 3, 2)
        assert abs(float(saved["pooled"]) - pooled) < 1e-5 * max(1.0, abs(pooled)), name
        for key, grad in grads.items():
            if grad is None:
                assert saved["grads"][key] is None, (name, key)
            else:
                torch.testing.assert_close(saved["grads"][key], grad, rtol=1e-4, atol=1e-6,
                                           msg=f"{name}: {key}")


SCORE_CASES = [
    ("gru", BINARY, {"hidden": 6, "length": "halting"}, None, None),
    ("vrnn", BINARY, {"hidden": 5, "latent": 2, "length": "halting"}, "iwae", 4),
]


@pytest.mark.slow
def test_sharded_evaluation_equals_one_process(job_outputs):
    for i, (name, spec, hyper, estimator, samples) in enumerate(SCORE_CASES):
        two = torch.load(job_outputs / f"scores-{i}.pt", weights_only=True)
        one = ddp.score_toy(name, spec, hyper, estimator, samples, 2)
        assert torch.isfinite(one["nll"]).all()
        torch.testing.assert_close(two["nll"], one["nll"], rtol=1e-6, atol=1e-6, msg=name)
        assert torch.equal(two["frames"], one["frames"])


def test_shards_cover_the_global_batch_in_order():
    examples = list(range(7))
    shards = [Distributed(rank=r, world_size=3).shard(examples) for r in range(3)]
    assert shards == [[0, 1, 2], [3, 4], [5, 6]]
    tiny = Distributed(rank=2, world_size=3)
    assert tiny.shard([10, 11]) == [10] and tiny.stand_in       # stands in, with zero weight
    assert not Distributed(rank=1, world_size=3).shard([10, 11]) == []
