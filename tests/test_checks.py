"""The checks every command makes on a user's files before any work (issue 19)."""

from __future__ import annotations

import os

import pytest

from myopia.checks import input_file, output_file, output_folder, read_utf8
from myopia.errors import MyopiaError
from myopia.faithfulness.quote_data import QuoteRequest
from myopia.faithfulness.records import read_records


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_input_file_names_what_is_wrong(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = {
        tmp_path: "is a folder",
        fifo: "is a FIFO",
        tmp_path / "nope.txt": "does not exist",
    }
    if os.path.exists("/dev/zero"):
        cases[type(tmp_path)("/dev/zero")] = "is a device"
    for path, expected in cases.items():
        with pytest.raises(MyopiaError) as error:
            input_file(path, "--data")
        message = one_line(error)
        assert expected in message and message.startswith("--data"), message


def test_read_utf8_refuses_binary_and_other_encodings(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(MyopiaError, match="not UTF-8 text"):
        read_utf8(latin, "--data")
    binary = tmp_path / "bin"
    binary.write_bytes(b"ab\x00cd")
    with pytest.raises(MyopiaError, match="binary"):
        read_utf8(binary, "--data")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("\ufeffone\r\ntwo\r\n".encode())
    assert read_utf8(crlf, "--text") == "one\ntwo\n"


def test_a_non_utf8_data_file_is_one_line(tmp_path):
    data = tmp_path / "quotes.jsonl"
    data.write_bytes(b'{"id": "q\xe9"}\n')
    with pytest.raises(MyopiaError) as error:
        read_records(data, QuoteRequest)
    assert "not UTF-8" in one_line(error)


def test_duplicate_record_ids_are_refused_with_both_lines(tmp_path):
    line = (
        '{"id": "q1", "context_id": "p1", "context": "The ship was splitted", '
        '"request": "Quote the line with \\"ship\\".", "target": "ship", "present": true}\n'
    )
    data = tmp_path / "quotes.jsonl"
    data.write_text(line + "\n" + line)
    with pytest.raises(MyopiaError) as error:
        read_records(data, QuoteRequest)
    message = one_line(error)
    assert "line 3" in message and "duplicate id 'q1'" in message and "line 1" in message


def test_output_folder_and_file_checks(tmp_path):
    existing_file = tmp_path / "taken"
    existing_file.write_text("x")
    with pytest.raises(MyopiaError, match="is a file, not a folder"):
        output_folder(existing_file, "--out")
    with pytest.raises(MyopiaError, match="cannot be created"):
        output_folder(existing_file / "below", "--out")
    with pytest.raises(MyopiaError, match="is a folder"):
        output_file(tmp_path, "--save-data")
    assert output_folder(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(MyopiaError, match="not writable"):
            output_folder(locked / "out", "--out")
