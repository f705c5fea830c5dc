"""Token texts decoded in place, so that a continuation's token texts add up to its text.

A token's text depends on what precedes it: SentencePiece tokenizers drop a word's
leading space when it is decoded alone, and byte-level tokenizers split one character
over several tokens. So each new token is decoded after a few tokens of context (the
"anchor") and its text is what it adds to the anchor's text. Bytes that do not yet make
a whole character (the text ends in U+FFFD) are held back and given to the token that
completes the character; a token whose bytes are all held back has the empty text.
Only the tokens since the last complete character are decoded at each step, so the cost
per token does not grow with the length of the continuation.
"""

from __future__ import annotations

from collections.abc import Sequence

ANCHOR_TOKENS = 4  # enough context for leading-space and byte-merging rules
_INCOMPLETE = "\ufffd"  # what a decoder shows for bytes that are not yet a character


class InPlaceDecoder:
    """Turns one row's generated token ids into texts, one token at a time."""

    def __init__(self, tokenizer, context_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.context = [int(i) for i in context_ids]  # prompt ids, then generated ids
        self.committed = len(self.context)  # ids before this have had their text given out

    def _decode(self, ids: list[int]) -> str:
        # No clean-up of spaces: it can change text already given to earlier tokens.
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    def _text_after(self, anchor: list[int], ids: list[int]) -> str:
        anchor_text = self._decode(anchor)
        text = self._decode(anchor + ids)
        if text.startswith(anchor_text):
            return text[len(anchor_text) :]
        return self._decode(ids)  # a tokenizer whose anchor text is not a prefix

    def push(self, token_id: int) -> str:
        """Add a token; return the text it adds ("" while its bytes are held back)."""
        self.context.append(int(token_id))
        anchor = self.context[max(0, self.committed - ANCHOR_TOKENS) : self.committed]
        new_text = self._text_after(anchor, self.context[self.committed :])
        if new_text.endswith(_INCOMPLETE):
            return ""
        self.committed = len(self.context)
        return new_text

    def flush(self) -> str:
        """The held-back text at the end of a continuation (with its U+FFFD), if any."""
        if self.committed == len(self.context):
            return ""
        anchor = self.context[max(0, self.committed - ANCHOR_TOKENS) : self.committed]
        new_text = self._text_after(anchor, self.context[self.committed :])
        self.committed = len(self.context)
        return new_text

    def texts_of_candidates(self, token_ids: Sequence[int]) -> list[str]:
        """The text each candidate token would have if it came next (for alternatives)."""
        anchor = self.context[-ANCHOR_TOKENS:]
        anchor_text = self._decode(anchor)
        texts = self.tokenizer.batch_decode(
            [anchor + [int(t)] for t in token_ids], clean_up_tokenization_spaces=False
        )
        return [
            t[len(anchor_text) :] if t.startswith(anchor_text) else self._decode([int(i)])
            for t, i in zip(texts, token_ids, strict=True)
        ]
