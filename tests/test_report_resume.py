"""A report resumes: finished sections are reused, only unfinished ones run again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from myopia.report import registry
from myopia.report.context import ReportConfig
from myopia.report.registry import SectionResult, section
from myopia.report.run import run_report

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2,d_mlp=64"


def is_timing(key: str) -> bool:
    """Wall-clock times, which differ between two runs of the same work."""
    return key in ("started_utc", "reused_sections") or "seconds" in key or key.endswith("_s")


def without_timing(value):
    """``value`` (results.json) without its wall-clock times, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not is_timing(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value if not mentions_a_time(v)]
    return value


def mentions_a_time(value) -> bool:
    """A note such as "Training time: 7.3 s for 6 runs." """
    return isinstance(value, str) and re.search(r"\b\d+(\.\d+)? s\b", value) is not None


@pytest.fixture
def counted_sections(monkeypatch):
    """Two planted sections of claim C8 that count their runs; the second can be told to
    die the way a killed process does (KeyboardInterrupt is not caught per section)."""
    registry.discover()
    monkeypatch.setattr(registry, "_SECTIONS", {})
    monkeypatch.setattr(registry, "_RULES", dict(registry._RULES))
    runs = {"first": 0, "second": 0, "die": True}

    @section("C8-first", claim="C8", title="first")
    def first(ctx):
        runs["first"] += 1
        return SectionResult(summary="first", numbers={"value": ctx.seed + 0.5})

    @section("C8-second", claim="C8", title="second")
    def second(ctx):
        runs["second"] += 1
        if runs["die"]:
            raise KeyboardInterrupt
        return SectionResult(summary="second", numbers={"value": float("inf")})

    return runs


def test_only_unfinished_sections_run_again(tmp_path, counted_sections):
    config = ReportConfig(model=TINY, out=tmp_path, quick=True, show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_report(config)
    assert counted_sections == {"first": 1, "second": 1, "die": True}
    counted_sections["die"] = False
    resumed = run_report(config)
    assert (counted_sections["first"], counted_sections["second"]) == (1, 2)
    assert resumed["reused_sections"] == ["C8-first"]
    again = run_report(config)  # everything finished: nothing runs
    assert (counted_sections["first"], counted_sections["second"]) == (1, 2)
    assert again["reused_sections"] == ["C8-first", "C8-second"]
    assert without_timing(json.loads((tmp_path / "results.json").read_text())) == without_timing(
        json.loads(json.dumps(resumed, default=str).replace("Infinity", "null"))
    )


def test_a_changed_setting_or_fresh_recomputes(tmp_path, counted_sections):
    counted_sections["die"] = False
    config = ReportConfig(model=TINY, out=tmp_path, quick=True, show_progress=False)
    run_report(config)
    run_report(ReportConfig(**{**config.__dict__, "seed": 7}))  # another seed: both again
    assert (counted_sections["first"], counted_sections["second"]) == (2, 2)
    run_report(ReportConfig(**{**config.__dict__, "seed": 7, "fresh": True}))
    assert (counted_sections["first"], counted_sections["second"]) == (3, 3)
    stored = tmp_path / "sections" / "C8-first.json"
    stored.write_text("{truncated")  # a damaged file is recomputed, not trusted
    run_report(ReportConfig(**{**config.__dict__, "seed": 7}))
    assert (counted_sections["first"], counted_sections["second"]) == (4, 3)


def report_command(out, *extra):
    return [
        sys.executable, "-m", "myopia.cli", "report", "--quick", "--no-progress",
        "--model", "fresh-gpt2:d_model=32,n_layers=2,n_heads=4,d_mlp=64",
        "--only", "C2", "--only", "C3", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_report_process_resumes_to_the_same_results(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(report_command(tmp_path / "whole"), env=env, capture_output=True)
    assert whole.returncode == 0, whole.stderr
    killed = subprocess.Popen(report_command(tmp_path / "killed"), env=env)
    first = tmp_path / "killed" / "sections" / "C2.json"
    deadline = time.monotonic() + 300
    while not first.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished_at_kill = sorted(p.stem for p in first.parent.glob("*.json"))
    assert "C2" in finished_at_kill
    resumed = subprocess.run(report_command(tmp_path / "killed"), env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert results["reused_sections"] == finished_at_kill
    whole_results = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert without_timing(results) == without_timing(whole_results)
