"""``myopia report``: run every claim's sections on one model and write one HTML report."""

from __future__ import annotations

import datetime as dt
import platform
import time
import traceback
from dataclasses import asdict

import torch

import myopia
from myopia.data.text import corpus_sha256
from myopia.errors import MyopiaError
from myopia.faithfulness.records import table_sha256
from myopia.io import atomic_write_json, atomic_write_text
from myopia.memory import release_freed_memory
from myopia.models.loading import describe_model, load_model
from myopia.report import finished, registry
from myopia.report.claims import all_claims
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.html import render_report
from myopia.report.verdicts import NOT_RUN, Verdict


def _selected(section: registry.Section, only: tuple[str, ...]) -> bool:
    return not only or section.key in only or section.claim in only


def _gpus() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _start_gpu_watch() -> dict[int, int]:
    """Reset each GPU's peak memory statistic; return the memory allocated now."""
    allocated = {}
    for gpu in _gpus():
        torch.cuda.reset_peak_memory_stats(gpu)
        allocated[gpu] = torch.cuda.memory_allocated(gpu)
    return allocated


def _device_used(ctx: ReportContext, allocated_before: dict[int, int]) -> str:
    """The GPUs on which the section allocated memory, else the report model's device."""
    used = [
        f"cuda:{gpu}"
        for gpu, before in allocated_before.items()
        if torch.cuda.max_memory_allocated(gpu) > before
    ]
    return ",".join(used) or str(next(ctx.model.parameters()).device)


def _run_section(section: registry.Section, ctx: ReportContext) -> registry.SectionResult:
    torch.manual_seed(ctx.seed)
    allocated_before = _start_gpu_watch()
    start = time.perf_counter()
    try:
        result = section.run(ctx)
    except MyopiaError:
        raise  # a user mistake (bad text file...): stop with its one-line message
    except Exception as error:  # a bug in one section must not lose the others' results
        result = registry.SectionResult(
            summary=f"This section failed: {type(error).__name__}: {error}",
            notes=[traceback.format_exc()],
            status=registry.FAILED,
        )
    result.duration_s = time.perf_counter() - start
    result.device = result.device or _device_used(ctx, allocated_before)
    return result


def _check_selection(only: tuple[str, ...]) -> None:
    """Every section belongs to a claim of the table, and every --only name exists."""
    claim_ids = {c.id for c in all_claims()}
    for s in registry.all_sections():
        if s.claim not in claim_ids:
            raise MyopiaError(
                f"report section {s.key} is registered for claim {s.claim}, which the claims "
                "table (report/claims.md) does not have: add the claim's row"
            )
    keys = [s.key for s in registry.all_sections()]
    unknown = [name for name in only if name not in claim_ids and name not in keys]
    if unknown:
        raise MyopiaError(
            f"--only {unknown[0]}: no such section or claim; sections: {', '.join(keys)}; "
            f"claims: {', '.join(c.id for c in all_claims())}"
        )


def _claim_verdict(claim_id: str, results: dict[str, registry.SectionResult]) -> Verdict:
    rule = registry.rule_for(claim_id)
    measured = [k for k, r in results.items() if r.status == registry.MEASURED]
    if rule is None:
        if measured:
            return Verdict(
                NOT_RUN,
                f"measured here: {', '.join(measured)}; the measurement "
                "this claim's rule needs is not built yet",
            )
        return Verdict(NOT_RUN, "no experiment for this claim is built yet")
    return rule(results)


def _data_sha256(config: ReportConfig) -> dict[str, dict[str, str]]:
    """Which data the numbers come from: the packaged tables the C6-C8 generators sample
    from, and each file of the text (none when the default corpus is not installed, in
    which case no section could read it)."""
    try:
        text = corpus_sha256(config.text)
    except MyopiaError:
        text = {}
    return {"tables": table_sha256(), "text": text}


def run_report(config: ReportConfig) -> dict:
    """Run the report; write ``index.html`` and ``results.json`` into ``config.out``.

    Returns the results dictionary that was written to ``results.json``.
    """
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    registry.discover()
    _check_selection(config.only)
    # Load first, so that a bad --model or --text fails at once with its one-line error.
    model, tokenizer = load_model(config.model)
    ctx = ReportContext(
        config=config, model=model, tokenizer=tokenizer, model_info=describe_model(model)
    )
    if config.text is not None:
        ctx.documents()
    config.out.mkdir(parents=True, exist_ok=True)

    data_sha256 = _data_sha256(config)
    reused: list[str] = []

    def finished_or_run(section: registry.Section) -> registry.SectionResult:
        key = finished.section_key(
            section.key,
            seed=config.seed,
            quick=config.quick,
            model=config.model,
            text=data_sha256["text"],
        )
        result = None if config.fresh else finished.load_finished(config.out, key)
        if result is not None:
            reused.append(section.key)
            return result
        result = _run_section(section, ctx)
        finished.store_finished(config.out, key, result)
        release_freed_memory()  # the next section starts from live data only
        return result

    claims = []
    for claim in all_claims():
        sections = [s for s in registry.sections_for(claim.id) if _selected(s, config.only)]
        results = {s.key: finished_or_run(s) for s in sections}
        verdict = _claim_verdict(claim.id, results)
        claims.append(
            {
                **asdict(claim),
                **verdict.to_dict(),
                "sections": [
                    {"key": s.key, "title": s.title, **asdict(results[s.key])} for s in sections
                ],
            }
        )

    output = {
        "myopia_version": myopia.__version__,
        "started_utc": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - start, 1),
        "model": {"spec": config.model, **ctx.model_info},
        "settings": {
            "quick": config.quick,
            "seed": config.seed,
            "text": ctx.corpus_name(),
            "only": list(config.only),
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(next(model.parameters()).device),  # the model's; sections say theirs
            "gpus": [torch.cuda.get_device_name(i) for i in _gpus()],
            "threads": torch.get_num_threads(),
        },
        "data_sha256": data_sha256,
        # Sections finished by an earlier run of the same command, reused (see finished.py).
        "reused_sections": reused,
        "claims": claims,
    }
    atomic_write_json(config.out / "results.json", output)
    atomic_write_text(config.out / "index.html", render_report(output))
    return output
