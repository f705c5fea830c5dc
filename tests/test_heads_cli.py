"""``myopia heads``, ``attribute``, ``previous-token-heads`` and ``lookahead`` as a user runs
them: one real process each, the rest in-process."""

import json
import re

from myopia.errors import MyopiaError
from test_cli import invoke, myopia

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
        "attribute", "--model", TINY, "--seq-len", "16", "--n-sequences", "2", "--top", "3",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"L[01]\.(?:H\d|MLP) ", result.stdout)) == 3
    assert (out / "future_share_heatmap.png").exists() and (out / "attribution.json").exists()
    bad = invoke("attribute", "--model", TINY, "--method", "guess")
    assert isinstance(bad.exception, MyopiaError) and "guess" in str(bad.exception)


def test_previous_token_heads_measures_the_kept_heads(tmp_path):
    out = tmp_path / "c4"
    args = ["--n", "8", "--batch", "3", "--text-len", "12", "--text-batch", "2", "--top-k", "2"]
    # Threshold 0: a random model has no previous-token head, so keep the two best.
    result = myopia("previous-token-heads", "--model", TINY, *args, "--threshold", "0",
                    "--planted", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The known answers, on the hand-built models.
    assert "feeds an induction head: supported" in result.stdout
    assert "serves only its own position: refuted" in result.stdout
    assert set(json.loads((out / "planted_control.json").read_text())) == {
        "feeds_induction",
        "current_only",
    }
    saved = json.loads((out / "previous_token_heads.json").read_text())
    assert len(saved["heads"]) == 2 and saved["config"]["n"] == 8
    # Every measurement of the kept heads sits beside its layer-matched random-set null.
    for measure in ("future_share", "ablation_effect"):
        null = saved[measure]
        assert len(null["null"]) == null["n_null"] == 100 and 0 < null["p"] <= 1
    assert {"current_per_position", "future_per_position"} <= set(saved["text_effects"])
    # Nothing above an unreachable threshold: said, and nothing measured.
    none = invoke("previous-token-heads", "--model", TINY, *args, "--threshold", "2",
                  "--out", str(tmp_path / "none"))  # fmt: skip
    assert none.exit_code == 0 and "no head" in none.output
    # Every head kept: no layer has other heads to draw a matched null from. Said, not a
    # crash, and the heads are still saved.
    every = ["--n", "8", "--batch", "3", "--text-len", "12", "--text-batch", "2"]
    whole = invoke("previous-token-heads", "--model", TINY, *every, "--threshold", "0",
                   "--top-k", "100", "--out", str(tmp_path / "all"))  # fmt: skip
    assert whole.exit_code == 0, whole.output
    assert "not compared" in whole.output and "matched null" in whole.output
    assert json.loads((tmp_path / "all" / "previous_token_heads.json").read_text())["no_null"]


def test_lookahead_scores_probes_on_held_out_text(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"{i} the cat sat on the mat by the door." for i in range(600)))
    out = tmp_path / "c5"
    result = myopia(
        "lookahead", "--model", TINY, "--text", str(text), "--seq-len", "16", "--n-fit", "6",
        "--n-val", "3", "--n-eval", "4", "--n-classes", "16", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "lookahead.json").read_text())
    assert saved["sizes"]["held_out_windows"] == 4 and saved["layers"] == [0, 1, 2]
    assert set(saved["selected"]) == {"1", "2", "3"}
    assert (out / "accuracy_by_layer.png").exists()
