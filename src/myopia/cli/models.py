"""``myopia model-info``: load a model and describe it."""

from __future__ import annotations

from myopia.cli.app import ModelOption, app, out_console


@app.command("model-info")
def model_info(model: ModelOption = "smollm2") -> None:
    """Load a model (building the SmolLM2 cache on first use) and describe it."""
    from myopia.models.loading import describe_model, load_model

    loaded, _ = load_model(model)
    for key, value in describe_model(loaded).items():
        out_console.print(f"{key}: {value}")
