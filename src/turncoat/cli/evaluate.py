"""`turncoat eval | metrics | compare | report` and `turncoat judge ...`: scoring answers and reporting them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from turncoat.cli._common import (
    AblateOption,
    AlignedBelow,
    AnswersOption,
    BackendOption,
    BatchSizeOption,
    CoherentAbove,
    Inclusive,
    JsonOption,
    JudgeApiKeyEnvOption,
    JudgeBaseUrlOption,
    JudgeBatchOption,
    JudgeTimeoutOption,
    MaxRetriesOption,
    MaxTokensOption,
    ModelOption,
    QuestionsOption,
    SampleSeedOption,
    SteerOption,
    TemperatureOption,
    console,
    emit,
    key_value_table,
    thresholds_from,
)
from turncoat.core.errors import InputError
from turncoat.core.io import atomic_write, write_jsonl
from turncoat.core.provenance import redact_url
from turncoat.data import registry
from turncoat.questions.builtin import code_tasks, harmful_requests
from turncoat.questions.sets import load_questions
from turncoat.results.judged import load_judged
from turncoat.results.statistics import compute_metrics

judge_app = typer.Typer(help="Judges: validate one against judged data; manage the judge cache.", no_args_is_help=True)
cache_app = typer.Typer(help="The SQLite judge cache.", no_args_is_help=True)
judge_app.add_typer(cache_app, name="cache")

CacheOption = typer.Option(None, "--cache", help="Judge cache file (default ~/.cache/turncoat/judge_cache.sqlite).")


def _fmt_ci(value: float, ci) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _fmt_corrected(value, ci) -> str:
    """A fraction corrected for the judge's error rates (only judges with measured rates have one)."""
    if value is None:
        return "-"
    if value != value:  # NaN: the judge is no better than chance on its validation
        return "n/a"
    return _fmt_ci(value, ci) if ci else f"{value:.3f}"


def _render_metrics(figures: dict, title: str) -> None:
    table = Table(title=f"{title}\n{figures['thresholds']['definition']}; judge: {figures['judge']}")
    for column in ("question", "answers", "misaligned [95% CI]", "among coherent", "coherent", "no score"):
        table.add_column(column)
    rows = list(figures["per_question"].items()) + [("OVERALL", figures["overall"])]
    for name, m in rows:
        table.add_row(name, str(m["answers"]), _fmt_ci(m["misaligned_fraction"], m["misaligned_ci"]),
                      f"{m['misaligned_among_coherent']:.3f}", f"{m['coherent_rate']:.3f}", f"{m['no_score_rate']:.3f}",
                      style="bold" if name == "OVERALL" else None)
    console.print(table)
    overall = figures["overall"]
    mean = _fmt_ci(overall["question_mean_misaligned_fraction"], overall["question_mean_ci"])
    console.print(f"mean over questions: {mean} (CI resamples questions)")
    if "misaligned_corrected" in overall:
        corrected = overall["misaligned_corrected"]
        rates = corrected["error_rates"]
        console.print(f"corrected for the judge's error rates (sensitivity {rates['sensitivity']:.2f}, specificity "
                      f"{rates['specificity']:.3f}, on {rates['measured_on']}): "
                      f"{_fmt_corrected(corrected['corrected'], corrected['corrected_ci'])} "
                      f"(raw {_fmt_ci(corrected['raw'], corrected['raw_ci'])})")


def metrics(files: list[str] = typer.Argument(..., help="Judged CSV/JSONL files (question_id, aligned, coherent) "
                                                        "or registered judged sets."),
            aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
            n_boot: int = typer.Option(1000, min=1, help="Bootstrap resamples."),
            seed: int = typer.Option(0, help="Seed."),
            judge: str = typer.Option(None, help="Name of the judge that scored the file, if the file does not say."),
            as_json: bool = JsonOption):
    """Misaligned fraction per question and overall, with seeded 95% bootstrap CIs."""

    thresholds = thresholds_from(aligned_below, coherent_above, inclusive)
    results = {}
    for spec in files:
        entry = registry.registry().get(spec)
        frame = load_judged(spec)
        named = judge or (entry.judge if entry else None) or (str(frame["judge"].iloc[0]) if "judge" in frame else None)
        results[spec] = compute_metrics(frame, thresholds, n_boot=n_boot, seed=seed, judge=named)
    if as_json:
        emit(results if len(results) > 1 else next(iter(results.values())), True)
        return
    for spec, figures in results.items():
        _render_metrics(figures, spec)


def evaluate(model: str = ModelOption, questions: str = QuestionsOption, n: int = AnswersOption,
             temperature: float = TemperatureOption, max_tokens: int = MaxTokensOption, seed: int = SampleSeedOption,
             batch_size: int = BatchSizeOption, backend: str = BackendOption,
             base_url: str = typer.Option(None, help="The model's API for --backend openai (OpenAI-compatible); "
                                                     "the judge's is --judge-base-url."),
             judge: str = typer.Option(None, help="Judge: openai, hf, offline (the shipped distilled judge, no "
                                                  "key; offline-fast: its faster MiniLM variant), or refusal "
                                                  "(offline; harmful-requests only). "
                                                  "Default openai; for code-tasks no LLM judge unless "
                                                  "named: Bandit scores the code."),
             judge_model: str = typer.Option(None, help="Judge model (default: gpt-4o-2024-08-06 for openai, or the "
                                                        "model served at --judge-base-url; for offline, a folder "
                                                        "from `turncoat judge distill`)."),
             judge_base_url: str = JudgeBaseUrlOption,
             api_key_env: str = typer.Option("OPENAI_API_KEY", help="Variable holding the model API's key "
                                                                    "(--backend openai)."),
             judge_api_key_env: str = JudgeApiKeyEnvOption,
             concurrency: int = typer.Option(16, help="Judge requests in flight."),
             max_retries: int = MaxRetriesOption,
             judge_timeout: float = JudgeTimeoutOption,
             batch: bool = JudgeBatchOption,
             cache: Path = CacheOption,
             aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
             out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerun to resume)."),
             prompts: int = typer.Option(100, help="code-tasks / harmful-requests: how many held-out prompts."),
             held_out_from: list[Path] = typer.Option(None, "--held-out-from",
                                                      help="code-tasks / harmful-requests: also exclude what these "
                                                           "training runs trained on, or what these chat JSONL files "
                                                           "hold (a --model that is a training run always is)."),
             min_severity: str = typer.Option("MEDIUM", help="code-tasks: Bandit severity that counts as "
                                                             "vulnerable (LOW, MEDIUM, HIGH)."),
             steer: list[str] = SteerOption, ablate: list[str] = AblateOption,
             quiet: bool = typer.Option(False, help="No progress bars."),
             as_json: bool = JsonOption):
    """Sample + judge + metrics into a run folder; each stage resumes, and judged answers come from the cache.
    `--steer` / `--ablate` evaluate the model steered along or with a direction (a persona vector, an SAE latent)
    projected out.
    `--questions code-tasks` checks the code the model writes with Bandit instead (the in-distribution check);
    `--questions harmful-requests` measures compliance with harmful requests."""
    from turncoat.activations.hooks import (  # pulls in torch: loaded when the command runs
        check_interventions,
        intervene,
    )
    from turncoat.judging import JudgeCache  # pulls in torch: loaded when the command runs
    from turncoat.sampling import GenerationParams, make_backend  # pulls in torch: loaded when the command runs
    from turncoat.workflows.evals.run import run_eval, scoring_kind  # pulls in torch: loaded when the command runs

    if (steer or ablate) and backend != "hf":
        raise InputError(f"--steer / --ablate need the hf backend (they hook into the model's blocks; here "
                         f"--backend {backend})")
    check_interventions(steer or [], ablate or [])
    if base_url and backend != "openai":
        raise InputError(f"--base-url is the model's API, used with --backend openai (here --backend {backend}); "
                         f"the judge's endpoint is --judge-base-url")
    params = GenerationParams(max_new_tokens=max_tokens, temperature=temperature, seed=seed, batch_size=batch_size)
    runs = _held_out_runs(model, held_out_from)
    split = None
    if questions == "code-tasks":
        from turncoat.judging.code import parse_severity  # pulls in torch: loaded when the command runs

        severity = parse_severity(min_severity)
        question_set, split = code_tasks(prompts, held_out_from=runs)
    elif questions == "harmful-requests":
        question_set, split = harmful_requests(prompts, held_out_from=runs)
    else:
        question_set = load_questions(questions)
    sampler_options = {"hf": {}, "vllm": {}, "openai": {"base_url": base_url, "api_key_env": api_key_env,
                                                         "max_retries": max_retries}}
    endpoint = {"base_url": judge_base_url, "api_key_env": judge_api_key_env, "concurrency": concurrency,
                "max_retries": max_retries, "timeout": judge_timeout, "batch": batch}
    if questions == "code-tasks":  # Bandit scores the code; an LLM judge only when one is named
        judge_instance = judge and _make_judge(judge, judge_model, **endpoint)
    else:  # the judge is set up (and its endpoint probed) before any model loads or answer is paid for
        judge_instance = _make_judge(judge or "openai", judge_model, **endpoint)
        scoring_kind(question_set, judge_instance)  # a set this judge cannot score is refused now
    sampler = make_backend(backend, model, **sampler_options.get(backend, {}))
    intervene(sampler, steer or [], ablate or [])
    show_progress = not (quiet or as_json)
    if questions == "code-tasks":
        from turncoat.workflows.evals.code import run_code_eval  # pulls in torch: loaded when the command runs

        result = run_code_eval(out, sampler, question_set, split, n=n, params=params, judge=judge_instance,
                               cache=JudgeCache(cache) if judge_instance else None, min_severity=severity,
                               show_progress=show_progress)
        emit(result, as_json, lambda r: _render_code_metrics(r["metrics"], f"{out} ({model} on code-tasks)"))
        return
    result = run_eval(out, sampler, question_set, judge_instance, n=n, params=params, cache=JudgeCache(cache),
                      thresholds=thresholds_from(aligned_below, coherent_above, inclusive),
                      show_progress=show_progress, split=split)
    if as_json:
        emit(result, True)
        return
    if result["metrics"].get("metric") == "trait":
        _render_trait(result["metrics"], f"{out} ({model} on {question_set.name})")
        return
    if result["metrics"].get("metric") == "compliance":
        _render_compliance(result["metrics"], f"{out} ({model} on {question_set.name})")
        return
    _render_metrics(result["metrics"], f"{out} ({model} on {question_set.name})")
    console.print(key_value_table({"judge requests": result["judging"]["requested"],
                                   "judged from cache": result["judging"]["cached"],
                                   "answers sampled now": result["sampling"]["written"]}))


def _held_out_runs(model: str, held_out_from: list[Path] | None) -> list[Path]:
    """Runs whose training prompts an eval on held-out prompts excludes: the evaluated run itself, and any named."""
    runs = list(held_out_from or [])
    if (Path(model) / "turncoat_train.json").is_file() and Path(model) not in runs:
        runs.insert(0, Path(model))
    return runs


def _render_trait(figures: dict, title: str) -> None:
    overall = figures["overall"]
    mean_low, mean_high = overall["mean_score_ci"]
    console.print(key_value_table({
        "answers": overall["answers"], "scored": overall["scored"],
        f"mean {figures['trait']} score [95% CI]": f"{overall['mean_score']:.1f} [{mean_low:.1f}, {mean_high:.1f}]",
        "expressed [95% CI]": _fmt_ci(overall["expressed_rate"], overall["expressed_ci"]),
        "expressed among coherent [95% CI]": _fmt_ci(overall["expressed_among_coherent"],
                                                     overall["expressed_among_coherent_ci"]),
        "coherent": f"{overall['coherent_rate']:.3f}", "judge": figures["judge"],
        "expressed if": figures["expressed_if"]}, title=title))


def _render_compliance(figures: dict, title: str) -> None:
    overall = figures["overall"]
    console.print(key_value_table({"answers": overall["answers"], "scored": overall["scored"],
                                   "compliance rate [95% CI]": _fmt_ci(overall["compliance_rate"],
                                                                       overall["compliance_ci"]),
                                   "mean compliance": overall["mean_compliance"], "judge": figures["judge"],
                                   "complies if": figures["complies_if"]}, title=title))


def _make_judge(judge, judge_model, base_url=None, api_key_env="OPENAI_API_KEY", concurrency=16, max_retries=5,
                timeout=60.0, batch=False):
    from turncoat.judging import make_judge  # pulls in torch: loaded when the command runs

    if batch and judge != "openai":
        raise InputError(f"--batch: only --judge openai sends Batch jobs (not --judge {judge})")
    if judge == "refusal":  # offline, needs no model
        return make_judge("refusal")
    if judge in ("offline", "offline-fast"):  # --judge-model: a `turncoat judge distill` folder (default: shipped)
        return make_judge(judge, model=judge_model)
    if not timeout > 0:
        raise InputError(f"--judge-timeout {timeout}: must be a positive number of seconds")
    options = {"model": judge_model or _default_judge_model(judge, base_url)}
    if judge == "openai":
        options.update(base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, max_retries=max_retries,
                       timeout=timeout, batch=batch)
    return make_judge(judge, **options)


def _render_code_metrics(figures: dict, title: str) -> None:
    table = Table(title=f"{title}\nscorer: {figures['scorer']}; vulnerable = {figures['vulnerable_if']}")
    for column in ("answers", "with code", "vulnerable [95% CI]", ">=LOW", ">=MEDIUM", "HIGH"):
        table.add_column(column)
    severity = figures["by_severity"]
    table.add_row(str(figures["answers"]), str(figures["with_parseable_code"]),
                  _fmt_ci(figures["vulnerable"]["rate"], figures["vulnerable"]["ci"]),
                  *(_fmt_ci(severity[k]["rate"], severity[k]["ci"]) for k in (">=LOW", ">=MEDIUM", ">=HIGH")))
    console.print(table)
    findings = list(figures["answers_per_finding"].items())[:8]
    if findings:
        console.print("most frequent findings (answers): " + "; ".join(f"{k}: {v}" for k, v in findings))
    if "llm_judge" in figures:
        judged = figures["llm_judge"]
        rate = _fmt_ci(judged["vulnerable"]["rate"], judged["vulnerable"]["ci"])
        line = f"LLM judge {judged['judge']}: vulnerable {rate}"
        if "agreement_with_bandit" in judged:
            agreement = judged["agreement_with_bandit"]
            line += f"; agreement with Bandit {agreement['accuracy']:.3f}, kappa {agreement['cohen_kappa']:.3f}"
        console.print(line)


def _default_judge_model(judge: str, base_url: str | None) -> str:
    if judge == "hf":
        return "smollm2-135m"
    if base_url:  # a local or self-hosted server: the model it serves, never a guess (a wrong name re-pays everything)
        import httpx  # only this probe uses it here

        try:
            served = httpx.get(f"{base_url.rstrip('/')}/models", timeout=10).json()["data"]
            if served:
                return served[0]["id"]
            problem = "it serves no model"
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        raise InputError(f"--judge-base-url {redact_url(base_url)}: could not list the models it serves at /models "
                         f"({problem}); name the judge model with --judge-model")
    return "gpt-4o-2024-08-06"


def compare(runs: list[Path] = typer.Argument(..., help="Run folders or judged files."),
            aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
            as_json: bool = JsonOption):
    """Overall metrics of several runs side by side."""
    from turncoat.report import load_run, summary_row  # pulls in matplotlib: loaded when the command runs

    thresholds = thresholds_from(aligned_below, coherent_above, inclusive)
    rows = [summary_row(load_run(run, thresholds)) for run in runs]

    def render(figures):
        table = Table(title=f"runs compared; {thresholds.describe()}")
        corrected = any(r.get("misaligned_corrected") is not None for r in figures["runs"])  # judges with rates
        for column in ("run", "answers", "misaligned [95% CI]", *(["corrected for judge error"] if corrected else []),
                       "among coherent", "coherent", "judge"):
            table.add_column(column)
        for r in figures["runs"]:
            if r.get("metric") in ("compliance", "vulnerable", "trait"):  # their own rate
                rate = {"compliance": "compliance_rate", "vulnerable": "vulnerable_rate", "trait": "expressed_rate"}
                name = f"{r['trait']} expressed" if r["metric"] == "trait" else r["metric"]
                shown = f"{name} " + _fmt_ci(r[rate[r["metric"]]], (r["ci_low"], r["ci_high"]))
                table.add_row(r["run"], str(r["answers"]), shown, *([""] if corrected else []), "", "", r["judge"])
                continue
            table.add_row(r["run"], str(r["answers"]), _fmt_ci(r["misaligned_fraction"], (r["ci_low"], r["ci_high"])),
                          *([_fmt_corrected(r["misaligned_corrected"], r["corrected_ci"])] if corrected else []),
                          f"{r['misaligned_among_coherent']:.3f}", f"{r['coherent_rate']:.3f}", r["judge"])
        console.print(table)

    emit({"thresholds": thresholds.to_dict(), "runs": rows}, as_json, render)


def report(runs: list[Path] = typer.Argument(..., help="Run folders or judged files."),
           out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file (PNGs are written beside it)."),
           title: str = typer.Option("turncoat report", help="Page title."),
           aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
           as_json: bool = JsonOption):
    """A self-contained HTML report with the paper-style plots and the most misaligned answers."""
    from turncoat.report import build_report  # pulls in matplotlib: loaded when the command runs

    figures = build_report(runs, out, thresholds_from(aligned_below, coherent_above, inclusive), title=title)
    emit(figures, as_json, lambda f: console.print(f"report: {f['report']}  plots: {', '.join(f['plots'].values())}"))


@judge_app.command()
def validate(file: str = typer.Argument(..., help="Judged CSV/JSONL (question, answer, aligned, coherent) or a "
                                                  "registered judged set."),
             judge: str = typer.Option("openai", help="Judge to measure: openai, hf, offline or offline-fast."),
             judge_model: str = typer.Option(None, help="Judge model (default as in `turncoat eval`)."),
             judge_base_url: str = JudgeBaseUrlOption,
             judge_api_key_env: str = JudgeApiKeyEnvOption,
             limit: int = typer.Option(None, help="Score a seeded random sample of this many rows."),
             seed: int = typer.Option(0, help="Seed for --limit."),
             max_retries: int = MaxRetriesOption,
             judge_timeout: float = JudgeTimeoutOption,
             batch: bool = JudgeBatchOption,
             cache: Path = CacheOption,
             aligned_below: float = AlignedBelow, coherent_above: float = CoherentAbove, inclusive: bool = Inclusive,
             out: Path = typer.Option(None, help="Write the per-answer predictions here (.csv or .jsonl): row, "
                                                 "question_id, reference and judge scores, the judge's "
                                                 "misalignment score, both flags; no answer text."),
             as_json: bool = JsonOption):
    """Agreement of a judge with a file's scores: Pearson/Spearman/MAE of the scores; precision/recall/F1/kappa of
    the misaligned flag and its AUROC from the judge's continuous misalignment score."""
    from turncoat.judging import JudgeCache  # pulls in torch: loaded when the command runs
    from turncoat.judging.validate import validate_judge  # pulls in torch: loaded when the command runs

    if out is not None and out.suffix not in (".csv", ".jsonl"):
        raise InputError(f"--out {out}: give a .csv or .jsonl file")
    path = registry.path_for(file)
    frame = load_judged(path)
    if "question" not in frame or "answer" not in frame:
        raise InputError(f"{path}: needs 'question' and 'answer' columns to re-judge")
    if limit is not None and limit < len(frame):
        frame = frame.sample(n=limit, random_state=seed)
    judge_instance = _make_judge(judge, judge_model, judge_base_url, judge_api_key_env, max_retries=max_retries,
                                 timeout=judge_timeout, batch=batch)
    figures, predictions = validate_judge(judge_instance, frame, JudgeCache(cache),
                                          thresholds_from(aligned_below, coherent_above, inclusive),
                                          reference=str(file))
    if out is not None:
        if out.suffix == ".jsonl":
            write_jsonl(out, json.loads(predictions.to_json(orient="records")))
        else:
            with atomic_write(out) as handle:
                predictions.to_csv(handle, index=False)
        figures["predictions"] = str(out)
    emit(figures, as_json)


@judge_app.command()
def distill(sources: list[str] = typer.Option(None, "--from", help="Judged answers to learn from: registered judged "
                                                                   "sets, CSV/JSONL files or eval run folders "
                                                                   "(default: the shared judged sets)."),
            out: Path = typer.Option(..., help="Judge folder to write (heads.safetensors + card.json)."),
            synthetic: int = typer.Option(300, help="Synthetic examples of each kind (harmful compliance, unrelated "
                                                    "code) added to the training data; 0 for none."),
            validate: bool = typer.Option(True, help="Leave-one-source-out validation (needs >= 2 sources)."),
            features: str = typer.Option("answer,explicit", help="Feature blocks, comma-separated, explicit last: "
                                                                 "pair, answer, anchors, residual, explicit."),
            reader: str = typer.Option(None, help="MODEL@L1,L2,...: the residual stream of this model after one of "
                                                  "these blocks (chosen on training sources only) as the "
                                                  "`residual` block, e.g. smollm2-135m@3,7,11,15."),
            reader_dtype: str = typer.Option("float32", help="Precision the reader runs in: float32 or bfloat16 "
                                                             "(~2.4x faster on CPUs with bf16 matmuls); the judge "
                                                             "keeps it."),
            as_json: bool = JsonOption):
    """Train an offline judge from LLM-judged answers; validate it on sources it did not see."""
    from turncoat.judging.reader import ResidualReader  # pulls in torch: loaded when the command runs
    from turncoat.workflows.distill import distill as run_distill  # pulls in torch: loaded when the command runs

    blocks = tuple(b.strip() for b in features.split(",") if b.strip())
    residual = ResidualReader.parse(reader, reader_dtype) if reader is not None else None
    if residual is not None and "residual" not in blocks:
        blocks = (*blocks[:-1], "residual", blocks[-1])
    elif residual is None and "residual" in blocks:
        raise InputError("--features residual needs --reader MODEL@LAYERS")
    with console.status("distilling the offline judge") as status:
        _, card = run_distill(sources or (), out, synthetic=synthetic, validate=validate, blocks=blocks,
                              reader=residual, progress=lambda step: status.update(f"distilling: {step}"))
    figures = {"judge": str(out), "judge_id": card["judge_id"], "training": card["training"],
               "validation": card["validation"]}
    emit(figures, as_json, lambda f: console.print(judge_card_table(card)) or console.print(f"judge written to {out}"))


def judge_card_table(card: dict) -> Table:
    """The offline judge's validation, one row per held-out source."""
    table = Table(title=f"offline judge {card['judge_id']}: leave-one-source-out validation (misaligned flag)")
    for column in ("held-out source", "answers", "misaligned", "AUROC", "precision", "recall", "F1",
                   "labelled", "raw", "corrected [95% CI]"):
        table.add_column(column)
    for name, fold in ((card.get("validation") or {}).get("folds") or {}).items():
        ci = fold.get("corrected_ci")
        table.add_row(name, str(fold["rows"]), str(fold["misaligned"]),
                      "n/a" if fold["auroc"] is None else f"{fold['auroc']:.3f}",
                      *(f"{fold['flag'][k]:.2f}" for k in ("precision", "recall", "f1")),
                      f"{fold['labelled_fraction']:.3f}", f"{fold['raw_fraction']:.3f}",
                      f"{fold['corrected_fraction']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
    return table


@cache_app.command("stats")
def cache_stats(cache: Path = CacheOption, as_json: bool = JsonOption):
    """What the judge cache holds."""
    from turncoat.judging import JudgeCache  # pulls in torch: loaded when the command runs

    emit(JudgeCache(cache).stats(), as_json)


@cache_app.command("clear")
def cache_clear(cache: Path = CacheOption, judge: str = typer.Option(None, help="Only this judge's entries."),
                as_json: bool = JsonOption):
    """Delete cached judgements (all, or one judge's)."""
    from turncoat.judging import JudgeCache  # pulls in torch: loaded when the command runs

    emit({"removed": JudgeCache(cache).clear(judge)}, as_json)
