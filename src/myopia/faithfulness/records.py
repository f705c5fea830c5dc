"""Datasets as JSONL: one record per line, each a flat dataclass whose fields are the schema.

A record type is a frozen dataclass whose fields are ``str``, ``int``, ``float``, ``bool``
or ``list[str]`` (with defaults where optional) and which may define ``check()`` to reject
values that have the right type but make no sense (an unknown output kind). Reading a
user's file validates every line and stops at the first bad one with a one-line error
naming the file, the line and the field::

    records = read_records("my_quotes.jsonl", QuoteRequest)
    write_records("copy.jsonl", records)          # atomic
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

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
    return _TYPE_NAMES.get(hint, str(hint))


def _value_ok(value, hint) -> bool:
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
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


def read_records(path: str | Path, record_type: type[R]) -> list[R]:
    """Every record of a JSONL file (blank lines skipped); a bad line stops with its number."""
    path = Path(path)
    if not path.is_file():
        raise MyopiaError(f"{path}: no such file; give a JSONL file with one record per line")
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(record_from_dict(json.loads(line), record_type))
            except json.JSONDecodeError as error:
                raise MyopiaError(f"{path} line {number}: not valid JSON ({error.msg})") from None
            except (ValueError, TypeError) as error:
                raise MyopiaError(
                    f"{path} line {number}: {error}; see the {record_type.__name__} schema "
                    "in the documentation"
                ) from None
    if not records:
        raise MyopiaError(f"{path}: no records; give one JSON object per line")
    return records


def write_records(path: str | Path, records: Iterable) -> Path:
    """Write records (dataclasses) as JSONL, atomically."""
    lines = [json.dumps(dataclasses.asdict(r), ensure_ascii=False) for r in records]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
