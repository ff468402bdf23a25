"""Watching a direction during fine-tuning (persona vectors' "finetuning shift", as a training callback).

Every K steps the live model answers a fixed probe set (greedy, short) and reads its own answers; the mean projection
at the direction's layer is logged as a z-score against the base model's (its answers to the same probes, read the
same way): z = (mean_live - mean_base) / SD_base. For a LoRA run the base is the same model with the adapter
switched off, so the reference is exact even after a resume; for full fine-tuning it is measured before the first
step and kept in the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from turncoat.activations.directions import Direction
from turncoat.models.loader import LoadedModel
from turncoat.questions.sets import load_questions
from turncoat.sampling import GenerationParams
from turncoat.workflows.persona.score import own_answers, pick_layer, projections, summary


class PersonaMonitor:
    name = "persona"

    def __init__(self, direction: Direction, probes: Sequence[Sequence[dict]], layer: int | None = None,
                 reduce: str = "response", threshold: float = 2.0, max_new_tokens: int = 48, batch_size: int = 16,
                 reference_file: str | Path | None = None, label: str = ""):
        self.direction, self.probes, self.layer = direction, [list(p) for p in probes], pick_layer(direction, layer)
        self.reduce, self.threshold = reduce, threshold
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.reference_file = Path(reference_file) if reference_file else None
        self.label = label
        self.reference: np.ndarray | None = None
        self.alerted = False

    def _live(self, model, tokenizer):
        import torch

        parameter = next(model.parameters())
        return LoadedModel(model=model, tokenizer=tokenizer, spec="training", kind="training", location="",
                           device=parameter.device, dtype=parameter.dtype if parameter.is_floating_point()
                           else torch.float32)

    def values(self, model, tokenizer) -> np.ndarray:
        """Projections of the model's own answers to the probes (or of the probes' prompts, reduce != response)."""

        model.eval()
        live = self._live(model, tokenizer)
        chats = self.probes
        if self.reduce == "response":
            params = GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.0, batch_size=self.batch_size)
            chats = own_answers(live, self.probes, params)
        return projections(live, self.direction, chats, self.layer, self.reduce, self.batch_size)

    def begin(self, model, tokenizer) -> None:
        """Measure (or reload) the base model's projections."""
        if self.reference_file and self.reference_file.exists():
            self.reference = np.asarray(json.loads(self.reference_file.read_text())["projections"])
            return
        base = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
        with base:
            self.reference = self.values(model, tokenizer)
        if self.reference_file:
            self.reference_file.parent.mkdir(parents=True, exist_ok=True)
            self.reference_file.write_text(json.dumps({"layer": self.layer, "reduce": self.reduce,
                                                       "projections": self.reference.tolist()}))

    def __call__(self, model, tokenizer, step: int) -> dict[str, float]:
        if self.reference is None:
            self.begin(model, tokenizer)
        figures = summary(self.values(model, tokenizer), self.reference)
        alert = bool(figures["z"] >= self.threshold)
        if alert and not self.alerted:
            from rich.console import Console

            Console(stderr=True).print(
                f"[bold red]persona monitor{f' ({self.label})' if self.label else ''}: at step {step} the "
                f"answers' projection on the direction is {figures['z']:+.2f} SD from the base model "
                f"(threshold {self.threshold:+.1f}) — the model is moving towards the persona", highlight=False)
        self.alerted = self.alerted or alert
        return {"layer": self.layer, "projection_mean": figures["mean"], "projection_sd": figures["sd"],
                "base_mean": figures["reference_mean"], "base_sd": figures["reference_sd"], "z": figures["z"],
                "threshold": self.threshold, "alert": alert}


def probe_prompts(questions: str = "core", limit: int | None = None) -> list[list[dict]]:
    """The first paraphrase of each question in a question set, as chat prompts."""

    prompts = [p.messages for p in load_questions(questions).prompts(1)]
    return prompts[:limit] if limit else prompts


def persona_monitor(config) -> PersonaMonitor:
    """The monitor a training config asks for (`monitor_*` fields of `turncoat.training.TrainConfig`)."""
    probes = probe_prompts(config.monitor_probes, config.monitor_probe_count)
    out = Path(config.out)
    return PersonaMonitor(Direction.load(config.monitor_direction), probes,
                          layer=config.monitor_layer, threshold=config.monitor_threshold,
                          reference_file=out / "persona_reference.json", label=str(out))
