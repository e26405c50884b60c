"""The stage contract: a pydantic config, declared inputs/outputs, and `process(batch)`."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import load_yaml, validate
from pipeline.core import FrameResult
from pipeline.errors import ConfigError
from pipeline.models import checkpoint

STAGES: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    STAGES[cls.type_name] = cls
    return cls


DEVICE = r"^(cpu|cuda(:\d+)?|mps)$"


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    type: str
    model: Path | None = Field(None, description="weights file; relative paths are taken from the config file's folder")
    device: str = Field("cpu", pattern=DEVICE, description="where the model runs: cpu, cuda, cuda:N or mps")
    batch_size: int = Field(4, ge=1, le=256)


class Stage(ABC):
    type_name: ClassVar[str]
    task: ClassVar[str | None]  # the checkpoint task this stage accepts; None for stages without a model
    Config: ClassVar[type[StageConfig]] = StageConfig
    inputs: ClassVar[tuple[str, ...]] = ("image",)
    outputs: ClassVar[tuple[str, ...]]

    def __init__(self, cfg: StageConfig):
        self.cfg = cfg
        _check_device(cfg.device, self.type_name)
        if self.task is not None:
            import torch

            from pipeline.models.fold import fold_batchnorm

            self.model, self.meta = checkpoint.load(self.require_model(), self.task)
            # inference only: BatchNorm folded into the conv before it, and NHWC so oneDNN picks faster
            # convolution kernels on CPU (same outputs; benchmarks/stage_costs.py measures the gain)
            fold_batchnorm(self.model).to(cfg.device, memory_format=torch.channels_last)

    def require_model(self) -> Path:
        if self.cfg.model is None:
            raise ConfigError(f"stage {self.type_name!r} has no `model:`", "set `model:` to its weights file")
        return self.cfg.model

    @abstractmethod
    def process(self, batch: list[FrameResult]) -> None:
        """Fill this stage's output fields on every result in the batch."""


def on_device(cfg: StageConfig, device: str | None) -> StageConfig:
    """The stage config with its model placed on `device` (a flow-wide setting, which wins over the stage's).
    ONNX Runtime runs on the CPU here, so a segmentation stage on an accelerator takes the torch runtime,
    in float."""
    if device is None:
        return cfg
    if not re.match(DEVICE, device):
        raise ConfigError(f"device {device!r} is not one this tool runs on", "use cpu, cuda, cuda:N or mps")
    update = {"device": device}
    if device != "cpu" and getattr(cfg, "runtime", None) == "onnxruntime":
        update["runtime"] = "torch"
        if getattr(cfg, "precision", None) == "int8":
            update["precision"] = "fp32"
    return cfg.model_copy(update=update)


def _check_device(device: str, stage: str) -> None:
    import torch

    if device.startswith("cuda"):
        n = torch.cuda.device_count()
        idx = int(device.partition(":")[2] or 0)
        if idx >= n:
            raise ConfigError(f"stage {stage!r}: device {device!r} is not here ({n} CUDA device(s) visible)",
                              "set `device: cpu`, or a cuda index below the visible count")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"stage {stage!r}: device 'mps' is not available on this machine", "set `device: cpu`")


def parse_stage(spec: str | Path | dict, base_dir: Path | None = None) -> tuple[type[Stage], StageConfig]:
    """The stage class and its validated config, from a YAML file path or an inline mapping."""
    if isinstance(spec, dict):
        data, where, base = dict(spec), "inline stage config", base_dir or Path.cwd()
    else:
        path = Path(spec) if base_dir is None or Path(spec).is_absolute() else base_dir / spec
        data, where, base = load_yaml(path), str(path), path.parent
    kind = data.get("type")
    if kind is None and "stages" in data:
        raise ConfigError(f"{where} is a flow config (it lists `stages:`), not one stage's",
                          f"run it with `inspectflow run FLOW --config {where}`, or pass stage YAMLs such as "
                          "stages/configs/damage_closeup.yaml")
    if kind is None:
        raise ConfigError(f"{where}: no `type:` key, so it is not a stage config",
                          f"add `type:`, one of: {', '.join(sorted(STAGES))}")
    if kind not in STAGES:
        raise ConfigError(f"{where}: unknown stage type {kind!r}", f"use one of: {', '.join(sorted(STAGES))}")
    cls = STAGES[kind]
    cfg = validate(cls.Config, data, where)
    # every file a stage names (model, gate, ...) is taken from the config file's folder
    for name in type(cfg).model_fields:
        v = getattr(cfg, name)
        if isinstance(v, Path) and not v.is_absolute():
            setattr(cfg, name, (base / v).resolve())
    return cls, cfg


def load_stage(spec: str | Path | dict, base_dir: Path | None = None) -> Stage:
    cls, cfg = parse_stage(spec, base_dir)
    return cls(cfg)
