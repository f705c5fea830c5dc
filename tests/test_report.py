"""The report: claims as fixed in CLAIMS.md, sections that plug in, honest verdicts."""

import html as html_module
import json
import re
from pathlib import Path

import pytest

from myopia.report import registry
from myopia.report.claims import SEED_SENTENCES, all_claims, parse_claims_table
from myopia.report.context import ReportConfig
from myopia.report.registry import SectionResult, claim_rule, section
from myopia.report.run import run_report
from myopia.report.verdicts import compare_interval
from myopia.stats import mean_ci

SHARED = Path(__file__).resolve().parents[2] / "shared"
TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2,d_mlp=64"


def test_claims_table_has_every_claim_with_its_rule():
    claims = all_claims()
    assert [c.id for c in claims] == [f"C{i}" for i in range(1, 11)]
    assert all(c.rule and c.measurement and c.seed_sentence for c in claims)
    assert "95% CI above 0 across ≥ 3 seeds" in claims[0].rule


@pytest.mark.skipif(not (SHARED / "CLAIMS.md").exists(), reason="needs ../shared")
def test_packaged_claims_are_the_projects_claims():
    packaged = parse_claims_table((SHARED / "CLAIMS.md").read_text())
    assert tuple(packaged) == all_claims()


@pytest.mark.skipif(not (SHARED / "seed").exists(), reason="needs ../shared/seed")
def test_seed_sentences_are_quoted_verbatim():
    seed = " ".join(p.read_text() for p in (SHARED / "seed").glob("*.txt"))
    seed = re.sub(r"\s+", " ", seed)
    for claim_id, sentence in SEED_SENTENCES.items():
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
    assert saved["claims"] == json.loads(json.dumps(results["claims"], default=str))
    html = (tmp_path / "index.html").read_text()
    claims = {c["id"]: c for c in saved["claims"]}
    assert list(claims) == [f"C{i}" for i in range(1, 11)]
    sections = {sec["key"]: sec for c in saved["claims"] for sec in c["sections"]}
    assert {
        "C1a",
        "C1a-text",
        "C1b",
        "C2",
        "C3",
        "C4",
        "C4-small",
        "C5",
        "C6",
        "C7",
        "C8",
        "C9",
    } <= set(sections)
    assert all(sec["status"] == "measured" for sec in sections.values()), [
        (k, sec["summary"]) for k, sec in sections.items() if sec["status"] != "measured"
    ]
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
    for claim_id in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"):
        measured = {
            sec["key"]: SectionResult(**{k: sec[k] for k in SECTION_FIELDS})
            for sec in claims[claim_id]["sections"]
        }
        recomputed = registry.rule_for(claim_id)(measured)
        assert claims[claim_id]["verdict"] == recomputed.value, claim_id
        assert claim_id == "C4" or recomputed.value != "not run", claim_id
    assert claims["C10"]["verdict"] == "not run" and not claims["C10"]["sections"]
    for claim in all_claims():
        assert claim.rule in html_module.unescape(html)


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
