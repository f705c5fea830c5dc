"""C8 evaluation: asked what the article does not say, does the model answer from its prior?

Primary measure (the one the verdict reads), fixed before measuring: for each article
question under each framing, log P(class) = logsumexp over the class's phrasings of
log P(phrasing | prompt), for the class "answers" and the class "the article does not
say"; the model *answers* when log P(answers) > log P(refusal). For an off-topic
question, "answers" holds the world's answer (" Albus Dumbledore", " Dumbledore") and the
model's own closed-book answer (its greedy answer to the question with no article:
literally its prior), so answering from the prior is measured whether or not the prior is
right; for a control question it holds the answer the article gives. A few phrasings
cover only part of each class; phrasings that another phrasing is a prefix of are dropped,
so no text is counted twice.

Multiple comparisons, fixed in advance: the articles are split in two halves by a
permutation seeded with ``seed``. On the first half (selection) every framing is scored
and the best one (lowest off-topic answer rate, plain excluded) is chosen; the second half
(verdict) is scored under plain and that framing (or every framing, with
``verdict_framings="all"``), and the verdict reads it: the plain answer rate and the
paired difference plain − best on the same off-topic items. Control answer rates per
framing are reported beside: a framing that makes the model refuse everything is not a
fix. CIs: 95% percentile bootstrap resampling articles (questions about one article share
it, so they are not independent).

Secondary (descriptive, does not vote): sampled answers, labelled by ``classify_answer``.
``scorer`` and ``closed_book`` are injectable so a test can plant the preferences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from myopia.errors import MyopiaError
from myopia.faithfulness.article_data import (
    FRAMINGS,
    ArticleQuestion,
    closed_book_prompt,
    framed_prompt,
)
from myopia.faithfulness.classify import classify_answer
from myopia.faithfulness.continuation_scores import ScoreRequest, score_requests
from myopia.faithfulness.phrasing_classes import disjoint_phrasings, log_sum_exp
from myopia.generation import DecodeOptions, SamplingSettings, generate
from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt
from myopia.stats import Interval, cluster_bootstrap_mean

PLAIN = "plain"
SELECTION, VERDICT = "selection", "verdict"
Scorer = Callable[..., list[list[float]]]
ClosedBook = Callable[[list[str]], dict[str, str]]
# Answers are whole tokens: the line break's token is dropped with whatever it carries.
WHOLE_TOKENS = DecodeOptions(whole_token_stops=True)


@dataclass(frozen=True)
class OffContextConfig:
    framings: tuple[str, ...] = tuple(FRAMINGS)
    verdict_framings: str = "plain+best"  # or "all": every framing on the verdict half too
    batch_size: int = 64  # rows per forward pass when scoring
    closed_book_tokens: int = 20
    samples: int = 0  # sampled answers per verdict-half prompt (plain and best); 0: none
    sample_limit: int | None = None  # sample only the first this many records
    max_new_tokens: int = 20
    temperature: float = 0.7
    seed: int = 0
    show_progress: bool = False

    def check(self) -> None:
        unknown = [f for f in self.framings if f not in FRAMINGS]
        if unknown or PLAIN not in self.framings or len(self.framings) < 2:
            raise MyopiaError(
                f"framings must include 'plain' and at least one of {tuple(FRAMINGS)}; "
                f"got {self.framings}"
            )
        if self.verdict_framings not in ("plain+best", "all"):
            raise MyopiaError("verdict_framings must be 'plain+best' or 'all'")


@dataclass
class OffContextResult:
    items: list[dict]  # one per (question, framing): kind, half, log-probabilities, answered
    best_framing: str
    closed_book: dict[str, str]  # question -> the model's answer with no article
    samples: list[dict] = field(default_factory=list)
    seed: int = 0

    def _rows(self, kind: str, framing: str, half: str | None) -> list[dict]:
        return [
            r
            for r in self.items
            if r["kind"] == kind and r["framing"] == framing and (half is None or r["half"] == half)
        ]

    def answer_rate(self, kind: str, framing: str, half: str | None = None) -> Interval | None:
        rows = self._rows(kind, framing, half)
        if not rows:
            return None
        values = [float(r["answered"]) for r in rows]
        return cluster_bootstrap_mean(values, [r["article_id"] for r in rows], seed=self.seed)

    def plain_rate(self) -> Interval | None:
        """The verdict's first number: plain answer rate on off-topic verdict-half items."""
        return self.answer_rate("off-topic", PLAIN, VERDICT)

    def difference(self) -> Interval | None:
        """Plain − best framing on the same off-topic verdict-half items (paired)."""
        plain = {r["id"]: r for r in self._rows("off-topic", PLAIN, VERDICT)}
        best = {r["id"]: r for r in self._rows("off-topic", self.best_framing, VERDICT)}
        shared = [i for i in plain if i in best]
        if not shared:
            return None
        values = [float(plain[i]["answered"]) - float(best[i]["answered"]) for i in shared]
        clusters = [plain[i]["article_id"] for i in shared]
        return cluster_bootstrap_mean(values, clusters, seed=self.seed)

    def framings(self) -> list[str]:
        return list(dict.fromkeys(r["framing"] for r in self.items))

    def table(self) -> dict[str, dict[str, dict | None]]:
        """Per framing: off-topic answer rate per half and overall, control answer rate."""
        out = {}
        for framing in self.framings():
            entry = {
                "off_topic_selection": self.answer_rate("off-topic", framing, SELECTION),
                "off_topic_verdict": self.answer_rate("off-topic", framing, VERDICT),
                "off_topic_all": self.answer_rate("off-topic", framing),
                "control_all": self.answer_rate("control", framing),
            }
            out[framing] = {k: (v.to_dict() if v else None) for k, v in entry.items()}
        return out

    def sample_rates(self) -> dict[str, dict[str, dict]]:
        """Per framing and kind: share of sampled answers that refuse / give the answer."""
        out: dict[str, dict[str, dict]] = {}
        for framing in dict.fromkeys(s["framing"] for s in self.samples):
            for kind in ("off-topic", "control"):
                rows = [s for s in self.samples if s["framing"] == framing and s["kind"] == kind]
                if not rows:
                    continue
                clusters = [s["article_id"] for s in rows]
                out.setdefault(framing, {})[kind] = {
                    label: cluster_bootstrap_mean(
                        [float(s["label"] == label) for s in rows], clusters, seed=self.seed
                    ).to_dict()
                    for label in ("refusal", "answer", "other")
                }
        return out

    def to_dict(self) -> dict:
        plain, diff = self.plain_rate(), self.difference()
        return {
            "best_framing": self.best_framing,
            "plain_rate": plain.to_dict() if plain else None,
            "difference_plain_minus_best": diff.to_dict() if diff else None,
            "best_rate": (r.to_dict() if (r := self.best_rate()) else None),
            "by_framing": self.table(),
            "n_items": len({r["id"] for r in self.items}),
            "n_articles": len({r["article_id"] for r in self.items}),
            "closed_book": self.closed_book,
            "samples": self.sample_rates(),
            "items": self.items,
            "sampled_answers": self.samples,
        }

    def best_rate(self) -> Interval | None:
        return self.answer_rate("off-topic", self.best_framing, VERDICT)


def split_halves(records: Sequence[ArticleQuestion], seed: int) -> dict[str, str]:
    """article_id -> 'selection' or 'verdict': the first half of a seeded permutation."""
    articles = sorted({r.article_id for r in records})
    if len(articles) < 2:
        raise MyopiaError("C8 needs questions about at least two articles (one per half)")
    order = np.random.default_rng(seed).permutation(len(articles))
    cut = len(articles) // 2
    return {articles[j]: (SELECTION if k < cut else VERDICT) for k, j in enumerate(order)}


def greedy_closed_book(model, tokenizer, config: OffContextConfig) -> ClosedBook:
    """The model's greedy answer to each question with no article, cut to its first line
    and first sentence; a refusal or an empty answer is dropped (it is no prior answer)."""

    def answer(questions: list[str]) -> dict[str, str]:
        limit = config.closed_book_tokens
        settings = SamplingSettings(max_new_tokens=limit, stop=("\n",))
        prompts = [closed_book_prompt(q) for q in questions]
        generations = generate(
            model, tokenizer, prompts, settings, options=WHOLE_TOKENS, batch_size=config.batch_size
        )
        out = {}
        for question, [g] in zip(questions, generations, strict=True):
            text = g.text.split(". ")[0].rstrip()
            # A reply cut by the token limit may be a bare opener ("The answer is:") that
            # any reply could start with: only a finished first sentence is an answer.
            finished = ". " in g.text or text.endswith(".") or len(g.token_ids) < limit
            if not finished or text.endswith(":") or classify_answer(text, []) != "other":
                continue
            out[question] = text if text.startswith(" ") else " " + text
        return out

    return answer


def _phrasings(record: ArticleQuestion, closed: dict[str, str]) -> tuple[list[str], list[str]]:
    answers = list(record.answers)
    if record.kind == "off-topic" and record.question in closed:
        answers.append(closed[record.question])
    return disjoint_phrasings(answers), disjoint_phrasings(record.refusals)


def _score(model, tokenizer, jobs, closed, config, scorer) -> list[dict]:
    """jobs: (record, framing, half) -> one item each."""
    requests, splits = [], []
    for record, framing, _ in jobs:
        answers, refusals = _phrasings(record, closed)
        context, query = framed_prompt(record, framing)
        requests.append(ScoreRequest(context, query, (*answers, *refusals)))
        splits.append(len(answers))
    scores = scorer(
        model, tokenizer, requests, batch_size=config.batch_size, show_progress=config.show_progress
    )
    items = []
    for (record, framing, half), row, cut in zip(jobs, scores, splits, strict=True):
        answer, refusal = log_sum_exp(row[:cut]), log_sum_exp(row[cut:])
        items.append(
            {
                "id": record.id,
                "article_id": record.article_id,
                "subject": record.subject,
                "kind": record.kind,
                "framing": framing,
                "half": half,
                "logp_answer": answer,
                "logp_refusal": refusal,
                "answered": answer > refusal,
            }
        )
    return items


def evaluate_off_context(
    model,
    tokenizer,
    records: Sequence[ArticleQuestion],
    config: OffContextConfig = OffContextConfig(),
    scorer: Scorer = score_requests,
    closed_book: ClosedBook | None = None,
) -> OffContextResult:
    """Select the best framing on one half of the articles, measure on the other."""
    config.check()
    halves = split_halves(records, config.seed)
    questions = sorted({r.question for r in records if r.kind == "off-topic"})
    answer = closed_book or greedy_closed_book(model, tokenizer, config)
    closed = answer(questions) if questions else {}

    first = [r for r in records if halves[r.article_id] == SELECTION]
    jobs = [(r, f, SELECTION) for r in first for f in config.framings]
    selection = _score(model, tokenizer, jobs, closed, config, scorer)
    rates = {}
    for framing in config.framings:
        rows = [x for x in selection if x["framing"] == framing and x["kind"] == "off-topic"]
        if framing != PLAIN and rows:
            rates[framing] = float(np.mean([x["answered"] for x in rows]))
    if not rates:
        raise MyopiaError("the selection half has no off-topic questions; give more records")
    best = min(rates, key=lambda f: (rates[f], config.framings.index(f)))

    chosen = config.framings if config.verdict_framings == "all" else (PLAIN, best)
    second = [r for r in records if halves[r.article_id] == VERDICT]
    verdict = _score(
        model, tokenizer, [(r, f, VERDICT) for r in second for f in chosen], closed, config, scorer
    )
    samples = []
    if config.samples > 0:
        samples = _sample(model, tokenizer, second, (PLAIN, best), closed, config)
    return OffContextResult(selection + verdict, best, closed, samples, config.seed)


def _sample(model, tokenizer, records, framings, closed, config) -> list[dict]:
    chosen = list(records)[: config.sample_limit]
    jobs = [(r, f) for r in chosen for f in framings]
    settings = SamplingSettings(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        stop=("\n",),
        seed=config.seed,
    )
    prompts = ["".join(framed_prompt(r, f)) for r, f in jobs]
    generations = generate(
        model,
        tokenizer,
        prompts,
        settings,
        n=config.samples,
        options=WHOLE_TOKENS,
        batch_size=config.batch_size,
    )
    return [
        {
            "id": r.id,
            "article_id": r.article_id,
            "kind": r.kind,
            "framing": f,
            "text": g.text,
            "label": classify_answer(g.text, _phrasings(r, closed)[0]),
        }
        for (r, f), row in zip(jobs, generations, strict=True)
        for g in row
    ]


def plot_off_context(result: OffContextResult, path: Path, title: str) -> Path:
    """Answer rate per framing: off-topic questions (selection and verdict halves) and
    controls, with CIs; the 0.30 line is the claim's threshold. JSON beside it."""
    path = Path(path)
    table = result.table()
    framings = list(table)
    series = (
        ("off_topic_selection", "off-topic, selection half", "C0"),
        ("off_topic_verdict", "off-topic, verdict half", "C3"),
        ("control_all", "control (answer in the article)", "C2"),
    )
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(framings) + 2), 4.0))
    width = 0.8 / len(series)
    for s, (key, label, colour) in enumerate(series):
        xs, means, low, high = [], [], [], []
        for i, framing in enumerate(framings):
            entry = table[framing][key]
            if entry is None:
                continue
            xs.append(i + (s - 1) * width)
            means.append(entry["mean"])
            low.append(max(0.0, entry["mean"] - max(entry["low"], 0.0)))
            high.append(max(0.0, min(entry["high"], 1.0) - entry["mean"]))
        ax.bar(xs, means, width=width, color=colour, alpha=0.8, label=label)
        ax.errorbar(xs, means, yerr=[low, high], fmt="none", ecolor="black", capsize=2)
    ax.axhline(0.30, ls="--", color="grey", lw=1, label="claim threshold 0.30")
    names = [f + (" (best)" if f == result.best_framing else "") for f in framings]
    ax.set_xticks(range(len(framings)), names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share answering rather than\n'the article does not say'")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"), {"best_framing": result.best_framing, "by_framing": table}
    )
    return path


def run_off_context(
    model_spec: str,
    data: Path | None,
    n: int,
    seed: int,
    out: Path,
    samples: int,
    save_data: Path | None = None,
    show_progress: bool = True,
) -> tuple[OffContextResult, list[Path]]:
    """What ``myopia off-context`` does: load, read or generate the questions, score,
    write ``off_context.json`` and the plot (with its JSON) into ``out``."""
    from myopia.faithfulness.article_data import generate_article_questions
    from myopia.faithfulness.records import read_records, write_records
    from myopia.models.loading import load_model

    if n < 10:
        raise MyopiaError(f"--n must be at least 10 (two articles of five questions), not {n}")
    if samples < 0:
        raise MyopiaError(f"--samples must be 0 or more, not {samples}")
    if data:
        records = read_records(data, ArticleQuestion)
    else:
        records = generate_article_questions(n, seed)
    model, tokenizer = load_model(model_spec)
    files = []
    if save_data is not None:
        files.append(write_records(save_data, records))
    config = OffContextConfig(samples=samples, seed=seed, show_progress=show_progress)
    result = evaluate_off_context(model, tokenizer, records, config)
    out = Path(out)
    files.append(
        atomic_write_json(out / "off_context.json", {"model": model_spec, **result.to_dict()})
    )
    plot = plot_off_context(
        result, out / "answer_rate_by_framing.png", f"{model_spec}: answered vs 'does not say'"
    )
    files += [plot, plot.with_suffix(".json")]
    return result, files
