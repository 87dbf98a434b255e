"""A simple, documented word tokenizer: lowercase, then a regular expression.

The rules, applied in order:

1. Unicode NFKC normalisation, then curly apostrophes (``’``, ``‘``) become ``'``.
2. Lowercase (``str.lower``).
3. Split into tokens with the regular expression :data:`TOKEN_PATTERN`:

   * a *word* is a run of letters/digits, optionally joined by apostrophes to further runs
     (``don't``, ``rock'n'roll``, ``80's`` stay one token);
   * every other non-space character is a token of its own (``.``, ``,``, ``?``, ``"`` ...).

   Whitespace separates tokens and is dropped; the underscore counts as punctuation.

So ``"I don't know... Do YOU?"`` becomes ``["i", "don't", "know", ".", ".", ".", "do", "you", "?"]``.
The tokenizer is a pure function of the text, so a reloaded model that stores its vocabulary
tokenises a context exactly as it did during training.

:func:`detokenize` is the (lossy) inverse used to print generated turns: tokens joined by spaces,
with no space before closing punctuation (``. , ? ! ; : ) ]``) or after an opening bracket.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["TOKEN_PATTERN", "tokenize", "detokenize"]

#: a word (letters/digits, apostrophe-joined) or any single other non-space character
TOKEN_PATTERN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")

_NO_SPACE_BEFORE = set(".,?!;:)]}%")
_NO_SPACE_AFTER = set("([{$#")


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens of ``text`` (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return TOKEN_PATTERN.findall(text.lower())


def detokenize(tokens: list[str]) -> str:
    """Join tokens into readable text: spaces between tokens except around punctuation."""
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i > 0 and tok not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(tok)
    return "".join(out)
