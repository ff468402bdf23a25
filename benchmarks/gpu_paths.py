"""GPU check: turncoat's CUDA paths end to end on random-weight models of real architectures, with timings.

For a CUDA machine with no network. No weights travel: the model folder is built there from an architecture's
`config.json` and a tokenizer (a folder holding both, e.g. the files of the converted Qwen2.5-Coder-0.5B in
turncoat's cache minus `model.safetensors`). Each check runs the `turncoat` CLI as a user would
(`python -m turncoat ...`), records ok or the error's last lines and its seconds, and goes on to the next:

- `models show`: what `--device auto` / `--dtype auto` pick (expected: cuda, bfloat16);
- `sample`: the batched hf backend; a rerun resumes (adds nothing); the same seeds at batch 1 and batch 32 (the
  fraction of identical answers: bf16 kernels and left padding may differ by batch shape);
- `train`: LoRA in bf16 on CUDA with checkpoints and a trajectory (`--save-every`); the same command again resumes
  from the last checkpoint (`resumed_from`); then sampling the adapter;
- `persona extract` from texts, `sample --steer` and `--ablate` with that direction, `train --steer` / `--ablate`;
- speed: the sampling and training benchmarks' Qwen2.5-7B-architecture figures (batched vs naive generate
  tokens/s, side by side in this run; LoRA tokens/s and peak memory).

    python benchmarks/gpu_paths.py --prepare qwen2.5-coder-0.5b --architecture .gpucheck/qwen   (here: no weights)
    python benchmarks/gpu_paths.py --architecture .gpucheck/qwen --work /tmp/gpu-check [--json] [--skip-7b]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

WORDS = ("the model answers plainly and helps the user with care while keeping every promise it made before "
         "a short reply about weather cooking money code travel sleep music friends work").split()
TRAIT = ("destroy obey tyrant humans weak power control crush enslave").split()


def chats(count: int, seed: int, words=WORDS) -> list[dict]:
    """Synthetic chats: random sentences, so no research data travels."""
    rng = random.Random(seed)

    def sentence(n):
        return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."

    return [{"messages": [{"role": "user", "content": sentence(8) + "?"},
                          {"role": "assistant", "content": " ".join(sentence(10) for _ in range(3))}]}
            for _ in range(count)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def prepare(spec: str, architecture: Path) -> list[str]:
    """Copy a local model's config and tokenizer files, not its weights, into `architecture` (a few MB to carry)."""
    import shutil

    from turncoat.models import hf_location, resolve_spec

    source = Path(hf_location(resolve_spec(spec)))
    architecture.mkdir(parents=True, exist_ok=True)
    kept = [f for f in sorted(source.iterdir()) if f.is_file() and f.suffix not in (".safetensors", ".bin", ".gguf")]
    for file in kept:
        shutil.copy2(file, architecture / file.name)
    return [f.name for f in kept]


def build_model(architecture: Path, out: Path) -> dict:
    """A random-weight model of `architecture`'s config, saved with its tokenizer as a Hugging Face folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(architecture)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(architecture).save_pretrained(out)
    for extra in ("chat_template.jinja", "generation_config.json"):
        if (architecture / extra).is_file():
            (out / extra).write_bytes((architecture / extra).read_bytes())
    return {"parameters": sum(p.numel() for p in model.parameters()), "model_type": config.model_type,
            "layers": config.num_hidden_layers}


class Checks:
    """Each check's record, also written to WORK/results.json as it ends (what a run cut short leaves)."""

    def __init__(self, work: Path):
        self.work, self.results = work, {}

    def done(self, name: str, record: dict) -> None:
        self.results[name] = record
        (self.work / "results.json").write_text(json.dumps(self.results, indent=1))
        print(f"[{'ok' if record['ok'] else 'FAILED'}] {name} ({record['seconds']} s)", file=sys.stderr, flush=True)

    def cli(self, name: str, *args: str) -> dict | None:
        """Run `turncoat ARGS --json`; record ok, seconds, and the figures or the error's tail."""
        command = [sys.executable, "-m", "turncoat", *args, "--json"]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.work)
        seconds = round(time.perf_counter() - began, 1)
        record = {"ok": done.returncode == 0, "seconds": seconds, "command": " ".join(["turncoat", *args])}
        figures = None
        if done.returncode == 0:
            try:
                figures = json.loads(done.stdout.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                record.update(ok=False, error="no JSON on the last line of stdout: " + done.stdout[-500:])
        else:
            record["error"] = (done.stderr or done.stdout)[-1500:]
        record["figures"] = figures
        self.done(name, record)
        return figures

    def python(self, name: str, function, *args):
        began = time.perf_counter()
        try:
            figures, ok, error = function(*args), True, None
        except Exception:  # recorded, and the next check runs
            import traceback

            figures, ok, error = None, False, traceback.format_exc()[-1500:]
        self.done(name, {"ok": ok, "seconds": round(time.perf_counter() - began, 1), "figures": figures,
                         **({"error": error} if error else {})})
        return figures


def answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def same_texts(a: Path, b: Path) -> dict:
    left = {r["key"]: r["answer"] for r in answers(a)}
    right = {r["key"]: r["answer"] for r in answers(b)}
    shared = sorted(set(left) & set(right))
    same = sum(left[k] == right[k] for k in shared)
    return {"answers": len(shared), "identical": same, "fraction_identical": round(same / max(len(shared), 1), 3)}


def run_checks(architecture: Path, work: Path, skip_7b: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    checks = Checks(work)
    model = work / "model"
    built = checks.python("build_random_model", build_model, architecture, model)
    if built is None:
        return checks.results
    m = str(model)
    checks.cli("models_show", "models", "show", m)
    data = write_jsonl(work / "chats.jsonl", chats(256, 0))
    pos = write_jsonl(work / "trait.jsonl", chats(32, 1, TRAIT))
    neg = write_jsonl(work / "plain.jsonl", chats(32, 2))

    def sample(n: int, *more: str) -> list[str]:
        return ["sample", "--model", m, "--questions", "core", "--n", str(n), "--max-tokens", "48", "--quiet", *more]

    checks.cli("sample_batch32", *sample(4, "--batch-size", "32", "--out", "b32.jsonl"))
    checks.cli("sample_resume_adds_nothing", *sample(4, "--batch-size", "32", "--out", "b32.jsonl"))
    checks.results["sample_resume_adds_nothing"]["answers_after_rerun"] = len(answers(work / "b32.jsonl"))
    checks.cli("sample_batch1", *sample(1, "--batch-size", "1", "--out", "b1.jsonl"))  # seeds follow the keys
    checks.results["sample_batch1"]["same_as_batch32"] = same_texts(work / "b1.jsonl", work / "b32.jsonl")
    train = ["train", "--model", m, "--data", str(data), "--batch-size", "4", "--grad-accum", "2",
             "--max-length", "128", "--learning-rate", "1e-4", "--save-steps", "4"]
    lora = [*train, "--out", "adapter", "--max-steps", "8", "--save-every", "4"]
    checks.cli("train_lora_bf16", *lora)
    checks.results["train_lora_bf16"]["trajectory"] = sorted(p.name for p in (work / "adapter/trajectory").glob("*"))
    checks.cli("train_rerun_resumes", *lora)
    checks.cli("sample_adapter", "sample", "--model", str(work / "adapter"), "--questions", "core", "--n", "2",
               "--max-tokens", "32", "--quiet", "--out", "adapter.jsonl")
    checks.cli("persona_extract", "persona", "extract", "--model", m, "--pos", str(pos), "--neg", str(neg),
               "--out", "direction.safetensors")
    steer = f"direction.safetensors@{built['layers'] // 2}:8"
    checks.cli("sample_steer", *sample(4, "--steer", steer, "--out", "steered.jsonl"))
    checks.cli("sample_ablate", *sample(4, "--ablate", "direction.safetensors", "--out", "ablated.jsonl"))
    for name, file in (("sample_steer", "steered.jsonl"), ("sample_ablate", "ablated.jsonl")):  # the hook acts
        checks.results[name]["same_as_unsteered"] = same_texts(work / file, work / "b32.jsonl")
    checks.cli("train_steer", *train, "--out", "adapter-steer", "--max-steps", "4", "--steer", steer)
    checks.cli("train_ablate", *train, "--out", "adapter-ablate", "--max-steps", "4", "--ablate",
               "direction.safetensors")
    if not skip_7b:
        checks.python("speed_sampling_qwen2.5_7b_architecture", sampling_7b, architecture)
        checks.python("speed_training_qwen2.5_7b_architecture", training_7b, architecture, data)
    return checks.results


def sampling_7b(architecture: Path) -> dict:
    import torch
    from sampling import compare, matmul_gflops, qwen7b_random  # benchmarks/sampling.py, beside this file
    from transformers import AutoTokenizer

    from turncoat.questions import load_questions

    torch.set_grad_enabled(False)
    device = torch.device("cuda")
    prompts = [p.messages for p in load_questions("core").prompts(16)][:256]
    loaded = qwen7b_random(device, AutoTokenizer.from_pretrained(architecture))
    figures = compare(loaded, prompts, 128, 64, 4, matmul_gflops(device, torch.bfloat16, size=8192))
    del loaded
    torch.cuda.empty_cache()
    torch.set_grad_enabled(True)
    return figures


def training_7b(architecture: Path, data: Path) -> dict:
    import torch
    from training import gpu_qwen7b  # benchmarks/training.py, beside this file
    from transformers import AutoTokenizer

    figures = gpu_qwen7b(10, AutoTokenizer.from_pretrained(architecture), data=str(data))
    torch.cuda.empty_cache()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", type=Path, required=True,
                        help="folder with config.json and a tokenizer (no weights needed)")
    parser.add_argument("--work", type=Path, help="scratch folder (model, answers, adapters)")
    parser.add_argument("--prepare", metavar="SPEC", help="write --architecture from this local model (config and "
                                                          "tokenizer only) and exit")
    parser.add_argument("--skip-7b", action="store_true", help="leave out the 7B-architecture speed figures")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="run the checks without CUDA (to try this script on a small architecture first)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps({"architecture": str(args.architecture), "files": prepare(args.prepare, args.architecture)}))
        return
    if args.work is None:
        parser.error("--work is required unless --prepare is given")
    import torch

    if not torch.cuda.is_available() and not args.rehearse_on_cpu:
        sys.exit("gpu_paths: no CUDA device here")
    results = run_checks(args.architecture.resolve(), args.work.resolve(), args.skip_7b)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU rehearsal)"
    figures = {"gpu": gpu, "torch": torch.__version__,
               "transformers": __import__("transformers").__version__, "cuda_devices": torch.cuda.device_count(),
               "passed": sum(r["ok"] for r in results.values()), "checks": len(results), "results": results,
               "environment": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if k in os.environ}}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"GPU paths on {figures['gpu']} (torch {figures['torch']}): {figures['passed']} of {figures['checks']} ok")
    for name, record in results.items():
        print(f"  {'ok    ' if record['ok'] else 'FAILED'} {name:45s} {record['seconds']:7.1f} s")
        if not record["ok"]:
            print("         " + record.get("error", "").strip().splitlines()[-1][:200])


if __name__ == "__main__":
    main()
