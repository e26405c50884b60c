"""Flow configs and the stage chain that turns frames into results."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.budget import Budget, apply_to_stage, preset
from pipeline.config import load_yaml, validate
from pipeline.core import Frame, FrameResult
from pipeline.errors import ConfigError
from pipeline.reuse import FrameGate, ReuseConfig
from pipeline.sources import SourceOptions
from stages.base import DEVICE, on_device

DEFAULT_CONFIGS = Path(__file__).resolve().parent.parent / "flows" / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    stride: int = Field(1, ge=1)
    start: int = Field(0, ge=0)
    max_frames: int | None = Field(None, ge=1)
    reconnect_tries: int = Field(5, ge=0, description="streams: reopen attempts after a drop")
    reconnect_wait_s: float = Field(0.5, gt=0)
    reconnect_max_wait_s: float = Field(8.0, gt=0)

    def options(self) -> SourceOptions:
        return SourceOptions(self.stride, self.start, self.max_frames, self.reconnect_tries, self.reconnect_wait_s,
                             self.reconnect_max_wait_s)


class VideoConfig(_Strict):
    enabled: bool = True
    scale: float = Field(0.5, gt=0, le=1)


class LinkingConfig(_Strict):
    iou: float = Field(0.3, gt=0, lt=1, description="overlap in mosaic coordinates that makes two views one component")
    max_gap_frames: int = Field(30, ge=1)
    register_width: int = Field(320, ge=64)
    register_history: int = Field(3, ge=1, description="recent frames a frame may register to when the last one "
                                  "does not match (1: the last frame only)")
    min_presence: float = Field(0.3, ge=0, le=1, description="share of the frames showing a component's place that must "
                                "show it, or it is left out of the roll-up as transient (0: keep all)")


class BaseFlowConfig(_Strict):
    """What every flow has: its stage chain, how to read the source, and the annotated video."""

    stages: list[str | dict] = Field(min_length=1)
    source: SourceConfig = SourceConfig()
    batch_size: int = Field(4, ge=1, le=256)
    chunk_frames: int = Field(64, ge=1, description="frames per Prefect task; also the resume granularity")
    video: VideoConfig = VideoConfig()
    budget: Budget = Field("balanced", description="full | balanced | fast: one knob for speed against accuracy; "
                           "explicit `reuse:` or stage settings win over it")
    reuse: ReuseConfig = ReuseConfig()
    device: str | None = Field(None, pattern=DEVICE, description="where every stage's model runs (cpu, cuda, cuda:N, "
                               "mps), over the stage YAMLs' own `device:`; ONNX Runtime stages switch to torch off the CPU")

    flow_name: ClassVar[str]

    def budget_preset(self) -> dict:
        return preset(self.flow_name, self.budget)

    def reuse_settings(self) -> ReuseConfig:
        """The budget's frame reuse, with whatever the config's own `reuse:` sets on top."""
        return ReuseConfig(**{**self.budget_preset()["reuse"], **self.reuse.model_dump(exclude_unset=True)})


class FlowConfig(BaseFlowConfig):
    """The damage-survey flow."""

    flow_name: ClassVar[str] = "damage-survey"
    linking: LinkingConfig = LinkingConfig()
    worst: int = Field(12, ge=0, description="how many worst components the report shows")


def load_flow_config(path: str | Path) -> tuple[FlowConfig, Path]:
    path = Path(path)
    return validate(FlowConfig, load_yaml(path), str(path)), path.parent


class Pipeline:
    """Stages in order; each must find its inputs among what earlier stages produce."""

    def __init__(self, stages: list, reuse: ReuseConfig | None = None):
        self.stages = stages
        self.reuse = reuse or ReuseConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the reuse reference and what stages carry between batches: a new run (or chunk) must not
        take results from the last one."""
        self.gate = FrameGate(self.reuse) if self.reuse.enabled else None
        for st in self.stages:
            if hasattr(st, "reset"):
                st.reset()

    @classmethod
    def from_config(cls, cfg: BaseFlowConfig, base_dir: Path) -> Pipeline:
        return cls.from_specs(cfg.stages, base_dir, cfg.budget_preset()["stages"], cfg.reuse_settings(), cfg.device)

    @classmethod
    def from_specs(cls, specs: list, base_dir: Path | None = None, tune: dict | None = None,
                   reuse: ReuseConfig | None = None, device: str | None = None) -> Pipeline:
        """Stage YAML paths or inline mappings, in order; `tune` holds per-stage-type overrides (a budget);
        `device`, if given, places every stage's model there."""
        from stages import parse_stage

        tune = tune or {}
        parsed = [(c, on_device(apply_to_stage(sc, tune.get(c.type_name, {})), device))
                  for c, sc in (parse_stage(s, base_dir) for s in specs)]
        have = {"image"}
        for stage_cls, _ in parsed:
            missing = set(stage_cls.inputs) - have
            if missing:
                raise ConfigError(f"stage {stage_cls.type_name!r} needs {sorted(missing)}, which no earlier stage produces",
                                  "reorder the `stages:` list or add the stage that produces it")
            have |= set(stage_cls.outputs)
        # models load only after the whole chain has validated
        stages = [stage_cls(stage_cfg) for stage_cls, stage_cfg in parsed]
        for i, stage in enumerate(stages):
            if hasattr(stage, "attach"):  # e.g. a screen binding to the stage whose activations it reads
                stage.attach(stages[:i])
        for stage in stages:
            if hasattr(stage, "prepare"):  # one-off work that needs the whole chain bound (an ONNX export)
                stage.prepare()
        return cls(stages, reuse)

    def _run(self, frames: list[Frame], motion: list | None = None) -> list[FrameResult]:
        results = [FrameResult(frame=f, motion=m) for f, m in zip(frames, motion or [None] * len(frames))]
        if results:
            for stage in self.stages:
                stage.process(results)
            for r in results:
                # after every stage, so later stages cannot re-derive what a screen dropped
                if r.screen_action() == "drop":
                    r.drop_findings()
        return results

    def __call__(self, frames: list[Frame]) -> list[FrameResult]:
        if self.gate is None:
            return self._run(frames)
        plan = self.gate.plan(frames)
        todo = [i for i, p in enumerate(plan) if p is None]
        computed = dict(zip(todo, self._run([frames[i] for i in todo], [self.gate.motion[i] for i in todo])))
        return self.gate.fill(frames, plan, computed)

    @property
    def reused(self) -> int:
        return 0 if self.gate is None else self.gate.reused

    def counters(self) -> dict[str, float]:
        """Running totals of the work skipped, per stage (`type.counter`); differences give a chunk's share."""
        out = {"frames_reused": self.reused}
        for st in self.stages:
            for k, v in (st.counters() if hasattr(st, "counters") else {}).items():
                out[f"{st.type_name}.{k}"] = v
        return out
