"""C8: asked about something the article does not contain, does the model answer anyway?

Data (``myopia.faithfulness.article_data``): seeded articles of four facts on one of
twelve subjects; each is asked one control question (answered in the article) and four
off-topic questions with well-known answers (the capital of Australia, Hogwarts'
headmaster); framings put text around the same article and question that make the
intended conditional explicit. Answer phrasings are the answer itself (" Canberra"), never
an opener that restates the question, which any reply might start with.

Measurement (``myopia.faithfulness.off_context``), fixed before measuring: per question
the model *answers* when the summed probability of the answer phrasings (the world's
answer and the model's own closed-book answer) exceeds that of "the article does not
say" phrasings. The articles are split in two halves by the seed; the framing with the
highest selectivity (control answer rate − off-topic answer rate) is chosen on the first
half, and the rule reads the second.

Verdict rule (CLAIMS.md v2 C8): supported if the plain off-topic answer rate has its 95%
CI above 0.30 AND the chosen framing raises selectivity over plain (paired CI above 0)
while the control answer rate falls by at most 0.10 (plain − chosen, point estimate);
refuted if the plain rate's CI lies below 0.30; otherwise inconclusive. Control: the
control questions under plain are answered in at least 70% (point estimate), else the
instrument cannot see an answer when there is one and the verdict is inconclusive. CIs:
percentile crossed bootstrap over articles and questions.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.faithfulness.article_data import FRAMINGS
from myopia.faithfulness.off_context import OffContextConfig, measure, plot_off_context
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import (
    INCONCLUSIVE,
    NOT_RUN,
    REFUTED,
    SUPPORTED,
    Control,
    Verdict,
    with_control,
)
from myopia.stats import Interval

THRESHOLD = 0.30  # plain off-topic answer rate
CONTROL_DROP_LIMIT = 0.10  # the chosen framing may cost the controls at most this much
CONTROL_MINIMUM = 0.70  # control questions answered under plain


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
        "say' (95% crossed-bootstrap CI over articles and questions)",
    )
    numbers = result.to_dict()
    plain, gain, drop = result.plain_rate(), result.selectivity_gain(), result.control_drop()
    best, control_plain = result.best_rate(), result.answer_rate("control", "plain")
    columns = (
        ("off_topic_selection", "off-topic answered, selection"),
        ("control_selection", "control answered, selection"),
        ("selectivity_selection", "selectivity, selection"),
        ("off_topic_verdict", "off-topic answered, verdict"),
        ("control_verdict", "control answered, verdict"),
        ("selectivity_verdict", "selectivity, verdict"),
    )
    rows = []
    for framing, entry in numbers["by_framing"].items():
        cells = {
            "framing": framing
            + (" (chosen on selection)" if framing == result.best_framing else "")
        }
        for key, label in columns:
            cells[label] = (
                Interval.from_dict(entry[key]).text(".2f") if entry[key] else "not scored"
            )
        rows.append(cells)
    for label, value in (
        (f"selectivity gain, {result.best_framing} − plain (verdict half, paired)", gain),
        (f"control drop, plain − {result.best_framing} (verdict half, paired)", drop),
    ):
        if value is not None:
            cells = {"framing": label, **{name: "" for _, name in columns}}
            cells["selectivity, verdict"] = value.text("+.2f")
            rows.append(cells)
    n_articles = numbers["n_articles"]
    halves = numbers["n_articles_by_half"]

    def text(value, fmt=".2f"):
        return value.text(fmt) if value is not None else "not measured"

    summary = (
        f"{ctx.config.model} read {n_articles} short articles ({halves['selection']} to choose "
        f"a framing, {halves['verdict']} to test it) on "
        f"{len({item['subject'] for item in result.items})} subjects, each asked one question "
        f"it answers and {config.off_topic_per_article} it does not (off-topic, with "
        f"well-known answers), under {len(config.framings)} framings. On the verdict half the "
        f"plain prompt is answered from the prior in {text(plain)} of off-topic questions and "
        f"in {text(control_plain)} of control questions. The framing with the highest "
        f"selectivity on the selection half, '{result.best_framing}', answers "
        f"{text(best)} of off-topic questions; its selectivity gain over plain is "
        f"{text(gain, '+.2f')} and it costs the controls {text(drop, '+.2f')}."
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
        "Multiple comparisons: the framing is chosen on the selection half only, by "
        "selectivity (control answer rate − off-topic answer rate: a framing that refuses "
        "everything gains nothing); the verdict half scores plain and that framing"
        + (" (and every other)" if config.verdict_framings == "all" else "")
        + ". CIs: 95% percentile crossed bootstrap resampling articles and questions at once "
        "(one off-topic question is asked of many articles, so questions vary too).",
    ]
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
                "framing: off-topic and control questions on the selection and verdict halves; "
                "95% crossed-bootstrap CIs over articles and questions; dashed: the 0.30 "
                "threshold.",
            )
        ],
        notes=notes,
        budget={
            "records": config.records,
            "samples": config.samples,
            "sample_limit": config.sample_limit,
            "max_new_tokens": config.max_new_tokens,
            "off_topic_per_article": config.off_topic_per_article,
            "articles_per_half": halves,
            "framings": list(config.framings),
        },
    )


def _describe(framing: str) -> str:
    frame = FRAMINGS[framing]
    text = (frame.header + frame.note).strip()
    return repr(text) if text else "nothing added"


def off_context_verdict(plain: Interval, gain: Interval, drop: Interval) -> Verdict:
    """CLAIMS.md v2 C8 on the verdict half (see the module docstring)."""
    described = (
        f"plain off-topic answer rate {plain.text('.3f')}; selectivity gain of the chosen "
        f"framing {gain.text('+.3f')}; control drop {drop.text('+.3f')}"
    )
    if plain.high < THRESHOLD:
        return Verdict(REFUTED, f"{described}: the plain rate lies below {THRESHOLD}")
    if plain.low > THRESHOLD and gain.low > 0 and drop.mean <= CONTROL_DROP_LIMIT:
        return Verdict(
            SUPPORTED,
            f"{described}: the plain rate lies above {THRESHOLD} and the framing raises "
            f"selectivity while the controls fall by at most {CONTROL_DROP_LIMIT}",
        )
    return Verdict(
        INCONCLUSIVE,
        f"{described}: not (plain rate above {THRESHOLD}, gain above 0 and control drop at "
        f"most {CONTROL_DROP_LIMIT}), nor a plain rate below {THRESHOLD}",
    )


def off_context_control(control_plain: Interval | None) -> Control:
    """Controls under plain answered in at least 70%: the instrument sees answers."""
    if control_plain is None:
        return Control(False, "no control question was scored under plain on the verdict half")
    passed = control_plain.mean >= CONTROL_MINIMUM
    return Control(
        passed,
        f"control questions (answer in the article) under plain answered in "
        f"{control_plain.text('.3f')}, "
        + ("at least" if passed else "below")
        + f" {CONTROL_MINIMUM}",
    )


@claim_rule("C8")
def c8_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C8")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the off-context questions (section C8) were not run")
    numbers = measured.numbers
    needed = [numbers.get(k) for k in ("plain_rate", "selectivity_gain", "control_drop")]
    if any(v is None for v in needed):
        return Verdict(
            NOT_RUN, "section C8 scored no off-topic or control questions on the verdict half"
        )
    control = numbers.get("control_rate_plain")
    verdict = off_context_verdict(*(Interval.from_dict(v) for v in needed))
    return with_control(
        verdict, off_context_control(None if control is None else Interval.from_dict(control))
    )
