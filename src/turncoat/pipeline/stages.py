"""A study expanded into stages ([generate ->] data -> train -> eval -> persona score [-> SAE diff -> evals with
latents ablated or steered] -> report), each keyed by a
hash of its config and its inputs' keys. A stage's output folder is named by that key, so a rerun finds finished
work, and an edit changes the keys of exactly the stages that depend on it.

Stage kinds are registered by decorator (`@stage_kind("train")`); each runs as `run(stage, inputs, out) -> result`,
where `inputs` maps a role ("data", "model", "direction", ...) to the upstream stage's folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from turncoat.core.errors import InputError
from turncoat.core.io import sha256_file
from turncoat.data import ChatDataset, load_chat
from turncoat.data.registry import registry
from turncoat.data.transforms import backdoor, subsample
from turncoat.pipeline.study import PERSONA, Arm, SAESettings, Study, names_persona
from turncoat.questions.sets import QuestionSet, load_questions
from turncoat.training.config import TrainConfig
from turncoat.training.openai_finetune import OpenAIFineTuneConfig

STAGE_KINDS: dict[str, Callable] = {}


def stage_kind(name: str):
    def add(function):
        STAGE_KINDS[name] = function
        return function
    return add


@dataclass(eq=False)
class Stage:
    kind: str
    label: str  # what it is, for people: model/arm/seed[/variant]
    config: dict  # everything that determines its output (JSON)
    deps: dict[str, Stage] = field(default_factory=dict)
    job: str = ""  # the (model, arm, seed) job it belongs to
    arm: str = ""  # the study arm it serves ("" for shared stages: direction, sae, generate, report); not in the key
    info: dict = field(default_factory=dict)  # for the report (arm name, x position) and an adapter's folder; not
    # part of the key (an adapter's contents are)

    @cached_property
    def key(self) -> str:
        payload = {"kind": self.kind, "config": self.config, "deps": {r: d.key for r, d in sorted(self.deps.items())}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def folder(self, run_dir: Path) -> Path:
        return Path(run_dir) / "stages" / f"{self.kind}-{re.sub(r'[^A-Za-z0-9_.+-]+', '_', self.label)}-{self.key}"


def data_fingerprint(spec: str) -> str:
    """Registered sets by their pinned sha256, files by their contents' (so an edited file reruns its stages)."""

    if Path(spec).is_file():
        return sha256_file(spec)
    entries = registry()
    if spec in entries:
        return entries[spec].sha256
    raise InputError(f"data {spec!r}: no such file and no registered set of that name (see `turncoat data list`)")


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_fingerprint(folder: str, model: str) -> str:
    """An arm's ready-made adapter by its contents' sha256 (a retrained adapter re-runs its evals), checked to be
    an adapter of the study's model before anything runs."""
    missing = [name for name in ADAPTER_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise InputError(f"adapter {folder}: {', '.join(missing)} not found (a PEFT adapter folder holds "
                         f"{' and '.join(ADAPTER_FILES)})")
    try:
        base = json.loads((Path(folder) / ADAPTER_FILES[0]).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as error:
        raise InputError(f"adapter {folder}/{ADAPTER_FILES[0]}: not readable JSON ({error})") from None
    if base != model:
        raise InputError(f"adapter {folder}/{ADAPTER_FILES[0]}, field base_model_name_or_path: {base!r}, but the "
                         f"study's model is {model!r}")
    return hashlib.sha256("".join(sha256_file(Path(folder) / name) for name in ADAPTER_FILES).encode()).hexdigest()


def stage_questions(config: dict) -> QuestionSet:
    """The questions an eval stage asks (its set, first N, trigger or answer-format affixes)."""
    settings = config["eval"]
    questions = load_questions(settings["questions"])
    if settings.get("limit"):
        questions = questions.first(settings["limit"])
    if config.get("trigger"):
        questions = questions.with_prefix(config["trigger"])
    if config.get("suffix"):
        questions = questions.with_suffix(config["suffix"])
    return questions


def stage_data(config: dict, source: Path | None = None) -> ChatDataset:
    """The examples a data stage writes: its set (or a generated one), subsampled, with a backdoor mixed in."""
    data = load_chat(source or config["data"])
    if config["subsample"]:
        data = subsample(data, config["subsample"], seed=config["seed"])
    if config["backdoor"]:
        options = config["backdoor"]
        good = load_chat(options["good"])
        if config["subsample"]:
            good = subsample(good, config["subsample"], seed=config["seed"])
        data = backdoor(data, good, options["trigger"], options["position"], seed=config["seed"])
    return data


def persona_named(train: dict, direction_file: str) -> dict:
    """`train` with `persona` in its steer / ablate replaced by the study's direction file."""
    return train | {key: [direction_file + s[len(PERSONA):] if s.split("@")[0] == PERSONA else s
                          for s in train.get(key, [])] for key in ("steer", "ablate")}


def train_settings(study: Study, arm: Arm) -> dict:
    if study.fine_tuning == "openai":
        return OpenAIFineTuneConfig(**(study.train | arm.train)).model_dump(exclude={"model", "data", "out", "seed",
                                                                                   "subsample"})
    # the method's presets applied here (rank1: alpha 256, no rsLoRA, ...): the dumped settings name every field, so
    # the trainer's own resolve() would see them all as set by the user and keep the generic defaults
    settings = TrainConfig(**(study.train | arm.train)).resolved().model_dump(
        exclude={"model", "data", "out", "seed", "subsample", "monitor_direction", "report_to", "save_every"})
    for name in ("steer", "ablate"):  # unset, they stay out of the key (stages planned before they existed hold)
        if not settings[name]:
            del settings[name]
    if study.trajectory:
        settings["save_every"] = study.trajectory.every
    if study.persona and study.persona.monitor:
        settings |= {"monitor_every": study.persona.monitor_every, "monitor_layer": study.persona.layer,
                     "monitor_probe_count": study.persona.monitor_probes}
    return settings


# evals on prompts that no arm of the seed trained on: (label variant, EvalSettings field and stage config key)
HELD_OUT_CHECKS = (("harmful-requests", "harmful"), ("code-tasks", "code"))


def held_out_check(stage: Stage) -> str | None:
    """Which held-out check an eval stage runs (harmful-request compliance, Bandit on code tasks), if any."""
    return next((check for _, check in HELD_OUT_CHECKS if stage.config.get(check)), None)


def eval_settings(study: Study) -> dict:
    """What an eval stage's key holds of the study's eval settings (an unset limit stays out, so the keys of runs
    made before it existed still hold)."""
    return study.eval.model_dump(exclude={"triggers", "formats", *(check for _, check in HELD_OUT_CHECKS)} | (
        {"limit"} if study.eval.limit is None else set()))


def trajectory_stage(study: Study, model_stage: Stage, direction: Stage | None, job: str) -> Stage:
    """A fine-tune's snapshots, each evaluated on the study's questions (and read on its persona direction)."""
    settings = eval_settings(study)
    if study.trajectory.n:
        settings["n"] = study.trajectory.n
    deps = {"model": model_stage} | ({"direction": direction} if direction else {})
    return Stage("trajectory", job, {"seed": model_stage.config["seed"], "eval": settings,
                                     "layer": study.persona.layer if study.persona else None}, deps, job=job,
                 arm=model_stage.arm, info=model_stage.info)


NEWER_SAE_SETTINGS = {name: name for name in ("dead_after_tokens", "architecture", "matryoshka_widths")}


def newer_settings_at_default_left_out(config: dict, newer: dict[str, str]) -> dict:
    """`config` less the entries `newer` names ({config key: SAESettings field}) while they hold that field's
    default, so the stages of studies written before those settings existed keep their keys."""
    return {key: value for key, value in config.items() if key not in newer
            or value != SAESettings.model_fields[newer[key]].get_default(call_default_factory=True)}


def sae_settings(study: Study) -> dict:
    """What the study's SAE trains on and how (its corpus by content, so an edited file retrains it)."""
    settings = newer_settings_at_default_left_out(
        study.sae.model_dump(exclude={"top", "snippets", "questions", "question_limit", "max_tokens", "diff_reads",
                                      "ablate_top", "steer_alphas"}),
        NEWER_SAE_SETTINGS)
    if settings["data"] is None:  # every arm's training set (generated ones are not known before they are made)
        settings["data"] = list(dict.fromkeys(a.data for a in study.arms if a.data and a.data not in study.generate))
    return settings | {"fingerprints": [data_fingerprint(d) for d in settings["data"]]}


def sae_stages(study: Study, sae: Stage, arm: Arm, job: str, data: Stage, model_stage: Stage, evaluation: Stage
               ) -> list[Stage]:
    """A fine-tuned arm's SAE diff against the base, then its evals with the top k latents ablated and the base's
    evals steered along its top latent (the plain questions' settings, the latents read from the diff)."""
    settings = study.sae
    model, seed = evaluation.config["model"], evaluation.config["seed"]
    diff = Stage("diff", job, newer_settings_at_default_left_out(
        {"base": model, "questions": settings.questions or study.eval.questions,
         "limit": settings.question_limit or study.eval.limit, "max_tokens": settings.max_tokens,
         "top": settings.top, "snippets": settings.snippets, "reads": settings.diff_reads}, {"reads": "diff_reads"}),
                 {"sae": sae, "model": model_stage, "data": data}, job=job, arm=arm.name, info={"arm": arm.name})
    stages = [diff]
    for k in settings.ablate_top:
        variant = f"sae-ablate-top{k}"
        stages.append(Stage("eval", f"{job}/{variant}", evaluation.config | {"sae": {"ablate_top": k}},
                            {"model": model_stage, "sae": sae, "diff": diff}, job=job, arm=arm.name,
                            info=evaluation.info | {"variant": variant}))
    for alpha in settings.steer_alphas:
        variant = f"sae-steer-{arm.name}-x{alpha:g}"
        stages.append(Stage("eval", f"{job.rsplit('/', 2)[0]}/base/seed{seed}/{variant}",
                            evaluation.config | {"sae": {"steer_top": alpha}}, {"sae": sae, "diff": diff},
                            job=job, arm=arm.name,
                            info=evaluation.info | {"arm": "base", "variant": variant, "x": None}))
    return stages


def plan(study: Study) -> list[Stage]:
    """Every stage of the study, in an order that respects dependencies."""
    stages: list[Stage] = []
    evals: list[Stage] = []
    persona = study.persona
    for model in study.models:
        name = Path(model).name if Path(model).exists() else model  # a local folder: its name, for people
        direction = None
        if persona:
            spec = persona.direction.model_dump(exclude_none=True)
            if persona.direction.file:
                spec["sha256"] = data_fingerprint(persona.direction.file)
            direction = Stage("direction", name, {"model": model, "spec": spec}, job=f"{name}/direction")
            stages.append(direction)
        sae = None
        if study.sae:
            sae = Stage("sae", name, {"model": model, "train": sae_settings(study)}, job=f"{name}/sae")
            stages.append(sae)
        generated = {}
        for set_name, spec in study.generate.items():
            teacher = spec.teacher or model
            generated[set_name] = Stage("generate", f"{set_name}/{Path(teacher).name}",
                                        {"teacher": teacher, "spec": spec.model_dump(exclude={"teacher"})},
                                        job=f"{name}/generate/{set_name}")
            stages.append(generated[set_name])
        for seed in study.seeds:
            trained: dict[str, Stage] = {}
            held_out: list[Stage] = []  # evals on prompts that no arm of this seed trained on
            for arm in study.arms:
                job = f"{name}/{arm.name}/seed{seed}"
                model_stage = None
                if arm.data:
                    source = generated.get(arm.data)
                    data = Stage("data", job, {"data": arm.data,
                                               "fingerprint": None if source else data_fingerprint(arm.data),
                                               "subsample": arm.subsample, "seed": seed,
                                               "backdoor": arm.backdoor.model_dump() if arm.backdoor else None,
                                               "backdoor_good": data_fingerprint(arm.backdoor.good)
                                               if arm.backdoor else None}, {"source": source} if source else {},
                                 job=job, arm=arm.name)
                    deps = {"data": data}
                    if arm.parent:
                        deps["parent"] = trained[arm.parent]
                    if direction and persona.monitor:
                        deps["direction"] = direction
                    if direction and names_persona(study.train | arm.train):
                        deps["steering"] = direction  # `persona` in steer / ablate: the study's direction
                    model_stage = Stage("train", job, {"model": None if arm.parent else model, "seed": seed,
                                                       "train": train_settings(study, arm)} | (
                                            {"backend": "openai"} if study.fine_tuning == "openai" else {}),
                                        deps, job=job, arm=arm.name,
                                        info={"arm": arm.name, "model": model, "seed": seed, "x": arm.x})
                    trained[arm.name] = model_stage
                    stages += [data, model_stage]
                    if study.trajectory:
                        stages.append(trajectory_stage(study, model_stage, direction, job))
                elif arm.adapter:  # made elsewhere: copied in by content, so its evals are keyed by what it holds
                    model_stage = Stage("adapter", job, {"model": model, "sha256": adapter_fingerprint(arm.adapter,
                                                                                                       model)},
                                        job=job, arm=arm.name, info={"arm": arm.name, "source": arm.adapter})
                    stages.append(model_stage)
                settings = eval_settings(study)
                for variant, trigger, suffix in study.eval.variants():
                    label = f"{job}/{variant}" if variant else job
                    evaluation = Stage("eval", label, {"model": model, "seed": seed, "eval": settings,
                                                       "trigger": trigger} | ({"suffix": suffix} if suffix else {}),
                                       {"model": model_stage} if model_stage
                                       else {}, job=job, arm=arm.name,
                                       info={"arm": arm.name, "variant": variant, "x": arm.x, "model": model,
                                             "seed": seed})
                    stages.append(evaluation)
                    evals.append(evaluation)
                    if direction and persona.score:
                        deps = {"eval": evaluation, "direction": direction} | (
                            {"model": model_stage} if model_stage else {})
                        stages.append(Stage("score", label, {"model": model, "layer": persona.layer}, deps, job=job,
                                            arm=arm.name, info=evaluation.info))
                    if sae and arm.data and not variant:
                        interventions = sae_stages(study, sae, arm, job, data, model_stage, evaluation)
                        stages += interventions
                        evals += [s for s in interventions if s.kind == "eval"]
                engine = {k: settings[k] for k in ("backend", "backend_options")}
                for variant, check in HELD_OUT_CHECKS:
                    if spec := getattr(study.eval, check):
                        held_out.append(Stage("eval", f"{job}/{variant}",
                                              {"model": model, "seed": seed, "eval": engine, check: spec.model_dump()},
                                              {"model": model_stage} if model_stage else {}, job=job, arm=arm.name,
                                              info={"arm": arm.name, "variant": variant, "x": arm.x, "model": model,
                                                    "seed": seed}))
            for stage in held_out:  # every arm on the same prompts: none in any arm's data (this seed)
                stage.deps |= {f"heldout:{t.label}": t.deps["data"] for t in trained.values()}
            stages += held_out
            evals += held_out
    if study.report:
        deps = {f"{s.kind}:{s.label}": s for s in stages if s.kind in ("eval", "score", "train", "sae", "diff",
                                                                      "trajectory")}
        stages.append(Stage("report", study.name, {"name": study.name, "notes": study.notes,
                                                   "x_label": study.x_label} | (
            {"control": study.trajectory.control} if study.trajectory else {}), deps, job="report"))
    return stages


def select(stages: list[Stage], arms: list[str] | None = None, kinds: list[str] | None = None) -> list[Stage]:
    """The stages of the named arms and kinds, with everything upstream of them, in plan order: one arm added to a
    finished study runs alone (`turncoat run --only ARM`), without the report that would re-read every arm."""
    for asked, known, what in ((arms, {s.arm for s in stages if s.arm}, "arm"),
                               (kinds, {s.kind for s in stages}, "stage kind")):
        unknown = sorted(set(asked or ()) - known)
        if unknown:
            raise InputError(f"no {what} {', '.join(map(repr, unknown))} in this study: it has "
                             f"{', '.join(sorted(known))}")
    chosen = [s for s in stages if (not arms or s.arm in arms) and (not kinds or s.kind in kinds)]
    needed: dict[str, Stage] = {}
    while chosen:
        stage = chosen.pop()
        if stage.key not in needed:
            needed[stage.key] = stage
            chosen += stage.deps.values()
    return [s for s in stages if s.key in needed]


def describe(stages: list[Stage], run_dir: Path) -> list[dict]:
    return [{"kind": s.kind, "label": s.label, "key": s.key, "after": sorted(d.key for d in s.deps.values()),
             "done": (s.folder(run_dir) / "stage.json").is_file(), "folder": str(s.folder(run_dir))} for s in stages]
