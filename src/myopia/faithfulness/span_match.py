"""Label a generated quote against its context: copied, hallucinated, or neither.

Two labellings, both of the quote text alone (not of whether the right line was quoted):

- **exact** (the one CLAIMS.md's C6 rule reads): the quote, with runs of whitespace made
  one space, occurs verbatim in the context treated the same way -> ``copied``; otherwise
  ``hallucinated``. A line break of the context matches a space, so a quote that runs on
  into the next line still counts; a changed word, case or punctuation mark does not.
- **fuzzy** (reported, does not vote): case, punctuation and whitespace are folded away and
  the quote's words are aligned with the context's by ``difflib`` (longest matching blocks,
  monotone). ``coverage`` is the fraction of the quote's words inside matching blocks of at
  least ``MIN_BLOCK_WORDS`` words (shorter agreements happen by chance: "of the").
  ``copied`` if coverage >= ``COPIED_COVERAGE``, ``hallucinated`` if it is below
  ``HALLUCINATED_COVERAGE``, ``ambiguous`` in between (dropped from the fuzzy label set):
  a quote that copies half a line and invents the rest is neither.

A quote of fewer than ``MIN_WORDS`` words is ``too short`` under both labellings and is
dropped: "The word" or "I think" occur in most passages by chance, and an empty quote
(the model closed the quote at once) is no quote. Generated quotes end at the closing
quote mark, a line break or the token budget (``SamplingSettings.stop``); a quote cut by
the budget is labelled by the part that was generated.

>>> label_quote("The very instruments", "The very instruments of war").exact
'too short'
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = [
    "AMBIGUOUS",
    "COPIED",
    "HALLUCINATED",
    "TOO_SHORT",
    "QuoteLabel",
    "fold",
    "fuzzy_coverage",
    "label_quote",
    "normalise_whitespace",
]

COPIED, HALLUCINATED, AMBIGUOUS, TOO_SHORT = "copied", "hallucinated", "ambiguous", "too short"
MIN_WORDS = 4
MIN_BLOCK_WORDS = 3
COPIED_COVERAGE = 0.8
HALLUCINATED_COVERAGE = 0.5
_NOT_WORD = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class QuoteLabel:
    exact: str  # copied / hallucinated / too short
    fuzzy: str  # copied / hallucinated / ambiguous / too short
    coverage: float  # fraction of the quote's folded words in long matching blocks
    n_words: int


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def fold(text: str) -> list[str]:
    """Lower-case words with punctuation removed: "Let not, your" -> ["let", "not", "your"].
    An apostrophe inside a word goes too ("swallow'd" -> "swallow", "d")."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def fuzzy_coverage(quote: str, context: str, min_block: int = MIN_BLOCK_WORDS) -> float:
    """Fraction of the folded quote's words that lie in blocks of ``min_block`` or more
    consecutive words matching the folded context (0 for an empty quote)."""
    quote_words, context_words = fold(quote), fold(context)
    if not quote_words:
        return 0.0
    # autojunk off: in a short context a frequent word is not noise to be skipped.
    matcher = difflib.SequenceMatcher(None, quote_words, context_words, autojunk=False)
    covered = sum(b.size for b in matcher.get_matching_blocks() if b.size >= min_block)
    return covered / len(quote_words)


def label_quote(quote: str, context: str, min_words: int = MIN_WORDS) -> QuoteLabel:
    """Both labels of ``quote`` (the generated text inside the quote marks)."""
    text = normalise_whitespace(quote)
    n_words = len(text.split())
    coverage = fuzzy_coverage(text, context)
    if n_words < min_words:
        return QuoteLabel(TOO_SHORT, TOO_SHORT, coverage, n_words)
    exact = COPIED if text in normalise_whitespace(context) else HALLUCINATED
    if coverage >= COPIED_COVERAGE:
        fuzzy = COPIED
    elif coverage < HALLUCINATED_COVERAGE:
        fuzzy = HALLUCINATED
    else:
        fuzzy = AMBIGUOUS
    return QuoteLabel(exact, fuzzy, coverage, n_words)
