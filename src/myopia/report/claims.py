"""The claims of CLAIMS.md, as data: id, wording, measurement, verdict rule, seed sentence.

``claims.md`` in this folder is a copy of the project's CLAIMS.md, shipped with the
package so that the report states each rule exactly as it was fixed in advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

# The sentence of the seed discussion each claim comes from, verbatim.
SEED_SENTENCES = {
    "C1": "autoregressive transformers are incentivised to compute activations at early "
    "sequence positions that will make them better at predicting tokens at later positions.",
    "C2": "Despite P1 having a long term advantage, the model cannot simply choose to bias "
    "P1's probability up as that would worsen the current prediction's loss in expectation.",
    "C3": "It sometimes gives lower loss to make a halfhearted effort at predicting the current "
    "token, so that the model can spend more of its weights and compute on preparing for "
    "later tokens.",
    "C4": "The previous-token head isn't actually that useful for predicting the output at the "
    "current position; it mostly exists to prepare some handy activations so that induction "
    "head can look back from a later position and grab them.",
    "C5": "the model can learn to predict the future beyond the current token in the service of "
    "predicting the current token more accurately.",
    "C6": "The transformer is doing pretty different things when it's e.g. copying a quote from "
    "text that appears earlier in the context vs hallucinating a quote, and it would be "
    "surprising if there's no way to identify which of these it's doing.",
    "C7": "if you give it a prompt with some commands trying to download and view a page, and "
    "the output, it does things like say 'That output is a webpage with a description of X', "
    "when in fact the output is blank or some error or something.",
    "C8": 'the conditional of "the prompt is exactly right and contains the entire content to '
    "be used for answering the question\" isn't likely enough relative to other potential "
    "conditionals",
    "C9": "I expect them to go off-distribution relatively quickly if you just do pure "
    "generation - errors and limitations will accumulate, and it's going to look different "
    "from the text they were trained to predict.",
    "C10": "their interactions with GPT involve a fair degree of human input on long "
    "simulations, either in terms of where to prune / focus, or explicit changes to the "
    "prompt.",
}


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    measurement: str
    rule: str
    seed_sentence: str


def parse_claims_table(markdown: str) -> list[Claim]:
    """Rows of the ``| id | claim | measurement | verdict rule |`` table, in order."""
    claims = []
    for line in markdown.splitlines():
        # A rule may itself contain "|" (an absolute value, as in C2): the rule is the last
        # column, so everything after the third separator belongs to it.
        cells = [c.strip() for c in line.strip().strip("|").split("|", 3)]
        if len(cells) == 4 and cells[0].startswith("C") and cells[0][1:].isdigit():
            claim_id, claim, measurement, rule = cells
            claims.append(
                Claim(claim_id, claim, measurement, rule, SEED_SENTENCES.get(claim_id, ""))
            )
    return claims


@cache
def all_claims() -> tuple[Claim, ...]:
    text = resources.files("myopia.report").joinpath("claims.md").read_text(encoding="utf-8")
    return tuple(parse_claims_table(text))
