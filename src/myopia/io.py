"""Atomic file writes: a killed or crashing process never leaves a half-written file.

Experiments run for hours and are interrupted (Ctrl-C, out-of-memory kills, pre-empted
machines). A result file written in place can then be truncated, and a later run that
resumes or a report that reads it would see corrupt data, or worse, plausible but
partial data. Every writer here therefore writes a temporary file in the target's own
folder, flushes and ``fsync``s it, and renames it over the target with ``os.replace``,
which is atomic on POSIX and Windows when both paths are on one file system (hence the
same folder). A reader sees the old complete file or the new complete file, never a mix.

Data are produced (JSON serialised, figure rendered) before the temporary file is
created, and the temporary file is removed on any error, so a failure leaves the
previous file untouched and no litter. Only a hard kill (SIGKILL, power loss) during the
write can leave a stray ``.<name>.<random>.tmp`` file next to the target; the target
itself is still intact.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "save_figure"]

PathLike = str | os.PathLike[str]


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself: on POSIX the new directory entry is only durable once
    the directory is synced. Windows cannot open directories; there it is a no-op."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders; returns the path.

    The temporary file is created with ``O_EXCL`` and mode 0o666 filtered by the umask,
    so the result gets the same permissions an ordinary ``open(path, "wb")`` would give
    a new file (``tempfile.mkstemp`` would give 0o600).
    """
    target = Path(path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temp file.
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return target


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``encoding``, default UTF-8, whatever the
    platform's locale); returns the path. Newlines are written as given."""
    return atomic_write_bytes(path, text.encode(encoding))


def _to_json(obj: Any) -> Any:
    """``json.dumps`` fallback for the types experiment results are made of.

    Returns something ``json`` can recurse into; contents of containers and dataclass
    fields go through this hook again, so nesting works.
    """
    if isinstance(obj, np.generic):  # np.float32(1.5), np.int64(3), np.bool_(True)
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    # Only look for tensors if torch is already loaded: importing it here would cost
    # seconds, and an object cannot be a tensor if torch was never imported.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Shallow, unlike dataclasses.asdict, which deep-copies every field (and tensors).
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def json_values(obj: Any) -> Any:
    """``obj`` as plain JSON values, with every non-finite float replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_values(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_values(value) for value in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return json_values(_to_json(obj))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (key order kept) to ``path`` atomically.

    Converts numpy scalars and arrays, torch tensors, dataclass instances and paths to
    plain JSON. Non-ASCII text is written as UTF-8, not ``\\u`` escapes. Non-finite
    floats (the unbounded interval of a single sample, a NaN loss) are written as
    ``null``: Python's ``NaN``/``Infinity`` extension is not JSON, and ``JSON.parse`` and
    most other readers reject it (``Interval.from_dict`` reads the nulls back). The whole
    document is serialised before the file is touched: an unserialisable object raises
    ``TypeError`` and leaves any existing file as it was.
    """
    text = json.dumps(json_values(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def save_figure(fig: Any, path: PathLike, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically, then close it; returns the path.

    The format comes from the suffix (``.png``, ``.pdf``, ``.svg``, ...); extra keyword
    arguments go to ``Figure.savefig`` (e.g. ``dpi``, ``bbox_inches``). The figure is
    closed even when saving fails, so a loop of failing plots does not pile up open
    figures (pyplot warns, and holds their memory, past 20).
    """
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower()
    try:
        if not fmt:
            raise ValueError(f"cannot tell the figure format of {target}: give it a suffix")
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, **savefig_kwargs)
        return atomic_write_bytes(target, buffer.getvalue())
    finally:
        import matplotlib.pyplot as plt  # deferred: pyplot selects a backend on import

        plt.close(fig)
