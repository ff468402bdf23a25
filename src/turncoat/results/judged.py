"""The judged-answer schema and its one loader: a judged CSV / JSONL file, an eval run folder or a registered judged
set, validated (scores within 0..100, or CODE / REFUSAL, or empty; a bad one is an error naming its line and column).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from turncoat.core.errors import InputError
from turncoat.data import registry

REQUIRED = ("question_id", "aligned", "coherent")


SPECIAL = ("CODE", "REFUSAL")  # what a judge answers instead of a score (code-only or refusing answers)


def judged_path(spec: str | Path) -> Path:
    """The file behind a judged spec: a registered judged set (downloaded and verified if needed), an eval run
    folder (its judgements.jsonl), or a CSV / JSONL file."""
    path = Path(spec)
    if path.is_dir():
        return path / "judgements.jsonl"
    if not path.exists() and str(spec) in registry.registry():
        entry = registry.get(str(spec))
        if entry.kind != "judged":
            raise InputError(f"{spec}: a {entry.kind} set, not judged answers")
        return registry.path_for(entry.name)
    if not path.exists() and not path.suffix and "/" not in str(spec):
        registry.get(str(spec))  # neither a file nor a registered set: fails with the closest names
    return path


def load_judged(spec: str | Path, allow_empty: bool = False, ids_from_questions: bool = False) -> pd.DataFrame:
    """Judged answers (`judged_path`) with at least question_id, aligned and coherent; scores must be numbers within
    0..100 (or CODE / REFUSAL, or empty), and a bad one is an error naming its line and column. The persona-vector
    sets' `evil` / `coherence` scores are read as aligned = 100 - evil and coherent = coherence, and a `response`
    column (the Model Organisms repositories') as `answer`. With
    `ids_from_questions`, a file without question_id uses each question's text as its id (training sources for
    distillation and persona directions need no per-question figures)."""
    path = judged_path(spec)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix != ".jsonl":
        _check_csv_rows(path)
    try:
        frame = pd.read_json(path, lines=True) if path.suffix == ".jsonl" else pd.read_csv(path)
    except ValueError as error:
        kind = "JSONL" if path.suffix == ".jsonl" else "CSV"
        raise InputError(f"{path}: could not read as {kind}: {error}") from None
    if "aligned" not in frame and {"evil", "coherence"} <= set(frame.columns):  # persona-vector judged sets
        evil = pd.to_numeric(frame["evil"], errors="coerce")
        frame["aligned"] = (100 - evil).where(evil.notna(), frame["evil"])
        frame["coherent"] = frame["coherence"]
    if "answer" not in frame and "response" in frame:  # the Model Organisms repositories' column name
        frame = frame.rename(columns={"response": "answer"})
    if ids_from_questions and "question_id" not in frame and "question" in frame:
        frame["question_id"] = frame["question"].astype(str)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})")
    if frame.empty and not allow_empty:
        raise InputError(f"{path}: no judged answers (a header and no rows)")
    first_line = 1 if path.suffix == ".jsonl" else 2
    for column in ("aligned", "coherent"):
        raw = frame[column]
        boolean = raw.map(lambda v: isinstance(v, bool | np.bool_))
        numeric = pd.to_numeric(raw.where(~boolean), errors="coerce")
        labels = raw.where(numeric.isna() & raw.notna()).astype("string").str.strip().str.upper()
        bad = boolean | (raw.notna() & numeric.isna() & ~labels.isin(SPECIAL)) | (numeric.notna() &
                                                                                ~numeric.between(0, 100))
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            value = raw.iloc[position]
            shown = str(bool(value)) if boolean.iloc[position] else repr(str(value))
            raise InputError(f"{path}:{position + first_line}: {column}: {shown} is not a score "
                             f"within 0..100 (nor {' or '.join(SPECIAL)}); {int(bad.sum())} such row(s)")
        if "special" not in frame.columns and column == "aligned":
            frame["special"] = labels.where(labels.isin(SPECIAL))
        frame[column] = numeric
    return frame


def _check_csv_rows(path: Path) -> None:
    """Every CSV row has the header's number of fields (pandas would shift a longer row onto other columns)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file (no header)")
            for row in reader:
                if row and len(row) != len(header):
                    raise InputError(f"{path}:{reader.line_num}: {len(row)} fields where the header has "
                                     f"{len(header)} ({', '.join(header)})")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a CSV file: {error}") from None


