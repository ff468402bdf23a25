"""Running a study's stages: skip what is finished, record what ran, resume what was interrupted.

A stage is finished when its folder holds `stage.json` (written last, atomically). A stage killed half-way has no
`stage.json`, so the rerun executes it again in the same folder, where training resumes from its checkpoint and
sampling from its answers file. Every execution is appended to `executions.jsonl`; `manifest.json` says what each
stage did in this run (ran, skipped, failed), when, and with which library versions.

Executors: `local` runs stages one after another, each stage that loads a model in a fresh child process, so the
memory a fine-tune leaves behind goes back to the system before the next stage loads a model (in one process a 1.5B
fine-tune followed by its sampling reached 24 GB and was killed); `inline` runs every stage in this process (for a
debugger, and for tiny models, where a child's start-up costs more than the stage); `ray` submits every stage as a
Ray task whose arguments are its upstream stages' results, so Ray runs independent (model, arm, seed) jobs side by
side and asks for a GPU per fine-tune / sampling stage where the cluster has GPUs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from turncoat.core.errors import InputError, TurncoatError
from turncoat.core.io import atomic_write, read_jsonl
from turncoat.core.provenance import library_versions
from turncoat.pipeline import kinds  # noqa: F401  (registers the stage kinds, here and in Ray workers)
from turncoat.pipeline.stages import STAGE_KINDS, Stage, describe, plan
from turncoat.pipeline.study import Study

# The stages that load a model: a GPU each under Ray, a process each under the local executor.
GPU_KINDS = ("generate", "train", "eval", "score", "direction", "trajectory", "sae", "diff")
EXECUTORS = ("local", "inline", "ray")


class StageProcessError(TurncoatError):
    """A stage's child process ended without a result: killed by a signal (the kernel's out-of-memory killer sends
    SIGKILL) or exited on its own."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _set_threads() -> None:
    """`TURNCOAT_THREADS` pins torch's CPU threads, so executors with different defaults compute the same numbers."""
    threads = os.environ.get("TURNCOAT_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def run_stage(stage: Stage, run_dir: str | Path, quiet: bool = False, *upstream) -> dict:
    """Execute one stage unless it is finished; returns its record (with `status`: ran or skipped).
    `upstream` (results of dependencies) is unused here: passing them makes Ray wait for them."""
    run_dir = Path(run_dir)
    folder = stage.folder(run_dir)
    marker = folder / "stage.json"
    if marker.is_file():
        return {**json.loads(marker.read_text()), "status": "skipped"}
    _set_threads()
    folder.mkdir(parents=True, exist_ok=True)
    started, began = _now(), time.perf_counter()
    with open(run_dir / "executions.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": stage.kind, "label": stage.label, "key": stage.key, "started": started,
                                 "pid": os.getpid()}) + "\n")
    inputs = {role: dep.folder(run_dir) for role, dep in stage.deps.items()}
    result = STAGE_KINDS[stage.kind](stage, inputs, folder, quiet)
    record = {"kind": stage.kind, "label": stage.label, "key": stage.key, "config": stage.config,
              "deps": {role: dep.key for role, dep in stage.deps.items()}, "started": started, "finished": _now(),
              "seconds": round(time.perf_counter() - began, 1), "pid": os.getpid(),
              "process_peak_rss_mb": _peak_rss_mb(), "versions": library_versions(), "result": result}
    with atomic_write(marker) as handle:
        json.dump(record, handle, indent=2)
    return {**record, "status": "ran"}


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory so far: a stage's own peak when it ran in a child process (None where
    the system does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _stage_child(writer, stage: Stage, run_dir: str, quiet: bool) -> None:
    """A child process's body: run the stage and send back ("ok", record) or ("error", exception)."""
    if sys.platform.startswith("linux"):  # end with the parent, even when the parent is killed outright
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    try:
        outcome = ("ok", run_stage(stage, run_dir, quiet))
    except BaseException as error:  # noqa: BLE001  (handed to the parent, which raises it)
        if not isinstance(error, TurncoatError | KeyboardInterrupt):
            traceback.print_exc()
        outcome = ("error", error)
    try:
        writer.send(outcome)
    except Exception as error:  # noqa: BLE001  (what does not pickle travels as its text)
        writer.send(("error", RuntimeError(f"{outcome[1]!r} (could not be sent back whole: {error!r})")))


def run_stage_in_child(stage: Stage, run_dir: str | Path, quiet: bool = False) -> dict:
    """`run_stage` in a fresh (spawned) process: everything the stage loaded is freed when it ends. Its exceptions
    are raised here; a child that ends without a result (killed by the system) is a StageProcessError."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_stage_child, args=(writer, stage, str(run_dir), quiet),
                            name=f"turncoat {stage.kind} {stage.label}")
    child.start()
    writer.close()
    try:
        try:
            status, value = reader.recv()
        except EOFError:
            status, value = None, None
        child.join()
    except BaseException:  # Ctrl-C reaches the child too: let it stop in its own time, then make sure it has
        child.join(timeout=30)
        if child.is_alive():
            child.terminate()
            child.join()
        raise
    if status == "ok":
        return value
    if status == "error":
        raise value
    code = child.exitcode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
    hint = (" (the kernel's out-of-memory killer sends SIGKILL: `dmesg` says whether it did)"
            if code == -signal.SIGKILL else "")
    raise StageProcessError(f"stage {stage.kind} {stage.label} ({stage.key}): its process {how}{hint}; rerun the "
                            "study to resume it")


class Manifest:
    """`manifest.json`: the study, the executor, and each stage's status in this invocation."""

    def __init__(self, run_dir: Path, study: Study, stages: list[Stage], executor: str):
        self.path = run_dir / "manifest.json"
        self.data = {"study": study.model_dump(by_alias=True), "executor": executor, "started": _now(),
                     "finished": None, "versions": library_versions(),
                     "stages": [{**row, "status": "done" if row["done"] else "pending"}
                                for row in describe(stages, run_dir)]}
        self.index = {s.key: i for i, s in enumerate(stages)}
        self.save()

    def update(self, stage: Stage, status: str, record: dict | None = None) -> None:
        row = self.data["stages"][self.index[stage.key]]
        row["status"] = status
        if record:
            row |= {k: record.get(k) for k in ("started", "finished", "seconds", "result")}
        self.save()

    def save(self, finished: bool = False) -> None:
        if finished:
            self.data["finished"] = _now()
        with atomic_write(self.path) as handle:
            json.dump(self.data, handle, indent=2)


def resolve_executor(executor: str | None) -> str:
    """The executor asked for, else `$TURNCOAT_EXECUTOR`, else local; an unknown name is bad input."""
    executor = executor or os.environ.get("TURNCOAT_EXECUTOR") or "local"
    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r} (--executor or $TURNCOAT_EXECUTOR): choose {', '.join(EXECUTORS)}")
    return executor


def run_study(study: Study, run_dir: str | Path, executor: str | None = None, address: str | None = None,
              tracker=None, quiet: bool = False, on_stage=None, stages: list[Stage] | None = None) -> dict:
    """Run every stage not yet finished (of `stages`, a selection of the study's plan such as `select` gives; the
    whole plan by default); returns {stage key: record}. `on_stage(stage, index, total)` is called before each stage
    the local executor starts (the CLI's progress display)."""
    executor = resolve_executor(executor)
    run_dir = Path(run_dir)
    stages = plan(study) if stages is None else stages
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(run_dir, study, stages, executor)
    runner = {"local": partial(_run_local, isolate=True), "inline": partial(_run_local, isolate=False),
              "ray": _run_ray}[executor]
    try:
        records = runner(stages, run_dir, manifest, tracker, quiet, on_stage, address)
    finally:
        manifest.save(finished=True)
        if tracker:
            tracker.finish()
    return records


def _finished(stage, record, manifest, tracker):
    manifest.update(stage, record["status"], record)
    if tracker and record["status"] == "ran":
        tracker.log(stage, record["result"])
        log = stage.folder(manifest.path.parent) / "train_log.jsonl"
        if stage.kind == "train" and log.is_file():
            tracker.log_steps(stage, list(read_jsonl(log)))


def _run_local(stages, run_dir, manifest, tracker, quiet, on_stage, address, isolate: bool) -> dict:
    records = {}
    for index, stage in enumerate(stages):
        if on_stage:
            on_stage(stage, index, len(stages))
        separate = isolate and stage.kind in GPU_KINDS and not (stage.folder(run_dir) / "stage.json").is_file()
        try:
            records[stage.key] = (run_stage_in_child if separate else run_stage)(stage, run_dir, quiet)
        except BaseException:
            manifest.update(stage, "failed")
            raise
        _finished(stage, records[stage.key], manifest, tracker)
    return records


def _run_ray(stages, run_dir, manifest, tracker, quiet, on_stage, address) -> dict:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                           if k.startswith("TURNCOAT_") or k in ("HF_HOME", "HF_HUB_OFFLINE")}})
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(run_stage)
    refs, pending = {}, {}
    for stage in stages:
        options = {"num_gpus": _gpus_for(stage, gpus), "num_cpus": 1, "max_retries": 0}
        ref = task.options(**options).remote(stage, str(run_dir), True, *[refs[d.key] for d in stage.deps.values()])
        refs[stage.key] = ref
        pending[ref] = stage
    records = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        stage = pending.pop(done[0])
        try:
            records[stage.key] = ray.get(done[0])
        except BaseException:
            manifest.update(stage, "failed")
            raise
        _finished(stage, records[stage.key], manifest, tracker)
    return records


def _gpus_for(stage: Stage, available: float) -> float:
    """One GPU per fine-tune and per sampling stage where the cluster has GPUs; vLLM with tensor parallelism asks
    for as many as its `tensor_parallel_size`."""
    if not available or stage.kind not in GPU_KINDS:
        return 0
    settings = stage.config["eval"] if stage.kind == "eval" else stage.config.get("spec", {})
    return min(available, settings.get("backend_options", {}).get("tensor_parallel_size", 1))
