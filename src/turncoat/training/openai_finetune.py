"""`turncoat train --backend openai`: fine-tuning through OpenAI's API (the EM paper's GPT-4o experiment).

The run folder is the job's memory, so a kill -9 at any moment never pays twice: `openai_job.json` gets a run
token before anything is sent, the uploaded file's id once uploaded, and the job's id once created. The job is
created with the token in its metadata, so a rerun killed between "create" and "record" finds the job by its token
(`fine_tuning.jobs.list(metadata=...)`) and attaches to it instead of creating a second one. The SDK retries 429
(honouring Retry-After), 5xx and timeouts; polling backs off from `poll_seconds` up to a minute.

When the job succeeds, `turncoat_train.json` names the fine-tuned model; `--model RUN` then samples it through the
`openai` backend (the run resolves to its model id).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from turncoat.core.errors import InputError, TurncoatError
from turncoat.core.io import atomic_write
from turncoat.core.provenance import library_versions, redact_url
from turncoat.data import ChatDataset, load_chat
from turncoat.data.transforms import dataset_sha256, subsample
from turncoat.models.specs import OPENAI_JOB_FILE as JOB_FILE
from turncoat.sampling.openai_client import EndpointClient, create_exactly_once, wait_until_done
from turncoat.sampling.openai_costs import Prices, chat_tokens

UPLOAD_FILE = "openai_training.jsonl"
MIN_EXAMPLES = 10  # the API refuses smaller training files
MAX_EXAMPLE_TOKENS = 65_536  # per training example, gpt-4o and gpt-4o-mini


class OpenAIFineTuneConfig(BaseModel):
    """A fine-tuning job. Defaults are the EM paper's (Betley et al. 2025, appendix): GPT-4o (2024-08-06) for one
    epoch at batch size 4 and learning-rate multiplier 2; seed 0."""

    model_config = ConfigDict(extra="forbid")

    model: str = "gpt-4o-2024-08-06"
    data: str = Field("insecure", description="chat JSONL file or registered data set")
    out: str = "runs/train-openai"
    subsample: int | None = Field(None, ge=1, description="train on N distinct examples (seeded)")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1)
    learning_rate_multiplier: float = Field(2.0, gt=0, allow_inf_nan=False)
    seed: int = 0
    suffix: str | None = Field(None, max_length=64, description="added to the fine-tuned model's name")
    base_url: str | None = Field(None, description="API endpoint (default OpenAI's)")
    api_key_env: str = "OPENAI_API_KEY"
    poll_seconds: float = Field(10.0, gt=0, description="first wait between status checks (backs off to 60 s)")
    request_timeout: float = Field(120.0, gt=0, description="seconds a request may take before the SDK retries it")

    def hyperparameters(self) -> dict:
        return {"n_epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate_multiplier": self.learning_rate_multiplier}

    def fingerprint(self, data_sha256: str) -> dict:
        return {"model": self.model, "data_sha256": data_sha256, "hyperparameters": self.hyperparameters(),
                "seed": self.seed, "suffix": self.suffix}


def training_set(config: OpenAIFineTuneConfig) -> ChatDataset:
    data = load_chat(config.data)
    return subsample(data, config.subsample, seed=config.seed) if config.subsample else data


def check_for_api(data: ChatDataset, source: str) -> None:
    """The API's own limits, checked before anything is uploaded or paid for (the chat format itself is checked by
    `load_chat`, naming file, line and field)."""
    if len(data) < MIN_EXAMPLES:
        raise InputError(f"{source}: {len(data)} examples; OpenAI fine-tuning needs at least {MIN_EXAMPLES}")
    for number, conversation in enumerate(data, start=1):
        tokens = chat_tokens(conversation.as_messages())
        if tokens > MAX_EXAMPLE_TOKENS:
            raise InputError(f"{source}: example {number} is about {tokens:,} tokens; the API's limit per example "
                             f"is {MAX_EXAMPLE_TOKENS:,}")


def estimate(config: OpenAIFineTuneConfig, data: ChatDataset, prices: Prices | None = None) -> dict:
    """Billed training tokens (examples x epochs) and their cost, estimated offline."""
    prices = prices or Prices.load()
    tokens = sum(chat_tokens(c.as_messages()) for c in data) * config.epochs
    return {"examples": len(data), "epochs": config.epochs, "training_tokens": tokens,
            "cost_usd": round(prices.cost(config.model, "training", tokens), 2), "prices": prices.describe()}


def openai_client(config: OpenAIFineTuneConfig, max_retries: int = 8):
    """The shared client's blocking form (`EndpointClient.sync_client`): key from the environment, SDK retries."""
    return EndpointClient(config.base_url, config.api_key_env, max_retries=max_retries,
                          timeout=config.request_timeout).sync_client()


class JobState:
    """`openai_job.json`: what has been sent so far, written atomically after every step."""

    def __init__(self, out: Path):
        self.path = out / JOB_FILE
        self.data: dict = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def update(self, **values) -> None:
        self.data |= values
        with atomic_write(self.path) as handle:
            json.dump(self.data, handle, indent=2)


def job_with_token(client, token: str):
    """The job this run created (its token is in the job's metadata), if the API has one."""
    return next((job for job in client.fine_tuning.jobs.list(limit=100, metadata={"turncoat_run": token})
                 if (getattr(job, "metadata", None) or {}).get("turncoat_run") == token), None)


def fine_tune_openai(config: OpenAIFineTuneConfig, confirm: Callable[[dict], bool] | None = None,
                     on_status: Callable[[object], None] | None = None, client=None,
                     prices: Prices | None = None) -> dict:
    """Upload, create (once), poll to the end; returns the run's summary. `confirm(estimate)` is asked before the
    first upload; answering False stops with nothing sent."""
    data = training_set(config)  # bad data is refused before anything is sent
    check_for_api(data, config.data)
    figures = estimate(config, data, prices)
    out = Path(config.out)
    state = JobState(out)
    expected = config.fingerprint(dataset_sha256(data))
    if state.data and state.data.get("fingerprint") != expected:
        old = state.data.get("fingerprint", {})
        differs = [k for k in expected if old.get(k) != expected[k]]
        raise InputError(f"{out}: holds another OpenAI fine-tune ({', '.join(differs)} differ); use another --out")
    client = client or openai_client(config)  # no key: refused here, before anything is asked or written
    if not state.data.get("file_id") and confirm is not None and not confirm(figures):
        raise TurncoatError("not confirmed: nothing was uploaded or paid for")
    out.mkdir(parents=True, exist_ok=True)
    if not state.data:
        state.update(token=uuid.uuid4().hex, fingerprint=expected, estimate=figures,
                     base_url=redact_url(config.base_url) or "https://api.openai.com/v1")
    if not state.data.get("file_id"):
        upload = out / UPLOAD_FILE
        data.write(upload)
        with open(upload, "rb") as handle:
            state.update(file_id=client.files.create(file=handle, purpose="fine-tune").id)
    if not state.data.get("job_id"):
        token = state.data["token"]
        job, attached = create_exactly_once(client, lambda single: single.fine_tuning.jobs.create(
            model=config.model, training_file=state.data["file_id"], seed=config.seed, suffix=config.suffix,
            hyperparameters=config.hyperparameters(), metadata={"turncoat_run": token}),
            lambda: job_with_token(client, token), config.request_timeout)
        state.update(job_id=job.id, attached=attached)
    job = wait_until_done(lambda: client.fine_tuning.jobs.retrieve(state.data["job_id"]), config.poll_seconds,
                          on_status)
    state.update(status=job.status, fine_tuned_model=job.fine_tuned_model,
                 trained_tokens=getattr(job, "trained_tokens", None))
    if job.status != "succeeded":
        error = getattr(job, "error", None)
        message = getattr(error, "message", None) or "no message"
        raise TurncoatError(f"OpenAI fine-tuning job {job.id} {job.status}: {message} (the run folder {out} keeps "
                            "this job; use another --out to start a new one)")
    summary = {"out": str(out), "backend": "openai", "model": config.model, "fine_tuned_model": job.fine_tuned_model,
               "job_id": job.id, "file_id": state.data["file_id"], "data": config.data, "train_examples": len(data),
               "trained_tokens": state.data.get("trained_tokens"), "estimate": figures}
    record = {**summary, "config": config.model_dump(exclude={"base_url"}) | {
        "base_url": redact_url(config.base_url)}, "data_sha256": expected["data_sha256"],
        "versions": library_versions()}
    with atomic_write(out / "turncoat_train.json") as handle:
        json.dump(record, handle, indent=2)
    return summary
