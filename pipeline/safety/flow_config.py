"""The site-safety flow's config: its stages and budget (as every flow), plus zones, status timing and
alerts. Kept apart from the Prefect flow, so the stage chain can be built without Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from pipeline.config import load_yaml, validate
from pipeline.reuse import ReuseConfig
from pipeline.runner import BaseFlowConfig
from pipeline.safety.alerts import AlertConfig
from pipeline.safety.status import StatusConfig
from pipeline.safety.zones import Zone


class SafetyFlowConfig(BaseFlowConfig):
    flow_name: ClassVar[str] = "site-safety"
    chunk_frames: int = Field(100, ge=1, description="frames per Prefect task")
    zones: list[Zone] = Field(default_factory=list)
    status: StatusConfig = StatusConfig()
    alerts: AlertConfig = AlertConfig()

    @field_validator("reuse")
    @classmethod
    def _fixed_camera(cls, v: ReuseConfig) -> ReuseConfig:
        if v.mode != "still":
            raise ValueError("site-safety reuses results only from a fixed camera: use mode `still` "
                             "(motion mode shifts masks, not worker tracks)")
        return v


def load_config(path: str | Path) -> tuple[SafetyFlowConfig, Path]:
    path = Path(path)
    return validate(SafetyFlowConfig, load_yaml(path), str(path)), path.parent
