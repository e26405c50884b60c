"""Checkpoints that say which class to build, with what arguments, and for which task.

A checkpoint is a plain dict of tensors and primitives, so it loads with `weights_only=True`:
    {"task": "segmentation", "classes": [...], "model": {"class_path": ..., "init_args": {...}},
     "state_dict": {...}, "meta": {...}}
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from pipeline.errors import WeightsError


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_path: str
    init_args: dict = {}


def import_class(path: str):
    mod, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise WeightsError(f"cannot import model class {path!r}: {e}", "use a dotted path such as segmentation_models_pytorch.Unet") from e


def build(spec: ModelSpec | dict) -> torch.nn.Module:
    spec = ModelSpec.model_validate(spec)
    return import_class(spec.class_path)(**spec.init_args)


def save(path: str | Path, model: torch.nn.Module, spec: ModelSpec | dict, task: str, classes: list[str], meta: dict | None = None):
    spec = ModelSpec.model_validate(spec)
    ckpt = {"task": task, "classes": list(classes), "model": spec.model_dump(), "meta": meta or {},
            # fp16 halves what ships in git; weights are cast back to fp32 on load
            # contiguous: a model trained channels-last saves the same plain layout as any other
            "state_dict": {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
                           for k, v in model.state_dict().items()}}
    write(path, ckpt)


def write(path: str | Path, ckpt: dict) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read(path: str | Path) -> object:
    """The raw checkpoint, loaded with weights_only; an unreadable file is a WeightsError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read weights file {path}: {e.__class__.__name__}",
                           "the file is corrupt or not an inspectflow checkpoint; re-train or re-download it") from e


def file_sha(path: str | Path) -> str:
    """A short content hash: what a head trained on another model's activations (screen, gate) checks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_task(path: str | Path, task: str, what: str, missing_fix: str, wrong_fix: str) -> dict:
    """A raw checkpoint dict that must exist and be tagged `task`; `what` names it in the errors."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{what} weights {path} do not exist", missing_fix)
    ckpt = read(path)
    if not isinstance(ckpt, dict) or ckpt.get("task") != task:
        got = ckpt.get("task") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise WeightsError(f"{path} holds weights for task {got!r}, not a {what}", wrong_fix)
    return ckpt


def load(path: str | Path, task: str) -> tuple[torch.nn.Module, dict]:
    """The model in eval mode and the checkpoint's metadata; clear errors for the usual mistakes."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist",
                           "run `dvc repro` to train it, or point the stage's `model:` at your own weights")
    ckpt = read(path)
    if not isinstance(ckpt, dict) or "task" not in ckpt or "state_dict" not in ckpt:
        raise WeightsError(f"{path} is not an inspectflow checkpoint (no task/state_dict)",
                           "save weights with pipeline.models.checkpoint.save")
    if ckpt["task"] != task:
        raise WeightsError(f"{path} holds a {ckpt['task']!r} model, but this stage needs a {task!r} model",
                           "point the stage's `model:` at weights trained for this task")
    model = build(ckpt["model"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit the model it names: {str(e)[:300]}",
                           "the checkpoint's model spec and weights disagree; re-train it") from e
    return model.eval(), {k: v for k, v in ckpt.items() if k != "state_dict"}
