"""JSON text in and out at any nesting depth, refusing NaN and infinities.

A linear story imported from socketteer/loom nests one ``children`` list per paragraph,
so a 5,000-paragraph story is 10,000 levels deep; Python's ``json`` recurses (in C) and
raises ``RecursionError`` past about 1,000. Both functions here try ``json`` first (fast,
in C) and fall back, only for text that deep, to a loop over an explicit stack that
gives the same value (the tests compare the two on random documents).

NaN and infinities are not JSON: ``json`` writes and reads them by default, and a
browser's ``JSON.parse`` then refuses the whole answer. Here they are refused on the
way in (``ValueError`` naming the constant) and on the way out.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (no NaN or infinities)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999 parses to inf
        _refuse_constant(text)
    return value


# One decoder for every call: json.loads with options builds a new one each time, which
# costs more than decoding the short texts the store reads by the hundred.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(text: str | bytes) -> Any:
    """The value of the JSON ``text``; ``ValueError`` (a ``json.JSONDecodeError`` where
    ``json`` found it) when it is not JSON or holds NaN or an infinity."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError too
    try:
        return _DECODER.decode(text)
    except RecursionError:
        return _loads_iteratively(text)


def _error(message: str, text: str, at: int) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, text, at)


def _key(text: str, at: int) -> tuple[str, int]:
    """An object's key and the position after its colon."""
    if text[at : at + 1] != '"':
        raise _error("Expecting property name enclosed in double quotes", text, at)
    key, at = scanstring(text, at + 1)
    at = _WHITESPACE.match(text, at).end()
    if text[at : at + 1] != ":":
        raise _error("Expecting ':' delimiter", text, at)
    return key, _WHITESPACE.match(text, at + 1).end()


def _scalar(text: str, at: int) -> tuple[Any, int]:
    if text[at : at + 1] == '"':
        return scanstring(text, at + 1)
    for word, value in _LITERALS.items():
        if text.startswith(word, at):
            return value, at + len(word)
    for word in ("NaN", "Infinity", "-Infinity"):
        if text.startswith(word, at):
            _refuse_constant(word)
    number = _NUMBER.match(text, at)
    if number is None:
        raise _error("Expecting value", text, at)
    integer, fraction, exponent = number.groups()
    if fraction or exponent:
        return _finite_float(number.group()), number.end()
    return int(integer), number.end()


def _loads_iteratively(text: str) -> Any:
    """``json.loads`` as a loop: ``stack`` holds the open containers and their pending keys."""
    stack: list[list[Any]] = []  # [container, key of the value being read (objects only)]
    at = _WHITESPACE.match(text, 0).end()
    while True:
        opener = text[at : at + 1]
        if opener in ("{", "["):
            at = _WHITESPACE.match(text, at + 1).end()
            closer = "}" if opener == "{" else "]"
            if text[at : at + 1] == closer:
                value: Any = {} if opener == "{" else []
                at += 1
            elif opener == "{":
                key, at = _key(text, at)
                stack.append([{}, key])
                continue
            else:
                stack.append([[], None])
                continue
        else:
            value, at = _scalar(text, at)
        while True:  # attach the value just read; close every container that ends here
            if not stack:
                at = _WHITESPACE.match(text, at).end()
                if at != len(text):
                    raise _error("Extra data", text, at)
                return value
            container, key = stack[-1]
            if isinstance(container, dict):
                container[key] = value
            else:
                container.append(value)
            at = _WHITESPACE.match(text, at).end()
            mark = text[at : at + 1]
            if mark == ",":
                at = _WHITESPACE.match(text, at + 1).end()
                if isinstance(container, dict):
                    stack[-1][1], at = _key(text, at)
                break
            if mark != ("}" if isinstance(container, dict) else "]"):
                raise _error("Expecting ',' delimiter", text, at)
            at += 1
            value = stack.pop()[0]


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` (``ensure_ascii=False``); ``ValueError`` for NaN/inf."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        return _dumps_iteratively(value)


def _dumps_iteratively(value: Any) -> str:
    """``dumps`` as a loop: ``stack`` holds what is left to write, last first."""
    out: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, value)]  # (already text?, item)
    while stack:
        is_text, item = stack.pop()
        if is_text:
            out.append(item)
        elif isinstance(item, dict) and item:
            stack.append((True, "}"))
            entries = list(item.items())
            for i in range(len(entries) - 1, -1, -1):
                key, member = entries[i]
                if not isinstance(key, str):  # json's own conversion of int/float/None keys
                    key = next(iter(json.loads(json.dumps({key: 0}))))
                stack.append((False, member))
                stack.append((True, ("{" if i == 0 else ",") + dumps(key) + ":"))
        elif isinstance(item, list | tuple) and item:
            stack.append((True, "]"))
            for i in range(len(item) - 1, -1, -1):
                stack.append((False, item[i]))
                stack.append((True, "[" if i == 0 else ","))
        else:
            out.append(dumps(item))  # a scalar or an empty container: no depth
    return "".join(out)
