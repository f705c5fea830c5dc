"""Datasets as JSONL: one record per line, each a flat dataclass whose fields are the schema.

A record type is a frozen dataclass whose fields are ``str``, ``int``, ``float``, ``bool``,
``list[str]`` or ``dict[str, str]`` (with defaults where optional) and which may define
``check()`` to reject values that have the right type but make no sense (an unknown output
kind). Reading a user's file validates every line and stops at the first bad one with a
one-line error naming the file, the line and the field::

    records = read_records("my_quotes.jsonl", QuoteRequest)
    write_records("copy.jsonl", records)          # atomic

The tables the generators sample from (articles' facts, pages, tools...) are package data
in ``myopia/faithfulness/tables/``, read by ``read_table`` with the same checks, so a
mistake in them is reported like a mistake in a user's file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TypeVar

from myopia.checks import read_utf8
from myopia.errors import MyopiaError
from myopia.io import atomic_write_text

R = TypeVar("R")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def schema(record_type: type) -> list[dict]:
    """The fields of ``record_type`` as ``{"name", "type", "required"}``: for --help and docs."""
    hints = typing.get_type_hints(record_type)
    rows = []
    for f in dataclasses.fields(record_type):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        rows.append({"name": f.name, "type": _describe(hints[f.name]), "required": required})
    return rows


def _describe(hint) -> str:
    if typing.get_origin(hint) is list:
        return "a list of strings"
    if typing.get_origin(hint) is dict:
        return "an object whose values are strings"
    return _TYPE_NAMES.get(hint, str(hint))


def _value_ok(value, hint) -> bool:
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if hint is float:  # JSON has one number type: 3 is a fine float
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def record_from_dict(data: object, record_type: type[R]) -> R:
    """Build one record, or raise ``ValueError`` saying which field is wrong and how."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(record_type)
    names = [f.name for f in dataclasses.fields(record_type)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(names)})")
    for row in schema(record_type):
        name = row["name"]
        if name not in data:
            if row["required"]:
                raise ValueError(f"missing field {name!r} ({row['type']})")
            continue
        if not _value_ok(data[name], hints[name]):
            raise ValueError(f"field {name!r} must be {row['type']}, got {data[name]!r:.60}")
    record = record_type(**data)
    check = getattr(record, "check", None)
    if check is not None:
        check()
    return record


def require_text(record: object, *names: str) -> None:
    """For ``check()``: raise if any of the string fields ``names`` is empty or blank."""
    for name in names:
        if not getattr(record, name).strip():
            raise ValueError(f"field {name!r} is empty")


def read_records(path: str | Path, record_type: type[R]) -> list[R]:
    """Every record of a JSONL file (blank lines skipped); a bad line stops with its number."""
    text = read_utf8(Path(path), "--data", "JSONL file with one record per line")
    return parse_records(text.splitlines(), str(path), record_type)


def parse_records(lines: Iterable[str], name: str, record_type: type[R]) -> list[R]:
    """The records of JSONL ``lines``; ``name`` (a file) starts every error message."""
    records = []
    first_line_of_id: dict[str, int] = {}  # records are referred to by id: ids are unique
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = record_from_dict(json.loads(line), record_type)
        except json.JSONDecodeError as error:
            raise MyopiaError(f"{name} line {number}: not valid JSON ({error.msg})") from None
        except (ValueError, TypeError) as error:
            raise MyopiaError(
                f"{name} line {number}: {error}; see the {record_type.__name__} schema "
                "in the documentation"
            ) from None
        record_id = getattr(record, "id", None)
        if record_id is not None:
            if record_id in first_line_of_id:
                raise MyopiaError(
                    f"{name} line {number}: duplicate id {record_id!r} (first on line "
                    f"{first_line_of_id[record_id]}); give every record its own id"
                )
            first_line_of_id[record_id] = number
        records.append(record)
    if not records:
        raise MyopiaError(f"{name}: no records; give one JSON object per line")
    return records


TABLES = "myopia.faithfulness"  # the package whose tables/ folder holds the generators' data


def table_path(name: str):
    """The packaged table ``name`` (``"pages.jsonl"``) as an importlib.resources path."""
    return resources.files(TABLES).joinpath("tables", name)


def read_table(name: str, record_type: type[R]) -> list[R]:
    """Every record of the packaged table ``name``, checked line by line like a user's file."""
    text = table_path(name).read_text(encoding="utf-8")
    where = f"{TABLES.replace('.', '/')}/tables/{name}"
    return parse_records(text.splitlines(), where, record_type)


def table_sha256() -> dict[str, str]:
    """sha256 of every packaged table, by file name: which data a result was measured on."""
    folder = resources.files(TABLES).joinpath("tables")
    return {
        entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".jsonl")
    }


def write_records(path: str | Path, records: Iterable) -> Path:
    """Write records (dataclasses) as JSONL, atomically."""
    lines = [json.dumps(dataclasses.asdict(r), ensure_ascii=False) for r in records]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
