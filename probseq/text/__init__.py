"""Text utilities for dialogue models: a regex word tokenizer and a frequency-capped vocabulary.

See :mod:`probseq.text.tokenizer` (``tokenize``, ``detokenize``) and :mod:`probseq.text.vocab`
(:class:`Vocabulary` with the special symbols ``<pad>`` = 0, ``<unk>`` = 1, ``<eot>`` = 2). The
dialogue models also use :mod:`probseq.text.batch` (padded dialogues),
:mod:`probseq.text.stored_vocab` (the vocabulary in a checkpoint), :mod:`probseq.text.beam_search`
and :mod:`probseq.text.responses` (the ``--prime`` report).
"""

from probseq.text.batch import Dialogue, DialogueBatch
from probseq.text.tokenizer import detokenize, tokenize
from probseq.text.vocab import EOT, EOT_ID, PAD, PAD_ID, SPECIALS, UNK, UNK_ID, Vocabulary

__all__ = ["tokenize", "detokenize", "Vocabulary", "Dialogue", "DialogueBatch", "PAD", "UNK", "EOT", "PAD_ID", "UNK_ID",
           "EOT_ID", "SPECIALS"]
