"""The `screen` stage: flags frames whose activations in another stage's model look unlike clean
training data (adversarial or out-of-distribution input). It taps the activations that stage
computes anyway, so it adds no second forward pass; it must come after that stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.core import FrameResult
from pipeline.errors import ConfigError, WeightsError
from pipeline.models.checkpoint import file_sha
from pipeline.screen import calibration
from pipeline.screen.exits import check_layers
from pipeline.screen.model import ScreenModel
from pipeline.screen.taps import ActivationTap
from stages.base import Stage, StageConfig, register


# the DVC stage that trains each target's screen
TRAIN_STAGE = {"safety_detector": "train_screen_safety"}


class ScreenConfig(StageConfig):
    target: str = Field(description="type of the stage whose model is screened, e.g. damage_segmentation")
    policy: Literal["annotate", "drop", "review"] = Field(
        "annotate", description="annotate: flag only; drop: discard the frame's findings; review: also copy the frame to OUT/review")
    threshold: float = Field(0.995, gt=0, le=1, description="flag a frame when an input scores above this share of clean inputs")
    int8_calibration: Path | None = Field(None, description="clean scores of the target's 8-bit graph (`dvc repro "
                                          "calibrate_screen`): needed when the screened stage runs at `precision: int8`")


@register
class Screen(Stage):
    type_name = "screen"
    task = None
    Config = ScreenConfig
    outputs = ("screen",)

    def __init__(self, cfg: ScreenConfig):
        super().__init__(cfg)
        self.screen = ScreenModel.load(self.require_model())
        self.target: Stage | None = None
        self.tap: ActivationTap | None = None

    def attach(self, earlier: list[Stage]) -> None:
        """Bind to the screened stage: it must run earlier and hold the weights the screen was trained on."""
        match = [s for s in earlier if s.type_name == self.cfg.target]
        if not match:
            raise ConfigError(f"screen targets {self.cfg.target!r}, but no earlier stage has that type",
                              f"put the screen after the {self.cfg.target} stage, or set `target:` to one of "
                              f"{', '.join(s.type_name for s in earlier) or '(no earlier stages)'}")
        target = match[-1]
        want, have = self.screen.target, file_sha(target.cfg.model)
        if want.get("stage") != target.type_name or want.get("sha") != have:
            raise WeightsError(f"screen weights {self.cfg.model} were trained on {want.get('stage')} weights "
                               f"{want.get('weights')} ({want.get('sha')}), but this flow's {target.type_name} runs "
                               f"{target.cfg.model.name} ({have})",
                               f"retrain the screen for these weights (`dvc repro {TRAIN_STAGE.get(target.type_name, 'train_screen')}`), "
                               "or remove the screen stage")
        if target.model is None:
            raise ConfigError(f"the {target.type_name} stage's backend exposes no torch model for a screen to read",
                              "use a backend that runs a torch model (e.g. ultralytics with a .pt), or remove the screen stage")
        precision = getattr(target.cfg, "precision", "fp32")
        if precision != "fp32":
            if self.cfg.int8_calibration is None:
                raise ConfigError(f"the {target.type_name} stage runs at `precision: {precision}`, but screen "
                                  f"{self.cfg.model.name} knows only its float activations, and would flag clean frames "
                                  "more often", "add `int8_calibration:` (made by `dvc repro calibrate_screen`) to the "
                                  f"screen's config, or set `precision: fp32` in the {target.type_name} stage")
            got, table = calibration.load(self.cfg.int8_calibration, self.cfg.model, want)
            self.screen.calibrations = {got: table}
        if self.screen.exits:
            check_layers(target.model, self.screen.layers, f"the {target.type_name} model ({target.cfg.model.name})")
        self.target = target
        self.screen.to(target.cfg.device)  # its autoencoders read the activations where the target computes them
        self.tap = ActivationTap(target.model, self.screen.layers, f"the {target.type_name} model ({target.cfg.model.name})")

    def process(self, batch: list[FrameResult]) -> None:
        if self.tap is None:
            raise RuntimeError("screen stage used before attach(); build flows with Pipeline.from_config")
        owners = np.asarray(getattr(self.target, "last_owners", []), int)
        scores = self.screen.scores(_last(self.tap.take(), len(owners)))
        if len(owners) != len(scores):
            raise RuntimeError(f"{self.target.type_name} reported {len(owners)} inputs for {len(scores)} screened samples")
        for i, r in enumerate(batch):
            mine = scores[(owners == i) & ~np.isnan(scores)] if len(scores) else scores[:0]
            s = float(mine.max()) if len(mine) else None
            flagged = s is not None and s >= self.cfg.threshold
            r.screen[self.cfg.target] = {"score": None if s is None else round(s, 4), "flagged": flagged,
                                         "policy": self.cfg.policy, "inputs": int(len(mine))}


def _last(calls: list[dict], n: int) -> list[dict]:
    """The calls that hold this batch's n inputs. Anything recorded before them (a predictor's
    warm-up pass on a GPU, say) is not a frame and is left out."""
    total = sum(c["n"] for c in calls)
    while calls and total - calls[0]["n"] >= n:
        total -= calls[0]["n"]
        calls = calls[1:]
    return calls
