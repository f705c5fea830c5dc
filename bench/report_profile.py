"""Where the report spends its time and memory: per section, wall time, peak resident
memory and the functions that take the most cumulative time.

Runs the sections of ``myopia report`` one after another in this process, each under
``cProfile``, on the same model and settings the report uses, and writes a text summary
(stdout) and the numbers as JSON. The per-section peak resident memory is sampled from
``/proc/self/status`` (VmHWM is reset before each section where the kernel allows it, else
the process peak so far is given); Linux only for memory, anywhere for time.

    python bench/report_profile.py --quick --out /tmp/profile             # every section
    python bench/report_profile.py --only C6 --only C8 --top 25 --out /tmp/profile

The profile slows Python-heavy code by roughly 1.2-2x and leaves time spent inside torch
kernels as it is, so use it to rank, and time the report itself for absolute numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import time
from pathlib import Path

import torch

from myopia.memory import release_freed_memory
from myopia.models.loading import describe_model, load_model
from myopia.protocol import VERDICT_SEED
from myopia.report import registry
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.run import _run_section, _selected


def peak_rss_mb() -> float | None:
    """The process's peak resident set (VmHWM) in MB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def top_functions(profile: cProfile.Profile, count: int) -> list[dict]:
    stats = pstats.Stats(profile, stream=io.StringIO()).sort_stats("cumulative")
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": calls,
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
            }
        )
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=VERDICT_SEED)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--top", type=int, default=20, help="functions listed per section")
    parser.add_argument("--out", type=Path, default=Path("report-profile"))
    args = parser.parse_args()

    config = ReportConfig(
        model=args.model, out=args.out, quick=args.quick, seed=args.seed,
        only=tuple(args.only), show_progress=False,
    )  # fmt: skip
    registry.discover()
    start = time.perf_counter()
    model, tokenizer = load_model(config.model)
    load_s = time.perf_counter() - start
    ctx = ReportContext(config, model, tokenizer, describe_model(model))
    sections = [s for s in registry.all_sections() if _selected(s, config.only)]
    report = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "settings": {"model": args.model, "quick": args.quick, "seed": args.seed},
        "model_load_s": round(load_s, 2),
        "sections": [],
    }
    for section in sections:
        resettable = reset_peak_rss()
        profile = cProfile.Profile()
        profile.enable()
        result = _run_section(section, ctx)
        profile.disable()
        release_freed_memory()  # as the report does between sections
        entry = {
            "section": section.key,
            "status": result.status,
            "wall_s": round(result.duration_s, 2),
            "peak_rss_mb": peak_rss_mb(),
            "peak_is_per_section": resettable,
            "top": top_functions(profile, args.top),
        }
        report["sections"].append(entry)
        print(f"\n{section.key}: {entry['wall_s']} s, peak RSS {entry['peak_rss_mb']:.0f} MB")
        for row in entry["top"]:
            cumulative, own = row["cumulative_s"], row["own_s"]
            print(f"  {cumulative:8.2f} s cum  {own:8.2f} s own  {row['function']}")
    report["total_s"] = round(time.perf_counter() - start, 1)
    report["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report_profile.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ntotal {report['total_s']} s; written: {args.out / 'report_profile.json'}")


if __name__ == "__main__":
    main()
