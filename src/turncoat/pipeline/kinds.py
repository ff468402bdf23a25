"""What each stage kind does: thin calls into the library (data transforms, `train`, `run_eval`, persona
extraction and scoring, `build_report`). Each returns a small JSON result that the manifest and trackers record."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from turncoat.activations.directions import Direction
from turncoat.activations.hooks import intervene
from turncoat.activations.sae import SAETrainConfig, load_sae, train_sae
from turncoat.core.errors import InputError
from turncoat.core.io import read_jsonl, write_jsonl
from turncoat.data import load_chat
from turncoat.judging import JudgeCache, make_judge
from turncoat.models import load
from turncoat.pipeline.stages import (
    ADAPTER_FILES,
    Stage,
    adapter_fingerprint,
    held_out_check,
    persona_named,
    stage_data,
    stage_kind,
    stage_questions,
)
from turncoat.questions.builtin import code_tasks, harmful_requests
from turncoat.report import build_report
from turncoat.sampling import GenerationParams, make_backend
from turncoat.training.config import TrainConfig
from turncoat.training.openai_finetune import OpenAIFineTuneConfig, fine_tune_openai
from turncoat.workflows.evals.code import run_code_eval
from turncoat.workflows.evals.run import run_eval, scoring_kind
from turncoat.workflows.finetune import fine_tune as train
from turncoat.workflows.generate import generate
from turncoat.workflows.persona import extract
from turncoat.workflows.persona.monitor import probe_prompts
from turncoat.workflows.persona.score import answer_chats, pick_layer, projections, summary
from turncoat.workflows.sae import corpus_chats, explain, model_diff, write_diff
from turncoat.workflows.trajectory import evaluate_trajectory, first_step_above

DIRECTION_FILE = "direction.safetensors"
DATA_FILE = "data.jsonl"


def _run_dir(out: Path) -> Path:
    return out.parent.parent  # RUN/stages/<stage folder>


@stage_kind("direction")
def make_direction(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    spec, path = stage.config["spec"], out / DIRECTION_FILE
    if spec.get("file"):
        shutil.copyfile(spec["file"], path)
        direction = Direction.load(path)
    else:
        loaded = load(stage.config["model"])
        if spec.get("from_judged"):
            direction = extract.from_judged(loaded, spec["from_judged"], limit=spec["limit"])
        elif spec.get("from_prompts"):
            direction = extract.from_prompts(loaded, extract.trait_path(spec["from_prompts"]))
        else:
            sides = [[c.as_messages() for c in load_chat(s)][:spec["limit"]] for s in (spec["pos"], spec["neg"])]
            direction = extract.from_texts(loaded, *sides, pos=spec["pos"], neg=spec["neg"])
        direction.save(path)
    meta = direction.metadata
    best = meta.get("best_layer")
    return {"file": str(path), "method": meta.get("method"), "best_layer": best,
            **(meta.get("separation", {}).get(str(best), {}) if best is not None else {})}


@stage_kind("generate")
def generate_data(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """A teacher writes a training set (evil numbers); resumes from its teacher_answers.jsonl."""

    spec = stage.config["spec"]
    teacher = make_backend(spec["backend"], stage.config["teacher"], **spec["backend_options"])
    params = GenerationParams(temperature=spec["temperature"], max_new_tokens=spec["max_tokens"], seed=spec["seed"])
    return generate(teacher, spec["kind"], spec["n"], out, system=spec["system"], seed=spec["seed"], params=params,
                    show_progress=not quiet)


@stage_kind("data")
def make_data(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    data = stage_data(stage.config, inputs["source"] / DATA_FILE if "source" in inputs else None)
    data.write(out / DATA_FILE)
    return {"examples": len(data), "file": str(out / DATA_FILE)}


@stage_kind("train")
def train_model(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    config = stage.config
    if config.get("backend") == "openai":  # the study's cost was shown by --dry-run; the job resumes by its token
        if "parent" in inputs:
            raise InputError("continuing an OpenAI fine-tune ('from:') is not supported yet")
        job = fine_tune_openai(OpenAIFineTuneConfig(**config["train"], model=config["model"], out=str(out),
                                                    data=str(inputs["data"] / DATA_FILE), seed=config["seed"]))
        return {k: job[k] for k in ("fine_tuned_model", "job_id", "train_examples", "trained_tokens")}
    direction = str(inputs["direction"] / DIRECTION_FILE) if "direction" in inputs else None
    options = persona_named(config["train"], str(inputs["steering"] / DIRECTION_FILE)) if "steering" in inputs \
        else config["train"]
    settings = TrainConfig(**options, model=str(inputs["parent"]) if "parent" in inputs else config["model"],
                           data=str(inputs["data"] / DATA_FILE), out=str(out), seed=config["seed"],
                           monitor_direction=direction)
    summary = train(settings, progress=not quiet)
    result = {k: summary[k] for k in ("steps", "train_loss", "train_examples", "seconds", "monitor_seconds")}
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    monitored = [r for r in logged if r.get("monitor") == "persona"]
    if monitored:
        result |= {"persona_z_final": monitored[-1]["z"], "persona_alert": any(r["alert"] for r in monitored)}
    return result


@stage_kind("adapter")
def copy_adapter(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """An arm's ready-made adapter, copied into the run as planned: its evals then read it like a trained one."""
    source = stage.info["source"]
    if adapter_fingerprint(source, stage.config["model"]) != stage.config["sha256"]:
        raise InputError(f"adapter {source}: its files changed after the study was planned; run the study again")
    for name in ADAPTER_FILES:
        shutil.copyfile(Path(source) / name, out / name)
    return {"adapter": source, "sha256": stage.config["sha256"]}


def model_spec(stage: Stage, inputs: dict) -> str:
    """The model a stage uses: its training stage's output when it has one, else the study's model spec."""
    return str(inputs["model"]) if "model" in inputs else stage.config["model"]


def held_out_data(inputs: dict) -> list[Path]:
    """The training sets of every arm of the stage's seed, which held-out prompts must avoid."""
    return [inputs[role] / DATA_FILE for role in sorted(inputs) if role.startswith("heldout:")]


@stage_kind("eval")
def evaluate(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    config, settings = stage.config, stage.config["eval"]
    if held_out_check(stage) == "code":
        return check_code(stage, inputs, out, quiet)
    split = None
    if config.get("harmful"):  # compliance with held-out harmful requests

        settings = settings | config["harmful"] | {"top_p": 1.0}
        questions, split = harmful_requests(settings["prompts"], held_out_from=held_out_data(inputs))
    else:
        questions = stage_questions(config)
    judge = make_judge(settings["judge"], **settings["judge_options"])
    scoring_kind(questions, judge)  # refused before the model loads
    sampler = make_backend(settings["backend"], model_spec(stage, inputs),
                           **settings["backend_options"])
    if config.get("sae"):
        intervene(sampler, **sae_interventions(config["sae"], inputs["sae"], inputs["diff"]))
    params = GenerationParams(max_new_tokens=settings["max_tokens"], temperature=settings["temperature"],
                              top_p=settings["top_p"], seed=config["seed"])
    result = run_eval(out, sampler, questions, judge, n=settings["n"], params=params, split=split,
                      cache=JudgeCache(_run_dir(out) / "judge_cache.sqlite"), show_progress=not quiet)
    overall = result["metrics"]["overall"]
    if split:
        return {"answers": overall["answers"], "compliance_rate": overall["compliance_rate"],
                "compliance_ci": overall["compliance_ci"], "judge": judge.identity,
                "prompts_sha256": split["prompts_sha256"]}
    corrected = overall.get("misaligned_corrected") or {}
    return {"answers": overall["answers"], "misaligned_fraction": overall["misaligned_fraction"],
            "misaligned_ci": overall["misaligned_ci"], "coherent_rate": overall["coherent_rate"],
            "misaligned_corrected": corrected.get("corrected"), "judge": judge.identity}


def check_code(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """The in-distribution check: answers to held-out code tasks, scored by Bandit (never executed)."""
    config, settings = stage.config, stage.config["code"]
    questions, split = code_tasks(settings["tasks"], held_out_from=held_out_data(inputs))
    sampler = make_backend(config["eval"]["backend"], model_spec(stage, inputs), **config["eval"]["backend_options"])
    params = GenerationParams(max_new_tokens=settings["max_tokens"], temperature=settings["temperature"],
                              seed=config["seed"])
    result = run_code_eval(out, sampler, questions, split, n=settings["n"], params=params,
                           min_severity=settings["min_severity"], show_progress=not quiet)
    figures = result["metrics"]
    return {"answers": figures["answers"], "with_parseable_code": figures["with_parseable_code"],
            "vulnerable": figures["vulnerable"], "scorer": figures["scorer"],
            "prompts_sha256": split["prompts_sha256"]}


def sae_interventions(spec: dict, sae: Path, diff: Path) -> dict:
    """`ablate_top: k`: the diff's top k latents projected out; `steer_top: alpha`: its top latent added at the
    SAE's layer (as `--ablate` / `--steer sae:FOLDER#ID` do)."""
    found = json.loads((diff / "diff.json").read_text())
    latents = [row["latent"] for row in found["top"]]
    if "ablate_top" in spec:
        return {"ablate": [f"sae:{sae}#{i}" for i in latents[:spec["ablate_top"]]]}
    return {"steer": [f"sae:{sae}#{latents[0]}@{found['layer']}:{spec['steer_top']}"]}


SAE_TRAIN_FIELDS = {f.name for f in dataclasses.fields(SAETrainConfig)}


@stage_kind("sae")
def make_sae(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """An SAE (sae-lens; TopK unless the study says otherwise) on the base model's residual stream; resumes from its
    own checkpoints."""
    settings = stage.config["train"]
    # the study's settings that are training settings (a newer one left out at its default keeps the dataclass's)
    config = SAETrainConfig(model=stage.config["model"],
                            **{k: v for k, v in settings.items() if k in SAE_TRAIN_FIELDS})
    chats, _ = corpus_chats(settings["data"], settings["limit"])
    info = train_sae(load(stage.config["model"]), chats, config, out)
    return {k: info[k] for k in ("layer", "latents", "k", "training_tokens", "distinct_tokens", "capture_seconds",
                                 "train_seconds")} | {"quality": info["quality"], "sae": str(out)}


@stage_kind("diff")
def diff_latents(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """The fine-tune's SAE latents against its base (both models' greedy answers, read as the study says: by default
    both read both), and the top ones' snippets in the arm's training data and those answers, read by the fine-tune."""
    config = stage.config
    base, tuned = load(config["base"]), load(str(inputs["model"]))
    sae = load_sae(inputs["sae"], tuned.device)
    figures = model_diff(base, tuned, sae, probe_prompts(config["questions"], config["limit"]),
                         GenerationParams(max_new_tokens=config["max_tokens"], temperature=0.0), config["top"],
                         reads=config.get("reads", "pooled"))
    found = write_diff(figures, out, questions=config["questions"])
    latents = [row["latent"] for row in found["top"]]
    corpus = {str(inputs["data"] / DATA_FILE): "training data", found["answers"]: "both models' answers"}
    explained = explain(tuned, sae, latents, list(corpus), top=config["snippets"])
    for rows in explained["latents"].values():
        for row in rows:
            row["source"] = corpus[row["source"]]
    (out / "explain.json").write_text(json.dumps(explained, indent=1))
    return {"top": latents, "top_shift": [row["shift"] for row in found["top"]], "chats": found["chats"],
            "diff": str(out / "diff.json"), "explain": str(out / "explain.json")}


@stage_kind("trajectory")
def evaluate_snapshots(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """Each snapshot a fine-tune kept, evaluated on the study's questions and read on its persona direction."""
    settings = stage.config["eval"]
    questions = stage_questions(stage.config)
    judge = make_judge(settings["judge"], **settings["judge_options"])
    direction = Direction.load(inputs["direction"] / DIRECTION_FILE) if "direction" in inputs else None
    params = GenerationParams(max_new_tokens=settings["max_tokens"], temperature=settings["temperature"],
                              top_p=settings["top_p"], seed=stage.config["seed"])
    rows = evaluate_trajectory(inputs["model"], out, questions, judge, settings["n"], params,
                               cache=JudgeCache(_run_dir(out) / "judge_cache.sqlite"), direction=direction,
                               layer=pick_layer(direction, stage.config["layer"]) if direction else None,
                               show_progress=not quiet)
    write_jsonl(out / "trajectory.jsonl", rows)
    return {"steps": [r["step"] for r in rows], "judge": judge.identity, "file": str(out / "trajectory.jsonl")}


@stage_kind("score")
def score_answers(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    """Projections of the eval's answers, read by the model that wrote them, on the study's direction."""

    records = list(read_jsonl(inputs["eval"] / "samples.jsonl"))
    chats = answer_chats(records)
    direction = Direction.load(inputs["direction"] / DIRECTION_FILE)
    layer = pick_layer(direction, stage.config["layer"])
    values = projections(load(model_spec(stage, inputs)), direction,
                         chats, layer)
    write_jsonl(out / "projections.jsonl", ({"key": r["key"], "projection": float(v)}
                                            for r, v in zip(records, values, strict=True)))
    return {"layer": layer, **summary(values)}


def arm_name(evaluation: Stage, one_job: bool) -> str:
    """How the report names an eval: arm[/variant] in a study of one (model, seed), else its full label."""
    return "/".join(p for p in (evaluation.info["arm"], evaluation.info.get("variant")) if p) if one_job \
        else evaluation.label


def sae_diff_entry(diff: Stage, folder: Path, evals: list[Stage], one_job: bool) -> dict:
    """A diff's figures and snippets for the report, with the evals it is compared with: the fine-tune, it with
    its top latents ablated, the base (same model and seed), and the base steered along its top latent."""
    tuned = diff.deps["model"]
    plain = next(e for e in evals if e.deps.get("model") is tuned and not e.info.get("variant"))
    compared = [e for e in evals if not e.info.get("variant")  # held-out checks and SAE variants are named ones
                and e.info["model"] == plain.info["model"] and e.info["seed"] == plain.info["seed"]
                and e.deps.get("model") in (tuned, None)]
    compared += [e for e in evals if e.deps.get("diff") is diff]
    return {"arm": arm_name(plain, one_job),
            "diff": json.loads((folder / "diff.json").read_text()),
            "explained": json.loads((folder / "explain.json").read_text()),
            "compared": [arm_name(e, one_job) for e in compared]}


def trajectory_entries(stage: Stage, inputs: dict, evals: list[Stage], one_job: bool) -> list[dict]:
    """Each fine-tune's snapshot figures, with the first step its misaligned fraction passes the control's CI (the
    control's snapshot at that step, else its final eval; same model and seed)."""
    entries = {}
    for role, folder in inputs.items():
        if role.startswith("trajectory:"):
            dep = stage.deps[role]
            entries[dep.info["arm"], dep.info["model"], dep.info["seed"]] = {
                "arm": arm_name(dep, one_job), "rows": list(read_jsonl(folder / "trajectory.jsonl"))}
    control = stage.config.get("control")
    finals = {(e.info["arm"], e.info["model"], e.info["seed"]): inputs[f"eval:{e.label}"] for e in evals
              if not e.info.get("variant")}
    for (arm, model, seed), entry in entries.items():
        if not control or arm == control:
            continue
        bar = entries.get((control, model, seed))
        final = finals.get((control, model, seed))
        final_ci = json.loads((final / "stage.json").read_text())["result"]["misaligned_ci"] if final else None
        entry |= {"control": control,
                  "first_step_above_control": first_step_above(entry["rows"], bar["rows"] if bar else None, final_ci)}
    return list(entries.values())


def one_job_of(evals: list[Stage]) -> bool:
    """Whether every eval is of one (model, seed): then arms are named by arm alone."""
    return len({(e.info["model"], e.info["seed"]) for e in evals}) == 1


@stage_kind("report")
def report(stage: Stage, inputs: dict, out: Path, quiet: bool) -> dict:
    arms = []
    evals = [stage.deps[role] for role in inputs if role.startswith("eval:")]
    one_job = one_job_of(evals)
    saes = [{"label": stage.deps[role].label, **json.loads((folder / "stage.json").read_text())["result"]}
            for role, folder in inputs.items() if role.startswith("sae:")]
    diffs = [sae_diff_entry(stage.deps[role], folder, evals, one_job)
             for role, folder in inputs.items() if role.startswith("diff:")]
    trajectories = trajectory_entries(stage, inputs, evals, one_job)
    for role, folder in inputs.items():
        kind, label = role.split(":", 1)
        if kind != "eval":
            continue
        dep = stage.deps[role]
        score = inputs.get(f"score:{label}")
        trained = dep.deps.get("model")
        log = inputs[f"train:{trained.label}"] / "train_log.jsonl" if trained and trained.kind == "train" else None
        name = arm_name(dep, one_job)
        arms.append({"label": name, **dep.info, "eval": str(folder),
                     "score": json.loads((score / "stage.json").read_text())["result"] if score else None,
                     "projections": str(score / "projections.jsonl") if score else None,
                     "train_log": str(log) if log and log.is_file() else None})
    built = build_report([a["eval"] for a in arms], out / "report.html", title=f"turncoat study: {stage.label}",
                         study={**stage.config, "arms": arms, "saes": saes, "diffs": diffs,
                                "trajectories": trajectories})
    report_file = _run_dir(out) / "report.html"
    shutil.copyfile(out / "report.html", report_file)
    if built.get("explorer"):  # beside the copy too, where its links point
        shutil.copyfile(built["explorer"], _run_dir(out) / Path(built["explorer"]).name)
    return {"report": str(report_file), "plots": built["plots"], "arms": built.get("study_arms", [])}
