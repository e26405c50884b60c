"""One knob per flow: `budget: full | balanced | fast` trades speed for accuracy.

A budget is a preset of settings spread over the flow (frame reuse) and its stages (exit
thresholds, input sizes). Anything a config sets explicitly wins over the preset, so the knob
never silently undoes a deliberate choice. What each preset costs in quality is measured by
`benchmarks/flow_budget.py`, not assumed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Budget = Literal["full", "balanced", "fast"]

# flow -> budget -> {"reuse": ReuseConfig fields, "stages": {stage type: config fields}}
PRESETS: dict[str, dict[str, dict]] = {
    "damage-survey": {
        # every frame, every crop to the last exit: the reference the others are measured against
        "full": {"reuse": {"enabled": False}, "stages": {"component_condition": {"exit_threshold": 1.0},
                                                         "damage_segmentation": {"gate_threshold": 0.0}}},
        # one frame in 3 is computed on a drone pass, the others take its shifted masks; on a computed frame,
        # a component that the camera's motion carries onto one of the last computed frame's keeps that one's
        # state (once); crops exit at the calibrated threshold; frames with no damage-like cell stop at the
        # damage gate (if the stage has one)
        "balanced": {"reuse": {"enabled": True, "mode": "motion", "max_run": 2, "max_diff": 5.0, "max_shift": 0.06},
                     "stages": {"component_condition": {"carry_iou": 0.8}}},
        # crops exit at 0.75: on the test crops 37% of the classifier's FLOPs and 0.885 accuracy, against 48%
        # and 0.901 at the calibrated 0.86 (benchmarks/condition_ee.py --threshold); components are segmented
        # at 0.375 of the frame instead of the trained 0.5 (benchmarks/component_scale.py)
        "fast": {"reuse": {"enabled": True, "mode": "motion", "max_run": 5, "max_diff": 6.0, "max_shift": 0.08},
                 "stages": {"component_condition": {"exit_threshold": 0.75, "carry_iou": 0.8, "carry_max": 2},
                            "component_segmentation": {"input_scale": 0.375}}},
    },
    "site-safety": {
        "full": {"reuse": {"enabled": False}, "stages": {"safety_detector": {"gate_threshold": 0.0}}},
        # a fixed camera: an unchanged frame keeps the last result, at most one frame in a row. max_diff 1.0
        # also reused frames where workers moved a little and cost 2.7 points of hard-hat F1; at 0.25 it
        # only reuses empty or frozen scenes (benchmarks/flow_budget.py)
        "balanced": {"reuse": {"enabled": True, "mode": "still", "max_run": 1, "max_diff": 0.25}, "stages": {}},
        # the detector at 640 instead of the YAML's 768: hard-hat F1 0.52/0.29 on two synthetic 720p clips (seeds 5/17),
        # against 0.36/0.15 at 512
        "fast": {"reuse": {"enabled": True, "mode": "still", "max_run": 2, "max_diff": 1.5},
                 "stages": {"safety_detector": {"imgsz": 640}}},
    },
}


def preset(flow: str, budget: Budget) -> dict:
    return PRESETS[flow][budget]


def apply_to_stage(stage_cfg: BaseModel, overrides: dict) -> BaseModel:
    """The stage config with the preset's values for the fields its YAML left unset."""
    update = {k: v for k, v in overrides.items() if k not in stage_cfg.model_fields_set and k in type(stage_cfg).model_fields}
    if not update:
        return stage_cfg
    out = stage_cfg.model_copy(update=update)
    # keep "set by the user" meaning the YAML: a stage may treat a preset value more leniently
    object.__setattr__(out, "__pydantic_fields_set__", set(stage_cfg.model_fields_set))
    return out


def add_counters(parts: list[dict]) -> dict[str, float]:
    total: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            total[k] = total.get(k, 0) + v
    return total


def compute_summary(budget: str, frames: int, counters: dict[str, float]) -> dict:
    """What the budget skipped, in numbers a report can state."""
    out = {"budget": budget, "frames": frames, "frames_reused": int(counters.get("frames_reused", 0))}
    for stage, key in (("damage_segmentation", "damage"), ("safety_detector", "detector")):
        if counters.get(f"{stage}.inputs"):
            out[f"{key}_inputs"] = int(counters[f"{stage}.inputs"])
            out[f"{key}_gated"] = int(counters.get(f"{stage}.gated", 0))
    if counters.get("component_condition.carried"):
        out["condition_carried"] = int(counters["component_condition.carried"])
    exits = sorted((k for k in counters if k.startswith("component_condition.exit_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    crops = sum(counters[k] for k in exits)
    if crops:
        out["condition_crops"] = int(crops)
        out["condition_exit_shares"] = [round(counters[k] / crops, 4) for k in exits]
        if counters.get("component_condition.flops_full"):
            out["condition_flops_share"] = round(counters["component_condition.flops"] / counters["component_condition.flops_full"], 4)
    return out


def describe(c: dict) -> str:
    """One sentence for a report: the budget, and what it did not compute."""
    parts = [f"budget <b>{c['budget']}</b>"]
    if c.get("frames"):
        parts.append(f"{c['frames_reused']} of {c['frames']} frames ({c['frames_reused'] / c['frames']:.0%}) took the last "
                     f"computed frame's results instead of running the models")
    if c.get("damage_gated"):
        parts.append(f"{c['damage_gated']} of {c['damage_inputs']} damage-model inputs held nothing damage-like and "
                     f"stopped at the gate")
    if c.get("detector_gated"):
        parts.append(f"{c['detector_gated']} of {c['detector_inputs']} frames had nobody in them and stopped at the detector's gate")
    if c.get("condition_crops"):
        first = c["condition_exit_shares"][0]
        parts.append(f"{c['condition_crops']} component crops classified, {first:.0%} at the first exit"
                     + (f", at {c['condition_flops_share']:.0%} of the full classifier's FLOPs" if "condition_flops_share" in c else ""))
    if c.get("condition_carried"):
        parts.append(f"{c['condition_carried']} components kept the state of the same component, moved by the camera, "
                     f"on the last computed frame instead of being classified again")
    return "; ".join(parts) + "."
