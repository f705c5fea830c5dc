"""What ``myopia drift`` runs: C9's measurement on any model and text, with plots and JSON."""

from __future__ import annotations

from pathlib import Path

from myopia.data.text import load_corpus, token_chunks
from myopia.drift.measure import DriftConfig, DriftResult, measure_drift
from myopia.drift.plots import plot_nll_by_position, plot_probe_accuracy
from myopia.io import atomic_write_json
from myopia.models.loading import load_model


def run_drift(
    model_spec: str,
    config: DriftConfig,
    out: Path,
    text: Path | None = None,
    show_progress: bool = True,
) -> tuple[DriftResult, list[Path]]:
    """Measure drift on ``n_prompts`` windows of the text's eval split; write ``drift.json``,
    the NLL-by-position and probe-accuracy plots (each with its JSON) into ``out``."""
    config.check()
    model, tokenizer = load_model(model_spec)
    windows = token_chunks(
        load_corpus(text),
        tokenizer,
        config.prompt_len + config.continuation_len,
        config.n_prompts,
        seed=config.seed,
    )
    result = measure_drift(model.eval(), windows, config, show_progress=show_progress)
    out = Path(out)
    files = [
        atomic_write_json(out / "drift.json", {"model": model_spec, **result.to_dict()}),
        plot_nll_by_position(result, out / "nll_by_position.png", model_spec),
        plot_probe_accuracy(result, out / "probe_accuracy.png", model_spec),
    ]
    return result, files
