"""Run the loom: the app over one tree file, served by uvicorn on one address.

The server binds to 127.0.0.1 by default: the tree is readable and writable by anyone
who can reach the port, so exposing it to a network is an explicit choice (``host``).
"""

from __future__ import annotations

import gc
import threading
import webbrowser
from pathlib import Path

import uvicorn

from myopia.generation.types import Backend
from myopia.loom.app import LOOPBACK_HOSTS, create_app
from myopia.loom.store import LoomStore


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def serve(
    path: str | Path,
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
) -> None:
    """Serve the loom over the tree in ``path`` (created if new) until interrupted."""
    store = LoomStore(path)
    loopback = host in LOOPBACK_HOSTS
    app = create_app(store, backend, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    # Everything made so far (the model, torch, the app) lives as long as the server:
    # frozen, it is left out of the collector's full passes, which otherwise walk it
    # all and stall a request by 100 ms or more now and then (bench/loom_big_tree.py).
    gc.freeze()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    url = url_of(host, port)
    print(f"loom: {store.path} at {url} (generating with {backend.name}); Ctrl-C stops", flush=True)
    if not loopback:
        print(f"loom: bound to {host}: anyone who can reach this port can edit the tree")
    if open_browser:

        def _open_when_up() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.1)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=_open_when_up, daemon=True).start()
    try:
        server.run()
    finally:
        store.close()
