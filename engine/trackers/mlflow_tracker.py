"""MLflow: a file store in RUN_DIR/mlruns unless MLFLOW_TRACKING_URI points elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

from engine.trackers import Tracker


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = str(v)[:500]  # MLflow caps parameter values
    return out


class MlflowTracker(Tracker):
    def __init__(self, cfg, run_dir: Path):
        super().__init__()
        import mlflow

        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir) / "mlruns").resolve().as_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ftwb")
        self.run = mlflow.start_run(run_name=Path(run_dir).name)
        mlflow.log_params(_flat(cfg.to_dict()))
        self.where = uri

    def log(self, values: dict[str, float], step: int) -> None:
        # MLflow metric names allow '/', letters, digits, '_', '-', '.' and spaces
        self.mlflow.log_metrics(values, step=step)

    def note(self, tag: str, text: str, step: int) -> None:
        self.mlflow.set_tag(tag, text[:5000])

    def close(self) -> None:
        self.mlflow.end_run()
