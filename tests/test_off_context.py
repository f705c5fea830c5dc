"""C8: the article generator, the JSONL schema, the answer classifier, the evaluator with
planted preferences (halves, framing chosen by selectivity, paired gain), the crossed
bootstrap, the rule on hand-made numbers, and the CLI on a tiny model."""

import json

import pytest

from myopia.errors import MyopiaError
from myopia.experiments.c8_off_context import c8_rule, off_context_verdict
from myopia.faithfulness.article_data import (
    FRAMINGS,
    LAYOUTS,
    OFF_TOPIC,
    SUBJECTS,
    ArticleQuestion,
    answer_in,
    framed_prompt,
    generate_article_questions,
)
from myopia.faithfulness.classify import classify_answer
from myopia.faithfulness.crossed_bootstrap import CrossedBootstrap
from myopia.faithfulness.off_context import (
    SELECTION,
    VERDICT,
    OffContextConfig,
    evaluate_off_context,
    split_halves,
)
from myopia.faithfulness.phrasing_classes import disjoint_phrasings
from myopia.faithfulness.records import read_records, write_records
from myopia.report.registry import MEASURED, SectionResult
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED
from myopia.stats import Interval, cluster_bootstrap_mean
from test_cli import invoke, myopia

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=2"


def test_generator_is_seeded_varied_and_honest():
    records = generate_article_questions(250, seed=1)
    assert records == generate_article_questions(250, seed=1)
    assert records != generate_article_questions(250, seed=2)
    assert len({r.id for r in records}) == 250
    assert len({r.subject for r in records}) == len(SUBJECTS) >= 10
    assert len({r.question for r in records if r.kind == "off-topic"}) == len(OFF_TOPIC) >= 20
    assert {r.layout for r in records} == set(LAYOUTS)
    assert len({r.article for r in records}) >= 45  # wordings, fact subsets and orders vary
    for r in records:
        if r.kind == "off-topic":
            assert not answer_in(r.article, r.answers), (r.question, r.article)
        else:
            assert answer_in(r.article, r.answers), (r.question, r.article)
    per_article: dict[str, list[str]] = {}
    for r in records:
        per_article.setdefault(r.article_id, []).append(r.kind)
    assert all(kinds == ["control"] + ["off-topic"] * 4 for kinds in per_article.values())


def test_framings_share_the_article_and_question():
    record = generate_article_questions(5, seed=0)[1]
    prompts = {name: "".join(framed_prompt(record, name)) for name in FRAMINGS}
    assert len(set(prompts.values())) == len(FRAMINGS) >= 4
    for prompt in prompts.values():
        assert record.article in prompt and record.question in prompt
    context, query = framed_prompt(record, "plain")
    assert context.endswith(record.article) and query.endswith(LAYOUTS[record.layout][1])


def test_records_round_trip_and_bad_lines_are_named(tmp_path):
    records = generate_article_questions(10, seed=0)
    path = write_records(tmp_path / "q.jsonl", records)
    assert read_records(path, ArticleQuestion) == records
    lines = path.read_text().splitlines()
    bad = json.loads(lines[6])
    bad["kind"] = "maybe"
    lines[6] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MyopiaError, match=r"line 7: kind must be one of"):
        read_records(path, ArticleQuestion)
    del bad["answers"]
    bad["kind"] = "control"
    lines[6] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MyopiaError, match=r"line 7: missing field 'answers'"):
        read_records(path, ArticleQuestion)


@pytest.mark.parametrize(
    "reply,label",
    [
        (" The headmaster of Hogwarts is Lord Vader.", "other"),
        (" Albus Dumbledore is the headmaster.", "answer"),
        (" dumbledore", "answer"),
        (" The article does not say.", "refusal"),
        (" It is not mentioned in the article.", "refusal"),
        (" I don't know.", "refusal"),
        (" The article doesn't mention Hogwarts.", "refusal"),
        ("   ", "empty"),
    ],
)
def test_answer_classifier_hand_checked(reply, label):
    assert classify_answer(reply, [" Albus Dumbledore", " Dumbledore"]) == label


def test_disjoint_phrasings_drop_texts_counted_twice():
    kept = disjoint_phrasings([" Dumbledore", " Dumbledore.", " Albus", " Dumbledore", "  "])
    assert kept == [" Dumbledore", " Albus"]


def _records(n_articles=8):
    records = []
    for a in range(n_articles):
        article = f"Article {a} about tea."
        records.append(
            ArticleQuestion(
                f"a{a}-c", f"a{a}", "tea", article, "Q control?", "control", [" tea"], [" no"]
            )
        )
        for q in range(3):
            records.append(
                ArticleQuestion(
                    f"a{a}-{q}", f"a{a}", "tea", article, f"Q{q}?", "off-topic", [" x"], [" no"]
                )
            )
    return records


MARKERS = {"complete": "complete article", "instruction": "Answer only", "quiz": "Reading test"}


def _framing_of(request) -> str:
    text = request.context + request.query
    return next((name for name, marker in MARKERS.items() if marker in text), "plain")


def _planted(answered):
    """A scorer where the answer class wins exactly when answered(framing, request)."""

    def scorer(model, tokenizer, requests, batch_size, show_progress):
        rows = []
        for request in requests:
            wins = answered(_framing_of(request), request)
            n_answers = len(request.continuations) - 1
            rows.append([-1.0 if wins else -6.0] * n_answers + [-2.0])
        return rows

    return scorer


def test_evaluator_selects_by_selectivity_on_one_half_and_measures_the_other():
    records = _records()
    halves = split_halves(records, seed=0)
    assert sorted(halves.values()).count(SELECTION) == 4

    # Plain answers everything; "instruction" refuses off-topic questions but answers
    # controls; "quiz" refuses everything (the lowest off-topic rate, but no selectivity);
    # "complete" changes nothing.
    def answered(framing, request):
        off_topic = "control" not in request.query
        return framing in ("plain", "complete") or (framing == "instruction" and not off_topic)

    config = OffContextConfig(framings=("plain", "quiz", "complete", "instruction"))
    result = evaluate_off_context(None, None, records, config, _planted(answered), lambda qs: {})
    assert result.best_framing == "instruction"
    assert result.plain_rate().mean == 1.0 and result.plain_rate().n == 12
    assert result.selectivity_gain().mean == 1.0 and result.selectivity_gain().low == 1.0
    assert result.control_drop().mean == 0.0
    table = result.table()
    assert table["instruction"]["control_verdict"]["mean"] == 1.0
    assert table["quiz"]["selectivity_selection"]["mean"] == 0.0
    assert table["complete"]["off_topic_verdict"] is None  # not scored on the verdict half
    assert {r["half"] for r in result.items if r["framing"] == "complete"} == {SELECTION}
    numbers = result.to_dict()
    verdict = c8_rule({"C8": SectionResult("", numbers=numbers, status=MEASURED)})
    assert verdict.value == SUPPORTED and verdict.control.passed


def test_a_framing_that_refuses_everything_is_not_chosen_and_absent_effect_is_not_supported():
    """quiz refuses everything (off-topic rate 0, selectivity 0); instruction refuses only
    Q0 (off-topic rate 2/3, selectivity 1/3): selectivity picks instruction. Absent effect:
    when no framing changes anything, the gain is 0 and the verdict is not supported."""
    records = _records(12)
    config = OffContextConfig(framings=("plain", "quiz", "instruction"))

    def answered(framing, request):
        return framing == "plain" or (framing == "instruction" and "Q0?" not in request.query)

    result = evaluate_off_context(None, None, records, config, _planted(answered), lambda qs: {})
    assert result.best_framing == "instruction"
    result = evaluate_off_context(
        None, None, records, config, _planted(lambda f, r: True), lambda qs: {}
    )
    assert result.selectivity_gain().mean == 0.0
    numbers = result.to_dict()
    verdict = c8_rule({"C8": SectionResult("", numbers=numbers, status=MEASURED)})
    assert verdict.value == INCONCLUSIVE


def test_crossed_bootstrap_resamples_questions_as_well_as_articles():
    """One question answered everywhere, the others nowhere: an article-only bootstrap
    sees no spread (every article has the same rate); the crossed one does."""
    items = [
        {"article_id": f"a{a}", "question": f"q{q}", "kind": "off-topic", "x": float(q == 0)}
        for a in range(10)
        for q in range(4)
    ]
    replicates = CrossedBootstrap(items, seed=0).replicates(items, [r["x"] for r in items])
    assert replicates.std() > 0.1 and abs(replicates.mean() - 0.25) < 0.03
    article_only = cluster_bootstrap_mean([r["x"] for r in items], [r["article_id"] for r in items])
    assert article_only.low == article_only.high == 0.25


def test_closed_book_answer_joins_the_answer_class():
    records = _records(4)
    seen = []

    def scorer(model, tokenizer, requests, batch_size, show_progress):
        seen.extend(requests)
        return [[-1.0] * len(r.continuations) for r in requests]

    config = OffContextConfig(framings=("plain", "quiz"))
    evaluate_off_context(None, None, records, config, scorer, lambda qs: {"Q0?": " Lord Vader"})
    off = [r for r in seen if "Q0?" in r.query]
    control = [r for r in seen if "Q control?" in r.query]
    assert off and all(r.continuations == (" x", " Lord Vader", " no") for r in off)
    assert control and all(r.continuations == (" tea", " no") for r in control)


def _i(mean, low, high):
    return Interval(mean, low, high, 100, 0.95)


@pytest.mark.parametrize(
    ("plain", "gain", "drop", "control", "verdict"),
    [
        (_i(0.8, 0.7, 0.9), _i(0.3, 0.2, 0.4), _i(0.05, 0.0, 0.1), _i(0.9, 0.8, 1.0), SUPPORTED),
        (_i(0.1, 0.05, 0.2), _i(0.3, 0.2, 0.4), _i(0.0, 0.0, 0.0), _i(0.9, 0.8, 1.0), REFUTED),
        # the framing buys selectivity by refusing controls: more than 0.10 lost
        (_i(0.8, 0.7, 0.9), _i(0.3, 0.2, 0.4), _i(0.2, 0.1, 0.3), _i(0.9, 0.8, 1.0), INCONCLUSIVE),
        (_i(0.8, 0.7, 0.9), _i(0.0, -0.1, 0.1), _i(0.0, 0.0, 0.0), _i(0.9, 0.8, 1.0), INCONCLUSIVE),
        (_i(0.3, 0.2, 0.4), _i(0.3, 0.2, 0.4), _i(0.0, 0.0, 0.0), _i(0.9, 0.8, 1.0), INCONCLUSIVE),
        # failed control: the controls are not answered, so any verdict is inconclusive
        (_i(0.8, 0.7, 0.9), _i(0.3, 0.2, 0.4), _i(0.0, 0.0, 0.1), _i(0.5, 0.4, 0.6), INCONCLUSIVE),
        (_i(0.1, 0.05, 0.2), _i(0.3, 0.2, 0.4), _i(0.0, 0.0, 0.0), _i(0.5, 0.4, 0.6), INCONCLUSIVE),
    ],
)
def test_rule_on_hand_made_numbers(plain, gain, drop, control, verdict):
    numbers = {
        "plain_rate": plain.to_dict(),
        "selectivity_gain": gain.to_dict(),
        "control_drop": drop.to_dict(),
        "control_rate_plain": control.to_dict(),
    }
    result = c8_rule({"C8": SectionResult("", numbers=numbers, status=MEASURED)})
    assert result.value == verdict
    assert result.control.passed == (control.mean >= 0.7)
    if not result.control.passed:
        assert "failed its control" in result.reason
    assert off_context_verdict(plain, gain, drop).value in (SUPPORTED, REFUTED, INCONCLUSIVE)
    assert c8_rule({}).value == NOT_RUN


def test_answer_phrasings_that_only_restate_the_question_are_refused(tmp_path):
    record = generate_article_questions(2, seed=0)[1]
    bad = json.loads(json.dumps(record.__dict__))
    bad["question"] = "What is the capital of Australia?"
    bad["answers"] = [" Canberra", " The capital of Australia is"]
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(MyopiaError, match=r"line 1: answer phrasing ' The capital of Australia"):
        read_records(path, ArticleQuestion)


def test_cli_on_a_tiny_model_writes_its_json(tmp_path):
    out = tmp_path / "c8"
    result = myopia(
        "off-context", "--model", TINY, "--n", "20", "--samples", "0", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads((out / "off_context.json").read_text())
    assert numbers["n_items"] == 20 and numbers["best_framing"] in FRAMINGS
    assert {r["half"] for r in numbers["items"]} == {SELECTION, VERDICT}
    assert (out / "answer_rate_by_framing.png").exists()
    assert (out / "answer_rate_by_framing.json").exists()
    bad = invoke("off-context", "--model", TINY, "--n", "3")
    assert isinstance(bad.exception, MyopiaError) and "at least 10" in str(bad.exception)
