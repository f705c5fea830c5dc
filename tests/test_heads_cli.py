"""``myopia heads`` and ``myopia attribute`` as a user runs them."""

import json
import re

from test_cli import myopia

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,d_mlp=64"


def test_heads_prints_top_heads_and_writes_heatmaps(tmp_path):
    out = tmp_path / "heads"
    result = myopia(
        "heads", "--model", TINY, "--seq-len", "24", "--batch", "2", "--top", "2", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "previous_token" in result.stdout and "induction" in result.stdout
    saved = json.loads((out / "heads.json").read_text())
    assert (out / "heads.png").exists() and saved


def test_attribute_lists_future_shares_and_writes_plots(tmp_path):
    out = tmp_path / "attr"
    result = myopia(
        "attribute",
        "--model",
        TINY,
        "--seq-len",
        "16",
        "--n-sequences",
        "2",
        "--top",
        "3",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"L[01]\.(?:H\d|MLP) ", result.stdout)) == 3
    assert (out / "future_share_heatmap.png").exists() and (out / "attribution.json").exists()
    bad = myopia("attribute", "--model", TINY, "--method", "guess")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
