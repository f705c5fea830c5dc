"""The claims of CLAIMS.md, as data: id, wording, measurement, control, verdict rule.

``claims.md`` in this folder is a copy of the project's CLAIMS.md, shipped with the
package so that the report states each rule exactly as it was fixed in advance. Its
table is the one list of claims: the report shows every row, in order, and a claim is
added by adding a row (and an experiment module that registers its sections and rule).
``seed_sentences.jsonl`` quotes, for the claims that have one, the sentence of the seed
discussion the claim comes from; a claim without one is shown without the quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from myopia.errors import MyopiaError
from myopia.faithfulness.records import parse_records, require_text

# Header cells (by their first words) and the Claim field each column fills.
COLUMNS = {
    "id": "id",
    "claim": "claim",
    "measurement": "measurement",
    "control": "control_rule",
    "verdict rule": "rule",
}
REQUIRED_COLUMNS = ("id", "claim", "measurement", "verdict rule")


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    measurement: str
    rule: str
    # The control CLAIMS.md designs (must hold, or the verdict is inconclusive); what it
    # gave in a run is the verdict's ``control`` in results.json.
    control_rule: str = ""
    seed_sentence: str = ""


@dataclass(frozen=True)
class SeedSentence:
    """A line of ``seed_sentences.jsonl``: the seed's sentence behind one claim, verbatim."""

    claim: str
    sentence: str

    def check(self) -> None:
        require_text(self, "claim", "sentence")


def _cells(line: str, n_columns: int = -1) -> list[str]:
    # A rule may itself contain "|" (an absolute value): the rule is the last column, so
    # everything after the last separator of the columns before it belongs to it.
    return [c.strip() for c in line.strip().strip("|").split("|", n_columns - 1)]


def _column_fields(header: list[str]) -> list[str | None]:
    fields = []
    for cell in header:
        name = next((c for c in COLUMNS if cell.lower().startswith(c)), None)
        fields.append(COLUMNS[name] if name else None)
    return fields


def parse_claims_table(markdown: str, quotes: dict[str, str] | None = None) -> list[Claim]:
    """Rows of the ``| id | claim | measurement | control | verdict rule |`` table, in order
    (the control column is optional); columns are found by the header's names. ``quotes``
    gives the seed sentence of each claim that has one."""
    quotes = quotes or {}
    lines = [line for line in markdown.splitlines() if line.lstrip().startswith("|")]
    header = next((line for line in lines if _cells(line)[0].lower() == "id"), None)
    if header is None:
        raise MyopiaError("the claims table has no header row starting with '| id |'")
    header_cells = _cells(header)
    fields = _column_fields(header_cells)
    missing = [c for c in REQUIRED_COLUMNS if COLUMNS[c] not in fields]
    if missing:
        raise MyopiaError(f"the claims table has no {', '.join(missing)} column")
    claims = []
    for line in lines:
        cells = _cells(line, len(header_cells))
        if len(cells) == len(fields) and cells[0].startswith("C") and cells[0][1:].isdigit():
            values = {f: cell for f, cell in zip(fields, cells, strict=True) if f}
            claims.append(Claim(**values, seed_sentence=quotes.get(values["id"], "")))
    return claims


def packaged_claims_table() -> str:
    """The text of the packaged CLAIMS.md (``claims.md``)."""
    return resources.files("myopia.report").joinpath("claims.md").read_text(encoding="utf-8")


def seed_sentences() -> dict[str, str]:
    """The seed's sentence behind each claim that has one, by claim id."""
    text = resources.files("myopia.report").joinpath("seed_sentences.jsonl").read_text("utf-8")
    records = parse_records(text.splitlines(), "myopia/report/seed_sentences.jsonl", SeedSentence)
    return {r.claim: r.sentence for r in records}


@cache
def all_claims() -> tuple[Claim, ...]:
    return tuple(parse_claims_table(packaged_claims_table(), seed_sentences()))
