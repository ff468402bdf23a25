"""Load any causal LM turncoat works with: alias, GGUF file, local folder, Hub id or PEFT adapter.

Device and dtype default to the hardware (CUDA: bf16; CPU: bf16 where it is native, else fp32). A GGUF file is
de-quantised once by transformers and the result kept as safetensors in turncoat's cache, so later loads take
seconds instead of half a minute.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from turncoat.core import paths
from turncoat.core.errors import ChatTemplateMissingError, ModelLoadError
from turncoat.core.io import build_lock
from turncoat.models.specs import ResolvedSpec, resolve_spec

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready to use, with the tokenizer and what was asked for."""

    model: torch.nn.Module
    tokenizer: object
    spec: str
    kind: str
    location: str
    device: torch.device
    dtype: torch.dtype
    upstream: str | None = None
    adapter: str | None = None
    base: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dtype_name(self) -> str:
        """"float32", "bfloat16", ...: how records, reports and judge identities name the dtype."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat as the model sees it, through the tokenizer's chat template (applied exactly once)."""
        if not self.chat_template:
            raise ChatTemplateMissingError(
                f"{self.spec}: the tokenizer has no chat template; pass one with --chat-template FILE_OR_STRING "
                f"(a Jinja template, e.g. ChatML), or use an instruct/chat model"
            )
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"unknown device {device!r}: {error}") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return chosen


CPU_BF16_ENV = "TURNCOAT_CPU_BF16"  # "1" / "0": override the detection of native bf16 on this CPU


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86: AVX512-BF16 or AMX; Arm: the BF16 extension). Without it
    torch emulates bf16, which measured 3-200x slower than fp32 on an AVX2-only EPYC, so `auto` must not pick it."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
        return forced in {"1", "true", "yes", "on"}
    return _hardware_bf16()


@functools.cache
def _hardware_bf16() -> bool:
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    if platform.machine().lower() in {"arm64", "aarch64"}:
        return _arm_bf16()
    return False


def _arm_bf16() -> bool:
    if sys.platform == "darwin":
        import subprocess

        done = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                              check=False)
        return done.stdout.strip() == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("Features") and " bf16" in f" {line.split(':', 1)[-1]}" for line in flags.splitlines())


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """CUDA: bf16 (fp16 where bf16 is unsupported); CPU: bf16 where the CPU has native bf16, else fp32."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load(spec: str = "smollm2-135m", device: str = "auto", dtype: str = "auto", chat_template: str | None = None,
         trust_remote_code: bool = False, trainable: bool = False) -> LoadedModel:
    """Load a model and its tokenizer from any supported spec (see `turncoat.models.specs`). `trainable`: an
    adapter's LoRA weights are left trainable, to continue training it (re-alignment)."""
    resolved = resolve_spec(spec)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    if resolved.kind == "adapter":
        loaded = _load_adapter(resolved, device, dtype, trust_remote_code, trainable)
    else:
        folder = hf_location(resolved)
        model, tokenizer = _load_pretrained(folder, resolved, torch_device, torch_dtype, trust_remote_code)
        loaded = LoadedModel(model=model, tokenizer=tokenizer, spec=spec, kind=resolved.kind,
                             location=resolved.location, device=torch_device, dtype=torch_dtype,
                             upstream=resolved.upstream)
    if chat_template:
        loaded.tokenizer.chat_template = _read_template(chat_template)
    if loaded.tokenizer.pad_token is None:
        loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    loaded.model.eval()
    return loaded


def _read_template(value: str) -> str:
    path = Path(value).expanduser()
    if len(value) < 4096 and "{" not in value and path.is_file():
        return path.read_text(encoding="utf-8")
    if "{" not in value:
        raise ModelLoadError(f"--chat-template {value!r}: neither a file nor a Jinja template")
    return value


def _multi_gpu(device: torch.device) -> bool:
    return device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1


def _load_pretrained(location: str, resolved: ResolvedSpec, device: torch.device, dtype: torch.dtype,
                     trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if _multi_gpu(device):
        kwargs["device_map"] = "auto"  # shard across GPUs with accelerate
    try:
        if resolved.kind == "hub":
            tokenizer, model = _from_hub(location, kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{resolved.spec}: could not load the model: {error}") from error
    if "device_map" not in kwargs:
        model.to(device)
    return model, tokenizer


def _from_hub(model_id: str, kwargs: dict):
    """Prefer the local Hugging Face cache; go online only when allowed, and explain what to do when it fails."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def both(local_only: bool):
        tok = AutoTokenizer.from_pretrained(model_id, local_files_only=local_only,
                                            trust_remote_code=kwargs["trust_remote_code"])
        return tok, AutoModelForCausalLM.from_pretrained(model_id, local_files_only=local_only, **kwargs)

    try:
        return both(local_only=True)
    except OSError as cached_error:
        hint = (f"Point at a local copy instead: a folder with config.json and weights (e.g. made by "
                f"`hf download {model_id} --local-dir DIR` on a machine with network), a .gguf file, or set HF_HOME "
                f"to a Hugging Face cache that holds it.")
        if paths.offline():
            raise ModelLoadError(f"{model_id}: not in the local Hugging Face cache and offline mode is on. "
                                 f"{hint}") from cached_error
        _probe_hub(model_id, hint)
        try:
            return both(local_only=False)
        except Exception as error:  # network errors arrive as several types from huggingface_hub/httpx
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelLoadError(f"{model_id}: not in the local Hugging Face cache, and downloading it failed "
                                 f"({reason[:300]}). {hint}") from error


def hf_location(resolved: ResolvedSpec) -> str:
    """Where transformers (or vLLM) can load a non-adapter spec from: a GGUF's converted folder, else as given."""
    return gguf_to_folder(Path(resolved.location)) if resolved.kind == "gguf" else resolved.location


def _probe_hub(model_id: str, hint: str, timeout: float = 5.0) -> None:
    """One quick request before a download: fail at once with one clear message instead of minutes of retries."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        response = httpx.head(f"{endpoint}/api/models/{model_id}", timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        raise ModelLoadError(f"{model_id}: not in the local Hugging Face cache, and the Hub ({endpoint}) cannot be "
                             f"reached ({type(error).__name__}). {hint}") from None
    if response.status_code in (401, 403, 404):
        raise ModelLoadError(f"{model_id}: not found on the Hub (HTTP {response.status_code}); check the id, or set "
                             f"HF_TOKEN for a gated model. {hint}")


def gguf_to_folder(gguf_path: Path) -> str:
    """De-quantise a GGUF file once into a Hugging Face folder (safetensors) in the cache; return that folder."""
    folder = paths.converted_gguf_dir(gguf_path)
    if (folder / "turncoat_source.json").is_file():
        return str(folder)
    with build_lock(folder.parent / f".{folder.name}.lock"):
        if not (folder / "turncoat_source.json").is_file():
            _convert_gguf(gguf_path, folder)
    return str(folder)


def _convert_gguf(gguf_path: Path, folder: Path) -> None:
    stat = gguf_path.stat()
    key = folder.name
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True))
    except Exception as error:  # gguf parsing errors come as many types
        raise ModelLoadError(f"{gguf_path}: could not load the GGUF file: {error}") from error
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # weights are dense now: drop the GGUF marker so the model saves as plain safetensors
        quantizer.remove_quantization_config(model)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)
        (staging / "turncoat_source.json").write_text(json.dumps({"gguf": str(gguf_path), "size": stat.st_size}))
        os.replace(staging, folder) if not folder.exists() else shutil.rmtree(staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _load_adapter(resolved: ResolvedSpec, device: str, dtype: str, trust_remote_code: bool,
                  trainable: bool = False) -> LoadedModel:
    """A PEFT adapter folder: load its base (any spec turncoat accepts, aliases included), then apply it."""
    from peft import PeftModel

    config = json.loads((Path(resolved.location) / "adapter_config.json").read_text())
    base_spec = config.get("base_model_name_or_path")
    if not base_spec:
        raise ModelLoadError(f"{resolved.location}/adapter_config.json: field base_model_name_or_path is missing")
    base = load(base_spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    try:
        model = PeftModel.from_pretrained(base.model, resolved.location, is_trainable=trainable)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{resolved.spec}: could not apply the adapter to {base_spec}: {error}") from error
    tokenizer = base.tokenizer
    if (Path(resolved.location) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=resolved.spec, kind="adapter",
                       location=resolved.location, device=base.device, dtype=base.dtype, upstream=base.upstream,
                       adapter=resolved.location, base=base_spec)


def describe(loaded: LoadedModel) -> dict:
    """The figures `turncoat models show` prints."""
    model = loaded.model
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    adapter_parameters = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    return {
        "spec": loaded.spec,
        "kind": loaded.kind,
        "location": loaded.location,
        "upstream": loaded.upstream,
        "base": loaded.base,
        "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "model_type": getattr(config, "model_type", None),
        "parameters": parameters,
        "adapter_parameters": adapter_parameters if loaded.adapter else None,
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "attention_heads": getattr(config, "num_attention_heads", None),
        "kv_heads": getattr(config, "num_key_value_heads", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
        "dtype": loaded.dtype_name,
        "device": str(loaded.device),
        "chat_template": loaded.chat_template,
    }
