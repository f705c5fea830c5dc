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

Per section it also gives the CPU seconds spent (this process and the pool's workers,
which are reaped when the section's pool closes) and so how many of the machine's cores
were busy on average, and how much of this process's time went to the dense kernels
(matrix products and attention, whose speed is the hardware's) and to autograd's backward
pass: what is left is everything any rewrite of the Python around them could save.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
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


# torch's matrix products and attention, as cProfile names the C functions Python calls.
# A product written ``a @ b`` or as a tensor method is not seen by cProfile as a call of its
# own, so the dense seconds are a lower bound.
DENSE_KERNELS = (
    "torch._C._nn.linear",
    "torch.matmul",
    "torch.bmm",
    "torch.baddbmm",
    "torch.addmm",
    "torch.einsum",
    "torch._C._nn.scaled_dot_product_attention",
)
BACKWARD = "run_backward"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children so far."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def kernel_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Own time in the dense kernels and in autograd's backward pass."""
    dense = backward = 0.0
    for (_, _, name), (_, _, own, _, _) in stats.stats.items():
        if any(kernel in name for kernel in DENSE_KERNELS):
            dense += own
        elif BACKWARD in name:
            backward += own
    return {"dense_kernels_s": round(dense, 2), "backward_s": round(backward, 2)}


def top_functions(stats: pstats.Stats, count: int) -> list[dict]:
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
        cpu_before = cpu_seconds()
        profile = cProfile.Profile()
        profile.enable()
        result = _run_section(section, ctx)
        profile.disable()
        release_freed_memory()  # as the report does between sections
        cpu_s = cpu_seconds() - cpu_before
        stats = pstats.Stats(profile, stream=io.StringIO())
        entry = {
            "section": section.key,
            "status": result.status,
            "wall_s": round(result.duration_s, 2),
            "peak_rss_mb": peak_rss_mb(),
            "peak_is_per_section": resettable,
            "cpu_s": round(cpu_s, 1),
            "cores_busy": round(cpu_s / result.duration_s, 2),
            **kernel_seconds(stats),
            "top": top_functions(stats, args.top),
        }
        report["sections"].append(entry)
        print(
            f"\n{section.key}: {entry['wall_s']} s, peak RSS {entry['peak_rss_mb']:.0f} MB, "
            f"CPU {entry['cpu_s']} s ({entry['cores_busy']} cores busy), dense kernels "
            f"{entry['dense_kernels_s']} s, backward {entry['backward_s']} s"
        )
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
