"""Where a continuation ends at a stop string, and which token texts make up what is kept.

The text is cut just before the first stop string, as OpenAI-compatible servers do, so
the local engine and a remote server give the same text for the same tokens. A stop
string may straddle two tokens, or begin inside a token: the cut keeps every token that
starts before it, the last one with only the part of its text before the stop string.
The kept token texts therefore always concatenate to exactly the kept text.

>>> cut_pieces(["Hel", "lo\\nwor", "ld"], end=find_stop("Hello\\nworld", ("\\n",)))
['Hel', 'lo']
"""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Index in ``text`` where the earliest stop string begins (searching from ``start``),
    or None when there is none."""
    found = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(found) if found else None


def search_start(text_length_before: int, stops: Sequence[str]) -> int:
    """Where to search after new text was appended: a stop string already present would
    have been found before, so only one that ends in the new text can be new."""
    longest = max((len(s) for s in stops), default=1)
    return max(0, text_length_before - longest + 1)


def cut_pieces(pieces: Sequence[str], end: int) -> list[str]:
    """The texts of the tokens kept when the text ``"".join(pieces)`` is cut at ``end``:
    those that start before ``end``, the last one trimmed to end there."""
    kept: list[str] = []
    position = 0
    for piece in pieces:
        if position >= end:
            break
        kept.append(piece[: end - position])
        position += len(piece)
    return kept
