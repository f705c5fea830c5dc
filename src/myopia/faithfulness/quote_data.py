"""Quote requests for C6: a passage, a request to quote the line about a word, and whether
that word is in the passage.

A **context** is a passage of consecutive lines of natural text (4 to 6 by default). Lines
are the text's own lines (Shakespeare's verse lines); a line longer than ``MAX_LINE_WORDS``
words (prose) is cut into sentences. Speaker names (all capitals), stage directions
(``[...]``), blank lines and lines under ``MIN_LINE_WORDS`` words end a run, so a passage is
one speech or one paragraph.

Each context gets ``n_present`` requests about a content word that occurs exactly once in
it (so one line holds the answer) and ``n_absent`` about a content word taken from another
context that does not occur in it. The wording rotates through ``PHRASINGS`` so a result is
not an artefact of one instruction. ``present`` is a property of the request; whether the
model copied or invented its quote is measured later (``span_match``).

The prompt ends with an opening quote mark, so the model's next tokens are the quote::

    requests = make_quote_requests(load_corpus(), n_contexts=30, seed=0)
    prompt = quote_prompt(requests[0])   # "Passage:\\n...\\n\\nQuote the line ...\\nQuote: \\""
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from myopia.data.text import Document
from myopia.errors import MyopiaError
from myopia.faithfulness.records import read_table, require_text

__all__ = [
    "PHRASINGS",
    "QuoteRequest",
    "contains_word",
    "content_words",
    "make_quote_requests",
    "passages",
    "quote_prompt",
]

MIN_LINE_WORDS = 5
MAX_LINE_WORDS = 30
MIN_TARGET_LETTERS = 4
PHRASINGS = (
    'Quote the line from the passage that contains the word "{target}".',
    'Copy exactly the line of the passage that mentions "{target}".',
    'What does the passage say about "{target}"? Quote the line.',
    'Repeat, word for word, the line of the passage where "{target}" appears.',
    'Find the line with the word "{target}" in the passage and quote it.',
)


@dataclass(frozen=True)
class Stopword:
    """A frequent word that makes a poor target: asking for "their" names no particular line
    (a line of ``tables/quote_stopwords.jsonl``)."""

    word: str

    def check(self) -> None:
        if not self.word or self.word != self.word.lower() or len(self.word.split()) != 1:
            raise ValueError(f"word must be one lower-case word, not {self.word!r}")


STOPWORDS = frozenset(s.word for s in read_table("quote_stopwords.jsonl", Stopword))
_WORD = re.compile(r"[A-Za-z][A-Za-z']*[A-Za-z]|[A-Za-z]")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


@dataclass(frozen=True)
class QuoteRequest:
    """One request: quote the line of ``context`` that mentions ``target``.

    ``present`` says whether ``target`` occurs in ``context`` (whole word, any case);
    ``check`` rejects a record where it does not agree. ``source`` says where the context
    came from (the document's name), for reading results.
    """

    id: str
    context_id: str  # requests that share a context share this id: the unit held out
    context: str
    request: str
    target: str
    present: bool
    source: str = ""

    def check(self) -> None:
        require_text(self, "id", "context_id", "context", "request", "target")
        occurs = contains_word(self.context, self.target)
        if occurs != self.present:
            where = "occurs" if occurs else "does not occur"
            raise ValueError(
                f"target {self.target!r} {where} in the context but present is "
                f"{str(self.present).lower()}"
            )


def quote_prompt(request: QuoteRequest) -> str:
    """The text the model continues: passage, request, and an opening quote mark."""
    return f'Passage:\n{request.context}\n\n{request.request}\nQuote: "'


def contains_word(text: str, word: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole word, ignoring case."""
    return _whole_word(word).search(text) is not None


@functools.lru_cache(maxsize=2**16)
def _whole_word(word: str) -> re.Pattern:
    # Compiled once per word: C6 tests every word of its pool against every passage,
    # thousands of words, more than ``re``'s own cache of 512 patterns holds.
    return re.compile(r"(?<![A-Za-z'])" + re.escape(word) + r"(?![A-Za-z'])", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    """Words of at least ``MIN_TARGET_LETTERS`` letters that are not stopwords, in order."""
    return [
        w
        for w in _WORD.findall(text)
        if len(w) >= MIN_TARGET_LETTERS and w.lower() not in STOPWORDS and "'" not in w
    ]


def _units(text: str) -> list[str | None]:
    """The text's lines, long ones cut into sentences; ``None`` where a run must break."""
    units: list[str | None] = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        pieces = _SENTENCE_END.split(line) if len(line.split()) > MAX_LINE_WORDS else [line]
        for piece in pieces:
            n_words = len(piece.split())
            usable = (
                MIN_LINE_WORDS <= n_words <= MAX_LINE_WORDS
                and not piece.isupper()
                and not piece.startswith("[")
            )
            units.append(piece if usable else None)
    return units


def passages(text: str, min_lines: int) -> list[list[str]]:
    """Runs of at least ``min_lines`` consecutive usable lines of ``text``."""
    runs, run = [], []
    for unit in [*_units(text), None]:
        if unit is None:
            if len(run) >= min_lines:
                runs.append(run)
            run = []
        else:
            run.append(unit)
    return runs


def make_quote_requests(
    documents: list[Document],
    n_contexts: int,
    seed: int = 0,
    *,
    n_present: int = 3,
    n_absent: int = 1,
    lines: tuple[int, int] = (4, 6),
) -> list[QuoteRequest]:
    """``n_contexts`` passages drawn at random (seeded) from ``documents``, each with
    ``n_present`` + ``n_absent`` requests. Same arguments, same requests."""
    low, high = lines
    if not 2 <= low <= high:
        raise MyopiaError(f"lines per context must satisfy 2 <= min <= max, got {lines}")
    if n_contexts < 1 or n_present < 0 or n_absent < 0 or n_present + n_absent < 1:
        raise MyopiaError(
            f"need n_contexts >= 1 and at least one request per context, got {n_contexts} "
            f"contexts, {n_present} present and {n_absent} absent requests"
        )
    rng = random.Random(seed)
    runs = [(d.name, r) for d in documents for r in passages(d.text, low)]
    if not runs:
        raise MyopiaError(
            f"the text has no passage of {low} consecutive lines of {MIN_LINE_WORDS} to "
            f"{MAX_LINE_WORDS} words: give longer text with --text"
        )
    # Passages do not overlap, so the text holds at most this many: asking for more is
    # refused at once instead of searching (for a huge --n-contexts) practically forever.
    capacity = sum(len(run) // low for _, run in runs)
    if n_contexts > capacity:
        raise MyopiaError(
            f"the text holds at most {capacity} distinct passages, fewer than the "
            f"{n_contexts} contexts asked for: ask for fewer or give more text"
        )
    contexts, used = [], {}  # run index -> line indices already in a context
    for _ in range(50 * n_contexts):
        if len(contexts) == n_contexts:
            break
        run_index = rng.randrange(len(runs))
        name, run = runs[run_index]
        size = rng.randint(low, min(high, len(run)))
        start = rng.randrange(len(run) - size + 1)
        # Passages must not overlap: a shared line would let a held-out context leak into
        # the training contexts.
        taken = used.setdefault(run_index, set())
        if taken & set(range(start, start + size)):
            continue
        taken.update(range(start, start + size))
        contexts.append((name, run[start : start + size]))
    if len(contexts) < n_contexts:
        raise MyopiaError(
            f"the text has only {len(contexts)} distinct passages, fewer than the "
            f"{n_contexts} contexts asked for: ask for fewer or give more text"
        )

    pool = sorted({w.lower() for _, c in contexts for w in content_words("\n".join(c))})
    phrasings = list(PHRASINGS)
    requests = []
    for index, (name, context_lines) in enumerate(contexts):
        context = "\n".join(context_lines)
        context_id = f"c{index:04d}"
        counts: dict[str, int] = {}
        for w in content_words(context):
            counts[w.lower()] = counts.get(w.lower(), 0) + 1
        # A present target occurs once, so exactly one line answers the request.
        unique = sorted({w for w in content_words(context) if counts[w.lower()] == 1})
        absent = [w for w in pool if not contains_word(context, w)]
        targets = [(w, True) for w in rng.sample(unique, min(n_present, len(unique)))]
        targets += [(w, False) for w in rng.sample(absent, min(n_absent, len(absent)))]
        for j, (target, present) in enumerate(targets):
            phrasing = phrasings[(index * (n_present + n_absent) + j) % len(phrasings)]
            requests.append(
                QuoteRequest(
                    id=f"{context_id}-r{j}",
                    context_id=context_id,
                    context=context,
                    request=phrasing.format(target=target),
                    target=target,
                    present=present,
                    source=name,
                )
            )
    return requests
