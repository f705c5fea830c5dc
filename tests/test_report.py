"""The report: claims as fixed in CLAIMS.md, sections that plug in, honest verdicts."""

import html as html_module
import json
import re
from pathlib import Path

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.faithfulness.records import table_sha256
from myopia.io import json_values
from myopia.report import claims as claims_module
from myopia.report import registry
from myopia.report.claims import all_claims, parse_claims_table, seed_sentences
from myopia.report.context import ReportConfig
from myopia.report.registry import SectionResult, claim_rule, section
from myopia.report.run import run_report
from myopia.report.verdicts import compare_interval
from myopia.stats import mean_ci

SHARED = Path(__file__).resolve().parents[2] / "shared"
TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2,d_mlp=64"


def test_claims_table_has_every_claim_with_its_rule():
    claims = all_claims()
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)) >= 1 and all(re.fullmatch(r"C\d+", i) for i in ids)
    assert all(c.claim and c.measurement and c.rule for c in claims)
    # Version 2's control column is its own field, not glued to the rule.
    assert claims[0].rule.startswith("supported if") and "|" not in claims[0].rule
    assert claims[0].control_rule.startswith("the pre-caching task with no lagged term")
    assert "95% CI above 0 across ≥ 3 seeds" in claims[0].rule
    assert set(seed_sentences()) <= set(ids)  # every quote belongs to a claim


def test_claims_table_columns_are_found_by_name():
    version_1 = (
        "| id | claim | measurement | verdict rule |\n|---|---|---|---|\n"
        "| C1 | x | y | supported if |a - b| > 0 |\n"
    )
    [claim] = parse_claims_table(version_1, {"C1": "seed"})
    assert claim.rule == "supported if |a - b| > 0"  # a "|" in the last column is kept
    assert (claim.control_rule, claim.seed_sentence) == ("", "seed")
    with pytest.raises(MyopiaError, match="no verdict rule column"):
        parse_claims_table("| id | claim | measurement |\n| C1 | x | y |\n")


@pytest.mark.skipif(not (SHARED / "CLAIMS.md").exists(), reason="needs ../shared")
def test_packaged_claims_are_the_projects_claims():
    packaged = parse_claims_table((SHARED / "CLAIMS.md").read_text(), seed_sentences())
    assert tuple(packaged) == all_claims()


@pytest.mark.skipif(not (SHARED / "seed").exists(), reason="needs ../shared/seed")
def test_seed_sentences_are_quoted_verbatim():
    seed = " ".join(p.read_text() for p in (SHARED / "seed").glob("*.txt"))
    seed = re.sub(r"\s+", " ", seed)
    for claim_id, sentence in seed_sentences().items():
        assert sentence in seed, claim_id


def test_interval_rule_gives_all_three_verdicts():
    assert compare_interval(mean_ci([0.5, 0.6, 0.7]), 0.0, "gap").value == "supported"
    assert compare_interval(mean_ci([-0.5, -0.6, -0.7]), 0.0, "gap").value == "refuted"
    assert compare_interval(mean_ci([-0.5, 0.6, 0.1]), 0.0, "gap").value == "inconclusive"


@pytest.fixture()
def isolated_registry(monkeypatch):
    registry.discover()
    monkeypatch.setattr(registry, "_SECTIONS", dict(registry._SECTIONS))
    monkeypatch.setattr(registry, "_RULES", dict(registry._RULES))


SECTION_FIELDS = ("summary", "numbers", "rows", "plots", "notes", "budget", "status")


def test_quick_report_on_a_tiny_model(tmp_path, isolated_registry):
    results = run_report(ReportConfig(model=TINY, out=tmp_path, quick=True, show_progress=False))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"] == json.loads(json.dumps(json_values(results["claims"])))
    html = (tmp_path / "index.html").read_text()
    claims = {c["id"]: c for c in saved["claims"]}
    assert list(claims) == [c.id for c in all_claims()]  # every row of the table, in order
    sections = {sec["key"]: sec for c in saved["claims"] for sec in c["sections"]}
    assert {s.key for s in registry.all_sections()} <= set(sections)
    assert all(sec["status"] == "measured" for sec in sections.values()), [
        (k, sec["summary"]) for k, sec in sections.items() if sec["status"] != "measured"
    ]
    assert {sec["device"] for sec in sections.values()} == {"cpu"}  # this machine has no GPU
    assert saved["data_sha256"]["tables"] == table_sha256()
    text_hashes = saved["data_sha256"]["text"]  # each file of the default corpus
    assert text_hashes and all(re.fullmatch("[0-9a-f]{64}", h) for h in text_hashes.values())
    c1b = sections["C1b"]
    share = c1b["numbers"]["overall"]
    assert 0 < share["mean"] < 1 and share["low"] <= share["mean"] <= share["high"]
    for sec in sections.values():  # every plot exists, with its data, and is in the page
        for plot in sec["plots"]:
            assert (tmp_path / plot["path"]).exists(), plot
            assert (tmp_path / plot["path"]).with_suffix(".json").exists(), plot
            assert plot["path"] in html
    # Verdicts come from the rules applied to this run's numbers, not from constants.
    # (A random tiny model may have no previous-token head for C4 to measure: "not run".)
    for claim_id, claim in claims.items():
        rule = registry.rule_for(claim_id)
        if rule is None or not claim["sections"]:  # nothing measured (C10 is a system)
            assert claim["verdict"] == "not run", claim_id
            continue
        measured = {
            sec["key"]: SectionResult(**{k: sec[k] for k in SECTION_FIELDS})
            for sec in claim["sections"]
        }
        recomputed = rule(measured)
        assert claim["verdict"] == recomputed.value, claim_id
        assert claim["control"] == recomputed.to_dict()["control"], claim_id
        assert claim_id == "C4" or recomputed.value != "not run", claim_id
    for claim in all_claims():
        assert claim.rule in html_module.unescape(html)
        assert claim.control_rule in html_module.unescape(html)


@pytest.fixture()
def throwaway_claim(monkeypatch):
    """A claim that is not in CLAIMS.md: one more row in the claims table, nothing else."""
    row = "| C99 | a planted claim | a planted measurement | a planted control | planted rule |"
    lines = claims_module.packaged_claims_table().splitlines()
    last_row = max(i for i, line in enumerate(lines) if re.match(r"\| C\d+ \|", line))
    table = "\n".join([*lines[: last_row + 1], row, *lines[last_row + 1 :]])
    monkeypatch.setattr(claims_module, "packaged_claims_table", lambda: table)
    all_claims.cache_clear()
    yield "C99"
    all_claims.cache_clear()


def test_a_new_claim_needs_a_table_row_and_one_module(tmp_path, isolated_registry, throwaway_claim):
    """What an experiment module registers for a claim the report has never seen appears
    in the page and in results.json: no central list, template or test names claims."""

    @section("C99-test", claim=throwaway_claim, title="a planted section")
    def planted(ctx):
        return SectionResult(summary="planted effect", numbers={"gap": [0.2, 0.3, 0.25]})

    @claim_rule(throwaway_claim)
    def rule(results):
        return compare_interval(mean_ci(results["C99-test"].numbers["gap"]), 0.0, "gap")

    config = ReportConfig(model=TINY, out=tmp_path, quick=True, only=("C99",), show_progress=False)
    run_report(config)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"][-1]["id"] == "C99"  # after the table's last row, as written
    c99 = saved["claims"][-1]
    assert (c99["claim"], c99["control_rule"], c99["rule"]) == (
        "a planted claim",
        "a planted control",
        "planted rule",
    )
    assert c99["verdict"] == "supported" and c99["sections"][0]["summary"] == "planted effect"
    assert c99["sections"][0]["device"] == "cpu"
    page = html_module.unescape((tmp_path / "index.html").read_text())
    assert 'href="#C99"' in page and "a planted section" in page and "planted rule" in page
    assert all(not c["sections"] for c in saved["claims"] if c["id"] != "C99")


def test_a_new_experiment_plugs_in_with_its_rule(tmp_path, isolated_registry):
    @section("C8-test", claim="C8", title="planted")
    def planted(ctx):
        return SectionResult(summary="planted gap", numbers={"gap": [0.2, 0.3, 0.25]})

    @claim_rule("C8")
    def rule(results):
        return compare_interval(mean_ci(results["C8-test"].numbers["gap"]), 0.0, "gap")

    results = run_report(
        ReportConfig(model=TINY, out=tmp_path, quick=True, only=("C8-test",), show_progress=False)
    )
    c8 = next(c for c in results["claims"] if c["id"] == "C8")
    assert c8["verdict"] == "supported" and c8["sections"][0]["summary"] == "planted gap"
    assert all(not c["sections"] for c in results["claims"] if c["id"] != "C8")


def test_a_failing_section_is_reported_not_hidden(tmp_path, isolated_registry):
    @section("C6-broken", claim="C6", title="broken")
    def broken(ctx):
        raise RuntimeError("planted bug")

    results = run_report(
        ReportConfig(model=TINY, out=tmp_path, quick=True, only=("C6-broken",), show_progress=False)
    )
    c6 = next(c for c in results["claims"] if c["id"] == "C6")
    assert c6["sections"][0]["status"] == "failed"
    assert "planted bug" in c6["sections"][0]["summary"]
    assert c6["verdict"] == "not run"


def _section_devices(tmp_path, claim_id: str) -> dict[str, str]:
    only = (claim_id,)
    config = ReportConfig(model=TINY, out=tmp_path, quick=True, only=only, show_progress=False)
    results = run_report(config)
    claim = next(c for c in results["claims"] if c["id"] == claim_id)
    return {s["key"]: s["device"] for s in claim["sections"]}


def test_each_section_records_its_device(tmp_path, isolated_registry, throwaway_claim):
    """A section that trained elsewhere says so; others get the model's device."""

    @section("C99-elsewhere", claim=throwaway_claim, title="trained on another device")
    def elsewhere(ctx):
        return SectionResult(summary="trained on the third GPU", device="cuda:2")

    @section("C99-model", claim=throwaway_claim, title="uses the report's model")
    def on_model(ctx):
        return SectionResult(summary="measured")

    assert _section_devices(tmp_path, throwaway_claim) == {
        "C99-elsewhere": "cuda:2",
        "C99-model": "cpu",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_section_that_computes_on_the_gpu_is_recorded_there(
    tmp_path, isolated_registry, throwaway_claim
):
    @section("C99-gpu", claim=throwaway_claim, title="trains on the GPU")
    def on_gpu(ctx):
        weights = torch.ones(256, 256, device="cuda", requires_grad=True)
        (weights @ weights).sum().backward()
        return SectionResult(summary="trained")

    @section("C99-cpu", claim=throwaway_claim, title="stays on the CPU")
    def on_cpu(ctx):
        return SectionResult(summary=str(torch.ones(3).sum().item()))

    assert _section_devices(tmp_path, throwaway_claim) == {"C99-cpu": "cpu", "C99-gpu": "cuda:0"}


def test_a_section_of_a_claim_missing_from_the_table_is_refused(tmp_path, isolated_registry):
    @section("C98-orphan", claim="C98", title="no row in the claims table")
    def orphan(ctx):
        return SectionResult(summary="never shown")

    with pytest.raises(MyopiaError, match="claim C98, which the claims table"):
        run_report(ReportConfig(model=TINY, out=tmp_path, quick=True, show_progress=False))


def test_an_unknown_only_name_is_refused(tmp_path, isolated_registry):
    config = ReportConfig(model=TINY, out=tmp_path, quick=True, only=("C1x",), show_progress=False)
    with pytest.raises(MyopiaError, match="--only C1x: no such section or claim") as error:
        run_report(config)
    assert "\n" not in str(error.value)
