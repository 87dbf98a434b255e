"""Evaluation at a cost a user accepts (issue 19): the RBM family's estimators carry their setting
in their name (``ais-20x1000``), the defaults are quick, and the output says how to ask for the
tighter setting."""

from __future__ import annotations

import json

import pytest
import torch

from probseq.cli import main
from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.evaluate.scoring import estimator_note
from probseq.models._rbm_common import annealing_setting, parse_estimator
from probseq.models.registry import build_model


def test_parse_estimator_reads_the_printed_label():
    assert parse_estimator("ais") == ("ais", None, None)
    assert parse_estimator("ais-20x1000") == ("ais", 20, 1000)
    assert parse_estimator("raise-3x7") == ("raise", 3, 7)
    assert parse_estimator("exact") == ("exact", None, None)
    for bad in ("ais-20", "ais-x1000", "raise-ax3"):
        with pytest.raises(UserError, match="CHAINSxSTEPS"):
            parse_estimator(bad)


def test_annealing_setting_precedence_and_conflict():
    assert annealing_setting("ais", None, None, 5, 500) == ("ais", 5, 500)
    assert annealing_setting("ais-20x1000", None, None, 5, 500) == ("ais", 20, 1000)
    assert annealing_setting("ais-20x1000", 20, 50, 5, 500) == ("ais", 20, 50)   # explicit steps win
    assert annealing_setting("raise", 7, None, 5, 500) == ("raise", 7, 500)
    with pytest.raises(UserError, match="contradicts"):
        annealing_setting("ais-20x1000", 4, None, 5, 500)


@pytest.mark.parametrize("name", ["rtrbm", "rnn-rbm", "trbm"])
def test_models_score_by_the_named_setting(name):
    torch.manual_seed(0)
    hyper = {"hidden": 20} if name != "rnn-rbm" else {"hidden": 5, "rbm_hidden": 20}
    model = build_model(name, DataSpec("binary", 16), hyper).eval()
    batch = Batch.from_sequences([torch.bernoulli(torch.full((5, 16), 0.3)) for _ in range(2)])
    gen = torch.Generator().manual_seed(0)
    quick = model.log_prob(batch, generator=gen)
    named = model.log_prob(batch, estimator="ais-3x7", generator=gen)
    low = model.log_prob(batch, estimator="raise-3x7", generator=gen)
    prefix = "is-4-" if name == "trbm" else ""
    assert quick.estimator == prefix + ("ais-2x250" if name == "trbm" else "ais-5x500")
    assert named.estimator == prefix + "ais-3x7" and low.estimator == prefix + "raise-3x7"
    assert torch.isfinite(named.values).all() and torch.isfinite(low.values).all()
    with pytest.raises(UserError, match="does not support"):
        model.log_prob(batch, estimator="iwae-3x7")


def test_quick_labels_carry_a_note_and_tight_ones_do_not():
    note = estimator_note("ais-5x500")
    assert "--estimator ais-20x1000" in note and "8 times" in note and "raise" in note
    trbm = estimator_note("is-4-ais-2x250")
    assert "--estimator ais-20x1000 --samples 10" in trbm and "100 times" in trbm
    assert "--estimator iwae --samples 1000" in estimator_note("elbo")
    for label in ("ais-20x1000", "raise-50x2000", "is-10-ais-20x1000", "exact", "iwae-1000", "is-100"):
        assert estimator_note(label) is None


def test_evaluate_json_and_text_say_how_to_ask_for_more(tmp_path, capsys):
    run = tmp_path / "rtrbm"
    assert main(["fit", "rtrbm", "--data", "jsb", "--steps", "1", "--quiet", "--set", "hidden=13",
                 "--set", "ais_chains=2", "--set", "ais_steps=5", "--set", "valid_criterion=prediction",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "ais-2x5" and out["stderr"] > 0
    assert "--estimator ais-20x1000" in out["note"]
    assert main(["evaluate", str(run), "--split", "valid", "--estimator", "raise-3x5"]) == 0
    text = capsys.readouterr().out
    assert "raise-3x5" in text and any(line.startswith("note") for line in text.splitlines())
