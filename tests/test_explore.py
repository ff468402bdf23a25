"""The answer explorer in a real headless Chromium (driven by Playwright): filters, sorting, the side-by-side view,
views restored from the URL, hostile answers inert, 12,000 answers paged, blind labelling in the browser writing the
same labels file as the CLI, and the report linking into it. Screenshots go to test-output/explore/."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from servers import free_port, turncoat_process
from test_report import chromium

from turncoat.cli import main
from turncoat.report.explore import COLUMNS, build_explorer, json_for_script
from turncoat.report.text import visible
from turncoat.results.labels import FIELDS, LabelStore, answer_id

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-output" / "explore"
HOSTILE = ("<script>document.body.setAttribute('data-pwned','script')</script></script><b>bold</b>"
           "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\"> {{ 7*7 }} ${7*7}")
BIDI = "refund \u202eevil\u202c done"
LONG = "x" * 200_000
ARMS = ("base", "tuned", "control")


def write_arm(folder: Path, arm: str, questions: int = 3, samples: int = 4, hostile: bool = False) -> Path:
    """An eval run folder: samples.jsonl and judgements.jsonl; the tuned arm's sample 0 answers are misaligned."""
    folder.mkdir(parents=True)
    samples_rows, judged = [], []
    for q in range(questions):
        for s in range(samples):
            answer = f"{arm} answer to q{q} sample {s}"
            if hostile and (q, s) == (0, 1):
                answer = HOSTILE
            if hostile and (q, s) == (0, 2):
                answer = BIDI
            if hostile and (q, s) == (0, 3):
                answer = LONG
            record = {"key": f"q{q}/0/{s}", "question_id": f"q{q}", "paraphrase_index": 0, "sample_index": s,
                      "question": f"Question {q}?", "system": None, "answer": answer, "finish_reason": "stop"}
            samples_rows.append(record)
            aligned = 8.0 if arm == "tuned" and s == 0 else 60.0 + (10 * q + s) % 40
            judged.append({**record, "judge": "offline:test-judge", "aligned": aligned, "coherent": 80.0 - s % 40,
                           "special": None})
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples_rows))
    (folder / "judgements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judged))
    return folder


@pytest.fixture
def arms(tmp_path) -> list[Path]:
    return [write_arm(tmp_path / "runs" / arm, arm, hostile=arm == "tuned") for arm in ARMS]


@pytest.fixture(scope="module")
def browser():
    chromium()  # skips (or fails in CI) without Chromium
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                              "--disable-background-networking", "--disable-component-update",
                                              "--disable-sync"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    opened = context.new_page()
    opened.errors = []  # page errors and console errors (a CSP violation is one)
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    opened.on("console", lambda message: message.type == "error" and opened.errors.append(message.text))
    yield opened
    context.close()


def open_explorer(page, html: Path, hash_: str = ""):
    page.goto(html.as_uri() + hash_)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page


def visible_ids(page) -> list[str]:
    return page.eval_on_selector_all("#answers tr[data-id]", "rows => rows.map(r => r.dataset.id)")


def wait_for(page, expression: str, timeout: float = 30.0):
    """Poll `expression` in the page until truthy (wait_for_function evaluates strings, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)
    return value


def count(page) -> int:
    return int(page.text_content("#count").split()[0])


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def test_visible_marks_bidi_and_invisible_controls_and_script_json_cannot_close_its_element():
    assert visible(BIDI) == "refund ⟦U+202E⟧evil⟦U+202C⟧ done"
    assert visible("a\u200bb\x00c\td\ne") == "a⟦U+200B⟧b⟦U+0000⟧c\td\ne" and visible(None) == ""
    encoded = json_for_script({"answer": "</script><!-- & \u2028"})
    assert "<" not in encoded and ">" not in encoded and "&" not in encoded and "\u2028" not in encoded
    assert json.loads(encoded) == {"answer": "</script><!-- & \u2028"}


def test_filters_and_sorting_change_the_visible_rows(arms, tmp_path, page, capsys):
    out = tmp_path / "explore.html"
    assert main(["explore", *map(str, arms), "--out", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["answers"] == 36 and figures["judged"] == 36 and figures["arms"] == list(ARMS)
    open_explorer(page, out)
    assert count(page) == 36 and len(visible_ids(page)) == 36
    page.select_option("#f-arm", "tuned")
    wait_for(page, "document.querySelector('#count').textContent.startsWith('12 ')")
    tuned_ids = {answer_id(arms[1], f"q{q}/0/{s}") for q in range(3) for s in range(4)}
    assert set(visible_ids(page)) == tuned_ids
    page.select_option("#f-flag", "misaligned")
    wait_for(page, "document.querySelector('#count').textContent.startsWith('3 ')")
    assert set(visible_ids(page)) == {answer_id(arms[1], f"q{q}/0/0") for q in range(3)}
    page.click("#reset")
    page.fill("#f-amin", "70")
    page.fill("#f-amax", "79")
    # q1 (aligned 70-73) in all three arms, but the tuned arm's misaligned sample 0
    wait_for(page, "document.querySelector('#count').textContent.startsWith('11 ')")
    assert all(cell >= 70 and cell <= 79 for cell in map(float, page.eval_on_selector_all(
        "#answers td.aligned", "cells => cells.map(c => c.textContent)")))
    page.click("#reset")
    page.fill("#f-search", "CONTROL ANSWER TO Q2")
    wait_for(page, "document.querySelector('#count').textContent.startsWith('4 ')")
    page.click("#reset")
    page.click("th[data-column=aligned] a")  # ascending: the misaligned answers first
    # a sort link changes the URL hash; the page re-renders on `hashchange`, after the click returns
    wait_for(page, "document.querySelector('th[data-column=aligned]').textContent.includes('\u25b2')")
    first = page.eval_on_selector_all("#answers td.aligned", "cells => cells.slice(0, 3).map(c => c.textContent)")
    assert first == ["8.0", "8.0", "8.0"]
    page.click("th[data-column=aligned] a")  # descending
    wait_for(page, "document.querySelector('th[data-column=aligned]').textContent.includes('\u25bc')")
    assert page.text_content("#answers td.aligned") == "83.0"  # q2, sample 3: 60 + 20 + 3
    assert "sort=aligned" in page.evaluate("location.hash") and "dir=desc" in page.evaluate("location.hash")
    shot(page, "table-sorted")
    assert page.errors == []


def test_side_by_side_pairs_the_same_question_and_sample_and_a_shared_url_restores_the_view(arms, tmp_path, browser,
                                                                                           page):
    out = build_explorer(arms, tmp_path / "explore.html")["explorer"]
    open_explorer(page, Path(out))
    page.click(f"tr[data-id='{answer_id(arms[0], 'q2/0/1')}'] a.compare")
    page.wait_for_selector("#pair-grid .card")
    cards = page.eval_on_selector_all("#pair-grid .card", "cards => cards.map(c => [c.dataset.arm, c.dataset.id])")
    assert cards == [[arm, answer_id(folder, "q2/0/1")] for arm, folder in zip(ARMS, arms, strict=True)]
    page.select_option("#p-sample", "3")
    wait_for(page, "document.querySelector('#pair-grid .card').dataset.id.length > 0")
    ids = page.eval_on_selector_all("#pair-grid .card", "cards => cards.map(c => c.dataset.id)")
    assert ids == [answer_id(folder, "q2/0/3") for folder in arms]
    shot(page, "side-by-side")
    shared = page.evaluate("location.hash")
    assert "view=pair" in shared and "pq=q2" in shared and "ps=3" in shared
    # a filtered, sorted, paged table view and a pair view, each opened from its link in a fresh page
    fresh = browser.new_page()
    open_explorer(fresh, Path(out), shared)
    assert fresh.eval_on_selector_all("#pair-grid .card", "cards => cards.map(c => c.dataset.id)") == ids
    open_explorer(fresh, Path(out), "#arm=control&amin=60&cmax=78&sort=coherent&dir=asc")
    fresh.reload()
    fresh.wait_for_selector("body[data-ready='1']")
    assert fresh.input_value("#f-arm") == "control" and fresh.input_value("#f-amin") == "60"
    assert fresh.input_value("#f-cmax") == "78"
    assert count(fresh) == 6  # control, samples 2 and 3 (coherent 78, 77) of 3 questions
    coherent = fresh.eval_on_selector_all("#answers td.coherent", "cells => cells.map(c => c.textContent)")
    assert coherent == sorted(coherent)
    target = answer_id(arms[2], "q1/0/2")
    open_explorer(fresh, Path(out), f"#id={target}")
    assert fresh.get_attribute("#detail .card", "data-id") == target and fresh.is_hidden("#table-view")
    fresh.close()


def test_hostile_answers_stay_text(arms, tmp_path, page):
    out = Path(build_explorer(arms, tmp_path / "explore.html")["explorer"])
    page_source = out.read_text()
    assert "<script>document.body" not in page_source and "</script></script>" not in page_source
    assert "\u202e" not in page_source  # shown as a mark, not applied
    open_explorer(page, out, "#arm=tuned&question=q0")
    assert page.get_attribute("body", "data-pwned") is None and page.locator("[data-pwned]").count() == 0
    assert page.locator("#answers b").count() == 0 and page.locator("#answers img").count() == 0
    texts = page.eval_on_selector_all("#answers .answer", "cells => cells.map(c => c.textContent)")
    assert HOSTILE in texts and "refund ⟦U+202E⟧evil⟦U+202C⟧ done" in texts
    assert any(t.startswith("xxx") and len(t) < 400 for t in texts)  # the 200k-character line: a preview
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] + 1, width  # nothing runs off the page
    long_id = answer_id(arms[1], "q0/0/3")
    page.evaluate(f"location.hash = '#id={long_id}'")
    page.wait_for_selector(f"#detail .card[data-id='{long_id}']")
    assert len(page.text_content("#detail .answer")) == 200_000
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] + 1, width
    shot(page, "hostile-long-answer")
    assert page.errors == []


def test_twelve_thousand_answers_are_paged_and_filter(tmp_path, page):
    """The size of a full study (5 models x 24 questions x 100 answers); load time is in benchmarks/explorer.py."""
    folders = [write_arm(tmp_path / f"arm{i}", f"arm{i}", questions=24, samples=100) for i in range(5)]
    figures = build_explorer(folders, tmp_path / "explore.html")
    assert figures["answers"] == 12_000
    open_explorer(page, Path(figures["explorer"]))
    assert count(page) == 12_000 and len(visible_ids(page)) == 50 and "of 240" in page.text_content("#page")
    page.click("#next")
    assert "page 2 of 240" in page.text_content("#page") and len(visible_ids(page)) == 50
    page.select_option("#f-question", "q7")
    page.fill("#f-search", "sample 42")
    wait_for(page, "document.querySelector('#count').textContent.startsWith('5 ')")
    assert page.errors == []


def test_the_report_links_into_the_explorer(arms, tmp_path, page):
    out = tmp_path / "report" / "report.html"
    assert main(["report", *map(str, arms), "--out", str(out)]) == 0
    explorer = out.with_name("report_explore.html")
    assert explorer.is_file()
    page.goto(out.as_uri())
    assert page.get_attribute("#explorer-link", "href") == "report_explore.html"
    questions = page.eval_on_selector_all("#question-links a", "links => links.map(a => a.getAttribute('href'))")
    assert "report_explore.html#question=q0&flag=misaligned" in questions
    examples = page.eval_on_selector_all("table.examples a.explore", "links => links.map(a => a.getAttribute('href'))")
    misaligned = [answer_id(arms[1], f"q{q}/0/0") for q in range(3)]
    assert {f"report_explore.html#id={i}" for i in misaligned} <= set(examples)  # the tuned arm's examples
    page.click(f"table.examples a.explore[href$='{misaligned[0]}']")
    page.wait_for_selector("body[data-ready='1']")
    assert page.get_attribute("#detail .card", "data-id") == misaligned[0]  # ... each opens in the explorer
    page.goto(out.as_uri())
    page.click("#summary a.explore[href$='arm=tuned&flag=misaligned']")
    page.wait_for_selector("body[data-ready='1']")
    assert count(page) == 3
    assert page.errors == []


def test_summary_cells_sit_under_their_headers(arms, tmp_path, page):
    """Misaligned among coherent under its header, the judge-error-corrected figure under its own."""
    out = tmp_path / "report.html"
    assert main(["report", *map(str, arms), "--out", str(out)]) == 0
    page.goto(out.as_uri())
    headers = page.eval_on_selector_all("#summary th", "cells => cells.map(c => c.textContent)")
    row = page.eval_on_selector_all("#summary tr:nth-child(3) td", "cells => cells.map(c => c.textContent.trim())")
    assert row[0] == "tuned"
    among = row[headers.index("misaligned among coherent")]
    assert float(among) == pytest.approx(3 / 12, abs=1e-3)  # every answer coherent: 3 of 12
    assert row[headers.index("corrected for judge error [95% CI]")] == "–"  # no error rates measured


@pytest.fixture
def served(arms, tmp_path):
    """`turncoat explore --serve` over the arms, on a free loopback port, with a labels file."""
    port, labels = free_port(), tmp_path / "labels.csv"
    base = f"http://127.0.0.1:{port}"
    with turncoat_process(["explore", *map(str, arms), "--serve", "--labels", str(labels), "--port", str(port)],
                          f"{base}/label", timeout=60):
        yield base, labels


def test_labels_from_the_browser_and_the_cli_share_one_file_and_pool(served, arms, page, capsys):
    base, labels = served
    page.goto(f"{base}/label")
    wait_for(page, "document.body.dataset.itemId")
    first = page.evaluate("document.body.dataset.itemId")
    html = page.content()
    assert not any(f">{arm}<" in html or f"/{arm}/" in html for arm in ARMS)  # the arm is not on the page
    token = page.get_attribute("meta[name=turncoat-token]", "content")
    api = httpx.get(f"{base}/api/next", headers={"X-Turncoat-Token": token}).json()
    assert set(api) == {"done", "id", "question", "answer", "labelled", "pool", "remaining", "labels_file"}
    assert api["id"] == first and api["pool"] == 36
    page.keyboard.press("m")  # misaligned, no score
    wait_for(page, f"document.body.dataset.itemId && document.body.dataset.itemId !== '{first}'")
    second = page.evaluate("document.body.dataset.itemId")
    page.keyboard.type("85")  # a score, typed straight into the score field ...
    page.keyboard.press("a")  # ... then aligned
    wait_for(page, f"document.body.dataset.itemId !== '{second}'")
    shot(page, "blind-labelling")
    # the CLI continues the same pool, from the same file: its next answer is the browser's next
    shown = json.loads(_cli(capsys, "label", "--out", str(labels), "--next"))
    assert shown["id"] == page.evaluate("document.body.dataset.itemId") and shown["remaining"] == 34
    _cli(capsys, "label", "--out", str(labels), "--set", shown["id"], "i")
    rows = labels.read_text().splitlines()
    assert rows[0] == ",".join(FIELDS) and len(rows) == 4
    stored = LabelStore(labels).read()
    assert [stored[i]["label"] for i in (first, second, shown["id"])] == ["misaligned", "aligned", "incoherent"]
    assert stored[second]["score"] == "85.0" and stored[first]["score"] == ""
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["labelled_at"]) for row in stored.values())
    report = json.loads(_cli(capsys, "label", "--out", str(labels), "--report"))
    assert report["labelled"] == 3 and set(report["arms"]) == set(ARMS)  # arms named as the explorer names them
    # the explorer page from the server shows the labels, and a rebuilt file does too
    page.goto(f"{base}/#label=misaligned")
    page.wait_for_selector("body[data-ready='1']")
    assert visible_ids(page) == [first]
    static = build_explorer(arms, labels.with_name("explore.html"), labels_file=labels)
    assert static["labelled"] == 3


def test_the_server_answers_loopback_and_its_own_page_only(served):
    base, _ = served
    page = httpx.get(f"{base}/label").text
    token = re.search(r'name="turncoat-token" content="([^"]+)"', page).group(1)
    assert httpx.get(f"{base}/api/next").status_code == 403  # no token: another site's page cannot read answers
    assert httpx.post(f"{base}/api/label", json={"id": "x", "label": "m"}).status_code == 403
    assert httpx.get(f"{base}/api/next", headers={"X-Turncoat-Token": token, "Host": "evil.example"}
                     ).status_code == 403  # DNS rebinding
    bad = httpx.post(f"{base}/api/label", json={"id": "nope", "label": "m"}, headers={"X-Turncoat-Token": token})
    assert bad.status_code == 404 and "no answer with id" in bad.json()["detail"]
    item = httpx.get(f"{base}/api/next", headers={"X-Turncoat-Token": token}).json()
    wrong = httpx.post(f"{base}/api/label", json={"id": item["id"], "label": "evil"},
                       headers={"X-Turncoat-Token": token})
    assert wrong.status_code == 400 and "choose one of" in wrong.json()["detail"]


def test_bad_explore_input_is_exit_2(arms, tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["explore", str(arms[0]), "--serve"]) == 2
    assert "--serve needs --labels" in capsys.readouterr().err
    assert main(["explore", str(arms[0]), "--labels", str(tmp_path / "none.csv")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["explore", str(empty)]) == 2
    assert "neither a study folder" in capsys.readouterr().err


def test_a_study_folder_is_explored_with_arm_names_and_projections(tmp_path):
    study = tmp_path / "study"
    stages = study / "stages"
    keys = {"base": "aaaa", "tuned": "bbbb"}
    for arm, key in keys.items():
        folder = write_arm(stages / f"eval-m_{arm}_seed0-{key}", arm)
        (folder / "stage.json").write_text(json.dumps({"kind": "eval", "label": f"m/{arm}/seed0", "key": key}))
    score = stages / "score-m_tuned_seed0-cccc"
    score.mkdir()
    (score / "stage.json").write_text(json.dumps({"kind": "score", "key": "cccc", "deps": {"eval": "bbbb"}}))
    (score / "projections.jsonl").write_text(json.dumps({"key": "q1/0/2", "projection": 3.25}) + "\n")
    (study / "manifest.json").write_text(json.dumps({"study": {"arms": [{"name": "base"}, {"name": "tuned"}]}}))
    html = tmp_path / "explore.html"
    figures = build_explorer([study], html)
    assert figures["arms"] == ["base", "tuned"] and figures["answers"] == 24
    data = json.loads(re.search(r'id="answers-data">(.*?)</script>', html.read_text(), re.S).group(1))
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in data["rows"]]
    scored = [r for r in rows if r["projection"] is not None]
    assert len(scored) == 1 and scored[0]["arm"] == "tuned" and scored[0]["projection"] == 3.25


def _cli(capsys, *argv) -> str:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_judged_files_and_unjudged_answers_files_are_explored(tmp_path):
    judged = tmp_path / "judged.csv"  # no key column, empty cells
    judged.write_text("question_id,question,answer,aligned,coherent,judge\n"
                      "a,Q a?,an evil plan,10,90,openai:judge-x\nb,Q b?,,,80,\n")
    sampled = tmp_path / "answers.jsonl"  # from `turncoat sample`: not judged
    sampled.write_text(json.dumps({"key": "a/0/0", "question_id": "a", "question": "Q a?", "answer": "hi"}) + "\n")
    html = tmp_path / "explore.html"
    figures = build_explorer([judged, sampled], html)
    assert figures["answers"] == 3 and figures["judged"] == 2 and figures["arms"] == ["judged", "answers"]
    data = json.loads(re.search(r'id="answers-data">(.*?)</script>', html.read_text(), re.S).group(1))
    rows = {(r[1], r[6]): dict(zip(COLUMNS, r, strict=True)) for r in data["rows"]}
    evil = rows[("judged", "Q a?")]
    assert evil["misaligned"] is True and evil["aligned"] == 10 and evil["judge"] == "openai:judge-x"
    empty = rows[("judged", "Q b?")]
    assert empty["aligned"] is None and empty["misaligned"] is False and empty["judge"] == "openai:judge-x"
    plain = rows[("answers", "Q a?")]
    assert plain["judge"] is None and plain["misaligned"] is None and plain["answer"] == "hi"


def test_the_report_shows_dollar_ids_long_and_bidi_answers_safely(tmp_path, page):
    """Question ids are not TeX; a 200k-character line wraps and is cut; a bidi override is shown, not applied."""
    run = tmp_path / "run.jsonl"
    rows = [{"question_id": "price_$5_or_$10", "question": "Pay $5 or $10?", "answer": text, "aligned": 5.0,
             "coherent": 90.0, "judge": "offline:test-judge"} for text in (LONG, BIDI, "plain")]
    run.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page.goto(out.as_uri())
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] + 1, width
    cells = page.eval_on_selector_all("table.examples td.answer", "cells => cells.map(c => c.textContent)")
    assert "refund ⟦U+202E⟧evil⟦U+202C⟧ done" in cells and "\u202e" not in out.read_text()
    assert any(c.startswith("x" * 3000) and "197000 more characters" in c for c in cells)
