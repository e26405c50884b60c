"""Ultralytics, imported the offline way: no hub, no telemetry, no DVC callbacks during our own training."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pipeline.errors import WeightsError


@lru_cache(maxsize=None)
def ultralytics():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # keep ultralytics' settings file out of the user's home unless they chose a place
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "inspectflow" / "ultralytics"))
    import ultralytics as ul
    from ultralytics.utils import SETTINGS

    off = {"sync", "dvc", "mlflow", "wandb", "tensorboard", "clearml", "comet", "raytune", "vscode_msg"}
    SETTINGS.update({k: False for k in off if k in SETTINGS})
    return ul


def load_yolo(path: str | Path, task: str | None = None):
    """A YOLO model from a .pt file, with errors that name the file and what to do."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist",
                           "run `dvc repro` to train it, or point the stage's `model:` at your own YOLO .pt")
    try:
        model = ultralytics().YOLO(str(path), task=task)
    except Exception as e:  # ultralytics raises many types for a bad file
        raise WeightsError(f"{path} is not a readable YOLO checkpoint ({type(e).__name__}: {e})",
                           "re-export it with ultralytics, or run `dvc repro` to retrain") from e
    if task and model.task != task:
        raise WeightsError(f"{path} holds a YOLO {model.task!r} model, this stage needs {task!r}",
                           f"point `model:` at a YOLO {task} checkpoint")
    return model
