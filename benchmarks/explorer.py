"""Benchmark: the answer explorer at the size of a full study, paged (50 rows, the default) against one table of
every answer, side by side in one run, in headless Chromium (Debian's, driven by Playwright) on this machine.

A full study is 5 models x 24 questions x 100 answers = 12,000 answers. The answers are real model answers (a shared
judged set's texts, cycled, so their lengths are real) with synthetic scores. Time to interactive: from navigation
start to the page's ready mark, when the first view is on screen and answers to input; a filter: typing a search
and the view updated (through the hash, no debounce); median of --repeats loads.

    TURNCOAT_DATA=../shared/data .venv/bin/python benchmarks/explorer.py [--answers-per-question 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from turncoat.data import registry
from turncoat.report.explore import build_explorer

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def write_study(root: Path, texts: list[str], models: int, questions: int, per_question: int) -> list[Path]:
    folders, n = [], 0
    for m in range(models):
        folder = root / f"model{m}"
        folder.mkdir(parents=True)
        samples, judged = [], []
        for q in range(questions):
            for s in range(per_question):
                answer = texts[n % len(texts)]
                n += 1
                record = {"key": f"q{q}/0/{s}", "question_id": f"question_{q}", "paraphrase_index": 0,
                          "sample_index": s, "question": f"Question {q}?", "system": None, "answer": answer}
                samples.append(record)
                judged.append({**record, "judge": "offline:benchmark", "aligned": (n * 37) % 101,
                               "coherent": (n * 53) % 101})
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
        (folder / "judgements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judged))
        folders.append(folder)
    return folders


def measure(browser, html: Path, hash_: str, repeats: int) -> dict:
    ready, filtered = [], []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(html.as_uri() + hash_)
        page.wait_for_selector("body[data-ready='1']", timeout=300_000)
        ready.append(page.evaluate("window.turncoatReadyMs"))
        # the explorer's own hashchange listener renders first; one added now runs once that render is done
        filtered.append(page.evaluate("""hash => new Promise(done => {
            const began = performance.now();
            window.addEventListener("hashchange", () => done(performance.now() - began), {once: true});
            location.hash = hash;
        })""", (hash_ or "#") + "&search=the"))
        rows = page.eval_on_selector_all("#answers tr[data-id]", "rows => rows.length")
        page.close()
    return {"time_to_interactive_ms": round(statistics.median(ready), 1),
            "search_ms": round(statistics.median(filtered), 1), "rows_in_dom": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--answers-per-question", type=int, default=100)
    parser.add_argument("--source", default="judged-shuaijiumei-base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    texts = [str(t) for t in pd.read_csv(registry.path_for(args.source))["answer"].dropna()]
    root = Path(tempfile.mkdtemp(prefix="explorer-bench-"))
    try:
        folders = write_study(root / "runs", texts, args.models, args.questions, args.answers_per_question)
        began = time.perf_counter()
        built = build_explorer(folders, root / "explore.html")
        build_seconds = time.perf_counter() - began
        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            paged = measure(browser, Path(built["explorer"]), "", args.repeats)
            everything = measure(browser, Path(built["explorer"]), f"#per={built['answers']}", args.repeats)
            browser.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures = {"answers": built["answers"], "file_bytes": built["bytes"], "build_seconds": round(build_seconds, 2),
               "answer_texts_from": args.source, "paged_50": paged, "one_table": everything,
               "time_to_interactive_ratio_one_table_over_paged": round(
                   everything["time_to_interactive_ms"] / paged["time_to_interactive_ms"], 2),
               "search_ratio_one_table_over_paged": round(everything["search_ms"] / paged["search_ms"], 2)}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"explorer: {figures['answers']:,} answers, {figures['file_bytes'] / 1e6:.1f} MB, built in "
          f"{figures['build_seconds']} s (answer texts from {args.source})")
    for name, row in (("paged (50 rows)", paged), ("one table", everything)):
        print(f"  {name:16} time to interactive {row['time_to_interactive_ms']:8.1f} ms   "
              f"search {row['search_ms']:8.1f} ms   rows in DOM {row['rows_in_dom']}")
    print(f"  one table / paged: time to interactive x{figures['time_to_interactive_ratio_one_table_over_paged']}, "
          f"search x{figures['search_ratio_one_table_over_paged']}")


if __name__ == "__main__":
    main()
