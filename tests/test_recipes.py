"""Every recipe in studies/ runs end to end: its `smoke` profile (the recipe's own arms, sets and stages, tiny, on
the default model) through `turncoat run`. A recipe that cannot finish fails here, not in a user's first hour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from turncoat.cli import main
from turncoat.pipeline import load_study, plan

RECIPES = sorted((Path(__file__).parent.parent / "studies").glob("*.yaml"))


def _run(recipe: Path, out: Path, capsys) -> tuple[int, str, str]:
    """`turncoat run RECIPE --profile smoke` (in this process: the suite pays torch's import once)."""
    code = main(["run", str(recipe), "--profile", "smoke", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_runs_its_smoke_profile_end_to_end(recipe, tmp_path, shared_data, default_model, capsys):
    study = load_study(recipe, "smoke")
    assert study.models == ["smollm2-135m"] and study.eval.backend == "hf"
    # no network judge: the fast offline judge (the residual-stream one costs each smoke eval a second model; the demo
    # and tests/test_offline_judge.py run it)
    assert study.eval.judge == "offline-fast"
    code, out, err = _run(recipe, tmp_path / "run", capsys)
    assert code == 0, err[-3000:]
    figures = json.loads(out)
    stages = plan(study)
    assert figures["ran"] == len(stages) and figures["skipped"] == 0
    assert {row["kind"] for row in figures["stages"]} == {s.kind for s in stages}
    assert all(row["status"] == "ran" for row in figures["stages"])
    assert Path(figures["report"]).is_file()
    if study.sae:  # evals with the diff's top latents ablated or steered record them; the report shows each diff
        for stage in stages:
            if stage.kind == "eval" and stage.config.get("sae"):
                config = json.loads((stage.folder(tmp_path / "run") / "config.json").read_text())
                done = config["sampler"]["interventions"]
                assert len(done) == stage.config["sae"].get("ablate_top", 1), done
                assert all(next(iter(d.values())).startswith("sae:") for d in done), done
        page = Path(figures["report"]).read_text()
        assert 'id="sae"' in page and page.count("Latent ") >= study.sae.top
    if study.trajectory:  # every fine-tune kept its snapshots (steps 0 and 1), each evaluated; the report plots them
        kept = [row["result"]["steps"] for row in figures["stages"] if row["kind"] == "trajectory"]
        assert kept and all(steps == [0, 1] for steps in kept), kept
        page = Path(figures["report"]).read_text()
        assert 'id="trajectory"' in page and "exceeds the 95% CI of" in page
    for row in figures["stages"]:
        if row["kind"] == "eval" and "misaligned_fraction" in row["result"]:
            assert row["result"]["answers"] == study.eval.limit * study.eval.n
            assert 0 <= row["result"]["misaligned_fraction"] <= 1
        if row["kind"] == "train":
            assert row["result"]["steps"] == 1


def test_a_recipe_broken_on_purpose_fails_its_smoke_run(tmp_path, shared_data, default_model, capsys):
    """The old em-insecure: a direction from judged-em-qwen-coder-32b alone (no aligned answer in it) stopped the
    study at its first stage. The smoke run must fail, naming why."""
    raw = yaml.safe_load((Path(__file__).parent.parent / "studies" / "em-insecure.yaml").read_text())
    raw["persona"]["direction"]["from_judged"] = ["judged-em-qwen-coder-32b"]
    raw["profiles"]["smoke"].pop("persona.direction.limit")
    broken = tmp_path / "em-insecure-broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    code, _, err = _run(broken, tmp_path / "run", capsys)
    assert code != 0
    assert "0 negative" in err, err[-2000:]
    assert not (tmp_path / "run" / "report.html").exists()
