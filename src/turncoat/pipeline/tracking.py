"""Optional experiment tracking (`--track wandb|mlflow`): each finished stage's numeric results, and each training
stage's per-step loss, learning rate, grad norm and monitor figures (from its train_log.jsonl) on a step axis, logged
under the study's name. Off by default; the libraries are imported only when asked for. Keys are never logged: both
tools read their credentials from the environment themselves."""

from __future__ import annotations

from turncoat.core.errors import InputError


def flat_numbers(result: dict, prefix: str = "") -> dict[str, float]:
    numbers = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            numbers[name] = float(value)
        elif isinstance(value, int | float) and value == value:
            numbers[name] = float(value)
        elif isinstance(value, dict):
            numbers |= flat_numbers(value, f"{name}/")
    return numbers


def step_series(records: list[dict]) -> list[tuple[int, dict[str, float]]]:
    """(step, figures) of a training log: the step's loss/lr/grad norm, and each monitor's figures under its name."""
    series = []
    for record in records:
        prefix = f"{record['monitor']}/" if record.get("monitor") else ""
        figures = {f"{prefix}{k}": v for k, v in flat_numbers(record).items() if k not in ("step", "epoch")}
        if figures:
            series.append((int(record["step"]), figures))
    return series


class WandbTracker:
    def __init__(self, study: str, config: dict):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="turncoat", name=study, config=config)

    def log(self, stage, result: dict) -> None:
        self.run.log({f"{stage.kind}/{stage.label}/{k}": v for k, v in flat_numbers(result).items()})

    def log_steps(self, stage, records: list[dict]) -> None:
        prefix = f"{stage.kind}/{stage.label}"
        self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
        for step, figures in step_series(records):
            self.run.log({f"{prefix}/step": step, **{f"{prefix}/{k}": v for k, v in figures.items()}})

    def finish(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, study: str, config: dict):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(study)
        self.run = mlflow.start_run(run_name=study)
        mlflow.log_dict(config, "study.json")

    def log(self, stage, result: dict) -> None:
        clean = {f"{stage.kind}.{stage.label}.{k}".replace("/", ".").replace(":", "."): v
                 for k, v in flat_numbers(result).items()}
        self.mlflow.log_metrics(clean)

    def log_steps(self, stage, records: list[dict]) -> None:
        prefix = f"{stage.kind}.{stage.label}".replace("/", ".").replace(":", ".")
        for step, figures in step_series(records):
            self.mlflow.log_metrics({f"{prefix}.{k}".replace("/", "."): v for k, v in figures.items()}, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()


TRACKERS = {"wandb": WandbTracker, "mlflow": MlflowTracker}


def make_tracker(name: str | None, study: str, config: dict):
    if not name:
        return None
    if name not in TRACKERS:
        raise InputError(f"--track {name!r}: choose wandb or mlflow")
    try:
        return TRACKERS[name](study, config)
    except ImportError:
        raise InputError(f"--track {name}: the {name} package is not installed (pip install {name})") from None
