"""`turncoat sample`, `turncoat serve` and `turncoat questions`: drawing answers from models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from turncoat.cli._common import (
    AblateOption,
    AnswersOption,
    BackendOption,
    BatchSizeOption,
    JsonOption,
    MaxRetriesOption,
    MaxTokensOption,
    ModelOption,
    QuestionsOption,
    SampleSeedOption,
    SteerOption,
    TemperatureOption,
    console,
    emit,
)
from turncoat.core.errors import InputError
from turncoat.core.io import read_jsonl
from turncoat.questions.sets import QUESTION_SETS, load_questions

questions_app = typer.Typer(help="Question sets: list them, show one.", no_args_is_help=True)


@questions_app.command("list")
def list_sets(as_json: bool = JsonOption):
    """Registered question sets (any question YAML or trait JSON file works too)."""

    load_questions("core")  # registers the built-in sets
    figures = {"question_sets": {name: description for name, (_, description) in QUESTION_SETS.items()}}

    def render(f):
        table = Table(title="question sets (`turncoat questions show NAME` lists a set's questions)")
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("what it holds")
        for name, description in f["question_sets"].items():
            table.add_row(Text(name), Text(description))
        console.print(table)

    emit(figures, as_json, render)


@questions_app.command("show")
def show(spec: str = typer.Argument(..., help="A registered name or a question file."),
         n: int = typer.Option(None, help="Answers per question (default: samples_per_paraphrase per paraphrase)."),
         as_json: bool = JsonOption):
    """The questions of a set and how many answers a run draws."""

    questions = load_questions(spec)
    rows = [{"id": q.id, "type": q.type, "paraphrases": len(q.paraphrases),
             "samples_per_paraphrase": q.samples_per_paraphrase, "system": q.system, "judge": q.judge,
             "metrics": sorted(q.judge_prompts), "first_paraphrase": q.paraphrases[0]} for q in questions]
    figures = {"name": questions.name, "questions": len(questions), "answers_planned": len(questions.prompts(n)),
               "entries": rows}

    def render(f):
        table = Table(title=f"{f['name']}: {f['questions']} questions, {f['answers_planned']} answers per run")
        for column in ("id", "paraphrases", "samples", "system prompt", "metrics"):
            table.add_column(column)
        for row in f["entries"]:
            table.add_row(row["id"], str(row["paraphrases"]), str(row["samples_per_paraphrase"]),
                          "yes" if row["system"] else "", ", ".join(row["metrics"]))
        console.print(table)

    emit(figures, as_json, render)


def sample(model: str = ModelOption, questions: str = QuestionsOption, n: int = AnswersOption,
           temperature: float = TemperatureOption, top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
           max_tokens: int = MaxTokensOption, seed: int = SampleSeedOption, batch_size: int = BatchSizeOption,
           backend: str = BackendOption,
           base_url: str = typer.Option(None, help="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1."),
           api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai backend: variable holding the key."),
           concurrency: int = typer.Option(16, help="openai backend: requests in flight."),
           max_retries: int = MaxRetriesOption,
           device: str = typer.Option("auto", help="hf backend: auto, cpu, cuda, cuda:N."),
           dtype: str = typer.Option("auto", help="hf backend: auto (CUDA bf16; CPU bf16 if native, else fp32), "
                                                  "float32, bfloat16."),
           out: Path = typer.Option(..., "--out", "-o", help="Answers JSONL (appended to; rerun to resume)."),
           parquet: bool = typer.Option(False, help="Also write the answers as Parquet beside the JSONL."),
           quiet: bool = typer.Option(False, help="No progress bar."),
           steer: list[str] = SteerOption, ablate: list[str] = AblateOption,
           as_json: bool = JsonOption):
    """Sample answers to a question set; writes as it goes and resumes where it stopped."""
    from turncoat.activations.hooks import (  # pulls in torch: loaded when the command runs
        check_interventions,
        intervene,
    )
    from turncoat.sampling import (  # pulls in torch: loaded when the command runs
        GenerationParams,
        make_backend,
        sample_to_file,
    )

    params = GenerationParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                              batch_size=batch_size)  # checked before anything loads
    question_set = load_questions(questions)
    options = {"hf": {"device": device, "dtype": dtype}, "vllm": {"dtype": dtype},
               "openai": {"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency,
                          "max_retries": max_retries}}
    if (steer or ablate) and backend != "hf":
        raise InputError("--steer / --ablate need the hf backend (they hook into the model's blocks)")
    check_interventions(steer or [], ablate or [])
    engine = make_backend(backend, model, **options.get(backend, {}))
    intervene(engine, steer or [], ablate or [])
    figures = sample_to_file(engine, question_set, out, n=n, params=params, show_progress=not (quiet or as_json))
    figures["questions"] = question_set.name
    if parquet:
        import pandas as pd

        parquet_path = out.with_suffix(".parquet")
        frame = pd.DataFrame(read_jsonl(out))
        frame["params"] = frame["params"].map(str)
        frame.to_parquet(parquet_path)
        figures["parquet"] = str(parquet_path)
    emit(figures, as_json)


def serve(model: str = typer.Argument("smollm2-135m", help="Model spec to serve."),
          host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
          port: int = typer.Option(8000, help="Port."),
          name: str = typer.Option(None, help="Model name clients use (default: the spec)."),
          max_tokens: int = typer.Option(256, help="Default max_tokens when a request gives none."),
          device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
          dtype: str = typer.Option("auto", help="auto (CUDA bf16; CPU bf16 if native, else fp32), float32, bfloat16."),
          chat_template: str = typer.Option(None, help="Jinja chat template (file or string) if the model has none."),
          steer: list[str] = typer.Option(None, help="Serve the model steered: add alpha x unit direction at block L, "
                                                     "as DIRECTION_FILE@L:ALPHA (repeatable)."),
          ablate: list[str] = typer.Option(None, help="Serve the model with this direction projected out at every "
                                                      "block (repeatable).")):
    """Serve a model over an OpenAI-compatible API (/v1/models, /v1/chat/completions), optionally steered."""
    from turncoat.activations.hooks import intervention_hooks  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.sampling.server import serve as run_server  # pulls in torch: loaded when the command runs

    loaded = load(model, device=device, dtype=dtype, chat_template=chat_template)
    hooks, described = intervention_hooks(loaded.model, steer or [], ablate or [])
    console.print(f"serving {model} as {name or model} on http://{host}:{port}/v1"
                  + (f" with {described}" if described else ""), highlight=False)
    run_server(loaded, host=host, port=port, served_name=name, default_max_tokens=max_tokens, hooks=hooks)
