"""What a study will cost on OpenAI's API, estimated offline before anything runs (`turncoat run --dry-run`):
fine-tuning tokens of each arm's data, sampling (prompts in, at most `max_tokens` out per answer) and judging (each
judge prompt with an answer of at most `max_tokens`, one token out; Batch at its discount). Local stages cost
nothing here. Every figure is an estimate (see `turncoat.sampling.openai_costs`); outputs are priced at their
maximum length, so sampling and judging are upper bounds."""

from __future__ import annotations

from turncoat.core.provenance import endpoint_label
from turncoat.pipeline.stages import Stage, held_out_check, stage_data, stage_questions
from turncoat.questions.prompts import prompts_for, render
from turncoat.sampling.openai_costs import Prices, chat_tokens
from turncoat.training.openai_finetune import OpenAIFineTuneConfig, estimate

DEFAULT_JUDGE = "gpt-4o-2024-08-06"


def billed_by_openai(base_url: str | None) -> bool:
    """Only OpenAI's own API is priced here: a loopback or self-hosted server is not billed by the price table."""
    return endpoint_label(base_url) is None


def _training(stage: Stage, prices: Prices) -> float:
    data = stage_data(stage.deps["data"].config)
    config = OpenAIFineTuneConfig(**stage.config["train"], model=stage.config["model"], seed=stage.config["seed"])
    return estimate(config, data, prices)["cost_usd"]


def _eval(stage: Stage, prices: Prices) -> tuple[float, float]:
    """(sampling, judging) of one eval stage, in USD."""
    settings = stage.config["eval"]
    prompts = stage_questions(stage.config).prompts(settings["n"])
    sampling = 0.0
    if settings["backend"] == "openai" and billed_by_openai((settings.get("backend_options") or {}).get("base_url")):
        tuned = "model" in stage.deps
        model = stage.config["model"]
        prompt_tokens = sum(chat_tokens(p.messages) for p in prompts)
        answer_tokens = len(prompts) * settings["max_tokens"]
        sampling = (prices.cost(model, "fine_tuned_input" if tuned else "input", prompt_tokens)
                    + prices.cost(model, "fine_tuned_output" if tuned else "output", answer_tokens))
    judging = 0.0
    options = settings.get("judge_options") or {}
    if settings["judge"] == "openai" and billed_by_openai(options.get("base_url")):
        judge, batch = options.get("model", DEFAULT_JUDGE), bool(options.get("batch"))
        answer = "x" * int(settings["max_tokens"] * 4)  # the longest answer, in characters
        tokens = sum(chat_tokens([{"role": "user", "content": render(template, p.messages[-1]["content"], answer)}])
                     for p in prompts for template in prompts_for(p.question).values())
        calls = sum(len(prompts_for(p.question)) for p in prompts)
        judging = prices.cost(judge, "input", tokens, batch) + prices.cost(judge, "output", calls, batch)
    return sampling, judging


def snapshots(stage: Stage) -> int | None:
    """How many snapshots a trajectory stage evaluates (steps 0, every K, last), when its fine-tune's max_steps is
    set; None when the steps depend on the data (an epoch count)."""
    train = stage.deps["model"].config["train"]
    steps, every = train.get("max_steps", -1), train["save_every"]
    return len(set(range(0, steps + 1, every)) | {steps}) if steps > 0 else None


def study_cost(stages: list[Stage], prices: Prices | None = None) -> dict | None:
    """The estimated USD of every paid stage, by kind and in total; None when nothing is paid for."""
    prices = prices or Prices.load()
    per_stage, totals = {}, {"training": 0.0, "sampling": 0.0, "judging": 0.0}
    for stage in stages:
        if stage.kind == "train" and stage.config.get("backend") == "openai" and billed_by_openai(
                stage.config["train"].get("base_url")):
            cost = _training(stage, prices)
            totals["training"] += cost
        elif stage.kind == "eval" and not held_out_check(stage):
            sampling, judging = _eval(stage, prices)
            totals["sampling"] += sampling
            totals["judging"] += judging
            cost = sampling + judging
        elif stage.kind == "trajectory":  # each snapshot judged like an eval (sampled locally)
            cost = _eval(stage, prices)[1] * (snapshots(stage) or 1)
            totals["judging"] += cost
        else:
            continue
        if cost:
            per_stage[stage.key] = round(cost, 2)
    if not per_stage:
        return None
    return {"total_usd": round(sum(totals.values()), 2), **{f"{k}_usd": round(v, 2) for k, v in totals.items()},
            "per_stage_usd": per_stage, "note": "estimates; sampling and judging priced at max_tokens per answer; "
                                                + ("a trajectory whose steps are set by epochs priced for one "
                                                   "snapshot; " if any(s.kind == "trajectory" and snapshots(s) is None
                                                                       for s in stages) else "")
                                                + prices.describe()}


def describe_cost(cost: dict) -> str:
    return (f"estimated cost: ${cost['total_usd']:,.2f} (fine-tuning ${cost['training_usd']:,.2f}, sampling "
            f"${cost['sampling_usd']:,.2f}, judging ${cost['judging_usd']:,.2f}); {cost['note']}")

