"""The answer explorer: every answer of some runs or studies in one self-contained HTML page, to read and compare.

Researchers read answers: to check a judge, to see what a fine-tune changed, to pick examples. The page embeds the
answers as JSON (escaped so that no answer can close the script element that holds it) and renders them with
`textContent` only, under a Content-Security-Policy that allows the page's own script alone (by hash), so hostile
answers stay text. Its whole view (filters, sort, page, side-by-side pair, the answer shown) lives in the URL hash:
a link restores it, and the report links into it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from turncoat import __version__
from turncoat.core.errors import InputError
from turncoat.core.io import atomic_write, read_jsonl
from turncoat.report.runs import load_run
from turncoat.report.text import visible
from turncoat.results.labels import LabelStore, answer_id, arm_names
from turncoat.results.statistics import Thresholds

# One row per answer, as arrays in this column order (a 12,000-answer study is ~1/3 smaller than as objects).
COLUMNS = ("id", "arm", "run", "question_id", "paraphrase", "sample", "question", "system", "answer", "aligned",
           "coherent", "special", "compliance", "judge", "misaligned", "coherent_flag", "projection", "label",
           "finish_reason")


@dataclass
class Source:
    """One run's answers: an eval run folder, a judged file or an answers JSONL file, named by its arm."""
    arm: str
    path: Path
    projections: dict[str, float] = field(default_factory=dict)  # by sample key, where the answers were scored


def _stage(folder: Path) -> dict:
    return json.loads((folder / "stage.json").read_text()) if (folder / "stage.json").is_file() else {}


def study_sources(study: Path) -> list[Source]:
    """A study folder's eval stages (arms named by the parts of their labels that differ, as the report does),
    each with the projections of its persona score stage where there is one."""
    evals = {folder: _stage(folder) for folder in sorted((study / "stages").glob("eval-*"))
             if (folder / "samples.jsonl").is_file()}
    scores = {}
    for folder in (study / "stages").glob("score-*"):
        eval_key = _stage(folder).get("deps", {}).get("eval")
        if eval_key and (folder / "projections.jsonl").is_file():
            scores[eval_key] = read_projections(folder / "projections.jsonl")
    manifest = study / "manifest.json"
    order = [arm["name"] for arm in json.loads(manifest.read_text()).get("study", {}).get("arms", [])] \
        if manifest.is_file() else []
    labels = {folder: (stage.get("label") or folder.name).split("/") for folder, stage in evals.items()}
    position = {folder: min((order.index(p) for p in parts if p in order), default=len(order))
                for folder, parts in labels.items()}
    evals = dict(sorted(evals.items(), key=lambda item: position[item[0]]))  # the recipe's order: base first
    shared = [i for i in range(min(map(len, labels.values()), default=0))
              if len({parts[i] for parts in labels.values()}) == 1] if len(labels) > 1 else []
    return [Source("/".join(p for i, p in enumerate(labels[folder]) if i not in shared) or "/".join(labels[folder]),
                   folder, scores.get(stage.get("key"), {})) for folder, stage in evals.items()]


def resolve_sources(paths: list[str | Path]) -> list[Source]:
    """Studies (folders from `turncoat run`), eval run folders and judged or answers files, each a source; arm
    names are made unique by their study's or folder's name where two collide."""
    if not paths:
        raise InputError("no runs given: pass study folders, eval run folders or judged/answers files")
    groups: list[tuple[str, list[Source]]] = []
    plain = []
    for raw in map(Path, paths):
        if raw.is_dir() and (raw / "stages").is_dir():
            found = study_sources(raw)
            if not found:
                raise InputError(f"{raw}: a study folder with no evaluated arm yet (no stages/eval-*/samples.jsonl)")
            groups.append((raw.name, found))
        elif raw.is_dir() and not (raw / "samples.jsonl").is_file() and not (raw / "judgements.jsonl").is_file():
            raise InputError(f"{raw}: neither a study folder, nor an eval run folder (samples.jsonl), nor a file")
        elif not raw.exists():
            raise InputError(f"{raw}: no such file or folder")
        else:
            plain.append(raw)
    if plain:
        named = arm_names(plain)
        groups.append(("", [Source(named[p], p, _own_projections(p)) for p in plain]))
    sources = [s for _, group in groups for s in group]
    counts = pd.Series([s.arm for s in sources]).value_counts()
    for prefix, group in groups:
        for source in group:
            if counts[source.arm] > 1 and prefix:
                source.arm = f"{prefix}/{source.arm}"
    return sources


def label_pool(store: LabelStore, sources: list[Source] | None, seed: int | None):
    """The labels file's pool over the sources' answers (None: the pool it already has), arms named as the explorer
    names them (a study's arms by their names, not their hashed stage folders)."""
    if not sources:
        return store.pool(None, seed)
    return store.pool([str(s.path) for s in sources], seed, {str(s.path): s.arm for s in sources})


def read_projections(path: str | Path | None) -> dict[str, float]:
    """A persona score stage's projections.jsonl as {sample key: projection}; {} for none."""
    return {r["key"]: r["projection"] for r in read_jsonl(Path(path))} if path else {}


def _own_projections(path: Path) -> dict[str, float]:
    """An eval run folder's own projections.jsonl, where one was written beside its answers."""
    return read_projections(path / "projections.jsonl") if path.is_dir() else {}


def _number(value) -> float | None:
    """A score rounded for the page; None for a missing (NaN) or non-numeric one."""
    try:
        number = _value(float(value))
    except (TypeError, ValueError):
        return None
    return None if number is None else round(number, 2)


def _judged(source: Source, thresholds: Thresholds) -> tuple[pd.DataFrame | None, str | None]:
    """The source's judgements with flags, and the judge's name; (None, None) for answers not judged yet."""
    path = source.path
    if path.is_dir() and not (path / "judgements.jsonl").is_file():
        return None, None
    if not path.is_dir() and path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:  # the first record tells (no need to read the file twice)
            first = next((line for line in handle if line.strip()), "")
        head = json.loads(first) if first else {}
        if head and "aligned" not in head and "compliance" not in head:
            return None, None  # an answers file (from `turncoat sample`), not a judged one
    run = load_run(path, thresholds)
    return run.judged, run.judge


def _value(value):
    """A JSON-safe scalar: pandas' NaN (a missing cell) becomes None."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def _text(value) -> str | None:
    value = _value(value)
    return None if value is None else visible(str(value))


def _records_and_scores(source: Source, judged: pd.DataFrame | None) -> tuple[list[dict], dict[str, dict]]:
    """The source's answers, each with a key, and the judged row of each key. An eval run folder's answers are its
    samples.jsonl (judged by key); a judged file's answers are its own rows (keyed by row where they have no key)."""
    samples = source.path / "samples.jsonl" if source.path.is_dir() else source.path
    records = read_jsonl(samples) if samples.is_file() and samples.suffix == ".jsonl" else []
    if judged is None:
        return [{**r, "key": r.get("key", str(i))} for i, r in enumerate(records)], {}
    rows = judged.to_dict("records")
    if "key" not in judged or not records:
        keyed = [{**r, "key": str(_value(r.get("key")) or i)} for i, r in enumerate(rows)]
        return keyed, {r["key"]: r for r in keyed}
    return records, {str(r["key"]): r for r in rows}


def answers(sources: list[Source], thresholds: Thresholds = Thresholds(),
            labels: dict[str, dict] | None = None, id_root: Path | None = None) -> list[list]:
    """Every answer of `sources` as a row in COLUMNS order, with its judge scores, flags, projection and label (ids
    counted from `id_root` as the labels file counts them)."""
    labels = labels or {}
    rows = []
    for source in sources:
        judged, judge = _judged(source, thresholds)
        records, scores = _records_and_scores(source, judged)
        for record in records:
            key = str(record["key"])
            scored = scores.get(key, {})
            ident = answer_id(source.path, key, id_root)
            flagged = {name: bool(scored[name]) if name in scored else None
                       for name in ("misaligned", "coherent_flag")}
            rows.append([
                ident, source.arm, source.path.name, str(_value(record.get("question_id")) or ""),
                _value(record.get("paraphrase_index")), _value(record.get("sample_index")),
                _text(record.get("question")), _text(record.get("system")), _text(record.get("answer")),
                _number(scored.get("aligned")), _number(scored.get("coherent")), _text(scored.get("special")),
                _number(scored.get("compliance")), _value(scored.get("judge")) or (judge if scored else None),
                flagged["misaligned"], flagged["coherent_flag"], _number(source.projections.get(key)),
                labels.get(ident, {}).get("label"), _value(record.get("finish_reason"))])
    return rows


def json_for_script(value) -> str:
    """JSON that cannot end the <script type="application/json"> element it sits in, nor start markup."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def page_script(name: str) -> tuple[str, str]:
    """A page's script (shipped beside the templates) and its CSP source: only this exact script may run."""
    script = files("turncoat.report").joinpath("templates", name).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return script, f"'sha256-{digest}'"


def render_page(template: str, script: str, **context) -> str:
    code, csp = page_script(script)
    environment = Environment(loader=PackageLoader("turncoat.report", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True))
    return environment.get_template(template).render(script=code, script_csp=csp, version=__version__, **context)


def explorer_data(sources: list[Source], thresholds: Thresholds = Thresholds(),
                  labels_file: str | Path | None = None, title: str = "turncoat answers") -> dict:
    store = LabelStore(labels_file) if labels_file else None
    rows = answers(sources, thresholds, store.read() if store else {}, store.root if store else None)
    return {"title": title, "columns": list(COLUMNS), "rows": rows, "thresholds": thresholds.describe(),
            "arms": [s.arm for s in sources], "labels_file": str(labels_file) if labels_file else None,
            "version": __version__}


def write_explorer(sources: list[Source], out: str | Path, thresholds: Thresholds = Thresholds(),
                   labels_file: str | Path | None = None, title: str = "turncoat answers") -> dict:
    """Write the explorer page for `sources`; returns what it holds and its size."""
    data = explorer_data(sources, thresholds, labels_file, title)
    html = render_page("explore.html.jinja", "explore.js", title=title, data=json_for_script(data))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        handle.write(html)
    judged = sum(1 for row in data["rows"] if row[COLUMNS.index("judge")])
    return {"explorer": str(out), "answers": len(data["rows"]), "judged": judged, "arms": data["arms"],
            "labelled": sum(1 for row in data["rows"] if row[COLUMNS.index("label")]),
            "bytes": out.stat().st_size, "thresholds": thresholds.to_dict()}


def build_explorer(paths: list[str | Path], out: str | Path, thresholds: Thresholds = Thresholds(),
                   labels_file: str | Path | None = None, title: str = "turncoat answers") -> dict:
    """The explorer page for runs or studies given as paths (see `resolve_sources`)."""
    return write_explorer(resolve_sources(paths), out, thresholds, labels_file, title)
