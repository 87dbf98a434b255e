"""Scoring under a frame budget: time windows carrying the state, packing, and their equality with
unchunked scoring (probseq.data.window, probseq.evaluate.chunking)."""

import numpy as np
import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.data.window import iterate_windows, sort_by_length
from probseq.evaluate.chunking import bounded_validation_loss, plan_batches, validation_totals
from probseq.evaluate.scoring import score_split
from probseq.models.registry import build_model, model_class, model_names

LENGTHS = [7, 1, 12, 3, 9, 5, 12, 2]

#: every family with a deterministic likelihood, with each kind of length model
CASES = [
    ("rnn", DataSpec("real", 3), {"hidden": 6, "length": "explicit", "max_length": 12}),
    ("gru", DataSpec("binary", 4), {"hidden": 6, "length": "halting"}),
    ("gru", DataSpec("binary", 4), {"hidden": 6, "layers": 2, "length": "none"}),
    ("lstm", DataSpec("categorical", 5), {"hidden": 6, "length": "end-symbol"}),
    ("independent", DataSpec("binary", 4), {"length": "halting"}),
    ("independent", DataSpec("real", 3), {"length": "explicit", "max_length": 12}),
    ("nade", DataSpec("binary", 4), {"nade_hidden": 3, "length": "halting"}),
    ("rnn-nade", DataSpec("binary", 4), {"hidden": 5, "nade_hidden": 3, "length": "explicit",
                                         "max_length": 12, "cell": "lstm", "orderings": 2,
                                         "input_dropout": 0.3, "output_dropout": 0.3}),
    ("rnn-nade", DataSpec("binary", 4), {"hidden": 5, "nade_hidden": 3, "length": "halting",
                                         "input_dropout": 0.0, "output_dropout": 0.0}),
    ("rnn-rbm", DataSpec("binary", 4), {"hidden": 5, "rbm_hidden": 3, "length": "halting"}),
    ("rtrbm", DataSpec("binary", 4), {"hidden": 3, "length": "halting"}),
    ("rtrbm", DataSpec("real", 3), {"hidden": 3, "delay": 2, "ar_init": False}),
]


def _examples(spec: DataSpec, lengths=LENGTHS, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if spec.kind == "categorical":
        return [torch.randint(spec.dim, (t,), generator=g) for t in lengths]
    if spec.kind == "binary":
        return [torch.bernoulli(torch.full((t, spec.dim), 0.4), generator=g) for t in lengths]
    return [torch.randn(t, spec.dim, generator=g) for t in lengths]


def _model(name, spec, hyper):
    torch.manual_seed(0)
    model = build_model(name, spec, hyper)
    with torch.no_grad():   # move every parameter off its initial value, so that each one matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name,spec,hyper", CASES, ids=[f"{c[0]}-{c[2].get('length')}" for c in CASES])
@pytest.mark.parametrize("budget", [1, 5, 16])
def test_windowed_scores_equal_whole_sequence_scores(name, spec, hyper, budget, float64):
    """Windows of 1, 5 and 16 frames cut every sequence in the middle; the sums must not change."""
    model = _model(name, spec, hyper)
    assert model.supports_time_windows
    examples = _examples(spec)
    whole = score_split(model, examples, frame_budget=None, batch_size=3)
    chunked = score_split(model, examples, frame_budget=budget, batch_size=3)
    np.testing.assert_allclose(chunked.nll, whole.nll, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(chunked.n_frames, LENGTHS)
    assert (chunked.kind, chunked.estimator) == (whole.kind, whole.estimator)
    # and against the model's own log_prob on one padded batch, in the examples' order
    direct = model.log_prob(model.collate(examples)).values.detach().double().numpy()
    np.testing.assert_allclose(-chunked.nll, direct, rtol=1e-10, atol=1e-10)


def test_windowed_scores_in_float32_agree_to_rounding():
    name, spec, hyper = CASES[7]
    model = _model(name, spec, {**hyper, "max_length": 50})
    examples = _examples(spec, lengths=[40, 3, 25, 17])
    whole = score_split(model, examples, frame_budget=None)
    chunked = score_split(model, examples, frame_budget=7)
    np.testing.assert_allclose(chunked.nll, whole.nll, rtol=1e-5)


@pytest.mark.parametrize("length", ["halting", "explicit"])
def test_length_term_enters_once(length, float64):
    """Dropping the length model changes the windowed sum by exactly log P(T), once per sequence."""
    spec = DataSpec("binary", 4)
    hyper = {"hidden": 5, "length": length, "max_length": 12}
    model = _model("gru", spec, hyper)
    examples = _examples(spec)
    batch = model.collate(examples)
    sorted_batch, order = sort_by_length(batch)
    state = model.window_state(sorted_batch)
    length_terms = torch.zeros(len(examples), dtype=torch.float64)
    for window in iterate_windows(sorted_batch, 4):
        with torch.no_grad():
            _, params, head, state = model.window_readouts(window, state)
            lm = model.length_model
            stop = lm.stop_logits(head[:, 1:], params[:, 1:]) if lm.head_dim else None
            length_terms[: window.batch_size] += window.length_log_prob(lm, stop)
    with torch.no_grad():
        x, params, head = model.readouts(batch)
        expected = model._length_log_prob(batch, params, head)
    torch.testing.assert_close(length_terms, expected[order])
    # a proper distribution over lengths: log P(T) < 0 for every sequence
    assert bool((length_terms < 0).all())


def test_results_keep_the_examples_order_and_padding_is_ignored(float64):
    spec, hyper = DataSpec("binary", 4), {"hidden": 5, "length": "halting"}
    model = _model("gru", spec, hyper)
    examples = _examples(spec)
    scores = score_split(model, examples, frame_budget=6, batch_size=4)
    singles = [float(model.log_prob(model.collate([e])).values.detach()[0]) for e in examples]
    np.testing.assert_allclose(-scores.nll, singles, rtol=1e-10)
    # windows of a batch with garbage after the lengths give the same values
    batch = model.collate(examples)
    noisy = Batch(torch.where(batch.mask.unsqueeze(-1), batch.values, torch.full_like(batch.values, 7.0)),
                  batch.lengths)
    sorted_noisy, order = sort_by_length(noisy)
    state, total = model.window_state(sorted_noisy), torch.zeros(len(examples), dtype=torch.float64)
    for window in iterate_windows(sorted_noisy, 5):
        result, state = model.log_prob_window(window, state)
        total[: window.batch_size] += result.values.detach()
    np.testing.assert_allclose(total.numpy(), np.asarray(singles)[order.numpy()], rtol=1e-10)


def test_windows_partition_every_sequence_within_the_budget():
    lengths = torch.tensor([12, 12, 9, 7, 5, 3, 2, 1])
    batch = Batch(torch.zeros(8, 12, 2), lengths)
    for budget in (1, 3, 8, 17, 1000):
        seen = torch.zeros(8, dtype=torch.long)
        expected_start = 0
        for window in iterate_windows(batch, budget):
            assert window.start == expected_start
            n = window.batch_size
            assert bool((lengths[:n] > window.start).all()) and (n == 8 or int(lengths[n]) <= window.start)
            assert n * window.width <= max(budget, n)
            seen[:n] += window.frames.lengths
            expected_start += window.width
        assert torch.equal(seen, lengths)
    with pytest.raises(ValueError):
        next(iterate_windows(Batch(torch.zeros(2, 3, 1), torch.tensor([1, 3])), 4))


def test_packing_bounds_frames_and_covers_every_example():
    sizes = [5, 40, 3, 3, 17, 100, 8, 8, 1]
    plan = plan_batches(sizes, frame_budget=20, batch_size=3, windows=False)
    assert sorted(i for b in plan for i in b) == list(range(len(sizes)))
    for b in plan:
        assert len(b) <= 3
        longest = max(sizes[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= 20
    windowed = plan_batches(sizes, frame_budget=2, batch_size=3, windows=True)
    assert all(len(b) <= 2 for b in windowed)
    assert [sizes[i] for b in windowed for i in b] == sorted(sizes, reverse=True)
    unknown = plan_batches([None, 3, 4], frame_budget=1, batch_size=2, windows=True)
    assert unknown == [[0, 1], [2]]


def test_packed_scoring_of_a_model_without_windows_matches(float64):
    """The fallback (packing whole sequences) for the models without time windows."""
    without = [n for n in model_names() if not model_class(n).supports_time_windows]
    assert "vrnn" in without and "trbm" in without
    spec = DataSpec("binary", 4)
    model = _model("trbm", spec, model_class("trbm").contract_example["hyper"])
    examples = _examples(spec)
    # the TRBM's "filtered" estimator is deterministic (a mean-field approximation)
    whole = score_split(model, examples, estimator="filtered", frame_budget=None)
    packed = score_split(model, examples, estimator="filtered", frame_budget=10, batch_size=3)
    np.testing.assert_allclose(packed.nll, whole.nll, rtol=1e-10)


def test_validation_uses_the_bounded_scorer(float64):
    spec = DataSpec("binary", 4)
    model = _model("rnn-nade", spec, {"hidden": 5, "nade_hidden": 3, "length": "halting"})
    model.train()
    examples = _examples(spec)
    value = bounded_validation_loss(model, examples, batch_size=3, frame_budget=4)
    assert model.training   # the training mode is restored
    model.eval()
    batch = model.collate(examples)
    expected = -float(model.log_prob(batch).values.detach().sum()) / batch.n_frames
    assert value == pytest.approx(expected, rel=1e-10)
    # a model whose validation score is a proxy: frame-weighted mean of validation_loss over packed batches
    rtrbm = _model("rtrbm", spec, {"hidden": 3})
    got = bounded_validation_loss(rtrbm, examples, batch_size=3, frame_budget=10)
    assert got == pytest.approx(rtrbm.validation_loss(rtrbm.collate(examples)), rel=1e-10)


def test_cli_frame_budget_gives_the_same_numbers(tmp_path, capsys):
    import json

    from probseq.cli import main

    from probseq.data.registry import load_dataset
    from probseq.train.checkpoint import save_weights, write_run_info

    out = tmp_path / "gru"     # a run directory with untrained weights (training is not under test)
    out.mkdir()
    spec = load_dataset("jsb").spec
    model = _model("gru", spec, {"hidden": 8, "length": "halting"})
    save_weights(out, model)
    write_run_info(out, {"model": "gru", "spec": spec.to_dict(), "hyperparameters": model.config,
                         "dataset": {"name": "jsb"}, "seed": 0})
    results = {}
    for budget in ("0", "50"):
        for metric in ("nll", "mse"):
            assert main(["evaluate", str(out), "--split", "valid", "--metric", metric, "--json",
                         "--frame-budget", budget]) == 0
            results[budget, metric] = json.loads(capsys.readouterr().out)
    assert results["50", "nll"]["nll_per_frame"] == pytest.approx(results["0", "nll"]["nll_per_frame"], rel=1e-6)
    assert results["50", "nll"]["n_frames"] == results["0", "nll"]["n_frames"]
    assert results["50", "mse"]["next_frame_mse_per_dim"] == pytest.approx(
        results["0", "mse"]["next_frame_mse_per_dim"], rel=1e-6)
    assert main(["evaluate", str(out), "--frame-budget", "-1"]) == 2
    assert "frame budget" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in model_names() if model_class(n).supports_time_windows])
def test_every_windowed_model_in_the_registry(name, float64):
    """Every registered model that declares time windows, on its contract example."""
    example = model_class(name).contract_example
    model = _model(name, example["spec"], example["hyper"])
    examples = _examples(example["spec"], lengths=[6, 2, 9, 4])
    whole = score_split(model, examples, frame_budget=None)
    if whole.kind != "exact":
        pytest.skip(f"{name}'s default estimator is stochastic ({whole.estimator})")
    chunked = score_split(model, examples, frame_budget=3, batch_size=2)
    np.testing.assert_allclose(chunked.nll, whole.nll, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,spec,hyper", [CASES[1], ("trbm", DataSpec("binary", 4), {"hidden": 3})],
                         ids=["windows", "packing"])
def test_the_model_never_sees_more_frames_than_the_budget(name, spec, hyper):
    """What bounds memory: every call gets at most max(budget, one sequence) frames."""
    model = _model(name, spec, hyper)
    examples = _examples(spec, lengths=[30, 2, 17, 9, 9, 4, 1, 25, 6])
    seen = []
    for method in ("log_prob", "log_prob_window"):
        original = getattr(model, method)

        def spy(data, *args, _original=original, **kwargs):
            frames = getattr(data, "frames", data)       # a TimeWindow or a Batch
            seen.append(tuple(frames.values.shape[:2]))
            return _original(data, *args, **kwargs)

        setattr(model, method, spy)
    budget = 12
    score_split(model, examples, frame_budget=budget, batch_size=4,
                estimator=None if model.supports_time_windows else "filtered")
    assert seen
    for n, width in seen:
        assert n * width <= budget or n == 1, (n, width)
    assert sum(n * w for n, w in seen) >= sum(len(e) for e in examples)


@pytest.mark.parametrize("world_size", [2, 3])
def test_validation_shares_sum_to_the_one_process_score(float64, world_size):
    """Distributed validation: the ranks' (loss x frames, frames) shares add up to one process's
    score, also for the RTRBM's AIS criterion, whose batches are each scored with a fixed seed
    (so a wrong split of the plan between ranks would change the number, not only its rounding)."""
    spec = DataSpec("binary", 12)
    examples = _examples(spec, lengths=[7, 3, 9, 5, 4, 8, 6])
    for name, hyper in [("rnn-nade", {"hidden": 5, "nade_hidden": 3}),
                        ("rtrbm", {"hidden": 14, "exact_max_units": 4, "valid_chains": 2,
                                   "valid_ais_steps": 5})]:
        model = _model(name, spec, hyper)
        whole = bounded_validation_loss(model, examples, batch_size=2, frame_budget=12)
        shares = [validation_totals(model, examples, batch_size=2, frame_budget=12, part=(r, world_size))
                  for r in range(world_size)]
        assert all(frames > 0 for _, frames in shares)    # every rank got batches to score
        assert sum(f for _, f in shares) == sum(len(x) for x in examples)   # each frame scored once
        total = sum(t for t, _ in shares) / sum(f for _, f in shares)
        assert total == pytest.approx(whole, rel=1e-12), name
