"""The word tokenizer and the vocabulary (probseq.text)."""

from __future__ import annotations

import pytest
import torch

from probseq.errors import UserError
from probseq.text import (EOT_ID, PAD_ID, SPECIALS, UNK_ID, Dialogue, DialogueBatch, Vocabulary,
                          detokenize, tokenize)


@pytest.mark.parametrize("text, tokens", [
    ("I don't know... Do YOU?", ["i", "don't", "know", ".", ".", ".", "do", "you", "?"]),
    ("Rock'n'roll in the 80's!", ["rock'n'roll", "in", "the", "80's", "!"]),
    ("It\u2019s  \t fine", ["it's", "fine"]),            # curly apostrophe, any whitespace
    ("Café MÜNCHEN", ["café", "münchen"]),                # unicode letters are word characters
    ("a_b-c", ["a", "_", "b", "-", "c"]),                  # underscore and hyphen are punctuation
    ("'quoted'", ["'", "quoted", "'"]),                    # apostrophes only join letters
    ("", []),
])
def test_tokenize_rules(text, tokens):
    assert tokenize(text) == tokens


def test_detokenize_puts_no_space_before_closing_punctuation():
    assert detokenize(["i", "don't", "know", ",", "do", "you", "?"]) == "i don't know, do you?"
    assert detokenize(["(", "yes", ")", "."]) == "(yes)."


def test_vocabulary_orders_by_count_then_alphabet_and_caps_the_size():
    texts = ["b a b c", "c b d", "e"]          # counts: b 3, c 2, a 1, d 1, e 1
    vocab = Vocabulary.build(texts, max_size=6)
    assert vocab.to_list() == list(SPECIALS) + ["b", "c", "a"]
    assert len(vocab) == 6
    assert Vocabulary.build(texts, max_size=100, min_count=2).to_list() == list(SPECIALS) + ["b", "c"]


def test_vocabulary_special_ids_and_encode_decode():
    vocab = Vocabulary.build(["hello world", "hello"], max_size=10)
    assert (vocab.index["<pad>"], vocab.index["<unk>"], vocab.index["<eot>"]) == (PAD_ID, UNK_ID, EOT_ID)
    ids = vocab.encode("Hello, strange world")
    assert ids == [vocab.index["hello"], UNK_ID, UNK_ID, vocab.index["world"], EOT_ID]
    assert vocab.encode("hello world hello", max_words=2) == [vocab.index["hello"], vocab.index["world"],
                                                              EOT_ID]
    assert vocab.encode("hello", end=False) == [vocab.index["hello"]]
    assert vocab.decode(ids) == "hello <unk> <unk> world"
    assert vocab.decode([vocab.index["hello"], EOT_ID, vocab.index["world"]]) == "hello"
    with pytest.raises(ValueError):
        vocab.decode([99])


def test_vocabulary_round_trips_through_a_plain_list_and_fingerprint():
    vocab = Vocabulary.build(["x y z", "y"], max_size=10)
    again = Vocabulary.from_list(vocab.to_list())
    assert again == vocab and again.fingerprint == vocab.fingerprint
    other = Vocabulary.from_list(list(SPECIALS) + ["y", "z", "x"])
    assert other.fingerprint != vocab.fingerprint


def test_vocabulary_rejects_bad_lists():
    with pytest.raises(UserError, match="must start"):
        Vocabulary(["a", "<unk>", "<eot>"])
    with pytest.raises(UserError, match="twice"):
        Vocabulary(list(SPECIALS) + ["a", "a"])
    with pytest.raises(UserError, match="at least"):
        Vocabulary.build(["a"], max_size=3)


def test_dialogue_batch_layout_masks_and_frame_count():
    d1 = Dialogue([torch.tensor([3, 4, EOT_ID]), torch.tensor([EOT_ID])])
    d2 = Dialogue([torch.tensor([5, EOT_ID])])
    batch = DialogueBatch.from_dialogues([d1, d2])
    assert batch.tokens.shape == (2, 2, 3)
    assert batch.n_turns.tolist() == [2, 1]
    assert batch.turn_lengths.tolist() == [[3, 1], [2, 0]]
    assert batch.frames_per_example.tolist() == [4, 2] and batch.n_frames == 6
    assert batch.token_mask.sum().item() == 6
    assert [[t.tolist() for t in d] for d in batch.dialogues()] == [[[3, 4, 2], [2]], [[5, 2]]]
    assert batch.select([1]).tokens.shape == (1, 1, 2)


def test_dialogue_batch_rejects_turns_without_end_symbol_and_bad_lengths():
    with pytest.raises(UserError, match="<eot>"):
        DialogueBatch.from_dialogues([[torch.tensor([3, 4])]])
    with pytest.raises(UserError, match="no turns"):
        DialogueBatch.from_dialogues([[]])
    with pytest.raises(UserError, match="turns"):
        DialogueBatch(torch.zeros(1, 2, 3), torch.ones(1, 2), torch.tensor([3]))
    with pytest.raises(UserError, match="tokens"):
        DialogueBatch(torch.zeros(1, 2, 3), torch.tensor([[4, 1]]), torch.tensor([2]))
