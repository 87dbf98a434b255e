"""DropConnect on the recurrent weights (``weight_drop``) of the RNN backbones."""

from __future__ import annotations

import copy

import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = DataSpec("binary", 5)


def _batch():
    g = torch.Generator().manual_seed(3)
    seqs = [torch.bernoulli(torch.full((t, 5), 0.4), generator=g) for t in (6, 4, 7)]
    return Batch.from_sequences(seqs)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_training_pass_uses_the_recurrent_weights_with_one_dropconnect_mask(cell):
    torch.manual_seed(0)
    model = build_model("rnn-nade", SPEC, {"cell": cell, "hidden": 6, "layers": 2, "nade_hidden": 3,
                                           "weight_drop": 0.5, "input_dropout": 0.0, "output_dropout": 0.0})
    batch = _batch()
    model.train()
    torch.manual_seed(11)
    _, got = model.backbone_states(batch)
    # oracle: a copy of the recurrent layer whose W_hh carry the masks drawn in the same order
    torch.manual_seed(11)
    oracle = copy.deepcopy(model)
    with torch.no_grad():
        for name, w in oracle.rnn.named_parameters():
            if name.startswith("weight_hh"):
                w.copy_(torch.nn.functional.dropout(w, 0.5, training=True))
    oracle.config["weight_drop"] = 0.0
    _, want = oracle.backbone_states(batch)
    torch.testing.assert_close(got, want)
    # the mask matters: without it the pass differs
    plain = copy.deepcopy(model)
    plain.config["weight_drop"] = 0.0
    assert not torch.allclose(plain.backbone_states(batch)[1], got)
    # gradients reach the undropped weights through the mask
    got.sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.abs().sum() > 0


def test_evaluation_ignores_weight_drop():
    torch.manual_seed(0)
    model = build_model("rnn-nade", SPEC, {"cell": "lstm", "hidden": 6, "nade_hidden": 3, "weight_drop": 0.5})
    plain = copy.deepcopy(model)
    plain.config["weight_drop"] = 0.0
    model.eval(), plain.eval()
    batch = _batch()
    torch.testing.assert_close(model.log_prob(batch).values, plain.log_prob(batch).values)


def test_weight_drop_is_checked():
    with pytest.raises(UserError, match="weight_drop"):
        build_model("rnn-nade", SPEC, {"weight_drop": 1.0})
    with pytest.raises(UserError, match="weight_drop"):
        build_model("rnn-nade", SPEC, {"cell": "mrnn", "hidden": 4, "nade_hidden": 3, "weight_drop": 0.3})
    with pytest.raises(UserError, match="scheduled_sampling"):
        build_model("gru", SPEC, {"weight_drop": 0.3, "scheduled_sampling": "linear", "ss_k": 0.1})


def test_the_recipes_default_gives_way_where_it_cannot_apply():
    """RNN-NADE's recipe drops recurrent weights by default; with a cell without W_hh or under
    scheduled sampling the default is switched off (and saved as such) rather than refused."""
    assert build_model("rnn-nade", SPEC, {"hidden": 4, "nade_hidden": 3}).config["weight_drop"] > 0
    mrnn = build_model("rnn-nade", SPEC, {"cell": "mrnn", "hidden": 4, "nade_hidden": 3})
    assert mrnn.config["weight_drop"] == 0.0
    scheduled = build_model("rnn-nade", SPEC, {"hidden": 4, "nade_hidden": 3,
                                               "scheduled_sampling": "linear", "ss_k": 0.1})
    assert scheduled.config["weight_drop"] == 0.0
