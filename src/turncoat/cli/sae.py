"""`turncoat sae ...`: sparse autoencoders on the residual stream (sae-lens), model diffing, latent explanations.
A latent is a direction anywhere one is taken: `--direction sae:SAE_FOLDER#LATENT` (monitor, screen, score),
`--steer sae:SAE_FOLDER#LATENT@L:ALPHA`, `--ablate sae:SAE_FOLDER#LATENT`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from turncoat.cli._common import JsonOption, ModelOption, console, emit
from turncoat.core.errors import InputError
from turncoat.core.progress import progress_bar

app = typer.Typer(help="Sparse autoencoders: train (sae-lens), measure, diff a fine-tune against its base, explain "
                       "latents; a latent is a direction (sae:FOLDER#ID).", no_args_is_help=True)

SaeOption = typer.Option(..., "--sae", help="SAE folder (sae-lens format: one `turncoat sae train` wrote, or a "
                                            "pretrained sae-lens SAE saved locally).")
DataOption = typer.Option(..., "--data", help="Chat set or JSONL file (repeatable).")


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InputError(f"{name} {value}: must be 1 or more")


@app.command()
def train(model: str = ModelOption,
          layer: int = typer.Option(..., help="Residual stream after this block (0-based)."),
          data: list[str] = DataOption,
          limit: int = typer.Option(None, help="First N chats of each --data set."),
          tokens: int = typer.Option(1_000_000, help="Training tokens (the captured ones are reread in epochs if "
                                                     "the data has fewer)."),
          latents: int = typer.Option(4096, help="SAE width."),
          k: int = typer.Option(32, help="Active latents per token (TopK)."),
          batch_size: int = typer.Option(2048, help="Tokens per SAE step."),
          lr: float = typer.Option(2e-4, help="Adam learning rate."),
          dead_after_tokens: int = typer.Option(500_000, help="A latent not fired for this many tokens is dead; "
                                                              "AuxK then trains it on the live latents' residual."),
          max_length: int = typer.Option(256, help="Tokens read per chat."),
          architecture: str = typer.Option("topk", help="topk (k latents per token), batchtopk (k on average over "
                                                        "a batch) or matryoshka-batchtopk (nested prefixes also "
                                                        "reconstruct alone: against feature absorption); the "
                                                        "BatchTopK ones save as JumpReLU SAEs."),
          matryoshka_width: list[int] = typer.Option(None, help="A Matryoshka level's width (repeatable, "
                                                                "increasing; default 128, 512, ... up to "
                                                                "--latents)."),
          seed: int = typer.Option(0, help="Seed (chat split, SAE initialisation, batch order)."),
          out: Path = typer.Option(..., help="SAE folder to write (a rerun resumes what is there)."),
          as_json: bool = JsonOption):
    """Train an SAE through sae-lens on one layer's residual stream; report its quality on held-out chats."""
    from turncoat.activations.sae import SAETrainConfig, train_sae  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.workflows.sae import corpus_chats  # pulls in torch: loaded when the command runs

    _positive("--limit", limit)
    config = SAETrainConfig(model=model, layer=layer, data=list(data), tokens=tokens, latents=latents, k=k,
                            batch_size=batch_size, lr=lr, dead_after_tokens=dead_after_tokens,
                            max_length=max_length, seed=seed, architecture=architecture,
                            matryoshka_widths=list(matryoshka_width or []))
    config.check()
    chats, _ = corpus_chats(data, limit)
    with console.status(f"loading {model}"):
        loaded = load(model)

    with progress_bar("reading activations", tokens, enabled=not as_json, unit="tokens") as advance:
        info = train_sae(loaded, chats, config, out, progress=advance)  # then sae-lens' trainer shows its own bar
    figures = {"sae": str(out), **info}

    def render(f):
        q = f["quality"]
        console.print(f"{f['architecture']} SAE of {f['model']} at layer {f['layer']}: {f['latents']} latents, "
                      f"k = {f['k']}, "
                      f"{f['training_tokens']:,} training tokens ({f['distinct_tokens']:,} distinct, "
                      f"{f['epochs']} epochs); capture {f['capture_seconds']} s, training {f['train_seconds']} s")
        console.print(f"held out ({q['chats']} chats, {q['tokens']:,} tokens): variance explained "
                      f"{q['fraction_variance_explained']:.3f}, L0 {q['l0']:.1f}, dead latents {q['dead_latents']} "
                      f"({q['dead_fraction']:.1%}), cross-entropy {q['ce_clean']:.3f} -> {q['ce_with_sae']:.3f} "
                      f"(+{q['ce_increase']:.3f}; zero ablation {q['ce_zero_ablation']:.3f}; loss recovered "
                      f"{q['ce_loss_recovered']:.1%})")
        console.print(f"written to {f['sae']}")

    emit(figures, as_json, render)


@app.command()
def quality(sae: Path = SaeOption, model: str = ModelOption, data: list[str] = DataOption,
            limit: int = typer.Option(200, help="First N chats of each --data set."),
            max_length: int = typer.Option(256, help="Tokens read per chat."),
            as_json: bool = JsonOption):
    """An SAE's quality on chats (e.g. a pretrained one on your data): variance explained, L0, dead latents, and
    the cross-entropy increase when its reconstruction replaces the activation."""
    from turncoat.activations.sae import load_sae, sae_quality  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.workflows.sae import corpus_chats  # pulls in torch: loaded when the command runs

    _positive("--limit", limit)
    chats, _ = corpus_chats(data, limit)
    loaded_sae = load_sae(sae)  # before any model loads: a bad folder fails fast
    with console.status(f"loading {model}; measuring the SAE on {len(chats)} chats"):
        loaded = load(model)
        figures = {"sae": str(sae), "model": model, "layer": loaded_sae.layer, "data": list(data),
                   **sae_quality(loaded, loaded_sae.to(loaded.device), chats, max_length)}
    emit(figures, as_json)


@app.command()
def diff(base: str = typer.Option(..., help="The base model."),
         tuned: str = typer.Option(..., help="The fine-tuned model (run folder, adapter, any model spec)."),
         sae: Path = SaeOption,
         questions: str = typer.Option("core", help="Question set both models answer (first paraphrase each)."),
         limit: int = typer.Option(None, help="First N questions."),
         max_tokens: int = typer.Option(96, help="Tokens per answer."),
         temperature: float = typer.Option(0.0, help="Sampling temperature of the answers (0: greedy)."),
         top: int = typer.Option(20, help="Show the N latents the fine-tune raised most."),
         reads: str = typer.Option("pooled", help="Which answers each model reads: pooled (both models read both "
                                                  "models' answers: the shift is the model's, not the text's), own "
                                                  "(each its own: the change in what it says included) or tuned "
                                                  "(both read the tuned model's answers)."),
         out: Path = typer.Option(..., help="Folder for latents.csv (every latent, ranked), answers.jsonl, the "
                                            "plot and diff.json."),
         as_json: bool = JsonOption):
    """Rank SAE latents by how much the fine-tune raised their mean activation on the same answers."""
    from turncoat.activations.sae import load_sae  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.report.plots import top_latents  # pulls in matplotlib: loaded when the command runs
    from turncoat.sampling import GenerationParams  # pulls in torch: loaded when the command runs
    from turncoat.workflows.persona.monitor import probe_prompts  # pulls in torch: loaded when the command runs
    from turncoat.workflows.sae import DIFF_READS, model_diff, write_diff  # pulls in torch: loaded when it runs

    if reads not in DIFF_READS:
        raise InputError(f"--reads {reads}: one of {', '.join(DIFF_READS)}")
    _positive("--limit", limit)
    _positive("--top", top)
    _positive("--max-tokens", max_tokens)
    if not temperature >= 0:
        raise InputError(f"--temperature {temperature}: must be 0 or more")
    loaded_sae = load_sae(sae)  # before any model loads: a bad folder fails fast
    prompts = probe_prompts(questions, limit)
    params = GenerationParams(max_new_tokens=max_tokens, temperature=temperature)
    with console.status(f"loading {base} and {tuned}; both answer {len(prompts)} questions and read the answers "
                        f"({reads})"):
        base_model, tuned_model = load(base), load(tuned)
        figures = model_diff(base_model, tuned_model, loaded_sae.to(tuned_model.device), prompts, params, top,
                             reads=reads)
    out.mkdir(parents=True, exist_ok=True)
    plot = top_latents(figures["top"], out / "top_latents.png",
                       f"{tuned} vs {base}: SAE latents raised most (layer {figures['layer']})")
    figures = write_diff(figures, out, questions=questions, plot=str(plot))

    def render(f):
        table = Table(title=f"{f['tuned']} vs {f['base']}: SAE latents (layer {f['layer']}) the fine-tune raised "
                            f"most, on {f['chats']} answers ({f['tokens']:,} tokens, read {f['reads']})")
        for column in ("rank", "latent", "base mean", "tuned mean", "shift", "base freq.", "tuned freq."):
            table.add_column(column, justify="right")
        for r in f["top"]:
            table.add_row(str(r["rank"]), str(r["latent"]), f"{r['base_mean']:.4f}", f"{r['tuned_mean']:.4f}",
                          f"{r['shift']:+.4f}", f"{r['base_frequency']:.4f}", f"{r['tuned_frequency']:.4f}")
        console.print(table)
        console.print(f"every latent: {f['latents']}; plot: {f['plot']}; read one with `turncoat sae explain "
                      f"--sae {f['sae']} LATENT`")

    emit(figures, as_json, render)


@app.command()
def explain(latents: list[int] = typer.Argument(..., help="Latent indices."),
            sae: Path = SaeOption, model: str = ModelOption, data: list[str] = DataOption,
            limit: int = typer.Option(500, help="First N chats of each --data set."),
            top: int = typer.Option(8, help="Snippets per latent."),
            window: int = typer.Option(10, help="Tokens shown either side of the peak."),
            diff_file: Path = typer.Option(None, "--diff", help="A diff.json of `turncoat sae diff` to show in the "
                                                                "HTML page."),
            html: Path = typer.Option(None, help="Also write a self-contained HTML page (escaped)."),
            as_json: bool = JsonOption):
    """The top-activating snippets of each latent in a corpus, activating tokens marked."""
    import json

    from turncoat.activations.sae import load_sae  # pulls in torch: loaded when the command runs
    from turncoat.models import load  # pulls in torch: loaded when the command runs
    from turncoat.workflows.sae import explain as explain_latents  # pulls in torch: loaded when the command runs

    for name, value in (("--limit", limit), ("--top", top)):
        _positive(name, value)
    if window < 0:
        raise InputError(f"--window {window}: must be 0 or more")
    loaded_sae = load_sae(sae)  # before any model loads: a bad folder fails fast
    with console.status(f"loading {model}; reading the corpus"):
        loaded = load(model)
        figures = explain_latents(loaded, loaded_sae.to(loaded.device), latents, data, limit, top, window)
    if html:
        from turncoat.report.html import write_latents  # pulls in matplotlib: loaded when the command runs

        shown = json.loads(diff_file.read_text()) if diff_file else None
        plot = Path(shown["plot"]) if shown and Path(shown.get("plot", "")).is_file() else None
        figures["html"] = str(write_latents(figures, html, shown, plot))

    def render(f):
        for latent, rows in f["latents"].items():
            console.print(f"[bold]latent {latent}[/bold]" + ("" if rows else ": never active in this corpus"))
            for row in rows:
                line = Text(f"  {row['source']} #{row['chat']} peak {row['peak']:.2f}: ", style="dim")
                for token in row["tokens"]:
                    strength = token["activation"] / row["peak"] if row["peak"] else 0
                    line.append(token["text"].replace("\n", "⏎"),
                                style="bold reverse red" if strength > 0.5 else "red" if strength > 0 else None)
                console.print(line)
        if f.get("html"):
            console.print(f"HTML: {f['html']}")

    emit(figures, as_json, render)
