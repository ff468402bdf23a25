"""Optional experiment tracking (`--track wandb|mlflow`): each finished stage's numeric results, logged under the
study's name. Off by default; the libraries are imported only when asked for. Keys are never logged: both tools
read their credentials from the environment themselves."""

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


class WandbTracker:
    def __init__(self, study: str, config: dict):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="turncoat", name=study, config=config)

    def log(self, stage, result: dict) -> None:
        self.run.log({f"{stage.kind}/{stage.label}/{k}": v for k, v in flat_numbers(result).items()})

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
