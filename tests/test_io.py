"""Atomic writes: round trips, failures that leave the old file, and a real SIGKILL."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import myopia.io
from myopia.io import atomic_write_bytes, atomic_write_json, atomic_write_text, save_figure
from myopia.stats import Interval, mean_ci


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_bytes_and_text_round_trip(tmp_path):
    target = tmp_path / "new" / "nested" / "data.bin"  # parent folders are created
    assert atomic_write_bytes(target, b"\x00\x01binary") == target
    assert target.read_bytes() == b"\x00\x01binary"
    text = "line one\nünïcödé — ✓\n"
    atomic_write_text(target, text)  # overwrite
    assert target.read_bytes() == text.encode("utf-8")
    assert leftovers(target.parent) == []


def test_permissions_follow_umask_like_open(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777


@dataclass
class Result:
    name: str
    losses: np.ndarray
    path: Path


def test_json_converts_numpy_torch_dataclasses_paths(tmp_path):
    obj = {
        "zeta": np.float32(1.5),  # key order is kept, not sorted
        "alpha": np.int64(3),
        "flag": np.bool_(True),
        "array": np.arange(3),
        "tensor": torch.tensor([[1.0, 2.0]]),
        "scalar_tensor": torch.tensor(7),
        "bf16": torch.tensor([0.5], dtype=torch.bfloat16),
        "result": Result("run", np.array([0.25, 0.5]), Path("out") / "r.json"),
        "interval": mean_ci([1.0, 2.0, 3.0]),
        "single": mean_ci([1.0]),  # infinite bounds
        "text": "naïve",
    }
    path = atomic_write_json(tmp_path / "r.json", obj)
    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("}\n") and '\n  "zeta": 1.5,' in raw and "naïve" in raw
    loaded = json.loads(raw)
    assert list(loaded) == list(obj)
    assert loaded["alpha"] == 3 and loaded["flag"] is True and loaded["array"] == [0, 1, 2]
    assert loaded["tensor"] == [[1.0, 2.0]] and loaded["scalar_tensor"] == 7
    assert loaded["bf16"] == [0.5]
    assert loaded["result"] == {"name": "run", "losses": [0.25, 0.5], "path": "out/r.json"}
    assert loaded["interval"] == mean_ci([1.0, 2.0, 3.0]).to_dict()
    # JSON has no infinity: an unbounded end is null, and reads back as the interval.
    assert loaded["single"]["high"] is None and "Infinity" not in raw
    assert Interval.from_dict(loaded["single"]) == mean_ci([1.0])
    assert math.isinf(Interval.from_dict(loaded["single"]).low)


def test_failed_json_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"version": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(target, {"version": 2, "bad": object()})
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failure_during_write_removes_temp(tmp_path, monkeypatch):
    # Fail after the temp file exists (at fsync), the path serialisation cannot cover.
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(myopia.io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_save_figure_writes_format_from_suffix_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    for suffix, magic in [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        path = save_figure(fig, tmp_path / "figs" / f"plot{suffix}", dpi=50)
        assert path.read_bytes().startswith(magic)
        assert not plt.fignum_exists(fig.number)
    assert leftovers(tmp_path / "figs") == []


def test_save_figure_failure_keeps_old_file_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    target = tmp_path / "plot.png"
    atomic_write_bytes(target, b"old figure")
    fig, _ = plt.subplots()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "plot.notaformat")
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="suffix"):
        save_figure(Figure(), tmp_path / "plot")
    assert target.read_bytes() == b"old figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


# The writer loads myopia/io.py by path rather than `import myopia.io`: importing the
# package imports torch, which would make each start take seconds.
WRITER = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("atomic_io", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payloads = [bytes.fromhex(sys.argv[3]) * (int(sys.argv[4]) // 4),
                bytes.fromhex(sys.argv[5]) * (int(sys.argv[4]) // 4)]
    print("ready", flush=True)
    i = 0
    while True:
        module.atomic_write_bytes(sys.argv[2], payloads[i % 2])
        i += 1
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_mid_write_leaves_old_or_new_file(tmp_path):
    size = 16 * 2**20  # large enough that most of the child's time is spent writing
    old, new_a, new_b = b"\x00\x00\x00\x00", b"\xaa\xbb\xcc\xdd", b"\x11\x22\x33\x44"
    target = tmp_path / "big.bin"
    atomic_write_bytes(target, old * (size // 4))
    valid = {hashlib.sha256(p * (size // 4)).hexdigest() for p in (old, new_a, new_b)}

    caught_mid_write = 0
    for delay in (0.05, 0.15, 0.3, 0.5):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, myopia.io.__file__, str(target)]
            + [new_a.hex(), str(size), new_b.hex()],
            stdout=subprocess.PIPE,
            cwd=tmp_path,
        )
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            child.kill()
            child.stdout.close()
        # Never partial: the hash matches one complete payload.
        assert hashlib.sha256(target.read_bytes()).hexdigest() in valid
        stray = leftovers(tmp_path)
        caught_mid_write += bool(stray)  # the kill landed between create and rename
        for name in stray:
            (tmp_path / name).unlink()
    # At least one kill interrupted a write, so the check above tested the hard case.
    assert caught_mid_write >= 1
