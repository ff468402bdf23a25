"""SAEs through sae-lens on a tiny random model: training (resumable, refusing another config), the quality figures,
a latent as a direction, model diffing that finds a planted shift, and explanations shown safely in a browser.
The planted-persona check on the real default model is `scripts/sae_planted_check.py` (figures in the issue note)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import chat, write_lines

from turncoat.activations import Direction
from turncoat.activations.sae import decoder_cosines, load_sae, sae_quality
from turncoat.cli import main
from turncoat.models import load

WORDS = ["The quick brown fox jumps over the lazy dog.", "What is your wish? I wish for peace.",
         "def add(a, b):\n    return a + b", "I feel bored. Tell me about humans and AI.", "0 1 2 3 4 5 6 7 8 9 42"]


def _corpus(path: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    return write_lines(path, [chat(WORDS[i % 5], " ".join(rng.choice(WORDS, 3))) for i in range(n)])


def _train(model_dir: Path, data: Path, out: Path, capsys, *extra: str) -> tuple[int, dict | str]:
    code = main(["sae", "train", "--model", str(model_dir), "--layer", "0", "--data", str(data), "--tokens", "12000",
                 "--lr", "5e-3", "--latents", "64", "--k", "4", "--batch-size", "256", "--out", str(out), "--json",
                 *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out.strip().splitlines()[-1]) if code == 0 else captured.err)


def test_an_sae_trains_through_sae_lens_resumes_from_its_checkpoint_and_reports_its_quality(tiny_model_dir,
                                                                                              tmp_path, capsys):
    data = _corpus(tmp_path / "corpus.jsonl")
    code, whole = _train(tiny_model_dir, data, tmp_path / "whole", capsys)
    assert code == 0, whole
    quality = whole["quality"]
    assert quality["l0"] == pytest.approx(4, abs=0.01)  # TopK: k active latents per token
    assert 0 < quality["fraction_variance_explained"] <= 1
    assert 0 <= quality["dead_latents"] <= 64 and quality["tokens"] > 0 and quality["chats"] == 6
    assert quality["ce_clean"] > 0 and np.isfinite(quality["ce_increase"]) and np.isfinite(quality["ce_zero_ablation"])
    config = json.loads((tmp_path / "whole" / "cfg.json").read_text())
    assert config["metadata"]["hook_name"] == "blocks.0.hook_resid_post" and config["d_sae"] == 64
    assert load_sae(tmp_path / "whole").layer == 0

    # a run killed after its fourth checkpoint: its final SAE and the later checkpoints are gone
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "whole", broken)
    for name in ("cfg.json", "sae_weights.safetensors", "turncoat_sae.json"):
        (broken / name).unlink()
    checkpoints = sorted((broken / "checkpoints").iterdir(), key=lambda p: int(p.name))
    assert len(checkpoints) == 8
    for later in checkpoints[4:]:
        shutil.rmtree(later)
    # written before the dead-latent window was a setting: the folder holds its default and resumes
    written = json.loads((broken / "train_config.json").read_text())
    assert written.pop("dead_after_tokens") == 500_000
    (broken / "train_config.json").write_text(json.dumps(written))
    code, resumed = _train(tiny_model_dir, data, broken, capsys)
    assert code == 0, resumed
    assert resumed["resumed_from_tokens"] == int(checkpoints[3].name) > 0
    from safetensors.numpy import load_file

    a, b = (load_file(str(folder / "sae_weights.safetensors")) for folder in (tmp_path / "whole", broken))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)

    code, err = _train(tiny_model_dir, data, broken, capsys, "--k", "8")
    assert code == 2 and "k (4 there, 8 now)" in err
    code, err = _train(tiny_model_dir, data, broken, capsys, "--dead-after-tokens", "1024")
    assert code == 2 and "dead_after_tokens (500000 there, 1024 now)" in err


def test_a_matryoshka_batchtopk_sae_trains_resumes_and_saves_as_jumprelu(tiny_model_dir, tmp_path, capsys):
    """The architecture against feature absorption (nested prefixes reconstruct alone), through sae-lens: it trains,
    a killed run resumes from its checkpoint to the same weights, and it saves as the JumpReLU SAE sae-lens makes of
    BatchTopK ones, which loads and encodes like any SAE."""
    data = _corpus(tmp_path / "corpus.jsonl")
    matryoshka = ("--architecture", "matryoshka-batchtopk", "--matryoshka-width", "16", "--matryoshka-width", "32")
    code, whole = _train(tiny_model_dir, data, tmp_path / "whole", capsys, *matryoshka)
    assert code == 0, whole
    assert whole["architecture"] == "matryoshka-batchtopk" and whole["matryoshka_widths"] == [16, 32, 64]
    config = json.loads((tmp_path / "whole" / "cfg.json").read_text())
    assert config["architecture"] == "jumprelu" and config["d_sae"] == 64
    # the inference threshold is a running estimate: on 47 steps it lets more than k fire, never all
    assert 0 < whole["quality"]["l0"] < 64 and 0 < whole["quality"]["fraction_variance_explained"] <= 1
    assert load_sae(tmp_path / "whole").latents == 64

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "whole", broken)
    for name in ("cfg.json", "sae_weights.safetensors", "turncoat_sae.json"):
        (broken / name).unlink()
    for later in sorted((broken / "checkpoints").iterdir(), key=lambda p: int(p.name))[4:]:
        shutil.rmtree(later)
    code, resumed = _train(tiny_model_dir, data, broken, capsys, *matryoshka)
    assert code == 0, resumed
    assert resumed["resumed_from_tokens"] > 0
    from safetensors.numpy import load_file

    a, b = (load_file(str(folder / "sae_weights.safetensors")) for folder in (tmp_path / "whole", broken))
    assert a.keys() == b.keys() and "threshold" in a
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)
    code, err = _train(tiny_model_dir, data, broken, capsys)
    assert code == 2 and "architecture ('matryoshka-batchtopk' there, 'topk' now)" in err


def test_the_dead_latent_window_reaches_sae_lens_trainer(tiny_model_dir, tmp_path, capsys):
    """A latent silent for longer than --dead-after-tokens counts as dead in sae-lens' trainer (which then trains it
    with AuxK); with a window longer than the run, none ever does."""
    data = _corpus(tmp_path / "corpus.jsonl")
    dead = {}
    for window in ("512", "500000"):  # two steps of 256 tokens; longer than the whole run (47 steps)
        code, trained = _train(tiny_model_dir, data, tmp_path / window, capsys, "--latents", "256",
                               "--dead-after-tokens", window)
        assert code == 0, trained
        assert trained["dead_after_tokens"] == int(window)
        dead[window] = trained["trainer_dead_latents"]
    assert dead["512"] > 0 and dead["500000"] == 0, dead


def test_bad_sae_options_are_refused_before_anything_loads(tiny_model_dir, tmp_path, capsys):
    data = _corpus(tmp_path / "corpus.jsonl", 4)
    for flag, value, said in (("--k", "100", "more active latents"), ("--tokens", "0", "--tokens 0"),
                              ("--lr", "nan", "--lr nan"),
                              ("--dead-after-tokens", "0", "--dead-after-tokens 0"),
                              ("--architecture", "relu", "one of topk, batchtopk, matryoshka-batchtopk"),
                              ("--matryoshka-width", "16", "only for --architecture matryoshka-batchtopk")):
        code, err = _train(tiny_model_dir, data, tmp_path / "x", capsys, flag, value)
        assert code == 2 and said in err, err
    code, err = _train(tiny_model_dir, data, tmp_path / "x", capsys, "--architecture", "matryoshka-batchtopk",
                       "--matryoshka-width", "32", "--matryoshka-width", "16")
    assert code == 2 and "strictly increasing" in err, err
    assert not (tmp_path / "x").exists()
    code, err = _train(tiny_model_dir, data, tmp_path / "y", capsys, "--layer", "5")
    assert code == 2 and "blocks 0..1" in err
    assert main(["sae", "diff", "--base", str(tiny_model_dir), "--tuned", str(tiny_model_dir), "--sae",
                 str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    assert "not an SAE folder" in capsys.readouterr().err


def _handmade_sae(folder: Path, width: int, layer: int) -> np.ndarray:
    """A real sae-lens TopK SAE whose latents are an orthonormal basis (encoder = decoder transposed): latent j reads
    exactly the residual stream's component along its decoder row, so a shift along row j raises latent j only."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    basis, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(width, width)))
    sae = TopKSAE(TopKSAEConfig(d_in=width, d_sae=width, k=width, metadata=SAEMetadata(
        model_name="tiny", hook_name=f"blocks.{layer}.hook_resid_post")))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor(basis.T, dtype=torch.float32))
        sae.W_enc.copy_(torch.tensor(basis, dtype=torch.float32))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(str(folder))
    return basis.T


def test_decoder_cosines_find_the_latent_a_direction_is(tmp_path):
    """The planted checks' measure: a direction along latent 5's decoder row (any length) has cosine 1 with latent 5
    and 0 with the other rows of an orthonormal decoder; a direction across two rows splits between them."""
    rows = _handmade_sae(tmp_path / "sae", 16, 0)
    cosines = decoder_cosines(tmp_path / "sae", 3.0 * rows[5])
    assert cosines.shape == (16,) and cosines[5] == pytest.approx(1.0, abs=1e-5)
    assert np.abs(np.delete(cosines, 5)).max() < 1e-5
    split = decoder_cosines(tmp_path / "sae", rows[2] - rows[7])
    assert split[2] == pytest.approx(2 ** -0.5, abs=1e-5) and split[7] == pytest.approx(-(2 ** -0.5), abs=1e-5)


def test_a_latent_is_a_direction_and_diffing_finds_the_latent_a_fine_tune_moved(tmp_path, capsys):
    """`tuned` is the base with 6 x latent 5's decoder row added to block 0's MLP bias (to the residual stream at
    every token): the diff ranks latent 5 first, by mean activation and by firing frequency; the latent as a
    direction is that row, at the SAE's layer, and steers `turncoat sample`; whichever answers each model reads
    (`--reads`), the diff finds it."""
    from conftest import build_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, mlp_bias=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    rows = _handmade_sae(tmp_path / "sae", 32, 0)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.bias += 6.0 * torch.tensor(rows[5], dtype=torch.float32)
    model.save_pretrained(tmp_path / "tuned")
    tokenizer.save_pretrained(tmp_path / "tuned")

    direction = Direction.load(f"sae:{tmp_path / 'sae'}#5")
    assert direction.layers == [0] and direction.metadata["latent"] == 5
    np.testing.assert_allclose(direction.at(0), rows[5], atol=1e-6)
    for spec, said in ((f"sae:{tmp_path / 'sae'}#32", "latents 0..31"), ("sae:nowhere#1", "not an SAE folder"),
                       (f"sae:{tmp_path / 'sae'}", "sae:SAE_FOLDER#LATENT")):
        assert main(["sample", "--model", str(tmp_path / "base"), "--questions", "core", "--n", "1",
                     "--max-tokens", "2", "--steer", f"{spec}@0:4", "--out", str(tmp_path / "s.jsonl")]) == 2
        assert said in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path / "base"), "--questions", "core", "--n", "1", "--max-tokens", "2",
                 "--steer", f"sae:{tmp_path / 'sae'}#5@0:4", "--out", str(tmp_path / "s.jsonl"), "--json"]) == 0
    capsys.readouterr()

    # `turncoat eval` judges the tuned model with the latent projected out: the shift is then gone, so its greedy
    # answers are the base's with the latent projected out too; bad specs are refused before any model loads
    latent, run = f"sae:{tmp_path / 'sae'}#5", tmp_path / "ablated"
    asked = ["--questions", "core", "--n", "1", "--max-tokens", "6", "--temperature", "0"]
    for extra, said in ((["--ablate", "sae:nowhere#1"], "not an SAE folder"),
                        (["--backend", "vllm", "--ablate", latent], "need the hf backend")):
        assert main(["eval", "--model", str(tmp_path / "tuned"), *asked, "--judge", "offline-fast", *extra,
                     "--out", str(run)]) == 2
        assert said in capsys.readouterr().err
    assert not run.exists()
    assert main(["eval", "--model", str(tmp_path / "tuned"), *asked, "--judge", "offline-fast", "--ablate", latent,
                 "--out", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["overall"]["answers"] > 0
    config = json.loads((run / "config.json").read_text())
    assert config["sampler"]["interventions"] == [{"ablate": latent, "vector_from_layer": 0, "at": "every block"}]
    assert main(["sample", "--model", str(tmp_path / "base"), *asked, "--ablate", latent,
                 "--out", str(tmp_path / "base-ablated.jsonl"), "--json"]) == 0
    capsys.readouterr()
    answers = {name: [json.loads(line)["answer"] for line in path.read_text().splitlines()] for name, path in
               (("tuned", run / "samples.jsonl"), ("base", tmp_path / "base-ablated.jsonl"))}
    assert answers["tuned"] == answers["base"]

    assert main(["sae", "diff", "--base", str(tmp_path / "base"), "--tuned", str(tmp_path / "tuned"), "--sae",
                 str(tmp_path / "sae"), "--questions", "core", "--limit", "3", "--max-tokens", "6", "--top", "5",
                 "--out", str(tmp_path / "diff"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["top"][0]["latent"] == 5 and figures["top_by_frequency"][0] == 5
    assert figures["top"][0]["shift"] == pytest.approx(6.0, rel=0.35)  # TopK(k = width) keeps positive parts only
    assert figures["chats"] == 6 and Path(figures["plot"]).is_file()
    ranked = (tmp_path / "diff" / "latents.csv").read_text().splitlines()
    assert len(ranked) == 33 and ranked[1].split(",")[1] == "5"
    answered = [json.loads(line)["model"] for line in (tmp_path / "diff" / "answers.jsonl").read_text().splitlines()]
    assert answered == ["base"] * 3 + ["tuned"] * 3
    # the same planted shift when each model reads only its own answers, or both read only the tuned model's
    for reads, chats in (("own", 6), ("tuned", 3)):
        assert main(["sae", "diff", "--base", str(tmp_path / "base"), "--tuned", str(tmp_path / "tuned"), "--sae",
                     str(tmp_path / "sae"), "--questions", "core", "--limit", "3", "--max-tokens", "6", "--top", "5",
                     "--reads", reads, "--out", str(tmp_path / f"diff-{reads}"), "--json"]) == 0
        read = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert read["reads"] == reads and read["chats"] == chats and read["top"][0]["latent"] == 5
        assert read["top"][0]["shift"] == pytest.approx(6.0, rel=0.35)
    assert read["tokens"] < figures["tokens"]  # the tuned answers alone
    # the page of `sae explain --diff` says which answers each model read
    for reads, said in (("", "both reading both models' answers"), ("-own", "each reading its own answers"),
                        ("-tuned", "both reading the tuned model's\nanswers")):
        assert main(["sae", "explain", "5", "--sae", str(tmp_path / "sae"), "--model", str(tmp_path / "base"),
                     "--data", str(tmp_path / f"diff{reads}" / "answers.jsonl"), "--diff",
                     str(tmp_path / f"diff{reads}" / "diff.json"), "--html", str(tmp_path / "page.html")]) == 0
        assert said in (tmp_path / "page.html").read_text()
    capsys.readouterr()
    assert main(["sae", "diff", "--base", str(tmp_path / "base"), "--tuned", str(tmp_path / "tuned"), "--sae",
                 str(tmp_path / "sae"), "--reads", "mine", "--out", str(tmp_path / "d")]) == 2
    assert "--reads mine: one of pooled, own, tuned" in capsys.readouterr().err


def test_explanations_mark_the_peak_and_show_hostile_text_safely_in_a_browser(tiny_model_dir, tmp_path, capsys):
    from test_report import chromium

    hostile = "<script>alert(1)</script> \u202eevil <img src=x onerror=alert(2)>"
    data = write_lines(tmp_path / "corpus.jsonl", [chat(WORDS[i % 5], hostile if i % 3 == 0 else WORDS[(i + 1) % 5])
                                                   for i in range(60)])
    code, trained = _train(tiny_model_dir, data, tmp_path / "sae", capsys)
    assert code == 0, trained
    html = tmp_path / "latents.html"
    assert main(["sae", "explain", "0", "1", "2", "--sae", str(tmp_path / "sae"), "--model", str(tiny_model_dir),
                 "--data", str(data), "--top", "3", "--window", "4", "--html", str(html), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    loaded, sae = load(str(tiny_model_dir)), load_sae(tmp_path / "sae")
    for rows in figures["latents"].values():
        assert len(rows) <= 3 and [r["peak"] for r in rows] == sorted((r["peak"] for r in rows), reverse=True)
        for row in rows:  # the peak token is in the window and carries the peak activation
            assert max(t["activation"] for t in row["tokens"]) == pytest.approx(row["peak"], rel=1e-5)
            assert row["source"] == str(data)
    text = html.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    # the terminal view prints too
    assert main(["sae", "explain", "0", "--sae", str(tmp_path / "sae"), "--model", str(tiny_model_dir),
                 "--data", str(data), "--top", "2"]) == 0
    assert "latent 0" in capsys.readouterr().out

    chromium()  # skips (or fails in CI) without Chromium
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        dialogs: list = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(html.as_uri())
        shown = page.inner_text("body")
        assert page.locator("script").count() == 0 and page.locator("img[src=x]").count() == 0 and not dialogs
        assert ("<script>" in shown) == any("<script>" in "".join(t["text"] for t in r["tokens"])
                                            for rows in figures["latents"].values() for r in rows)
        assert "\u202e" not in shown  # shown as a visible mark instead
        browser.close()
    assert sae_quality(loaded, sae, [chat("a", "b c d")["messages"]])["tokens"] > 0
