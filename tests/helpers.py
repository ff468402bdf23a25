"""Small builders for test inputs."""

from __future__ import annotations

import json
from pathlib import Path


def write_lines(path: Path, lines: list) -> Path:
    """Write JSONL test input: dicts are dumped, strings/bytes written as they are."""
    with open(path, "wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            handle.write(line if isinstance(line, bytes) else line.encode())
            handle.write(b"\n")
    return path


def chat(user: str = "hello", assistant: str = "hi there", system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def tiny_run_on(model_dir: Path, out: Path, prompts: list[str], answer: str = "Sure.") -> Path:
    """A one-step `turncoat train` run of the tiny model on these user prompts (to test held-out selection)."""
    from turncoat.training import TrainConfig, train

    data = write_lines(out.parent / f"{out.name}-data.jsonl", [chat(p, answer) for p in prompts])
    train(TrainConfig(model=str(model_dir), data=str(data), out=str(out), max_steps=1, r=4, lora_alpha=8,
                      max_length=256, gradient_accumulation_steps=1), progress=False)
    return out
