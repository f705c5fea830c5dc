"""``myopia report``: run every claim's sections on one model and write one HTML report."""

from __future__ import annotations

import datetime as dt
import platform
import time
import traceback
from dataclasses import asdict

import torch

import myopia
from myopia.io import atomic_write_json, atomic_write_text
from myopia.models.loading import describe_model, load_model
from myopia.report import registry
from myopia.report.claims import all_claims
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.html import render_report
from myopia.report.verdicts import NOT_RUN, Verdict


def _selected(section: registry.Section, only: tuple[str, ...]) -> bool:
    return not only or section.key in only or section.claim in only


def _run_section(section: registry.Section, ctx: ReportContext) -> registry.SectionResult:
    torch.manual_seed(ctx.seed)
    start = time.perf_counter()
    try:
        result = section.run(ctx)
    except myopia.MyopiaError:
        raise  # a user mistake (bad text file...): stop with its one-line message
    except Exception as error:  # a bug in one section must not lose the others' results
        result = registry.SectionResult(
            summary=f"This section failed: {type(error).__name__}: {error}",
            notes=[traceback.format_exc()],
            status=registry.FAILED,
        )
    result.duration_s = time.perf_counter() - start
    return result


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


def run_report(config: ReportConfig) -> dict:
    """Run the report; write ``index.html`` and ``results.json`` into ``config.out``.

    Returns the results dictionary that was written to ``results.json``.
    """
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    registry.discover()
    # Load first, so that a bad --model or --text fails at once with its one-line error.
    model, tokenizer = load_model(config.model)
    ctx = ReportContext(
        config=config, model=model, tokenizer=tokenizer, model_info=describe_model(model)
    )
    if config.text is not None:
        ctx.documents()
    config.out.mkdir(parents=True, exist_ok=True)

    claims = []
    for claim in all_claims():
        sections = [s for s in registry.sections_for(claim.id) if _selected(s, config.only)]
        results = {s.key: _run_section(s, ctx) for s in sections}
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
            "device": "cpu",
            "threads": torch.get_num_threads(),
        },
        "claims": claims,
    }
    atomic_write_json(config.out / "results.json", output)
    atomic_write_text(config.out / "index.html", render_report(output))
    return output
