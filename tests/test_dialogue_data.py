"""The dialogue datasets: ``dialogue`` (a directory of .jsonl.gz splits) and ``dialogue-sample``."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from probseq.data.registry import dataset_infos, load_dataset
from probseq.errors import UserError
from probseq.text import EOT_ID, UNK_ID, Dialogue, Vocabulary


def _write(path, conversations, compress=True):
    lines = "".join(json.dumps(c) + "\n" for c in conversations)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    train = [{"id": "t1", "topic": "music", "turns": ["Hello there!", "Hi. Do you like jazz?", "Yes, jazz."]},
             {"id": "t2", "topic": "music", "turns": ["Jazz is great", "It is"]},
             {"id": "t3", "topic": "movies", "turns": ["One", "Two", "Three", "Four"]}]
    valid = [{"id": "v1", "topic": "movies", "turns": ["Hello zebra", "jazz"]}]
    test = [{"id": "s1", "topic": "movies", "turns": ["hello", "there", "unseen words"]}]
    _write(tmp_path / "train.jsonl.gz", train)
    _write(tmp_path / "valid.jsonl.gz", valid)
    _write(tmp_path / "test.jsonl", test, compress=False)       # plain .jsonl is accepted too
    return tmp_path


def test_registered_with_how_to_point_at_the_data():
    infos = {d.name: d for d in dataset_infos()}
    assert infos["dialogue"].needs == "dir"
    assert infos["dialogue-sample"].needs == "embedded"


def test_loads_splits_turns_and_vocabulary_from_train_only(corpus):
    data = load_dataset("dialogue", data_dir=corpus)
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    vocab = Vocabulary.from_list(data.meta["vocab"])
    assert data.spec.kind == "categorical" and data.spec.dim == len(vocab)
    assert "zebra" not in vocab and "unseen" not in vocab            # valid/test words are not counted
    first = data.split("train")[0]
    assert isinstance(first, Dialogue) and len(first) == 3 and first.topic == "music"
    assert first[0].tolist() == vocab.encode("Hello there!")
    assert all(int(t[-1]) == EOT_ID and t.dtype == torch.long for d in data.split("train") for t in d)
    assert data.split("valid")[0][0].tolist() == [vocab.index["hello"], UNK_ID, EOT_ID]
    assert first.vocab_fingerprint == data.meta["vocab_fingerprint"] == vocab.fingerprint


def test_caps_on_dialogues_turns_words_and_vocabulary(corpus):
    data = load_dataset("dialogue", data_dir=corpus, max_dialogues=2, max_turns=2, max_turn_length=1,
                        vocab_size=5)
    assert len(data.split("train")) == 2
    assert all(len(d) <= 2 for d in data.split("train"))
    assert all(len(t) <= 2 for d in data.split("train") for t in d)           # one word + <eot>
    assert data.spec.dim == 5
    assert load_dataset("dialogue", data_dir=corpus, max_eval_dialogues=1).meta["n_dialogues"]["train"] == 3


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "train.jsonl.gz").unlink(), "no train"),
    (lambda d: _write(d / "train.jsonl.gz", [{"turns": "not a list"}]), "list of strings"),
    (lambda d: _write(d / "train.jsonl.gz", [{"turns": []}]), "no turns"),
    (lambda d: (d / "train.jsonl.gz").write_bytes(b"\x1f\x8bcorrupt"), "cannot read"),
])
def test_bad_directories_are_user_errors(corpus, change, message):
    change(corpus)
    with pytest.raises(UserError, match=message):
        load_dataset("dialogue", data_dir=corpus)


def test_line_numbers_in_json_errors(corpus):
    (corpus / "valid.jsonl.gz").unlink()
    (corpus / "valid.jsonl").write_text('{"turns": ["a"]}\n{oops\n')
    with pytest.raises(UserError, match="line 2"):
        load_dataset("dialogue", data_dir=corpus)


def test_needs_a_directory_and_checks_options(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path))   # an empty data home
    with pytest.raises(UserError, match="--data-dir"):
        load_dataset("dialogue")
    with pytest.raises(UserError, match="directory"):
        load_dataset("dialogue", data_file=corpus / "train.jsonl.gz")
    with pytest.raises(UserError, match="max_turns"):
        load_dataset("dialogue", data_dir=corpus, max_turns=0)


def test_embedded_sample_loads_without_shared_data():
    data = load_dataset("dialogue-sample", max_turn_length=20, vocab_size=500)
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [160, 20, 20]
    assert data.spec.dim == 500
    assert all(len(t) <= 21 for d in data.split("train") for t in d)
    with pytest.raises(UserError, match="embedded"):
        load_dataset("dialogue-sample", data_dir=".")


@pytest.mark.slow  # tokenises the whole developer corpus
def test_shared_corpus_counts_match_its_source_notes(shared_data):
    directory = shared_data / "dialogue"
    if not directory.is_dir():
        pytest.skip(f"{directory} is absent")
    data = load_dataset("dialogue", data_dir=directory, max_dialogues=50, vocab_size=1000)
    # SOURCE.md: 1,196 valid and 1,217 test conversations (18,708 / 18,995 utterances)
    assert len(data.split("valid")) == 1196 and len(data.split("test")) == 1217
    assert sum(len(d) for d in data.split("test")) == 18995
    assert len(data.split("train")) == 50 and data.spec.dim == 1000
