"""Site-safety stages: a person/head/hard-hat detector behind a keypoint-backend interface, and the hat rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core import FrameResult
from pipeline.errors import ConfigError
from pipeline.models.yolo import load_yolo
from pipeline.safety.core import Detections
from pipeline.safety.rule import RuleConfig, decide
from pipeline.safety.second_looks import second_looks
from stages.base import Stage, StageConfig, register

NEEDED = ("person", "hardhat", "head")
Merge = Literal["agree", "boost", "union"]


class TTAConfig(BaseModel):
    """Extra passes over each photo, merged with the plain one (pipeline/safety/tta.py)."""

    model_config = ConfigDict(extra="forbid")
    flip: bool = Field(True, description="also run on the left-right mirrored image")
    sizes: list[Annotated[int, Field(ge=64, le=2048)]] = Field(default_factory=list,
                                                             description="also run at these input sizes (px)")
    iou: float = Field(0.55, gt=0, lt=1, description="boxes of one class overlapping more than this are one object")
    heads: Merge = Field("boost", description="how person and head boxes merge (see hats)")
    hats: Merge = Field("agree", description="agree: the passes' boxes averaged, scored by their mean over all passes; "
                        "boost: the surest box, scored down by the share of passes that missed it; union: the surest box")


class DetectorConfig(StageConfig):
    backend: str = Field("ultralytics", description="keypoint backend; see stages.safety.BACKENDS")
    imgsz: int = Field(416, ge=64, le=2048)
    conf: float = Field(0.25, gt=0, lt=1)
    iou: float = Field(0.6, gt=0, lt=1)
    tracker: str | None = Field("bytetrack.yaml", description="ultralytics tracker config, or null for no tracking")
    class_map: dict[str, str] = Field(default_factory=dict,
                                      description="your model's class names -> person | hardhat | head")
    gate: Path | None = Field(None, description="'nothing here' gate weights (`dvc repro train_safety_gate`): "
                              "a frame with nobody in it stops after an early layer")
    gate_threshold: float | None = Field(None, ge=0, le=1, description="cell probability a frame needs to run on; "
                                         "default: the calibrated one; 0 runs everything")
    tta: TTAConfig | None = Field(None, description="test-time augmentation for photos: more heads found, at the "
                                  "cost of one detector pass per view")

    @model_validator(mode="after")
    def _tta_is_for_photos(self):
        if self.tta is not None and self.tracker is not None:
            raise ValueError("`tta:` merges passes over one photo, and a tracker needs one pass per frame: "
                             "set `tracker: null` or remove `tta:`")
        if self.tta is not None and not (self.tta.flip or self.tta.sizes):
            raise ValueError("`tta:` asks for no extra pass: set `flip: true` or list `sizes:`")
        return self


class KeypointBackend(Protocol):
    """Frames in, one `Detections` per frame out, with a head point on person/head boxes."""

    names: tuple[str, ...]

    def __call__(self, images: list[np.ndarray], track: bool) -> list[Detections]: ...

    def reset(self) -> None: ...


class UltralyticsBackend:
    """YOLO pose (person + head keypoint) or plain detect (head boxes) models, with ultralytics' trackers."""

    def __init__(self, cfg: DetectorConfig, model_path):
        self.cfg = cfg
        self.model = load_yolo(model_path)
        if self.model.task not in ("pose", "detect"):
            raise ConfigError(f"{model_path} is a YOLO {self.model.task!r} model", "use a YOLO pose or detect model")
        names = [cfg.class_map.get(n, n) for n in (self.model.names[i] for i in sorted(self.model.names))]
        if "hardhat" not in names or not {"person", "head"} & set(names):
            raise ConfigError(f"{model_path} has classes {names}; the rule needs `hardhat` and `person` or `head`",
                              "map your class names with `class_map:` in the detector's stage YAML")
        self.names = tuple(names)
        self.n_extra = 0  # people and heads only the test-time passes found
        self.gate = None
        if cfg.gate is not None:
            from adaptive.gate import YoloGate, load_gate

            gate, layer, thr = load_gate(cfg.gate, model_path, cfg.gate_threshold, "dvc repro train_safety_gate")
            self.gate = YoloGate(self.model, gate, layer, thr)

    @property
    def torch_model(self):
        """The network that runs, for a screen's taps: ultralytics' predictor deep-copies the model
        when it is set up, and runs the copy from then on."""
        predictor = getattr(self.model, "predictor", None)
        return predictor.model.model if predictor is not None else self.model.model

    def __call__(self, images, track):
        kw = dict(imgsz=self.cfg.imgsz, conf=self.cfg.conf, iou=self.cfg.iou, device=self.cfg.device, verbose=False)
        if track and self.cfg.tracker:
            # trackers are stateful: feed frames in order, one call per frame
            return self._detections([self.model.track(im, persist=True, tracker=self.cfg.tracker, **kw)[0] for im in images])
        out = self._detections(self.model.predict(images, **kw))
        tta = self.cfg.tta
        if tta is None:
            return out
        from pipeline.safety.tta import found_by_extra_passes, merge, mirrored

        passes = [out]
        if tta.flip:
            flipped = self._detections(self.model.predict([np.ascontiguousarray(im[:, ::-1]) for im in images], **kw))
            passes.append([mirrored(d, im.shape[1]) for d, im in zip(flipped, images)])
        for size in tta.sizes:
            passes.append(self._detections(self.model.predict(images, **{**kw, "imgsz": size})))
        merged = [merge(list(views), tta.iou, tta.hats, tta.heads) for views in zip(*passes)]
        self.n_extra += sum(found_by_extra_passes(m, p, tta.iou) for m, p in zip(merged, out))
        return merged

    def _detections(self, results) -> list[Detections]:
        out = []
        for r in results:
            d = Detections.from_ultralytics(r)
            d.names = self.names
            out.append(d)
        return out

    def reset(self) -> None:
        for t in getattr(getattr(self.model, "predictor", None), "trackers", None) or []:
            t.reset()


BACKENDS = {"ultralytics": UltralyticsBackend}


@register
class SafetyDetector(Stage):
    type_name = "safety_detector"
    task = None  # YOLO weights, loaded by the backend rather than as a project checkpoint
    Config: ClassVar = DetectorConfig
    outputs = ("detections",)

    def __init__(self, cfg: DetectorConfig):
        super().__init__(cfg)
        if cfg.backend not in BACKENDS:
            raise ConfigError(f"unknown keypoint backend {cfg.backend!r}", f"use one of: {', '.join(BACKENDS)}")
        self.backend: KeypointBackend = BACKENDS[cfg.backend](cfg, self.require_model())
        self.track = cfg.tracker is not None
        self.last_owners: list[int] = []

    @property
    def model(self):
        """The torch module a screen taps; None for a backend without one (an exported engine, say)."""
        return getattr(self.backend, "torch_model", None)

    def process(self, batch: list[FrameResult]) -> None:
        for r, d in zip(batch, self.backend([r.frame.image for r in batch], self.track)):
            r.detections = d
        self.last_owners = list(range(len(batch)))  # one network input per frame

    def counters(self) -> dict[str, float]:
        g = getattr(self.backend, "gate", None)
        out = {"inputs": g.n_inputs, "gated": g.n_gated} if g is not None and g.n_inputs else {}
        tta = self.cfg.tta
        if tta is not None:
            out |= {"passes": 1 + tta.flip + len(tta.sizes), "found_by_extra_passes": getattr(self.backend, "n_extra", 0)}
        return out


class RuleStageConfig(StageConfig, RuleConfig):
    mirrored_borders: bool = Field(False, description="photos squared up by mirror-padding, labelled in the pads: "
                                   "reflect the decisions beside a pad into it (pipeline/safety/pads.py)")
    hat_check: Path | None = Field(None, description="a classifier that takes a second look at each accepted hat box "
                                   "and the head under it (`dvc repro train_hat_check`; pipeline/safety/hat_check.py)")
    hat_check_threshold: float = Field(0.4, gt=0, lt=1, description="a worn call the check scores below this is no_hat")
    head_check: Path | None = Field(None, description="a classifier that takes a second look at each no_hat call's head: "
                                    "one it scores as hatted becomes unknown (`dvc repro train_head_check`; "
                                    "pipeline/safety/head_check.py)")
    head_check_threshold: float = Field(0.9, gt=0, lt=1, description="a no_hat head the check scores at or above this is unknown")
    no_hat_min_score: float = Field(0.0, ge=0, lt=1, description="a no_hat call scoring below this (head score x (1 - "
                                    "faintest fitting hat)) is reported as unknown, not as a violation; 0: keep all")


@register
class HardHatRule(Stage):
    """Head point inside a hat box, with the extra geometry of `pipeline.safety.rule`."""

    type_name = "hardhat_rule"
    task = None
    Config: ClassVar = RuleStageConfig
    inputs = ("detections",)
    outputs = ("decisions",)

    def __init__(self, cfg: RuleStageConfig):
        super().__init__(cfg)
        self.rule = RuleConfig(**{k: getattr(cfg, k) for k in RuleConfig.model_fields})
        self.hat_check = None
        if cfg.hat_check is not None:
            from pipeline.safety.hat_check import HatCheck

            self.hat_check = HatCheck(cfg.hat_check, cfg.hat_check_threshold)
        self.head_check = None
        if cfg.head_check is not None:
            from pipeline.safety.head_check import HeadCheck

            self.head_check = HeadCheck(cfg.head_check, cfg.head_check_threshold)
        self.n_frames = self.n_padded = self.n_reflected = self.n_demoted = 0

    def attach(self, earlier: list[Stage]) -> None:
        """The hat check reads the detector's hat scores: it must run beside the detector, input size and
        test-time passes it was trained with."""
        if self.hat_check is None:
            return
        from pipeline.safety.hat_check import describe, fingerprint, same_detector

        want = self.hat_check.detector
        dets = [s for s in earlier if s.type_name == SafetyDetector.type_name]
        have = fingerprint(dets[-1]) if dets else None
        if have is None or not same_detector(have, want):
            seen = describe(have) if have else "no safety_detector before it"
            raise ConfigError(f"hat check {self.cfg.hat_check.name} was trained beside {describe(want)}, but this chain has {seen}",
                              "retrain it beside this detector (`dvc repro train_hat_check`, its params name the detector "
                              "config), or remove `hat_check:` from the rule's YAML")

    def process(self, batch: list[FrameResult]) -> None:
        for r in batch:
            r.decisions, seen = second_looks(decide(r.detections, self.rule), r.frame.image, self.hat_check,
                                             self.head_check, self.cfg.mirrored_borders, self.cfg.no_hat_min_score)
            self.n_padded += seen["padded"]
            self.n_reflected += seen["reflected"]
            self.n_demoted += seen["too_faint"]
            self.n_frames += 1

    def counters(self) -> dict[str, float]:
        out = {}
        if self.cfg.mirrored_borders:
            out |= {"frames": self.n_frames, "padded": self.n_padded, "reflected": self.n_reflected}
        if self.hat_check is not None:
            out |= {"frames": self.n_frames, "vetoed": self.hat_check.n_vetoed}
        if self.head_check is not None:
            out |= {"frames": self.n_frames, "taken_back": self.head_check.n_taken_back}
        if self.cfg.no_hat_min_score > 0:
            out |= {"frames": self.n_frames, "too_faint": self.n_demoted}
        return out
