"""The report: claims, the section registry experiments plug into, rendering, running."""

from myopia.report.context import ReportConfig, ReportContext
from myopia.report.registry import Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import Verdict, compare_interval

__all__ = [
    "Plot",
    "ReportConfig",
    "ReportContext",
    "SectionResult",
    "Verdict",
    "claim_rule",
    "compare_interval",
    "section",
]
