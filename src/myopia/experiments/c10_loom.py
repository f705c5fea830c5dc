"""C10: the loom is a system, not a measurement (CLAIMS.md: "a system, not a verdict").

The report runs nothing for it and gives no verdict; it says where the system is and how
it is checked, so a reader of the report is not left thinking it was forgotten.
"""

from __future__ import annotations

from myopia.report.registry import SectionResult, claim_rule
from myopia.report.verdicts import NOT_RUN, Verdict


@claim_rule("C10")
def c10_rule(results: dict[str, SectionResult]) -> Verdict:
    return Verdict(
        NOT_RUN,
        "a system, not a verdict: `myopia loom` (myopia.loom) serves a tree of generations "
        "to grow, prune, focus and edit by hand; the test suite drives it end to end in a "
        "headless Chromium (tests/test_loom_browser.py)",
    )
