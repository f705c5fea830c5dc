"""Checks on what a user hands a command, made before any model is loaded or any work done.

Every command that reads a user's file or writes into a folder goes through these, so that
a mistake costs one line and nothing else: a wrong ``--out`` is refused before minutes of
computing, not with a traceback after them, and nothing is written.

>>> from pathlib import Path
>>> output_folder(Path("/tmp/myopia-doctest-out"), "--out")
PosixPath('/tmp/myopia-doctest-out')
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from myopia.errors import CorruptFileError, MyopiaError


def _kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file or folder: "a FIFO", "a device"..."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def input_file(path: Path, option: str, what: str = "file") -> Path:
    """``path`` if it is a regular file that can be read; else one line naming ``option``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MyopiaError(f"{option} {path} is a folder: give a {what}")
    special = _kind(path)
    if special is not None:
        raise MyopiaError(f"{option} {path} is {special}, not a {what}: give a regular file")
    if not path.is_file():
        raise MyopiaError(f"{option} {path} does not exist: give a {what}")
    if not os.access(path, os.R_OK):
        raise MyopiaError(f"{option} {path} is not readable (permissions): give a {what}")
    return path


def read_utf8(path: Path, option: str, what: str = "UTF-8 text file") -> str:
    """The text of a user's file, decoded the same way everywhere.

    A leading byte-order mark is dropped and Windows line endings become ``\\n``, so the
    same text gives the same tokens whichever editor saved it. NUL bytes mark a binary
    file even though they are valid UTF-8.
    """
    path = input_file(path, option, what)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise MyopiaError(f"{option} {path}: cannot read it ({err.strerror or err})") from err
    if b"\x00" in raw:
        raise CorruptFileError(f"{path} looks binary (it contains NUL bytes): give a {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorruptFileError(
            f"{path} is not UTF-8 text (undecodable byte at offset {err.start}): give a {what}"
        ) from err
    return text.replace("\r\n", "\n")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def output_folder(path: Path, option: str) -> Path:
    """``path`` if results can be written into it (it exists as a writable folder, or can be
    created); else one line naming ``option``. Nothing is created here."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MyopiaError(f"{option} {path} is a file, not a folder: give a folder to write into")
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        raise MyopiaError(f"{option} {path}: {base} is a file, so the folder cannot be created")
    if not os.access(base, os.W_OK | os.X_OK):
        raise MyopiaError(f"{option} {path}: {base} is not writable; give a folder you can write")
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` if a file can be written there (atomically: its folder must be writable);
    else one line naming ``option``. Nothing is created here."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MyopiaError(f"{option} {path} is a folder: give a file name")
    special = _kind(path)
    if special is not None:
        raise MyopiaError(f"{option} {path} is {special}: give a regular file name")
    output_folder(path.parent, option)
    return path
