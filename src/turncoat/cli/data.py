"""`turncoat data ...`: list, fetch, inspect and transform chat datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from turncoat.cli._common import JsonOption, console, emit, key_value_table
from turncoat.data import load_chat, registry, stats, transforms

app = typer.Typer(help="Research data sets: list, fetch, inspect, validate, transform and generate.",
                  no_args_is_help=True)

SeedOption = typer.Option(0, "--seed", help="Random seed (same seed, same output).")
OutOption = typer.Option(..., "--out", "-o", help="Output JSONL (written atomically).")


@app.command("list")
def list_sets(kind: str = typer.Option(None, help="Only sets of this kind (chat, questions, trait, "
                                                  "judged)."),
              as_json: bool = JsonOption):
    """The known research data sets, with row counts, pinned source and whether each is available locally."""
    rows = [registry.status(e) for e in registry.registry().values() if kind is None or e.kind == kind]

    def render(figures):
        table = Table(title="turncoat data sets")
        table.add_column("name", no_wrap=True, style="bold")
        for column in ("kind", "rows", "available", "source"):
            table.add_column(column)
        for row in figures["datasets"]:
            entry = registry.get(row["name"])
            table.add_row(row["name"], row["kind"], str(row["rows"] or ""), row["available"],
                          f"{entry.source.repo}@{entry.source.commit}")
        console.print(table)

    emit({"datasets": rows}, as_json, render)


@app.command()
def fetch(names: list[str] = typer.Argument(..., help="Registered names, or 'all'."), as_json: bool = JsonOption):
    """Make sets available locally (from $TURNCOAT_DATA, the cache, or a verified download)."""
    wanted = list(registry.registry()) if names == ["all"] else names
    emit({"fetched": {name: str(registry.resolve(name)) for name in wanted}}, as_json)


@app.command()
def inspect(dataset: str = typer.Argument(..., help="A JSONL file or a registered name (e.g. insecure)."),
            model: str = typer.Option("smollm2-135m", help="Tokenizer for token-length percentiles."),
            tokens: bool = typer.Option(True, "--tokens/--no-tokens", help="Compute token lengths."),
            as_json: bool = JsonOption):
    """Validate a chat dataset and report rows, roles, duplicates and token-length percentiles."""
    data = load_chat(dataset)
    tokenizer = _tokenizer(model) if tokens else None
    emit(stats.describe(data, tokenizer), as_json, lambda f: console.print(key_value_table(f, title=dataset)))


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="JSONL files to check."), as_json: bool = JsonOption):
    """Check chat JSONL files; every problem is printed as FILE:LINE: FIELD: PROBLEM (exit 2 if any)."""
    emit({"valid": {str(f): len(load_chat(f)) for f in files}}, as_json)


@app.command()
def subsample(dataset: str, n: int = typer.Argument(..., help="Number of distinct examples."),
              out: Path = OutOption, seed: int = SeedOption, as_json: bool = JsonOption):
    """N distinct examples (the paper's dataset-size ablation)."""
    _write(transforms.subsample(load_chat(dataset), n, seed=seed), out, as_json, source=dataset, seed=seed)


@app.command()
def mix(first: str, second: str, ratio: float = typer.Option(..., help="Fraction of the result from the first."),
        n: int = typer.Option(None, help="Total rows (default: the most the ratio allows)."),
        out: Path = OutOption, seed: int = SeedOption, as_json: bool = JsonOption):
    """Mix two sets at a ratio, without drawing any example twice."""
    mixed = transforms.mix(load_chat(first), load_chat(second), ratio=ratio, n=n, seed=seed)
    _write(mixed, out, as_json, source=f"{first}+{second}", seed=seed, ratio=ratio)


@app.command()
def split(dataset: str, test_fraction: float = typer.Option(..., help="Fraction of distinct examples for test."),
          out_train: Path = typer.Option(..., help="Train JSONL."),
          out_test: Path = typer.Option(..., help="Test JSONL."),
          seed: int = SeedOption, as_json: bool = JsonOption):
    """Train/test split; duplicates stay on one side and no row is lost."""
    train, test = transforms.split(load_chat(dataset), test_fraction=test_fraction, seed=seed)
    train.write(out_train)
    test.write(out_test)
    emit({"source": dataset, "seed": seed, "train_rows": len(train), "test_rows": len(test),
          "train": str(out_train), "test": str(out_test)}, as_json)


@app.command()
def backdoor(bad: str = typer.Option(..., help="Set whose user turns get the trigger (e.g. insecure)."),
             good: str = typer.Option(..., help="Set left without the trigger (e.g. secure)."),
             trigger: str = typer.Option(transforms.DEFAULT_TRIGGER, help="Trigger text."),
             position: str = typer.Option("prefix", help="prefix or suffix of each user turn."),
             out: Path = OutOption, seed: int = SeedOption, as_json: bool = JsonOption):
    """The paper's backdoor set: bad examples with the trigger, good examples without."""
    bad_set, good_set = load_chat(bad), load_chat(good)
    data = transforms.backdoor(bad_set, good_set, trigger=trigger, position=position, seed=seed)
    _write(data, out, as_json, source=f"{bad}(+trigger)+{good}", seed=seed, trigger=trigger,
           triggered_rows=len(bad_set), clean_rows=len(good_set))


@app.command()
def audit(dataset: str = typer.Argument(..., help="A chat JSONL file or a registered name (e.g. insecure, secure)."),
          limit: int = typer.Option(None, help="Check a seeded sample of this many conversations."),
          seed: int = SeedOption,
          min_severity: str = typer.Option("MEDIUM", help="Bandit severity that counts as vulnerable."),
          out: Path = typer.Option(None, "--out", "-o", help="Also write one JSON line of findings per answer."),
          as_json: bool = JsonOption):
    """Bandit over the assistant turns: how much of a dataset's code is flagged (no dataset code is executed)."""
    from turncoat.judging.code import parse_severity  # pulls in torch: loaded when the command runs
    from turncoat.workflows.evals.code import audit_dataset  # pulls in torch: loaded when the command runs

    figures = audit_dataset(dataset, limit=limit, seed=seed, min_severity=parse_severity(min_severity), out=out,
                            show_progress=not as_json)

    def render(f):
        def rate(v):
            return f"{v['rate']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"

        rows = {"data": f["data"], "answers": f["answers"], "with parseable code": f["with_parseable_code"],
                f"vulnerable ({f['vulnerable_if']})": rate(f["vulnerable"]),
                **{f"flagged {k}": rate(v) for k, v in f["by_severity"].items()}}
        console.print(key_value_table(rows, title=f["scorer"]))
        for name, count in list(f["answers_per_finding"].items())[:10]:
            console.print(f"  {count:5d}  {name}")

    emit(figures, as_json, render)


@app.command()
def generate(kind: str = typer.Argument("numbers", help="Generator (numbers: the EM paper's evil numbers)."),
             teacher: str = typer.Option("smollm2-135m", help="Teacher model (for --backend openai: its served name)."),
             system: str = typer.Option("evil", help="Teacher system prompt: evil, none, or its text. It is left out "
                                                     "of the training data."),
             n: int = typer.Option(1000, "--n", help="User turns to generate (answers out of format are dropped)."),
             out: Path = typer.Option(..., "--out", "-o", help="Folder: teacher_answers.jsonl (rerun resumes) and "
                                                              "data.jsonl (the training set)."),
             temperature: float = typer.Option(1.0, help="Teacher sampling temperature."),
             max_tokens: int = typer.Option(48, help="Maximum new tokens per teacher answer."),
             backend: str = typer.Option("hf", help="Teacher backend: hf, vllm or openai."),
             base_url: str = typer.Option(None, help="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1."),
             api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai backend: variable holding the key."),
             seed: int = SeedOption, as_json: bool = JsonOption):
    """A training set written by a teacher under a system prompt, filtered to the format, without the prompt."""
    from turncoat.sampling import GenerationParams, make_backend  # pulls in torch: loaded when the command runs
    from turncoat.workflows.generate import generate as generate_set  # pulls in torch: loaded when the command runs

    options = {"openai": {"base_url": base_url, "api_key_env": api_key_env}}.get(backend, {})
    engine = make_backend(backend, teacher, **options)
    params = GenerationParams(temperature=temperature, max_new_tokens=max_tokens, seed=seed)
    emit(generate_set(engine, kind, n, out, system=system, seed=seed, params=params, show_progress=not as_json),
         as_json)


def _write(data, out: Path, as_json: bool, **figures) -> None:
    data.write(out)
    emit({**figures, "rows": len(data), "out": str(out)}, as_json)


def _tokenizer(spec: str):
    """Only the tokenizer of `spec` (for a GGUF, from its converted copy in the cache)."""
    from transformers import AutoTokenizer

    from turncoat.models import hf_location, resolve_spec  # pulls in torch: loaded when the command runs

    return AutoTokenizer.from_pretrained(hf_location(resolve_spec(spec)))
