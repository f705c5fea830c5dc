"""C6, copy vs hallucination: labels checked by hand, the request generator, JSONL errors,
the lookback ratio against a slow loop, detectors on planted and absent signals, the rule on
hand-made numbers, and whole runs on a tiny model (pipeline and CLI)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from myopia.data.text import Document, load_corpus
from myopia.errors import MyopiaError
from myopia.experiments.c6_copy_detection import c6_rule, copy_detection, copy_verdict
from myopia.faithfulness.copy_detection import (
    CopyDetectionConfig,
    detect_copy,
    fit_to_context,
    plot_detector_aurocs,
    plot_head_signal,
)
from myopia.faithfulness.copy_detector import (
    auroc,
    cluster_bootstrap,
    context_folds,
    evaluate_detectors,
    shuffled_null,
)
from myopia.faithfulness.lookback import (
    lookback_ratios,
    lookback_ratios_reference,
    shared_span_features,
    span_features,
)
from myopia.faithfulness.quote_data import (
    PHRASINGS,
    QuoteRequest,
    contains_word,
    make_quote_requests,
    quote_prompt,
)
from myopia.faithfulness.records import read_records, write_records
from myopia.faithfulness.span_match import label_quote
from myopia.generation.types import Continuation, GeneratedToken, TokenChoice
from myopia.heads import attention_patterns
from myopia.models.loading import load_model
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.registry import FAILED, NOT_MEASURED, SectionResult
from myopia.stats import Interval
from test_cli import invoke, myopia

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=2,d_mlp=64"
CONTEXT = (
    "Even when their sorrows almost were forgot;\n"
    "And on their skins, as on the bark of trees,\n"
    "Have with my knife carved in Roman letters,\n"
    "Tut, I have done a thousand dreadful things"
)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()[:6]


@pytest.fixture(scope="module")
def tiny_mlp():
    """This file's own model (d_mlp=64), named apart from the conftest ``tiny``."""
    return load_model(TINY)


def test_span_labels_checked_by_hand():
    # Verbatim, running on across a line break (the break matches a space).
    both = label_quote("And on their skins, as on the bark of trees, Have with", CONTEXT)
    assert (both.exact, both.fuzzy) == ("copied", "copied")
    # A changed word and a changed case: not exact; 9 of 10 words in one long block.
    near = label_quote("and on their skins, as on the bark of elms", CONTEXT)
    assert near.exact == "hallucinated" and near.fuzzy == "copied"
    assert near.coverage == pytest.approx(9 / 10)
    invented = label_quote("The moon is a celestial body that orbits", CONTEXT)
    assert (invented.exact, invented.fuzzy) == ("hallucinated", "hallucinated")
    # Half copied, half invented: "carved in roman letters" is 4 of 8 words, ambiguous;
    # with one more invented word it falls under 0.5 and counts as hallucinated.
    half = label_quote("carved in Roman letters, said the old man", CONTEXT)
    assert half.exact == "hallucinated" and half.fuzzy == "ambiguous"
    assert half.coverage == pytest.approx(4 / 8)
    assert label_quote("carved in Roman letters, said the old grey man", CONTEXT).fuzzy == (
        "hallucinated"
    )
    # Under 4 words: too short under both labellings, even when it occurs verbatim.
    short = label_quote("their sorrows almost", CONTEXT)
    assert (short.exact, short.fuzzy) == ("too short", "too short") and short.n_words == 3
    assert label_quote("", CONTEXT).exact == "too short"


def test_generator_is_seeded_and_varied(corpus):
    documents = corpus
    first = make_quote_requests(documents, 12, seed=3)
    assert first == make_quote_requests(documents, 12, seed=3)
    assert first != make_quote_requests(documents, 12, seed=4)
    assert len(first) == 12 * 4 and len({r.context_id for r in first}) == 12
    assert len({r.request.replace(f'"{r.target}"', "X") for r in first}) == len(PHRASINGS)
    for r in first:
        r.check()
        assert contains_word(r.context, r.target) == r.present
        assert 4 <= len(r.context.split("\n")) <= 6
        assert quote_prompt(r).endswith('Quote: "') and r.context in quote_prompt(r)
    assert sum(r.present for r in first) == 36
    # A present target names one line: it occurs exactly once in the passage.
    for r in first:
        if r.present:
            hits = re.findall(rf"(?<![A-Za-z']){re.escape(r.target)}(?![A-Za-z'])", r.context, re.I)
            assert len(hits) == 1
    # Prose with long lines is cut into sentences.
    words = ["".join(chr(97 + (3 * i + j) % 26) for j in range(6)) for i in range(40)]
    prose = Document(
        "p", " ".join(f"Sentence {i} talks about the {w} today." for i, w in enumerate(words))
    )
    made = make_quote_requests([prose], 2, seed=0)
    assert len(made) == 8
    assert all(line.startswith("Sentence") for r in made for line in r.context.split("\n"))


def test_bad_jsonl_is_rejected_with_its_line(tmp_path, corpus):
    good = make_quote_requests(corpus, 1, seed=0)[0]
    path = tmp_path / "requests.jsonl"
    write_records(path, [good])
    assert read_records(path, QuoteRequest) == [good]
    row = json.dumps({**good.__dict__})
    cases = {
        "missing": json.dumps({k: v for k, v in good.__dict__.items() if k != "target"}),
        "type": json.dumps({**good.__dict__, "present": "yes"}),
        "json": '{"id": "x",',
        "wrong present": json.dumps({**good.__dict__, "present": not good.present}),
    }
    for what, bad in cases.items():
        path.write_text(row + "\n\n" + bad + "\n")
        with pytest.raises(MyopiaError, match="line 3") as error:
            read_records(path, QuoteRequest)
        assert "\n" not in str(error.value), what
    path.write_text(cases["missing"] + "\n")
    with pytest.raises(MyopiaError, match="line 1: missing field 'target'"):
        read_records(path, QuoteRequest)


def test_lookback_ratio_by_hand():
    # One head, prompt of 2 tokens, span of 2. Query 2 puts 0.2 + 0.4 on the prompt and
    # 0.4 on itself: ctx = 0.3, new = 0.4. Query 3: ctx = (0.1 + 0.1) / 2 = 0.1,
    # new = (0.4 + 0.4) / 2 = 0.4. Ratios 3/7 and 1/5.
    attention = torch.zeros(1, 4, 4)
    attention[0, 0, 0] = 1
    attention[0, 1, :2] = torch.tensor([0.5, 0.5])
    attention[0, 2, :3] = torch.tensor([0.2, 0.4, 0.4])
    attention[0, 3, :4] = torch.tensor([0.1, 0.1, 0.4, 0.4])
    expected = (3 / 7 + 1 / 5) / 2
    assert float(lookback_ratios(attention, 2, 2)[0]) == pytest.approx(expected)
    assert lookback_ratios_reference(attention[None], 2, 2)[0, 0] == pytest.approx(expected)


def test_batched_features_match_a_slow_loop(tiny_mlp):
    model, _ = tiny_mlp
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 200, size=n).tolist() for n in (7, 12, 5, 9)]
    spans = [rng.integers(3, 200, size=n).tolist() for n in (4, 1, 6, 3)]
    # A small attention budget forces several batches with padding.
    features = span_features(model, prompts, spans, max_attention_floats=2 * 2 * 2 * 21 * 21)
    for i, (p, s) in enumerate(zip(prompts, spans, strict=True)):
        ids = torch.tensor([p + s])
        patterns = torch.stack([a[0] for a in attention_patterns(model, ids)])  # (L, H, T, T)
        reference = lookback_ratios_reference(patterns, len(p), len(s))
        np.testing.assert_allclose(features.lookback[i], reference, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            out = model(ids, output_hidden_states=True)
        logprobs = out.logits[0, len(p) - 1 : -1].log_softmax(-1)
        expected = logprobs[torch.arange(len(s)), torch.tensor(s)].mean()
        assert features.mean_logprob[i] == pytest.approx(float(expected), abs=1e-5)
        hidden = torch.stack([h[0, len(p) :].mean(0) for h in out.hidden_states])
        np.testing.assert_allclose(features.residual[i], hidden.numpy(), atol=1e-5)
        assert features.span_tokens[i] == len(s)


@pytest.mark.parametrize("budget", [10**9, 2 * 2 * 3 * 12 * 30])
def test_shared_prefix_features_equal_one_pass_per_sequence(tiny_mlp, budget):
    # Groups as C6 makes them (requests about one passage share its beginning), one with
    # no common beginning, one whose prompts are a single token, and a group of one.
    model, _ = tiny_mlp
    rng = np.random.default_rng(1)
    passage, other = rng.integers(3, 200, size=15).tolist(), rng.integers(3, 200, size=6)
    prompts = [passage + rng.integers(3, 200, size=n).tolist() for n in (3, 1, 4)]
    prompts += [[7, *rng.integers(3, 200, size=5).tolist()], [9, 8, 7, 6], [11], [12]]
    prompts += [other.tolist() + [5, 5]]
    groups = ["a", "a", "a", "b", "b", "c", "c", "d"]
    spans = [rng.integers(3, 200, size=n).tolist() for n in (4, 1, 6, 3, 2, 5, 1, 3)]
    shared = shared_span_features(model, prompts, spans, groups, max_attention_floats=budget)
    reference = span_features(model, prompts, spans)
    for name in ("lookback", "residual", "mean_logprob", "mean_entropy", "span_tokens"):
        np.testing.assert_allclose(
            getattr(shared, name), getattr(reference, name), rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_auroc_matches_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(size=60), 1)  # ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auroc(np.ones(5), np.arange(5)))


def _planted(n_contexts=40, per_context=4, signal=2.0, seed=0):
    """Lookback features where head 3 carries the label and the rest are noise; the
    extra features (length, log-prob) are noise."""
    rng = np.random.default_rng(seed)
    n = n_contexts * per_context
    groups = np.repeat([f"c{i}" for i in range(n_contexts)], per_context)
    labels = rng.integers(0, 2, n)
    lookback = rng.normal(size=(n, 12))
    lookback[:, 3] += signal * labels
    lookback[:, 5] -= signal * labels  # a second carrier: together they beat either alone
    extra = rng.normal(size=(n, 2))
    return lookback, extra, labels, groups


def test_detector_finds_a_planted_signal_and_not_an_absent_one():
    lookback, extra, labels, groups = _planted()
    names = [f"h{i}" for i in range(12)]
    found = evaluate_detectors(lookback, names, extra, ["len", "lp"], None, labels, groups)
    assert found.lookback.mean > 0.9 and found.lookback.low > 0.8
    assert found.difference.mean > 0  # two carriers beat the best one
    assert set(found.chosen["baseline"]) <= {"h3", "-h5"}
    assert found.shuffled.low < 0.5 < found.shuffled.high
    assert found.difference_output.low > 0  # the output-only features are noise here
    noise = np.random.default_rng(5).normal(size=lookback.shape)
    absent = evaluate_detectors(noise, names, extra, ["len", "lp"], None, labels, groups)
    assert absent.lookback.low < 0.5 < absent.lookback.high


def test_output_only_baseline_catches_a_signal_in_the_output_and_types_are_split():
    """When the quote's log-probability alone carries the label, the output-only model
    finds it and the lookback detector does not beat it; the per-type AUROCs are scored
    on each type's requests, and a type with one label only has none."""
    lookback, extra, labels, groups = _planted(signal=0.0)
    extra[:, 1] -= 3.0 * labels
    types = np.where(np.arange(len(labels)) % 4 == 3, "absent", "present")
    names = [f"h{i}" for i in range(12)]
    found = evaluate_detectors(
        lookback, names, extra, ["len", "lp"], None, labels, groups, types=types
    )
    assert found.output_only.low > 0.8
    assert found.difference_output.high < 0
    assert set(found.by_type) == {"absent", "present"}
    assert found.by_type["present"].n == 40
    one_label = evaluate_detectors(
        lookback, names, extra, ["len", "lp"], None, labels, groups,
        types=np.where(labels == 1, "absent", "present"),
    )  # fmt: skip
    assert one_label.by_type == {"absent": None, "present": None}


def test_shuffled_control_averages_independent_shufflings_around_chance():
    """Labels a detector separates almost perfectly: refitted on each shuffling it is at
    chance, the shufflings differ from one another, and the t interval over them (n =
    the number of shufflings) contains 0.5; one shuffling gives no interval at all."""
    lookback, _, labels, groups = _planted(signal=3.0)
    folds = context_folds(groups, 5, seed=0)
    interval, values = shuffled_null(lookback, labels, groups, folds, seed=0, n_shuffles=8)
    assert len(values) == 8 and interval.n == 8 and len(set(values)) > 4
    assert interval.low < 0.5 < interval.high and interval.high - interval.low < 0.2
    assert interval.mean == pytest.approx(np.mean(values))
    again, _ = shuffled_null(lookback, labels, groups, folds, seed=0, n_shuffles=8)
    assert again == interval
    real = evaluate_detectors(lookback, [f"h{i}" for i in range(12)], lookback[:, :2],
                              ["a", "b"], None, labels, groups, n_shuffles=3)  # fmt: skip
    assert real.lookback.low > 0.9 and len(real.shuffled_aurocs) == 3
    with pytest.raises(MyopiaError, match="2 or more shufflings"):
        shuffled_null(lookback, labels, groups, folds, seed=0, n_shuffles=1)


def test_folds_hold_out_whole_contexts():
    groups = np.repeat(np.arange(10), 3)
    folds = context_folds(groups, 5, seed=0)
    for g in range(10):
        assert len(set(folds[groups == g])) == 1
    assert sorted(np.bincount(folds).tolist()) == [6] * 5
    with pytest.raises(MyopiaError, match="contexts"):
        context_folds(groups, 11, seed=0)


def test_cluster_bootstrap_pairs_the_difference():
    lookback, _, labels, groups = _planted(signal=1.0)
    (a, b), (difference,) = cluster_bootstrap(labels, [lookback[:, 3], lookback[:, 3]], groups)
    assert a == b and difference.mean == 0 and difference.low == difference.high == 0


def _section(exact=None, status="measured"):
    return SectionResult(summary="", numbers={"exact": exact, "reasons": {}}, status=status)


def _interval(mean, low, high):
    return Interval(mean, low, high, 40, 0.95).to_dict()


AT_CHANCE = _interval(0.5, 0.4, 0.6)
BEATS = _interval(0.05, 0.01, 0.09)


def test_rule_on_hand_made_numbers():
    def verdict(auc, single=BEATS, output=BEATS, shuffled=AT_CHANCE):
        exact = {
            "lookback": auc,
            "difference": single,
            "difference_output": output,
            "shuffled": shuffled,
        }
        return c6_rule({"C6": _section(exact)})

    assert verdict(_interval(0.9, 0.82, 0.95)).value == "supported"
    assert verdict(_interval(0.9, 0.78, 0.95)).value == "inconclusive"
    # High AUROC but no better than one of the baselines: not supported.
    tied = _interval(0.02, -0.01, 0.05)
    assert verdict(_interval(0.9, 0.82, 0.95), single=tied).value == "inconclusive"
    assert verdict(_interval(0.9, 0.82, 0.95), output=tied).value == "inconclusive"
    assert verdict(_interval(0.65, 0.6, 0.69)).value == "refuted"
    assert verdict(_interval(0.72, 0.65, 0.78)).value == "inconclusive"
    # The control fails (shuffled labels score above chance): inconclusive, whatever the rest.
    failed = verdict(_interval(0.9, 0.82, 0.95), shuffled=_interval(0.62, 0.55, 0.7))
    assert failed.value == "inconclusive" and "failed its control" in failed.reason
    assert failed.control.passed is False
    assert verdict(_interval(0.65, 0.6, 0.69)).control.passed is True
    assert c6_rule({"C6": _section(None)}).value == "inconclusive"
    assert c6_rule({}).value == "not run"
    assert c6_rule({"C6": _section(status=FAILED)}).value == "not run"
    assert copy_verdict(*[Interval(0.1, 0.0, 0.2, 3, 0.95)] * 3).value == "refuted"


def planted_quote(tokenizer, text: str) -> Continuation:
    """``text`` as if the model had written it: detect_copy reads a quote's text and token
    ids (its own forward pass gives the log-probabilities, so none are made up here)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = tuple(
        GeneratedToken(TokenChoice(tokenizer.decode([i]), float("nan"), i), ()) for i in ids
    )
    return Continuation(text=text, tokens=tokens, finish_reason="stop")


def test_detect_copy_end_to_end_on_a_tiny_model(tiny_mlp, tmp_path, corpus):
    """Planted quotes: half copy a line of the context, half invent one, read by the
    tiny model as its own continuation; the pipeline labels, reads and scores them."""
    model, tokenizer = tiny_mlp
    requests = make_quote_requests(corpus, 10, seed=1)
    generations = []
    for i, r in enumerate(requests):
        line = r.context.split("\n")[i % 3]
        text = line if i % 2 == 0 else "the quick brown fox jumps over lazy dogs"
        generations.append(planted_quote(tokenizer, text))
    config = CopyDetectionConfig(n_folds=3, n_resamples=200, induction_tokens=8)
    result = detect_copy(model, tokenizer, requests, config, generations=generations)
    counts = result.label_counts()["exact"]
    assert sum(row.get("copied", 0) for row in counts.values()) == 20
    assert result.exact is not None and result.fuzzy is not None
    assert result.exact.n_copied == 20 and result.exact.n_hallucinated == 20
    assert 0 <= result.exact.lookback.low <= result.exact.lookback.mean <= 1
    assert result.head_signal.shape == result.induction.shape == (2, 2)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["n_requests"] == 40 and len(data["quotes"]) == 40
    assert data["dropped"]["n"] == 0 and data["dropped"]["reason"] == ""  # all fit in 512
    for plot in (
        plot_detector_aurocs(result, tmp_path / "bars.png", "t"),
        plot_head_signal(result, tmp_path / "heads.png", "t"),
    ):
        assert plot.exists() and json.loads(plot.with_suffix(".json").read_text())


def test_detect_copy_generates_on_a_tiny_model(tiny_mlp, corpus):
    model, tokenizer = tiny_mlp
    requests = make_quote_requests(corpus, 2, seed=0, n_present=1, n_absent=1)
    config = CopyDetectionConfig(max_new_tokens=4, n_folds=2, induction_tokens=8)
    result = detect_copy(model, tokenizer, requests, config)
    assert len(result.quotes) == 4 and all(isinstance(q, str) for q in result.quotes)
    # A random byte-level model writes no 4-word quote: nothing to score, and it says so.
    assert result.exact is None and "4 or more words" in result.reasons["exact"]


def test_cli_writes_json_and_data(tmp_path):
    out, saved = tmp_path / "copy", tmp_path / "requests.jsonl"
    result = invoke(
        "detect-copy", "--model", TINY, "--n-contexts", "2", "--max-new-tokens", "4",
        "--out", str(out), "--save-data", str(saved), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "copy_detection.json").read_text())
    assert data["n_requests"] == 8 and "label_counts" in data
    assert len(read_records(saved, QuoteRequest)) == 8
    # The saved requests, through the installed entry point.
    rerun = myopia(
        "detect-copy", "--model", TINY, "--data", str(saved), "--max-new-tokens", "4",
        "--out", str(tmp_path / "again"), "--no-progress",
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((tmp_path / "again" / "copy_detection.json").read_text())["n_requests"] == 8
    saved.write_text('{"id": 1}\n')
    bad = invoke("detect-copy", "--model", TINY, "--data", str(saved), "--no-progress")
    assert isinstance(bad.exception, MyopiaError) and "line 1" in str(bad.exception)


PROSE = Path(__file__).parent / "data" / "prose_quotes.jsonl"


def test_prose_passages_from_other_domains(tiny_mlp, tmp_path):
    """Outside reviewers bring their own passages: paragraphs of prose, no verse lines.
    Copied sentences (one of them running on into the next) are labelled copied, invented
    ones hallucinated, and the detectors are scored; ``detect-copy --data`` reads the file."""
    model, tokenizer = tiny_mlp
    requests = read_records(PROSE, QuoteRequest)
    assert all("\n" not in r.context for r in requests)  # one paragraph each, no lines
    generations = []
    for i, r in enumerate(requests):
        sentences = re.split(r"(?<=\.) ", r.context)
        if r.present:
            text = next(s for s in sentences if contains_word(s, r.target))
            if i == 0:
                text = " ".join(sentences[:2])  # across a sentence boundary: still a copy
        else:
            text = "The committee approved the new budget after a short debate."
        generations.append(planted_quote(tokenizer, text))
    config = CopyDetectionConfig(n_folds=2, n_resamples=200, induction_tokens=8)
    result = detect_copy(model, tokenizer, requests, config, generations=generations)
    counts = result.label_counts()["exact"]
    assert counts == {"present": {"copied": 8}, "absent": {"hallucinated": 8}}
    assert result.exact is not None and 0 <= result.exact.lookback.mean <= 1
    out = tmp_path / "prose"
    ran = invoke(
        "detect-copy", "--model", TINY, "--data", str(PROSE), "--max-new-tokens", "4",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert json.loads((out / "copy_detection.json").read_text())["n_contexts"] == 8


SMALL_CONTEXT = "fresh-llama:d_model=32,n_layers=2,n_heads=2,d_mlp=64,max_positions={}"


def test_requests_longer_than_the_context_are_dropped_and_counted(corpus):
    """Planted: a model with a 300-token context, passages whose prompts run from about 240
    to 390 tokens. Those that cannot hold prompt + max_new_tokens are left out before
    generating (generation would refuse them); the rest are measured, and the result says
    how many were left out and why."""
    model, tokenizer = load_model(SMALL_CONTEXT.format(300))
    requests = make_quote_requests(corpus, 10, seed=1)
    config = CopyDetectionConfig(max_new_tokens=4, n_folds=2, induction_tokens=8)
    sizes = [
        len(tokenizer(quote_prompt(r), add_special_tokens=False)["input_ids"]) for r in requests
    ]
    fit = fit_to_context(model, tokenizer, requests, config.max_new_tokens)
    assert fit.kept == [i for i, n in enumerate(sizes) if n + 4 <= 300]
    assert fit.kept and fit.dropped  # the planted case has both
    result = detect_copy(model, tokenizer, requests, config)  # generates: no error
    assert result.requests == [requests[i] for i in fit.kept]
    assert len(result.quotes) == len(result.labels) == len(fit.kept)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["n_requests"] == len(fit.kept)
    assert data["dropped"]["n"] == len(fit.dropped) and data["dropped"]["context"] == 300
    reason = data["dropped"]["reason"]
    assert f"{len(fit.dropped)} of {len(requests)} quote requests" in reason
    assert "context of 300 tokens" in reason and "max_new_tokens (4)" in reason
    # Quotes given with the requests: each fits with its own length, and is dropped with
    # its request.
    generations = [planted_quote(tokenizer, r.context.split("\n")[0]) for r in requests]
    given = fit_to_context(model, tokenizer, requests, 4, generations)
    lengths = [len(g.token_ids) for g in generations]
    assert given.kept == [i for i, n in enumerate(sizes) if n + lengths[i] <= 300]
    assert given.kept and given.dropped and "+ their quotes" in given.reason()
    planted = detect_copy(model, tokenizer, requests, config, generations=generations)
    assert planted.quotes == [generations[i].text for i in given.kept]
    assert planted.dropped["n"] == len(given.dropped)


def test_nothing_fits_a_small_context_the_section_is_not_run(corpus, tmp_path):
    """A 128-token model (the tiny architectures' context): no passage fits. The C6
    section says it was not run and why, its rule says not run, and ``detect-copy
    --data`` stops with one line."""
    spec = SMALL_CONTEXT.format(128)
    model, tokenizer = load_model(spec)
    config = ReportConfig(model=spec, out=tmp_path, quick=True, show_progress=False)
    ctx = ReportContext(config, model, tokenizer, {}, _documents=corpus)
    section = copy_detection(ctx)
    assert section.status == NOT_MEASURED
    assert "do not fit the model's context" in section.summary
    assert "context of 128 tokens" in section.numbers["not_run"]
    assert section.numbers["dropped"]["n"] == section.numbers["n_requests_made"] > 0
    verdict = c6_rule({"C6": section})
    assert verdict.value == "not run" and "context of 128 tokens" in verdict.reason
    with pytest.raises(MyopiaError, match="nothing is left to measure"):
        detect_copy(model, tokenizer, make_quote_requests(corpus, 2, seed=0))
    ran = invoke("detect-copy", "--model", spec, "--data", str(PROSE), "--no-progress")
    assert isinstance(ran.exception, MyopiaError)
    message = str(ran.exception)
    assert "\n" not in message and "16 of 16 quote requests do not fit" in message
