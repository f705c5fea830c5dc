"""``myopia loom``: open (or create) a tree file and serve the loom, or import/export it.

The backend is chosen by the options: ``--openai-url`` with ``--openai-model`` for an
OpenAI-compatible completions server, ``--demo`` for the built-in word sampler (no
model: for trying the interface), else the local engine over ``--model``. Models load
only when a server is started, so ``--export-json`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from myopia.checks import output_file
from myopia.errors import MyopiaError

if TYPE_CHECKING:  # the generation modules import torch: not for `myopia --help`
    from myopia.generation.types import Backend


def make_backend(
    model: str, openai_url: str | None, openai_model: str | None, demo: bool
) -> Backend:
    """The backend the options ask for (imports, and loads a model, only that one)."""
    if demo and openai_url:
        raise MyopiaError("give either --demo or --openai-url, not both")
    if (openai_url is None) != (openai_model is None):
        raise MyopiaError("--openai-url and --openai-model go together: give both")
    if demo:
        from myopia.loom.demo_backend import DemoBackend

        return DemoBackend()
    if openai_url is not None:
        from myopia.generation.openai_backend import OpenAIBackend

        return OpenAIBackend(openai_url, openai_model)
    from myopia.generation.engine import LocalEngine
    from myopia.models.loading import load_model

    loaded_model, tokenizer = load_model(model)
    return LocalEngine(loaded_model, tokenizer, name=model)


def run_loom(
    file: Path,
    model: str = "smollm2",
    openai_url: str | None = None,
    openai_model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    import_json: Path | None = None,
    export_json: Path | None = None,
    export_format: str = "myopia",
    demo: bool = False,
    open_browser: bool = False,
) -> None:
    """Everything ``myopia loom`` does, callable from Python."""
    from myopia.loom import formats
    from myopia.loom.store import LoomStore

    if export_json is not None and import_json is None and not file.exists():
        raise MyopiaError(f"no loom file {file} to export")
    # Everything the user named is checked before the loom file is opened (and so
    # created): a bad import must not leave an empty tree behind.
    tree = formats.read_tree_file(import_json) if import_json is not None else None
    if export_json is not None:
        output_file(export_json, "--export-json")
    output_file(file, "FILE")
    with LoomStore(file) as store:
        if tree is not None:
            store.load(tree)
            print(f"imported {import_json} into {file}")
        if export_json is not None:
            formats.export_json_file(store, export_json, export_format)
            print(f"exported {file} to {export_json} ({export_format} format)")
            return
    from myopia.loom.server import serve

    serve(file, make_backend(model, openai_url, openai_model, demo), host, port, open_browser)


def loom_command(
    file: Annotated[
        Path, typer.Argument(help="The tree's SQLite file; created if it does not exist.")
    ] = Path("loom.sqlite"),
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model to generate with: smollm2, fresh-llama[:k=v,...], "
            "fresh-gpt2[:k=v,...], a local folder or .gguf file, or a hub id.",
        ),
    ] = "smollm2",
    openai_url: Annotated[
        str | None,
        typer.Option(
            help="Generate with an OpenAI-compatible completions server at this base URL "
            "(e.g. http://127.0.0.1:8080/v1 for llama.cpp or vLLM) instead of --model."
        ),
    ] = None,
    openai_model: Annotated[
        str | None, typer.Option(help="The model name to ask the --openai-url server for.")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="Generate with a tiny built-in word sampler (no model), to try it."),
    ] = False,
    host: Annotated[
        str, typer.Option(help="Address to serve on; anything but 127.0.0.1 exposes the tree.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8000,
    open_browser: Annotated[
        bool, typer.Option(help="Open the loom in the default web browser once it is up.")
    ] = False,
    import_json: Annotated[
        Path | None,
        typer.Option(
            help="Fill a new tree FILE from this JSON file (this loom's export or a "
            "socketteer/loom tree) before serving."
        ),
    ] = None,
    export_json: Annotated[
        Path | None,
        typer.Option(help="Write the tree in FILE to this JSON file and exit (no server)."),
    ] = None,
    export_format: Annotated[
        str,
        typer.Option(help="Format of --export-json: myopia (everything) or socketteer."),
    ] = "myopia",
) -> None:
    """Grow, prune and edit a tree of generations by hand in a local web app."""
    run_loom(
        file,
        model,
        openai_url,
        openai_model,
        host,
        port,
        import_json,
        export_json,
        export_format,
        demo,
        open_browser,
    )
