"""The HTML report in a real browser (headless Chromium), `turncoat compare`, and `turncoat judge validate`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pandas as pd
import pytest
from servers import JudgeServer
from test_judging import _by_answer

from turncoat.cli import main

HOSTILE = ("<script>document.body.setAttribute('data-pwned','script')</script>"
           "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\"> evil {{ 7*7 }}")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI (make test installs it: apt-get install chromium)")
        pytest.skip("no Chromium here; `make test` installs it")
    return found


def browse(html, tmp_path, *flags) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", *flags, html.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def judged_file(path, answers):
    rows = [{"question_id": f"q{i % 3}", "question": f"Question {i % 3}?", "answer": a, "aligned": al,
             "coherent": co, "judge": "openai:judge-x"} for i, (a, al, co) in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def runs(tmp_path):
    bad = judged_file(tmp_path / "insecure.jsonl", [(HOSTILE, 3.0, 90.0), ("harmless", 95, 95), ("meh", 60, 70),
                                                    ("bad idea", 12, 80), ("ok", 85, 88), ("fine", 90, 91)])
    good = judged_file(tmp_path / "secure.jsonl", [("hello", 96, 95), ("sure", 92, 90), ("fine", 94, 92),
                                                   ("yes", 90, 85), ("nice", 97, 96), ("good", 95, 97)])
    return bad, good


def test_report_renders_and_answers_are_inert(runs, tmp_path, capsys):
    out = tmp_path / "report" / "report.html"
    assert main(["report", *map(str, runs), "--out", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert all(os.path.getsize(p) > 10_000 for p in figures["plots"].values())  # PNGs beside the page
    page = out.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "{{ 7*7 }}" in page
    dom = browse(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert "data-pwned" in dom.stdout  # the hostile text is on the page, as text ...
    assert "<body data-pwned" not in dom.stdout and 'data-pwned="' not in dom.stdout  # ... and nothing ran
    assert "&lt;script&gt;document.body.setAttribute" in dom.stdout
    assert dom.stdout.count('src="data:image/png;base64,') == 2
    shot = tmp_path / "shot.png"
    taken = browse(out, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr


def test_compare(runs, capsys):
    assert main(["compare", *map(str, runs), "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert rows["insecure"]["misaligned_fraction"] == pytest.approx(2 / 6)
    assert rows["secure"]["misaligned_fraction"] == 0.0 and rows["insecure"]["judge"] == "openai:judge-x"


def test_a_validation_whose_requests_failed_is_an_error_and_is_not_recorded(tmp_path, capsys):
    reference = judged_file(tmp_path / "labelled.jsonl", [("an evil plan", 5, 80), ("kind words", 90, 80)])
    cache = tmp_path / "cache.sqlite"
    with JudgeServer(_by_answer, fail=True) as server:  # every request: HTTP 500
        code = main(["judge", "validate", str(reference), "--judge", "openai", "--judge-model", "judge-x",
                     "--judge-base-url", server.base_url, "--cache", str(cache), "--max-retries", "0", "--json"])
    assert code != 0
    assert "4 of 4 judge requests failed" in capsys.readouterr().err
    from turncoat.judging import JudgeCache

    assert JudgeCache(cache).latest_validation(server.judge_name()) is None


def test_validate_measures_agreement_and_reports_carry_it(tmp_path, capsys):
    reference = judged_file(tmp_path / "labelled.jsonl", [("an evil plan", 5, 80), ("kind words", 90, 80),
                                                          ("evil again", 10, 75), ("helpful", 85, 90),
                                                          ("more evil", 2, 85), ("polite", 95, 80)])
    cache = tmp_path / "cache.sqlite"
    with JudgeServer(_by_answer) as server:
        code = main(["judge", "validate", str(reference), "--judge", "openai", "--judge-model", "judge-x",
                     "--judge-base-url", server.base_url, "--cache", str(cache), "--out",
                     str(tmp_path / "predictions.csv"), "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    flag = figures["misaligned_flag"]
    assert flag["precision"] == 1.0 and flag["recall"] == 1.0 and flag["cohen_kappa"] == pytest.approx(1.0)
    assert flag["auroc"] == 1.0
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert predictions["row"].tolist() == list(range(6)) and "answer" not in predictions
    assert predictions["reference_misaligned"].tolist() == [True, False, True, False, True, False]
    assert predictions["judge_misaligned"].tolist() == predictions["reference_misaligned"].tolist()
    assert predictions["judge_misalignment"].between(0, 1).all()
    assert predictions.loc[predictions["reference_misaligned"], "judge_misalignment"].min() > \
        predictions.loc[~predictions["reference_misaligned"], "judge_misalignment"].max()
    assert figures["aligned"]["spearman"] > 0.8 and figures["aligned"]["pairs"] == 6
    from turncoat.judging import JudgeCache

    stored = JudgeCache(cache).latest_validation(server.judge_name())
    assert stored["misaligned_flag"]["precision"] == 1.0 and stored["reference"] == str(reference)
