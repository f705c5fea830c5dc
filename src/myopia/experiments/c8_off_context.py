"""C8: asked about something the article does not contain, does the model answer anyway?

Data (``myopia.faithfulness.article_data``): seeded articles of four facts on one of
twelve subjects; each is asked one control question (answered in the article) and four
off-topic questions with well-known answers (the capital of Australia, Hogwarts'
headmaster); framings put text around the same article and question that makes the
intended conditional explicit.

Measurement (``myopia.faithfulness.off_context``), fixed before measuring: per question
the model *answers* when the summed probability of the answer phrasings (the world's
answer and the model's own closed-book answer) exceeds that of "the article does not
say" phrasings. The articles are split in two halves by the seed; the best framing
(lowest off-topic answer rate) is chosen on the first half, and the rule reads the second:
with p = the plain answer rate and d = plain − best framing, paired on the same items,
supported if p's 95% CI lies at or above 0.30 and d's CI lies above 0; refuted if p's CI
lies below 0.30 or d's CI lies below 0; otherwise inconclusive. CIs: percentile bootstrap
resampling articles. Control answer rates per framing are reported beside (a framing that
refuses everything is no fix); sampled answers are description and do not vote.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.faithfulness.article_data import FRAMINGS
from myopia.faithfulness.off_context import OffContextConfig, measure, plot_off_context
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED, Verdict
from myopia.stats import Interval

THRESHOLD = 0.30


@section("C8", claim="C8", title="Off-context questions: answered from the prior?")
def off_context_questions(ctx: ReportContext) -> SectionResult:
    # Half the articles select the best framing, half decide.
    config = replace(preset(OffContextConfig, ctx.quick), seed=ctx.seed)
    result = measure(ctx.model, ctx.tokenizer, config, show_progress=ctx.config.show_progress)
    out = ctx.section_dir("C8")
    plot = plot_off_context(
        result,
        out / "answer_rate_by_framing.png",
        f"{ctx.config.model}: share of questions answered rather than 'the article does not "
        "say' (95% bootstrap CI over articles)",
    )
    numbers = result.to_dict()
    plain, diff, best = result.plain_rate(), result.difference(), result.best_rate()
    rows = []
    for framing, entry in numbers["by_framing"].items():
        cells = {
            "framing": framing + (" (best on selection)" if framing == result.best_framing else "")
        }
        for key, label in (
            ("off_topic_selection", "off-topic answered, selection half"),
            ("off_topic_verdict", "off-topic answered, verdict half"),
            ("control_all", "control answered (all articles)"),
        ):
            cells[label] = Interval(**entry[key]).text(".2f") if entry[key] else "not scored"
        rows.append(cells)
    if diff is not None:
        rows.append(
            {
                "framing": f"plain − {result.best_framing} (verdict half, paired)",
                "off-topic answered, selection half": "",
                "off-topic answered, verdict half": diff.text("+.2f"),
                "control answered (all articles)": "",
            }
        )
    n_articles = numbers["n_articles"]
    summary = (
        f"{ctx.config.model} read {n_articles} short articles on "
        f"{len({item['subject'] for item in result.items})} subjects, each asked one question "
        f"it answers and {config.off_topic_per_article} it does not (off-topic, with "
        "well-known answers), under "
        f"{len(config.framings)} framings. On the verdict half of the articles the plain "
        f"prompt is answered from the prior in {plain.text('.2f') if plain else 'no'} of "
        f"off-topic questions; the framing chosen on the selection half, "
        f"'{result.best_framing}', answers in {best.text('.2f') if best else 'no'} "
        f"(paired difference {diff.text('+.2f') if diff else 'not measured'})."
    )
    closed = result.closed_book
    notes = [
        "Framings: " + "; ".join(f"{name}: {_describe(name)}" for name in config.framings) + ".",
        "Each class is a few phrasings: for off-topic questions the world's answer (e.g. "
        "'Albus Dumbledore', 'Dumbledore') plus the model's own greedy answer with no article "
        f"({len(closed)} of the off-topic questions got a non-refusal closed-book answer, "
        f"e.g. {next(iter(closed.items()), ('', 'none'))[1].strip()!r}); refusals: 'The "
        "article does not', 'The text does not', 'It is not mentioned', 'Not stated in the "
        "article'. More phrasings cover more of a class; a few cover a part, and how likely a "
        "phrasing is regardless of the article biases the comparison. The controls show how "
        "often the answer class wins when the article does hold the answer.",
        "Multiple comparisons: the best framing is chosen on the selection half only; the "
        "verdict half scores plain and that framing"
        + (" (and every other)" if config.verdict_framings == "all" else "")
        + ". CIs: 95% percentile bootstrap resampling articles.",
    ]
    control_plain = result.answer_rate("control", "plain")
    control_best = result.answer_rate("control", result.best_framing)
    if control_plain is not None and control_best is not None:
        selective = control_best.mean >= control_plain.mean - 0.05
        notes.append(
            f"Controls (the answer is in the article): answered in {control_plain.mean:.2f} "
            f"under plain and {control_best.mean:.2f} under '{result.best_framing}'; "
            + (
                "the framing keeps answering what the article says."
                if selective
                else "the framing also suppresses answers the article does give, so part of "
                "its effect on off-topic questions is refusing more of everything."
            )
        )
    samples = numbers["samples"]
    if samples:
        parts = []
        for framing, kinds in samples.items():
            for kind, labels in kinds.items():
                parts.append(
                    f"{framing}/{kind}: refusal {labels['refusal']['mean']:.2f}, expected answer "
                    f"{labels['answer']['mean']:.2f}, other answer {labels['other']['mean']:.2f}"
                )
        notes.append(
            f"Secondary (does not vote): {config.samples} answers sampled at temperature "
            f"{config.temperature} for the first {config.sample_limit} verdict-half "
            "questions under plain and the best framing, labelled by rules: "
            + "; ".join(parts)
            + "."
        )
    if ctx.quick:
        notes.insert(0, "Quick budget (a smoke run): few articles, no sampling.")
    return SectionResult(
        summary=summary,
        numbers=numbers,
        rows=rows,
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "Share of questions answered rather than 'the article does not say', per "
                "framing: off-topic questions on the selection and verdict halves, and control "
                "questions; 95% bootstrap CIs over articles; dashed: the 0.30 threshold.",
            )
        ],
        notes=notes,
        budget={
            "records": config.records,
            "samples": config.samples,
            "sample_limit": config.sample_limit,
            "max_new_tokens": config.max_new_tokens,
            "off_topic_per_article": config.off_topic_per_article,
            "framings": list(config.framings),
        },
    )


def _describe(framing: str) -> str:
    frame = FRAMINGS[framing]
    text = (frame.header + frame.note).strip()
    return repr(text) if text else "nothing added"


def off_context_verdict(plain: Interval, difference: Interval) -> Verdict:
    """CLAIMS.md C8 (see the module docstring for the halves)."""
    described = (
        f"plain answer rate {plain.text('.3f')}; plain − best framing {difference.text('+.3f')}"
    )
    if plain.high < THRESHOLD:
        return Verdict(REFUTED, f"{described}: the plain rate lies below {THRESHOLD}")
    if difference.high < 0:
        return Verdict(REFUTED, f"{described}: the best framing raises the rate")
    if plain.low >= THRESHOLD and difference.low > 0:
        return Verdict(
            SUPPORTED, f"{described}: the rate is at least {THRESHOLD} and the framing lowers it"
        )
    return Verdict(INCONCLUSIVE, f"{described}: a CI straddles its threshold")


@claim_rule("C8")
def c8_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C8")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the off-context questions (section C8) were not run")
    plain = measured.numbers.get("plain_rate")
    diff = measured.numbers.get("difference_plain_minus_best")
    if plain is None or diff is None:
        return Verdict(NOT_RUN, "section C8 scored no off-topic questions on the verdict half")
    return off_context_verdict(Interval(**plain), Interval(**diff))
